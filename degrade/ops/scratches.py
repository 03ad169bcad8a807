"""Scratches: thin light or dark curves, of varying width and opacity, some crossing the photo."""

from __future__ import annotations

import math

import cv2
import numpy as np

from ..operator import STRUCTURED, Operator, functional, register
from ..params import Float, Int
from ..rand import pixel_rng
from ._draw import SHIFT, as_mask, blend, fixed


@functional
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

    Each scratch is a smooth curve (lateral ``wobble`` as a fraction of the short side) through
    a random point: a share ``crossing`` run across the whole photo, the others are
    log-uniformly 3–40 % of the diagonal (hairlines are far more common than long gouges). A share ``vertical`` are
    near-vertical like film-base scratches, the rest at any angle like print abrasions. Light
    scratches (share ``light``: emulsion scraped down to the paper) carry a faint dark relief
    edge beside them. Width varies around ``width_px`` and opacity around ``opacity`` along the
    length, with occasional breaks.
    """
    rng = pixel_rng(seed)
    h, w = image.shape[:2]
    diag, short = math.hypot(h, w), min(h, w)
    n = count
    u = rng.random((n, 4))
    angle = np.where(u[:, 0] < vertical, math.pi / 2 + rng.normal(0, 0.06, n), rng.uniform(0, math.pi, n))
    centre = rng.random((n, 2)) * np.array([w, h])
    half = np.where(u[:, 1] < crossing, diag, diag * np.exp(rng.uniform(math.log(0.015), math.log(0.2), n)))
    along = np.stack([np.cos(angle), np.sin(angle)], 1)
    across = np.stack([-along[:, 1], along[:, 0]], 1)
    # _POINTS points per scratch along its length, a smooth lateral offset (three harmonics and
    # a little integrated noise), in _SEGS segments that each get a width and an opacity.
    t = np.linspace(-1.0, 1.0, _POINTS)
    r = rng.random((n, 6))
    k = np.array([1.0, 2.0, 3.0])
    waves = np.sin(math.pi * k[None, :, None] * (t[None, None, :] + 1) / 2 + 2 * math.pi * r[:, 3:, None])
    offset = np.einsum("nk,nkt->nt", (2 * r[:, :3] - 1) / k, waves)
    offset += np.cumsum(rng.standard_normal((n, _POINTS)), axis=1) * (0.3 / math.sqrt(_POINTS))
    offset *= wobble * short
    pts = (
        centre[:, None, :]
        + (t[None, :] * half[:, None])[..., None] * along[:, None, :]
        + offset[..., None] * across[:, None, :]
    )
    is_light = u[:, 2] < light
    base_w = np.maximum(0.5, rng.normal(width_px, width_px * 0.25, n))
    base_a = np.clip(rng.normal(opacity, 0.15, n), 0.1, 1.0)
    seg_w = np.maximum(0.5, base_w[:, None] * rng.uniform(0.6, 1.3, (n, _SEGS)))
    seg_a = base_a[:, None] * rng.uniform(0.5, 1.0, (n, _SEGS)) * np.minimum(1.0, seg_w)
    keep = rng.random((n, _SEGS)) > 0.1  # about one segment in ten is a break
    thick = np.clip(np.round(seg_w), 1, 8).astype(int)
    level = np.clip(np.round(seg_a * _LEVELS), 1, _LEVELS).astype(int)
    relief_level = np.maximum(1, np.round(seg_a * _LEVELS * 0.35)).astype(int)
    relief = across * np.where(u[:, 3] < 0.5, 1.0, -1.0)[:, None] * np.maximum(1.0, base_w * 0.8)[:, None]
    fp, fr = fixed(pts), fixed(pts + relief[:, None, :])
    # One polylines call per (layer, width, opacity level) instead of one per segment.
    groups: dict[tuple[bool, int, int], list[np.ndarray]] = {}
    step = (_POINTS - 1) // _SEGS
    for i, j in zip(*np.nonzero(keep)):
        a, b = j * step, (j + 1) * step + 1
        groups.setdefault((bool(is_light[i]), int(thick[i, j]), int(level[i, j])), []).append(fp[i, a:b])
        if is_light[i]:  # the relief: a faint dark edge beside scraped-off emulsion
            groups.setdefault((False, 1, int(relief_level[i, j])), []).append(fr[i, a:b])
    layers = {False: np.zeros((h, w), np.uint8), True: np.zeros((h, w), np.uint8)}
    for (lit, th, lv), lines in sorted(groups.items()):
        cv2.polylines(layers[lit], lines, False, round(255 * lv / _LEVELS), th, cv2.LINE_AA, SHIFT)
    out, mask = image.copy(), np.zeros((h, w), bool)
    for lit, tone in ((False, rng.uniform(10, 60)), (True, rng.uniform(215, 250))):
        cov = layers[lit]
        if not cov.any():
            continue
        # a touch of softness: real scratches have fuzzy, not vector-sharp, edges
        out, m = blend(image, cv2.GaussianBlur(cov, (3, 3), 0.5), np.float32(tone), out=out)
        mask |= m
    return out, as_mask(mask)


_POINTS, _SEGS, _LEVELS = 65, 8, 16


@register
class Scratches(Operator):
    """Scratches: thin light or dark curves, some crossing the whole photo."""

    name = "scratches"
    main = "count"
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
        return scratches.__wrapped__(
            image, p["count"], p["width_px"], p["opacity"], p["light"], p["crossing"], p["vertical"], p["wobble"], p["seed"]
        )
