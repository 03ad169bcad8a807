"""What decides a dataset version's content and layout: the spec shipped to every generation task."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from degrade.recipe import canonical_sha256

from .layout import REAL_FIELDS, SCHEMA, STRING_FIELDS, SYNTHETIC_FIELDS, code_version, library_versions, sample_shape
from .shards import DEFAULT_ZSTD_LEVEL, STRING, ArrayLayout
from .sources import CropConfig, Source


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
