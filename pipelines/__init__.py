"""pipelines: dask generation of sharded zarr v3 datasets from recipes, and a fast reader.

Knows nothing of models: ``zoo`` reads datasets only through ``open_dataset``.
"""

_EXPORTS = {
    "Dataset": ".reader",
    "build_spec": ".datasets",
    "create_dataset": ".datasets",
    "export_png": ".datasets",
    "open_dataset": ".reader",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    # Imported on first use (numpy, dask, the operators): `daguerre dataset ls` needs only the catalog.
    if name in _EXPORTS:
        import importlib

        value = getattr(importlib.import_module(_EXPORTS[name], __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
