"""Tone and colour: fading, sepia/yellowing, brightness-contrast-gamma, vignetting, grayscale."""

from __future__ import annotations

import colorsys
from functools import lru_cache

import cv2
import numpy as np

from ..image import LUMA
from ..operator import Operator, functional, register
from ..params import Float


def _linear(image: np.ndarray, matrix: np.ndarray, offset: float = 0.0) -> np.ndarray:
    """Apply ``matrix·rgb + offset`` per pixel in one OpenCV pass (rounded, saturated)."""
    m = np.hstack([matrix.astype(np.float32), np.full((3, 1), offset, np.float32)])
    return cv2.transform(image, m)


def _levels_lut(gain: float, offset: float) -> np.ndarray:
    return np.clip(np.rint(np.arange(256) * gain + offset), 0, 255).astype(np.uint8)


@functional
def fade(image: np.ndarray, desaturate: float, contrast_loss: float, lift: float, dim: float) -> np.ndarray:
    """Faded print: mix towards luma, compress contrast about mid-grey, lift blacks, dim whites.

    All four are linear, so they compose into one affine colour transform.
    """
    # contrast about 127.5, then levels: [0, 255] -> [lift·255, (1 − dim)·255]
    gain = (1 - contrast_loss) * (1 - lift - dim)
    offset = 127.5 * contrast_loss * (1 - lift - dim) + 255 * lift
    if image.ndim == 2:
        return cv2.LUT(image, _levels_lut(gain, offset))
    desat = (1 - desaturate) * np.eye(3) + desaturate * np.outer(np.ones(3), LUMA)
    return _linear(image, gain * desat, offset)


def tone_rgb(hue: float, saturation: float) -> np.ndarray:
    """An RGB tint of unit luma: multiplying a grey level by it keeps the level's luma."""
    rgb = np.array(colorsys.hsv_to_rgb((hue % 360) / 360, saturation, 1.0), dtype=np.float32)
    return rgb / float(rgb @ LUMA)


@functional
def sepia(image: np.ndarray, strength: float, hue: float, saturation: float) -> np.ndarray:
    """Toned print (sepia, yellowed, cyanotype): the luma recoloured by a tint, mixed by ``strength``."""
    toned = np.outer(tone_rgb(hue, saturation), LUMA)
    return _linear(image, (1 - strength) * np.eye(3) + strength * toned)


@lru_cache(maxsize=512)
def _bcg_lut(brightness: float, contrast: float, gamma: float) -> np.ndarray:
    x = np.arange(256, dtype=np.float64) / 255.0
    y = ((x**gamma - 0.5) * contrast + 0.5 + brightness) * 255.0
    lut = np.clip(np.rint(y), 0, 255).astype(np.uint8)
    lut.flags.writeable = False
    return lut


@functional
def brightness_contrast_gamma(image: np.ndarray, brightness: float, contrast: float, gamma: float) -> np.ndarray:
    """Per-value tone curve ``((x^gamma − ½)·contrast + ½ + brightness)`` applied through a LUT."""
    return cv2.LUT(image, _bcg_lut(brightness, contrast, gamma))


def _vignette_v1(
    image: np.ndarray, strength: float, radius: float, falloff: float, center_x: float, center_y: float
) -> np.ndarray:
    """Version 1 of :func:`vignette`, frozen: v1 records and datasets hold its output. It evaluated the
    factor on a grid of at most 64×64 spread corner to corner and let ``cv2.resize`` read it as cell
    centres (about 1.6 % narrower, a flat band at the borders), and a linear grid cannot follow the
    kink at the radius nor the cusp of a small ``falloff``: up to 77 levels off the formula."""
    h, w = image.shape[:2]
    gh, gw = min(h, 64), min(w, 64)
    ys = (np.linspace(0, h - 1, gh, dtype=np.float32) - (h - 1) / 2) / max(h / 2, 0.5) - np.float32(center_y * 2)
    xs = (np.linspace(0, w - 1, gw, dtype=np.float32) - (w - 1) / 2) / max(w / 2, 0.5) - np.float32(center_x * 2)
    r2 = (xs[None, :] ** 2 + ys[:, None] ** 2) * np.float32(0.5)
    t = np.minimum(np.power(r2 / np.float32(radius * radius), np.float32(falloff / 2)), np.float32(1))
    factor = np.float32(1) - np.float32(strength) * t
    if (gh, gw) != (h, w):
        factor = cv2.resize(factor, (w, h), interpolation=cv2.INTER_LINEAR)
    if image.ndim == 3:
        factor = cv2.merge([factor, factor, factor])
    return cv2.multiply(image, factor, dtype=cv2.CV_8U)


