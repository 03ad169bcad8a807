"""Generate a dataset version: one dask task per zarr shard, resumable, published when complete.

Each task makes the samples of one shard (pick and crop a clean tile, degrade it with the
recipe; when a core is free, a second thread encodes them meanwhile), writes each array's shard
whole through a temporary file and a rename, then records a progress marker with the shard's
SHA-256 checksums. No two tasks touch the same file, so a crashed or retried task is harmless;
a re-run skips shards that have a marker and gives the same bytes. The store lives under a
hidden ``.partial`` name until every shard is in, then the attributes are completed and the
directory renamed into place in one step. Metadata is written directly (no zarr-python import).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from degrade.errors import DaguerreError
from degrade.io import atomic_write_bytes, fsync_dir, is_write_temporary
from degrade.runtime import usable_cores

from .layout import ATTR_KEY, read_attrs, read_json, write_attrs
from .shards import ArrayLayout, encode_chunk, encode_shard
from .sources import pick, pick_and_crop
from .spec import GenerationSpec

PROGRESS_DIR = ".progress"

CONNECT_TIMEOUT_S = 10
WORKERS_TIMEOUT_S = 60  # a scheduler without workers would take the tasks and never run them
SCHEDULERS = ("threads", "processes")


def marker_path(store: str | os.PathLike, k: int) -> Path:
    """Where shard ``k``'s progress marker goes: written once its data is, removed when the store is complete."""
    return Path(store) / PROGRESS_DIR / f"shard-{k:06d}.json"


# -- one shard ----------------------------------------------------------------------------
_recipes: dict[str, Any] = {}


def _recipe(spec: GenerationSpec):
    from degrade import Recipe

    r = _recipes.get(spec.recipe_hash)
    if r is None:
        r = _recipes[spec.recipe_hash] = Recipe.from_dict(spec.recipe)
    return r


def iter_samples(spec: GenerationSpec, start: int, stop: int) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield ``(i - start, sample)`` for samples ``start..stop-1``, grouped by source image (one decode each)."""
    import cv2

    from degrade.runtime import tune_malloc

    tune_malloc()
    cv2.setNumThreads(1)
    recipe = None if spec.real else _recipe(spec)
    n = len(spec.source.files)
    for i in sorted(range(start, stop), key=lambda i: (pick(spec.seed, i, n), i)):
        tile, where = pick_and_crop(spec.source, spec.seed, i, spec.size, spec.crop)
        sample = {"source": json.dumps(where, sort_keys=True)}
        if spec.real:
            sample["degraded"] = tile
        else:
            d = recipe.apply(tile, seed=spec.seed, index=i)
            sample.update(clean=tile, degraded=d.image, mask=d.mask)
            sample["params"] = json.dumps(d.params, sort_keys=True, separators=(",", ":"))
        yield i - start, sample


def make_samples(spec: GenerationSpec, start: int, stop: int) -> dict[str, list]:
    """Samples ``start..stop-1`` as lists per field, in order."""
    out: dict[str, list] = {f: [None] * (stop - start) for f in spec.fields}
    for k, sample in iter_samples(spec, start, stop):
        for f in spec.fields:
            out[f][k] = sample[f]
    return out


def _hash_value(h, v) -> None:
    if isinstance(v, str):
        b = v.encode("utf-8")
        h.update(len(b).to_bytes(8, "little"))
        h.update(b)
    else:
        h.update(np.ascontiguousarray(v).data)


def field_checksum(values: list) -> str:
    """SHA-256 of one field's decoded samples, in order (strings length-prefixed)."""
    h = hashlib.sha256()
    for v in values:
        _hash_value(h, v)
    return h.hexdigest()


def shard_checksum(per_field: dict[str, str]) -> str:
    return hashlib.sha256(json.dumps(per_field, sort_keys=True).encode()).hexdigest()


def dataset_checksum(shard_sums: list[str]) -> str:
    """The version's checksum: its shard checksums hashed in order (written by finalize, checked by verify)."""
    return hashlib.sha256("".join(shard_sums).encode()).hexdigest()


