"""daguerre bench: metrics by hand, breakdown bins, reports, comparison, traceability, errors."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import bench_scripts
from cli_helpers import one_line_error, python_ok, run, run_python
from degrade.errors import DaguerreError
from pipelines import build_spec, create_dataset
from test_restore import make_random_bundle
from zoo import metrics
import zoo.bench
from zoo.bench import bootstrap_ci, run_bench
from zoo.methods import METHODS, Method, get_method, register_method


def test_psnr_of_a_known_noise_level():
    rng = np.random.default_rng(0)
    clean = np.full((200, 200, 3), 128, np.uint8)
    noisy = (clean + rng.choice([-10, 10], clean.shape)).astype(np.uint8)  # MSE exactly 100
    assert abs(metrics.psnr(noisy, clean) - 10 * math.log10(255**2 / 100)) < 1e-9
    assert metrics.psnr(clean, clean) == metrics.PSNR_MAX == 100.0  # identical: capped, not infinite
    big = np.full((256, 256, 3), 128, np.uint8)
    one = big.copy()
    one[0, 0, 0] += 1  # one level at one pixel: MSE 1/196608, 101.07 dB uncapped
    assert metrics.psnr(one, big) == metrics.PSNR_MAX
    with pytest.raises(ValueError, match="shapes"):
        metrics.psnr(clean, clean[..., :1])
    with pytest.raises(ValueError, match="shapes"):
        metrics.detection(np.ones((4, 4), np.uint8), np.ones((4, 1), np.uint8))
    mask = np.zeros((200, 200), bool)
    mask[:10] = True
    half = clean.copy()
    half[:10] = 138
    assert abs(metrics.psnr(half, clean, mask) - 10 * math.log10(255**2 / 100)) < 1e-9
    assert metrics.psnr(half, clean, ~mask) == metrics.PSNR_MAX
    # float images in 0..1 scored ~76 dB against the 255 peak; every metric now takes uint8 only
    for f in (metrics.psnr, metrics.ssim, metrics.ms_ssim, metrics.gmsd):
        with pytest.raises(ValueError, match="expected uint8 images"):
            f(noisy / 255.0, clean / 255.0)


def test_ssim_identical_is_one_and_detection_counts():
    img = np.random.default_rng(1).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    assert metrics.ssim(img, img) == pytest.approx(1.0)
    assert metrics.ssim(img, 255 - img) < 0.5
    pred = np.array([[1, 1, 0, 0]])
    truth = np.array([[1, 0, 1, 0]])
    d = metrics.detection(pred, truth)
    assert (d["tp"], d["fp"], d["fn"]) == (1, 1, 1)
    assert d["precision"] == 0.5 and d["recall"] == 0.5 and d["f1"] == 0.5 and d["iou"] == pytest.approx(1 / 3)
    d = metrics.detection(np.array([[1, 1, 1, 0, 0]]), np.array([[1, 0, 0, 1, 0]]))  # fp and fn differ: not swappable
    assert (d["tp"], d["fp"], d["fn"]) == (1, 2, 1)
    assert d["precision"] == pytest.approx(1 / 3) and d["recall"] == 0.5 and d["f1"] == 0.4 and d["iou"] == 0.25


def test_ssim_is_scikit_images_default_not_the_gaussian_variant(photo):
    """docs/bench.md: SSIM is scikit-image's default (7×7 uniform window, sample covariance), data range 255,
    channels averaged; it is not the Gaussian-window SSIM of Wang et al. 2004, which it reads above here."""
    import cv2
    from skimage.metrics import structural_similarity

    blurred = cv2.GaussianBlur(photo, (0, 0), 1.5)
    ours = metrics.ssim(blurred, photo)
    assert ours == structural_similarity(blurred, photo, win_size=7, gaussian_weights=False, use_sample_covariance=True,
                                         K1=0.01, K2=0.03, data_range=255, channel_axis=2)  # fmt: skip
    assert ours == pytest.approx(np.mean([metrics.ssim(blurred[..., c], photo[..., c]) for c in range(3)]), abs=1e-12)
    gauss = structural_similarity(blurred, photo, gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
                                  data_range=255, channel_axis=2)  # fmt: skip
    assert ours - gauss > 0.005


def test_per_image_f1_leaves_out_images_without_defects_in_truth_or_prediction():
    """docs/bench.md: an image with no defect pixel in the truth nor the prediction has no F1 (left out of the
    per-image mean); one with false alarms only scores 0; pooled scores sum the pixel counts."""
    from zoo.bench import aggregate

    z, o = np.zeros((4, 4), np.uint8), np.ones((4, 4), np.uint8)
    dets = [metrics.detection(o, o), metrics.detection(z, z), metrics.detection(o, z)]
    assert math.isnan(dets[1]["f1"]) and dets[2]["f1"] == 0.0
    rows = [{"methods": {"m": {"detection": d, "seconds": 0.0}}, "params": []} for d in dets]
    det = aggregate(rows, ["m"])["m"]["detection"]
    assert det["per_image_f1"] == 0.5 and det["pooled"]["f1"] == pytest.approx(2 * 16 / (2 * 16 + 16))


def test_ms_ssim_and_gmsd(photo):
    """MS-SSIM's finest scale is Gaussian SSIM as scikit-image computes it; both metrics order damage."""
    import cv2
    from skimage.metrics import structural_similarity

    img = cv2.resize(photo, (256, 192))
    assert metrics.ms_ssim(img, img) == pytest.approx(1.0) and metrics.gmsd(img, img) == 0.0
    blurred = cv2.GaussianBlur(img, (0, 0), 2.0)
    ours = np.mean([metrics._ssim_cs(img[..., c].astype(float), blurred[..., c].astype(float))[0] for c in range(3)])
    theirs = structural_similarity(img, blurred, channel_axis=2, data_range=255, gaussian_weights=True, sigma=1.5,
                                   use_sample_covariance=False)  # fmt: skip
    assert ours == pytest.approx(theirs, abs=1e-9)
    rng = np.random.default_rng(0)
    noisy = [np.clip(img + rng.normal(0, s, img.shape), 0, 255).astype(np.uint8) for s in (5, 15, 40)]
    ms = [metrics.ms_ssim(n, img) for n in noisy]
    gm = [metrics.gmsd(n, img) for n in noisy]
    assert 1 > ms[0] > ms[1] > ms[2] > 0 and 0 < gm[0] < gm[1] < gm[2]
    blurs = [metrics.gmsd(cv2.GaussianBlur(img, (0, 0), s), img) for s in (1.0, 2.0, 4.0)]
    assert blurs[0] < blurs[1] < blurs[2]
    assert metrics.gmsd(noisy[1], img) == pytest.approx(metrics.gmsd(img, noisy[1]))  # symmetric
    gray = img[..., 1]
    assert metrics.ms_ssim(gray, gray) == pytest.approx(1.0) and 0 < metrics.ms_ssim(noisy[1][..., 1], gray) < 1
    odd = metrics.ms_ssim(img[:191, :201], blurred[:191, :201])  # odd sizes: the last row and column halve alone
    assert 0 < odd < 1 and odd == pytest.approx(metrics.ms_ssim(img[:190, :200], blurred[:190, :200]), abs=0.01)
    with pytest.raises(ValueError, match="at least 161 px"):
        metrics.ms_ssim(img[:100], img[:100])
    for bad, why in [(img.astype(np.uint16), "expected uint8"), (img.astype(np.float32) / 255, "expected uint8"),
                     (img[..., :1], "expected H×W or H×W×3"), (np.dstack([img, img[..., :1]]), "expected H×W or H×W×3")]:  # fmt: skip
        for fn in (metrics.ms_ssim, metrics.gmsd):
            with pytest.raises(ValueError, match=why):
                fn(bad, bad)


