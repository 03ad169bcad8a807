"""Property tests for the zoo side: zoo.restore on any size, mode, depth, tile and mask; tone anchoring; the dataset adapter."""

from __future__ import annotations

import os

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from degrade.errors import ImageError
from zoo import checkpoint
from zoo.anchor import AnchorConfig, anchor
from zoo.bundle import load_bundle
from zoo.restore import restore

EXAMPLES = int(os.environ.get("ZOO_PROPERTY_EXAMPLES", "0")) or None  # raise it to search harder


def _settings(n: int):
    return settings(max_examples=EXAMPLES or n, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


@pytest.fixture(scope="module")
def bundles(tmp_path_factory):
    """The tiny random bundle of test_restore, as made ("plain") and with tone anchoring in its card ("anchored")."""
    from test_restore import make_random_bundle

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DAGUERRE_HOME", str(tmp_path_factory.mktemp("home")))
        path = make_random_bundle("rbp")
        tensors, card = checkpoint.load(path)
        anchored = path.with_name("rbp-anchored" + path.suffix)
        checkpoint.save(anchored, tensors, {**card, "anchor": {"sigma": 1.0, "tau": 32.0}})
        return {"plain": load_bundle(path), "anchored": load_bundle(anchored), "path": path}


# -- zoo.restore: any size, mode, depth, tile and mask ------------------------------------------------------
_SIDE = st.one_of(st.integers(1, 40), st.integers(32, 160), st.sampled_from([1, 2, 31, 32, 33, 97, 127, 257, 331]))
_CHANNELS = st.sampled_from([None, 1, 2, 3, 4])  # None: H×W


def _image(rng, h, w, channels, dtype):
    top = 256 if dtype == np.uint8 else 65536
    shape = (h, w) if channels is None else (h, w, channels)
    return rng.integers(0, top, shape, dtype=dtype)


@_settings(40)
@given(h=_SIDE, w=_SIDE, channels=_CHANNELS, deep=st.booleans(), tile=st.integers(32, 200), overlap=st.integers(0, 40),
       scratches=st.sampled_from(["auto", "all", "none", "zeros", "ones", "random", "random3"]), anchored=st.booleans(),
       seed=st.integers(0, 2**16))  # fmt: skip
def test_restore_keeps_shape_type_alpha_and_is_deterministic(bundles, h, w, channels, deep, tile, overlap, scratches, anchored, seed):
    """Same shape, dtype and channels as the input; alpha exact; an H×W binary mask (the given one, as given); the same twice."""
    tile = max(tile, 2 * overlap)
    rng = np.random.default_rng(seed)
    img = _image(rng, h, w, channels, np.uint16 if deep else np.uint8)
    mask_in = {"zeros": np.zeros((h, w), np.uint8), "ones": np.ones((h, w), np.uint8),
             "random": rng.integers(0, 2, (h, w), np.uint8) * rng.integers(1, 256, (h, w), np.uint8),
             "random3": rng.integers(0, 2, (h, w, 3), np.uint8)}.get(scratches)  # fmt: skip
    b = bundles["anchored" if anchored else "plain"]
    res = restore(img, b, scratches=scratches if mask_in is None else mask_in, tile=tile, overlap=overlap, device="cpu")
    assert res.image.shape == img.shape and res.image.dtype == img.dtype
    if channels in (2, 4):
        assert np.array_equal(res.image[..., -1], img[..., -1])
    assert res.mask.shape == (h, w) and res.mask.dtype == np.uint8 and set(np.unique(res.mask)) <= {0, 255}
    if mask_in is not None:
        want = mask_in != 0 if mask_in.ndim == 2 else (mask_in != 0).any(axis=2)
        assert np.array_equal(res.mask, np.where(want, 255, 0))
    if scratches == "none":
        assert not res.mask.any()
    again = restore(img, b, scratches=scratches if mask_in is None else mask_in, tile=tile, overlap=overlap, device="cpu")
    assert np.array_equal(again.image, res.image) and np.array_equal(again.mask, res.mask)


@_settings(15)
@given(h=_SIDE, w=_SIDE, dh=st.integers(-3, 3), dw=st.integers(-3, 3), channels=st.sampled_from([None, 3]), bad3=st.booleans())
def test_a_mask_of_another_size_is_one_clear_error(bundles, h, w, dh, dw, channels, bad3):
    assume((dh, dw) != (0, 0) and h + dh >= 0 and w + dw >= 0)
    img = _image(np.random.default_rng(0), h, w, channels, np.uint8)
    mask = np.zeros((h + dh, w + dw, 3) if bad3 else (h + dh, w + dw), np.uint8)
    with pytest.raises(ImageError, match="does not match the image"):
        restore(img, bundles["plain"], scratches=mask, device="cpu")


def test_zoo_restore_by_file_is_the_loaded_bundle(bundles):
    """``zoo.restore(image, model=...)``, the module called, with a bundle file: the same pixels as with the loaded bundle."""
    import zoo

    img = np.random.default_rng(5).integers(0, 256, (45, 70, 3), np.uint8)
    a = zoo.restore(img, model=str(bundles["path"]), tile=32, overlap=8, device="cpu")
    b = restore(img, bundles["plain"], tile=32, overlap=8, device="cpu")
    assert np.array_equal(a.image, b.image) and np.array_equal(a.mask, b.mask)


@pytest.mark.parametrize("shape", [(0, 0), (0, 5, 3), (7, 0), (0, 40, 4)])
def test_an_empty_image_is_one_clear_error(bundles, shape):
    with pytest.raises(ImageError, match="empty image"):
        restore(np.zeros(shape, np.uint8), bundles["plain"], device="cpu")


@_settings(25)
@given(h=st.one_of(st.integers(1, 40), st.integers(32, 260)), w=st.one_of(st.integers(1, 40), st.integers(32, 260)),
       value=st.integers(0, 255), channels=st.sampled_from([None, 3]), deep=st.booleans(), tile=st.integers(32, 128),
       overlap=st.integers(0, 32), anchored=st.booleans(), scratches=st.sampled_from(["none", "auto", "all", "everywhere"]))  # fmt: skip
def test_a_constant_image_stays_constant_for_any_size_and_tile(bundles, h, w, value, channels, deep, tile, overlap, anchored, scratches):
    """No normalisation layers and ramp blending: a constant photo comes back constant (within a grey level), with
    no mask or one over all of it (a constant photo's detections are all or nothing)."""
    tile = max(tile, 2 * overlap)
    shape = (h, w) if channels is None else (h, w, channels)
    img = np.full(shape, value * 257 if deep else value, np.uint16 if deep else np.uint8)
    mode = np.ones((h, w), bool) if scratches == "everywhere" else scratches
    out = restore(img, bundles["anchored" if anchored else "plain"], scratches=mode, tile=tile, overlap=overlap, device="cpu").image
    flat = out.astype(np.int64).reshape(h * w, -1)
    spread = (flat.max(axis=0) - flat.min(axis=0)).max()
    assert spread <= (257 if deep else 1), (spread, out.dtype)


@_settings(12)
@given(h=st.integers(70, 220), w=st.integers(70, 220), tile=st.integers(32, 96), overlap=st.integers(4, 24), seed=st.integers(0, 2**16))
def test_tile_borders_leave_no_seam_for_any_tile(bundles, h, w, tile, overlap, seed):
    """Across each tile-core boundary the output changes no more than between ordinary neighbours (tests/test_restore's bound)."""
    import cv2

    from zoo.restore import windows

    tile = max(tile, 2 * overlap)
    rng = np.random.default_rng(seed)
    img = cv2.GaussianBlur((rng.random((h, w, 3)) * 255).astype(np.uint8), (0, 0), 4)
    tiled = restore(img, bundles["plain"], scratches="none", tile=tile, overlap=overlap, device="cpu").image.astype(float)
    for axis, length in ((1, w), (0, h)):
        step = np.abs(np.diff(tiled, axis=axis)).mean(axis=(1 - axis, 2))
        typical = np.median(step)
        for _, _, a, _ in windows(length, tile, overlap)[1:]:
            assert step[a - 1] <= 3 * typical + 1.0, (axis, a, step[a - 1], typical)


# -- tone anchoring -----------------------------------------------------------------------------------------
_CFG = st.builds(AnchorConfig, st.sampled_from([0.3, 0.5, 1.0, 2.0, 4.0, 7.5]), st.sampled_from([None, 1.0, 16.0, 32.0]))


@_settings(25)
@given(h=st.integers(1, 60), w=st.integers(1, 60), cfg=_CFG, density=st.sampled_from([0.0, 0.1, 0.5, 1.0]), deep=st.booleans(),
       seed=st.integers(0, 2**16))  # fmt: skip
def test_anchoring_an_unchanged_restoration_changes_nothing(h, w, cfg, density, deep, seed):
    rng = np.random.default_rng(seed)
    inp = rng.integers(0, 256, (h, w, 3), np.uint8)
    if deep:
        inp = (rng.random((h, w, 3)) * 255).astype(np.float32)
    mask = np.where(rng.random((h, w)) < density, 255, 0).astype(np.uint8)
    out = anchor(inp, inp.copy(), mask, cfg)
    assert out.shape == inp.shape and out.dtype == inp.dtype
    assert np.abs(out.astype(np.float64) - inp).max() <= (1 if not deep else 0.5)


@_settings(25)
@given(h=st.integers(1, 60), w=st.integers(1, 60), cfg=_CFG, density=st.sampled_from([0.0, 0.1, 0.5, 1.0]), deep=st.booleans(),
       seed=st.integers(0, 2**16), rows=st.integers(1, 64))  # fmt: skip
def test_anchoring_is_bounded_and_leaves_masked_pixels_alone(h, w, cfg, density, deep, seed, rows):
    rng = np.random.default_rng(seed)
    inp = rng.integers(0, 256, (h, w, 3), np.uint8)
    res = rng.integers(0, 256, (h, w, 3), np.uint8)
    if deep:
        inp, res = inp.astype(np.float32) + np.float32(0.25), (res * np.float32(0.99)).astype(np.float32)
    mask = np.where(rng.random((h, w)) < density, 255, 0).astype(np.uint8)
    out = anchor(inp, res, mask, cfg, rows=rows)
    assert out.shape == res.shape and out.dtype == res.dtype
    assert np.isfinite(out).all() and out.min() >= 0 and out.max() <= 255
    assert np.array_equal(out[mask != 0], res[mask != 0])
    if density == 1.0:
        assert np.array_equal(out, res)


@_settings(20)
@given(h=st.integers(8, 60), w=st.integers(8, 60), sigma=st.sampled_from([1.0, 2.0, 4.0]), seed=st.integers(0, 2**16),
       gain=st.floats(0.6, 1.0), offset=st.floats(0, 30))  # fmt: skip
def test_anchoring_keeps_a_global_colour_transform(h, w, sigma, seed, gain, offset):
    """A restoration that is an affine colour map of its input (fading undone, a cast removed) is kept as it is
    (on a smooth photo-like input: the ridge that keeps flat inputs posed pulls low-contrast fits towards identity)."""
    import cv2

    rng = np.random.default_rng(seed)
    inp = cv2.resize(rng.integers(0, 180, (4, 4, 3), np.uint8), (w, h), interpolation=cv2.INTER_LINEAR)
    mix = np.eye(3) * gain + rng.uniform(-0.05, 0.05, (3, 3))
    res = np.clip(inp.astype(np.float64) @ mix.T + offset, 0, 255).astype(np.float32)
    out = anchor(inp.astype(np.float32), res, np.zeros((h, w), np.uint8), AnchorConfig(sigma))
    change = np.abs(res - inp).max()
    assert np.abs(out - res).max() <= 1 + 0.1 * change  # what moves back is the ridge's pull towards identity, a few %


@_settings(20)
@given(h=st.integers(1, 50), w=st.integers(1, 50), cfg=_CFG, seed=st.integers(0, 2**16), axis=st.sampled_from([0, 1]))
def test_anchoring_commutes_with_flips(h, w, cfg, seed, axis):
    rng = np.random.default_rng(seed)
    inp = rng.integers(0, 256, (h, w, 3), np.uint8).astype(np.float32)
    res = np.clip(inp + rng.normal(0, 20, inp.shape), 0, 255).astype(np.float32)
    mask = np.where(rng.random((h, w)) < 0.2, 255, 0).astype(np.uint8)
    a = anchor(inp, res, mask, cfg)
    b = anchor(np.flip(inp, axis), np.flip(res, axis), np.flip(mask, axis), cfg)
    np.testing.assert_allclose(np.flip(b, axis), a, atol=0.05)


# -- the dataset adapter -----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    from pipelines import build_spec, create_dataset

    spec = build_spec("zp", "builtin:samples", 7, 16, 3, "mild", shard_size=3)
    return str(create_dataset(spec, store=str(tmp_path_factory.mktemp("ds") / "zp.zarr"), workers=1, scheduler="threads").path)


@_settings(15)
@given(data=st.data())
def test_shard_dataset_batches_agree_with_single_samples(dataset, data):
    from zoo.data import ShardDataset

    ds = ShardDataset(dataset, ("degraded", "clean", "mask", "params"))
    n = len(ds)
    idx = data.draw(st.lists(st.integers(-n, n - 1), max_size=2 * n + 1), label="indices")
    batch = ds.__getitems__(idx)
    assert batch["index"].tolist() == [i % n for i in idx]  # -1 is the last sample, as open_dataset's ds[-1]["index"] says
    assert all(ds[i]["index"].item() == ds.ds[i]["index"] for i in (-1, -n, 0))
    for k, i in enumerate(idx):
        one = ds[i]
        for f in ("degraded", "clean", "mask"):
            assert batch[f].dtype == one[f].dtype and np.array_equal(batch[f][k].numpy(), one[f].numpy())
        assert batch["params"][k] == one["params"]
    for f in ("degraded", "clean", "mask"):
        assert batch[f].shape[0] == len(idx)


# -- training batches: crops and flips -----------------------------------------------------------------------
@_settings(20)
@given(b=st.integers(1, 5), tile=st.integers(4, 24), data=st.data(), seed=st.integers(0, 2**32), step=st.integers(0, 10**6),
       stream=st.integers(0, 3))  # fmt: skip
def test_crops_and_flips_are_shared_by_every_field_and_a_function_of_seed_step_stream(b, tile, data, seed, step, stream):
    """Every field of a sample gets the same crop and flip (the mask stays on its defects), decided by (seed, step, stream) only."""
    import torch

    from zoo.train import augment, step_generator

    size = data.draw(st.integers(1, tile), label="size")
    rng = np.random.default_rng(seed % 1000)
    degraded = torch.from_numpy(rng.integers(0, 256, (b, tile, tile, 3), np.uint8))
    raw = {"degraded": degraded, "clean": 255 - degraded, "mask": torch.where(degraded[..., 0] > 127, 255, 0).to(torch.uint8)}
    fields = ("degraded", "clean", "mask")
    out = augment(raw, fields, size, step_generator(seed, step, stream), "cpu")
    again = augment(raw, fields, size, step_generator(seed, step, stream), "cpu")
    for f in fields:
        assert torch.equal(out[f], again[f])
    assert out["degraded"].shape == (b, 3, size, size) and out["mask"].shape == (b, 1, size, size)
    assert torch.allclose(out["clean"], -out["degraded"], atol=1e-6)  # 255 - x in [-1, 1] is -x: same crop, same flip
    assert torch.equal(out["mask"], (out["degraded"][:, :1] > 0).float())  # x > 127 in [-1, 1]
    crops = {tuple(degraded[i, y : y + size, x : x + size].flatten().tolist()) for i in range(b) for y in range(tile - size + 1)
             for x in range(tile - size + 1)}  # fmt: skip
    back = ((out["degraded"].permute(0, 2, 3, 1) + 1) * 127.5).round().to(torch.uint8)
    for i in range(b):
        assert tuple(back[i].flatten().tolist()) in crops or tuple(back[i].flip(1).flatten().tolist()) in crops


# -- calibration's choice of seeds and anchoring ---------------------------------------------------------------
_PSNR = st.floats(5, 60, allow_nan=False)


@_settings(40)
@given(data=st.data(), datasets=st.integers(1, 3), candidates=st.integers(1, 6), samples=st.integers(1, 6))
def test_the_calibration_rule_picks_a_dominant_candidate_and_else_a_near_best_one(data, datasets, candidates, samples):
    from zoo.bundle import _choose_seed

    per = {f"d{i}": np.array(data.draw(st.lists(st.lists(_PSNR, min_size=candidates, max_size=candidates), min_size=samples,
                                                max_size=samples)))  # fmt: skip
           for i in range(datasets)}
    best, rule, table = _choose_seed(per)
    assert 0 <= best < candidates and set(table) == set(per)
    means = {d: x.mean(axis=0) for d, x in per.items()}
    if datasets == 1:
        (x,) = per.values()
        m = means["d0"]
        top = int(np.argmax(m))
        assert best <= top and rule == "one standard error"
        se = (x[:, top : top + 1] - x).std(axis=0, ddof=1) / np.sqrt(samples) if samples > 1 else np.zeros(candidates)
        assert m[top] - m[best] <= se[best] + 1e-9
    dominant = [k for k in range(candidates) if all((means[d][k] > np.delete(means[d], k)).all() for d in per)]
    if dominant and (datasets > 1 or samples == 1):  # one dataset, several samples: an earlier one within a standard error may win
        assert best == dominant[0]
    boosted = {d: x + 100.0 * (np.arange(candidates) == best) for d, x in per.items()}  # the chosen one only better
    assert _choose_seed(boosted)[0] == best or datasets == 1


@_settings(40)
@given(h=st.integers(1, 30), w=st.integers(1, 30), low=st.floats(0, 1), high=st.floats(0, 1), seed=st.integers(0, 2**16))
def test_hysteresis_keeps_whole_regions_with_a_seed(h, w, low, high, seed):
    """Each 8-connected region above ``low`` is kept whole when it holds a pixel above ``high``, else dropped whole."""
    import cv2

    from zoo.restore import hysteresis

    prob = np.random.default_rng(seed).random((h, w)).astype(np.float32) ** 3
    got = hysteresis(prob, low, high)
    region = prob > low
    assert got.dtype == bool and got.shape == (h, w) and not (got & ~region).any()
    if high <= low:
        assert np.array_equal(got, region)
        return
    n, labels = cv2.connectedComponents(region.astype(np.uint8), connectivity=8)
    for k in range(1, n):
        part = labels == k
        assert got[part].all() == (prob[part] > high).any() and got[part].all() == got[part].any()
