"""``stains`` as version 1 drew it, kept so that data made with it stays reproducible byte for byte.

Version 2 (``stains.py``) computes only the visible part of each blob and blurs wide edges on a
coarser grid; this one blurs each blob's whole patch at full resolution (up to a minute per blob at
1024 px at the widest settings). Do not change it: its output is what v1 records and datasets hold.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from ..image import LUMA
from ..rand import pixel_rng
from ._draw import as_mask, blend, fixed
from .tone import tone_rgb


def _blob(rng: np.random.Generator, radius: float, softness: float, ring: float) -> np.ndarray:
    """Coverage in [0, 1] of one irregular blob on a tight square patch centred on it."""
    blur = softness * radius * 0.35
    half = int(math.ceil(radius * 1.6 + 3 * blur)) + 2
    size = 2 * half + 1
    theta = np.linspace(0, 2 * math.pi, 72, endpoint=False)
    r = np.ones_like(theta)
    for k in range(2, 8):
        r += rng.uniform(0, 0.35 / k) * np.cos(k * theta + rng.uniform(0, 2 * math.pi))
    r *= radius
    pts = np.stack([half + r * np.cos(theta), half + r * np.sin(theta)], axis=1)
    patch = np.zeros((size, size), np.uint8)
    cv2.fillPoly(patch, [fixed(pts)], 255, cv2.LINE_AA, 4)
    cov = patch.astype(np.float32) * np.float32(1 / 255)
    if blur > 0.3:
        cov = cv2.GaussianBlur(cov, (0, 0), blur)
    # mottling: pigment is never even inside a stain
    g = max(2, size // 12)
    mottle = cv2.resize(rng.random((g, g)).astype(np.float32), (size, size), interpolation=cv2.INTER_CUBIC)
    cov *= np.clip(np.float32(0.55) + np.float32(0.45) * mottle, 0, 1)
    if ring > 0:
        # Tide line: pigment collects where the drying front stopped, at the blob's edge.
        edge = np.clip(cov * (1 - cov) * 4, 0, 1)
        cov = np.clip(cov * (1 - 0.5 * ring) + edge * ring, 0, 1)
    return cov


def stains(
    image: np.ndarray,
    count: int,
    radius: float,
    opacity: float,
    softness: float,
    ring: float,
    hue: float,
    dark: float,
    seed: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Paint ``count`` blobs of radius ~``radius``·short side; returns (image, mask).

    Dark blobs (share ``dark``) multiply the photo by a brownish tint (``hue``): water stains,
    foxing, glue. Light ones bleach it towards faded paper. ``ring`` adds a tide line.
    """
    rng = pixel_rng(seed)
    h, w = image.shape[:2]
    out = image.copy()
    mask = np.zeros((h, w), bool)
    for _ in range(count):
        rad = max(1.5, radius * min(h, w) * rng.uniform(0.6, 1.4))
        cov = _blob(rng, rad, softness, ring * rng.uniform(0.5, 1.0))
        cov *= np.float32(np.clip(rng.normal(opacity, 0.1), 0.05, 1.0))
        half = cov.shape[0] // 2
        cx, cy = int(rng.integers(0, w)), int(rng.integers(0, h))
        y0, y1, x0, x1 = max(0, cy - half), min(h, cy + half + 1), max(0, cx - half), min(w, cx + half + 1)
        cov_u8 = (cov[y0 - (cy - half) : y1 - (cy - half), x0 - (cx - half) : x1 - (cx - half)] * 255 + 0.5).astype(np.uint8)
        if rng.random() < dark:
            tint = tone_rgb(hue + rng.normal(0, 8), rng.uniform(0.4, 0.8)) * np.float32(rng.uniform(0.35, 0.7))
            factor = tint if image.ndim == 3 else np.float32(tint @ LUMA)
            target = lambda px, f=factor: px * f  # noqa: E731  multiplicative: a dye soaked into the print
        else:
            # bleached: faded towards yellowed paper, detail still showing through
            paper = np.float32(rng.uniform(205, 240)) * tone_rgb(45, 0.15)
            paper = paper if image.ndim == 3 else np.float32(paper @ LUMA)
            target = lambda px, q=paper: px * np.float32(0.45) + q * np.float32(0.55)  # noqa: E731
        region, m = blend(out[y0:y1, x0:x1], cov_u8, target)
        out[y0:y1, x0:x1] = region
        mask[y0:y1, x0:x1] |= m
    return out, as_mask(mask)
