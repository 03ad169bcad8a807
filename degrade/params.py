"""Typed parameter ranges: what an operator accepts, how a recipe configures it, how it is sampled.

A recipe configures each parameter with a fixed value or a range/choice inside the bounds the
operator declares; ``sample`` draws one plain JSON value from the configured setting.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from .errors import RecipeError


MAX_INT_BITS = 14_000
"""Integers longer than this (about 4,200 digits) are refused: str() fails beyond 4,300 digits."""


def check_plain_number(v: Any, path: str) -> None:
    """Refuse a number a recipe or record cannot hold: not finite, or an integer too long to name in a message."""
    if isinstance(v, float) and not math.isfinite(v):
        raise RecipeError(f"{path}: {v} is not a finite number")
    if isinstance(v, int) and v.bit_length() > MAX_INT_BITS:  # Python cannot even print it (in a message)
        raise RecipeError(f"{path}: an integer of {v.bit_length():,} bits is too large for a number of any kind")


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, (bool, np.bool_))


def _float(v: Any, path: str) -> float:
    try:
        return float(v) + 0.0  # -0.0 is 0.0: it samples the same, so it must hash the same
    except OverflowError:  # an integer literal beyond a double's range (10**400)
        raise RecipeError(f"{path}: {str(v)[:12]}… is too large for a number of this kind") from None


def _fmt(v: float) -> str:
    return repr(float(v)) if isinstance(v, float) else str(v)


@dataclass(frozen=True)
class Float:
    """A real parameter in [lo, hi]; configured as a number or a [a, b] uniform (log-uniform if log) range."""

    lo: float
    hi: float
    default: float | tuple[float, float]
    log: bool = False
    doc: str = ""

    def normalize(self, value: Any, path: str) -> float | list[float]:
        if _is_number(value):
            v = _float(value, path)
            self._check(v, path)
            return v
        if isinstance(value, (list, tuple)) and len(value) == 2 and all(_is_number(x) for x in value):
            a, b = _float(value[0], path), _float(value[1], path)
            self._check(a, path)
            self._check(b, path)
            if a > b:
                raise RecipeError(f"{path}: range [{_fmt(a)}, {_fmt(b)}] is reversed")
            return a if a == b else [a, b]
        raise RecipeError(f"{path}: expected a number or a [low, high] pair, got {value!r}")

    def _check(self, v: float, path: str) -> None:
        if not math.isfinite(v) or v < self.lo or v > self.hi:
            raise RecipeError(f"{path}: {_fmt(v)} is outside [{_fmt(float(self.lo))}, {_fmt(float(self.hi))}]")
        if self.log and v <= 0:
            raise RecipeError(f"{path}: {_fmt(v)} must be > 0 (log-uniform parameter)")

    def sample(self, setting: float | list[float], rng: np.random.Generator) -> float:
        if not isinstance(setting, list):
            return setting
        a, b = setting
        if self.log:  # exp(log(a)) is not always a: kept inside the range it was drawn from
            return min(max(float(math.exp(rng.uniform(math.log(a), math.log(b)))), a), b)
        return float(rng.uniform(a, b))

    def describe(self) -> str:
        scale = ", log-uniform" if self.log else ""
        return f"float in [{_fmt(float(self.lo))}, {_fmt(float(self.hi))}]{scale}"


@dataclass(frozen=True)
class Int:
    """An integer parameter in [lo, hi]; configured as an integer or an inclusive [a, b] range."""

    lo: int
    hi: int
    default: int | tuple[int, int]
    doc: str = ""

    def normalize(self, value: Any, path: str) -> int | list[int]:
        if self._is_int(value):
            v = int(value)
            self._check(v, path)
            return v
        if isinstance(value, (list, tuple)) and len(value) == 2 and all(self._is_int(x) for x in value):
            a, b = int(value[0]), int(value[1])
            self._check(a, path)
            self._check(b, path)
            if a > b:
                raise RecipeError(f"{path}: range [{a}, {b}] is reversed")
            return a if a == b else [a, b]
        raise RecipeError(f"{path}: expected an integer or a [low, high] pair of integers, got {value!r}")

    @staticmethod
    def _is_int(v: Any) -> bool:
        if isinstance(v, (bool, np.bool_)):
            return False
        if isinstance(v, (int, np.integer)):
            return True
        return isinstance(v, float) and v.is_integer()

    def _check(self, v: int, path: str) -> None:
        if v < self.lo or v > self.hi:
            raise RecipeError(f"{path}: {v} is outside [{self.lo}, {self.hi}]")

    def sample(self, setting: int | list[int], rng: np.random.Generator) -> int:
        if not isinstance(setting, list):
            return setting
        return int(rng.integers(setting[0], setting[1], endpoint=True))

    def describe(self) -> str:
        return f"int in [{self.lo}, {self.hi}]"


@dataclass(frozen=True)
class Choice:
    """One of a fixed set of options; configured as one option or a list of options drawn uniformly."""

    options: tuple
    default: Any
    doc: str = ""

    def normalize(self, value: Any, path: str) -> Any:
        values = list(value) if isinstance(value, (list, tuple)) else [value]
        if not values:
            raise RecipeError(f"{path}: empty choice list")
        picked = []
        for v in values:
            o = self._match(v)
            if o is None:
                raise RecipeError(f"{path}: {v!r} is not one of {list(self.options)}")
            if o not in picked:
                picked.append(o)
        picked.sort(key=self.options.index)
        return picked[0] if len(picked) == 1 else picked

    def _match(self, v: Any) -> Any:
        if not isinstance(v, (str, int, float, np.generic)):  # an array compares element-wise: numpy's ValueError
            return None
        for o in self.options:
            if o == v and isinstance(o, bool) == isinstance(v, (bool, np.bool_)):
                return o
        return None

    def sample(self, setting: Any, rng: np.random.Generator) -> Any:
        if not isinstance(setting, list):
            return setting
        return setting[int(rng.integers(len(setting)))]

    def describe(self) -> str:
        return "one of " + ", ".join(map(str, self.options))


@dataclass(frozen=True)
class Bool:
    """A flag; configured as true/false or as the probability in [0, 1] that it is true."""

    default: bool | float
    doc: str = ""

    def normalize(self, value: Any, path: str) -> bool | float:
        if isinstance(value, (bool, np.bool_)):
            return bool(value)
        if _is_number(value) and 0.0 <= _float(value, path) <= 1.0:
            p = float(value)
            return bool(p) if p in (0.0, 1.0) else p
        raise RecipeError(f"{path}: expected true, false or a probability in [0, 1], got {value!r}")

    def sample(self, setting: bool | float, rng: np.random.Generator) -> bool:
        if isinstance(setting, bool):
            return setting
        return bool(rng.random() < setting)

    def describe(self) -> str:
        return "bool (or probability of true)"


Param = Float | Int | Choice | Bool

SEED_BOUND = 2**32
"""Seeds stored in params are in [0, 2**32): exact in JSON for every consumer, JavaScript included."""


def draw_seed(rng: np.random.Generator) -> int:
    """A per-sample seed for an operator's pixel-level randomness."""
    return int(rng.integers(SEED_BOUND, dtype=np.uint64))


def default_setting(param: Param, path: str) -> Any:
    return param.normalize(param.default, path)
