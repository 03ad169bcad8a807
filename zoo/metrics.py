"""Image-quality and detection metrics (offline: PSNR, SSIM, MS-SSIM, GMSD, masked PSNR,
precision/recall/F1/IoU).

LPIPS, DISTS and FID need ImageNet-trained backbones whose weights no package ships; they are
not available here and are not faked.
"""

from __future__ import annotations

import numpy as np
from skimage.metrics import structural_similarity


PSNR_MAX = 100.0
"""The PSNR (dB) of identical images, and the most any pair scores: an infinite value has no mean."""


def psnr(a: np.ndarray, b: np.ndarray, mask: np.ndarray | None = None) -> float:
    """PSNR in dB of uint8 images (optionally over the pixels where ``mask`` is true), at most PSNR_MAX (identical).
    Other types are refused: float images in 0..1 scored about 76 dB against the 255 peak."""
    _check_pair(a, b, "psnr")
    d = a.astype(np.float64) - b.astype(np.float64)
    if mask is not None:
        m = mask.astype(bool)
        if m.ndim == 3 and m.shape[2] == 1:
            m = m[..., 0]
        if m.shape != a.shape[: m.ndim]:
            raise ValueError(f"psnr: mask of shape {mask.shape} for images of shape {a.shape}")
        if not m.any():
            return float("nan")
        d = d[m] if d.ndim == m.ndim else d[m, ...]
    mse = float(np.mean(d * d))
    return PSNR_MAX if mse == 0 else min(PSNR_MAX, float(10.0 * np.log10(255.0**2 / mse)))


def ssim(a: np.ndarray, b: np.ndarray) -> float:
    """SSIM of uint8 images as scikit-image's defaults give it (7×7 uniform window, sample covariance, data range
    255), averaged over channels: not the Gaussian-window SSIM of Wang et al. 2004 (see docs/bench.md)."""
    _check_pair(a, b, "ssim")
    return float(structural_similarity(a, b, channel_axis=2 if a.ndim == 3 else None, data_range=255))


MS_SSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)
"""Wang, Simoncelli and Bovik (2003): the weight of each scale, finest first."""


def _gauss_filter(x: np.ndarray) -> np.ndarray:
    """11×11 Gaussian (σ 1.5) of a float64 plane, over the window positions inside it ('valid')."""
    import cv2

    k = cv2.getGaussianKernel(11, 1.5, cv2.CV_64F)
    return cv2.sepFilter2D(x, cv2.CV_64F, k, k, borderType=cv2.BORDER_REFLECT)[5:-5, 5:-5]


