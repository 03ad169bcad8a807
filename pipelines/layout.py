"""The on-disk layout of a dataset version: one zarr v3 group, its arrays and attributes."""

from __future__ import annotations

import json
import platform
from importlib import metadata
from pathlib import Path
from typing import Any

from degrade.errors import DaguerreError
from degrade.filekind import read_json

SCHEMA = 1
ATTR_KEY = "daguerre"
MAX_SIZE = 4096
"""Largest tile side a dataset is made with, and read with (a crafted store's size is not trusted further)."""


def read_attrs(store) -> dict[str, Any]:
    """A store's daguerre attributes, read from its root ``zarr.json`` ({} when it has none)."""
    from pathlib import Path

    meta = read_json(Path(store) / "zarr.json")
    return (meta.get("attributes") or {}).get(ATTR_KEY) or {}


def write_attrs(store, attrs: dict[str, Any]) -> None:
    """Replace a store's daguerre attributes in its root ``zarr.json`` (atomically)."""
    from pathlib import Path

    from degrade.io import atomic_write_bytes

    meta = read_json(Path(store) / "zarr.json")
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


def read_store(path: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """A complete store's daguerre attributes and each field's array metadata, checked as the reader trusts
    them (a DaguerreError says what is missing or damaged); ``dataset info`` reads no more than this."""
    try:
        root = read_json(path / "zarr.json")
    except FileNotFoundError:
        raise DaguerreError(f"{path} is not a daguerre dataset (no zarr.json)") from None
    except (OSError, ValueError) as e:  # JSON nested thousands deep too
        raise DaguerreError(f"{path}: unreadable metadata ({e})") from None
    attributes = root.get("attributes") if isinstance(root, dict) else None
    attrs = attributes.get(ATTR_KEY) if isinstance(attributes, dict) else None
    if not attrs or not isinstance(attrs, dict):
        raise DaguerreError(f"{path} is not a daguerre dataset (no daguerre attributes in its zarr.json)")
    if not attrs.get("complete"):
        raise DaguerreError(f"{path} is incomplete (interrupted generation?); re-run the create command")
    count, size, fields = attrs.get("count"), attrs.get("size"), attrs.get("fields")
    if not (isinstance(count, int) and count >= 0 and isinstance(size, int) and 0 < size <= MAX_SIZE
            and isinstance(fields, list) and fields and all(isinstance(f, str) for f in fields)):  # fmt: skip
        raise DaguerreError(f"{path}: damaged attributes (count, size or fields missing or invalid)")
    shards = attrs.get("shards", [])
    if not (isinstance(shards, list) and all(
            isinstance(sh, dict) and isinstance(sh.get("sha256"), str) and isinstance(sh.get("fields"), dict)
            and isinstance(sh.get("samples"), list) and len(sh["samples"]) == 2
            and all(isinstance(x, int) and not isinstance(x, bool) for x in sh["samples"]) for sh in shards)):  # fmt: skip
        raise DaguerreError(f"{path}: damaged attributes (the shard checksum records are malformed)")
    problem = attribute_problem(attrs)
    if problem:
        raise DaguerreError(f"{path}: damaged attributes ({problem})")
    metas = {}
    for f in fields:
        try:
            meta = read_json(path / f / "zarr.json")
        except FileNotFoundError:
            raise DaguerreError(f"{path}: its array {f!r} is missing (a damaged store)") from None
        except (OSError, ValueError) as e:
            raise DaguerreError(f"{path}: unreadable metadata of array {f!r} ({e})") from None
        metas[f] = meta
        want = (count, *sample_shape(f, size))
        shape = meta.get("shape", []) if isinstance(meta, dict) else []
        if not isinstance(shape, list) or tuple(shape) != want:  # tuple() of a number or null raised TypeError
            raise DaguerreError(f"{path}: array {f!r} has shape {json.dumps(shape)}, its attributes say {list(want)} (a damaged store)")
        dtype = meta.get("data_type")  # the same bytes read as int8 passed verify, and samples came out negative
        if f not in STRING_FIELDS and dtype != "uint8":
            raise DaguerreError(f"{path}: array {f!r} has data type {json.dumps(dtype)}, not uint8 (a damaged store)")
    return attrs, metas


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