class _ShardEncoder:
    """Encodes samples as they come (any order) and hashes them in order; fed from one thread only."""

    def __init__(self, layouts: dict[str, ArrayLayout], n: int):
        self.layouts, self.n, self.next = layouts, n, 0
        self.chunks = {f: [b""] * n for f in layouts}
        self.hashes = {f: hashlib.sha256() for f in layouts}
        self.waiting: dict[int, dict[str, Any]] = {}

    def add(self, k: int, sample: dict[str, Any]) -> None:
        for f, layout in self.layouts.items():
            self.chunks[f][k] = encode_chunk(layout, sample[f])
        self.waiting[k] = sample
        while self.next in self.waiting:
            done = self.waiting.pop(self.next)
            for f, h in self.hashes.items():
                _hash_value(h, done[f])
            self.next += 1

    def checksums(self) -> dict[str, str]:
        if self.next != self.n:
            raise RuntimeError(f"shard encoder got {self.next} of {self.n} samples")
        return {f: h.hexdigest() for f, h in self.hashes.items()}


def generate_shard(spec: GenerationSpec, store: str, k: int, overlap: bool = False) -> dict[str, Any]:
    """Make, encode and write shard ``k`` of every array, then its progress marker. Returns the marker.

    With ``overlap`` (a core is idle: fewer workers than cores) a second thread encodes and hashes
    each sample while the next one is made; with every core busy that only adds contention.
    """
    layouts = spec.layouts()
    start, stop = layouts[spec.fields[0]].shard_range(k)
    enc = _ShardEncoder(layouts, stop - start)
    if overlap:
        with ThreadPoolExecutor(1, thread_name_prefix="daguerre-encode") as pool:
            pending = [pool.submit(enc.add, j, sample) for j, sample in iter_samples(spec, start, stop)]
            for fut in pending:
                fut.result()
    else:
        for j, sample in iter_samples(spec, start, stop):
            enc.add(j, sample)
    sizes = {}
    for f, layout in layouts.items():
        pieces = encode_shard(layout, enc.chunks[f])
        atomic_write_bytes(Path(store) / f / layout.shard_key(k), pieces, durable="data")  # on disk before the marker (_shard_done checks the name)
        sizes[f] = sum(len(x) for x in pieces)
    sums = enc.checksums()
    marker = {"shard": k, "samples": [start, stop], "fields": sums, "sha256": shard_checksum(sums), "bytes": sizes}
    atomic_write_bytes(marker_path(store, k), json.dumps(marker).encode())
    return marker


# -- the whole job ------------------------------------------------------------------------
@dataclass
class GenerationResult:
    """Where a version went, how much was generated now, and its catalog entry."""

    path: Path
    spec: GenerationSpec
    shards_written: int
    shards_reused: int
    seconds: float
    skipped: list[dict[str, str]] = field(default_factory=list)
    version: Any = None  # catalog.Version
    reused: bool = False  # an existing version with the same lineage was returned
    not_applied: dict[str, Any] = field(default_factory=dict)  # what a reused version does not have: {"store": {"requested", "reused"}, …}


