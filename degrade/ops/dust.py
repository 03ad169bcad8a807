"""Dust and specks: many small light or dark spots and a few fibres, sizes gamma-distributed."""

from __future__ import annotations

import math

import cv2
import numpy as np

from ..image import composite
from ..operator import STRUCTURED, Operator, register
from ..params import Float
from ..rand import pixel_rng
from ._draw import SHIFT, alpha_and_mask, draw_polyline, wobbly_path

_ONE = 1 << SHIFT
_TILE_AREA = 256 * 256


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
    layers = {True: np.zeros((h, w), np.uint8), False: np.zeros((h, w), np.uint8)}
    xs, ys = rng.uniform(0, w, n), rng.uniform(0, h, n)
    radii = rng.gamma(1.5, size_px / 1.5, n)
    is_light = rng.random(n) < light
    is_fibre = rng.random(n) < fibres
    ecc = rng.uniform(0.5, 1.0, n)
    angles = rng.uniform(0, 180, n)
    alphas = np.clip(rng.normal(opacity, 0.15, n), 0.15, 1.0)
    for i in range(n):
        canvas = layers[bool(is_light[i])]
        value = round(255 * alphas[i])
        if is_fibre[i]:
            length = max(3.0, radii[i] * rng.uniform(4, 12))
            a = rng.uniform(0, 2 * math.pi)
            p0 = np.array([xs[i], ys[i]])
            p1 = p0 + length * np.array([math.cos(a), math.sin(a)])
            draw_polyline(canvas, wobbly_path(rng, p0, p1, 6, length * 0.25), value, 1)
        else:
            r = max(radii[i], 0.35)
            axes = (max(1, round(r * _ONE)), max(1, round(r * ecc[i] * _ONE)))
            center = (round(xs[i] * _ONE), round(ys[i] * _ONE))
            cv2.ellipse(canvas, center, axes, float(angles[i]), 0, 360, value, -1, cv2.LINE_AA, SHIFT)
    out = image
    mask = np.zeros((h, w), np.uint8)
    for light_layer, cov in layers.items():
        if not cov.any():
            continue
        alpha, m = alpha_and_mask(cov)
        out = composite(out, np.float32(rng.uniform(225, 255) if light_layer else rng.uniform(5, 50)), alpha)
        mask |= m
    return (out if out is not image else image.copy()), mask


@register
class Dust(Operator):
    """Dust, dirt specks and fibres on the print, negative or scanner glass."""

    name = "dust"
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
        return dust(image, p["density"], p["size_px"], p["light"], p["fibres"], p["opacity"], p["seed"])
