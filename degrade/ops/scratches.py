"""Scratches: thin light or dark curves, of varying width and opacity, some crossing the photo."""

from __future__ import annotations

import math

import cv2
import numpy as np

from ..image import composite
from ..operator import STRUCTURED, Operator, register
from ..params import Float, Int
from ..rand import pixel_rng
from ._draw import alpha_and_mask, draw_polyline, line_through, wobbly_path


def scratches(
    image: np.ndarray,
    count: int,
    width_px: float,
    opacity: float,
    light: float,
    crossing: float,
    vertical: float,
    wobble: float,
    seed: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Draw ``count`` scratches; returns (image, mask).

    Each scratch is a smooth curve (lateral ``wobble`` as a fraction of the short side): a share
    ``crossing`` run across the whole photo, the others are log-uniformly 3–40 % of the
    diagonal (hairlines are far more common than long gouges). A share ``vertical`` are
    near-vertical like film-base scratches, the rest at any angle like print abrasions. Light
    scratches (share ``light``: emulsion scraped down to the paper) carry a faint dark relief
    edge beside them. Width varies around ``width_px`` and opacity around ``opacity`` along the
    length, with occasional breaks.
    """
    rng = pixel_rng(seed)
    h, w = image.shape[:2]
    diag = math.hypot(h, w)
    dark_layer, light_layer = np.zeros((h, w), np.uint8), np.zeros((h, w), np.uint8)
    for _ in range(count):
        if rng.random() < vertical:
            angle = math.pi / 2 + rng.normal(0, 0.06)
        else:
            angle = rng.uniform(0, math.pi)
        p0, p1 = line_through(rng, h, w, angle)
        if rng.random() >= crossing:
            mid = (p0 + p1) / 2  # the random point inside the photo
            half = (p1 - p0) / np.hypot(*(p1 - p0)) * diag * math.exp(rng.uniform(math.log(0.015), math.log(0.2)))
            p0, p1 = mid - half, mid + half
        n = max(6, int(np.hypot(*(p1 - p0)) / 5))
        pts = wobbly_path(rng, p0, p1, n, wobble * min(h, w))
        is_light = bool(rng.random() < light)
        base_w = max(0.5, rng.normal(width_px, width_px * 0.25))
        base_a = float(np.clip(rng.normal(opacity, 0.15), 0.1, 1.0))
        d = (p1 - p0) / (np.hypot(*(p1 - p0)) or 1.0)
        relief = np.array([-d[1], d[0]]) * rng.choice([-1.0, 1.0]) * max(1.0, base_w * 0.8)
        # Segments of 3–10 points, each with its own width and opacity; some are gaps.
        i = 0
        while i < n - 1:
            j = min(n, i + int(rng.integers(3, 11)))
            if rng.random() > 0.1:
                seg_w = max(0.5, base_w * rng.uniform(0.6, 1.3))
                seg_a = base_a * rng.uniform(0.5, 1.0) * min(1.0, seg_w)
                layer = light_layer if is_light else dark_layer
                draw_polyline(layer, pts[i:j], round(255 * seg_a), round(seg_w))
                if is_light:
                    draw_polyline(dark_layer, pts[i:j] + relief, round(255 * seg_a * 0.35), 1)
            i = j - 1
    out = image
    mask = np.zeros((h, w), np.uint8)
    for cov, tone in ((dark_layer, rng.uniform(10, 60)), (light_layer, rng.uniform(215, 250))):
        if not cov.any():
            continue
        # a touch of softness: real scratches have fuzzy, not vector-sharp, edges
        alpha, m = alpha_and_mask(cv2.GaussianBlur(cov, (3, 3), 0.5))
        out = composite(out, np.float32(tone), alpha)
        mask |= m
    return (out if out is not image else image.copy()), mask


@register
class Scratches(Operator):
    """Scratches: thin light or dark curves, some crossing the whole photo."""

    name = "scratches"
    kind = STRUCTURED
    params = {
        "count": Int(1, 60, default=(2, 10), doc="number of scratches"),
        "width_px": Float(0.5, 8.0, default=(0.7, 1.6), doc="typical width in pixels"),
        "opacity": Float(0.1, 1.0, default=(0.4, 0.9), doc="typical opacity"),
        "light": Float(0.0, 1.0, default=0.8, doc="share of light (white) scratches"),
        "crossing": Float(0.0, 1.0, default=0.15, doc="share of scratches crossing the whole photo"),
        "vertical": Float(0.0, 1.0, default=0.25, doc="share of near-vertical (film) scratches"),
        "wobble": Float(0.0, 0.2, default=(0.0, 0.02), doc="lateral bend, fraction of the short side"),
    }
    seeded = True
    example = {"count": 12, "width_px": 1.2, "opacity": 0.8, "crossing": 0.2}

    def _apply(self, image, p):
        return scratches(
            image, p["count"], p["width_px"], p["opacity"], p["light"], p["crossing"], p["vertical"], p["wobble"], p["seed"]
        )