def prepare_store(spec: GenerationSpec, partial: Path) -> list[int]:
    """Create the partial store, or check that an existing one is this same job; returns pending shards."""
    if partial.exists():
        try:
            attrs = read_attrs(partial)
        except (OSError, ValueError, AttributeError) as e:  # ValueError: JSON nested thousands deep too
            raise DaguerreError(f"the unfinished generation in {partial} has unreadable attributes ({type(e).__name__}: "
                                f"{str(e).splitlines()[0] if str(e) else ''}); remove it to start over") from None  # fmt: skip
        if attrs.get("lineage_hash") != spec.lineage_hash:
            raise DaguerreError(
                f"an unfinished generation with different settings is in {partial}; remove it to start over"
            )
        level = _stored_zstd_level(partial, spec)
        if level is not None and level != spec.zstd_level:  # same data, but its shards would mix two encodings
            raise DaguerreError(f"the unfinished generation in {partial} uses --zstd-level {level}; resume with that level or remove it")
        if attrs.get("complete"):  # finalized, then interrupted before the rename: nothing left to make
            return []
    else:
        tmp = partial.parent / f"{partial.name}.init-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        group = {"attributes": {ATTR_KEY: spec.attributes()}, "zarr_format": 3, "node_type": "group"}
        try:
            atomic_write_bytes(tmp / "zarr.json", json.dumps(group, indent=2).encode(), durable=True)
            for f, layout in spec.layouts().items():
                atomic_write_bytes(tmp / f / "zarr.json", json.dumps(layout.metadata(), indent=2).encode(), durable=True)
        except OSError as e:  # name the folder asked for, not the scratch one inside it
            shutil.rmtree(tmp, ignore_errors=True)
            raise OSError(e.errno, e.strerror, str(partial.parent)) from None
        try:
            os.rename(tmp, partial)  # another process may have won the race: then resume theirs
            fsync_dir(partial.parent)
        except OSError as e:
            shutil.rmtree(tmp, ignore_errors=True)
            if not partial.exists():  # not a lost race: the rename itself failed
                raise OSError(e.errno, e.strerror, str(partial)) from None
            return prepare_store(spec, partial)
    layouts = spec.layouts()
    done = {k for k in range(spec.n_shards) if _shard_done(partial, layouts, k)}
    return [k for k in range(spec.n_shards) if k not in done]


def _shard_done(partial: Path, layouts: dict[str, Any], k: int) -> bool:
    """Whether shard ``k`` has a readable progress marker and every field's shard file at the size it
    records. After a power cut a marker can outlive data the disk never received (an empty file)."""
    try:  # a FIFO in its place (never opened), a missing one: an OSError, and the shard is made again
        marker = read_json(marker_path(partial, k))  # nested thousands deep: a ValueError
        sizes = marker.get("bytes") or {}  # markers from before sizes were recorded: any non-empty file
        return marker.get("shard") == k and all(
            (n := (partial / f / layout.shard_key(k)).stat().st_size) > 0 and n == sizes.get(f, n) for f, layout in layouts.items()
        )
    except (OSError, ValueError, AttributeError, TypeError):
        return False


def _stored_zstd_level(store: Path, spec: GenerationSpec) -> int | None:
    """The zstd level ``store``'s chunks are encoded with (None where its metadata is unreadable or not this reader's)."""
    from .reader import _expected_layout

    try:
        layout = _expected_layout(spec.fields[0], read_json(store / spec.fields[0] / "zarr.json"))  # a FIFO: unopened
    except (OSError, ValueError):
        return None
    return None if layout is None else layout.zstd_level


