"""Noise operators: gaussian, shot (Poisson), speckle, salt-and-pepper and film grain."""

from __future__ import annotations

import math
from functools import lru_cache

import cv2
import numpy as np

from ..operator import Operator, functional, register
from ..params import Bool, Float
from ..rand import normal, pixel_rng, uniform16


def _noise_shape(image: np.ndarray, per_channel: bool) -> tuple[int, ...]:
    return image.shape if per_channel else image.shape[:2]


def _match_channels(noise: np.ndarray, image: np.ndarray) -> np.ndarray:
    """Shared noise (H×W) repeated over the channels of an RGB image; OpenCV adds like shapes only."""
    return cv2.merge([noise, noise, noise]) if image.ndim == 3 and noise.ndim == 2 else noise


def _add(image: np.ndarray, noise: np.ndarray) -> np.ndarray:
    """``image + noise`` rounded and saturated to uint8 in one OpenCV pass."""
    return cv2.add(image, _match_channels(noise, image), dtype=cv2.CV_8U)


@functional
def gaussian_noise(image: np.ndarray, sigma: float, seed: int, per_channel: bool = True) -> np.ndarray:
    """Additive white gaussian noise; ``sigma`` in units of full scale (0.1 = 25.5 levels)."""
    n = normal(pixel_rng(seed), _noise_shape(image, per_channel))
    n *= np.float32(sigma * 255.0)
    return _add(image, n)


@lru_cache(maxsize=256)
def _shot_std_lut(peak: float) -> np.ndarray:
    lut = np.sqrt(np.arange(256, dtype=np.float64) * (255.0 / peak)).astype(np.float32).reshape(1, 256)
    lut.flags.writeable = False
    return lut


@functional
def poisson_noise(image: np.ndarray, peak: float, seed: int, per_channel: bool = True) -> np.ndarray:
    """Shot noise of a sensor that counts ``peak`` photons at full white.

    Uses the variance-matched gaussian (variance = mean, per-level standard deviation from a
    lookup table), which is exact to within a level for counts above ~10 and 25x faster than
    drawing Poisson variates.
    """
    n = _match_channels(normal(pixel_rng(seed), _noise_shape(image, per_channel)), image)
    n *= cv2.LUT(image, _shot_std_lut(float(peak)))
    return cv2.add(image, n, dtype=cv2.CV_8U)


@functional(op="speckle")
def speckle_noise(image: np.ndarray, sigma: float, seed: int, per_channel: bool = True) -> np.ndarray:
    """Multiplicative noise ``x + x·n·sigma`` (as in the BOPBtL synthesis)."""
    m = normal(pixel_rng(seed), _noise_shape(image, per_channel))
    m *= np.float32(sigma)
    m += np.float32(1.0)
    return cv2.multiply(image, _match_channels(m, image), dtype=cv2.CV_8U)


@functional
def salt_pepper(image: np.ndarray, amount: float, salt_ratio: float, seed: int, per_channel: bool = True) -> np.ndarray:
    """Replace a fraction ``amount`` of values by 255 (salt, share ``salt_ratio``) or 0 (pepper).

    Draws 16-bit uniforms (probabilities resolved to 1/65536).
    """
    u = uniform16(pixel_rng(seed), _noise_shape(image, per_channel))
    if u.ndim < image.ndim:
        u = np.broadcast_to(u[..., None], image.shape)
    out = image.copy()
    out[u < round(amount * 65536)] = 0
    out[u < round(amount * salt_ratio * 65536)] = 255
    return out


_LEVELS = np.arange(256) / 255.0
_GRAIN_WEIGHT = (np.sqrt(_LEVELS * (1 - _LEVELS)) * 1.6 + 0.2).astype(np.float32)


@functional
def film_grain(
    image: np.ndarray, strength: float, grain_px: float, seed: int, monochrome: bool = True
) -> np.ndarray:
    """Spatially correlated, luminance-dependent grain.

    White noise drawn on a grid ``grain_px`` times coarser than the image (two cells more on each
    side, so that the borders interpolate like the interior) is interpolated up (correlated clumps
    of about that size), divided by the deviation bicubic interpolation leaves on average, and
    scaled by ``strength``·255 at mid-grey, fading towards pure black and white (weight
    0.2 + 1.6·sqrt(L(1−L))) as silver grain does.
    """
    (h, w), (gh, gw), channels = _grain_grid(image, grain_px, monochrome)
    n = normal(pixel_rng(seed), (gh + 4, gw + 4, channels) if channels > 1 else (gh + 4, gw + 4))
    if (gh, gw) == (h, w):
        n = np.ascontiguousarray(n[2:-2, 2:-2])
    else:  # pixel centres as cv2.resize aligns them, shifted past the margin
        sx, sy = gw / w, gh / h
        m = np.array([[sx, 0, 0.5 * sx + 1.5], [0, sy, 0.5 * sy + 1.5]], np.float32)
        n = cv2.warpAffine(n, m, (w, h), flags=cv2.INTER_CUBIC | cv2.WARP_INVERSE_MAP)
    return _add_grain(image, n, strength * 255.0 / math.sqrt(_cubic_variance(w, gw) * _cubic_variance(h, gh)))


def _grain_grid(image: np.ndarray, grain_px: float, monochrome: bool) -> tuple[tuple[int, int], tuple[int, int], int]:
    """The image's size, the coarse grid's (``grain_px`` times coarser, at least one cell) and the grain's channels."""
    h, w = image.shape[:2]
    return (h, w), (max(1, round(h / grain_px)), max(1, round(w / grain_px))), 1 if (monochrome or image.ndim == 2) else 3