def test_ms_ssim_sees_brightness_and_gmsd_both_gradient_directions(photo):
    """MS-SSIM's coarsest scale keeps SSIM's luminance term: a pure brightness offset (no clipping) leaves every
    contrast-structure term at 1 and still costs it. GMSD's gradient magnitude uses both Prewitt directions, so
    transposing both images leaves it unchanged even for a one-directional (horizontal) blur."""
    import cv2

    img = (cv2.resize(photo, (256, 192)) * 0.6 + 40).astype(np.uint8)  # 40..193: +40 clips nothing
    shifted = img + np.uint8(40)
    ms = metrics.ms_ssim(shifted, img)
    # luminance 1 - 40²/(μx² + μy² + c1) with μ ≤ 240: at most 0.9836, to the power 0.1333: at most 0.9978
    assert 0.99 < ms < 0.998
    blurred = cv2.blur(img, (9, 1))  # horizontal only: changes x gradients, hardly y ones
    t = lambda a: np.ascontiguousarray(a.swapaxes(0, 1))  # noqa: E731
    assert metrics.gmsd(t(blurred), t(img)) == pytest.approx(metrics.gmsd(blurred, img), rel=1e-9)
    gray, gblur = img[..., 1], blurred[..., 1]
    assert metrics.gmsd(gblur.T.copy(), gray.T.copy()) == pytest.approx(metrics.gmsd(gblur, gray), rel=1e-9)


def _gmsd_reference(a: np.ndarray, b: np.ndarray) -> float:
    """Xue et al.'s GMSD.m line by line: conv2(Y, ones(2)/4, 'same') (zeros past the last row and column),
    every second sample, conv2 with the Prewitt kernels 'same' (zeros around), T = 170; std2 takes N - 1,
    the population deviation here (as piq's), a relative 1/(2N) apart."""

    def grad(x):
        y = metrics.luma(x)
        y = np.pad(y, ((0, 1), (0, 1)))
        y = ((y[:-1, :-1] + y[1:, :-1] + y[:-1, 1:] + y[1:, 1:]) / 4)[::2, ::2]
        p = np.pad(y, 1)
        h, w = y.shape
        gx = sum(p[i : i + h, 2 : 2 + w] - p[i : i + h, 0:w] for i in range(3)) / 3
        gy = sum(p[2 : 2 + h, j : j + w] - p[0:h, j : j + w] for j in range(3)) / 3
        return np.sqrt(gx * gx + gy * gy)

    g1, g2 = grad(a), grad(b)
    return float(np.std((2 * g1 * g2 + 170) / (g1 * g1 + g2 * g2 + 170)))


@pytest.mark.parametrize("size", [(192, 256), (191, 255), (95, 128), (1, 1), (3, 2)])
def test_gmsd_is_the_authors_code_on_odd_sizes_too(photo, size):
    """An odd last row or column is averaged with zeros when halved, as the authors' conv2 'same' does (and piq):
    edge padding moved GMSD by up to 0.0015 on 481×321 photographs."""
    import cv2

    img = cv2.resize(photo, (256, 192))[: size[0], : size[1]].copy()
    blurred = cv2.GaussianBlur(img, (0, 0), 1.5)
    noisy = np.clip(img + np.random.default_rng(3).normal(0, 12, img.shape), 0, 255).astype(np.uint8)
    for other in (blurred, noisy):
        assert metrics.gmsd(other, img) == pytest.approx(_gmsd_reference(other, img), abs=1e-12)
        assert metrics.gmsd(other[..., 1], img[..., 1]) == pytest.approx(_gmsd_reference(other[..., 1], img[..., 1]), abs=1e-12)


def test_bootstrap_ci_contains_the_mean_and_is_deterministic():
    vals = list(np.random.default_rng(2).normal(10, 1, 200))
    m, lo, hi = bootstrap_ci(vals)
    assert lo < m < hi and hi - lo < 0.5
    assert bootstrap_ci(vals) == (m, lo, hi)


def test_one_value_has_no_interval_rather_than_a_zero_width_one(tmp_path):
    """Every bootstrap resample of one value is that value: the interval [x, x] passed for certainty. It is
    unavailable: NaN from bootstrap_ci, null in results.json, ``[n/a]`` in the report."""
    from zoo.bench import aggregate, save_results
    from zoo.report import real_rows, summary_rows

    m, lo, hi = bootstrap_ci([21.5])
    assert m == 21.5 and math.isnan(lo) and math.isnan(hi)
    m, lo, hi = bootstrap_ci([21.5, math.inf, math.nan])  # one finite value among undefined ones: the same
    assert m == 21.5 and math.isnan(lo) and math.isnan(hi)
    assert bootstrap_ci([1.0, 3.0])[1] < bootstrap_ci([1.0, 3.0])[2]  # two values have an interval
    agg = aggregate([{"methods": {"m": {"psnr": 21.5, "ssim": 0.5, "niqe": 4.0, "seconds": 0.1}}, "params": []}], ["m"])
    result = {"aggregate": agg, "dataset": {}}
    assert summary_rows(result)[0][1:3] == ["21.50 [n/a]", "0.5000 [n/a]"] and real_rows(result)[0][1] == "4.00 [n/a]"
    save_results(result, tmp_path / "r.json")
    assert json.loads((tmp_path / "r.json").read_text())["aggregate"]["m"]["psnr"]["ci95"] == [None, None]


def test_restore_quality_writes_strict_json(tiny, tmp_path, monkeypatch, capsys):
    """bench/restore_quality.py wrote NaN literals, which strict parsers refuse, for undefined figures (the interval
    of one sample, a precision with no detection): they are null, as in bench's results.json."""
    script = bench_scripts.load("restore_quality")
    out = tmp_path / "q.json"
    monkeypatch.setattr("sys.argv", ["restore_quality", "--model", "rb", "--datasets", "b", "--n", "1", "--workers", "1", "--out", str(out)])
    script.main()
    r = json.loads(out.read_text(), parse_constant=lambda c: pytest.fail(f"{c} in {out.name}"))
    assert r["b"]["ci95"]["identity"]["psnr"] == [None, None] and r["b"]["methods"]["identity"]["psnr"] > 0


def test_aggregate_counts_the_values_its_mean_is_over():
    """An exact restoration's PSNR is PSNR_MAX and averaged like any other (it was infinite and left out, so a
    method's mean was over other samples than its rivals'); one outside a mask covering the image is undefined
    and left out of the mean and interval: ``n`` counts the values averaged, the others are counted apart."""
    from zoo.bench import aggregate

    img = np.full((8, 8, 3), 7, np.uint8)
    rows = [{"methods": {"m": {"psnr": v, "seconds": 0.1}}, "params": []} for v in (20.0, 30.0, metrics.psnr(img, img), math.nan)]
    a = aggregate(rows, ["m"])["m"]
    assert a["psnr"]["mean"] == 50.0 and a["psnr"]["n"] == 3 and a["psnr"]["not_finite"] == 1 and a["psnr"]["capped"] == 1
    assert a["seconds"]["n"] == 4 and "not_finite" not in a["seconds"] and "capped" not in a["seconds"]


def test_method_registry_and_user_methods():
    assert {"identity", "nlm", "telea", "ns", "nlm+telea", "median", "bilateral", "zoo"} <= set(METHODS)
    with pytest.raises(DaguerreError, match="unknown method 'foo'"):
        get_method("foo")
    with pytest.raises(DaguerreError, match="zoo:default or zoo:PATH"):
        get_method("zoo")
    with pytest.raises(DaguerreError, match="zoo-raw:default"):
        get_method("zoo-raw")

    @register_method("invert-test")
    class Invert(Method):
        """Inverted colours (a test method)."""

        def run(self, image, mask=None):
            return 255 - image, None

    try:
        out, _ = get_method("invert-test").run(np.zeros((2, 2, 3), np.uint8))
        assert get_method("invert-test").card() == {"method": "invert-test", "doc": "Inverted colours (a test method)."}
        Invert.__doc__ = None  # a method without a docstring: an empty description, not an IndexError from run_bench
        assert get_method("invert-test").card() == {"method": "invert-test", "doc": ""}
        assert out.max() == 255
        # a taken name is refused (it silently replaced the built-in nlm), as operators and models are
        builtin = METHODS["nlm"]
        for taken in ("nlm", "invert-test"):
            with pytest.raises(ValueError, match=f"method '{taken}' is already registered"):
                register_method(taken)(type("Other", (Method,), {}))
        assert METHODS["nlm"] is builtin
        with pytest.raises(ValueError, match="invalid method name"):
            register_method("a:b")
    finally:
        METHODS.pop("invert-test")


