"""One registry of models: name → builder, default config dataclass, example input (timm-style)."""

from __future__ import annotations

import dataclasses
import math
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch

from degrade.errors import DaguerreError, first_line


@dataclass(frozen=True)
class ModelSpec:
    name: str
    builder: Callable[[Any], torch.nn.Module]
    config: type
    summary: str
    example: Callable[[Any], tuple]
    """Inputs a forward pass takes for a given config (tests, docs, benchmarks)."""


MODELS: dict[str, ModelSpec] = {}
_GLOBAL_RNG = threading.RLock()
"""Held around ``fork_rng``: two threads forking at once (``serve`` loads bundles on worker threads) each
restore the state they saved, and the later restore leaves torch's generator where the other had moved it.
Re-entrant: a builder may itself call :func:`create_model` (a model made of registered parts)."""


def register_model(name: str, config: type, example: Callable[[Any], tuple]):
    """Decorator: register ``builder(config) -> nn.Module`` under ``name``; a name taken by another
    builder (a built-in included) is refused, as ``degrade.register`` refuses operators."""

    def wrap(builder):
        _ensure_loaded()  # the built-ins first: else one would replace a user's model of its name later
        if name in MODELS and MODELS[name].builder is not builder:
            raise ValueError(f"model {name!r} is already registered")
        summary = first_line(builder.__doc__)
        MODELS[name] = ModelSpec(name, builder, config, summary, example)
        return builder

    return wrap


def _ensure_loaded() -> None:
    from . import models  # noqa: F401  (registers)


def get_spec(name: str) -> ModelSpec:
    _ensure_loaded()
    if name not in MODELS:
        raise DaguerreError(f"unknown model {name!r} (have {', '.join(sorted(MODELS))})")
    return MODELS[name]


def make_config(name: str, preset: str = "small", **overrides: Any):
    """The config dataclass of ``name`` from a preset (``small``, ``default``, ``official``: the config's
    ``PRESETS``) plus overrides."""
    spec = get_spec(name)
    presets = getattr(spec.config, "PRESETS", {"small": {}})
    if preset not in presets:
        raise DaguerreError(f"model {name!r} has no preset {preset!r} (have {', '.join(presets)})")
    return _config(name, spec, {**presets[preset], **overrides})


STRIDES = ("n_down", "depth", "layers")
"""Settings that halve the resolution once each: beyond 8 no tile survives them."""
COUNTS = ("n_res", "global_res", *STRIDES)
"""Settings that may be 0 (no blocks, no downsampling); every other whole-number setting is a size of at least 1."""
MAX_INT_SETTING = 4096
PROBABILITIES = ("threshold", "seed_threshold")  # compared with a sigmoid: 5 accepted made a detector that finds nothing


def _config(name: str, spec: ModelSpec, values: dict[str, Any]):
    fields = {f.name: f for f in dataclasses.fields(spec.config)}
    bad = sorted(set(values) - set(fields))
    if bad:
        raise DaguerreError(f"model {name!r} has no setting {bad[0]!r} (settings: {', '.join(sorted(fields))})")
    cfg = spec.config(**values)
    for f in fields.values():  # typed like their defaults, and sized so that a typo cannot allocate gigabytes
        v, default = getattr(cfg, f.name), f.default
        where = f"model {name!r} setting {f.name}"
        want = f"a {type(default).__name__} like {default!r}"
        if isinstance(default, bool):
            ok = isinstance(v, bool)
        elif isinstance(default, int):
            low, top = (0 if f.name in COUNTS else 1), (8 if f.name in STRIDES else MAX_INT_SETTING)
            ok, want = isinstance(v, int) and not isinstance(v, bool) and low <= v <= top, f"a whole number in [{low}, {top}]"
        elif isinstance(default, float):
            ok = isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
            if f.name in PROBABILITIES:
                ok, want = ok and 0 <= v <= 1, "a probability in [0, 1]"
        else:
            ok = not isinstance(default, str) or isinstance(v, str)
        if not ok:
            raise DaguerreError(f"{where}: expected {want}, got {v!r}")
    return cfg


def create_model(name: str, config: Any = None, preset: str = "small", *, seed: int | None = 0, **overrides: Any) -> torch.nn.Module:
    """Build a registered model from a config (dataclass or dict) or a preset, plus overrides.

    Its weights are :func:`init_weights` of ``seed``: the same for the same seed, and torch's global
    generator is neither read nor advanced. ``seed=None`` skips that for weights about to be loaded."""
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int) or seed < 0):
        raise DaguerreError(f"model {name!r}: seed must be a whole number of at least 0 (or None), got {seed!r}")
    spec = get_spec(name)
    if config is None:
        cfg = make_config(name, preset, **overrides)
    else:
        if not isinstance(config, (spec.config, Mapping)):
            raise DaguerreError(f"model {name!r}: config must be a {spec.config.__name__} or a mapping of settings, got {config!r}"[:300])
        values = dataclasses.asdict(config) if isinstance(config, spec.config) else dict(config)
        cfg = _config(name, spec, {**values, **overrides})
    try:
        with _GLOBAL_RNG, torch.random.fork_rng(devices=[]):  # layers draw their default weights from torch's global generator
            model = spec.builder(cfg)
    except (ValueError, TypeError, RuntimeError) as e:  # settings each valid alone but not together (0 channels, …)
        raise DaguerreError(f"model {name!r}: these settings do not make a network ({str(e).splitlines()[0][:200]})") from None
    model.config = cfg
    model.model_name = name
    return model if seed is None else init_weights(model, seed)


def list_models() -> list[ModelSpec]:
    _ensure_loaded()
    return [MODELS[k] for k in sorted(MODELS)]


def init_weights(model: torch.nn.Module, seed: int) -> torch.nn.Module:
    """Deterministic initialisation from a private generator (never the global torch seed).

    He (Kaiming) normal for LeakyReLU(0.2) networks, since daguerre's generators run without
    normalisation layers (pix2pixHD's N(0, 0.02) relies on them and makes an unnormalised
    20-layer network start with vanishing signals); the last convolution of each residual
    branch is scaled by 0.1 so that blocks start close to identity; biases zero; layers marked
    ``_zero_init`` stay zero.
    """
    from .nn import ResBlock

    g = torch.Generator().manual_seed(int(seed))
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (torch.nn.Conv2d, torch.nn.ConvTranspose2d, torch.nn.Linear)):
                w = getattr(m, "weight_orig", m.weight)  # spectral norm keeps the raw weight here
                if getattr(m, "_zero_init", False):
                    w.zero_()
                else:
                    torch.nn.init.kaiming_normal_(w, a=0.2, nonlinearity="leaky_relu", generator=g)
                if m.bias is not None:
                    m.bias.zero_()
            for vec in ("weight_u", "weight_v"):  # spectral norm's power-iteration vectors: drawn from torch's global generator otherwise
                buf = getattr(m, vec, None)
                if isinstance(buf, torch.Tensor):
                    buf.copy_(torch.nn.functional.normalize(torch.randn(buf.shape, generator=g), dim=0))
            if isinstance(m, (torch.nn.BatchNorm2d, torch.nn.GroupNorm)) and m.weight is not None:
                m.weight.fill_(1.0)
                m.bias.zero_()
        for m in model.modules():
            if isinstance(m, ResBlock):
                convs = [c for c in m.body if isinstance(c, torch.nn.Conv2d)]
                convs[-1].weight.mul_(0.1)
            if hasattr(m, "after_init"):
                m.after_init()
    return model
