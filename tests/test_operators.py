"""Every registered operator: example present, shapes, determinism, replay, mask semantics, properties."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from cli_helpers import python_ok
from degrade import STRUCTURED, RecipeError, get_operator, list_operators, replay
from degrade.errors import ImageError
from degrade.params import Bool, Choice, Float, Int

ALL = [c.name for c in list_operators()]
BUILTIN = [n for n in ALL if n != "imgaug"]
STRUCT = [c.name for c in list_operators() if c.kind == STRUCTURED]


def test_registry_lists_every_kind_the_issue_names():
    expected = {
        "gaussian_noise", "poisson_noise", "speckle", "salt_pepper", "film_grain", "gaussian_blur", "motion_blur",
        "defocus_blur", "jpeg", "downscale", "fade", "sepia", "brightness_contrast_gamma", "vignette", "halftone",
        "grayscale", "scratches", "dust", "stains", "creases", "tears", "imgaug",
    }  # fmt: skip
    assert expected <= set(ALL)
    assert set(STRUCT) == {"scratches", "dust", "stains", "creases", "tears"}


@pytest.mark.parametrize("name", ALL)
def test_every_operator_has_a_valid_example_and_metadata(name):
    cls = get_operator(name)
    assert cls.example is not None, f"{name} has no example"
    assert isinstance(cls.version, int) and cls.version >= 1
    assert (cls.__doc__ or "").strip(), f"{name} has no docstring"
    for pname, spec in cls.params.items():
        assert spec.doc, f"{name}.{pname} has no doc"
    cls(**cls.example)  # validates
    assert cls.main_param() is None and not cls.params or cls.main_param() in cls.params


@pytest.mark.parametrize("name", ALL)
def test_every_kept_earlier_version_is_a_method_that_runs_its_example(name, photo):
    """An ``earlier`` entry names the frozen ``_apply`` of that version: it must exist and run, or
    records of that version would fail only when someone reproduces an old dataset."""
    cls = get_operator(name)
    assert all(isinstance(v, int) and 1 <= v < cls.version for v in cls.earlier), cls.earlier
    for v, method in cls.earlier.items():
        assert callable(getattr(cls, method, None)), f"{name} v{v}: no method {method}"
        op = cls(_version=v, **cls.example)
        assert op.version == v and op.config()["version"] == v
        out, mask = op.apply(photo, op.sample(np.random.default_rng(0)))
        assert out.shape == photo.shape and out.dtype == np.uint8 and not np.array_equal(out, photo)


def _params(name, seed=0):
    cls = get_operator(name)
    op = cls(**cls.example)
    return op, op.sample(np.random.default_rng(seed))


@pytest.mark.parametrize("name", ALL)
def test_example_changes_a_photo_keeping_shape_and_dtype(name, photo):
    op, p = _params(name)
    out, mask = op.apply(photo, p)
    assert out.shape == photo.shape and out.dtype == np.uint8
    assert not np.array_equal(out, photo), f"{name} example left the photo unchanged"
    if op.kind == STRUCTURED:
        assert mask.shape == photo.shape[:2] and mask.dtype == np.uint8
        assert set(np.unique(mask)) <= {0, 255} and mask.any()
    else:
        assert mask is None


@pytest.mark.parametrize("name", ALL)
def test_grayscale_input_stays_grayscale(name, gray_photo):
    op, p = _params(name, seed=1)
    out, mask = op.apply(gray_photo, p)
    assert out.shape == gray_photo.shape and out.dtype == np.uint8
    if op.kind == STRUCTURED:
        assert mask.shape == gray_photo.shape


@pytest.mark.parametrize("name", ALL)
def test_same_params_same_bytes_and_json_replay(name, photo):
    op, p = _params(name, seed=5)
    a, ma = op.apply(photo, p)
    p2 = json.loads(json.dumps(p))  # params survive JSON exactly
    b, mb = get_operator(name)().apply(photo, p2) if name != "imgaug" else op.apply(photo, p2)
    assert np.array_equal(a, b)
    assert (ma is None and mb is None) or np.array_equal(ma, mb)
    rec = [{"op": name, "version": op.version, "params": p2}]
    c, _ = replay(photo, rec)
    assert np.array_equal(a, c)


@pytest.mark.parametrize("name", [n for n in ALL if get_operator(n).seeded])
def test_seed_drives_the_pixel_randomness(name, photo):
    op, p = _params(name, seed=2)
    a, _ = op.apply(photo, p)
    b, _ = op.apply(photo, {**p, "seed": p["seed"] + 1})
    assert not np.array_equal(a, b)


@pytest.mark.parametrize("name", ALL)
def test_apply_does_not_modify_its_input(name, photo):
    before = photo.copy()
    op, p = _params(name, seed=3)
    out, _ = op.apply(photo, p)
    assert np.array_equal(photo, before)
    assert not np.shares_memory(out, photo)  # writing into the result never changes the input


@pytest.mark.parametrize("up", ["pil_bilinear", "pil_bicubic", "pil_lanczos", "cubic"])
def test_downscale_result_is_writable_whatever_resizes(up, photo):
    out, _ = get_operator("downscale")().apply(photo, {"scale_x": 0.5, "scale_y": 0.5, "keep_aspect": True, "down": "area", "up": up})
    out[0, 0] = 0


def test_a_no_op_result_is_still_a_new_array(photo):
    op = get_operator("downscale")()
    p = {**op.sample(np.random.default_rng(0)), "scale_x": 1.0, "scale_y": 1.0}
    out, _ = op.apply(photo, p)
    assert np.array_equal(out, photo) and out is not photo


@pytest.mark.parametrize("name", STRUCT)
def test_structured_op_changes_no_pixel_outside_its_mask(name, old_photo):
    op, p = _params(name, seed=4)
    img = old_photo[:200, :240].copy()
    out, mask = op.apply(img, p)
    changed = np.any(out != img, axis=-1)
    assert not np.any(changed & (mask == 0)), "pixels changed outside the mask"
    assert changed.sum() > 0.2 * (mask > 0).sum(), "mask much larger than the damage"


def _value(spec, data):
    if isinstance(spec, Float):
        lo = max(spec.lo, 1e-6) if spec.log else spec.lo
        return data.draw(st.floats(lo, spec.hi, allow_nan=False))
    if isinstance(spec, Int):
        return data.draw(st.integers(spec.lo, min(spec.hi, spec.lo + 60)))
    if isinstance(spec, Choice):
        return data.draw(st.sampled_from(spec.options))
    if isinstance(spec, Bool):
        return data.draw(st.booleans())
    raise AssertionError(spec)


@pytest.mark.parametrize("name", BUILTIN)
@given(data=st.data())
def test_any_params_in_range_any_size(name, data):
    """Property: every in-range parameter, any seed, sizes 1–40, gray or RGB: valid output, mask guarantee."""
    cls = get_operator(name)
    params = {k: _value(spec, data) for k, spec in cls.params.items()}
    if cls.seeded:
        params["seed"] = data.draw(st.integers(0, 2**32 - 1))
    cls.check_params(params)
    h, w = data.draw(st.integers(1, 40)), data.draw(st.integers(1, 40))
    gray = data.draw(st.booleans())
    rng = np.random.default_rng(data.draw(st.integers(0, 1000)))
    img = rng.integers(0, 256, (h, w) if gray else (h, w, 3), dtype=np.uint8)
    out, mask = cls().apply(img, params)
    assert out.shape == img.shape and out.dtype == np.uint8
    assert out.flags.writeable  # the caller may write into it (Pillow's resize gave a read-only view)
    again, mask2 = cls().apply(img, params)
    assert np.array_equal(out, again)
    if cls.kind == STRUCTURED:
        changed = out != img if gray else np.any(out != img, axis=-1)
        assert not np.any(changed & (mask == 0))
        assert np.array_equal(mask, mask2)


@pytest.mark.parametrize("name", BUILTIN)
def test_sampled_params_are_json_and_validate(name):
    cls = get_operator(name)
    op = cls()
    for s in range(20):
        p = op.sample(np.random.default_rng(s))
        assert json.loads(json.dumps(p)) == p
        cls.check_params(p)


def test_check_params_rejects_bad_records():
    cls = get_operator("gaussian_noise")
    with pytest.raises(RecipeError, match="missing"):
        cls.check_params({"sigma": 0.1, "per_channel": True})
    with pytest.raises(RecipeError, match="outside"):
        cls.check_params({"sigma": 7.0, "per_channel": True, "seed": 1})
    with pytest.raises(RecipeError, match="one sampled value"):
        cls.check_params({"sigma": [0.1, 0.2], "per_channel": True, "seed": 1})


def test_bad_images_are_refused_with_one_line():
    op = get_operator("gaussian_blur")()
    p = op.sample(np.random.default_rng(0))
    for bad in (np.zeros((8, 8, 3), np.uint16), np.zeros((8, 8, 4), np.uint8), np.zeros((0, 5, 3), np.uint8), [[1]]):
        with pytest.raises(ImageError) as e:
            op.apply(bad, p)
        assert "\n" not in str(e.value)


def test_unknown_operator_suggests_names():
    with pytest.raises(RecipeError, match="did you mean gaussian_noise"):
        get_operator("gausian_noise")


def test_unknown_parameter_is_named():
    with pytest.raises(RecipeError, match=r"steps\[0\]: unknown parameter 'sigm' for gaussian_blur"):
        get_operator("gaussian_blur")(_path="steps[0]", sigm=1.0)


def test_noise_levels_match_their_parameters(photo):
    """Measured, not assumed: gaussian sigma and salt-and-pepper amount come out as configured."""
    flat = np.full((256, 256, 3), 128, np.uint8)
    out, _ = get_operator("gaussian_noise")().apply(flat, {"sigma": 0.1, "per_channel": True, "seed": 3})
    assert abs(out.astype(float).std() - 25.5) < 0.5
    out, _ = get_operator("salt_pepper")().apply(flat, {"amount": 0.05, "salt_ratio": 0.25, "per_channel": True, "seed": 3})
    assert abs(np.mean(out == 255) - 0.0125) < 0.002 and abs(np.mean(out == 0) - 0.0375) < 0.003
    out, _ = get_operator("jpeg")().apply(photo, {"quality": 95})
    assert 0 < np.abs(out.astype(int) - photo).mean() < 3


@pytest.mark.parametrize("name, params", [("gaussian_noise", {"sigma": 0.1}), ("poisson_noise", {"peak": 20.0}),
                                          ("speckle", {"sigma": 0.3}), ("salt_pepper", {"amount": 0.2, "salt_ratio": 0.5})])  # fmt: skip
def test_per_channel_decides_whether_channels_share_their_noise(name, params):
    flat = np.full((64, 64, 3), 128, np.uint8)
    op = get_operator(name)()
    shared, _ = op.apply(flat, {**params, "per_channel": False, "seed": 4})
    assert np.array_equal(shared[..., 0], shared[..., 1]) and np.array_equal(shared[..., 0], shared[..., 2])
    assert (shared != flat).mean() > 0.1  # grey noise, but noise
    own, _ = op.apply(flat, {**params, "per_channel": True, "seed": 4})
    assert (own[..., 0] != own[..., 1]).mean() > 0.1 and (own[..., 1] != own[..., 2]).mean() > 0.1


def test_vignette_centre_moves_along_its_own_axis():
    flat = np.full((96, 128), 200, np.uint8)
    op = get_operator("vignette")()
    base = {"strength": 0.6, "radius": 1.0, "falloff": 2.0}
    for cx, cy in ((0.0, 0.25), (0.25, 0.0)):
        out = op.apply(flat, {**base, "center_x": cx, "center_y": cy})[0].astype(float)
        rows, cols = out.mean(axis=1), out.mean(axis=0)
        moved, still = (rows, cols) if cy else (cols, rows)
        assert moved[-8:].mean() > moved[:8].mean() + 5, (cx, cy)  # a positive shift moves the bright centre down / right
        assert abs(still[-8:].mean() - still[:8].mean()) < 0.5, (cx, cy)  # and leaves the other axis symmetric


def test_motion_blur_angle_turns_counter_clockwise_from_horizontal():
    """0° smears along rows, 90° along columns, 45° from lower left to upper right as the photo is seen."""
    dot = np.zeros((41, 41), np.uint8)
    dot[20, 20] = 255
    op = get_operator("motion_blur")()
    streak = {a: op.apply(dot, {"length_px": 15.0, "angle": a})[0] for a in (0.0, 45.0, 90.0)}
    assert streak[0.0][20, 14] and streak[0.0][20, 26] and not streak[0.0][14, 20] and not streak[0.0][26, 20]
    assert streak[90.0][14, 20] and streak[90.0][26, 20] and not streak[90.0][20, 14] and not streak[90.0][20, 26]
    assert streak[45.0][16, 24] and streak[45.0][24, 16] and not streak[45.0][16, 16] and not streak[45.0][24, 24]


def test_film_grain_is_spatially_correlated_and_luminance_dependent():
    img = np.tile(np.linspace(0, 255, 256, dtype=np.uint8), (256, 1))
    out, _ = get_operator("film_grain")().apply(img, {"strength": 0.1, "grain_px": 3.0, "monochrome": True, "seed": 1})
    noise = out.astype(float) - img
    # neighbours correlate (clumps), unlike white noise
    r = np.corrcoef(noise[:, 100:150].ravel()[:-1], noise[:, 100:150].ravel()[1:])[0, 1]
    assert r > 0.5
    assert noise[:, 120:136].std() > 2 * noise[:, 0:8].std()  # mid-greys grainier than blacks


def test_bopbtl_blur_matches_opencv_call(photo):
    import cv2

    out, _ = get_operator("gaussian_blur")().apply(photo, {"sigma": 2.5, "ksize": 5})
    assert np.array_equal(out, cv2.GaussianBlur(photo, (5, 5), 2.5, borderType=cv2.BORDER_REFLECT))


def test_cubic_aa_matches_pillow_bicubic_downsampling(photo):
    """The claim in the docs: within ~2 levels RMS of Pillow's anti-aliased bicubic."""
    from degrade.ops.compression import resize

    errs = []
    for s in (0.5, 0.63, 0.75):
        w, h = round(photo.shape[1] * s), round(photo.shape[0] * s)
        a = resize(photo, w, h, "cubic_aa").astype(float)
        b = resize(photo, w, h, "pil_bicubic").astype(float)
        plain = resize(photo, w, h, "cubic").astype(float)
        errs.append((np.sqrt(((a - b) ** 2).mean()), np.sqrt(((plain - b) ** 2).mean())))
    assert all(e < 3.0 for e, _ in errs)
    assert all(e < p for e, p in errs)  # closer to Pillow than OpenCV's plain bicubic


