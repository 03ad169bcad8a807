"""Blur operators: gaussian, motion (linear) and defocus (disk)."""

from __future__ import annotations

import math
from functools import lru_cache

import cv2
import numpy as np

from ..operator import Operator, functional, register
from ..params import Choice, Float

_BORDER = cv2.BORDER_REFLECT


@functional
def gaussian_blur(image: np.ndarray, sigma: float, ksize: int = 0) -> np.ndarray:
    """Gaussian blur; ``ksize`` 0 picks 2·ceil(3σ)+1, as most libraries do."""
    k = ksize or 2 * math.ceil(3 * sigma) + 1
    return cv2.GaussianBlur(image, (k, k), sigma, borderType=_BORDER)


@lru_cache(maxsize=256)
def _motion_kernel(length: float, angle: float) -> np.ndarray:
    ss = 8  # supersampling of the kernel raster, for sub-pixel lengths and angles
    k = 2 * math.ceil(length / 2) + 1
    canvas = np.zeros((k * ss, k * ss), np.float32)
    c = (k * ss - 1) / 2
    dx, dy = math.cos(math.radians(angle)) * length * ss / 2, -math.sin(math.radians(angle)) * length * ss / 2
    cv2.line(canvas, (round(c - dx), round(c - dy)), (round(c + dx), round(c + dy)), 1.0, thickness=ss, lineType=cv2.LINE_8)
    kernel = cv2.resize(canvas, (k, k), interpolation=cv2.INTER_AREA)
    kernel /= kernel.sum()
    kernel.flags.writeable = False
    return kernel


@functional
def motion_blur(image: np.ndarray, length_px: float, angle: float) -> np.ndarray:
    """Linear motion blur along ``angle`` degrees (0 = horizontal) over ``length_px`` pixels."""
    return cv2.filter2D(image, -1, _motion_kernel(round(length_px, 3), round(angle, 3)), borderType=_BORDER)


@lru_cache(maxsize=256)
def _disk_kernel(radius: float) -> np.ndarray:
    ss = 8
    k = 2 * math.ceil(radius) + 1
    yy, xx = np.mgrid[0 : k * ss, 0 : k * ss].astype(np.float32)
    c = (k * ss - 1) / 2
    inside = ((xx - c) ** 2 + (yy - c) ** 2 <= (radius * ss) ** 2).astype(np.float32)
    kernel = cv2.resize(inside, (k, k), interpolation=cv2.INTER_AREA)
    kernel /= kernel.sum()
    kernel.flags.writeable = False
    return kernel


@functional
def defocus_blur(image: np.ndarray, radius_px: float) -> np.ndarray:
    """Out-of-focus blur: convolution with an anti-aliased disk of ``radius_px``."""
    return cv2.filter2D(image, -1, _disk_kernel(round(radius_px, 3)), borderType=_BORDER)


@register
class GaussianBlur(Operator):
    """Gaussian blur (lens softness, enlarger blur)."""

    name = "gaussian_blur"
    main = "sigma"
    params = {
        "sigma": Float(0.1, 10.0, default=(0.5, 2.0), doc="standard deviation in pixels"),
        "ksize": Choice((0, 3, 5, 7, 9, 11, 13, 15), default=0, doc="kernel size; 0 = from sigma"),
    }
    example = {"sigma": 2.0}

    def _apply(self, image, p):
        return gaussian_blur.__wrapped__(image, p["sigma"], p["ksize"])


@register
class MotionBlur(Operator):
    """Linear motion blur (camera shake, moving subject)."""

    name = "motion_blur"
    main = "length_px"
    params = {
        "length_px": Float(1.0, 64.0, default=(3.0, 12.0), doc="blur length in pixels"),
        "angle": Float(0.0, 180.0, default=(0.0, 180.0), doc="direction in degrees, 0 = horizontal"),
    }
    example = {"length_px": 11.0, "angle": 30.0}

    def _apply(self, image, p):
        return motion_blur.__wrapped__(image, p["length_px"], p["angle"])


@register
class DefocusBlur(Operator):
    """Defocus blur with a disk kernel (bokeh-like)."""

    name = "defocus_blur"
    main = "radius_px"
    params = {"radius_px": Float(0.5, 24.0, default=(1.0, 3.0), doc="disk radius in pixels")}
    example = {"radius_px": 3.5}

    def _apply(self, image, p):
        return defocus_blur.__wrapped__(image, p["radius_px"])
