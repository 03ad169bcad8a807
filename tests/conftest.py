"""Shared fixtures: real photographs (scikit-image samples, bundled old photos) at test sizes."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from hypothesis import HealthCheck, settings

from degrade.io import read_image
from degrade.samples import real_photo_paths, sample_photo_paths

def pytest_configure(config):
    """Never touch the user's ~/.daguerre: tests that forget the ``home`` fixture get a scratch one."""
    import os
    import tempfile

    config._daguerre_scratch_home = tempfile.mkdtemp(prefix="daguerre-test-home-")
    os.environ["DAGUERRE_HOME"] = config._daguerre_scratch_home


def pytest_unconfigure(config):
    """The scratch home goes with the session (one was left in the temp folder per run)."""
    import shutil

    home = getattr(config, "_daguerre_scratch_home", None)
    if home:
        shutil.rmtree(home, ignore_errors=True)


settings.register_profile("ci", max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("ci")


def _load(name: str) -> np.ndarray:
    for p in sample_photo_paths():
        if p.name == name:
            return read_image(p).pixels
    raise FileNotFoundError(name)


@pytest.fixture(scope="session")
def photo() -> np.ndarray:
    """A colour photograph (scikit-image's chelsea) at 128×192."""
    return cv2.resize(_load("chelsea.png"), (192, 128), interpolation=cv2.INTER_AREA)


@pytest.fixture(scope="session")
def gray_photo() -> np.ndarray:
    """A grayscale photograph (scikit-image's camera) at 96×96."""
    return cv2.resize(_load("camera.png"), (96, 96), interpolation=cv2.INTER_AREA)


@pytest.fixture(scope="session")
def old_photo() -> np.ndarray:
    """A real scratched old photo (bundled, MIT) as RGB."""
    p = [q for q in real_photo_paths() if q.name == "old_w_scratch_a.png"][0]
    return read_image(p).rgb()


@pytest.fixture()
def home(tmp_path, monkeypatch):
    """An isolated DAGUERRE_HOME."""
    h = tmp_path / "home"
    monkeypatch.setenv("DAGUERRE_HOME", str(h))
    return h