@pytest.fixture()
def tiny(home):
    make_random_bundle("rb")
    res = create_dataset(build_spec("b", "builtin:samples", 24, 48, 3, "severe", shard_size=8), workers=1, scheduler="threads")
    return res


def test_bench_results_breakdown_and_traceability(tiny):
    r = run_bench("b", ["identity", "nlm", "nlm+telea", "zoo:rb"], mask_source="gt", workers=1, sheet_samples=3)
    assert r["samples"] == 24 and r["dataset"]["identity"] == tiny.version.identity
    agg = r["aggregate"]
    assert set(agg) == {"identity", "nlm", "nlm+telea", "zoo:rb"}
    assert agg["identity"]["psnr"]["n"] == 24 and agg["identity"]["psnr"]["ci95"][0] <= agg["identity"]["psnr"]["mean"]
    assert "detection" in agg["zoo:rb"] and "detection" not in agg["nlm"]
    assert r["methods"]["zoo:rb"]["card_sha256"] and r["methods"]["nlm"]["doc"]
    # zoo-raw is the bundle without tone anchoring: an anchored copy of rb differs, the raw one does not
    from zoo import checkpoint, store

    tensors, card = checkpoint.load(store.resolve("rb"))
    checkpoint.save(store.models_dir() / "rba", tensors, {**card, "anchor": {"sigma": 2.0, "tau": 32.0}})
    a = run_bench("b", ["zoo:rb", "zoo-raw:rba", "zoo:rba"], n=6, mask_source="gt", workers=1)["aggregate"]
    assert a["zoo-raw:rba"]["psnr"]["mean"] == pytest.approx(a["zoo:rb"]["psnr"]["mean"], abs=1e-3)
    assert abs(a["zoo:rba"]["psnr"]["mean"] - a["zoo:rb"]["psnr"]["mean"]) > 0.01
    # identity's PSNR equals the degraded-vs-clean PSNR computed directly
    from pipelines import open_dataset

    ds = open_dataset("b")
    direct = np.mean([metrics.psnr(ds.read("degraded", i), ds.read("clean", i)) for i in range(24)])
    assert agg["identity"]["psnr"]["mean"] == pytest.approx(direct)
    direct = np.mean([metrics.gmsd(ds.read("degraded", i), ds.read("clean", i)) for i in range(24)])
    assert agg["identity"]["gmsd"]["mean"] == pytest.approx(direct) and agg["nlm"]["gmsd"]["n"] == 24
    damaged = [i for i in range(24) if ds.read("mask", i).any()]
    direct = np.mean([metrics.psnr(ds.read("degraded", i), ds.read("clean", i), ds.read("mask", i) > 0) for i in damaged])
    assert damaged and agg["identity"]["psnr_in_mask"]["mean"] == pytest.approx(direct)
    assert agg["nlm+telea"]["psnr_out_mask"]["n"] == len(damaged)
    assert "ms_ssim" not in agg["identity"]  # five scales need 161 px; these samples are smaller
    br = r["breakdown"]
    assert "jpeg" in br and br["jpeg"]["applied"] + br["jpeg"]["not_applied"] == 24
    f1s = [e["methods"]["zoo:rb"].get("f1_applied") for e in br.values()]  # detection F1 by operator, detectors only
    assert any(f is not None and 0 <= f <= 1 for f in f1s) and all("f1_applied" not in e["methods"]["nlm"] for e in br.values())
    from zoo.report import breakdown_header, breakdown_rows

    assert "zoo:rb detection F1" in breakdown_header(r)
    assert all(len(row) == len(breakdown_header(r)) for row in breakdown_rows(r))
    binned = [e for e in br.values() if "bins" in e]
    assert binned and all(sum(b["n"] for b in e["bins"]) == e["applied"] for e in binned)
    assert len(r["sheet_rows"]) == 3


def test_the_sample_sheet_shows_the_input_once(tiny, tmp_path, monkeypatch):
    """With ``identity`` among the methods the sheet showed the input twice, side by side; its PSNR now
    goes under the input."""
    import degrade.sheet

    from zoo.report import sheet

    seen = {}
    real = degrade.sheet.contact_sheet
    monkeypatch.setattr(degrade.sheet, "contact_sheet", lambda tiles, labels, **k: seen.update(labels=labels, **k) or real(tiles, labels, **k))
    r = run_bench("b", ["identity", "nlm"], n=4, mask_source="gt", workers=1, sheet_samples=2)
    assert sheet(r, tmp_path).stat().st_size > 0
    assert seen["ncols"] == 3 and not any(lab.startswith("identity") for lab in seen["labels"])
    assert seen["labels"][0].startswith("#0 input ") and seen["labels"][0].endswith(" dB")
    assert seen["labels"][1].startswith("nlm ") and seen["labels"][2] == "ground truth"


def test_detected_mask_comes_from_the_first_zoo_or_zoo_raw_method_and_threads_are_restored(tiny, monkeypatch):
    """`--mask detected` with only `zoo-raw:NAME` used the default bundle's detector; a serial bench
    left the caller's process at one torch thread."""
    import torch

    import zoo.methods

    asked = []
    monkeypatch.setattr(zoo.methods, "detected_mask", lambda image, model="default", device="cpu": asked.append(model) or np.zeros(image.shape[:2], np.uint8))
    torch.set_num_threads(2)
    run_bench("b", ["nlm+telea", "zoo-raw:rb"], n=2, mask_source="detected", workers=1)
    assert set(asked) == {"rb"} and torch.get_num_threads() == 2


@pytest.mark.parametrize("source", ["detected", "gt"])
def test_the_shared_mask_goes_to_inpainting_methods_only_each_bundle_detects_its_own(tiny, monkeypatch, source):
    """docs/bench.md: `--mask` chooses the mask the inpainting methods (telea, ns, nlm+telea) are given, the same
    for all of them; every zoo bundle runs and is scored with its own detector, whatever `--mask` says."""
    import zoo.methods
    from test_restore import make_random_bundle

    make_random_bundle("rb2", seed=1)
    shared = np.zeros((48, 48), np.uint8)
    shared[10:20, 5:40] = 1
    asked, given = [], []
    monkeypatch.setattr(zoo.methods, "detected_mask", lambda image, model="default", device="cpu": asked.append(model) or shared)
    for cls in (zoo.methods.Telea, zoo.methods.ZooBundle):
        monkeypatch.setattr(cls, "run", lambda self, image, mask=None, run=cls.run: given.append((self.label, mask)) or run(self, image, mask))
    r = run_bench("b", ["telea", "zoo:rb2", "zoo-raw:rb"], n=2, mask_source=source, workers=1)
    assert set(asked) == ({"rb2"} if source == "detected" else set())  # the first zoo method's detector
    from pipelines import open_dataset

    ds = open_dataset("b")
    for i in range(2):
        telea = [m for lab, m in given[3 * i : 3 * i + 3] if lab == "telea"]
        assert np.array_equal(telea[0], shared if source == "detected" else ds.read("mask", i))
        assert [(lab, m) for lab, m in given[3 * i : 3 * i + 3] if lab != "telea"] == [("zoo:rb2", None), ("zoo-raw:rb", None)]
    from zoo.restore import detect_mask, get_bundle

    counts = lambda d: (d["tp"], d["fp"], d["fn"])  # noqa: E731
    own = {}
    for name, label in (("rb2", "zoo:rb2"), ("rb", "zoo-raw:rb")):  # each bundle is scored on its own detector's mask
        own[name] = [counts(metrics.detection(detect_mask(get_bundle(name), ds.read("degraded", i)), ds.read("mask", i))) for i in range(2)]
        assert [counts(row["methods"][label]["detection"]) for row in r["per_sample"]] == own[name]
    assert own["rb"] != own["rb2"]  # the two detectors differ: a shared mask would show


