"""The dataset API the CLI calls: create a version, export it as PNG files."""

from __future__ import annotations

import fcntl
import json
import os
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from degrade.errors import DaguerreError
from degrade.io import SyncedBatch, atomic_write_bytes, encode_png, make_folders, nearest_existing

from .generate import SCHEDULERS, GenerationResult, _stored_zstd_level, generate
from .layout import MAX_SIZE, human_bytes, read_json, read_store
from .reader import Dataset, open_dataset
from .refs import check_name, dataset_dir
from .shards import DEFAULT_ZSTD_LEVEL, ZSTD_LEVELS
from .sources import CropConfig, scan_source
from .spec import GenerationSpec


def _whole(option: str, value) -> None:
    """Counts, sizes and seeds are whole numbers: ``int()`` would make seed 1.7 the dataset of seed 1."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise DaguerreError(f"{option} must be a whole number, got {value!r}"[:200])


def _check_args(count: int, size: int, shard_size: int, workers: int, scheduler: str, zstd_level: int = DEFAULT_ZSTD_LEVEL) -> None:
    for option, value in (("--count", count), ("--size", size), ("--shard-size", shard_size), ("--workers", workers),
                          ("--zstd-level", zstd_level)):  # fmt: skip
        _whole(option, value)
    if count < 1:
        raise DaguerreError(f"--count must be at least 1, got {count}")
    if not 8 <= size <= MAX_SIZE:
        raise DaguerreError(f"--size must be between 8 and {MAX_SIZE} pixels, got {size}")
    if shard_size < 1:
        raise DaguerreError(f"--shard-size must be at least 1, got {shard_size}")
    if shard_size > max(count, 64):  # every shard file indexes shard_size chunks, whether or not they exist
        raise DaguerreError(f"--shard-size must not exceed the larger of --count ({count}) and 64, got {shard_size}")
    if not ZSTD_LEVELS[0] <= zstd_level <= ZSTD_LEVELS[1]:
        raise DaguerreError(f"--zstd-level must be between {ZSTD_LEVELS[0]} and {ZSTD_LEVELS[1]}, got {zstd_level}")
    if workers < 1:
        raise DaguerreError(f"--workers must be at least 1, got {workers}")
    if scheduler not in SCHEDULERS:
        raise DaguerreError(f"--scheduler must be one of {', '.join(SCHEDULERS)}, got {scheduler!r}")


def build_spec(
    name: str,
    source: str | os.PathLike,
    count: int,
    size: int,
    seed: int,
    recipe: str | None = None,
    shard_size: int = 64,
    real: bool = False,
    strict: bool = False,
    zstd_level: int = DEFAULT_ZSTD_LEVEL,
    crop: CropConfig | None = None,
    scan_workers: int = 2,
) -> GenerationSpec:
    """Validate the arguments, scan the source and load the recipe (default ``old-photo``; none
    for ``real``) into a GenerationSpec."""
    check_name(name)
    if name.endswith(".zarr"):
        raise DaguerreError(f"invalid dataset name {name!r}: a name ending in .zarr would read as a store path")
    _check_args(count, size, shard_size, 1, SCHEDULERS[0], zstd_level)
    _whole("--seed", seed)
    if int(seed) < 0:
        raise DaguerreError(f"--seed must be at least 0, got {seed}")
    if real and recipe is not None:
        raise DaguerreError("--recipe does not apply to --real datasets (real photos are cropped, not degraded)")
    src = scan_source(source, workers=scan_workers, strict=strict)
    if real:
        rec, rhash = None, None
    else:
        from degrade import load_recipe

        r = load_recipe(recipe or "old-photo")
        rec, rhash = r.canonical(), r.hash
    return GenerationSpec(name, src, rec, rhash, int(seed), int(count), int(size), int(shard_size), bool(real), crop or CropConfig(), zstd_level)


def _adoptable(spec: GenerationSpec, catalog, final: Path | None = None) -> Path | None:
    """A complete but unregistered store of this exact lineage (a crash before registration), in
    the dataset's folder or at the ``--store`` path ``final``."""
    refs = catalog.referenced_paths()
    if final is not None:
        candidates = [final]
    else:
        d = dataset_dir(spec.name)
        candidates = sorted(d.glob("v*.zarr")) + sorted(d.glob(".trash-v*.zarr-*"))
    for p in candidates:
        if os.path.realpath(p) in refs:
            continue
        try:
            attrs, _ = read_store(p)  # complete and sound as the reader checks it, or a DaguerreError
        except DaguerreError:
            continue
        if attrs.get("lineage_hash") == spec.lineage_hash:
            return p
    return None


