"""Noise operators: gaussian, shot (Poisson), speckle, salt-and-pepper and film grain."""

from __future__ import annotations

import cv2
import numpy as np

from ..image import luminance, to_uint8
from ..operator import Operator, register
from ..params import Bool, Float
from ..rand import normal, pixel_rng, uniform


def _noise_shape(image: np.ndarray, per_channel: bool) -> tuple[int, ...]:
    return image.shape if per_channel else image.shape[:2]


def _add(image: np.ndarray, noise: np.ndarray) -> np.ndarray:
    f = image.astype(np.float32)
    if noise.ndim < f.ndim:
        noise = noise[..., None]
    f += noise
    return to_uint8(f)


def gaussian_noise(image: np.ndarray, sigma: float, seed: int, per_channel: bool = True) -> np.ndarray:
    """Additive white gaussian noise; ``sigma`` in units of full scale (0.1 = 25.5 levels)."""
    n = normal(pixel_rng(seed), _noise_shape(image, per_channel))
    n *= np.float32(sigma * 255.0)
    return _add(image, n)


def poisson_noise(image: np.ndarray, peak: float, seed: int, per_channel: bool = True) -> np.ndarray:
    """Shot noise of a sensor that counts ``peak`` photons at full white.

    Uses the variance-matched gaussian (variance = mean), which is exact to within a level for
    counts above ~10 and 25x faster than drawing Poisson variates.
    """
    f = image.astype(np.float32)
    n = normal(pixel_rng(seed), _noise_shape(image, per_channel))
    if n.ndim < f.ndim:
        n = n[..., None]
    std = np.sqrt(f * np.float32(255.0 / peak))
    f += std * n
    return to_uint8(f)


def speckle_noise(image: np.ndarray, sigma: float, seed: int, per_channel: bool = True) -> np.ndarray:
    """Multiplicative noise ``x + x·n·sigma`` (as in the BOPBtL synthesis)."""
    f = image.astype(np.float32)
    n = normal(pixel_rng(seed), _noise_shape(image, per_channel))
    n *= np.float32(sigma)
    if n.ndim < f.ndim:
        n = n[..., None]
    f += f * n
    return to_uint8(f)


def salt_pepper(image: np.ndarray, amount: float, salt_ratio: float, seed: int, per_channel: bool = True) -> np.ndarray:
    """Replace a fraction ``amount`` of values by 255 (salt, share ``salt_ratio``) or 0 (pepper)."""
    u = uniform(pixel_rng(seed), _noise_shape(image, per_channel))
    if u.ndim < image.ndim:
        u = np.broadcast_to(u[..., None], image.shape)
    out = image.copy()
    out[u < amount] = 0
    out[u < amount * salt_ratio] = 255
    return out


def film_grain(
    image: np.ndarray, strength: float, grain_px: float, seed: int, monochrome: bool = True
) -> np.ndarray:
    """Spatially correlated, luminance-dependent grain.

    White noise drawn on a grid ``grain_px`` times coarser than the image is interpolated up
    (correlated clumps of about that size), renormalised to unit deviation, and scaled by
    ``strength``·255 at mid-grey, fading towards pure black and white as silver grain does.
    """
    h, w = image.shape[:2]
    gh, gw = max(1, round(h / grain_px)), max(1, round(w / grain_px))
    channels = 1 if (monochrome or image.ndim == 2) else 3
    n = normal(pixel_rng(seed), (gh, gw, channels) if channels > 1 else (gh, gw))
    if (gh, gw) != (h, w):
        n = cv2.resize(n, (w, h), interpolation=cv2.INTER_CUBIC)
    sd = float(n.std())
    lum = luminance(image) * np.float32(1 / 255)
    weight = np.sqrt(np.clip(lum * (1 - lum), 0, None)) * np.float32(1.6) + np.float32(0.2)
    scale = np.float32(strength * 255.0 / (sd if sd > 1e-6 else 1.0))
    if n.ndim == 3:
        n *= (weight * scale)[..., None]
    else:
        n *= weight * scale
    return _add(image, n)


@register
class GaussianNoise(Operator):
    """Additive white gaussian noise (sensor/scan noise)."""

    name = "gaussian_noise"
    params = {
        "sigma": Float(0.0, 0.5, default=(0.02, 0.2), doc="standard deviation, fraction of full scale"),
        "per_channel": Bool(default=True, doc="independent noise per channel (colour noise)"),
    }
    seeded = True
    example = {"sigma": 0.12}

    def _apply(self, image, p):
        return gaussian_noise(image, p["sigma"], p["seed"], p["per_channel"])


@register
class PoissonNoise(Operator):
    """Photon shot noise: variance proportional to intensity."""

    name = "poisson_noise"
    params = {
        "peak": Float(1.0, 1000.0, default=(10.0, 300.0), log=True, doc="photons counted at full white"),
        "per_channel": Bool(default=True, doc="independent noise per channel"),
    }
    seeded = True
    example = {"peak": 8.0}

    def _apply(self, image, p):
        return poisson_noise(image, p["peak"], p["seed"], p["per_channel"])


@register
class SpeckleNoise(Operator):
    """Multiplicative gaussian noise, stronger in bright areas."""

    name = "speckle"
    params = {
        "sigma": Float(0.0, 1.0, default=(0.02, 0.2), doc="standard deviation of the multiplier"),
        "per_channel": Bool(default=True, doc="independent noise per channel"),
    }
    seeded = True
    example = {"sigma": 0.25}

    def _apply(self, image, p):
        return speckle_noise(image, p["sigma"], p["seed"], p["per_channel"])


@register
class SaltPepper(Operator):
    """Impulse noise: isolated white and black values."""

    name = "salt_pepper"
    params = {
        "amount": Float(0.0, 0.5, default=(0.0, 0.01), doc="fraction of values replaced"),
        "salt_ratio": Float(0.0, 1.0, default=(0.3, 0.8), doc="share of replaced values set to white"),
        "per_channel": Bool(default=True, doc="replace channel values independently (as BOPBtL)"),
    }
    seeded = True
    example = {"amount": 0.03, "salt_ratio": 0.5}

    def _apply(self, image, p):
        return salt_pepper(image, p["amount"], p["salt_ratio"], p["seed"], p["per_channel"])


@register
class FilmGrain(Operator):
    """Film grain: clumped, luminance-dependent, monochrome or colour."""

    name = "film_grain"
    params = {
        "strength": Float(0.0, 1.0, default=(0.03, 0.15), doc="grain deviation at mid-grey, fraction of full scale"),
        "grain_px": Float(1.0, 8.0, default=(1.0, 2.5), doc="clump size in pixels"),
        "monochrome": Bool(default=0.8, doc="same grain on every channel (silver) or per channel (dye clouds)"),
    }
    seeded = True
    example = {"strength": 0.07, "grain_px": 1.5, "monochrome": True}

    def _apply(self, image, p):
        return film_grain(image, p["strength"], p["grain_px"], p["seed"], p["monochrome"])
