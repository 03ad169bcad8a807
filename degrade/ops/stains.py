"""Blotches and stains: soft irregular tinted blobs, water-stain tide lines, bleached patches."""

from __future__ import annotations

import math

import cv2
import numpy as np

from ..image import LUMA
from ..operator import STRUCTURED, Operator, functional, register
from ..params import Float, Int
from ..rand import pixel_rng
from ._draw import as_mask, blend, fixed
from .tone import tone_rgb


def _blob_shape(rng: np.random.Generator, radius: float, softness: float) -> tuple[int, float, np.ndarray, np.ndarray]:
    """Draw one irregular blob: (half size of its square patch, edge blur, outline points, mottle grid)."""
    blur = softness * radius * 0.35
    half = int(math.ceil(radius * 1.6 + 3 * blur)) + 2
    theta = np.linspace(0, 2 * math.pi, 72, endpoint=False)
    r = np.ones_like(theta)
    for k in range(2, 8):
        r += rng.uniform(0, 0.35 / k) * np.cos(k * theta + rng.uniform(0, 2 * math.pi))
    r *= radius
    pts = np.stack([half + r * np.cos(theta), half + r * np.sin(theta)], axis=1)
    g = max(2, (2 * half + 1) // 12)
    return half, blur, pts, rng.random((g, g)).astype(np.float32)


def _blob(
    half: int, blur: float, pts: np.ndarray, grid: np.ndarray, ring: float, window: tuple[int, int, int, int]
) -> np.ndarray:
    """Coverage in [0, 1] of a blob on ``window`` (y0, y1, x0, x1) of its (2·half + 1)² patch.

    Only the window (the part of the patch inside the image) is computed, and a wide edge blur
    (over 16 px) runs on a grid blur/8 times coarser, the outline filled there at 4× supersampling,
    then interpolated back: the coverage is smooth at that scale. So the cost follows the visible
    stain, not its blur or how far it overhangs the image (v1 blurred the whole patch: minutes).
    """
    size = 2 * half + 1
    y0, y1, x0, x1 = window
    blurred = blur > 0.3
    step = max(1, int(blur // 8)) if blurred else 1  # the blur keeps a sigma of 8 coarse pixels or more
    margin = int(math.ceil(4 * blur)) + step if blurred else 0  # OpenCV's gaussian kernel reaches 4 sigma
    ry0, rx0, ry1, rx1 = max(0, y0 - margin), max(0, x0 - margin), min(size, y1 + margin), min(size, x1 + margin)
    if step == 1:
        canvas = np.zeros((ry1 - ry0, rx1 - rx0), np.uint8)
        cv2.fillPoly(canvas, [fixed(pts - [rx0, ry0])], 255, cv2.LINE_AA, 4)
    else:
        ch, cw, ss = -(-(ry1 - ry0) // step), -(-(rx1 - rx0) // step), 4
        fine = np.zeros((ch * ss, cw * ss), np.uint8)  # pixel centres align: x -> (x + 0.5)·ss/step − 0.5
        cv2.fillPoly(fine, [fixed((pts - [rx0 - 0.5, ry0 - 0.5]) * (ss / step) - 0.5)], 255, cv2.LINE_8, 4)
        canvas = cv2.resize(fine, (cw, ch), interpolation=cv2.INTER_AREA)
    cov = canvas.astype(np.float32) * np.float32(1 / 255)
    if blurred:
        cov = cv2.GaussianBlur(cov, (0, 0), blur / step)
    if step == 1:
        cov = cov[y0 - ry0 : y1 - ry0, x0 - rx0 : x1 - rx0]
    else:
        cov = _resample(cov, 1 / step, x0 - rx0, y0 - ry0, (x1 - x0, y1 - y0), cv2.INTER_LINEAR)
    mottle = _resample(grid, grid.shape[0] / size, x0, y0, (x1 - x0, y1 - y0), cv2.INTER_CUBIC)
    return _mottled(cov, mottle, ring)


def _blob_v1(
    half: int, blur: float, pts: np.ndarray, grid: np.ndarray, ring: float, window: tuple[int, int, int, int]
) -> np.ndarray:
    """Version 1's coverage: the whole (2·half + 1)² patch at full resolution, then ``window`` cut out
    (minutes per blob at the widest settings). Frozen: v1 records and datasets hold its output."""
    size = 2 * half + 1
    patch = np.zeros((size, size), np.uint8)
    cv2.fillPoly(patch, [fixed(pts)], 255, cv2.LINE_AA, 4)
    cov = patch.astype(np.float32) * np.float32(1 / 255)
    if blur > 0.3:
        cov = cv2.GaussianBlur(cov, (0, 0), blur)
    cov = _mottled(cov, cv2.resize(grid, (size, size), interpolation=cv2.INTER_CUBIC), ring)
    y0, y1, x0, x1 = window
    return cov[y0:y1, x0:x1]


def _mottled(cov: np.ndarray, mottle: np.ndarray, ring: float) -> np.ndarray:
    """Uneven pigment (``mottle``, a random grid stretched over the patch) and the tide line: pigment
    collects where the drying front stopped, at the blob's edge."""
    cov *= np.clip(np.float32(0.55) + np.float32(0.45) * mottle, 0, 1)
    if ring > 0:
        edge = np.clip(cov * (1 - cov) * 4, 0, 1)
        cov = np.clip(cov * (1 - 0.5 * ring) + edge * ring, 0, 1)
    return cov


def _resample(src: np.ndarray, scale: float, ox: int, oy: int, shape: tuple[int, int], interpolation: int) -> np.ndarray:
    """Pixels (ox, oy) to (ox, oy) + shape (w, h) of ``src`` resized by 1/``scale``, as cv2.resize aligns them."""
    m = np.array([[scale, 0, (ox + 0.5) * scale - 0.5], [0, scale, (oy + 0.5) * scale - 0.5]], np.float32)
    return cv2.warpAffine(src, m, shape, flags=interpolation | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_REPLICATE)


@functional
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

    Only the part of each blob inside the photo is computed, and edge blurs wider than 16 px
    run on a grid blur/8 times coarser (within a few levels of the full-resolution blur), so
    the cost follows the visible stain: version 1 blurred each blob's whole patch at full
    resolution, up to a minute per blob at 1024 px. Blurs under 16 px (any stain the default
    ranges draw on a 256 px tile) stay within float rounding of version 1, nearly always the same
    bytes. Version 1 is kept (``_blob_v1``) for records and recipes that pin it.
    """
    return _stains(image, count, radius, opacity, softness, ring, hue, dark, seed, _blob)


def _stains(image, count, radius, opacity, softness, ring, hue, dark, seed, coverage) -> tuple[np.ndarray, np.ndarray]:
    """:func:`stains` with the blob ``coverage`` of one version (the draws and the painting are the same)."""
    rng = pixel_rng(seed)
    h, w = image.shape[:2]
    out = image.copy()
    mask = np.zeros((h, w), bool)
    for _ in range(count):
        rad = max(1.5, radius * min(h, w) * rng.uniform(0.6, 1.4))
        ring_k = ring * rng.uniform(0.5, 1.0)
        half, blur, pts, grid = _blob_shape(rng, rad, softness)
        alpha = np.float32(np.clip(rng.normal(opacity, 0.1), 0.05, 1.0))
        cx, cy = int(rng.integers(0, w)), int(rng.integers(0, h))
        y0, y1, x0, x1 = max(0, cy - half), min(h, cy + half + 1), max(0, cx - half), min(w, cx + half + 1)
        cov = coverage(half, blur, pts, grid, ring_k, (y0 - (cy - half), y1 - (cy - half), x0 - (cx - half), x1 - (cx - half)))
        cov_u8 = (cov * alpha * 255 + 0.5).astype(np.uint8)
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


@register
class Stains(Operator):
    """Blotches and stains: soft, irregular, tinted (water stains, foxing) or bleached."""

    name = "stains"
    main = "count"
    kind = STRUCTURED
    version = 2  # v2: wide edge blurs on a coarser grid (v1 took minutes at the widest)
    earlier = {1: "_apply_v1"}
    params = {
        "count": Int(1, 20, default=(1, 3), doc="number of blotches"),
        "radius": Float(0.01, 0.5, default=(0.04, 0.15), doc="typical radius, fraction of the short side"),
        "opacity": Float(0.05, 1.0, default=(0.25, 0.7), doc="typical strength"),
        "softness": Float(0.0, 1.0, default=(0.2, 0.8), doc="edge softness"),
        "ring": Float(0.0, 1.0, default=(0.0, 0.6), doc="tide-line strength at the edge"),
        "hue": Float(0.0, 360.0, default=(20.0, 45.0), doc="hue of dark stains in degrees"),
        "dark": Float(0.0, 1.0, default=0.8, doc="share of dark stains (the rest bleach)"),
    }
    seeded = True
    example = {"count": 4, "radius": 0.12, "opacity": 0.7, "ring": 0.5}

    def _apply(self, image, p):
        return stains.__wrapped__(image, p["count"], p["radius"], p["opacity"], p["softness"], p["ring"], p["hue"], p["dark"], p["seed"])

    def _apply_v1(self, image, p):
        return _stains(image, p["count"], p["radius"], p["opacity"], p["softness"], p["ring"], p["hue"], p["dark"], p["seed"], _blob_v1)
