"""`make demo`'s job (zoo.demo.build_demo) on the bundled photos, with a tiny random bundle."""

from __future__ import annotations

import re

import pytest

from cli_helpers import run
from degrade.io import read_image
from degrade.samples import real_photo_paths
from test_restore import make_random_bundle
from zoo.demo import build_demo


def test_demo_writes_a_page_whose_images_exist(home, tmp_path):
    make_random_bundle("rb")
    page = build_demo(tmp_path / "demo", model="rb", count=8, size=64, log=lambda m: None)
    html = page.read_text()
    for heading in ("Timings", "Restored real old photos", "Synthetic dataset", "Degradations"):
        assert f"<h2>{heading}</h2>" in html
    images = re.findall(r'(?:src|href)="([^"]+\.png)"', html)
    assert len([i for i in images if i.endswith(".compare.png")]) == len(real_photo_paths())
    for rel in images:
        assert read_image(page.parent / rel).pixels.size > 0, rel
    assert "demo@v1" in html


@pytest.mark.parametrize("model", ["nope", "/dev/null"])
def test_demo_with_a_bad_model_fails_before_writing_anything(home, tmp_path, capsys, model):
    r = run(capsys, "demo", "--out", tmp_path / "demo", "--model", model)
    assert r.code == 1 and r.err.startswith("error: ") and len(r.err.splitlines()) == 1, r.err
    assert not (tmp_path / "demo").exists()
    assert not (home / "datasets").exists() or not any((home / "datasets").iterdir())
