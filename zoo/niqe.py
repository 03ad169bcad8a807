"""NIQE, a no-reference naturalness score (Mittal, Soundararajan and Bovik 2013), for photos with no
ground truth: real old photos before and after restoration.

NIQE fits a multivariate Gaussian to natural-scene statistics of sharp patches of pristine
photographs, then scores an image by the distance of its patches' statistics to that model:
lower is more natural. The published model was fitted on 125 photographs daguerre cannot
download; ``zoo/niqe-pristine.json`` is fitted the same way on the clean photographs
daguerre trains on (its card says which), so its scores rank images like NIQE does but are not
on the published scale. Refit with ``python -m zoo.niqe FOLDER... --out PATH``.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from scipy.special import gammaln

from .metrics import luma

PATCH = 96
SHARPNESS = 0.75  # pristine patches: sharpness above this share of the image's sharpest
MODEL_PATH = Path(__file__).resolve().parent / "niqe-pristine.json"
_SHIFTS = ((0, 1), (1, 0), (1, 1), (1, -1))  # horizontal, vertical and both diagonal neighbours
_ALPHAS = np.arange(0.2, 10.0, 0.001)  # the shape grid of the moment-matching fit
_GAMMA_RATIOS = np.exp(2 * gammaln(2 / _ALPHAS) - gammaln(1 / _ALPHAS) - gammaln(3 / _ALPHAS))


def _mscn(gray: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean-subtracted contrast-normalised coefficients and the local deviation map (7×7 Gaussian, σ 7/6)."""
    k = cv2.getGaussianKernel(7, 7 / 6, cv2.CV_64F)
    mu = cv2.sepFilter2D(gray, cv2.CV_64F, k, k, borderType=cv2.BORDER_REPLICATE)
    var = cv2.sepFilter2D(gray * gray, cv2.CV_64F, k, k, borderType=cv2.BORDER_REPLICATE) - mu * mu
    sigma = np.sqrt(np.abs(var))
    return (gray - mu) / (sigma + 1), sigma


def _aggd(x: np.ndarray) -> tuple[float, float, float]:
    """Asymmetric generalised Gaussian fit by moment matching: (shape α, left scale, right scale)."""
    left, right = x[x < 0], x[x > 0]
    if left.size == 0 or right.size == 0:
        return float("nan"), float("nan"), float("nan")
    ls, rs = math.sqrt(float(np.mean(left * left))), math.sqrt(float(np.mean(right * right)))
    g = ls / rs
    r = float(np.mean(np.abs(x))) ** 2 / float(np.mean(x * x))
    r_norm = r * (g**3 + 1) * (g + 1) / (g * g + 1) ** 2
    alpha = float(_ALPHAS[np.argmin((_GAMMA_RATIOS - r_norm) ** 2)])
    scale = math.exp(0.5 * (gammaln(1 / alpha) - gammaln(3 / alpha)))
    return alpha, ls * scale, rs * scale


def _block_features(mscn: np.ndarray) -> list[float]:
    """NIQE's 18 features of one block at one scale: the coefficients' shape and spread, then
    shape, mean and both scales of each neighbour product."""
    alpha, bl, br = _aggd(mscn.ravel())
    feats = [alpha, (bl + br) / 2]
    for dy, dx in _SHIFTS:
        pair = (mscn * np.roll(mscn, (dy, dx), axis=(0, 1))).ravel()
        a, l, r = _aggd(pair)
        mean = (r - l) * math.exp(gammaln(2 / a) - gammaln(1 / a)) if math.isfinite(a) else float("nan")
        feats += [a, mean, l, r]
    return feats


def _luma(image: np.ndarray) -> np.ndarray:
    if image.dtype != np.uint8 or not (image.ndim == 2 or (image.ndim == 3 and image.shape[2] in (3, 4))):
        raise ValueError(f"niqe: expected a uint8 gray, RGB or RGBA image, got {image.dtype} of shape {image.shape}")
    return luma(image)


def patch_features(image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(features, sharpness) of every whole 96-px block of a uint8 image: 36 features per block
    (18 at full size, 18 at half size), and each block's mean local deviation."""
    gray = _luma(image)
    rows, cols = gray.shape[0] // PATCH, gray.shape[1] // PATCH
    if rows == 0 or cols == 0:
        raise ValueError(f"niqe: needs at least {PATCH}×{PATCH} pixels, got {image.shape[:2]}")
    gray = gray[: rows * PATCH, : cols * PATCH]
    full, sigma = _mscn(gray)
    half, _ = _mscn(cv2.resize(gray, (cols * PATCH // 2, rows * PATCH // 2), interpolation=cv2.INTER_AREA))
    feats, sharp = [], []
    h = PATCH // 2
    for i in range(rows):
        for j in range(cols):
            a = full[i * PATCH : (i + 1) * PATCH, j * PATCH : (j + 1) * PATCH]
            b = half[i * h : (i + 1) * h, j * h : (j + 1) * h]
            feats.append(_block_features(a) + _block_features(b))
            sharp.append(float(sigma[i * PATCH : (i + 1) * PATCH, j * PATCH : (j + 1) * PATCH].mean()))
    return np.asarray(feats), np.asarray(sharp)


def fit(images) -> dict[str, Any]:
    """The pristine model (mean and covariance of the sharp blocks' features) of an iterable of images."""
    feats = []
    for image in images:
        f, s = patch_features(image)
        feats.append(f[s > SHARPNESS * s.max()])
    x = np.concatenate(feats)
    x = x[np.isfinite(x).all(1)]
    return {"mean": x.mean(0).tolist(), "cov": np.cov(x, rowvar=False).tolist(), "patches": int(len(x))}


def load_model(path: str | Path = MODEL_PATH) -> dict[str, Any]:
    return json.loads(Path(path).read_text())


def niqe(image: np.ndarray, model: dict[str, Any] | None = None) -> float:
    """NIQE of a uint8 image (gray, RGB or RGBA) against a pristine model (daguerre's by default):
    lower is more natural. Needs at least one 96×96 block; two or more for a stable score."""
    model = model or _default_model()
    f, _ = patch_features(image)
    f = f[np.isfinite(f).all(1)]
    if len(f) == 0:
        return float("nan")
    mu_p, cov_p = np.asarray(model["mean"]), np.asarray(model["cov"])
    cov_t = np.cov(f, rowvar=False) if len(f) > 1 else np.zeros_like(cov_p)
    d = mu_p - f.mean(0)
    return float(math.sqrt(max(0.0, d @ np.linalg.pinv((cov_p + cov_t) / 2) @ d)))


_MODEL: dict[str, Any] = {}


def _default_model() -> dict[str, Any]:
    if not _MODEL:
        _MODEL.update(load_model())
    return _MODEL


def main(argv: list[str] | None = None) -> None:
    from degrade.io import list_images, read_image

    ap = argparse.ArgumentParser(description="Fit daguerre's NIQE pristine model on clean photographs.")
    ap.add_argument("folders", nargs="+")
    ap.add_argument("--out", default=str(MODEL_PATH))
    ap.add_argument("--note", default="", help="Where the photographs came from (recorded in the model).")
    args = ap.parse_args(argv)
    paths = list_images(args.folders)
    model = fit(read_image(p).rgb() for p in paths)
    model.update(images=len(paths), note=args.note, patch=PATCH, sharpness=SHARPNESS,
                 command="python -m zoo.niqe " + " ".join(args.folders))  # fmt: skip
    Path(args.out).write_text(json.dumps(model) + "\n")
    print(f"fitted on {len(paths)} photographs, {model['patches']} sharp blocks: {args.out}")


if __name__ == "__main__":
    main()
