"""Creases and folds: a ridge with highlight and shadow, worn emulsion, optional crack network."""

from __future__ import annotations

import math

import cv2
import numpy as np

from ..operator import STRUCTURED, Operator, functional, register
from ..params import Float, Int
from ..rand import pixel_rng
from ._draw import SHIFT, as_mask, blend, draw_polyline, fixed, gather, scatter, wobbly_path


def _fold_line(rng: np.random.Generator, h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """End points of a fold: mostly near-horizontal or near-vertical across the photo, else a corner fold."""
    u = rng.random()
    if u < 0.4:
        y0, y1 = rng.uniform(0.1, 0.9) * h, rng.uniform(0.1, 0.9) * h
        y1 = y0 + (y1 - y0) * 0.15
        return np.array([-2.0, y0]), np.array([w + 2.0, y1])
    if u < 0.8:
        x0, x1 = rng.uniform(0.1, 0.9) * w, rng.uniform(0.1, 0.9) * w
        x1 = x0 + (x1 - x0) * 0.15
        return np.array([x0, -2.0]), np.array([x1, h + 2.0])
    # a diagonal fold cutting off a corner
    a, b = rng.uniform(0.15, 0.6) * w, rng.uniform(0.15, 0.6) * h
    corner = int(rng.integers(4))
    sx, sy = (1, -1)[corner % 2], (1, -1)[corner // 2]
    ox, oy = (0, w)[corner % 2], (0, h)[corner // 2]
    return np.array([ox + sx * a, oy - 2.0 * sy]), np.array([ox - 2.0 * sx, oy + sy * b])


def _crack_network(
    rng: np.random.Generator, light: np.ndarray, dark: np.ndarray, start: np.ndarray, direction: float,
    length: float, depth: int,
) -> None:
    """A jagged crack from ``start``: straight runs with sharp kinks, branching up to ``depth`` levels.

    Cracks in a gelatin emulsion show white (paper) with a thin dark shadow along one side.
    """
    pts = [start]
    deviation = 0.0
    travelled = 0.0
    while travelled < length:
        # mean-reverting deviation from the crack's direction: kinked, yet going somewhere
        deviation = 0.6 * deviation + (rng.normal(0, 0.15) if rng.random() > 0.3 else rng.normal(0, 0.8))
        heading = direction + deviation
        step = rng.uniform(2.0, 6.0)
        pts.append(pts[-1] + step * np.array([math.cos(heading), math.sin(heading)]))
        travelled += step
        if depth > 0 and rng.random() < 0.04:
            side = heading + rng.choice([-1.0, 1.0]) * rng.uniform(0.6, 1.4)
            _crack_network(rng, light, dark, pts[-1], side, (length - travelled) * rng.uniform(0.3, 0.8), depth - 1)
    path = np.array(pts)
    a = rng.uniform(0.6, 1.0)
    draw_polyline(light, path, round(255 * a), 1)
    draw_polyline(dark, path + rng.choice([-1.0, 1.0], size=2), round(255 * a * 0.5), 1)


@functional
def creases(
    image: np.ndarray, count: int, width_px: float, strength: float, wear: float, cracks: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Fold the photo ``count`` times; returns (image, mask).

    Across each fold line the shading follows a derivative-of-gaussian of width ``width_px``
    (windowed to vanish two widths away): one side catches light, the other is in shadow
    (amplitude ``strength``). ``wear`` whitens a broken thin line along the ridge where
    emulsion flaked off; ``cracks`` grows jagged white cracks with a dark edge from the ridge,
    as on the cracked prints of old_w_scratch. Only the band around each fold is computed.
    """
    rng = pixel_rng(seed)
    h, w = image.shape[:2]
    shade = np.zeros((h, w), np.float32)
    white = np.zeros((h, w), np.uint8)
    shadow = np.zeros((h, w), np.uint8)
    sigma = max(width_px, 0.5)
    for _ in range(count):
        p0, p1 = _fold_line(rng, h, w)
        pts = wobbly_path(rng, p0, p1, 24, 0.01 * min(h, w))
        d = p1 - p0
        length = float(np.hypot(*d)) or 1.0
        ux, uy = d[0] / length, d[1] / length
        # pixels within two widths of the bent fold: rasterise the band, then work on those only
        band = np.zeros((h, w), np.uint8)
        cv2.polylines(band, [fixed(pts)], False, 1, int(4 * sigma) + 3, cv2.LINE_8, SHIFT)
        flat = np.flatnonzero(band)
        ys, xs = np.divmod(flat, w)
        rx, ry = xs.astype(np.float32) - np.float32(p0[0]), ys.astype(np.float32) - np.float32(p0[1])
        t = (rx * np.float32(ux) + ry * np.float32(uy)) / np.float32(length)
        wob = (pts - (p0[None, :] + np.linspace(0, 1, len(pts))[:, None] * d[None, :])) @ np.array([-uy, ux])
        dist = rx * np.float32(-uy) + ry * np.float32(ux)
        dist -= np.interp(np.clip(t, 0, 1), np.linspace(0, 1, len(pts)), wob).astype(np.float32)
        z = dist * np.float32(1 / sigma)
        window = np.clip(np.float32(1) - z * z * np.float32(0.25), 0, None)
        amp = np.float32(strength * 255 * rng.uniform(0.7, 1.0) * (1.0 if rng.random() < 0.5 else -1.0))
        # derivative of gaussian (peak near |z| = 1), windowed to vanish at |z| = 2
        shade.reshape(-1)[flat] += amp * np.float32(1.6487) * z * np.exp(np.float32(-0.5) * z * z) * window * window
        if wear > 0:
            starts = np.concatenate([[0], np.cumsum(rng.integers(1, 4, size=len(pts)))])
            starts = starts[starts < len(pts) - 1].tolist() + [len(pts) - 1]
            use = rng.random(len(starts)) < wear
            vals = np.round(255 * rng.uniform(0.25, 0.7, len(starts))).astype(int).tolist()
            fp = fixed(pts)
            for j in range(len(starts) - 1):
                if use[j]:
                    cv2.polylines(white, [fp[starts[j] : starts[j + 1] + 1]], False, vals[j], 1, cv2.LINE_AA, SHIFT)
        if cracks > 0:
            for _ in range(int(rng.poisson(cracks * length / 100))):
                s = pts[int(rng.integers(len(pts)))]
                heading = math.atan2(ux, -uy) + (math.pi if rng.random() < 0.5 else 0.0) + rng.normal(0, 0.5)
                _crack_network(rng, white, shadow, s, heading, rng.uniform(0.03, 0.18) * min(h, w), 2)
    sel = np.abs(shade) >= 0.5  # below half a level nothing changes after rounding
    out = image.copy()
    idx = np.flatnonzero(sel)
    if idx.size:
        scatter(out, idx, gather(out, idx) + shade.reshape(-1)[idx][:, None])
    shadow[white > 0] = 0
    out, m_dark = blend(image, shadow, np.float32(rng.uniform(20, 60)), out=out)
    out, m_white = blend(image, white, np.float32(rng.uniform(225, 255)), out=out)
    return out, as_mask(sel | m_dark | m_white)


@register
class Creases(Operator):
    """Creases and folds: ridge highlight and shadow, worn emulsion, crack networks."""

    name = "creases"
    main = "count"
    kind = STRUCTURED
    params = {
        "count": Int(1, 6, default=(1, 2), doc="number of folds"),
        "width_px": Float(0.5, 30.0, default=(1.0, 3.0), doc="width of the ridge shading in pixels"),
        "strength": Float(0.0, 0.6, default=(0.04, 0.2), doc="highlight/shadow amplitude, fraction of full scale"),
        "wear": Float(0.0, 1.0, default=(0.2, 0.8), doc="share of the ridge with flaked-off emulsion"),
        "cracks": Float(0.0, 3.0, default=(0.0, 0.8), doc="crack density along the fold"),
    }
    seeded = True
    example = {"count": 2, "width_px": 2.0, "strength": 0.2, "wear": 0.6, "cracks": 1.5}

    def _apply(self, image, p):
        return creases.__wrapped__(image, p["count"], p["width_px"], p["strength"], p["wear"], p["cracks"], p["seed"])
