"""Tone anchoring (zoo.anchor): keeps the network's global colour and detail, takes local tone from the input."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from degrade.errors import DaguerreError
from degrade.io import read_image
from degrade.samples import sample_photo_paths
from zoo import metrics
from zoo.anchor import GRID, AnchorConfig, anchor, colour_fit


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    p = [q for q in sample_photo_paths() if q.name == "coffee.png"][0]
    return cv2.resize(read_image(p).rgb(), (160, 120), interpolation=cv2.INTER_AREA)


def _warm(x: np.ndarray) -> np.ndarray:
    """A global colour transform of the kind a restoration applies to a faded print."""
    A = np.array([[1.1, 0.05, 0.0], [0.0, 1.0, 0.0], [-0.05, 0.0, 0.85]], np.float32)
    return np.clip(x.astype(np.float32) @ A.T + 6, 0, 255).astype(np.uint8)


def _blob(h: int, w: int, cy: float, cx: float, r: float) -> np.ndarray:
    y, x = np.mgrid[:h, :w]
    return np.exp(-((y - cy) ** 2 + (x - cx) ** 2) / (2 * r * r)).astype(np.float32)


def test_local_tone_errors_are_removed_and_the_global_colour_kept(photo):
    """The network's output = its colour transform of the clean photo + a tone blotch; the input is noisy."""
    h, w = photo.shape[:2]
    noise = np.random.default_rng(0).normal(0, 8, photo.shape)
    inp = np.clip(photo + noise, 0, 255).astype(np.uint8)
    target = _warm(photo)
    blotch = 30 * _blob(h, w, 50, 70, 12)[..., None]
    out = np.clip(target.astype(np.float32) + blotch, 0, 255).astype(np.uint8)
    fixed = anchor(inp, out, np.zeros((h, w), np.uint8), AnchorConfig(2.0))
    assert metrics.psnr(fixed, target) > metrics.psnr(out, target) + 3  # the blotch is gone
    assert metrics.psnr(fixed, target) > metrics.psnr(inp, target) + 3  # the colour stays the network's
    # and the noise does not come back at full strength: σ = 2 leaves a fraction of it
    flat = np.abs(fixed.astype(int) - target).std()
    assert flat < np.abs(inp.astype(int) - photo).std() / 2


def test_colour_fit_recovers_an_affine_map(photo):
    A = np.array([[0.9, 0.1, 0.0], [0.0, 0.8, 0.1], [0.05, 0.0, 0.7]])
    out = np.clip(photo.astype(np.float64) @ A.T + 20, 0, 255).astype(np.uint8)
    fit = colour_fit(photo, out, np.zeros(photo.shape[:2], np.uint8), 1.0)
    mapped = (photo.astype(np.float64) / 255) @ fit[:3] + fit[3]  # the ridge may trade coefficients of correlated channels
    assert np.abs(mapped * 255 - out).mean() < 1.5
    identity = colour_fit(photo, photo, np.zeros(photo.shape[:2], np.uint8), 1.0)
    assert np.allclose(identity, np.vstack([np.eye(3), np.zeros((1, 3))]), atol=1e-6)


def test_masked_pixels_and_large_differences_stay_as_restored(photo):
    h, w = photo.shape[:2]
    inp = photo.copy()
    inp[:, 80:83] = 255  # a scratch the network removed but the detector did not mark
    mask = np.zeros((h, w), np.uint8)
    mask[10:40, 10:40] = 255
    out = cv2.GaussianBlur(photo, (0, 0), 1.0)
    fixed = anchor(inp, out, mask, AnchorConfig(1.0, 16.0))
    assert np.array_equal(fixed[mask > 0], out[mask > 0])
    gap = lambda img: np.abs(img[:, 80:83].astype(int) - inp[:, 80:83]).mean()  # noqa: E731
    assert gap(fixed) > 0.8 * gap(out)  # τ = 16: the scratch's ~100 grey levels are not brought back
    unlimited = anchor(inp, out, mask, AnchorConfig(1.0, None))
    assert gap(unlimited) < 0.8 * gap(out)  # without τ they are (partly)


@settings(max_examples=15, deadline=None)
@given(h=st.integers(1, 70), w=st.integers(1, 40), rows=st.integers(1, 30), sigma=st.sampled_from([1.0, 2.0, 4.0]),
       tau=st.sampled_from([None, 16.0]), seed=st.integers(0, 2**16))  # fmt: skip
def test_strips_give_the_whole_image_result(h, w, rows, sigma, tau, seed):
    rng = np.random.default_rng(seed)
    inp = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    out = np.clip(inp.astype(int) + rng.integers(-40, 40, (h, w, 3)), 0, 255).astype(np.uint8)
    mask = np.where(rng.random((h, w)) < 0.2, 255, 0).astype(np.uint8)
    cfg = AnchorConfig(sigma, tau)
    whole = anchor(inp, out, mask, cfg, rows=10_000)
    assert whole.shape == out.shape and whole.dtype == np.uint8
    np.testing.assert_allclose(anchor(inp, out, mask, cfg, rows=rows), whole, atol=1)  # float summation order only
    np.testing.assert_allclose(colour_fit(inp, out, mask, sigma, rows=rows), colour_fit(inp, out, mask, sigma), atol=1e-4)


def test_edge_cases(photo):
    full = np.full(photo.shape[:2], 255, np.uint8)
    out = cv2.GaussianBlur(photo, (0, 0), 2.0)
    assert np.array_equal(anchor(photo, out, full, AnchorConfig(2.0)), out)  # nothing undamaged: nothing to anchor to
    assert np.allclose(colour_fit(photo, out, full, 2.0), np.vstack([np.eye(3), np.zeros((1, 3))]))
    same = anchor(photo, photo, np.zeros_like(full), AnchorConfig(1.0))
    assert np.abs(same.astype(int) - photo).max() <= 1  # an output equal to its input stays put
    gray = np.repeat(photo.mean(2, keepdims=True).astype(np.uint8), 3, axis=2)  # rank-1 colours: the ridge keeps it posed
    assert np.isfinite(colour_fit(gray, out, np.zeros_like(full), 1.0)).all()
    with pytest.raises(DaguerreError, match="H×W×3"):
        anchor(photo, photo[:10], np.zeros_like(full), AnchorConfig(1.0))


def test_config_validation_and_card_round_trip():
    for bad in (0.0, -1.0, 100.0, "2"):
        with pytest.raises(DaguerreError, match="sigma"):
            AnchorConfig(bad)
    with pytest.raises(DaguerreError, match="tau"):
        AnchorConfig(1.0, 0.0)
    with pytest.raises(DaguerreError, match="anchor"):
        AnchorConfig.from_card({"tau": 3})
    assert AnchorConfig.from_card(None) is None
    assert GRID[0] is None and len(set(GRID)) == len(GRID)
    for cfg in GRID[1:]:
        assert AnchorConfig.from_card(cfg.to_dict()) == cfg