def test_parallel_bench_equals_serial(tiny):
    a = run_bench("b", ["identity", "median"], n=10, mask_source="gt", workers=1)
    b = run_bench("b", ["identity", "median"], n=10, mask_source="gt", workers=2)
    strip = lambda rows: [{k: {m: {x: y for x, y in v.items() if x != "seconds"} for m, v in r["methods"].items()} for k in ("methods",)} for r in rows]  # noqa: E731
    assert strip(a["per_sample"]) == strip(b["per_sample"])


def test_cli_bench_report_compare_and_errors(capsys, tiny, tmp_path):
    out = tmp_path / "r1"
    r = run(capsys, "bench", "--dataset", "b", "--methods", "identity,median,telea,zoo:rb", "--mask", "gt", "--out", out, "--workers", "1")
    assert r.code == 0, r.err
    for f in ("results.json", "report.md", "report.html", "sheet.png"):
        assert (out / f).exists(), f
        assert f in r.out, f  # the summary line names every file it wrote (the sheet and plots were left out)
    assert f"{len(list(out.glob('plot-*.png')))} plot-*.png" in r.out
    md = (out / "report.md").read_text()
    for name in ("identity", "median", "telea", "zoo:rb", "By degradation"):
        assert name in md
    assert list(out.glob("plot-*.png"))
    html = (out / "report.html").read_text()
    assert "<table>" in html and "zoo:rb" in html
    res = json.loads((out / "results.json").read_text())
    assert res["dataset"]["identity"] and res["results_sha256"] and res["methods"]["zoo:rb"]["card_sha256"]
    # the mask columns say their unit and interval as the others do, and over which samples they average
    assert "| PSNR in mask dB [95% CI] | PSNR outside mask dB [95% CI] |" in md
    assert res["aggregate"]["identity"]["psnr_in_mask"]["n"] == 24 and "samples with a defect" not in md  # all of them
    r = run(capsys, "bench", "--dataset", "b", "--methods", "identity,median", "--n", "8", "--out", tmp_path / "r2", "--mask", "gt", "--workers", "1")
    assert r.code == 0
    r = run(capsys, "bench", "compare", out / "results.json", tmp_path / "r2" / "results.json", "--json")
    d = json.loads(r.out)
    assert d["same_dataset"] and d["methods"]["median"]["psnr"]["delta"] is not None
    assert d["methods"]["median"]["gmsd"]["delta"] is not None
    assert d["methods"]["zoo:rb"]["psnr"]["b"] is None
    r = run(capsys, "bench", "compare", out / "results.json", tmp_path / "r2" / "results.json")
    assert r.code == 0 and "median" in r.out and "note: samples differs (24 in A, 8 in B)" in r.out
    assert "seconds are not comparable" not in r.out
    moved = json.loads((tmp_path / "r2" / "results.json").read_text()) | {"device": "cuda", "workers": 2}
    (tmp_path / "moved.json").write_text(json.dumps(moved))
    r = run(capsys, "bench", "compare", out / "results.json", tmp_path / "moved.json")
    assert "note: device differs (cpu in A, cuda in B): the seconds are not comparable" in r.out
    assert "note: workers differs (1 in A, 2 in B)" in r.out
    (tmp_path / "list.json").write_text("[1]")
    for args, msg in [
        (["--dataset", "b", "--methods", "identity,bogus"], "unknown method 'bogus'"),
        (["--dataset", "missing", "--methods", "identity"], "unknown dataset 'missing'"),
        (["--dataset", "b", "--methods", "zoo:nope"], "unknown model 'nope'"),
        (["--methods", "identity"], "bench needs --dataset"),
        (["compare", str(tmp_path / "none.json"), str(out / "results.json")], "cannot read results"),
        (["compare", str(tmp_path / "list.json"), str(out / "results.json")], "is not a results.json written by"),
        (["--dataset", "b", "--methods", "identity", "--n", "0"], "'--count' / '-n': 0 is not in the range"),  # --n: the old spelling
        (["--dataset", "b", "--methods", "identity", "--out", str(tmp_path / "list.json" / "sub")], "Not a directory"),
    ]:
        r = run(capsys, "bench", *args)
        assert one_line_error(r) and msg in r.err, (args, r.err)


def test_a_misspelt_method_or_dataset_leaves_no_report_folder_behind(capsys, tiny, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for args in (["--methods", "idnetity"], ["--methods", "identity,zoo:nope"], ["--methods", "identity", "--dataset", "nope"]):
        r = run(capsys, "bench", "--dataset", "b", *args)
        assert one_line_error(r), r.err
        assert not (tmp_path / "bench-out").exists(), args


def test_a_bad_out_folder_fails_before_the_benchmark(capsys, tiny, tmp_path, monkeypatch):
    monkeypatch.setattr(zoo.bench, "_one", lambda *a: pytest.fail("benchmarked before checking --out"))
    (tmp_path / "afile").write_text("x")
    r = run(capsys, "bench", "--dataset", "b", "--methods", "identity", "--out", tmp_path / "afile" / "sub", "--workers", "1")
    assert one_line_error(r) and "--out" in r.err and "Not a directory" in r.err


def test_a_fifo_or_device_named_results_json_in_out_is_refused_unread(tmp_path):
    """--out holding a FIFO named results.json waited for a writer for ever; a link to /dev/zero was read until memory ran out."""
    from cli_helpers import refusals_of_fifo_and_zero

    assert refusals_of_fifo_and_zero(tmp_path, "results.json", "zoo.report", "prepare_out", memory_cap=True) == [
        f"{tmp_path / d / 'results.json'} exists and was not written by `daguerre bench`; choose another --out" for d in ("fifo", "zero")]


def test_a_results_json_nested_thousands_deep_is_not_an_internal_error(capsys, tmp_path):
    """bench --out (telling an earlier report from a user's files) and bench compare let json's RecursionError out."""
    from degrade.errors import DaguerreError
    from zoo.report import prepare_out

    (tmp_path / "out").mkdir()
    deep = tmp_path / "out" / "results.json"
    deep.write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(DaguerreError, match="exists and was not written by `daguerre bench`"):
        prepare_out(tmp_path / "out")
    r = run(capsys, "bench", "compare", deep, deep)
    assert one_line_error(r) and r.err == f"error: cannot read results {deep}: nested too deep\n", r.err


def test_bench_replaces_an_earlier_report_but_never_a_users_files(capsys, tiny, tmp_path):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "report.md").write_text("# my thesis notes\n")
    r = run(capsys, "bench", "--dataset", "b", "--methods", "identity", "--n", "2", "--out", mine, "--workers", "1")
    assert one_line_error(r) and "report.md exists and was not written by `daguerre bench`" in r.err, r.err
    assert (mine / "report.md").read_text() == "# my thesis notes\n" and not (mine / "results.json").exists()
    out = tmp_path / "again"
    for _ in range(2):  # a second run into its own report folder replaces the first's files
        r = run(capsys, "bench", "--dataset", "b", "--methods", "identity", "--n", "2", "--out", out, "--workers", "1")
        assert r.code == 0, r.err
    # and leaves none of the earlier report's files behind: a plot of an operator this run has none of
    r = run(capsys, "bench", "--dataset", "b", "--methods", "identity", "--out", out, "--workers", "1")
    plots = sorted(out.glob("plot-*.png"))
    assert r.code == 0 and plots, r.err
    (out / "plot-stale_op.png").write_bytes(plots[0].read_bytes())
    r = run(capsys, "bench", "--dataset", "b", "--methods", "identity", "--out", out, "--workers", "1")
    assert r.code == 0, r.err
    assert sorted(out.glob("plot-*.png")) == plots
    create_dataset(build_spec("rp-over", "builtin:real", 2, 48, 0, real=True), workers=1, scheduler="threads")
    r = run(capsys, "bench", "--dataset", "rp-over", "--methods", "identity", "--out", out, "--workers", "1")
    assert r.code == 0, r.err
    assert not list(out.glob("plot-*.png")), "a real-photo report has no plots: the synthetic report's stayed"


