"""Restoration methods a benchmark compares: classical baselines and zoo bundles, in one registry.

A method maps a degraded uint8 RGB image (and, when it wants one, a defect mask) to a restored
image and the mask it used. Adding one takes a few lines::

    from zoo.methods import Method, register_method

    @register_method("gaussian")
    class Gaussian(Method):
        "Gaussian smoothing, σ = 1."
        def run(self, image, mask=None):
            return cv2.GaussianBlur(image, (0, 0), 1.0), None
"""

from __future__ import annotations

from typing import ClassVar

import cv2
import numpy as np

from degrade.errors import DaguerreError, first_line


class Method:
    """Base class: ``run(image, mask) -> (restored, mask_used_or_None)``."""

    name: ClassVar[str] = ""
    needs_mask: ClassVar[bool] = False  # inpainting methods: uses the ground-truth or detected mask
    detects: ClassVar[bool] = False  # produces its own defect mask (scored for detection)

    def __init__(self, arg: str | None = None) -> None:
        self.arg = arg

    @property
    def label(self) -> str:
        return self.name if self.arg is None else f"{self.name}:{self.arg}"

    def run(self, image: np.ndarray, mask: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray | None]:
        raise NotImplementedError

    def card(self) -> dict:
        return {"method": self.label, "doc": first_line(type(self).__doc__)}


METHODS: dict[str, type[Method]] = {}


def register_method(name: str):
    """Decorator: register a :class:`Method` under ``name``; a name taken by another class (a built-in
    included) is refused, as the operator and model registries do."""
    if not name or ":" in name:  # ``zoo:NAME`` splits at the first colon
        raise ValueError(f"invalid method name {name!r}: not empty, no ':'")

    def wrap(cls):
        if name in METHODS and METHODS[name] is not cls:
            raise ValueError(f"method {name!r} is already registered")
        cls.name = name
        METHODS[name] = cls
        return cls

    return wrap


def get_method(spec: str, device: str = "cpu") -> Method:
    """``nlm``, ``nlm+telea``, ``zoo:default``, ``zoo:PATH`` → a Method instance; a zoo bundle's runs on ``device``."""
    name, _, arg = spec.partition(":")
    if name not in METHODS:
        raise DaguerreError(f"unknown method {spec!r} (have: {', '.join(sorted(METHODS))}, zoo:NAME)")
    if name in ("zoo", "zoo-raw") and not arg:
        raise DaguerreError(f"method {name} needs a model: {name}:default or {name}:PATH")
    cls = METHODS[name]
    return cls(arg or None, device) if issubclass(cls, ZooBundle) else cls(arg or None)


def _nlm(image: np.ndarray) -> np.ndarray:
    return cv2.fastNlMeansDenoisingColored(image, None, 7, 7, 7, 21)


def _inpaint(image: np.ndarray, mask: np.ndarray | None, flag: int) -> np.ndarray:
    if mask is None or not mask.any():
        return image
    m = cv2.dilate((mask > 0).astype(np.uint8) * 255, np.ones((3, 3), np.uint8))
    return cv2.inpaint(image, m, 3, flag)


@register_method("identity")
class Identity(Method):
    """The degraded input itself (the floor every method must beat)."""

    def run(self, image, mask=None):
        return image.copy(), None


@register_method("nlm")
class NonLocalMeans(Method):
    """OpenCV fast non-local means denoising (colour), h = 7."""

    def run(self, image, mask=None):
        return _nlm(image), None


@register_method("telea")
class Telea(Method):
    """Telea inpainting of the mask (dilated by one pixel), radius 3."""

    needs_mask = True

    def run(self, image, mask=None):
        return _inpaint(image, mask, cv2.INPAINT_TELEA), mask


@register_method("ns")
class NavierStokes(Method):
    """Navier–Stokes inpainting of the mask (dilated by one pixel), radius 3."""

    needs_mask = True

    def run(self, image, mask=None):
        return _inpaint(image, mask, cv2.INPAINT_NS), mask


@register_method("nlm+telea")
class NlmTelea(Method):
    """Non-local means denoising, then Telea inpainting of the mask: the classical pipeline."""

    needs_mask = True

    def run(self, image, mask=None):
        return _inpaint(_nlm(image), mask, cv2.INPAINT_TELEA), mask


@register_method("median")
class Median(Method):
    """Median filter 3×3 (impulse noise)."""

    def run(self, image, mask=None):
        return cv2.medianBlur(image, 3), None


@register_method("bilateral")
class Bilateral(Method):
    """Bilateral filter (d = 7, σ colour 40, σ space 5)."""

    def run(self, image, mask=None):
        return cv2.bilateralFilter(image, 7, 40, 5), None


@register_method("zoo")
class ZooBundle(Method):
    """A zoo restoration bundle: detector → VAE1 encoder → mapping → VAE2 decoder → tone anchoring."""

    detects = True
    anchor: ClassVar[bool] = True  # the bundle's calibrated tone anchoring, as `daguerre restore` applies it

    def __init__(self, arg: str | None = None, device: str = "cpu") -> None:
        super().__init__(arg)
        from .restore import get_bundle

        self.device = str(device)
        self.bundle = get_bundle(arg or "default", self.device)

    def run(self, image, mask=None):
        from .restore import restore

        res = restore(image, self.bundle, "auto" if mask is None else mask, device=self.device, anchor=self.anchor)
        return res.image, res.mask

    def card(self) -> dict:
        import hashlib
        import json

        c = self.bundle.card
        return {**super().card(), "card_sha256": hashlib.sha256(json.dumps(c, sort_keys=True).encode()).hexdigest(),
                "model_name": c.get("name"), "saved": c.get("saved")}  # fmt: skip


@register_method("zoo-raw")
class ZooBundleRaw(ZooBundle):
    """The same bundle without its tone anchoring: G_Y ∘ T ∘ E_R as the networks give it."""

    anchor = False


def detected_mask(image: np.ndarray, model="default", device: str = "cpu") -> np.ndarray:
    """The zoo detector's mask of an image (what 'detected mask' baselines inpaint); ``model`` as in
    ``zoo.restore``: a bundle's name or path, or a loaded Bundle."""
    from .restore import detect_mask, get_bundle

    return detect_mask(get_bundle(model, device), image, device=device)