def _ssim_cs(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Mean SSIM and mean contrast-structure term of two planes in [0, 255] (Gaussian window)."""
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    mx, my = _gauss_filter(x), _gauss_filter(y)
    sxx = _gauss_filter(x * x) - mx * mx
    syy = _gauss_filter(y * y) - my * my
    sxy = _gauss_filter(x * y) - mx * my
    cs = (2 * sxy + c2) / (sxx + syy + c2)
    return float(np.mean((2 * mx * my + c1) / (mx * mx + my * my + c1) * cs)), float(np.mean(cs))


def _check_pair(a: np.ndarray, b: np.ndarray, name: str) -> None:
    """The 0..255 constants of these metrics hold for uint8 H×W or H×W×3 images of one shape only."""
    if a.shape != b.shape:
        raise ValueError(f"{name}: images of shapes {a.shape} and {b.shape}")
    if a.dtype != np.uint8 or b.dtype != np.uint8:
        raise ValueError(f"{name}: expected uint8 images, got {a.dtype} and {b.dtype}")
    if not (a.ndim == 2 or (a.ndim == 3 and a.shape[2] == 3)) or 0 in a.shape:
        raise ValueError(f"{name}: expected H×W or H×W×3 images, got shape {a.shape}")


def luma(image: np.ndarray) -> np.ndarray:
    """Float64 luma (BT.601 weights) of a gray, RGB or RGBA image, on the image's own scale."""
    if image.ndim == 2:
        return image.astype(np.float64)
    return image[..., :3].astype(np.float64) @ np.array([0.299, 0.587, 0.114])


def _halve(x: np.ndarray, pad: str = "edge") -> np.ndarray:
    """2×2 average; an odd last row or column is averaged with itself (``edge``: Wang's MS-SSIM code,
    symmetric padding) or with zeros (``constant``: Xue's GMSD code, ``conv2(..., 'same')``)."""
    h, w = x.shape
    x = np.pad(x, ((0, h % 2), (0, w % 2)), mode=pad)
    return 0.25 * (x[0::2, 0::2] + x[1::2, 0::2] + x[0::2, 1::2] + x[1::2, 1::2])


def ms_ssim(a: np.ndarray, b: np.ndarray) -> float:
    """Multi-scale SSIM (Wang et al. 2003: five scales, 11×11 Gaussian σ 1.5) of uint8 images,
    averaged over channels; negative terms clipped to 0. Needs at least 161 px a side."""
    _check_pair(a, b, "ms_ssim")
    if min(a.shape[:2]) < 161:
        raise ValueError(f"ms_ssim: needs at least 161 px a side for five scales, got {a.shape[:2]}")
    planes = [(a[..., c], b[..., c]) for c in range(a.shape[2])] if a.ndim == 3 else [(a, b)]
    out = []
    for x, y in planes:
        x, y = x.astype(np.float64), y.astype(np.float64)
        value = 1.0
        for j, w in enumerate(MS_SSIM_WEIGHTS):
            s, cs = _ssim_cs(x, y)
            last = j == len(MS_SSIM_WEIGHTS) - 1
            value *= max(s if last else cs, 0.0) ** w
            if not last:
                x, y = _halve(x), _halve(y)
        out.append(value)
    return float(np.mean(out))


def gmsd(a: np.ndarray, b: np.ndarray) -> float:
    """Gradient magnitude similarity deviation (Xue et al. 2014) of uint8 images, on luma halved by
    a 2×2 average (an odd last row or column averaged with zeros, as the authors' code does),
    Prewitt gradients, constant 170: 0 for identical images, larger is worse."""
    import cv2

    _check_pair(a, b, "gmsd")

    def grad(x: np.ndarray) -> np.ndarray:
        y = _halve(luma(x), "constant")
        k = np.array([[1, 0, -1]] * 3, np.float64) / 3
        gx = cv2.filter2D(y, cv2.CV_64F, k, borderType=cv2.BORDER_CONSTANT)
        gy = cv2.filter2D(y, cv2.CV_64F, k.T, borderType=cv2.BORDER_CONSTANT)
        return np.sqrt(gx * gx + gy * gy)

    g1, g2 = grad(a), grad(b)
    gms = (2 * g1 * g2 + 170.0) / (g1 * g1 + g2 * g2 + 170.0)
    return float(np.std(gms))


QUALITY_KEYS = ("psnr", "ssim", "ms_ssim", "gmsd", "psnr_in_mask", "psnr_out_mask", "niqe")
"""The scores `daguerre bench` gives each sample: full-reference ones, and NIQE (no reference) on
real photos (GMSD and NIQE: lower is better)."""


def detection(pred: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    """Pixel counts and precision, recall, F1, IoU of a predicted defect mask against the truth."""
    if pred.shape != truth.shape:
        raise ValueError(f"detection: masks of shapes {pred.shape} and {truth.shape}")
    p, t = pred > 0, truth > 0
    tp = int(np.sum(p & t))
    fp = int(np.sum(p & ~t))
    fn = int(np.sum(~p & t))
    return {"tp": tp, "fp": fp, "fn": fn, **scores(tp, fp, fn)}


def scores(tp: int, fp: int, fn: int) -> dict[str, float]:
    precision = tp / (tp + fp) if tp + fp else float("nan")
    recall = tp / (tp + fn) if tp + fn else float("nan")
    f1 = 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else float("nan")
    iou = tp / (tp + fp + fn) if tp + fp + fn else float("nan")
    return {"precision": precision, "recall": recall, "f1": f1, "iou": iou}
