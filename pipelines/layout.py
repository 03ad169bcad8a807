"""The on-disk layout of a dataset version: one zarr v3 group, its arrays and attributes."""

from __future__ import annotations

import json
import platform
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any

from degrade.recipe import canonical_sha256

from .shards import DEFAULT_ZSTD_LEVEL, STRING, ArrayLayout
from .sources import CropConfig, Source

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


@dataclass(frozen=True)
class GenerationSpec:
    """Everything that decides a dataset version's content and layout (shipped to every task)."""

    name: str
    source: Source
    recipe: dict[str, Any] | None
    recipe_hash: str | None
    seed: int
    count: int
    size: int
    shard_size: int = 64
    real: bool = False
    crop: CropConfig = field(default_factory=CropConfig)
    zstd_level: int = DEFAULT_ZSTD_LEVEL

    @property
    def fields(self) -> tuple[str, ...]:
        return REAL_FIELDS if self.real else SYNTHETIC_FIELDS

    def layouts(self) -> dict[str, ArrayLayout]:
        return {
            f: ArrayLayout(f, self.count, sample_shape(f, self.size), self.shard_size, STRING if f in STRING_FIELDS else "uint8",
                           self.zstd_level)  # fmt: skip
            for f in self.fields
        }

    @property
    def n_shards(self) -> int:
        return -(-self.count // self.shard_size)

    def lineage(self) -> dict[str, Any]:
        """What identifies the data: recipe, source content, seed, count, size, shard layout, schema."""
        return {
            "schema": SCHEMA,
            "kind": "real" if self.real else "synthetic",
            "recipe_hash": self.recipe_hash,
            "source_fingerprint": self.source.fingerprint,
            "source_skipped": len(self.source.skipped),
            "seed": self.seed,
            "count": self.count,
            "size": self.size,
            "shard_size": self.shard_size,
            "crop": self.crop.to_dict(),
        }

    @property
    def lineage_hash(self) -> str:
        return canonical_sha256(self.lineage())

    def attributes(self) -> dict[str, Any]:
        """The group attributes written when generation starts (``complete`` false until the end)."""
        return {
            "schema": SCHEMA,
            "name": self.name,
            "kind": "real" if self.real else "synthetic",
            "recipe": self.recipe,
            "recipe_hash": self.recipe_hash,
            "source": self.source.lineage(),
            "seed": self.seed,
            "count": self.count,
            "size": self.size,
            "shard_size": self.shard_size,
            "crop": self.crop.to_dict(),
            "zstd_level": self.zstd_level,
            "fields": list(self.fields),
            "lineage": self.lineage(),
            "lineage_hash": self.lineage_hash,
            "code_version": code_version(),
            "versions": library_versions(),
            "complete": False,
        }


def human_bytes(n: int | float | None) -> str:
    """``1234567`` → ``1.2 MB`` (powers of 1000, as disk sizes are sold); None → ``-``."""
    if n is None:
        return "-"
    for unit in ("B", "KB", "MB", "GB", "TB", "PB", "EB"):
        if n < 1000 or unit == "EB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return str(n)