def _not_applied(spec: GenerationSpec, final: Path | None, reused: Path) -> dict[str, Any]:
    """The requested ``--store`` and ``--zstd-level`` that the version reused at ``reused`` does not have: neither is
    part of the lineage, which decides reuse."""
    out: dict[str, Any] = {}
    if final is not None and os.path.realpath(final) != os.path.realpath(reused):
        out["store"] = {"requested": str(final), "reused": str(reused)}
    level = _stored_zstd_level(reused, spec)
    if level is not None and level != spec.zstd_level:
        out["zstd_level"] = {"requested": spec.zstd_level, "reused": level}
    return out


def _check_store_place(final: Path, catalog) -> None:
    """A ``--store`` outside the catalog's own folder and neither inside nor around a registered store:
    ``gc``, ``rm`` and the next version of a name manage those paths and would delete or collide with it."""
    from .refs import managed_root_around

    try:
        str(final).encode()
    except UnicodeEncodeError:  # the catalog records the path as SQLite text, which must be UTF-8
        shown = os.fsencode(final).decode("utf-8", "backslashreplace")
        raise DaguerreError(f"--store {shown}: the path is not UTF-8 and the catalog records it as text; choose another name") from None
    here = os.path.realpath(final)
    if managed := managed_root_around(final, catalog.home):
        raise DaguerreError(f"--store {final} is inside {managed}, which the catalog manages; create without --store or store elsewhere")
    for r in catalog.referenced_paths():
        if here.startswith(r + os.sep) or r.startswith(here + os.sep):  # the same path: reused or refused below
            raise DaguerreError(f"--store {final} {'is inside' if len(here) > len(r) else 'would hold'} the registered dataset store {r}")
    for v in catalog.versions():  # its folder deleted by hand: a second entry at the path, and `rm` of one deleted the other
        if os.path.realpath(v.path) == here and not os.path.lexists(final):
            raise DaguerreError(f"--store {final} is where {v.ref} is registered (its data is gone); `daguerre dataset rm {v.ref}` first, or store elsewhere")


def _check_disk(spec: GenerationSpec, target: Path) -> None:
    """Refuse at once a dataset that could not fit on the disk even at 4:1 compression (photographs get ~1.4:1)."""
    import shutil

    per_sample = spec.size * spec.size * (3 if spec.real else 7)  # degraded (+ clean and mask)
    need = spec.count * per_sample // 4
    where = nearest_existing(target)
    free = shutil.disk_usage(where).free
    if need > free:
        raise DaguerreError(f"{spec.count:,} samples of {spec.size} px need at least {human_bytes(need)} and {where} has {human_bytes(free)} free")


