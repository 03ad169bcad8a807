"""imgaug inside recipes: the numpy-2 shim, seeding per sample, masks following geometry, clear errors."""

from __future__ import annotations

import inspect
import warnings

import numpy as np
import pytest

from cli_helpers import python_ok, run_python
from degrade import Recipe, RecipeError, get_operator
from degrade.compat import import_imgaug

iaa = import_imgaug()

# Augmenters a degradation recipe reaches for; each must run, replay and respect the seed.
USED = [
    ("GaussianBlur", {"sigma": [0.5, 2.0]}),
    ("MotionBlur", {"k": [3, 9]}),
    ("AverageBlur", {"k": [2, 5]}),
    ("MedianBlur", {"k": 3}),
    ("AdditiveGaussianNoise", {"scale": [5, 30]}),
    ("AdditivePoissonNoise", {"lam": [5, 20]}),
    ("AdditiveLaplaceNoise", {"scale": [5, 20]}),
    ("MultiplyElementwise", {"mul": [0.8, 1.2], "per_channel": True}),
    ("SaltAndPepper", {"p": 0.05}),
    ("CoarseDropout", {"p": 0.05, "size_percent": 0.1}),
    ("Cutout", {"nb_iterations": 2}),
    ("JpegCompression", {"compression": [50, 90]}),
    ("ElasticTransformation", {"alpha": [20, 50], "sigma": 5}),
    ("Affine", {"rotate": [-10, 10], "mode": "edge"}),
    ("PerspectiveTransform", {"scale": [0.02, 0.08], "keep_size": True}),
    ("GammaContrast", {"gamma": [0.5, 1.5]}),
    ("LinearContrast", {"alpha": [0.6, 1.0]}),
    ("SigmoidContrast", {"gain": [5, 8]}),
    ("CLAHE", {}),
    ("Grayscale", {"alpha": [0.5, 1.0]}),
    ("ChangeColorTemperature", {"kelvin": [3000, 9000]}),
    ("MultiplyHueAndSaturation", {"mul": [0.5, 1.0]}),
    ("AddToBrightness", {"add": [-30, 30]}),
    ("Sharpen", {"alpha": [0.2, 0.6]}),
    ("Emboss", {"alpha": [0.2, 0.5]}),
    ("Clouds", {}),
    ("Fog", {}),
    ("pillike.Autocontrast", {"cutoff": [1, 5]}),
    ("pillike.EnhanceColor", {"factor": [0.2, 0.8]}),
    ("pillike.EnhanceSharpness", {"factor": [0.2, 2.0]}),
    ("pillike.FilterSmooth", {}),
    ("KeepSizeByResize", {"children": {"augmenter": "Resize", "args": {"size": [0.3, 0.7]}}}),
    ("Sometimes", {"p": 0.5, "then_list": {"augmenter": "GaussianBlur", "args": {"sigma": 1.0}}}),
    ("OneOf", {"children": [{"augmenter": "GaussianBlur"}, {"augmenter": "JpegCompression", "args": {"compression": 80}}]}),
    ("Sequential", {"children": [{"augmenter": "AddToBrightness"}, {"augmenter": "SaltAndPepper", "args": {"p": 0.02}}], "random_order": True}),
]


def test_shim_restores_aliases_on_numpy_2():
    assert int(np.__version__.split(".")[0]) >= 2
    assert np.sctypes["float"] and np.complex is complex and np.float_ is np.float64
    assert np.dtype(np.bool) == np.dtype(bool)  # numpy 2 has np.bool again (numpy.bool_); left as is


@pytest.mark.parametrize("name, args", USED, ids=[u[0] for u in USED])
def test_augmenter_in_a_recipe_is_seeded_per_sample(name, args, photo, gray_photo):
    r = Recipe.from_dict({"steps": [{"op": "imgaug", "augmenter": name, "args": args}]})
    a = r.apply(photo, seed=11, index=0)
    b = r.apply(photo, seed=11, index=0)
    assert np.array_equal(a.image, b.image), "same sample, different bytes"
    assert a.image.shape == photo.shape and a.image.dtype == np.uint8
    outs = {r.apply(photo, seed=11, index=i).image.tobytes() for i in range(1, 6)}
    assert len(outs | {a.image.tobytes()}) > 1 or name in ("CLAHE", "pillike.FilterSmooth", "MedianBlur")
    g = r.apply(gray_photo, seed=11, index=0).image
    assert g.shape == gray_photo.shape


def test_seeding_is_independent_of_batch_position(photo):
    """The trap the design notes describe: the result must not depend on what ran before."""
    r = Recipe.from_dict({"steps": [{"op": "imgaug", "augmenter": "AdditiveGaussianNoise", "args": {"scale": [5, 30]}}]})
    first = r.apply(photo, seed=1, index=9).image
    for i in range(5):
        r.apply(photo, seed=1, index=i)
    assert np.array_equal(first, r.apply(photo, seed=1, index=9).image)