def _add_grain(image: np.ndarray, n: np.ndarray, scale: float) -> np.ndarray:
    """``image`` plus the unit field ``n`` times ``scale``, weighted by luminance as silver grain is."""
    lum = image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    weight = cv2.LUT(lum, _GRAIN_WEIGHT.reshape(1, 256))
    weight *= np.float32(scale)
    if n.ndim == 3:
        n *= weight[..., None]
    else:
        n *= weight
    return _add(image, n)


@lru_cache(maxsize=256)
def _cubic_variance(size: int, cells: int) -> float:
    """Mean over ``size`` pixels of the variance bicubic interpolation (a = −0.75, as OpenCV) leaves of
    unit white noise on ``cells`` cells: the sum of the squared weights at each pixel's phase."""
    if size == cells:
        return 1.0
    t = (np.arange(size) + 0.5) * (cells / size) - 0.5
    d = np.abs((t - np.floor(t))[:, None] - np.array([-1.0, 0.0, 1.0, 2.0]))  # distances to the 4 taps
    a = -0.75
    wts = np.where(d <= 1, ((a + 2) * d - (a + 3)) * d * d + 1, np.where(d < 2, ((d - 5) * d + 8) * d * a - 4 * a, 0.0))
    return float(np.mean(np.sum(wts * wts, axis=1)))


def _film_grain_v1(
    image: np.ndarray, strength: float, grain_px: float, seed: int, monochrome: bool = True
) -> np.ndarray:
    """Version 1 of :func:`film_grain`, frozen: v1 records and datasets hold its output. Its last rows
    and columns had about 20 % more grain (the grid's border replicated), and it divided by the
    deviation of the drawn field itself, which on a tiny image (1×2 at ``grain_px`` 1) saturated."""
    (h, w), (gh, gw), channels = _grain_grid(image, grain_px, monochrome)
    n = normal(pixel_rng(seed), (gh, gw, channels) if channels > 1 else (gh, gw))
    if (gh, gw) != (h, w):
        n = cv2.resize(n, (w, h), interpolation=cv2.INTER_CUBIC)
    sd = float(n.std())
    return _add_grain(image, n, strength * 255.0 / (sd if sd > 1e-6 else 1.0))


@register
class GaussianNoise(Operator):
    """Additive white gaussian noise (sensor/scan noise)."""

    name = "gaussian_noise"
    main = "sigma"
    params = {
        "sigma": Float(0.0, 0.5, default=(0.02, 0.2), doc="standard deviation, fraction of full scale"),
        "per_channel": Bool(default=True, doc="independent noise per channel (colour noise)"),
    }
    seeded = True
    example = {"sigma": 0.12}

    def _apply(self, image, p):
        return gaussian_noise.__wrapped__(image, p["sigma"], p["seed"], p["per_channel"])


@register
class PoissonNoise(Operator):
    """Photon shot noise: variance proportional to intensity."""

    name = "poisson_noise"
    main = "peak"
    params = {
        "peak": Float(1.0, 1000.0, default=(10.0, 300.0), log=True, doc="photons counted at full white"),
        "per_channel": Bool(default=True, doc="independent noise per channel"),
    }
    seeded = True
    example = {"peak": 8.0}

    def _apply(self, image, p):
        return poisson_noise.__wrapped__(image, p["peak"], p["seed"], p["per_channel"])


@register
class SpeckleNoise(Operator):
    """Multiplicative gaussian noise, stronger in bright areas."""

    name = "speckle"
    main = "sigma"
    params = {
        "sigma": Float(0.0, 1.0, default=(0.02, 0.2), doc="standard deviation of the multiplier"),
        "per_channel": Bool(default=True, doc="independent noise per channel"),
    }
    seeded = True
    example = {"sigma": 0.25}

    def _apply(self, image, p):
        return speckle_noise.__wrapped__(image, p["sigma"], p["seed"], p["per_channel"])


@register
class SaltPepper(Operator):
    """Impulse noise: isolated white and black values."""

    name = "salt_pepper"
    main = "amount"
    params = {
        "amount": Float(0.0, 0.5, default=(0.0, 0.01), doc="fraction of values replaced"),
        "salt_ratio": Float(0.0, 1.0, default=(0.3, 0.8), doc="share of replaced values set to white"),
        "per_channel": Bool(default=True, doc="replace channel values independently (as BOPBtL)"),
    }
    seeded = True
    example = {"amount": 0.03, "salt_ratio": 0.5}

    def _apply(self, image, p):
        return salt_pepper.__wrapped__(image, p["amount"], p["salt_ratio"], p["seed"], p["per_channel"])


@register
class FilmGrain(Operator):
    """Film grain: clumped, luminance-dependent, monochrome or colour."""

    name = "film_grain"
    main = "strength"
    version = 2  # v2: borders grain like the interior; divided by the expected deviation, not the drawn one
    earlier = {1: "_apply_v1"}
    params = {
        "strength": Float(0.0, 1.0, default=(0.03, 0.15), doc="grain deviation at mid-grey, fraction of full scale"),
        "grain_px": Float(1.0, 8.0, default=(1.0, 2.5), doc="clump size in pixels"),
        "monochrome": Bool(default=0.8, doc="same grain on every channel (silver) or per channel (dye clouds)"),
    }
    seeded = True
    example = {"strength": 0.07, "grain_px": 1.5, "monochrome": True}

    def _apply(self, image, p):
        return film_grain.__wrapped__(image, p["strength"], p["grain_px"], p["seed"], p["monochrome"])

    def _apply_v1(self, image, p):
        return _film_grain_v1(image, p["strength"], p["grain_px"], p["seed"], p["monochrome"])
