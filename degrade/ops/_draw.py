"""Drawing helpers shared by the structured operators: curves, canvases and masks."""

from __future__ import annotations

import math
from functools import lru_cache

import cv2
import numpy as np

ALPHA_MIN_U8 = 10
"""Coverage (of 255) below which a defect is dropped: the mask holds exactly the pixels an op may change."""

SHIFT = 4  # fixed-point bits for sub-pixel drawing with OpenCV
_ONE = 1 << SHIFT


def fixed(points: np.ndarray) -> np.ndarray:
    """Float (..., 2) x/y points to OpenCV's fixed-point int32 coordinates (same shape)."""
    return np.round(points * _ONE).astype(np.int32)


def _pixels(arr: np.ndarray) -> np.ndarray:
    """A 1-D view with one element per pixel (3-byte voids for RGB): fast fancy indexing."""
    if not arr.flags.c_contiguous:
        raise ValueError("expected a C-contiguous image")
    flat = arr.reshape(-1)
    return flat.view("V3") if arr.ndim == 3 else flat


def gather(arr: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """Pixels at flat indices ``idx`` as float32 (N×C)."""
    return _pixels(arr)[idx].view(np.uint8).reshape(len(idx), -1).astype(np.float32)


def scatter(arr: np.ndarray, idx: np.ndarray, values: np.ndarray) -> None:
    """Write float32 pixels (N×C) at flat indices, rounded and saturated (``values`` is consumed)."""
    np.clip(values, 0, 255, out=values)
    values += np.float32(0.5)
    u8 = np.ascontiguousarray(values.astype(np.uint8))
    _pixels(arr)[idx] = u8.view("V3").reshape(-1) if arr.ndim == 3 else u8.reshape(-1)


def blend(
    image: np.ndarray, coverage: np.ndarray, target, out: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Mix ``target`` into ``image`` by ``coverage``/255 where coverage >= ALPHA_MIN_U8; returns (out, mask).

    Works on the covered pixels only (defects are sparse), so cost follows the damage, not the
    image size. ``target`` is a grey level, a per-channel colour, or a function of the
    gathered float32 pixels (N×C) returning the target for each. Pixels outside the returned
    boolean mask are untouched. Writes into ``out`` when given (a contiguous copy of the image).
    """
    m = coverage >= ALPHA_MIN_U8
    out = np.ascontiguousarray(image).copy() if out is None else out
    idx = np.flatnonzero(m)
    if idx.size == 0:
        return out, m
    px = gather(out, idx)
    a = coverage.reshape(-1)[idx].astype(np.float32)[:, None] * np.float32(1 / 255)
    t = target(px) if callable(target) else np.asarray(target, np.float32)
    if out.ndim == 2 and np.ndim(t) == 1 and np.size(t) == 3:
        t = np.float32(np.dot(t, [0.299, 0.587, 0.114]))
    px += (t - px) * a
    scatter(out, idx, px)
    return out, m


def as_mask(m: np.ndarray) -> np.ndarray:
    """Boolean H×W to the uint8 0/255 mask convention."""
    return m.view(np.uint8) * np.uint8(255)


def wobbly_path(
    rng: np.random.Generator, p0: np.ndarray, p1: np.ndarray, n: int, wobble: float
) -> np.ndarray:
    """``n`` points from p0 to p1 with a smooth lateral offset of amplitude ``wobble`` (pixels).

    The offset is three low sine harmonics plus a little integrated noise; ``wobble`` 0 gives a
    straight segment and draws nothing from ``rng``.
    """
    t = np.arange(n) * (1.0 / max(n - 1, 1))
    d = p1 - p0
    line = p0[None, :] + t[:, None] * d[None, :]
    if wobble <= 0:
        return line
    length = float(np.hypot(*d)) or 1.0
    normal = np.array([-d[1], d[0]]) / length
    r = rng.random(6)
    k = np.array([1.0, 2.0, 3.0])
    offset = ((2 * r[:3] - 1) / k) @ np.sin(math.pi * k[:, None] * t[None, :] + 2 * math.pi * r[3:, None])
    offset += np.cumsum(rng.standard_normal(n)) * (0.3 / math.sqrt(n))
    return line + (offset * wobble)[:, None] * normal[None, :]


def jagged(rng: np.random.Generator, p0: np.ndarray, p1: np.ndarray, roughness: float, depth: int = 6) -> np.ndarray:
    """A midpoint-displacement (fractal) path from p0 to p1: torn-paper edges."""
    return jagged_path(rng, np.array([p0, p1], dtype=np.float64), roughness, depth)


@lru_cache(maxsize=8)
def _midpoint_basis(depth: int) -> np.ndarray:
    """Displacement of the 2**depth + 1 points per unit of each midpoint's noise, scales included.

    Midpoint displacement is linear in its gaussian draws: the midpoint created at level L
    moves the final path by a tent of half-width 2**(depth−L−1) around it, with deviation
    0.55**L (per unit roughness and chord length).
    """
    n = 1 << depth
    i = np.arange(n + 1)
    cols = []
    for level in range(depth):
        half = n >> (level + 1)
        for centre in range(half, n, 2 * half):
            cols.append(np.maximum(0.0, 1.0 - np.abs(i - centre) / half) * 0.55**level)
    basis = np.stack(cols, 1)
    basis.flags.writeable = False
    return basis


def jagged_path(rng: np.random.Generator, pts: np.ndarray, roughness: float, depth: int) -> np.ndarray:
    """Refine every segment of a polyline into a fractal (midpoint-displacement) line at once.

    Points move perpendicular to their segment by ``roughness``·(segment length) at the first
    level, 0.55 times less at each further level. Segment j of the input becomes points
    ``[j·2**depth, (j+1)·2**depth]`` of the output.
    """
    pts = np.asarray(pts, dtype=np.float64)
    seg = pts[1:] - pts[:-1]
    basis = _midpoint_basis(depth)
    disp = basis @ rng.standard_normal((basis.shape[1], len(seg)))  # (P, nseg), per unit chord
    t = np.linspace(0.0, 1.0, basis.shape[0])
    normal = np.stack([-seg[:, 1], seg[:, 0]], 1)  # not normalised: scales with the chord length
    out = pts[:-1, None, :] + t[None, :, None] * seg[:, None, :] + (disp.T * roughness)[..., None] * normal[:, None, :]
    return np.vstack([out[:, :-1].reshape(-1, 2), pts[-1:]])


def draw_polyline(canvas: np.ndarray, pts: np.ndarray, value: float, thickness: int) -> None:
    cv2.polylines(canvas, [fixed(pts)], False, float(value), max(1, int(thickness)), cv2.LINE_AA, SHIFT)
