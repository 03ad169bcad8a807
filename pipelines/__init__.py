"""pipelines: dask generation of sharded zarr v3 datasets from recipes, and a fast reader.

Knows nothing of models: ``zoo`` reads datasets only through ``open_dataset``.
"""

from degrade.lazy import lazy_exports

_EXPORTS = {
    "Dataset": ".reader",
    "build_spec": ".datasets",
    "create_dataset": ".datasets",
    "export_png": ".datasets",
    "open_dataset": ".reader",
}

__all__ = sorted(_EXPORTS)


# Imported on first use (numpy, dask, the operators): `daguerre dataset ls` needs only the catalog.
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
