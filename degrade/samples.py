"""Photographs that ship with the installation: scikit-image's samples and a few real old photos."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

SKIMAGE_PHOTOS = (
    "astronaut.png",
    "camera.png",
    "chelsea.png",
    "coffee.png",
    "rocket.jpg",
    "motorcycle_left.png",
    "motorcycle_right.png",
    "coins.png",
    "moon.png",
    "grass.png",
    "gravel.png",
    "brick.png",
    "hubble_deep_field.jpg",
)
"""The photographs (not drawings or test charts) scikit-image bundles in its wheel."""

BUILTIN_SAMPLES = "builtin:samples"
BUILTIN_REAL = "builtin:real"


def sample_photo_paths() -> list[Path]:
    """Paths of scikit-image's bundled photographs (no download: they are in the wheel)."""
    import skimage.data

    root = Path(skimage.data.__file__).parent
    return [root / name for name in SKIMAGE_PHOTOS if (root / name).exists()]


def real_photo_paths() -> list[Path]:
    """The real old photos bundled with daguerre (MIT, see degrade/data/real/NOTICE.md)."""
    root = Path(str(resources.files("degrade") / "data" / "real"))
    return sorted(root.glob("*.png"))


def expand_builtin(token: str) -> list[Path] | None:
    """Paths for ``builtin:samples`` / ``builtin:real``; None for any other token."""
    if token == BUILTIN_SAMPLES:
        return sample_photo_paths()
    if token == BUILTIN_REAL:
        return real_photo_paths()
    return None