def test_stains_blur_work_follows_the_image_not_the_stain(monkeypatch):
    """v1 blurred each blob's whole patch (3.7 short sides wide) at full resolution with a kernel
    8 blurs long: a minute per blob at 1024 px. Wide blurs now run on a coarse grid, on the visible part."""
    import cv2

    work = []
    blur = cv2.GaussianBlur

    def spy(src, ksize, sigma, *a, **k):
        work.append(src.size * (2 * int(4 * sigma) + 1))  # pixels times taps of OpenCV's kernel
        return blur(src, ksize, sigma, *a, **k)

    monkeypatch.setattr(cv2, "GaussianBlur", spy)
    img = np.full((256, 256, 3), 128, np.uint8)
    p = {"count": 2, "radius": 0.5, "opacity": 1.0, "softness": 1.0, "ring": 1.0, "hue": 30.0, "dark": 0.5, "seed": 3}
    out, mask = get_operator("stains")().apply(img, p)
    assert mask.any() and sum(work) < 100 * img.shape[0] * img.shape[1]  # v1: ~9,000


@pytest.mark.parametrize("radius, softness", [(60.0, 1.0), (200.0, 0.6), (40.0, 0.3)])
def test_stains_coarse_blur_matches_the_full_resolution_blur(radius, softness):
    """The coarse grid of a wide blur lands within a few levels of blurring the whole patch at full
    resolution (v1's way), on the whole patch and on a window of it (a stain over the photo's edge)."""
    import cv2

    from degrade.ops._draw import fixed
    from degrade.ops.stains import _blob, _blob_shape

    half, blur, pts, grid = _blob_shape(np.random.default_rng(7), radius, softness)
    size = 2 * half + 1
    patch = np.zeros((size, size), np.uint8)
    cv2.fillPoly(patch, [fixed(pts)], 255, cv2.LINE_AA, 4)
    ref = cv2.GaussianBlur(patch.astype(np.float32) / 255, (0, 0), blur) if blur > 0.3 else patch / np.float32(255)
    ref *= np.clip(0.55 + 0.45 * cv2.resize(grid, (size, size), interpolation=cv2.INTER_CUBIC), 0, 1)
    for y0, y1, x0, x1 in ((0, size, 0, size), (half // 3, half + 17, half - 5, size)):
        cov = _blob(half, blur, pts, grid, 0.0, (y0, y1, x0, x1))
        assert cov.shape == (y1 - y0, x1 - x0)
        assert np.abs(cov - ref[y0:y1, x0:x1]).max() < 0.025  # 6 levels at full opacity


def test_builtins_are_registered_on_import_so_a_clashing_name_fails_at_register():
    """``degrade.OPERATORS`` was empty until the first lookup, and a custom op named like a built-in
    registered fine, then broke every later recipe load with "'jpeg' is already registered"."""
    code = ("import degrade\n"
            "assert 'jpeg' in degrade.OPERATORS and len(degrade.OPERATORS) == len(degrade.list_operators())\n"
            "class Mine(degrade.Operator):\n    name = 'jpeg'\n"
            "try:\n    degrade.register(Mine)\nexcept ValueError as e:\n    assert 'already registered' in str(e)\n"
            "else:\n    raise SystemExit('registered over a built-in')\n"
            "degrade.load_recipe('mild')\n")  # fmt: skip
    python_ok(code)


def test_the_package_exports_are_imported_on_first_use_and_listed():
    """``degrade``, ``pipelines`` and ``zoo`` import their exports on first use (``daguerre dataset ls``
    needs no numpy): each name in ``__all__`` resolves and is listed, and the built-ins are registered
    before a custom op, however ``register`` was imported."""
    code = ("import sys, degrade, pipelines\n"
            "assert 'numpy' not in sys.modules and 'pipelines.datasets' not in sys.modules\n"
            "from degrade.operator import Operator, register\n"
            "class Mine(Operator):\n    name = 'jpeg'\n"
            "try:\n    register(Mine)\nexcept ValueError as e:\n    assert 'already registered' in str(e)\n"
            "else:\n    raise SystemExit('registered over a built-in')\n"
            "for m in (degrade, pipelines):\n"
            "    assert set(m.__all__) <= set(dir(m)) and all(getattr(m, n) is not None for n in m.__all__)\n"
            "import zoo\nassert set(zoo.__all__) <= set(dir(zoo)) and 'torch' not in sys.modules\n"
            "from pipelines.layout import GenerationSpec\nfrom pipelines.spec import GenerationSpec as Spec\n"
            "assert GenerationSpec is Spec\n"
            "try:\n    degrade.nothing\nexcept AttributeError as e:\n    print(e)\n")  # fmt: skip
    assert python_ok(code).strip() == "module 'degrade' has no attribute 'nothing'"


@pytest.mark.parametrize("name", ["gaussian_noise", "imgaug"])
def test_sample_takes_a_generator_and_says_so(name):
    """``op.sample(0)`` failed inside params.py: 'int' object has no attribute 'uniform'."""
    from degrade import Recipe

    op = get_operator(name)(**(get_operator(name).example or {}))
    recipe = Recipe.from_dict([{"op": name, **(get_operator(name).example or {})}])
    for bad in (0, None, np.random.RandomState(0)):
        for sample in (op.sample, recipe.sample):
            with pytest.raises(RecipeError, match="sample\\(rng\\) takes a numpy Generator"):
                sample(bad)


def _functional_form(cls):
    import inspect

    module = inspect.getmodule(cls)
    return getattr(module, cls.name, None) or getattr(module, cls.name + "_noise", None)


@pytest.mark.parametrize("name", BUILTIN)
def test_every_functional_form_checks_its_image_like_the_class(name, photo):
    """The plain functions took a float image and gave back uint8 garbage, and sepia on grayscale hit an
    OpenCV assertion; they now check the image as the class form does, and colour ones take grayscale."""
    from degrade import ImageError

    cls = get_operator(name)
    fn = _functional_form(cls)
    assert fn is not None, f"{name} has no functional form"
    op, p = _params(name)
    import inspect

    takes = inspect.signature(fn).parameters
    args = {k: v for k, v in p.items() if k in takes}  # downscale's keep_aspect is the class's own
    for bad in (photo.astype(np.float32), photo.astype(np.uint16), np.dstack([photo, photo[..., :1]])):
        with pytest.raises(ImageError, match="expected"):
            fn(bad, **args)
    gray = np.ascontiguousarray(photo[..., 1])
    out = fn(gray, **args)
    img = out[0] if isinstance(out, tuple) else out
    assert img.shape == gray.shape and img.dtype == np.uint8
    if len(args) == len(p):
        assert np.array_equal(img, op.apply(gray, p)[0])  # the same bytes as the class form


def _out_of_range(spec):
    """Values a parameter's declared range refuses."""
    if isinstance(spec, (Float, Int)):
        step = 1 if isinstance(spec, Int) else max(1e-3, (spec.hi - spec.lo) * 1e-3)
        return [spec.lo - step, spec.hi + step, [spec.lo, spec.hi]] + ([float("nan")] if isinstance(spec, Float) else [])
    if isinstance(spec, Choice):
        return ["no-such-option", list(spec.options[:2])]
    return [0.5, "yes"]  # Bool: a probability is a recipe setting, not a value


@pytest.mark.parametrize("name", BUILTIN)
def test_every_functional_form_refuses_what_the_class_refuses(name, photo):
    """The plain functions did not check their parameters: a negative sigma reached OpenCV's assertion,
    a seed of -1 numpy's, and jpeg quality 500 or salt_pepper amount 3 gave garbage without a word.
    They now check every parameter against the class's ranges and fail with the class's one-line error."""
    import inspect

    cls = get_operator(name)
    fn = _functional_form(cls)
    _, p = _params(name)
    takes = list(inspect.signature(fn).parameters)[1:]
    assert set(takes) <= set(p), f"{fn.__name__} takes parameters the class does not declare"
    args = {k: p[k] for k in takes}
    img = np.ascontiguousarray(photo[:24, :32])
    fn(img, **args)  # the sampled values pass
    specs = {**{k: cls.params[k] for k in takes if k in cls.params}, **({"seed": Int(0, 2**32 - 1, 0)} if cls.seeded else {})}
    for k, spec in specs.items():
        for bad in _out_of_range(spec):
            with pytest.raises(RecipeError, match=f"^{fn.__name__}\\.{k}: ") as e:
                fn(img, **{**args, k: bad})
            assert "\n" not in str(e.value)
            with pytest.raises(RecipeError):  # the class form refuses the same value
                cls(**cls.example).apply(img, {**p, k: bad})


def test_register_refuses_earlier_versions_it_could_not_replay():
    """``earlier`` names the method that is ``_apply`` as it was: a typo or a version that is not earlier
    registered fine and failed only when someone replayed an old record ('internal AttributeError')."""
    from degrade import OPERATORS, Operator, register

    def op(name, earlier, version=2):
        return type("Custom", (Operator,), {"name": name, "version": version, "earlier": earlier,
                                            "_apply": lambda self, image, p: image, "_apply_v1": lambda self, image, p: image})  # fmt: skip

    for earlier, why in (({1: "_apply_v0"}, "version 1 names no method '_apply_v0'"), ({2: "_apply_v1"}, "version 2 is not earlier than 2"),
                         ({0: "_apply_v1"}, "version 0 is not earlier than 2"), ({"1": "_apply_v1"}, "version '1' is not")):  # fmt: skip
        with pytest.raises(ValueError, match=f"custom-earlier: earlier {why}"):
            register(op("custom-earlier", earlier))
        assert "custom-earlier" not in OPERATORS
    try:
        cls = register(op("custom-earlier", {1: "_apply_v1"}))
        img = np.zeros((4, 4), np.uint8)
        assert np.array_equal(replay(img, [{"op": "custom-earlier", "version": 1, "params": {}}])[0], img)
    finally:
        OPERATORS.pop("custom-earlier", None)
    assert cls.earlier == {1: "_apply_v1"}


FILM_GRAIN_V1 = {"strength": 0.2, "grain_px": 2.5, "monochrome": False, "seed": 3}
FILM_GRAIN_V1_BYTES = {  # SHA-256 of the image bytes the code before v2 gave for FILM_GRAIN_V1 on photo[:33, :57]
    "rgb": "e6658f53718a775a98f9fd7efdf28c3fa983ed417006f617c89460e101546008",
    "gray": "ddb99d565ab81f31b2daf765e8bb89dff15df313cbd270d0834630edd486348e",
}


def _grain(image, version, seed, strength=0.05, grain_px=2.5):
    p = {"strength": strength, "grain_px": grain_px, "monochrome": True, "seed": seed}
    return replay(image, [{"op": "film_grain", "version": version, "params": p}])[0].astype(np.float32) - image


@pytest.mark.parametrize("grain_px", [1.5, 2.5, 4.0])
def test_film_grain_is_as_strong_at_the_borders_as_inside(grain_px):
    """v1 interpolated the grain grid with its border replicated: the first and last rows and columns
    carried about 20 % more grain than the rest (15.4 against 12.7 levels on 33×257 at grain_px 2.5)."""
    img = np.full((33, 257), 128, np.uint8)
    n = np.stack([_grain(img, 2, s, grain_px=grain_px) for s in range(200)])
    rows, cols = n.std(axis=(0, 2)), n.std(axis=(0, 1))
    for sd in (rows, cols):
        inside = float(np.median(sd))
        assert abs(sd[0] / inside - 1) < 0.1 and abs(sd[-1] / inside - 1) < 0.1, (sd[0], inside, sd[-1])


@pytest.mark.parametrize("shape", [(1, 2), (2, 2), (2, 3), (1, 1)])
def test_film_grain_on_a_tiny_image_has_the_asked_strength(shape):
    """v1 divided the grain by the deviation of the drawn field itself: on a 1×2 image at grain_px 1 that
    is |a − b|/2 of two draws, so the grain saturated to ±128 (deviation 44 levels where 12.75 was asked)."""
    img = np.full(shape, 128, np.uint8)
    n = np.stack([_grain(img, 2, s, grain_px=1.0) for s in range(1500)])
    assert abs(n.std() / (0.05 * 255) - 1) < 0.08 and np.abs(n).max() < 0.05 * 255 * 4.6


VIGNETTE_V1 = {"strength": 0.7, "radius": 0.5, "falloff": 3.0, "center_x": 0.1, "center_y": -0.2}
VIGNETTE_V1_BYTES = {  # SHA-256 of the image bytes the code before v2 (commit fd0514a) gave for VIGNETTE_V1 on photo[:97, :150]
    "rgb": "1e07f8c3043f50a9d9f418edc50d0834cc75ddc73bf983e441284372870ccee6",
    "gray": "2f862ae9902051368ab385e8ae46d3181cf6af971fe9a1f3ad9dee6ffc96de28",
}


def _vignette_factor(shape, strength, radius, falloff, center_x, center_y):
    """The documented factor in float64: r² = (x² + y²)/2 at pixel centres, x and y from −1 to 1 across the photo."""
    h, w = shape[:2]
    y = (np.arange(h) + 0.5 - h / 2) / (h / 2) - 2 * center_y
    x = (np.arange(w) + 0.5 - w / 2) / (w / 2) - 2 * center_x
    r = np.sqrt((x[None, :] ** 2 + y[:, None] ** 2) / 2)
    return 1 - strength * np.minimum(1, (r / radius) ** falloff)


@pytest.mark.parametrize("shape", [(1, 1), (2, 3), (3, 2), (33, 257), (257, 33, 3), (700, 333, 3)])
def test_vignette_follows_its_formula_at_every_pixel(shape):
    """v1 evaluated the factor on a 64×64 grid spread corner to corner that cv2.resize read as cell
    centres (1.6 % narrower, flat at the borders) and could not follow the kink at the radius or the
    cusp of falloff 0.5: at strength 1 and radius 0.2, up to 60 levels off on 33×257, 72 on 1024×1024."""
    op, img = get_operator("vignette")(), np.full(shape, 255, np.uint8)
    if len(shape) == 3:
        img[..., 1], img[..., 2] = 131, 7  # each channel multiplied by the same factor
    for strength, radius, falloff, cx, cy in itertools.product(
        (1.0, 0.45), (0.2, 0.7, 2.0), (0.5, 1.0, 6.0), (0.0, -0.3, 0.13), (0.0, 0.3, -0.07)
    ):
        p = {"strength": strength, "radius": radius, "falloff": falloff, "center_x": cx, "center_y": cy}
        out = op.apply(img, p)[0].astype(np.float64)
        f = _vignette_factor(shape, **p)
        exact = img * (f[..., None] if img.ndim == 3 else f)
        assert np.abs(out - exact).max() <= 0.51, p  # the exact value rounded, float32 aside


def test_vignette_follows_its_formula_on_a_large_scan():
    """A 4000×3000 scan (many bands of rows) at the sharpest corner setting: still the formula, rounded."""
    img = np.full((3000, 4000), 255, np.uint8)
    p = {"strength": 1.0, "radius": 0.2, "falloff": 6.0, "center_x": 0.3, "center_y": -0.3}
    out = get_operator("vignette")().apply(img, p)[0]
    assert np.abs(out - 255 * _vignette_factor(img.shape, **p)).max() <= 0.51


@pytest.mark.parametrize("shape", [(1, 1), (2, 3), (45, 45), (96, 97, 3), (300, 301)])
def test_vignette_is_symmetric_about_its_centre(shape):
    """A centred vignette is the same flipped either way (and transposed when square); a shifted
    one flipped is the vignette shifted the other way."""
    op = get_operator("vignette")()
    img = np.full(shape, 250, np.uint8)
    for falloff, radius in ((0.5, 0.2), (2.0, 1.0), (6.0, 0.7)):
        p = {"strength": 0.8, "radius": radius, "falloff": falloff, "center_x": 0.0, "center_y": 0.0}
        out = op.apply(img, p)[0]
        assert out.min() < 250 or shape == (1, 1)
        assert np.array_equal(out, out[::-1]) and np.array_equal(out, out[:, ::-1]), p
        if shape[0] == shape[1]:
            assert np.array_equal(out, out.swapaxes(0, 1)), p
        shifted = op.apply(img, {**p, "center_x": 0.21, "center_y": -0.13})[0]
        assert np.array_equal(shifted[::-1, ::-1], op.apply(img, {**p, "center_x": -0.21, "center_y": 0.13})[0]), p


def test_vignette_takes_any_memory_layout(photo):
    """v2 writes its bands of rows into a fresh C-ordered array, whatever the input's layout."""
    op = get_operator("vignette")()
    p = {"strength": 0.7, "radius": 0.5, "falloff": 3.0, "center_x": 0.1, "center_y": -0.2}
    for view in (photo[:, ::2], photo[::-1, :, ::-1], photo[..., 1], np.asfortranarray(photo[..., 0])):
        assert np.array_equal(op.apply(view, p)[0], op.apply(np.ascontiguousarray(view), p)[0])


@pytest.mark.parametrize("op, crop, params, digests", [
    ("film_grain", (33, 57), FILM_GRAIN_V1, FILM_GRAIN_V1_BYTES),  # every old-photo, mild and severe sample before v2
    ("vignette", (97, 150), VIGNETTE_V1, VIGNETTE_V1_BYTES),  # old-photo and severe samples, and recipes pinning v1
])  # fmt: skip
def test_an_earlier_version_still_replays_to_its_bytes(photo, op, crop, params, digests):
    """Records and datasets made before version 2 reproduce: v1 gives the bytes the code before v2 gave."""
    import hashlib

    img = np.ascontiguousarray(photo[: crop[0], : crop[1]])
    for im, key in ((img, "rgb"), (np.ascontiguousarray(img[..., 1]), "gray")):
        old = replay(im, [{"op": op, "version": 1, "params": params}])[0]
        assert hashlib.sha256(old.tobytes()).hexdigest() == digests[key]
        assert not np.array_equal(old, replay(im, [{"op": op, "version": 2, "params": params}])[0])
    assert get_operator(op).version == 2


def test_jpeg_beyond_libjpegs_side_limit_is_one_clear_error():
    """A side over 65,500 px made OpenCV log a warning and fail with 'JPEG encoding failed'."""
    from degrade.errors import ImageError
    from degrade.ops.compression import JPEG_MAX_SIDE

    op = get_operator("jpeg")()
    assert op.apply(np.zeros((1, JPEG_MAX_SIDE, 3), np.uint8), {"quality": 50})[0].shape == (1, JPEG_MAX_SIDE, 3)
    with pytest.raises(ImageError, match=r"at most 65,500 pixels a side, this image is 1×65501"):
        op.apply(np.zeros((JPEG_MAX_SIDE + 1, 1), np.uint8), {"quality": 50})