def finalize(spec: GenerationSpec, partial: Path, publish: Callable[[Path], Path]) -> Path:
    """Complete the attributes with the shard checksums, drop scratch files, publish (a rename)."""
    if not read_attrs(partial).get("complete"):  # else an earlier run got this far: its checksums are recorded
        markers = []
        for k in range(spec.n_shards):
            p = marker_path(partial, k)
            if not p.exists():
                raise DaguerreError(f"shard {k} of {partial} is missing; re-run the command to finish it")
            markers.append(read_json(p))
        attrs = read_attrs(partial)
        attrs["shards"] = [{"samples": m["samples"], "sha256": m["sha256"], "fields": m["fields"]} for m in markers]
        attrs["checksum"] = dataset_checksum([m["sha256"] for m in markers])
        attrs["complete"] = True
        attrs["created"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
        # the shard files' names (not synced while generating: a lost one is made again on resume) reach the
        # disk before `complete` does: nothing regenerates a shard of a complete, registered version
        for d, _, _ in os.walk(partial, topdown=False):
            if PROGRESS_DIR not in Path(d).relative_to(partial).parts:
                fsync_dir(d)
        write_attrs(partial, attrs)
    # also after a run killed between the line above and the rename: its markers were published with the data
    shutil.rmtree(partial / PROGRESS_DIR, ignore_errors=True)
    for stray in partial.rglob("*.tmp"):  # writers killed mid-write (atomic_write_bytes' temporaries)
        if is_write_temporary(stray):
            stray.unlink(missing_ok=True)
    return publish(partial)


def run_tasks(
    spec: GenerationSpec,
    store: Path,
    pending: list[int],
    workers: int,
    scheduler: str,
    address: str | None,
    on_shard: Callable[[int], None] | None = None,
    on_dispatch: Callable[[], None] | None = None,
) -> None:
    """Run one dask task per pending shard on threads, processes or a dask.distributed cluster (``on_dispatch``
    is called just before the first is handed to them)."""
    import dask

    workers = max(1, min(workers, len(pending)))  # no more processes than shards to make
    if address is None:  # nor than cores: the work is CPU-bound, and --workers 1000 started 157 processes
        workers = min(workers, usable_cores())
    overlap = address is None and workers < usable_cores()  # a local core left idle by the workers
    tasks = [dask.delayed(generate_shard, pure=False)(spec, str(store), k, overlap, dask_key_name=f"shard-{k}") for k in pending]
    if not tasks:
        return
    if address:
        from distributed import Client, as_completed

        _probe_scheduler(address)
        try:
            client = Client(address, timeout=CONNECT_TIMEOUT_S)  # a silent or stalled peer fails too, not only a refused port
        except (OSError, TimeoutError) as e:
            raise DaguerreError(f"cannot reach the dask scheduler at {address}: {str(e).splitlines()[0] if str(e) else type(e).__name__}") from None
        except Exception as e:  # noqa: BLE001  something else answered (an HTTP server's bytes read as a message length)
            if address.startswith("tls://") and "ssl_context" in str(e):  # no certificates in dask's configuration
                raise DaguerreError(f"{address}: tls:// needs certificates in dask's configuration (distributed.comm.tls: "
                                    "ca-file, client.cert, client.key; see docs/datasets.md)") from None  # fmt: skip
            raise DaguerreError(f"{address} does not answer as a dask scheduler ({type(e).__name__})") from None
        import logging
        from concurrent.futures import CancelledError

        from distributed.comm.core import CommClosedError

        quiet = logging.getLogger("distributed.client")  # its failed reconnection is logged with a traceback
        level = quiet.level
        quiet.setLevel(logging.CRITICAL)
        try:
            with client:
                try:
                    client.wait_for_workers(1, timeout=WORKERS_TIMEOUT_S)
                except TimeoutError:
                    raise DaguerreError(f"no dask worker joined the scheduler at {address} within {WORKERS_TIMEOUT_S} s; "
                                        f"start some (dask worker {address}) and re-run") from None  # fmt: skip
                if on_dispatch:
                    on_dispatch()
                for fut in as_completed(client.compute(tasks)):
                    marker = fut.result()
                    if on_shard:
                        on_shard(marker["samples"][1] - marker["samples"][0])
        except (CommClosedError, CancelledError) as e:  # the scheduler died or restarted: what is written stays
            why = str(e).splitlines()[0] if str(e) else type(e).__name__
            raise DaguerreError(f"lost the dask scheduler at {address} ({why}); re-run the command to resume") from None
        finally:
            quiet.setLevel(level)
        return
    if scheduler not in SCHEDULERS:
        raise DaguerreError(f"unknown scheduler {scheduler!r} (use {' or '.join(SCHEDULERS)})")
    from dask.callbacks import Callback

    def posttask(key, result, dsk, state, worker_id):
        if on_shard and isinstance(result, dict) and "samples" in result:
            on_shard(result["samples"][1] - result["samples"][0])

    from concurrent.futures.process import BrokenProcessPool

    pool = _quiet_pool(workers) if scheduler == "processes" else None
    done = interrupted = False
    try:
        if on_dispatch:
            on_dispatch()
        with Callback(posttask=posttask):
            dask.compute(*tasks, scheduler=scheduler, num_workers=workers, pool=pool)  # threads: None, their own pool
        done = True
    except BrokenProcessPool:
        raise DaguerreError(
            "a worker process died (out of memory? or, from a script, the missing "
            "`if __name__ == '__main__':` guard that the processes scheduler needs); re-run to resume"
        ) from None
    except KeyboardInterrupt:
        interrupted = True
        raise
    finally:
        # interrupted: do not wait for the shards still running. After a failed shard (a full disk), wait for the
        # running ones (at most one per worker): shutdown(wait=False) races the pool's own threads at exit, and
        # Python printed "Exception ignored … OSError: Bad file descriptor" under the one-line error
        if pool is not None:
            pool.shutdown(wait=not interrupted, cancel_futures=not done)


def _probe_scheduler(address: str) -> None:
    """Fail in bounded time unless a dask scheduler answers at a ``tcp://`` address: one sends its handshake
    (a small frame count, then msgpack) as soon as it accepts; distributed's own client waits forever
    for a peer that accepts and stays silent, and reads an HTTP reply as a frame length."""
    import socket
    import struct

    if not address.startswith("tcp://"):
        return
    host, _, port = address[len("tcp://") :].rpartition(":")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=CONNECT_TIMEOUT_S) as s:
            s.settimeout(CONNECT_TIMEOUT_S)
            head = s.recv(8)
    except TimeoutError:
        raise DaguerreError(f"{address} does not answer as a dask scheduler (no handshake within {CONNECT_TIMEOUT_S} s)") from None
    except (OSError, ValueError) as e:
        raise DaguerreError(f"cannot reach the dask scheduler at {address}: {getattr(e, 'strerror', None) or e}") from None
    if len(head) < 8 or not 0 < struct.unpack("<Q", head)[0] < 1024:
        raise DaguerreError(f"{address} does not answer as a dask scheduler (not its handshake)")


