"""The operator contract and the operator registry.

An operator declares typed parameter ranges; ``sample(rng)`` draws a plain JSON params dict
(including a seed when it needs pixel-level randomness) and ``apply(image, params)`` is a pure
function of the image and that dict, so a params record replays the exact bytes.
"""

from __future__ import annotations

import difflib
import functools
import inspect
from typing import Any, ClassVar

import numpy as np

from .errors import RecipeError
from .image import apply_on, check_image
from .params import SEED_BOUND, Bool, Int, Param, check_plain_number, default_setting, draw_seed
from .rand import check_generator

STRUCTURED = "structured"
UNSTRUCTURED = "unstructured"

_SEED_PARAM = Int(0, SEED_BOUND - 1, default=0, doc="seed of the pixel-level randomness")


class Operator:
    """Base class. Subclasses set the class attributes and implement ``_apply``."""

    name: ClassVar[str]
    kind: ClassVar[str] = UNSTRUCTURED
    version: ClassVar[int] = 1
    earlier: ClassVar[dict[int, str]] = {}
    """Earlier versions still replayed: version -> name of the method that is ``_apply`` as it was then.
    Data made with them stays reproducible byte for byte after an operator changes."""
    params: ClassVar[dict[str, Param]] = {}
    seeded: ClassVar[bool] = False
    colour: ClassVar[bool] = False
    """True when the op needs RGB: grayscale input is expanded to RGB, processed, and converted back."""
    main: ClassVar[str | None] = None
    """The parameter that sums the op up (captions, per-parameter benchmark bins); default: the first."""
    example: ClassVar[dict[str, Any] | None] = None
    """Recipe settings that show the op clearly on a photo (docs, contact sheet, tests)."""

    def __init__(self, _path: str = "", _version: int | None = None, **settings: Any) -> None:
        path = _path or self.name
        self.version = self.check_version(_version, path)
        unknown = sorted(set(settings) - set(self.params))
        if unknown:
            raise RecipeError(
                f"{path}: unknown parameter {unknown[0]!r} for {self.name} (known: {', '.join(self.params) or 'none'})"
            )
        self.settings = {
            k: spec.normalize(settings[k], f"{path}.{k}") if k in settings else default_setting(spec, f"{path}.{k}")
            for k, spec in self.params.items()
        }

    @classmethod
    def check_version(cls, version: int | None, path: str = "") -> int:
        """The version a recipe or record asks for (None: the installed one), if it can be applied."""
        if version is None or version == cls.version:
            return cls.version
        if version not in cls.earlier:
            kept = f"; earlier ones kept: {', '.join(map(str, sorted(cls.earlier)))}" if cls.earlier else ""
            raise RecipeError(f"{path or cls.name}: {cls.name} version {version} is not installed (version {cls.version}{kept}); "
                              "its output differs: drop or update the version")  # fmt: skip
        return version

    @classmethod
    def main_param(cls) -> str | None:
        return cls.main or next(iter(cls.params), None)

    def config(self) -> dict[str, Any]:
        """Canonical settings of this configured op (every parameter explicit)."""
        return {"op": self.name, "version": self.version, **self.settings}

    def sample(self, rng: np.random.Generator) -> dict[str, Any]:
        """Draw one params dict from the configured settings."""
        check_generator(rng)
        out = {k: spec.sample(self.settings[k], rng) for k, spec in self.params.items()}
        if self.seeded:
            out["seed"] = draw_seed(rng)
        return out

    @classmethod
    def check_params(cls, params: dict[str, Any], path: str = "") -> dict[str, Any]:
        """Validate a sampled (or hand-written) params dict: exact keys, scalar values in bounds.
        Returns it normalised (``3.0`` for an integer parameter becomes ``3``)."""
        path = path or cls.name
        if not isinstance(params, dict):
            raise RecipeError(f"{path}: params for {cls.name} must be a mapping, got {type(params).__name__}")
        expected = set(cls.params) | ({"seed"} if cls.seeded else set())
        if set(params) != expected:
            missing, extra = sorted(expected - set(params)), sorted(set(params) - expected, key=str)  # 1 and 'x': a TypeError
            what = f"missing {missing}" if missing else f"unexpected {extra}"
            raise RecipeError(f"{path}: params for {cls.name} have {what}")
        return {k: cls.check_value(k, params[k], f"{path}.{k}") for k in (*cls.params, *(["seed"] if cls.seeded else []))}

    @classmethod
    def check_value(cls, name: str, value: Any, path: str) -> Any:
        """One sampled value of parameter ``name`` (or the seed) in its range, normalised; else a one-line RecipeError."""
        spec = _SEED_PARAM if name == "seed" and cls.seeded else cls.params[name]
        if not isinstance(value, (bool, int, float, str, np.bool_, np.integer, np.floating)):
            raise RecipeError(f"{path}: expected one sampled value, got {type(value).__name__} {value!r}")
        check_plain_number(value, path)  # an integer too long to name in a message (10**5000) was Python's ValueError
        out = spec.normalize(value, path)
        if isinstance(out, list) or (isinstance(spec, Bool) and not isinstance(out, bool)):  # a probability is a setting
            raise RecipeError(f"{path}: expected one sampled value, got {value!r}")
        return out

    def apply(self, image: np.ndarray, params: dict[str, Any]) -> tuple[np.ndarray, np.ndarray | None]:
        """Return ``(degraded, mask)``; mask is uint8 H×W (255 = damaged) for structured ops, else None.

        ``params`` are checked first (:meth:`check_params`): hand-made ones reached OpenCV as they were."""
        return self.apply_checked(image, self.check_params(params, self.name))

    def apply_checked(self, image: np.ndarray, params: dict[str, Any]) -> tuple[np.ndarray, np.ndarray | None]:
        """:meth:`apply` for params already checked or drawn by :meth:`sample` (recipes, replay)."""
        check_image(image)
        cls = type(self)
        impl = self._apply if self.version == cls.version else getattr(self, cls.earlier[self.version])
        out = apply_on(impl, image, self.colour, params)
        img, mask = out if isinstance(out, tuple) else (out, None)
        if img is image:  # an operator with nothing to do (downscale by 1.0): the caller may write into the result
            img = image.copy()
        return img, mask

    def apply_to(
        self, image: np.ndarray, mask: np.ndarray | None, params: dict[str, Any]
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """Apply inside a chain: merge this op's defects into the running ``mask``.

        Operators that move pixels (geometric imgaug augmenters) override this to move the mask too.
        """
        img, m = self.apply_checked(image, params)
        if m is None:
            return img, mask
        return img, (m if mask is None else np.maximum(mask, m))

    def __call__(self, image: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray | None]:
        return self.apply_checked(image, self.sample(rng))

    def _apply(self, image: np.ndarray, params: dict[str, Any]) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError


OPERATORS: dict[str, type[Operator]] = {}


def functional(fn=None, *, op: str | None = None):
    """Decorate the functional form of operator ``op`` (default: the function's name) with the class form's
    checks: the image (one-line ImageError), each parameter against the operator's range (one-line
    RecipeError, as :meth:`Operator.check_params`) and grayscale input of a colour operator.
    ``fn.__wrapped__`` is the unchecked function, which the class form calls after its own checks."""

    def wrap(f):
        name, signature = op or f.__name__, inspect.signature(f)

        @functools.wraps(f)
        def checked(image, *args, **kwargs):
            check_image(image)
            cls = OPERATORS[name]
            bound = signature.bind(image, *args, **kwargs)
            for k, v in list(bound.arguments.items())[1:]:
                bound.arguments[k] = cls.check_value(k, v, f"{f.__name__}.{k}")
            return apply_on(f, image, cls.colour, *bound.args[1:], **bound.kwargs)

        return checked

    return wrap(fn) if fn is not None else wrap


def register(cls: type[Operator]) -> type[Operator]:
    """Class decorator adding an operator to the registry under ``cls.name``."""
    from . import ops  # noqa: F401  (the built-ins first: a custom op taking one of their names fails here)

    if cls.name in OPERATORS and OPERATORS[cls.name] is not cls:
        raise ValueError(f"operator {cls.name!r} is already registered")
    if cls.kind not in (STRUCTURED, UNSTRUCTURED):
        raise ValueError(f"{cls.name}: kind must be {STRUCTURED!r} or {UNSTRUCTURED!r}")
    for v, method in cls.earlier.items():  # checked now, not when someone replays an old record
        if isinstance(v, bool) or not isinstance(v, int) or not 1 <= v < cls.version:
            raise ValueError(f"{cls.name}: earlier version {v!r} is not earlier than {cls.version}")
        if not isinstance(method, str) or not callable(getattr(cls, method, None)):
            raise ValueError(f"{cls.name}: earlier version {v} names no method {method!r}")
    OPERATORS[cls.name] = cls
    return cls


def get_operator(name: str, path: str = "") -> type[Operator]:
    """Look an operator up by name; unknown names fail with the closest suggestions."""
    from . import ops  # noqa: F401  (populates the registry)

    try:
        return OPERATORS[name]
    except (KeyError, TypeError):
        hint = difflib.get_close_matches(str(name), OPERATORS, n=3)
        more = f" (did you mean {', '.join(hint)}?)" if hint else " (see `daguerre ops ls`)"
        raise RecipeError(f"{path + ': ' if path else ''}unknown operator {name!r}{more}") from None


def list_operators() -> list[type[Operator]]:
    """Every registered operator, sorted by kind then name."""
    from . import ops  # noqa: F401

    return sorted(OPERATORS.values(), key=lambda c: (c.kind != UNSTRUCTURED, c.name))
