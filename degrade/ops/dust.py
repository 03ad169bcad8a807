"""Dust and specks: many small light or dark spots and a few fibres, sizes gamma-distributed."""

from __future__ import annotations

import math

import cv2
import numpy as np

from ..operator import STRUCTURED, Operator, functional, register
from ..params import Float
from ..rand import pixel_rng
from ._draw import SHIFT, as_mask, blend, fixed

_ONE = 1 << SHIFT
_TILE_AREA = 256 * 256


@functional
def dust(
    image: np.ndarray, density: float, size_px: float, light: float, fibres: float, opacity: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Scatter specks; returns (image, mask).

    ``density`` specks per 256×256 pixels (Poisson count), radii gamma-distributed (shape 1.5)
    with mean ``size_px`` as measured for film dirt, elliptic and rotated; a share ``fibres``
    are short bent hairs instead. A share ``light`` are white (dust on the negative prints
    white), the rest dark (dirt on the print or scanner glass).
    """
    rng = pixel_rng(seed)
    h, w = image.shape[:2]
    n = int(rng.poisson(density * h * w / _TILE_AREA))
    layers = (np.zeros((h, w), np.uint8), np.zeros((h, w), np.uint8))  # dark, light
    xs, ys = rng.uniform(0, w, n), rng.uniform(0, h, n)
    radii = np.maximum(rng.gamma(1.5, size_px / 1.5, n), 0.35)
    is_light = (rng.random(n) < light).tolist()
    is_fibre = (rng.random(n) < fibres).tolist()
    ecc = rng.uniform(0.5, 1.0, n)
    angles = rng.uniform(0, 180, n).tolist()
    values = np.round(255 * np.clip(rng.normal(opacity, 0.15, n), 0.15, 1.0)).astype(int).tolist()
    centers = np.round(np.stack([xs, ys], 1) * _ONE).astype(int).tolist()
    axes = np.maximum(1, np.round(np.stack([radii, radii * ecc], 1) * _ONE)).astype(int).tolist()
    fibre_ids = [i for i in range(n) if is_fibre[i]]
    if fibre_ids:
        # short bent hairs: a parabolic bow across 6 points
        f = np.array(fibre_ids)
        length = np.maximum(3.0, radii[f] * rng.uniform(4, 12, len(f)))
        a = rng.uniform(0, 2 * math.pi, len(f))
        bow = rng.normal(0, 0.25, len(f)) * length
        t = np.linspace(0, 1, 6)
        d = np.stack([np.cos(a), np.sin(a)], 1)
        nrm = np.stack([-d[:, 1], d[:, 0]], 1)
        pts = (
            np.stack([xs[f], ys[f]], 1)[:, None, :]
            + (t[None, :] * length[:, None])[..., None] * d[:, None, :]
            + (4 * t * (1 - t))[None, :, None] * bow[:, None, None] * nrm[:, None, :]
        )
        fp = fixed(pts)
        for j, i in enumerate(fibre_ids):
            cv2.polylines(layers[is_light[i]], [fp[j]], False, values[i], 1, cv2.LINE_AA, SHIFT)
    for i in range(n):
        if not is_fibre[i]:
            cv2.ellipse(layers[is_light[i]], centers[i], axes[i], angles[i], 0, 360, values[i], -1, cv2.LINE_AA, SHIFT)
    out, mask = image.copy(), np.zeros((h, w), bool)
    for cov, tone in ((layers[0], rng.uniform(5, 50)), (layers[1], rng.uniform(225, 255))):
        out, m = blend(image, cov, np.float32(tone), out=out)
        mask |= m
    return out, as_mask(mask)


@register
class Dust(Operator):
    """Dust, dirt specks and fibres on the print, negative or scanner glass."""

    name = "dust"
    main = "density"
    kind = STRUCTURED
    params = {
        "density": Float(0.0, 2000.0, default=(5.0, 80.0), doc="specks per 256×256 pixels"),
        "size_px": Float(0.3, 8.0, default=(0.6, 1.5), doc="mean speck radius in pixels"),
        "light": Float(0.0, 1.0, default=0.6, doc="share of white specks"),
        "fibres": Float(0.0, 1.0, default=0.1, doc="share of fibres (hairs) instead of spots"),
        "opacity": Float(0.15, 1.0, default=(0.6, 1.0), doc="typical opacity"),
    }
    seeded = True
    example = {"density": 120.0, "size_px": 1.2, "fibres": 0.15}

    def _apply(self, image, p):
        return dust.__wrapped__(image, p["density"], p["size_px"], p["light"], p["fibres"], p["opacity"], p["seed"])
