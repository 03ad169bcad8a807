"""zoo: the triplet-domain restoration models, their training from zarr shards, and a model registry.

Reads datasets only through ``pipelines.open_dataset`` (via ``zoo.data``).
"""

from __future__ import annotations

from typing import Any

__all__ = ["create_model", "list_models", "restore"]


def create_model(name: str, config: Any = None, preset: str = "small", *, seed: int | None = 0, **overrides: Any):
    """Build a registered model (``vae``, ``mapping``, ``scratch_unet``, discriminators), its weights
    initialised from ``seed`` by a private generator (``zoo.registry.create_model``)."""
    from .registry import create_model as _create

    return _create(name, config, preset, seed=seed, **overrides)


def list_models():
    from .registry import list_models as _list

    return _list()


def __getattr__(name: str):
    # `zoo.restore(image, model=...)`: the restore module is callable; imported (with torch) on first use.
    if name == "restore":
        import importlib

        return importlib.import_module(".restore", __name__)
    raise AttributeError(f"module 'zoo' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