_BAND = 65536  # pixels per band of rows in vignette: its float32 work stays in cache


def _half_square(n: int, shift: float, radius: float) -> np.ndarray:
    """½·(c/radius)² along one axis, c each pixel's centre in half-lengths from the centre moved by ``shift``·n."""
    c = (np.arange(n) + 0.5 - n / 2) / (n / 2) - 2 * shift
    return (0.5 * c * c / (radius * radius)).astype(np.float32)


@functional
def vignette(
    image: np.ndarray, strength: float, radius: float, falloff: float, center_x: float, center_y: float
) -> np.ndarray:
    """Darkened corners: multiply by ``1 − strength·min(1, (r/radius)^falloff)``.

    r² = (x² + y²)/2, x and y the pixel's centre in half-widths and half-heights from the vignette's
    centre (the photo's, moved by ``center_x``·width and ``center_y``·height): r is 1 at the corners
    of a centred vignette. The factor is computed at every pixel, in float32: it has a kink at the
    radius and, for ``falloff`` under 1, a cusp at the centre, which an interpolated grid misses.
    """
    h, w = image.shape[:2]
    ys = _half_square(h, center_y, radius)
    xs = _half_square(w, center_x, radius) + np.float32(1e-30)  # u > 0: OpenCV's log of 0 is undefined
    rows = np.stack([ys, np.ones_like(ys)], axis=1)
    cols = np.stack([np.ones_like(xs), xs])
    out = np.empty(image.shape, np.uint8)  # C order whatever the input's: cv2 writes its bands in place
    band = max(1, _BAND // w)
    for y in range(0, h, band):
        u = rows[y : y + band] @ cols  # (r/radius)², the outer sum ys + xs as one product (faster on short rows)
        cv2.threshold(u, 1, 0, cv2.THRESH_TRUNC, dst=u)
        cv2.log(u, dst=u)
        u *= np.float32(falloff / 2)
        cv2.exp(u, dst=u)  # min(1, (r/radius)^falloff)
        factor = cv2.addWeighted(u, -strength, u, 0, 1, dst=u)
        if image.ndim == 3:
            factor = cv2.cvtColor(factor, cv2.COLOR_GRAY2RGB)
        cv2.multiply(image[y : y + band], factor, dst=out[y : y + band], dtype=cv2.CV_8U)
    return out


@functional
def grayscale(image: np.ndarray, amount: float) -> np.ndarray:
    """Mix towards luma by ``amount`` (1 = fully grey, still three channels)."""
    if image.ndim == 2 or amount <= 0:
        return image.copy()
    if amount >= 1:
        return cv2.cvtColor(cv2.cvtColor(image, cv2.COLOR_RGB2GRAY), cv2.COLOR_GRAY2RGB)
    return _linear(image, (1 - amount) * np.eye(3) + amount * np.outer(np.ones(3), LUMA))


@register
class Fade(Operator):
    """Colour fading: desaturation, contrast loss, lifted blacks, dimmed whites."""

    name = "fade"
    main = "contrast_loss"
    params = {
        "desaturate": Float(0.0, 1.0, default=(0.1, 0.6), doc="mix towards luma"),
        "contrast_loss": Float(0.0, 0.9, default=(0.05, 0.4), doc="contrast reduction about mid-grey"),
        "lift": Float(0.0, 0.5, default=(0.02, 0.15), doc="black level raised to this fraction"),
        "dim": Float(0.0, 0.5, default=(0.0, 0.1), doc="white level lowered by this fraction"),
    }
    example = {"desaturate": 0.6, "contrast_loss": 0.35, "lift": 0.12, "dim": 0.05}

    def _apply(self, image, p):
        return fade.__wrapped__(image, p["desaturate"], p["contrast_loss"], p["lift"], p["dim"])


@register
class Sepia(Operator):
    """Sepia toning or yellowing (hue ~30–50°); other hues give cyanotypes and colour casts."""

    name = "sepia"
    main = "strength"
    colour = True
    params = {
        "strength": Float(0.0, 1.0, default=(0.3, 0.9), doc="mix of the toned image"),
        "hue": Float(0.0, 360.0, default=(25.0, 50.0), doc="hue of the tone in degrees"),
        "saturation": Float(0.0, 1.0, default=(0.15, 0.45), doc="saturation of the tone"),
    }
    example = {"strength": 0.9, "hue": 35.0, "saturation": 0.4}

    def _apply(self, image, p):
        return sepia.__wrapped__(image, p["strength"], p["hue"], p["saturation"])


@register
class BrightnessContrastGamma(Operator):
    """Exposure errors: brightness offset, contrast gain and gamma."""

    name = "brightness_contrast_gamma"
    main = "gamma"
    params = {
        "brightness": Float(-0.5, 0.5, default=(-0.1, 0.1), doc="offset, fraction of full scale"),
        "contrast": Float(0.2, 3.0, default=(0.7, 1.2), doc="gain about mid-grey"),
        "gamma": Float(0.2, 5.0, default=(0.7, 1.5), log=True, doc="exponent of the tone curve"),
    }
    example = {"brightness": 0.08, "contrast": 0.7, "gamma": 1.6}

    def _apply(self, image, p):
        return brightness_contrast_gamma.__wrapped__(image, p["brightness"], p["contrast"], p["gamma"])


@register
class Vignette(Operator):
    """Lens vignetting: corners darker than the centre."""

    name = "vignette"
    main = "strength"
    version = 2  # v2: the formula at every pixel (v1: a 64×64 grid, misaligned, up to 77 levels off at sharp settings)
    earlier = {1: "_apply_v1"}
    params = {
        "strength": Float(0.0, 1.0, default=(0.15, 0.5), doc="darkening at and beyond the radius"),
        "radius": Float(0.2, 2.0, default=(0.8, 1.4), doc="distance of full darkening, 1 = corner"),
        "falloff": Float(0.5, 6.0, default=(1.5, 3.0), doc="exponent of the radial profile"),
        "center_x": Float(-0.3, 0.3, default=(-0.1, 0.1), doc="horizontal shift of the centre, fraction of width"),
        "center_y": Float(-0.3, 0.3, default=(-0.1, 0.1), doc="vertical shift of the centre, fraction of height"),
    }
    example = {"strength": 0.6, "radius": 1.0, "falloff": 2.0, "center_x": 0.0, "center_y": 0.0}

    def _apply(self, image, p):
        return vignette.__wrapped__(image, p["strength"], p["radius"], p["falloff"], p["center_x"], p["center_y"])

    def _apply_v1(self, image, p):
        return _vignette_v1(image, p["strength"], p["radius"], p["falloff"], p["center_x"], p["center_y"])


@register
class Grayscale(Operator):
    """Conversion to monochrome (kept as three channels for RGB input)."""

    name = "grayscale"
    main = "amount"
    params = {"amount": Float(0.0, 1.0, default=1.0, doc="1 = fully grey")}
    example = {"amount": 1.0}

    def _apply(self, image, p):
        return grayscale.__wrapped__(image, p["amount"])
