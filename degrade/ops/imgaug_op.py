"""Any imgaug augmenter inside a recipe, seeded per sample so its output replays exactly.

Arguments come from YAML/JSON, which have no tuples: a plain list becomes a tuple (imgaug's
uniform range ``(a, b)``), ``{choice: [...]}`` becomes a list (imgaug's discrete choice), and
``{augmenter: Name, args: {...}}`` builds a child augmenter (for ``Sometimes``, ``OneOf``…).
"""

from __future__ import annotations

import copy
import json
import threading
from typing import Any

import numpy as np

from ..errors import RecipeError
from ..image import check_image, gray_to_rgb, rgb_to_gray
from ..operator import UNSTRUCTURED, Operator, register
from ..params import Int, SEED_BOUND, draw_seed
from ..rand import check_generator

_UNSUPPORTED = {
    "imgcorruptlike": "needs the `imagecorruptions` package, which seeds numpy's global RNG and no longer imports",
}
_cache = threading.local()


def _resolve(name: Any, path: str):
    from ..compat import import_imgaug

    if not isinstance(name, str) or not name:
        raise RecipeError(f"{path}: expected an imgaug augmenter name such as 'GaussianBlur', got {name!r}")
    iaa = import_imgaug()
    head = name.split(".")[0]
    if head in _UNSUPPORTED:
        raise RecipeError(f"{path}: imgaug.{head} is not supported: {_UNSUPPORTED[head]}")
    obj = iaa
    for part in name.split("."):
        obj = getattr(obj, part, None)
        if obj is None:
            raise RecipeError(f"{path}: imgaug.augmenters has no augmenter {name!r}")
    if not (isinstance(obj, type) and issubclass(obj, iaa.meta.Augmenter)):
        raise RecipeError(f"{path}: imgaug.augmenters.{name} is not an augmenter class")
    return obj


def _is_aug_spec(v: Any) -> bool:
    return isinstance(v, dict) and "augmenter" in v


MAX_ARG = 10_000
"""Largest magnitude of a number in imgaug arguments: beyond it imgaug hangs or overflows
(GaussianBlur's sigma 10,000 already takes 33 s on a 256 px tile; 1e6 ran for minutes, Add's 1e18
overflows)."""