def test_real_photo_dataset_gets_only_a_no_reference_score(capsys, home, tmp_path):
    create_dataset(build_spec("rp", "builtin:real", 6, 48, 0, real=True), workers=1, scheduler="threads")
    r = run(capsys, "bench", "--dataset", "rp", "--methods", "identity,median", "--out", tmp_path / "o", "--workers", "1")
    assert r.code == 0 and "no ground truth" in r.out
    md = (tmp_path / "o" / "report.md").read_text()
    assert "no ground truth" in md and "PSNR dB" not in md
    res = json.loads((tmp_path / "o" / "results.json").read_text())
    assert "niqe" not in res["aggregate"]["identity"]  # 48 px tiles: not one 96 px block
    assert "NIQE n/a (<96 px)" in r.out and "| identity | n/a (<96 px) |" in md  # it said only –, with no reason
    create_dataset(build_spec("rp2", "builtin:real", 6, 192, 0, real=True), workers=1, scheduler="threads")
    r = run(capsys, "bench", "--dataset", "rp2", "--methods", "identity,median", "--out", tmp_path / "o2", "--workers", "1")
    assert r.code == 0 and "NIQE" in r.out
    agg = json.loads((tmp_path / "o2" / "results.json").read_text())["aggregate"]
    from pipelines import open_dataset
    from zoo import niqe

    ds = open_dataset("rp2")
    assert agg["identity"]["niqe"]["mean"] == pytest.approx(np.mean([niqe.niqe(ds.read("degraded", i)) for i in range(6)]))
    assert agg["median"]["niqe"]["n"] == 6 and "NIQE ↓" in (tmp_path / "o2" / "report.md").read_text()
    r = run(capsys, "bench", "--dataset", "rp", "--methods", "telea", "--mask", "gt", "--out", tmp_path / "g", "--workers", "1")
    assert one_line_error(r) and "--mask gt: rp has no ground-truth masks" in r.err


def test_damage_breakdown_per_operator_masks_make_up_the_recorded_mask(photo):
    """bench/damage_breakdown.py: replaying a record op by op gives masks whose union is the sample's mask."""
    from degrade import load_recipe

    import cv2

    bench = bench_scripts.load("damage_breakdown")
    clean = np.ascontiguousarray(photo[:160, :160])
    recipe = load_recipe("old-photo")
    seen = set()
    for i in range(12):
        d = recipe.apply(clean, seed=3, index=i)
        own = bench.own_masks(clean, d.params)
        seen |= set(own)
        union = np.zeros(clean.shape[:2], bool)
        for m in own.values():
            union |= m
        assert np.array_equal(union, d.mask > 127)
        # the damage-free twin differs from the degraded image only at and next to the defects
        changed = np.abs(d.image.astype(int) - bench.without_defects(clean, d.params)).max(2) > 10
        assert changed.any() if union.sum() > 50 else not (changed.any() and not own)
        near = cv2.dilate(union.astype(np.uint8), np.ones((17, 17), np.uint8)) > 0
        assert not (changed & ~near).any()
    assert {"scratches", "dust"} <= seen


def test_damage_breakdown_colour_oracle_undoes_a_global_affine_change(photo):
    bench = bench_scripts.load("damage_breakdown")
    clean = np.ascontiguousarray(photo[:128, :128])
    a = np.array([[0.6, 0.1, 0.0], [0.05, 0.55, 0.05], [0.0, 0.1, 0.5]])
    faded = np.clip(clean @ a.T + [60, 50, 30], 0, 255).astype(np.uint8)  # a sepia-ish fade
    fixed = bench.affine_oracle(faded, clean)
    assert metrics.psnr(fixed, clean) > max(35, metrics.psnr(faded, clean) + 10)
    damaged = np.zeros(clean.shape[:2], bool)
    damaged[40:60] = True
    scratched = faded.copy()
    scratched[damaged] = 255
    # damaged pixels are left out of the fit, so they do not bend it
    assert metrics.psnr(bench.affine_oracle(scratched, clean, damaged), clean, ~damaged) > 35


def test_colour_trial_gray_safe_variant_keeps_gray_photos_gray(gray_photo, photo):
    """bench/colour_correction_trial.py: whatever its weights, the gray-safe correction adds no colour."""
    import torch

    trial = bench_scripts.load("colour_correction_trial")
    gray = np.repeat(gray_photo[..., None], 3, axis=2)
    f = trial.colour_features(gray)
    assert f.shape == (108,) and np.isfinite(f).all()
    for variant in ("gray-safe", "affine"):
        net = trial.make_net(f.size, variant).requires_grad_(False)
        assert np.allclose(net(torch.from_numpy(f)[None])[0].numpy(), np.eye(3, 4), atol=1e-6)  # starts at identity
        net.mlp[-1].weight.normal_(0, 0.05, generator=torch.Generator().manual_seed(1))
        a = net(torch.from_numpy(f)[None])[0].numpy()
        out = trial.correct(gray, a)
        spread = np.abs(out.astype(int) - out.mean(2, keepdims=True)).max()
        assert (spread <= 1) if variant == "gray-safe" else (spread > 1)
        assert not np.array_equal(out, gray)
    assert trial.correct(photo, np.eye(3, 4)).tolist() == photo.tolist()


def test_damage_breakdown_runs_end_to_end(tiny, tmp_path, monkeypatch, capsys):
    from pipelines import open_dataset

    bench = bench_scripts.load("damage_breakdown")
    out = tmp_path / "b.json"
    monkeypatch.setattr("sys.argv", ["damage_breakdown", "--dataset", "b", "--n", "8", "--bundle", "rb", "--json", str(out)])
    bench.main()
    r = json.loads(out.read_text())
    assert r["n"] == 8 and "| operator |" in capsys.readouterr().out
    assert r["operators"] and abs(sum(o["mask_share"] for o in r["operators"].values()) - 1) < 1e-9
    for o in r["operators"].values():
        assert 0 <= o["visible_share"] <= 1 and 0 <= o["recall_threshold"] <= 1
        assert o["recall_calibrated"] <= o["recall_threshold"]  # hysteresis only removes regions
    ds = open_dataset("b")
    assert abs(r["psnr"]["input"] - np.mean([metrics.psnr(ds[i]["degraded"], ds[i]["clean"]) for i in range(8)])) < 1e-9
    assert r["psnr"]["input + colour oracle"] > r["psnr"]["input"]


def test_restore_device_check_compares_two_runs(monkeypatch, capsys):
    """CPU against CPU (what CI can run): two separate restorations, identical, reported as such."""
    import sys

    from zoo.store import SHIPPED

    if not (SHIPPED / "default.safetensors").exists():
        pytest.skip("no shipped default weights")
    check = bench_scripts.load("restore_device_check")
    monkeypatch.setattr(sys, "argv", ["restore_device_check", "--devices", "cpu,cpu", "--n", "2", "--size", "96", "--json"])
    assert check.main() == 0
    report = json.loads(capsys.readouterr().out)
    assert report["images"] == 2 and all(max(s) <= 96 for s in report["sizes"])
    assert [d for d, _ in report["seconds_per_image"]] == ["cpu", "cpu"]
    assert report["max_abs_diff"] == 0 and report["mask_pixels_differing"] == 0
    monkeypatch.setattr(sys, "argv", ["restore_device_check", "--devices", "cpu,cuda"])
    monkeypatch.setattr("torch.cuda.is_available", lambda: False)
    assert check.main() == 1 and "no CUDA device" in capsys.readouterr().out


