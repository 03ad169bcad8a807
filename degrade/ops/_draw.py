"""Drawing helpers shared by the structured operators: curves, canvases and masks."""

from __future__ import annotations

import math

import cv2
import numpy as np

ALPHA_MIN = 0.04
"""Coverage below which a defect is dropped: the mask holds exactly the pixels an op may change."""

SHIFT = 4  # fixed-point bits for sub-pixel drawing with OpenCV
_ONE = 1 << SHIFT


def fixed(points: np.ndarray) -> np.ndarray:
    """Float (N, 2) x/y points to OpenCV's fixed-point int32 polyline format."""
    return np.round(points * _ONE).astype(np.int32).reshape(-1, 1, 2)


def alpha_and_mask(coverage: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """From coverage in [0, 1] (float32 or uint8 0..255) return (alpha, mask) with alpha < ALPHA_MIN zeroed."""
    alpha = coverage.astype(np.float32) * np.float32(1 / 255) if coverage.dtype == np.uint8 else coverage
    alpha = np.where(alpha >= ALPHA_MIN, alpha, np.float32(0)).astype(np.float32, copy=False)
    mask = np.where(alpha > 0, np.uint8(255), np.uint8(0))
    return alpha, mask


def wobbly_path(
    rng: np.random.Generator, p0: np.ndarray, p1: np.ndarray, n: int, wobble: float
) -> np.ndarray:
    """``n`` points from p0 to p1 with a smooth lateral offset of amplitude ``wobble`` (pixels)."""
    t = np.linspace(0.0, 1.0, n)
    d = p1 - p0
    length = float(np.hypot(*d)) or 1.0
    normal = np.array([-d[1], d[0]]) / length
    offset = np.zeros(n)
    for k in (1, 2, 3):
        offset += rng.uniform(-1, 1) / k * np.sin(math.pi * k * t + rng.uniform(0, 2 * math.pi))
    offset += np.cumsum(rng.normal(0, 1, n)) / math.sqrt(n) * 0.3
    offset *= wobble
    return p0[None, :] + t[:, None] * d[None, :] + offset[:, None] * normal[None, :]


def line_through(rng: np.random.Generator, h: int, w: int, angle: float) -> tuple[np.ndarray, np.ndarray]:
    """End points of a line at ``angle`` (radians) through a random point, extended past the borders."""
    c = np.array([rng.uniform(0, w), rng.uniform(0, h)])
    half = math.hypot(h, w)
    d = np.array([math.cos(angle), math.sin(angle)]) * half
    return c - d, c + d


def jagged(rng: np.random.Generator, p0: np.ndarray, p1: np.ndarray, roughness: float, depth: int = 6) -> np.ndarray:
    """A midpoint-displacement (fractal) path from p0 to p1: torn-paper edges."""
    pts = np.stack([p0, p1]).astype(np.float64)
    scale = roughness * float(np.hypot(*(p1 - p0)))
    for _ in range(depth):
        mids = (pts[:-1] + pts[1:]) / 2
        seg = pts[1:] - pts[:-1]
        nrm = np.stack([-seg[:, 1], seg[:, 0]], axis=1)
        nrm /= np.maximum(np.hypot(nrm[:, 0], nrm[:, 1]), 1e-9)[:, None]
        mids += nrm * rng.normal(0, scale, (len(mids), 1))
        out = np.empty((len(pts) + len(mids), 2))
        out[0::2], out[1::2] = pts, mids
        pts = out
        scale *= 0.55
    return pts


def draw_polyline(canvas: np.ndarray, pts: np.ndarray, value: float, thickness: int) -> None:
    cv2.polylines(canvas, [fixed(pts)], False, float(value), max(1, int(thickness)), cv2.LINE_AA, SHIFT)
