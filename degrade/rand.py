"""Seeded random generators: the reproducibility contract and fast float32 gaussian noise."""

from __future__ import annotations

from functools import lru_cache
from statistics import NormalDist

import numpy as np


def sample_rng(seed: int, index: int) -> np.random.Generator:
    """The generator of sample ``index`` under ``seed``: independent of worker count and order."""
    return np.random.default_rng(np.random.SeedSequence(int(seed), spawn_key=(int(index),)))


def pixel_rng(seed: int) -> np.random.Generator:
    """The generator an operator's ``apply`` derives from the seed stored in its params."""
    return np.random.default_rng(int(seed))


@lru_cache(maxsize=1)
def _normal_table() -> np.ndarray:
    # Mid-point quantiles of N(0, 1) at 2**16 levels: indexing it with uniform uint16 draws gives
    # gaussian noise 5x faster than Generator.standard_normal, finer than any 8-bit output can show.
    nd = NormalDist()
    n = 1 << 16
    return np.array([nd.inv_cdf((k + 0.5) / n) for k in range(n)], dtype=np.float32)


def normal(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """Standard gaussian noise as float32 (quantised to 65,536 levels, |x| <= 4.4)."""
    idx = rng.integers(0, 1 << 16, size=shape, dtype=np.uint16)
    return np.take(_normal_table(), idx)


def uniform(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """Uniform float32 noise in [0, 1)."""
    return rng.random(shape, dtype=np.float32)