def create_dataset(
    spec: GenerationSpec,
    store: str | None = None,
    workers: int = 2,
    scheduler: str = "processes",
    address: str | None = None,
    on_start: Callable[[int, int], None] | None = None,
    on_shard: Callable[[int], None] | None = None,
) -> GenerationResult:
    """Generate ``spec`` as the next version of its name (or at ``store``) and register it.

    A version with the same lineage is reused instead of regenerated; an interrupted run of the
    same command resumes; a second concurrent creator of the same name fails at once.
    """
    from contextlib import nullcontext

    from .catalog import Catalog, creation_lock, store_lock

    _check_args(spec.count, spec.size, spec.shard_size, workers, scheduler, spec.zstd_level)
    if address is not None and not re.fullmatch(r"(tcp|tls|inproc|ucx|ws|wss)://\S+:\d+|inproc://\S+", address):
        raise DaguerreError(f"--address {address!r}: expected tcp://HOST:PORT of a dask scheduler")
    final = None if store is None else os.path.expanduser(os.fspath(store))  # text, not refs.user_path: Path drops the
    if final is not None and final.startswith("~"):  # "./" of "./~x.zarr"; an unknown user is left as written
        raise DaguerreError(f"--store {store}: cannot expand '~' (no such user or home folder)")
    final = Path(final).absolute() if final is not None else None
    catalog = Catalog()
    try:
        catalog.check_writable()
        if final is not None:
            _check_store_place(final, catalog)
        _check_disk(spec, final or dataset_dir(spec.name))
        with creation_lock(spec.name), (store_lock(final) if final is not None else nullcontext()):
            existing = catalog.find_lineage(spec.name, spec.lineage_hash)
            if existing is not None:
                if not (Path(existing.path) / "zarr.json").is_file():  # reusing it would report success and hand over nothing
                    raise DaguerreError(
                        f"{existing.ref} has this lineage but its data is gone ({existing.path}); "
                        f"`daguerre dataset rm {existing.ref}` (or restore the folder), then re-run"
                    )
                return GenerationResult(Path(existing.path), spec, 0, 0, 0.0, spec.source.skipped, existing, reused=True,  # nothing resumed
                                        not_applied=_not_applied(spec, final, Path(existing.path)))  # fmt: skip
            orphan = _adoptable(spec, catalog, final)
            if orphan is None and final is not None and final.exists():
                raise DaguerreError(f"{final} already exists; choose another --store or remove it")
            if orphan is not None:
                v = catalog.register(spec.name, orphan, final)
                return GenerationResult(Path(v.path), spec, 0, spec.n_shards, 0.0, spec.source.skipped, v, reused=True,
                                        not_applied=_not_applied(spec, final, Path(v.path)))  # fmt: skip
            if final is not None:
                partial = final.parent / f".{final.name}.partial"
            else:
                partial = dataset_dir(spec.name) / f".partial-{spec.lineage_hash[:16]}.zarr"
            registered: list = []

            def publish(done: Path) -> Path:
                registered.append(catalog.register(spec.name, done, final))
                return Path(registered[0].path)

            result = generate(spec, partial, publish, workers, scheduler, address, on_start, on_shard)
            result.version = registered[0]
            return result
    finally:
        catalog.close()


EXPORT_MARK = ".daguerre-export.json"
"""Written first into an export folder: which dataset it holds, so an interrupted export can resume."""

EXPORT_BATCH = 16
"""Samples an export goes through before it syncs their files together (one fsync each, overlapped) and names them."""


def _check_export_place(ds: Dataset, out: Path) -> None:
    """Not under ``datasets/`` (``gc`` deletes what no catalog entry references there) nor inside a store
    (registered ones are immutable; ``rm`` would delete the export with it)."""
    from .refs import daguerre_home, managed_root_around

    here = os.path.realpath(out)
    home = daguerre_home()
    if managed := managed_root_around(out, home):
        raise DaguerreError(f"{out} is inside {managed}, which the catalog manages (`gc` would delete the export); export elsewhere")
    stores = {os.path.realpath(ds.path)}
    if (home / "catalog.sqlite").exists():
        from .catalog import Catalog

        cat = Catalog()
        try:
            stores |= cat.referenced_paths()
        finally:
            cat.close()
    for r in stores:
        if here == r or here.startswith(r + os.sep):
            raise DaguerreError(f"{out} is inside the dataset store {r}; export elsewhere")


def export_png(ds: Dataset, out: str | os.PathLike, on_sample: Callable[[], None] | None = None) -> tuple[int, int]:
    """Write ``NNNNNN.degraded.png`` (+ ``.clean.png``, ``.mask.png``) and ``NNNNNN.json`` per sample;
    returns (written, already there).

    Into a new or empty folder, never over other files; each shard's data is checked against its
    recorded checksums before it is written. Re-run into the folder of an interrupted
    export of the same dataset, it writes only the samples that are missing (each sample's JSON is
    written last, atomically, so a sample whose JSON exists is complete).
    """
    out = Path(out)
    _check_export_place(ds, out)
    if out.exists() and not out.is_dir():
        raise DaguerreError(f"{out} is not a folder; export into a new one")
    make_folders(out, durable=True)  # the folder's own entry too: its samples are synced into it
    with _folder_lock(out):
        return _export_png(ds, out, on_sample)


