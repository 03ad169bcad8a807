"""Tone anchoring: the restoration's low frequencies re-anchored to the input's, outside the defect mask.

Trained on this CPU, the mapping leaves low-frequency tone errors (blotches, local shifts) that
cost PSNR on every held-out set (docs/benchmarks.md). Anchoring keeps what the network decides
globally, its colour transform, and its fine detail and inpainting, but takes the local tone
layout from the input: out = n + w(c) · c, with c = G_σ(A(x) − n) on undamaged pixels, where
A is the affine colour map (3×3 + offset) that best takes the blurred input to the blurred
restoration, G_σ a mask-normalised Gaussian blur and w a redescending weight (1 up to τ grey
levels, 0 from 2τ), so large differences, defects the network removed and the detector missed,
are not brought back. It is calibrated per bundle (``daguerre zoo calibrate``) and stored in
its card; pure numpy/OpenCV, processed in row strips so memory stays bounded on large scans.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from degrade.errors import DaguerreError

RIDGE = 1e-3
"""Pull of the colour fit towards identity (units of [0, 1] intensity²): keeps flat or grayscale inputs well posed."""
FIT_WEIGHT = 0.99
"""A pixel enters the colour fit only where the blurred undamaged weight reaches this (no defect bleeding in)."""
MIN_SUPPORT = 0.05
"""Below this blurred undamaged weight (deep inside large holes) there is no input tone to anchor to."""


@dataclass(frozen=True)
class AnchorConfig:
    """σ of the low-pass (pixels) and τ of the redescending weight (grey levels; None: no limit)."""

    sigma: float
    tau: float | None = None

    def __post_init__(self) -> None:
        if not (isinstance(self.sigma, (int, float)) and 0.3 <= self.sigma <= 32):
            raise DaguerreError(f"anchor sigma must be in [0.3, 32] pixels, got {self.sigma!r}")
        if self.tau is not None and not (isinstance(self.tau, (int, float)) and self.tau > 0):
            raise DaguerreError(f"anchor tau must be positive or null, got {self.tau!r}")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_card(cls, value) -> AnchorConfig | None:
        if value is None:
            return None
        if not isinstance(value, dict) or "sigma" not in value:
            raise DaguerreError(f"a bundle's anchor must be null or {{sigma, tau}}, got {value!r}")
        try:
            return cls(float(value["sigma"]), None if value.get("tau") is None else float(value["tau"]))
        except (TypeError, ValueError):  # {"sigma": "x"}: float() said it, as an internal ValueError
            raise DaguerreError(f"a bundle's anchor sigma and tau must be numbers, got {value!r}"[:300]) from None

    def label(self) -> str:
        return f"σ {self.sigma:g} px, τ {'∞' if self.tau is None else f'{self.tau:g}'}"


GRID: tuple[AnchorConfig | None, ...] = (
    None,
    *[AnchorConfig(s, t) for s in (4.0, 2.0, 1.0) for t in (16.0, 32.0, None)],
)
"""Calibration candidates, most conservative first (off, then the widest blur and strictest τ)."""


def _margin(sigma: float) -> int:
    return int(math.ceil(4 * sigma)) + 2  # OpenCV's float Gaussian kernel reaches 4σ


def _strips(h: int, rows: int, margin: int):
    """(y0, y1) core rows and (a, b) rows to read with their context, top to bottom."""
    for y0 in range(0, h, rows):
        y1 = min(h, y0 + rows)
        yield y0, y1, max(0, y0 - margin), min(h, y1 + margin)


def _blur(x: np.ndarray, sigma: float) -> np.ndarray:
    import cv2

    return cv2.GaussianBlur(x, (0, 0), sigma)


def colour_fit(inp: np.ndarray, out: np.ndarray, mask: np.ndarray, sigma: float, rows: int = 512) -> np.ndarray:
    """4×3 affine map (rows: R, G, B, offset) taking the blurred input to the blurred output over undamaged pixels."""
    h = inp.shape[0]
    m = _margin(sigma)
    xtx = np.zeros((4, 4))
    xty = np.zeros((4, 3))
    for y0, y1, a, b in _strips(h, rows, m):
        keep = (_blur((mask[a:b] == 0).astype(np.float32), sigma)[y0 - a : y1 - a] >= FIT_WEIGHT).astype(np.float32).reshape(-1, 1)
        count = float(keep.sum())
        if count == 0:
            continue
        x = np.ascontiguousarray(_blur(inp[a:b].astype(np.float32), sigma)[y0 - a : y1 - a]).reshape(-1, 3)
        y = np.ascontiguousarray(_blur(out[a:b].astype(np.float32), sigma)[y0 - a : y1 - a]).reshape(-1, 3)
        xk = x * keep  # weights 0/1: sums over the kept pixels without gathering them
        xtx[:3, :3] += (xk.T @ x).astype(np.float64)
        sx = xk.sum(axis=0, dtype=np.float64)
        xtx[:3, 3] += sx
        xtx[3, :3] += sx
        xtx[3, 3] += count
        xty[:3] += (xk.T @ y).astype(np.float64)
        xty[3] += (y * keep).sum(axis=0, dtype=np.float64)
    identity = np.vstack([np.eye(3), np.zeros((1, 3))])
    n = xtx[3, 3]
    if n == 0:
        return identity
    scale = np.array([255.0, 255.0, 255.0, 1.0])  # to [0, 1] intensities
    xtx /= np.outer(scale, scale) * n
    xty /= scale[:, None] * 255 * n
    return np.linalg.solve(xtx + RIDGE * np.eye(4), xty + RIDGE * identity)


def anchor(inp: np.ndarray, out: np.ndarray, mask: np.ndarray, cfg: AnchorConfig, rows: int = 512) -> np.ndarray:
    """``out`` (uint8 H×W×3, the network's restoration of ``inp``) with its tones anchored to ``inp``
    outside ``mask`` (H×W, nonzero = damaged, left as restored). Same result for any ``rows``.

    Both may also be float32 on the same 0–255 scale (a 16-bit input's restoration): the result is
    then float32, unrounded."""
    import cv2

    if inp.shape != out.shape or inp.ndim != 3 or inp.shape[2] != 3 or mask.shape != inp.shape[:2]:
        raise DaguerreError(f"anchor needs H×W×3 input and output and an H×W mask, got {inp.shape}, {out.shape}, {mask.shape}")
    if inp.size == 0:
        return out.copy()
    A = colour_fit(inp, out, mask, cfg.sigma, rows)
    M = np.hstack([A[:3].T, 255 * A[3][:, None]]).astype(np.float32)  # cv2.transform: M · [r, g, b, 1]
    m = _margin(cfg.sigma)
    result = np.empty_like(out)
    for y0, y1, a, b in _strips(inp.shape[0], rows, m):
        n = out[a:b].astype(np.float32)
        w = (mask[a:b] == 0).astype(np.float32)
        diff = cv2.transform(inp[a:b].astype(np.float32), M)
        diff -= n
        diff *= w[..., None]
        c = _blur(diff, cfg.sigma)
        den = _blur(w, cfg.sigma)[..., None]
        c /= np.maximum(den, MIN_SUPPORT)
        c *= den >= MIN_SUPPORT
        if cfg.tau is not None:
            mag = cv2.max(cv2.max(np.abs(c[..., 0]), np.abs(c[..., 1])), np.abs(c[..., 2]))
            c *= np.clip(2 - mag / cfg.tau, 0, 1)[..., None]
        c *= w[..., None]  # damaged pixels stay as restored
        n += c
        if result.dtype == np.uint8:
            n += 0.5
        result[y0:y1] = np.clip(n[y0 - a : y1 - a], 0, 255).astype(result.dtype)
    return result
