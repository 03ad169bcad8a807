"""Halftone: the dot screen of photos reproduced in print (newspapers, postcards), as scanned."""

from __future__ import annotations

import math

import cv2
import numpy as np

from ..image import round_to_uint8
from ..operator import Operator, functional, register
from ..params import Bool, Float

_SCREEN_ANGLES = (15.0, 75.0, 0.0)  # classic C, M, Y screen angles, offset by the ``angle`` param


def _screen(h: int, w: int, cell: float, angle: float) -> np.ndarray:
    """A rotated cosine dot screen in [0, 1] with period ``cell`` pixels."""
    a = math.radians(angle)
    ys, xs = np.arange(h, dtype=np.float32)[:, None], np.arange(w, dtype=np.float32)[None, :]
    k = np.float32(2 * math.pi / cell)
    u = (xs * np.float32(math.cos(a)) + ys * np.float32(math.sin(a))) * k
    v = (ys * np.float32(math.cos(a)) - xs * np.float32(math.sin(a))) * k
    return (np.cos(u) + np.cos(v)) * np.float32(0.25) + np.float32(0.5)


@functional
def halftone(
    image: np.ndarray, cell_px: float, angle: float, strength: float, softness: float, color_screens: bool
) -> np.ndarray:
    """Threshold each channel against a dot screen (soft edge ``softness``), mix by ``strength``.

    With ``color_screens`` each RGB channel gets its own screen angle (CMY-like rosettes);
    otherwise one screen serves all channels.
    """
    h, w = image.shape[:2]
    f = image.astype(np.float32) * np.float32(1 / 255)
    soft = np.float32(max(softness, 1e-3))
    if image.ndim == 2 or not color_screens:
        s = _screen(h, w, cell_px, angle)
        s = s if image.ndim == 2 else s[..., None]
    else:
        s = np.stack([_screen(h, w, cell_px, angle + d) for d in _SCREEN_ANGLES], axis=-1)
    dots = np.clip((f - s) / soft + np.float32(0.5), 0, 1)
    if softness > 0.05:
        dots = cv2.GaussianBlur(dots, (0, 0), softness * cell_px * 0.5)
    out = f + (dots - f) * np.float32(strength)
    out *= np.float32(255)
    return round_to_uint8(out)


@register
class Halftone(Operator):
    """Printed halftone dots (newspaper, postcard or book reproductions)."""

    name = "halftone"
    main = "cell_px"
    params = {
        "cell_px": Float(2.0, 16.0, default=(3.0, 6.0), doc="dot pitch in pixels"),
        "angle": Float(0.0, 90.0, default=(0.0, 45.0), doc="screen angle in degrees"),
        "strength": Float(0.0, 1.0, default=(0.4, 1.0), doc="mix of the screened image"),
        "softness": Float(0.0, 1.0, default=(0.05, 0.4), doc="dot edge softness (ink spread, scan blur)"),
        "color_screens": Bool(default=0.3, doc="one screen angle per channel"),
    }
    example = {"cell_px": 4.0, "angle": 45.0, "strength": 0.7, "softness": 0.3, "color_screens": False}

    def _apply(self, image, p):
        return halftone.__wrapped__(image, p["cell_px"], p["angle"], p["strength"], p["softness"], p["color_screens"])
