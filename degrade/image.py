"""Array conventions shared by the operators: uint8 RGB (H×W×3) or grayscale (H×W) in, same out."""

from __future__ import annotations

import cv2
import numpy as np

from .errors import ImageError

LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)


def check_image(image: np.ndarray) -> None:
    """Raise a one-line ImageError unless ``image`` is uint8 H×W or H×W×3 with at least one pixel."""
    if not isinstance(image, np.ndarray):
        raise ImageError(f"expected a numpy array, got {type(image).__name__}")
    if image.dtype != np.uint8:
        hint = "degrade.io.to_uint8 scales 16-bit integers" if image.dtype.kind in "ui" else "scale floats to 0..255 and round"
        raise ImageError(f"expected a uint8 image, got {image.dtype} ({hint})")
    if not (image.ndim == 2 or (image.ndim == 3 and image.shape[2] == 3)):
        raise ImageError(f"expected an H×W or H×W×3 image, got shape {image.shape}")
    if image.shape[0] < 1 or image.shape[1] < 1:
        raise ImageError(f"empty image of shape {image.shape}")


def round_to_uint8(x: np.ndarray) -> np.ndarray:
    """Round a float image in 0..255 to uint8 with saturation (in place on ``x`` when float32).
    ``degrade.io.to_uint8`` is the other conversion: integer bit depths scaled to 8 bits."""
    np.clip(x, 0, 255, out=x)
    np.add(x, 0.5, out=x)
    return x.astype(np.uint8)


def luminance(image: np.ndarray) -> np.ndarray:
    """Rec. 601 luma as float32 in 0..255 (H×W)."""
    if image.ndim == 2:
        return image.astype(np.float32)
    return cv2.cvtColor(image, cv2.COLOR_RGB2GRAY).astype(np.float32) if image.dtype == np.uint8 else image @ LUMA


def gray_to_rgb(image: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(image, cv2.COLOR_GRAY2RGB)


def rgb_to_gray(image: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)


def apply_on(fn, image: np.ndarray, colour: bool, *args, **kwargs):
    """``fn(image, ...)``; a ``colour`` operator takes grayscale as RGB and gives back luma (the image,
    or the first item of an (image, mask) result). The class and functional forms both go through here."""
    if not (colour and image.ndim == 2):
        return fn(image, *args, **kwargs)
    out = fn(gray_to_rgb(image), *args, **kwargs)
    return (rgb_to_gray(out[0]), *out[1:]) if isinstance(out, tuple) else rgb_to_gray(out)