@pytest.mark.parametrize(
    "augmenter, args",
    [("MultiplyAndAddToBrightness", {}),  # a random-order Sequential inside, at its defaults
     ("Sometimes", {"p": 1.0, "then_list": {"augmenter": "Sequential", "args": {"random_order": True, "children": [
         {"augmenter": "Multiply", "args": {"mul": [0.5, 1.5]}}, {"augmenter": "Add", "args": {"value": [-40, 40]}}]}}})],
)  # fmt: skip
def test_nested_random_order_is_seeded_too(augmenter, args, photo):
    """imgaug's seed_ skips a child list's own generator; the order it draws must still follow the seed."""
    r = Recipe.from_dict({"steps": [{"op": "imgaug", "augmenter": augmenter, "args": args}]})
    first = [r.apply(photo, seed=1, index=i).image for i in range(4)]
    again = [r.apply(photo, seed=1, index=i).image for i in (3, 2, 1, 0)][::-1]
    assert all(np.array_equal(a, b) for a, b in zip(first, again))


def test_image_only_augmenter_after_a_defect_is_a_recipe_error(photo):
    steps = [{"op": "scratches", "count": 5}, {"op": "imgaug", "augmenter": "pillike.Affine", "args": {"rotate": [-5, 5]}}]
    with pytest.raises(RecipeError, match="cannot move a defect mask"):
        Recipe.from_dict({"steps": steps}).apply(photo, seed=0, index=0)
    Recipe.from_dict({"steps": steps[::-1]}).apply(photo, seed=0, index=0)  # before the defects it is fine


def test_elastic_remap_takes_float64_shift_maps(photo):
    """The shim's ElasticTransformation fix: float64 shift maps (what NEP 50 leaves imgaug with) reach OpenCV 5's
    convertMaps as float32; zero shifts leave the image as it is."""
    elastic = iaa.geometric.ElasticTransformation
    dx = np.random.default_rng(0).normal(0, 2, photo.shape[:2])
    assert dx.dtype == np.float64
    for order in (0, 1, 3):
        out = elastic._map_coordinates(photo, dx, -dx, order=order)
        assert out.shape == photo.shape and out.dtype == np.uint8 and not np.array_equal(out, photo)
    zero = np.zeros(photo.shape[:2])
    assert np.array_equal(elastic._map_coordinates(photo, zero, zero, order=1), photo)


def test_geometric_augmenter_moves_the_mask(photo):
    steps = [{"op": "scratches", "count": 4}, {"op": "imgaug", "augmenter": "Fliplr", "args": {"p": 1.0}}]
    flipped = Recipe.from_dict({"steps": steps}).apply(photo, seed=2, index=0)
    plain = Recipe.from_dict({"steps": steps[:1]}).apply(photo, seed=2, index=0)
    assert np.array_equal(flipped.mask, plain.mask[:, ::-1])
    assert np.array_equal(flipped.image, plain.image[:, ::-1])


def test_colour_augmenter_leaves_the_mask(photo):
    steps = [{"op": "dust", "density": 80.0}, {"op": "imgaug", "augmenter": "GammaContrast", "args": {"gamma": 1.5}}]
    a = Recipe.from_dict({"steps": steps}).apply(photo, seed=2, index=0)
    b = Recipe.from_dict({"steps": steps[:1]}).apply(photo, seed=2, index=0)
    assert np.array_equal(a.mask, b.mask)


@pytest.mark.parametrize(
    "node, message",
    [
        ({"op": "imgaug"}, r"steps\[0\]\.augmenter: missing"),
        ({"op": "imgaug", "augmenter": "GausianBlur"}, r"has no augmenter 'GausianBlur'"),
        ({"op": "imgaug", "augmenter": "GaussianBlur", "args": {"sigm": 1}}, r"steps\[0\]: imgaug\.GaussianBlur\(sigm\) rejected"),
        ({"op": "imgaug", "augmenter": "imgcorruptlike.Fog"}, r"imgaug\.imgcorruptlike is not supported"),
        ({"op": "imgaug", "augmenter": "GaussianBlur", "args": {"seed": 3}}, r"do not set 'seed'"),
        ({"op": "imgaug", "augmenter": "Resize", "args": {"size": 0.5}}, None),
        # values where imgaug hangs (sigma 1e6: minutes per tile) or overflows, refused at load
        ({"op": "imgaug", "augmenter": "GaussianBlur", "args": {"sigma": 1e6}}, r"steps\[0\]\.args\.sigma: 1000000\.0 is beyond ±10,000"),
        ({"op": "imgaug", "augmenter": "Add", "args": {"value": [-10, 10**18]}}, r"args\.value\[1\]: 1000000000000000000 is beyond"),
        ({"op": "imgaug", "augmenter": "Sometimes", "args": {"p": 0.5, "then_list": {"augmenter": "GaussianBlur", "args": {"sigma": -2e4}}}},
         r"then_list\.args\.sigma: -20000\.0 is beyond"),
    ],
)
def test_imgaug_errors(node, message, photo):
    if message is None:  # valid recipe, but it changes the size: refused when applied
        r = Recipe.from_dict({"steps": [node]})
        with pytest.raises(RecipeError, match="changed the image shape"):
            r.apply(photo, seed=0, index=0)
        return
    with pytest.raises(RecipeError, match=message):
        Recipe.from_dict({"steps": [node]})