def _exported_whole(stem: Path, fields: tuple[str, ...] | list[str]) -> bool:
    """A sample whose JSON (written last) exists counts as exported if its PNGs are there and not empty:
    after a power cut the JSON's name can reach the disk before the images' bytes do."""
    try:
        return all(stem.with_suffix(f".{f}.png").stat().st_size > 0 for f in ("degraded", "clean", "mask") if f in fields)
    except OSError:
        return False


@contextmanager
def _folder_lock(out: Path) -> Iterator[None]:
    """An flock on the export folder itself (nothing written, no write access to ``$DAGUERRE_HOME`` needed):
    two exports into one new folder both found it empty and mixed their samples under one of their marks."""
    fd = os.open(out, os.O_RDONLY | os.O_DIRECTORY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise DaguerreError(f"{out} is being exported to by another process; wait for it to finish") from None
        yield
    finally:
        os.close(fd)  # closing releases the flock


def _export_png(ds: Dataset, out: Path, on_sample: Callable[[], None] | None) -> tuple[int, int]:
    mark = {"identity": ds.attrs.get("identity") or str(ds.path), "dataset": str(ds.path)}  # identity covers the count
    if any(out.iterdir()):
        try:
            held = read_json(out / EXPORT_MARK)  # not a regular file (a FIFO waited for ever): unopened
        except (OSError, ValueError):  # nested thousands deep too (an internal RecursionError)
            raise DaguerreError(f"{out} is not an empty folder; export into a new one") from None
        if not isinstance(held, dict) or held.get("identity") != mark["identity"]:
            what = held.get("dataset") if isinstance(held, dict) else "?"
            raise DaguerreError(f"{out} holds an export of another dataset ({what}); export into a new one")
        for tmp in out.glob(".*.tmp"):  # left by a killed export's atomic writes
            tmp.unlink(missing_ok=True)
    else:
        atomic_write_bytes(out / EXPORT_MARK, (json.dumps(mark, indent=1) + "\n").encode(), durable=True)
    from .versioning import shard_problem

    width = max(6, len(str(len(ds) - 1)))
    shards = {sh["samples"][0]: (k, sh) for k, sh in enumerate(ds.attrs.get("shards", []))}
    written = there = unreported = 0
    batch = SyncedBatch()  # the bytes synced, then the names, EXPORT_BATCH samples at a time
    try:
        for i in range(len(ds)):
            stem = out / f"{i:0{width}d}"
            if i in shards:  # each shard is checked against its recorded checksums before any of it is written
                k, sh = shards[i]
                pending = not all((out / f"{j:0{width}d}.json").exists() for j in range(*sh["samples"]))
                problem = shard_problem(ds, ds.fields, sh) if pending else None
                if problem:
                    batch.commit()  # the samples before it stay exported, as the next run would find them
                    raise DaguerreError(f"{ds.path}: shard {k} is damaged ({problem}); its samples were not exported (see `daguerre dataset verify`)")
            if stem.with_suffix(".json").exists() and _exported_whole(stem, ds.fields):
                there += 1
            else:
                s = ds[i]
                for f in ("degraded", "clean", "mask"):
                    if f in s:
                        batch.write(stem.with_suffix(f".{f}.png"), encode_png(s[f]))
                meta = {"index": i, "source": s.get("source"), "params": s.get("params"), "dataset": str(ds.path)}
                batch.write(stem.with_suffix(".json"), (json.dumps(meta, indent=1) + "\n").encode())  # last: it marks the sample whole
                written += 1
            unreported += 1
            if unreported == EXPORT_BATCH or i == len(ds) - 1:
                batch.commit()  # on disk before the progress counts them
                if on_sample:
                    for _ in range(unreported):
                        on_sample()
                unreported = 0
    finally:
        batch.discard()  # an error or Ctrl-C: no temporaries left behind (a kill's are removed on resume)
    return written, there


__all__ = ["build_spec", "create_dataset", "export_png", "open_dataset"]
