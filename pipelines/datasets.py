"""The dataset API the CLI calls: create a version, export it as PNG files."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

from degrade.errors import DaguerreError
from degrade.io import atomic_write_bytes, encode_png

from .generate import GenerationResult, SCHEDULERS, generate, publish_to
from .layout import GenerationSpec
from .reader import Dataset, open_dataset
from .refs import check_name, dataset_dir, version_number
from .shards import DEFAULT_ZSTD_LEVEL
from .sources import CropConfig, scan_source

MAX_SIZE = 4096


def _check_args(count: int, size: int, shard_size: int, workers: int, scheduler: str, zstd_level: int = -1) -> None:
    if count < 1:
        raise DaguerreError(f"--count must be at least 1, got {count}")
    if not 8 <= size <= MAX_SIZE:
        raise DaguerreError(f"--size must be between 8 and {MAX_SIZE} pixels, got {size}")
    if shard_size < 1:
        raise DaguerreError(f"--shard-size must be at least 1, got {shard_size}")
    if not -7 <= zstd_level <= 22:
        raise DaguerreError(f"--zstd-level must be between -7 and 22, got {zstd_level}")
    if workers < 1:
        raise DaguerreError(f"--workers must be at least 1, got {workers}")
    if scheduler not in SCHEDULERS:
        raise DaguerreError(f"--scheduler must be one of {', '.join(SCHEDULERS)}, got {scheduler!r}")


def build_spec(
    name: str,
    source: str,
    count: int,
    size: int,
    seed: int,
    recipe: str | None = "old-photo",
    shard_size: int = 64,
    real: bool = False,
    strict: bool = False,
    zstd_level: int = DEFAULT_ZSTD_LEVEL,
    crop: CropConfig | None = None,
    scan_workers: int = 2,
) -> GenerationSpec:
    """Validate the arguments, scan the source and load the recipe into a GenerationSpec."""
    check_name(name)
    _check_args(count, size, shard_size, 1, SCHEDULERS[0], zstd_level)
    src = scan_source(source, workers=scan_workers, strict=strict)
    if real:
        rec, rhash = None, None
    else:
        from degrade import load_recipe

        r = load_recipe(recipe or "old-photo")
        rec, rhash = r.canonical(), r.hash
    return GenerationSpec(name, src, rec, rhash, int(seed), int(count), int(size), int(shard_size), bool(real), crop or CropConfig(), zstd_level)


def _publish_next_version(name: str) -> Callable[[Path], Path]:
    """Publish as the next ``vN`` of ``name`` (rename onto a fresh name is the atomic claim)."""

    def publish(partial: Path) -> Path:
        d = dataset_dir(name)
        while True:
            taken = [n for p in d.glob("v*.zarr") if (n := version_number(p.name[:-5])) is not None]
            final = d / f"v{max(taken, default=0) + 1}.zarr"
            try:
                os.rename(partial, final)
                return final
            except OSError:
                if not final.exists():
                    raise
                # someone published that number meanwhile: take the next one

    return publish


def create_dataset(
    spec: GenerationSpec,
    store: str | None = None,
    workers: int = 2,
    scheduler: str = "processes",
    address: str | None = None,
    on_start: Callable[[int, int], None] | None = None,
    on_shard: Callable[[int], None] | None = None,
) -> GenerationResult:
    """Generate ``spec`` as the next version of its name (or at ``store``); resumes an interrupted run."""
    _check_args(spec.count, spec.size, spec.shard_size, workers, scheduler)
    if store is not None:
        final = Path(store).expanduser().absolute()
        if final.exists():
            raise DaguerreError(f"{final} already exists; choose another --store or remove it")
        partial = final.parent / f".{final.name}.partial"
        publish = publish_to(final)
    else:
        partial = dataset_dir(spec.name) / f".partial-{spec.lineage_hash[:16]}.zarr"
        publish = _publish_next_version(spec.name)
    return generate(spec, partial, publish, workers, scheduler, address, on_start, on_shard)


def export_png(ds: Dataset, out: Path, on_sample: Callable[[], None] | None = None) -> int:
    """Write ``NNNNNN.degraded.png`` (+ ``.clean.png``, ``.mask.png``) and ``NNNNNN.json`` per sample."""
    out.mkdir(parents=True, exist_ok=True)
    width = max(6, len(str(len(ds) - 1)))
    for i in range(len(ds)):
        s = ds[i]
        stem = out / f"{i:0{width}d}"
        for f in ("degraded", "clean", "mask"):
            if f in s:
                atomic_write_bytes(stem.with_suffix(f".{f}.png"), encode_png(s[f]))
        meta = {"index": i, "source": s.get("source"), "params": s.get("params"), "dataset": str(ds.path)}
        atomic_write_bytes(stem.with_suffix(".json"), (json.dumps(meta, indent=1) + "\n").encode())
        if on_sample:
            on_sample()
    return len(ds)


__all__ = ["build_spec", "create_dataset", "export_png", "open_dataset"]
