"""The shipped default bundle: present, documented, loads without pickle, and restores for real."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from degrade import load_recipe
from degrade.io import read_image
from degrade.samples import real_photo_paths, sample_photo_paths
from zoo import metrics
from zoo.store import SHIPPED

pytestmark = pytest.mark.skipif(not (SHIPPED / "default.safetensors").exists(), reason="no shipped default weights")


def test_card_records_provenance_metrics_and_data():
    card = json.loads((SHIPPED / "default.json").read_text())
    assert card["model"] == "bundle" and set(card["parts"]) == {"vae1", "vae2", "mapping", "scratch"}
    assert card["provenance"]["clean_training_photos"] > 50
    assert any("CC" in k or "GPL" in k for k in card["provenance"]["by_source"])
    for part in card["parts"].values():
        assert part["datasets"] and all(d["identity"] for d in part["datasets"])
    m = card["metrics"]
    for ref in ("test-bopbtl", "test-old-photo"):
        # The targets (+3 dB, +0.05 SSIM) are met on bopbtl and, for PSNR, missed on old-photo
        # (docs/benchmarks.md); this guards what was measured: it improves on the input on both.
        assert m[ref]["gain_psnr"] > 0 and m[ref]["gain_ssim"] > 0.05
        assert 0 < m[ref]["detection_f1"] <= 1
    assert m["test-bopbtl"]["gain_psnr"] >= 3.0  # the docs say this target is met there
    # the second phases started from the first ones: the card says so
    assert card["parts"]["mapping"]["upstream"]["init"] == "default-mapping-ft"
    assert card["vgg_perceptual_loss"] is False
    # the mask was calibrated on validation sets of training photographs, one per test recipe
    cal, scratch = card["calibration"], card["parts"]["scratch"]["config"]
    assert cal["objective"] == "restore" and set(cal["datasets"]) == {"val-bopbtl", "val-old-photo"}
    assert (scratch["threshold"], scratch["seed_threshold"]) == (cal["chosen"], cal["seed"])
    # and its tone anchoring on the same sets: the card's is the one the calibration chose
    assert card["anchor"] == cal["anchor"]["chosen"] and card["anchor"] is not None
    assert (SHIPPED / "default.safetensors").stat().st_size < 20 * 2**20


def test_restoration_stays_registered_with_its_input_at_any_size(home):
    """A size that is not a multiple of the stride (101×133 at stride 4) is padded at the bottom and right, then
    cropped back from the top left: the restored photo matches its input best unshifted, not by the padding."""
    from zoo.restore import restore

    clean = cv2.resize(read_image(next(p for p in sample_photo_paths() if p.name == "chelsea.png")).rgb(), (133, 101),
                       interpolation=cv2.INTER_AREA)  # fmt: skip
    out, ref = restore(clean, scratches="none", anchor=False).image.astype(float), clean.astype(float)
    err = {(dy, dx): np.abs(out[8 + dy : 93 + dy, 8 + dx : 125 + dx] - ref[8:93, 8:125]).mean()
           for dy in range(-4, 5) for dx in range(-4, 5)}  # fmt: skip
    assert min(err, key=err.get) == (0, 0), sorted(err.items(), key=lambda kv: kv[1])[:3]


def test_default_restores_synthetic_damage(home):
    """On photos it never saw in training (scikit-image's are in its set, so degrade them anew), PSNR goes up."""
    from zoo.restore import restore

    recipe = load_recipe("bopbtl")
    gains = []
    for i, p in enumerate(sample_photo_paths()[:6]):
        clean = read_image(p).rgb()
        s = min(clean.shape[:2])
        clean = cv2.resize(clean[:s, :s], (192, 192), interpolation=cv2.INTER_AREA)
        degraded = recipe.apply(clean, seed=77, index=i).image
        out = restore(degraded).image
        gains.append(metrics.psnr(out, clean) - metrics.psnr(degraded, clean))
    assert np.mean(gains) > 1.0, gains


@pytest.mark.xfail(strict=True, reason="issue 6 open: the shipped detector misses thin scratches (F1 0.21 on this image; 0.94 on "
                   "test-bopbtl, whose defects are tears, 0.55 on test-old-photo; target 0.6); strict, so a better detector turns this red until re-enabled")
def test_default_detects_scratches(home):
    from zoo.restore import restore

    recipe = load_recipe({"steps": [{"op": "scratches", "count": 8, "width_px": 2.0, "opacity": 0.9}, {"op": "dust", "density": 60.0}]})
    p = [q for q in sample_photo_paths() if q.name == "coffee.png"][0]
    clean = cv2.resize(read_image(p).rgb(), (256, 192), interpolation=cv2.INTER_AREA)
    d = recipe.apply(clean, seed=5, index=0)
    res = restore(d.image)
    assert metrics.detection(res.mask, d.mask)["f1"] > 0.3


@pytest.mark.parametrize("side", [1, 4, 8, 16])
def test_thumbnails_keep_their_tones(home, side):
    """At a few pixels the networks saw mostly padding: 4–12 px thumbnails of real photos came back
    27–31 grey levels off on average (8 px: 20 darker). They are now restored enlarged, then shrunk."""
    from zoo.restore import restore

    off = []
    for p in real_photo_paths():  # the six bundled ones
        thumb = cv2.resize(read_image(p).rgb(), (side, side), interpolation=cv2.INTER_AREA)
        res = restore(thumb)
        assert res.image.shape == thumb.shape and res.mask.shape == (side, side)
        off.append(np.abs(res.image.astype(float) - thumb).mean())
    assert np.mean(off) < 10, off


def test_default_on_a_real_old_photo(home):
    from zoo.restore import restore

    p = [q for q in real_photo_paths() if q.name == "old_w_scratch_a.png"][0]
    pic = read_image(p)
    res = restore(pic.rgb())
    assert res.image.shape == pic.rgb().shape and res.mask.any()
    assert np.abs(res.image.astype(int) - pic.rgb()).mean() > 2


def test_bundle_layout_is_channels_last_and_changes_nothing_visible(home):
    """Channels-last is a speed choice only: the restored photo moves by at most one grey level."""
    import torch

    from zoo.bundle import load_bundle
    from zoo.restore import restore

    fast, plain = load_bundle("default"), load_bundle("default").to("cpu", channels_last=False)
    convs = [m for m in fast.mapping.modules() if isinstance(m, torch.nn.Conv2d) and m.kernel_size != (1, 1)]
    assert convs and all(c.weight.is_contiguous(memory_format=torch.channels_last) for c in convs)
    assert not plain.mapping.head[0].weight.is_contiguous(memory_format=torch.channels_last)
    p = [q for q in real_photo_paths() if q.name == "old_w_scratch_a.png"][0]
    rgb = read_image(p).rgb()[:200, :300]
    a, b = restore(rgb, fast), restore(rgb, plain)
    assert np.abs(a.image.astype(int) - b.image.astype(int)).max() <= 1
    assert (a.mask != b.mask).mean() < 1e-3


def test_scratches_all_inpaints_every_detection_auto_only_the_confident(home, tmp_path, capsys):
    from cli_helpers import run

    from zoo.restore import restore

    p = [q for q in real_photo_paths() if q.name == "old_w_scratch_a.png"][0]
    rgb = read_image(p).rgb()
    auto, every = restore(rgb, scratches="auto"), restore(rgb, scratches="all")
    assert auto.mask.any() and not (auto.mask & ~every.mask).any()  # the seeds only ever remove regions
    assert (every.mask > 0).sum() > 1.1 * (auto.mask > 0).sum()  # and here they do (1.19× with the shipped GPU detector)
    assert not np.array_equal(auto.image, every.image)
    r = run(capsys, "restore", str(p), "--out", str(tmp_path), "--scratches", "all")
    assert r.code == 0 and np.array_equal(read_image(tmp_path / "old_w_scratch_a.mask.png").pixels, every.mask)


def test_shipped_detector_is_the_committed_gpu_run():
    """train.sh bundles zoo/default/gpu-run-detector/'s weights: they must be the shipped detector's."""
    from safetensors.numpy import load_file

    from zoo.store import SHIPPED

    run = SHIPPED.parent / "default" / "gpu-run-detector"
    card = json.loads((SHIPPED / "default.json").read_text())
    name = card["parts"]["scratch"]["name"]
    assert name.startswith("default-scratch-gpu") and "detector" in card["provenance"]
    # each GPU run started from the one before, the first from the CPU-trained detector: all committed
    chain, step = [name], card["parts"]["scratch"]["upstream"]["init"]
    while step != "default-scratch-ft":
        assert (run / f"{step}.safetensors").exists() and len(chain) < 10, chain
        chain.append(step)
        step = Path(json.loads((run / f"{step}.json").read_text())["upstream"]["init"]).stem
    assert chain[-1] == "default-scratch-gpu"
    shipped = load_file(SHIPPED / "default.safetensors")
    committed = load_file(run / f"{name}.safetensors")
    assert committed and all(k.startswith("model.") for k in committed)
    for k, v in committed.items():
        np.testing.assert_array_equal(shipped["scratch." + k[len("model."):]], v)


def test_a_copy_of_the_shipped_bundle_with_another_detector(home):
    """`zoo bundle NEW --from default --scratch DET`: the shipped networks, the new detector, nothing stale."""
    from safetensors.numpy import load_file

    from zoo.bundle import load_bundle, replace_parts
    from zoo.store import SHIPPED

    det = SHIPPED.parent / "default" / "gpu-run-detector" / "default-scratch-gpu.safetensors"
    before = (SHIPPED / "default.safetensors").read_bytes(), (SHIPPED / "default.json").read_bytes()
    path = replace_parts("other", "default", scratch=str(det))
    card = load_bundle("other").card
    assert card["parts"]["scratch"]["name"] == "default-scratch-gpu" and card["parts"]["scratch"]["steps"] == 6000
    assert not {"calibration", "anchor", "metrics"} & set(card) and "detector" not in card["provenance"]
    assert card["provenance"]["clean_training_photos"] == json.loads((SHIPPED / "default.json").read_text())["provenance"]["clean_training_photos"]
    new, shipped, detector = load_file(path), load_file(SHIPPED / "default.safetensors"), load_file(det)
    assert new.keys() == shipped.keys()
    for k, v in new.items():
        if k.startswith("scratch."):
            np.testing.assert_array_equal(v, detector["model." + k[len("scratch."):]])
        else:
            np.testing.assert_array_equal(v, shipped[k])
    assert ((SHIPPED / "default.safetensors").read_bytes(), (SHIPPED / "default.json").read_bytes()) == before


def test_publish_refuses_without_the_real_photos_before_writing_anything(tmp_path, monkeypatch):
    """Without ../shared's photos, publish stops with one line before it evaluates, saves or deletes anything."""
    from zoo.default import publish

    repo = tmp_path / "repo"
    (repo / "docs" / "img").mkdir(parents=True)
    sheet = repo / "docs" / "img" / "real-before-after-1.png"
    sheet.write_bytes(b"an earlier sheet")
    monkeypatch.setattr(publish, "ROOT", repo)
    with pytest.raises(SystemExit, match=r"no real old photos in .*shared/data/real_old_photos"):
        publish.main(str(tmp_path / "work"))
    assert sheet.read_bytes() == b"an earlier sheet" and sorted(p.name for p in repo.rglob("*")) == ["docs", "img", sheet.name]