def test_stage_diagnostics_pairs_mappings_and_filters_by_source(tiny, monkeypatch, capsys):
    """bench/stage_diagnostics.py: the bundle's own mapping given again scores the same; a second one gets
    its paired difference; --source-regex keeps exactly the samples cut from matching photographs."""
    import re

    from pipelines import open_dataset

    make_random_bundle("rb2", seed=1)
    bench = bench_scripts.load("stage_diagnostics")

    def run_it(*extra):
        argv = ["stage_diagnostics", "--dataset", "b", "--n", "8", "--bundle", "rb", "--vae1", "rb-vae1", "--vae2", "rb-vae2",
                "--mappings", "rb-mapping,rb2-mapping", *extra]  # fmt: skip
        monkeypatch.setattr("sys.argv", argv)
        bench.main()
        return json.loads(capsys.readouterr().out)["results"]

    r = run_it()
    own, first, second = (r[f"restored, gt mask: {k}"] for k in ("rb (its mapping)", "rb-mapping", "rb2-mapping"))
    assert own["psnr"] == first["psnr"] and "minus_first" not in first
    d = second["minus_first"]
    assert abs(d["mean"] - (second["psnr"] - first["psnr"])) < 2e-3 and d["ci95"][0] <= d["mean"] <= d["ci95"][1]
    ds = open_dataset("b")
    damaged = [i for i in range(8) if not np.array_equal(ds[i]["degraded"], ds[i]["clean"])]
    name = ds[damaged[0]]["source"]["file"]
    expected = sum(ds[i]["source"]["file"] == name for i in damaged)
    assert run_it("--source-regex", f"^{re.escape(name)}$")["degraded input"]["samples"] == expected < len(damaged)


def test_real_photo_quality_scores_input_and_methods_on_the_same_photos(tmp_path):
    """bench/real_photo_quality.py: NIQE of each photo and of each method's output, paired."""
    import cv2

    from degrade.io import read_image
    from degrade.samples import real_photo_paths
    from zoo.niqe import niqe

    script = bench_scripts.load("real_photo_quality")
    photos = real_photo_paths()[:3]
    res = script.evaluate(photos, ["median"], "default")
    assert res["photos"] == 3 and res["names"] == [p.name for p in photos]
    direct = [niqe(cv2.medianBlur(read_image(p).rgb(), 3)) - niqe(read_image(p).rgb()) for p in photos]
    assert res["methods"]["median"]["change"] == pytest.approx(np.mean(direct))
    assert res["methods"]["input"]["ci95"][0] <= res["methods"]["input"]["niqe"] <= res["methods"]["input"]["ci95"][1]
    script.plot(res, tmp_path / "p.png")
    assert (tmp_path / "p.png").stat().st_size > 5000