def _to_imgaug(value: Any, path: str) -> Any:
    """Turn a JSON argument into what imgaug expects (see the module docstring)."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if not abs(value) <= MAX_ARG:  # false for nan and inf too (math.isfinite(10**400) overflowed)
            shown = repr(value) if isinstance(value, float) or abs(value) < 10**20 else f"an integer of {value.bit_length()} bits"
            raise RecipeError(f"{path}: {shown} is beyond ±{MAX_ARG:,}, where imgaug hangs or overflows")
        return value
    if _is_aug_spec(value):
        return build(value["augmenter"], value.get("args", {}), path)
    if isinstance(value, dict):
        if set(value) == {"choice"} and isinstance(value["choice"], list):
            return [_to_imgaug(v, f"{path}.choice[{i}]") for i, v in enumerate(value["choice"])]
        return {k: _to_imgaug(v, f"{path}.{k}") for k, v in value.items()}
    if isinstance(value, list):
        items = [_to_imgaug(v, f"{path}[{i}]") for i, v in enumerate(value)]
        return items if value and all(_is_aug_spec(v) for v in value) else tuple(items)
    return value


def build(name: str, args: dict[str, Any], path: str = "imgaug"):
    """Construct an augmenter from a name and JSON arguments; bad names or arguments raise RecipeError."""
    cls = _resolve(name, f"{path}.augmenter")
    if not isinstance(args, dict):
        raise RecipeError(f"{path}.args: expected a mapping of keyword arguments, got {args!r}")
    if "seed" in args or "random_state" in args:
        raise RecipeError(f"{path}.args: do not set 'seed'; it is drawn per sample from the recipe seed")
    kwargs = {k: _to_imgaug(v, f"{path}.args.{k}") for k, v in args.items()}
    try:
        return cls(**kwargs)  # deprecation chatter is filtered once, in degrade.compat
    except Exception as e:  # imgaug raises assorted types for bad arguments
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise RecipeError(f"{path}: imgaug.{name}({', '.join(args)}) rejected its arguments: {msg}") from None


def _cached(name: str, args: dict[str, Any]):
    """One augmenter per (name, args) per thread: reseeding mutates it, so threads must not share."""
    store = getattr(_cache, "augs", None)
    if store is None:
        store = _cache.augs = {}
    key = name + json.dumps(args, sort_keys=True)
    aug = store.get(key)
    if aug is None:
        aug = store[key] = build(name, args)
    return aug


def _seed_tree(aug, seed: int) -> None:
    """Seed ``aug`` and everything in it. imgaug's ``seed_`` skips the own generator of a child list
    that is itself an augmenter (``Sometimes(then_list=Sequential(random_order=True))``, inside
    ``MultiplyAndAddToBrightness``): its order would depend on earlier calls, not on ``seed``."""
    from imgaug import random as iarandom
    from imgaug.augmenters.meta import Augmenter

    aug.seed_(seed)
    stack, k = [aug], 0
    while stack:
        node = stack.pop()
        for lst in node.get_children_lists():
            if isinstance(lst, Augmenter):
                k += 1
                entropy = int(np.random.SeedSequence([seed, k]).generate_state(1, dtype=np.uint32)[0])
                lst.random_state = iarandom.RNG(entropy)
            stack.extend(lst)


def _failed(augmenter: str, args: dict[str, Any], image: np.ndarray, e: Exception) -> RecipeError:
    """imgaug (or OpenCV under it) refusing its arguments when applied, e.g. MedianBlur k > 15 on uint8:
    a recipe error naming the augmenter, not an internal error."""
    text = next((ln.strip() for ln in str(e).splitlines() if ln.strip()), type(e).__name__)
    return RecipeError(f"imgaug.{augmenter} {json.dumps(args, sort_keys=True)} failed on a {image.shape[1]}×{image.shape[0]} image: {text}")


def imgaug_apply(
    image: np.ndarray, augmenter: str, args: dict[str, Any], seed: int, mask: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray | None]:
    """Apply an imgaug augmenter seeded with ``seed`` to one image (and move ``mask`` with it).

    Grayscale images go through as RGB and come back as luma. Geometric augmenters move the
    mask as a segmentation map, so defects stay registered with the pixels they damaged.
    """
    aug = _cached(augmenter, args)
    _seed_tree(aug, int(seed))
    rgb = gray_to_rgb(image) if image.ndim == 2 else image
    if mask is not None and mask.any():
        from imgaug.augmentables.segmaps import SegmentationMapsOnImage

        seg = SegmentationMapsOnImage((mask > 0).astype(np.int32), shape=rgb.shape)
        try:
            out, seg_out = aug(image=rgb, segmentation_maps=seg)
        except (AssertionError, NotImplementedError) as e:
            if "segmentation" not in str(e) and "only process image" not in str(e):
                raise _failed(augmenter, args, rgb, e) from None
            raise RecipeError(
                f"imgaug.{augmenter} cannot move a defect mask (it processes images only); "
                "place it before the recipe's structured operators"
            ) from None
        except Exception as e:  # noqa: BLE001  the augmenter's own failure on these arguments
            raise _failed(augmenter, args, rgb, e) from None
        mask = np.where(seg_out.get_arr() > 0, np.uint8(255), np.uint8(0))
    else:
        try:
            out = aug(image=rgb)
        except Exception as e:  # noqa: BLE001
            raise _failed(augmenter, args, rgb, e) from None
    if out.shape != rgb.shape:
        raise RecipeError(
            f"imgaug.{augmenter} changed the image shape {rgb.shape} -> {out.shape}; recipes keep sizes "
            "(wrap it in KeepSizeByResize or use a size-preserving setting)"
        )
    out = np.ascontiguousarray(out, dtype=np.uint8)
    return (rgb_to_gray(out) if image.ndim == 2 else out), mask


@register
class Imgaug(Operator):
    """Any imgaug augmenter by name with keyword arguments, seeded from the sample."""

    name = "imgaug"
    kind = UNSTRUCTURED
    params = {}  # free-form: ``augmenter`` and ``args`` are validated by building the augmenter
    seeded = True
    example = {"augmenter": "ElasticTransformation", "args": {"alpha": 40.0, "sigma": 5.0}}

    def __init__(self, _path: str = "", _version: int | None = None, augmenter: Any = None, args: Any = None, **unknown: Any) -> None:
        path = _path or self.name
        self.version = self.check_version(_version, path)
        if unknown:
            raise RecipeError(f"{path}: unknown parameter {sorted(unknown)[0]!r} for imgaug (known: augmenter, args)")
        if augmenter is None:
            raise RecipeError(f"{path}.augmenter: missing (an imgaug.augmenters class name, e.g. 'GaussianBlur')")
        args = {} if args is None else args
        build(augmenter, args, path)
        try:
            canonical = json.loads(json.dumps(args, sort_keys=True))
        except (TypeError, ValueError):
            raise RecipeError(f"{path}.args: arguments must be plain JSON values") from None
        self.settings = {"augmenter": augmenter, "args": canonical}

    def sample(self, rng: np.random.Generator) -> dict[str, Any]:
        check_generator(rng)
        return {**copy.deepcopy(self.settings), "seed": draw_seed(rng)}  # a record must not alias the recipe

    @classmethod
    def check_params(cls, params: dict[str, Any], path: str = "") -> dict[str, Any]:
        path = path or cls.name
        if not isinstance(params, dict) or set(params) != {"augmenter", "args", "seed"}:
            raise RecipeError(f"{path}: params for imgaug need exactly augmenter, args and seed")
        try:  # what a recipe can hold (a float32 or a set passed here, and failed later, inside the cache)
            json.dumps(params["args"])
        except (TypeError, ValueError):
            raise RecipeError(f"{path}.args: arguments must be plain JSON values") from None
        build(params["augmenter"], params["args"], path)
        return {**params, "seed": Int(0, SEED_BOUND - 1, default=0).normalize(params["seed"], f"{path}.seed")}

    def apply_checked(self, image, params):
        check_image(image)
        return imgaug_apply(image, params["augmenter"], params["args"], params["seed"])[0], None

    def apply_to(self, image, mask, params):
        return imgaug_apply(image, params["augmenter"], params["args"], params["seed"], mask)
