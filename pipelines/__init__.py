"""pipelines: dask generation of sharded zarr v3 datasets from recipes, and a fast reader.

Knows nothing of models: ``zoo`` reads datasets only through ``open_dataset``.
"""

from .datasets import build_spec, create_dataset, export_png
from .reader import Dataset, open_dataset

__all__ = ["Dataset", "build_spec", "create_dataset", "export_png", "open_dataset"]
