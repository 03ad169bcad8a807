"""Torn or missing regions: irregular holes (free-form strokes) and torn corners and edges."""

from __future__ import annotations

import math

import cv2
import numpy as np

from ..operator import STRUCTURED, Operator, functional, register
from ..params import Choice, Float, Int
from ..rand import pixel_rng
from ._draw import SHIFT, as_mask, blend, fixed, jagged, jagged_path

FILLS = ("white", "paper", "black")


def _stroke_hole(rng: np.random.Generator, canvas: np.ndarray, size: float) -> None:
    """A free-form brush stroke (as in DeepFill's irregular masks) of extent ~``size`` pixels."""
    h, w = canvas.shape
    k = int(rng.integers(3, 9))
    angles = rng.uniform(0, 2 * math.pi) + np.cumsum(rng.normal(0, 0.9, k))
    steps = size * rng.uniform(0.15, 0.45, k)
    start = np.array([rng.uniform(0, w), rng.uniform(0, h)])
    pts = np.vstack([start, start + np.cumsum(np.stack([np.cos(angles), np.sin(angles)], 1) * steps[:, None], 0)])
    brush = max(2.0, size * rng.uniform(0.12, 0.35))
    widths = np.maximum(1, np.round(brush * rng.uniform(0.7, 1.2, k))).astype(int).tolist()
    # brush width varies per segment; a jagged centre line gives the torn-paper outline
    path = fixed(jagged_path(rng, pts, 0.08, 3))
    # hard-edged like the binary irregular-hole masks the method was trained with (and 3x faster
    # to rasterise than anti-aliased thick lines)
    for j in range(k):
        cv2.polylines(canvas, [path[j * 8 : (j + 1) * 8 + 1]], False, 255, widths[j], cv2.LINE_8, SHIFT)
    for q in (pts * 16).astype(int).tolist():
        cv2.circle(canvas, tuple(q), int(brush * 8), 255, -1, cv2.LINE_8, 4)


def _torn_corner(rng: np.random.Generator, canvas: np.ndarray, size: float) -> None:
    """Cut a corner off along a jagged tear line about ``size`` pixels from the corner."""
    h, w = canvas.shape
    c = int(rng.integers(4))
    cx, cy = (0.0, w - 1.0)[c % 2], (0.0, h - 1.0)[c // 2]
    sx, sy = (1, -1)[c % 2], (1, -1)[c // 2]
    a, b = size * rng.uniform(0.6, 1.4), size * rng.uniform(0.6, 1.4)
    p0, p1 = np.array([cx + sx * a, cy - sy * 3]), np.array([cx - sx * 3, cy + sy * b])
    edge = jagged(rng, p0, p1, 0.06)
    poly = np.vstack([edge, [[cx - sx * 3, cy - sy * 3]]])
    cv2.fillPoly(canvas, [fixed(poly)], 255, cv2.LINE_AA, 4)


def _torn_edge(rng: np.random.Generator, canvas: np.ndarray, size: float) -> None:
    """A bite out of one edge: a jagged notch of depth ~``size`` pixels."""
    h, w = canvas.shape
    side = int(rng.integers(4))
    length = size * rng.uniform(1.0, 3.0)
    depth = size * rng.uniform(0.3, 0.8)
    if side in (0, 1):  # top, bottom
        x = rng.uniform(0, w)
        y = -3.0 if side == 0 else h + 2.0
        inward = 1 if side == 0 else -1
        p0, p1, tip = np.array([x - length / 2, y]), np.array([x + length / 2, y]), np.array([x, y + inward * depth])
    else:  # left, right
        y = rng.uniform(0, h)
        x = -3.0 if side == 2 else w + 2.0
        inward = 1 if side == 2 else -1
        p0, p1, tip = np.array([x, y - length / 2]), np.array([x, y + length / 2]), np.array([x + inward * depth, y])
    outline = np.vstack([jagged(rng, p0, tip, 0.08), jagged(rng, tip, p1, 0.08)[1:]])
    cv2.fillPoly(canvas, [fixed(outline)], 255, cv2.LINE_AA, 4)


def _fill_colour(rng: np.random.Generator, fill: str) -> np.ndarray:
    if fill == "white":
        return np.array([255.0, 255.0, 255.0], np.float32)
    if fill == "black":
        return np.array([rng.uniform(0, 25)] * 3, np.float32)
    base = rng.uniform(200, 240)
    return np.array([base + 10, base + 4, base - 12], np.float32).clip(0, 255)


@functional
def tears(
    image: np.ndarray, count: int, size: float, holes: float, corners: float, fill: str, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Remove ``count`` regions of extent ~``size``·short side; returns (image, mask).

    Each region is a free-form hole (share ``holes``), else a torn corner (share ``corners``
    of the rest) or a notch torn from an edge; missing areas show ``fill``: white (the BOPBtL
    convention), aged paper, or black (a dark scanner lid).
    """
    rng = pixel_rng(seed)
    h, w = image.shape[:2]
    canvas = np.zeros((h, w), np.uint8)
    extent = max(3.0, size * min(h, w))
    for _ in range(count):
        u, v = rng.random(), rng.random()
        s = extent * rng.uniform(0.6, 1.4)
        if u < holes:
            _stroke_hole(rng, canvas, s)
        elif v < corners:
            _torn_corner(rng, canvas, s)
        else:
            _torn_edge(rng, canvas, s)
    out, mask = blend(image, canvas, _fill_colour(rng, fill))
    return out, as_mask(mask)


@register
class Tears(Operator):
    """Torn or missing regions: irregular holes, torn corners and edges."""

    name = "tears"
    main = "size"
    kind = STRUCTURED
    params = {
        "count": Int(1, 12, default=(1, 3), doc="number of missing regions"),
        "size": Float(0.02, 0.6, default=(0.05, 0.2), doc="typical extent, fraction of the short side"),
        "holes": Float(0.0, 1.0, default=0.6, doc="share of free-form holes"),
        "corners": Float(0.0, 1.0, default=0.6, doc="share of torn corners among the other regions"),
        "fill": Choice(FILLS, default=["white", "paper"], doc="what shows through"),
    }
    seeded = True
    example = {"count": 3, "size": 0.18, "holes": 0.5, "corners": 1.0, "fill": "paper"}

    def _apply(self, image, p):
        return tears.__wrapped__(image, p["count"], p["size"], p["holes"], p["corners"], p["fill"], p["seed"])
