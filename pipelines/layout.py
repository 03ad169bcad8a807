"""The on-disk layout of a dataset version: one zarr v3 group, its arrays and attributes."""

from __future__ import annotations

import json
import platform
from importlib import metadata
from typing import Any

SCHEMA = 1
ATTR_KEY = "daguerre"
MAX_SIZE = 4096
"""Largest tile side a dataset is made with, and read with (a crafted store's size is not trusted further)."""


def read_attrs(store) -> dict[str, Any]:
    """A store's daguerre attributes, read from its root ``zarr.json`` ({} when it has none)."""
    from pathlib import Path

    meta = json.loads((Path(store) / "zarr.json").read_text())
    return (meta.get("attributes") or {}).get(ATTR_KEY) or {}


def write_attrs(store, attrs: dict[str, Any]) -> None:
    """Replace a store's daguerre attributes in its root ``zarr.json`` (atomically)."""
    from pathlib import Path

    from degrade.io import atomic_write_bytes

    meta = json.loads((Path(store) / "zarr.json").read_text())
    meta.setdefault("attributes", {})[ATTR_KEY] = attrs
    atomic_write_bytes(Path(store) / "zarr.json", json.dumps(meta, indent=2).encode(), durable=True)


ATTRIBUTE_TYPES: dict[str, tuple[type, ...]] = {
    **dict.fromkeys(("name", "kind", "lineage_hash", "code_version", "checksum", "created", "version", "identity"), (str,)),
    **dict.fromkeys(("source", "crop", "lineage", "versions"), (dict,)),
    **dict.fromkeys(("schema", "seed", "shard_size", "zstd_level"), (int,)),
    "recipe": (dict, type(None)), "recipe_hash": (str, type(None)),
}  # fmt: skip
"""The type of each attribute daguerre writes, where one is present (older stores lack some)."""


def attribute_problem(attrs: dict[str, Any]) -> str | None:
    """What is malformed in a store's attributes beyond count, size, fields and shards (a hand-edited
    or crafted ``zarr.json``: ``info``, ``diff``, ``show`` and ``reproduce`` read them), or None."""
    for k, types in ATTRIBUTE_TYPES.items():
        if k in attrs and (not isinstance(attrs[k], types) or isinstance(attrs[k], bool)):
            return f"{k} is {type(attrs[k]).__name__} {json.dumps(attrs[k])[:60]}"
    src = attrs.get("source", {})
    for k in ("skipped", "files"):
        if not (isinstance(src.get(k, []), list) and all(isinstance(x, dict) for x in src.get(k, []))):
            return f"source.{k} is not a list of records"
    if not all(isinstance(sk.get("reason"), str) for sk in src.get("skipped", [])):
        return "source.skipped holds a record without a reason"
    return None


SYNTHETIC_FIELDS = ("clean", "degraded", "mask", "params", "source")
REAL_FIELDS = ("degraded", "source")
STRING_FIELDS = ("params", "source")


def sample_shape(field: str, size: int) -> tuple[int, ...]:
    """One sample's shape in a field of a dataset of ``size`` px tiles (images s×s×3, masks s×s, records ())."""
    return () if field in STRING_FIELDS else (size, size) if field == "mask" else (size, size, 3)


def library_versions() -> dict[str, str]:
    """Versions that decide the bytes of a dataset (recorded with every version)."""
    out = {"python": platform.python_version()}
    for dist in ("daguerre", "numpy", "opencv-python", "imgaug", "scikit-image", "pillow", "zarr", "numcodecs", "dask"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = "absent"
    return out


def code_version() -> str:
    try:
        return metadata.version("daguerre")
    except metadata.PackageNotFoundError:
        return "0+unknown"


def human_bytes(n: int | float | None) -> str:
    """``1234567`` → ``1.2 MB`` (powers of 1000, as disk sizes are sold); None → ``-``."""
    if n is None:
        return "-"
    for unit in ("B", "KB", "MB", "GB", "TB", "PB", "EB"):
        if n < 1000 or unit == "EB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return str(n)


def __getattr__(name: str):
    # GenerationSpec (in .spec) needs numpy, OpenCV and the recipes; `daguerre dataset ls` reads attributes only.
    if name == "GenerationSpec":
        from .spec import GenerationSpec

        return GenerationSpec
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
