"""NIQE: the shape fit, the pristine model shipped in zoo/weights, and the ordering of damage."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from degrade.samples import sample_photo_paths
from degrade.io import read_image
from zoo import niqe


def _sample(name: str) -> np.ndarray:
    return read_image(next(p for p in sample_photo_paths() if p.name == name)).rgb()


@pytest.mark.parametrize("alpha", [0.8, 1.0, 2.0])
def test_the_shape_fit_recovers_a_generalised_gaussian(alpha):
    """Symmetric generalised Gaussian samples of a known shape: the moment-matching fit finds it."""
    rng = np.random.default_rng(0)
    x = rng.gamma(1 / alpha, 1.0, 400_000) ** (1 / alpha) * rng.choice([-1, 1], 400_000)
    a, left, right = niqe._aggd(x)
    assert a == pytest.approx(alpha, rel=0.05) and left == pytest.approx(right, rel=0.02)


def test_the_shipped_model_and_its_card():
    m = niqe.load_model()
    mean, cov = np.asarray(m["mean"]), np.asarray(m["cov"])
    assert mean.shape == (36,) and cov.shape == (36, 36) and np.allclose(cov, cov.T)
    assert np.linalg.eigvalsh(cov).min() > -1e-9 and m["images"] >= 100 and m["patches"] > 1000
    assert m["note"] and "python -m zoo.niqe" in m["command"]


def test_damage_scores_worse_and_the_score_is_deterministic():
    img = _sample("astronaut.png")
    clean = niqe.niqe(img)
    rng = np.random.default_rng(1)
    noisy = np.clip(img + rng.normal(0, 20, img.shape), 0, 255).astype(np.uint8)
    blurred = cv2.GaussianBlur(img, (0, 0), 3.0)
    jpeg = cv2.imdecode(cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 8])[1], cv2.IMREAD_UNCHANGED)
    for bad in (noisy, blurred, jpeg):
        assert niqe.niqe(bad) > clean + 1
    assert niqe.niqe(img) == clean and niqe.niqe(img[..., 1]) == pytest.approx(niqe.niqe(np.dstack([img[..., 1]] * 3)))


def test_neighbour_features_come_horizontal_then_vertical():
    """Per scale: shape and spread, then (shape, mean, left and right scale) of the horizontal, vertical and two
    diagonal neighbour products, the order the shipped model was fitted in. A horizontal blur correlates
    horizontal neighbours far more than vertical ones."""
    img = _sample("astronaut.png")
    for blurred, along, across in ((cv2.blur(img, (9, 1)), 3, 7), (cv2.blur(img, (1, 9)), 7, 3)):
        f, _ = niqe.patch_features(blurred)
        assert (f[:, along] > f[:, across]).all() and (f[:, 18 + along] > f[:, 18 + across]).mean() > 0.8


def test_fit_and_score_against_ones_own_model():
    photos = [_sample(n) for n in ("chelsea.png", "coffee.png", "astronaut.png")]
    model = niqe.fit(photos)
    assert len(model["mean"]) == 36 and model["patches"] >= 5
    blurred = cv2.GaussianBlur(photos[2], (0, 0), 2.5)
    assert niqe.niqe(photos[2], model) < niqe.niqe(blurred, model)


def test_too_small_flat_or_non_uint8_images():
    with pytest.raises(ValueError, match="needs at least 96×96 pixels"):
        niqe.niqe(np.zeros((95, 300, 3), np.uint8))
    assert np.isnan(niqe.niqe(np.full((200, 200, 3), 128, np.uint8)))  # no statistics to score: NaN, not a number
    for bad in (np.zeros((200, 200, 3), np.uint16), np.zeros((200, 200), np.float32), np.zeros((200, 200, 2), np.uint8)):
        with pytest.raises(ValueError, match="expected a uint8 gray, RGB or RGBA image"):
            niqe.niqe(bad)
