"""Image-quality and detection metrics (offline: PSNR, SSIM, masked PSNR, precision/recall/F1/IoU).

LPIPS, DISTS and FID need ImageNet-trained backbones whose weights no package ships; they are
not available here and are not faked.
"""

from __future__ import annotations

import numpy as np
from skimage.metrics import structural_similarity


def psnr(a: np.ndarray, b: np.ndarray, mask: np.ndarray | None = None) -> float:
    """PSNR in dB of uint8 images (optionally over the pixels where ``mask`` is true); inf if identical."""
    if a.shape != b.shape:
        raise ValueError(f"psnr: images of shapes {a.shape} and {b.shape}")
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
    return float("inf") if mse == 0 else 10.0 * np.log10(255.0**2 / mse)


def ssim(a: np.ndarray, b: np.ndarray) -> float:
    """SSIM (scikit-image, Gaussian window off, 7×7) of uint8 images, averaged over channels."""
    return float(structural_similarity(a, b, channel_axis=2 if a.ndim == 3 else None, data_range=255))


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