def _default_constructible():
    skip_modules = {"imgcorruptlike", "debug"}
    out = []
    for modname in ("arithmetic", "artistic", "blend", "blur", "color", "contrast", "convolutional", "edges", "flip",
                    "geometric", "pillike", "pooling", "segmentation", "size", "weather"):  # fmt: skip
        if modname in skip_modules:
            continue
        mod = getattr(iaa, modname)
        for n, c in inspect.getmembers(mod, inspect.isclass):
            if c.__module__ != mod.__name__ or not issubclass(c, iaa.meta.Augmenter) or n.startswith("_"):
                continue
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    c()
            except Exception:  # needs arguments
                continue
            out.append(f"{modname}.{n}")
    return out


ALL_DEFAULT = _default_constructible()


def test_sweep_covers_most_of_imgaug():
    assert len(ALL_DEFAULT) > 100


@pytest.mark.parametrize("qualname", ALL_DEFAULT)
def test_every_default_augmenter_runs_under_numpy_2(qualname):
    mod, name = qualname.split(".")
    aug_name = name if hasattr(iaa, name) and getattr(iaa, name) is getattr(getattr(iaa, mod), name) else qualname
    img = np.random.default_rng(0).integers(0, 256, (48, 40, 3), dtype=np.uint8)
    op = get_operator("imgaug")(augmenter=aug_name, args={})
    p = op.sample(np.random.default_rng(1))
    try:
        out, _ = op.apply(img, p)
    except RecipeError as e:  # size-changing augmenters are refused, clearly
        assert "changed the image shape" in str(e)
        return
    assert out.dtype == np.uint8 and out.shape == img.shape


def test_augmenters_apply_without_deprecation_chatter():
    """PiecewiseAffine called a deprecated scikit-image API on every image: a FutureWarning on stderr
    from every worker of a dataset run."""
    code = ("import numpy as np; from degrade.ops.imgaug_op import imgaug_apply; "
            "img = np.zeros((32, 32, 3), np.uint8); img[8:24] = 200; "
            "imgaug_apply(img, 'PiecewiseAffine', {'scale': [0.01, 0.03]}, 1)")  # fmt: skip
    r = run_python(code)
    assert r.returncode == 0 and r.stderr == "", r.stderr


def test_an_augmenter_that_fails_on_its_arguments_when_applied_is_a_recipe_error(photo):
    """MedianBlur k 9999 builds, then OpenCV refuses it on uint8: that was an "internal error"."""
    r = Recipe.from_dict({"steps": [{"op": "imgaug", "augmenter": "MedianBlur", "args": {"k": 9999}}]})
    with pytest.raises(RecipeError, match=r'imgaug\.MedianBlur \{"k": 9999\} failed on a \d+×\d+ image: .*k < 16'):
        r.apply(photo, seed=0)
    mask = np.zeros(photo.shape[:2], np.uint8)
    mask[:8] = 255  # the path that moves a defect mask too
    with pytest.raises(RecipeError, match=r"imgaug\.MedianBlur .* failed"):
        get_operator("imgaug")(augmenter="MedianBlur", args={"k": 9999}).apply_to(photo, mask, {"augmenter": "MedianBlur", "args": {"k": 9999}, "seed": 1})


def test_imgaug_leaves_numpys_global_generator_alone():
    """imgaug seeds its own global RNG from ``np.random`` on first use: building a recipe's augmenter
    advanced the caller's global numpy stream."""
    code = ("import numpy as np; from degrade import load_recipe\n"
            "np.random.seed(0); before = np.random.get_state()[1].copy()\n"
            "r = load_recipe({'steps': [{'op': 'imgaug', 'augmenter': 'Affine', 'args': {'rotate': [-10, 10]}}]})\n"
            "r.apply(np.zeros((16, 16, 3), np.uint8), seed=0)\n"
            "assert np.array_equal(before, np.random.get_state()[1]) and np.random.get_state()[2] == 624\n")  # fmt: skip
    python_ok(code)


def test_a_callers_own_imgaug_still_follows_np_random_seed():
    """Fixing imgaug's global generator to seed 0 (so as not to draw from ``np.random``) made a caller's
    own unseeded augmenters ignore ``np.random.seed``; it is now seeded from numpy's state, as imgaug
    does, and numpy's stream put back."""
    def draw(seed):
        code = (f"import numpy as np; np.random.seed({seed}); before = np.random.get_state()[1].copy()\n"
                "from degrade import load_recipe\n"
                "load_recipe({'steps': [{'op': 'imgaug', 'augmenter': 'Affine', 'args': {'rotate': [-10, 10]}}]})"
                ".apply(np.zeros((16, 16, 3), np.uint8), seed=0)\n"
                "assert np.array_equal(before, np.random.get_state()[1])\n"
                "from imgaug import random as iarandom; print(iarandom.get_global_rng().integers(0, 2**31))\n")  # fmt: skip
        return python_ok(code).strip()

    assert draw(1) == draw(1) != draw(2)