def test_real_photo_quality_of_one_photo_has_no_interval_and_writes_strict_json(tmp_path):
    """One photo has no bootstrap interval: ``[n/a]`` on screen and null in the JSON, not NaN literals."""
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "bench" / "real_photo_quality.py"
    from degrade.samples import real_photo_paths

    photos = real_photo_paths()[0].parent  # bundled: a clone without ../shared has them too
    args = ["--photos", photos, "--n", "1", "--methods", "median", "--out", tmp_path / "q.json", "--plot", tmp_path / "q.png"]
    r = subprocess.run([sys.executable, script, *args], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.count("[n/a]") == 3 and "nan" not in r.stdout
    res = json.loads((tmp_path / "q.json").read_text(), parse_constant=lambda c: pytest.fail(f"{c} in the JSON"))
    assert res["methods"]["median"]["change_ci95"] == [None, None] and res["photos"] == 1


def test_bench_and_calibrate_bars_count_what_runs_when_n_exceeds_the_set(capsys, tiny, tmp_path, monkeypatch):
    """``--n 1000`` on a 24-sample set scores the 24, but the bar's total was 1000 (never reached)."""
    import cli

    bars = []
    real = cli._progress

    def recording(total, description, unit="items"):
        bars.append([description, total])
        return real(total, description, unit)

    monkeypatch.setattr(cli, "_progress", recording)
    r = run(capsys, "bench", "--dataset", "b", "--methods", "identity", "--n", "1000", "--out", tmp_path / "o", "--workers", "1")
    assert r.code == 0, r.err
    assert bars[-1] == ["benchmarking", 24]
    r = run(capsys, "zoo", "calibrate", "rb", "-d", "b", "--n", "1000", "--objective", "f1")
    assert r.code == 0, r.err
    assert bars[-1] == ["calibrating", 24]


def test_bench_and_calibrate_run_the_networks_on_device(capsys, tiny, tmp_path, monkeypatch):
    """bench and zoo calibrate had no --device (restore and train have it): their networks ran on the CPU only.
    Here "cuda" is made to resolve to cpu:0, a device that differs from the CPU in name only, and every call of
    the detector and of the restoration networks must be given it."""
    import inspect

    import zoo.restore

    monkeypatch.setattr(zoo.restore, "resolve_device", lambda d: torch.device("cpu:0" if str(d) in ("cuda", "cpu:0") else "cpu"))
    seen = []
    for name in ("detect", "translate"):
        real = getattr(zoo.restore, name)

        def recording(*a, real=real, name=name, **k):
            seen.append((name, str(inspect.signature(real).bind(*a, **k).arguments.get("device"))))
            return real(*a, **k)

        monkeypatch.setattr(zoo.restore, name, recording)
    r = run(capsys, "bench", "-d", "b", "--methods", "nlm+telea,zoo:rb", "-n", "2", "--out", tmp_path / "o", "--workers", "1", "--device", "cuda")
    assert r.code == 0, r.err
    assert json.loads((tmp_path / "o" / "results.json").read_text())["device"] == "cpu:0"
    assert {n for n, _ in seen} == {"detect", "translate"} and {d for _, d in seen} == {"cpu:0"}, seen
    seen.clear()
    r = run(capsys, "zoo", "calibrate", "rb", "-d", "b", "-n", "2", "--device", "cuda")
    assert r.code == 0, r.err
    assert {n for n, _ in seen} == {"detect", "translate"} and {d for _, d in seen} == {"cpu:0"}, seen


def test_bench_on_a_device_loads_each_bundle_once(capsys, tiny, tmp_path, monkeypatch):
    """The command checked the zoo methods with their bundles loaded on the CPU, then scored the samples in this
    process with them loaded again on --device: each bundle was read, checked and its networks built twice.
    Here "cuda" resolves to cpu:0, a device that differs from the CPU in name only."""
    import zoo.restore

    monkeypatch.setattr(zoo.restore, "resolve_device", lambda d: torch.device("cpu:0" if str(d) in ("cuda", "cpu:0") else "cpu"))
    real, loads = zoo.restore.load_bundle, []
    monkeypatch.setattr(zoo.restore, "load_bundle", lambda ref, device="cpu": loads.append((Path(ref).stem, str(device))) or real(ref, device))
    zoo.restore._cached_bundle.cache_clear()
    r = run(capsys, "bench", "-d", "b", "--methods", "zoo:rb,zoo-raw:rb", "-n", "2", "--out", tmp_path / "o", "--workers", "1", "--device", "cuda")
    assert r.code == 0, r.err
    assert loads == [("rb", "cpu:0")], loads
    monkeypatch.setattr(zoo.bench, "usable_cores", lambda: 4)
    assert zoo.bench.probe_device("cuda", 1) == zoo.bench.probe_device("cuda", 8, 1) == "cuda"
    assert zoo.bench.probe_device("cuda", 8) == zoo.bench.probe_device("cuda", 2, 5) == "cpu"  # worker processes load their own


def test_bench_of_fewer_samples_than_workers_on_a_device_loads_each_bundle_once(capsys, tiny, tmp_path, monkeypatch):
    """Where the bundles were first loaded was decided by ``-n or --workers``, not by the samples scored: a
    1-sample dataset with --workers 2 is scored in this process, yet its bundle was loaded on the CPU first."""
    import zoo.restore

    create_dataset(build_spec("one", "builtin:samples", 1, 48, 3, "severe"), workers=1, scheduler="threads")
    monkeypatch.setattr(zoo.restore, "resolve_device", lambda d: torch.device("cpu:0" if str(d) in ("cuda", "cpu:0") else "cpu"))
    monkeypatch.setattr(zoo.bench, "usable_cores", lambda: 4)
    real, loads = zoo.restore.load_bundle, []
    monkeypatch.setattr(zoo.restore, "load_bundle", lambda ref, device="cpu": loads.append((Path(ref).stem, str(device))) or real(ref, device))
    for n in ([], ["-n", "5"]):
        loads.clear()
        zoo.restore._cached_bundle.cache_clear()
        r = run(capsys, "bench", "-d", "one", "--methods", "zoo:rb", *n, "--out", tmp_path / "o", "--workers", "2", "--device", "cuda")
        assert r.code == 0, r.err
        assert loads == [("rb", "cpu:0")], (n, loads)
    zoo.restore._cached_bundle.cache_clear()
    loads.clear()
    assert run_bench("one", ["zoo:rb"], workers=2, device="cuda")["samples"] == 1 and loads == [("rb", "cpu:0")], loads


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA device is available")
def test_bench_device_cuda_without_one_is_one_line_before_any_work(capsys, tiny, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for args in (["bench", "-d", "b", "--methods", "identity"], ["zoo", "calibrate", "rb", "-d", "b"]):
        r = run(capsys, *args, "--device", "cuda")
        assert one_line_error(r) and "--device cuda: no CUDA device is available here" in r.err, r.err
    assert not (tmp_path / "bench-out").exists()


def test_results_json_is_strict_json_without_damage(capsys, home, tmp_path):
    """On a set without structured damage precision, recall and F1 are 0/0: results.json held ``NaN``
    literals, which strict JSON parsers refuse. They are null now; the report still shows a dash."""
    (tmp_path / "noise.yaml").write_text("steps:\n  - {op: gaussian_noise, sigma: 0.05}\n")
    create_dataset(build_spec("undamaged", "builtin:samples", 4, 48, 0, str(tmp_path / "noise.yaml")), workers=1, scheduler="threads")
    make_random_bundle("rb2")
    r = run(capsys, "bench", "--dataset", "undamaged", "--methods", "identity,zoo:rb2", "--out", tmp_path / "o", "--workers", "1")
    assert r.code == 0, r.err

    def refuse(constant):
        raise ValueError(f"non-standard JSON constant {constant}")

    res = json.loads((tmp_path / "o" / "results.json").read_text(), parse_constant=refuse)
    assert res["aggregate"]["zoo:rb2"]["detection"]["pooled"]["recall"] is None  # nothing to find: 0/0
    r = run(capsys, "bench", "compare", tmp_path / "o" / "results.json", tmp_path / "o" / "results.json")
    assert r.code == 0, r.err


@pytest.mark.parametrize("entry", ["x", {"psnr": "x"}, {"psnr": {"mean": "a"}}, {"detection": {"pooled": "x"}}, {"detection": 3}])
def test_cli_bench_compare_damaged_aggregate_is_one_line_error(capsys, tmp_path, entry):
    from cli_helpers import one_line_error, run

    good, bad = tmp_path / "good.json", tmp_path / "bad.json"
    good.write_text(json.dumps({"dataset": {"identity": "i"}, "aggregate": {"m": {"psnr": {"mean": 20.0}}}}))
    bad.write_text(json.dumps({"dataset": {"identity": "i"}, "aggregate": {"m": entry}}))
    assert run(capsys, "bench", "compare", good, good).code == 0
    for args in ((good, bad), (bad, good)):
        r = run(capsys, "bench", "compare", *args, "--json")
        assert r.code == 1 and one_line_error(r) and "internal" not in r.err and "bad.json" in r.err, r.err


def test_bench_workers_are_capped_at_the_cores_and_samples(tiny, monkeypatch):
    """Each bench process holds a bundle: --workers 1000 started one per sample."""

    asked = []

    class Pool(zoo.bench.ProcessPoolExecutor):
        def __init__(self, workers, *a, **k):
            asked.append(workers)
            super().__init__(workers, *a, **k)

    monkeypatch.setattr(zoo.bench, "ProcessPoolExecutor", Pool)
    monkeypatch.setattr(zoo.bench.os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    r = run_bench("b", ["identity"], n=3, mask_source="gt", workers=1000, sheet_samples=1)
    assert asked == [2] and r["samples"] == 3


def test_a_user_method_from_a_module_reaches_the_worker_processes(tiny, tmp_path, monkeypatch):
    """docs/bench.md's own method, imported from a module (a notebook's `from mymethods import …`): the spawned
    workers knew only the built-ins, and the run died with BrokenProcessPool."""
    import importlib

    import zoo.methods

    (tmp_path / "walk_user_methods.py").write_text(
        "from zoo.methods import Method, register_method\n\n"
        "@register_method('darken-test')\n"
        "class Darken(Method):\n"
        "    '''Halved levels (a test method).'''\n"
        "    def run(self, image, mask=None):\n"
        "        return image // 2, None\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(zoo.methods, "METHODS", dict(METHODS))  # registered here for this test only
    monkeypatch.setattr(zoo.bench.os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    monkeypatch.delitem(sys.modules, "walk_user_methods", raising=False)
    importlib.import_module("walk_user_methods")
    try:
        a = run_bench("b", ["identity", "darken-test"], n=4, mask_source="gt", workers=1)
        b = run_bench("b", ["identity", "darken-test"], n=4, mask_source="gt", workers=2)
    finally:
        sys.modules.pop("walk_user_methods", None)
    assert b["workers"] == 2
    assert a["aggregate"]["darken-test"]["psnr"] == b["aggregate"]["darken-test"]["psnr"]


def test_a_method_defined_in_a_session_is_one_clear_error_with_worker_processes(tiny):
    """Defined in a notebook cell (here `python -c`), no spawned worker can import it: a DaguerreError saying
    what to do, not a BrokenProcessPool."""
    code = (
        "import os\nos.sched_getaffinity = lambda pid: {0, 1}\n"
        "from zoo.methods import Method, register_method\nfrom zoo.bench import run_bench\n"
        "@register_method('session-test')\nclass S(Method):\n    '''Unchanged.'''\n    def run(self, image, mask=None):\n        return image, None\n"
        "try:\n    run_bench('b', ['identity', 'session-test'], n=2, mask_source='gt', workers=2)\n"
        "except Exception as e:\n    print(type(e).__name__, e)\n"
        "r = run_bench('b', ['identity', 'session-test'], n=2, mask_source='gt', workers=1)\nprint(r['samples'])\n"
    )
    out = python_ok(code).splitlines()
    assert out[0].startswith("DaguerreError method 'session-test' is defined in an interactive session"), out
    assert "workers=1" in out[0] and out[-1] == "2", out


def test_cli_bench_compare_says_unknown_for_a_setting_an_older_results_json_lacks(capsys, tmp_path):
    """results.json written before ``device`` (or ``workers``, ``mask_source``) was recorded: the note said ``None in A``."""
    old, new = tmp_path / "old.json", tmp_path / "new.json"
    entry = {"dataset": {"identity": "i"}, "samples": 8, "aggregate": {"m": {"psnr": {"mean": 20.0}}}}
    old.write_text(json.dumps(entry))
    new.write_text(json.dumps(entry | {"mask_source": "gt", "device": "cpu", "workers": 2}))
    r = run(capsys, "bench", "compare", old, new)
    assert r.code == 0, r.err
    assert "note: device differs (unknown in A, cpu in B): the seconds are not comparable" in r.out
    assert "note: workers differs (unknown in A, 2 in B)" in r.out
    assert "note: mask_source differs (unknown in A, gt in B): the means are not paired" in r.out
    assert "None" not in r.out
    assert json.loads(run(capsys, "bench", "compare", old, new, "--json").out)["timing_differences"]["device"] == [None, "cpu"]


def test_ms_ssim_of_samples_too_small_for_it_says_why(capsys, home, tmp_path):
    """MS-SSIM needs 161 px a side: on smaller samples the console and the reports showed a bare –."""
    from zoo.report import summary_rows

    create_dataset(build_spec("small", "builtin:samples", 3, 48, 0, "mild"), workers=1, scheduler="threads")
    r = run(capsys, "bench", "--dataset", "small", "--methods", "identity", "--out", tmp_path / "o", "--workers", "1")
    assert r.code == 0, r.err
    assert "MS-SSIM n/a (<161 px)" in r.out
    md = (tmp_path / "o" / "report.md").read_text()
    assert md.split("| identity |")[1].split("|")[2].strip() == "n/a (<161 px)"  # the MS-SSIM column
    assert "<td>n/a (&lt;161 px)</td>" in (tmp_path / "o" / "report.html").read_text()
    res = json.loads((tmp_path / "o" / "results.json").read_text())
    res["dataset"]["size"] = 256  # missing for another reason (a results.json older than MS-SSIM): no made-up one
    assert summary_rows(res)[0][3] == "–"


def test_report_says_over_how_many_samples_the_mask_psnr_is_averaged(capsys, home, tmp_path):
    """The PSNR in and outside the mask averages only the samples with a defect: the report did not say so."""
    create_dataset(build_spec("some", "builtin:samples", 8, 48, 0, "mild"), workers=1, scheduler="threads")
    r = run(capsys, "bench", "--dataset", "some", "--methods", "identity", "--out", tmp_path / "o", "--workers", "1")
    assert r.code == 0, r.err
    n = json.loads((tmp_path / "o" / "results.json").read_text())["aggregate"]["identity"]["psnr_in_mask"]["n"]
    assert 0 < n < 8
    note = f"PSNR in and outside the mask: over the {n} of 8 samples with a defect."
    assert note in (tmp_path / "o" / "report.md").read_text() and f"<p>{note}</p>" in (tmp_path / "o" / "report.html").read_text()
    assert "; 1 worker, " in (tmp_path / "o" / "report.md").read_text()  # it said "1 workers"


def test_a_score_without_one_defined_value_is_a_dash_not_a_dash_with_no_interval():
    """A mask covering every damaged sample leaves its outside PSNR undefined on all: the report showed ``– [n/a]``."""
    from zoo.bench import aggregate
    from zoo.report import HEADER, summary_rows

    rows = [{"methods": {"m": {"psnr": p, "psnr_in_mask": p, "psnr_out_mask": math.nan}}, "params": []} for p in (20.0, 22.0)]
    agg = aggregate(rows, ["m"])
    assert agg["m"]["psnr_out_mask"]["n"] == 0 and agg["m"]["psnr_out_mask"]["not_finite"] == 2
    cells = dict(zip(HEADER, summary_rows({"aggregate": agg, "dataset": {}})[0]))
    assert cells["PSNR outside mask dB [95% CI]"] == "–" and cells["PSNR in mask dB [95% CI]"].startswith("21.00 [")


def test_report_html_lists_are_in_a_list_element():
    """report.html's list of methods was bare <li> elements in the body."""
    from zoo.report import markdown_to_html

    page = markdown_to_html("## Methods\n\n* `a`: one\n* `b`: two\n\nLPIPS: not reported.\n* c\n| x |\n| --- |\n| 1 |\n", "t")
    assert ("<h2>Methods</h2><ul><li><code>a</code>: one</li><li><code>b</code>: two</li></ul><p>LPIPS: not reported.</p>"
            "<ul><li>c</li></ul><table><tr><th>x</th></tr><tr><td>1</td></tr></table>") in page


def test_report_gives_a_short_run_its_wall_time(capsys, home, tmp_path):
    """The report's header gave a 0.03 s run as "0 s"."""
    create_dataset(build_spec("hdr", "builtin:samples", 4, 48, 0, "mild"), workers=1, scheduler="threads")
    r = run(capsys, "bench", "--dataset", "hdr", "--methods", "identity", "--out", tmp_path / "o", "--workers", "1")
    assert r.code == 0, r.err
    header = (tmp_path / "o" / "report.md").read_text().splitlines()[2]
    wall = json.loads((tmp_path / "o" / "results.json").read_text())["wall_seconds"]
    assert wall < 1 and header.endswith(f" 1 worker, {wall:.2f} s."), header
    from zoo.report import _seconds

    assert [_seconds(s) for s in (0.034, 4.26, 43.2)] == ["0.03 s", "4.3 s", "43 s"]


def test_report_names_the_mask_only_when_an_inpainting_method_was_benchmarked(capsys, home, tmp_path):
    """The header said "inpainting methods use the gt mask" of a run of identity and median, which use none."""
    create_dataset(build_spec("hdr", "builtin:samples", 4, 48, 0, "mild"), workers=1, scheduler="threads")
    for methods, used in (("identity,median", []), ("identity,telea", ["telea"])):
        r = run(capsys, "bench", "--dataset", "hdr", "--methods", methods, "--mask", "gt", "--out", tmp_path / methods, "--workers", "1")
        assert r.code == 0, r.err
        header = (tmp_path / methods / "report.md").read_text().splitlines()[2]
        assert ("inpainting methods use the gt mask" in header) == bool(used), header
        assert json.loads((tmp_path / methods / "results.json").read_text())["mask_methods"] == used
    r = run(capsys, "bench", "--dataset", "hdr", "--methods", "identity,median", "--mask", "detected", "--out", tmp_path / "det", "--workers", "1")
    assert r.code == 0, r.err
    r = run(capsys, "bench", "compare", tmp_path / "identity,median" / "results.json", tmp_path / "det" / "results.json")
    assert r.code == 0 and "mask_source" not in r.out  # neither used a mask: the means are paired
    r = run(capsys, "bench", "compare", tmp_path / "identity,telea" / "results.json", tmp_path / "det" / "results.json")
    assert r.code == 0 and "mask_source" not in r.out  # telea only in A: the methods both scored used no mask
    r = run(capsys, "bench", "--dataset", "hdr", "--methods", "telea", "--mask", "detected", "--out", tmp_path / "det2", "--workers", "1")
    assert r.code == 0, r.err
    r = run(capsys, "bench", "compare", tmp_path / "identity,telea" / "results.json", tmp_path / "det2" / "results.json")
    assert "note: mask_source differs (gt in A, detected in B)" in r.out


def test_report_counts_the_capped_and_undefined_psnr_values(capsys, home, tmp_path):
    """results.json's ``capped`` (PSNR at 100 dB) and ``not_finite`` counts were in no report."""
    recipe = tmp_path / "half.yaml"
    recipe.write_text("schema: 1\nname: half\nsteps:\n- op: gaussian_blur\n  version: 1\n  sigma: [1.0, 2.0]\n  ksize: 0\n  p: 0.5\n")
    create_dataset(build_spec("half", "builtin:samples", 8, 48, 0, str(recipe)), workers=1, scheduler="threads")
    r = run(capsys, "bench", "--dataset", "half", "--methods", "identity", "--out", tmp_path / "o", "--workers", "1")
    assert r.code == 0, r.err
    capped = json.loads((tmp_path / "o" / "results.json").read_text())["aggregate"]["identity"]["psnr"]["capped"]
    assert 0 < capped < 8  # the samples left unblurred: identity is exact there
    line = f"Capped at 100 dB (an output equal to the ground truth there; averaged as 100): identity PSNR {capped} of 8."
    assert line in (tmp_path / "o" / "report.md").read_text() and f"<p>{line}</p>" in (tmp_path / "o" / "report.html").read_text()
    from zoo.bench import aggregate
    from zoo.report import counted_note

    rows = [{"methods": {"m": {"psnr": p, "psnr_out_mask": math.nan if p < 30 else 40.0}}, "params": []} for p in (20.0, 35.0, 22.0)]
    assert counted_note({"aggregate": aggregate(rows, ["m"])}) == (
        "Undefined, left out of the means: m PSNR outside mask 2 of 3.")
    assert counted_note({"aggregate": aggregate(rows[1:2], ["m"])}) is None


def test_compare_refuses_a_device_or_pipe_unread():
    """`bench compare /dev/zero B` read until memory ran out (under a 1 GiB limit: an internal MemoryError)."""
    code = (
        "import resource; resource.setrlimit(resource.RLIMIT_AS, (2**30, 2**30)); import cli\n"
        "try:\n    cli.main(['bench', 'compare', '/dev/zero', '/dev/zero'])\nexcept SystemExit as e:\n    print(e.code)\n"
    )
    r = run_python(code)
    assert r.stdout.split() == ["1"] and r.stderr == "error: cannot read results /dev/zero: not a regular file (a pipe, socket or device)\n", r.stderr
