"""zoo.default.gpu_inputs: what travels to a GPU machine is the training photographs' own pixels."""

from __future__ import annotations

import cv2
import numpy as np

from zoo.default.gpu_inputs import copy_photos


def test_webp_travel_is_lossless_and_keeps_what_webp_cannot_hold(tmp_path):
    rng = np.random.default_rng(0)
    src, dst = tmp_path / "src", tmp_path / "dst"
    src.mkdir()
    colour = rng.integers(0, 256, (40, 56, 3), dtype=np.uint8)
    deep = rng.integers(0, 65536, (30, 20, 3), dtype=np.uint16)
    cv2.imwrite(str(src / "a.png"), colour)
    cv2.imwrite(str(src / "b.tif"), colour[::-1])
    cv2.imwrite(str(src / "c.png"), deep)
    total = copy_photos(src, dst, webp=True)
    assert sorted(p.name for p in dst.iterdir()) == ["a.webp", "b.webp", "c.png"]
    assert total == sum(p.stat().st_size for p in dst.iterdir())
    np.testing.assert_array_equal(cv2.imread(str(dst / "a.webp")), colour)
    np.testing.assert_array_equal(cv2.imread(str(dst / "b.webp")), colour[::-1])
    np.testing.assert_array_equal(cv2.imread(str(dst / "c.png"), cv2.IMREAD_UNCHANGED), deep)  # 16-bit stays PNG
    plain = copy_photos(src, tmp_path / "plain")  # without webp: PNGs copied as they are, the TIFF as PNG
    assert sorted(p.name for p in (tmp_path / "plain").iterdir()) == ["a.png", "b.png", "c.png"] and plain > 0