def _quiet_pool(workers: int):
    """Worker processes that ignore Ctrl-C and die with the parent.

    The terminal sends Ctrl-C to the whole process group, and the parent alone should stop the job
    (the workers printed tracebacks). The workers are spawned while this thread blocks SIGINT, a
    mask they inherit across exec, and ignore it from their first instruction of Python on; the
    parent's handler stays in place, so a Ctrl-C in that second is raised here, not lost. A ``kill
    -9`` of the parent used to leave the workers generating on their own for minutes; on Linux
    they now get SIGKILL when it dies."""
    import multiprocessing as mp
    import signal
    from concurrent.futures import ProcessPoolExecutor, wait

    import dask

    ctx = mp.get_context(dask.config.get("multiprocessing.context", "spawn"))
    pool = ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=_worker_start, initargs=(os.getpid(),))
    try:
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
        try:
            wait([pool.submit(_noop) for _ in range(workers)])  # start every worker now, SIGINT blocked
        finally:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})  # a Ctrl-C held meanwhile is raised here
    except BaseException:
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    return pool


def _worker_start(parent: int) -> None:
    """In each worker: ignore SIGINT (blocked until now, inherited), SIGKILL when the parent dies (Linux),
    and exit if it already has."""
    import signal

    from degrade.runtime import die_with_parent

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # also discards one that arrived while blocked
    die_with_parent(parent)


def _noop() -> None:
    return None


def generate(
    spec: GenerationSpec,
    partial: Path,
    publish: Callable[[Path], Path],
    workers: int = 2,
    scheduler: str = "processes",
    address: str | None = None,
    on_start: Callable[[int, int], None] | None = None,
    on_shard: Callable[[int], None] | None = None,
) -> GenerationResult:
    """Generate (or finish generating) ``spec`` in ``partial``, then ``publish`` it; returns where it went."""
    t0 = time.perf_counter()
    partial.parent.mkdir(parents=True, exist_ok=True)
    fresh = not partial.exists()
    pending = prepare_store(spec, partial)
    done_samples = spec.count - sum(min(spec.count, (k + 1) * spec.shard_size) - k * spec.shard_size for k in pending)
    if on_start:
        on_start(spec.count, done_samples)
    dispatched: list[bool] = []
    try:
        run_tasks(spec, partial, pending, workers, scheduler, address, on_shard, lambda: dispatched.append(True))
    except BaseException:
        # stopped before any task (a scheduler that does not answer, Ctrl-C while the workers start): the store this
        # run made holds only metadata, and no worker can write to it later. Once tasks run, it stays to be resumed.
        if fresh and not dispatched:
            shutil.rmtree(partial, ignore_errors=True)
        raise
    final = finalize(spec, partial, publish)
    return GenerationResult(final, spec, len(pending), spec.n_shards - len(pending), time.perf_counter() - t0, spec.source.skipped)
