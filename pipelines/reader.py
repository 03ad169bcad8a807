"""Read dataset versions: random access by index and fast contiguous ranges, torch-free.

``open_dataset(ref)`` takes ``NAME``, ``NAME@VERSION`` or a store path. The reader parses each
shard's index once and reads chunks by offset (``os.pread``), which is an order of magnitude
faster than zarr-python per sample; stores it does not recognise (other codecs or chunking; local paths only)
go through zarr-python. Files are opened lazily per process and the object pickles to its path,
so it can be handed to DataLoader workers.
"""

from __future__ import annotations

import contextlib
import json
import operator
import os
import stat
import struct
import threading
import weakref
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from degrade.errors import DaguerreError

from .layout import STRING_FIELDS, read_store, sample_shape
from .refs import DatasetRef, resolve
from .shards import MAX_U64, STRING, ArrayLayout, decode_chunk, decode_index, decode_into as layout_decode_into


def _expected_layout(name: str, meta: dict[str, Any]) -> ArrayLayout | None:
    """An ArrayLayout when the array is in the format this reader decodes itself, else None."""
    try:
        (codec,) = meta["codecs"]
        cfg = codec["configuration"]
        inner = cfg["codecs"]
        shard = meta["chunk_grid"]["configuration"]["chunk_shape"]
        ok = (
            codec["name"] == "sharding_indexed"
            and cfg.get("index_location", "end") == "end"
            and [c["name"] for c in cfg["index_codecs"]] == ["bytes", "crc32c"]
            and list(cfg["chunk_shape"]) == [1, *shard[1:]]
            and len(inner) == 2
            and inner[1]["name"] == "zstd"
            and inner[0]["name"] in ("bytes", "vlen-utf8")
            and meta["data_type"] in ("uint8", "string")
            and type(shard[0]) is int and shard[0] >= 1  # 0 divided by zero; a negative one read at negative offsets
            and type(inner[1].get("configuration", {}).get("level", 1)) is int
        )
        if not ok:
            return None
        dtype = STRING if meta["data_type"] == "string" else "uint8"
        level = int(inner[1].get("configuration", {}).get("level", 1))
        return ArrayLayout(name, int(meta["shape"][0]), tuple(meta["shape"][1:]), int(shard[0]), dtype, level)
    except (KeyError, TypeError, ValueError, IndexError, AttributeError):  # damaged metadata: zarr-python's path, then the shape check, report it
        return None


class _Handles(dict):
    """One thread's open shard files, ``(field, shard) -> fd``; closed when the thread ends and drops them."""

    __hash__ = object.__hash__  # kept in a WeakSet: by identity, never by content
    __eq__ = object.__eq__

    def close(self) -> None:
        for fd in list(self.values()):
            try:
                os.close(fd)
            except OSError:
                pass
        self.clear()

    def __del__(self) -> None:
        self.close()


class Dataset:
    """One complete dataset version."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self.attrs, metas = read_store(self.path)
        self.fields: list[str] = list(self.attrs["fields"])
        self._layouts: dict[str, ArrayLayout | None] = {f: _expected_layout(f, meta) for f, meta in metas.items()}
        self._count: int = self.attrs["count"]
        self._open()

    def _open(self) -> None:
        self._pid = os.getpid()
        self._local = threading.local()  # each thread its own file handles: evicting them never pulls one from
        self._fd_maps: weakref.WeakSet[_Handles] = weakref.WeakSet()  # under another thread's pread (it read other files);
        # weak: a thread's handles close when it ends (a reader used from short-lived threads kept ~200 fds per thread)
        self._fd_lock = threading.Lock()
        self._index: dict[tuple[str, int], np.ndarray] = {}  # immutable once made: shared
        self._zarr = None

    @property
    def _fds(self) -> _Handles:
        fds = getattr(self._local, "fds", None)
        if fds is None:
            fds = self._local.fds = _Handles()
            with self._fd_lock:
                self._fd_maps.add(fds)
        return fds

    # pickling: only the path travels; handles reopen lazily in the new process
    def __getstate__(self) -> dict[str, Any]:
        return {"path": str(self.path)}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["path"])

    def __len__(self) -> int:
        return self._count

    def __repr__(self) -> str:
        return f"Dataset({str(self.path)!r}, {self._count} samples of {self.attrs.get('size')} px, fields={self.fields})"

    @property
    def name(self) -> str:
        return self.attrs.get("name", self.path.stem)

    def sample_shape(self, field: str) -> tuple[int, ...] | None:
        """The shape of one sample of an image field (None for a layout the fast path does not read)."""
        layout = self._layouts[field]
        return tuple(layout.sample_shape) if layout else None

    # -- low level ----------------------------------------------------------------------
    def _fd(self, field: str, k: int) -> int:
        if os.getpid() != self._pid:  # forked: never share file offsets or caches with the parent
            self._open()
        key = (field, k)
        fd = self._fds.get(key)
        if fd is None:
            layout = self._layouts[field]
            p = self.path / field / layout.shard_key(k)
            try:
                fd = os.open(p, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))  # a FIFO: at once, refused below (it waited for ever)
            except FileNotFoundError:
                raise DaguerreError(f"{self.path}: shard {k} of {field} is missing ({p})") from None
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                os.close(fd)
                raise DaguerreError(f"{self.path}: shard {k} of {field} is not a regular file ({p})")
            if len(self._fds) > 256:
                for old in list(self._fds.values()):
                    os.close(old)
                self._fds.clear()
            self._fds[key] = fd
        return fd

    def _shard_index(self, field: str, k: int) -> np.ndarray:
        idx = self._index.get((field, k))
        if idx is None:
            layout = self._layouts[field]
            fd = self._fd(field, k)
            size = os.fstat(fd).st_size
            if size < layout.index_nbytes:  # pread at a negative offset: a bare "Invalid argument"
                raise DaguerreError(f"{self.path}: shard {k} of {field} is truncated ({size} bytes, shorter than its {layout.index_nbytes}-byte index)")
            try:
                idx = decode_index(layout, os.pread(fd, layout.index_nbytes, size - layout.index_nbytes))
            except ValueError as e:
                raise DaguerreError(f"{self.path}: {e} (shard {k})") from None
            used, end = idx[idx[:, 0] != MAX_U64], size - layout.index_nbytes
            if (used[:, 0] > end).any() or (used[:, 1] > end - used[:, 0]).any():  # else a pread of terabytes
                raise DaguerreError(f"{self.path}: shard {k} of {field} indexes chunks beyond its data (a damaged store)")
            self._index[(field, k)] = idx
        return idx

    @contextlib.contextmanager
    def _decoding(self, field: str, where: str) -> Iterator[None]:
        """Chunks that do not decode (corrupt bytes raise what the codec raises: zstd a RuntimeError) as one line."""
        try:
            yield
        except (RuntimeError, ValueError, TypeError, ArithmeticError, struct.error) as e:
            msg = str(e).splitlines()[0][:200] if str(e) else type(e).__name__
            raise DaguerreError(f"{self.path}: {where} of {field} does not decode ({msg}; a damaged store)") from None

    def _zarr_array(self, field: str):
        if self._zarr is None:
            import zarr

            self._zarr = zarr.open_group(str(self.path), mode="r")
        return self._zarr[field]

    def _check(self, field: str, i: int) -> int:
        if field not in self.fields:
            raise DaguerreError(f"{self.path}: no field {field!r} (have {', '.join(self.fields)})")
        try:
            if isinstance(i, (bool, np.bool_)):
                raise TypeError
            given = i = operator.index(i)  # ints, numpy and 0-d torch integers; not floats, strings or slices
        except TypeError:
            raise TypeError(f"sample indices are integers, got {i!r}") from None
        if i < 0:
            i += self._count
        if not 0 <= i < self._count:
            raise IndexError(f"sample {given} out of range for {self._count} samples")
        return i

    # -- public -------------------------------------------------------------------------
    def read(self, field: str, i: int):
        """One sample of one field: a uint8 array, or the JSON string of ``params``/``source``."""
        i = self._check(field, i)
        layout = self._layouts[field]
        if layout is None:
            with self._decoding(field, f"sample {i}"):
                v = self._zarr_array(field)[i]
            return str(v) if np.ndim(v) == 0 and field in STRING_FIELDS else np.asarray(v)
        k, j = divmod(i, layout.shard_size)
        off, n = self._shard_index(field, k)[j]
        if off == MAX_U64:
            return "" if layout.dtype == STRING else np.zeros(layout.sample_shape, np.uint8)
        data = os.pread(self._fd(field, k), int(n), int(off))
        with self._decoding(field, f"sample {i}"):
            return decode_chunk(layout, data)

    def read_range(self, field: str, start: int, stop: int):
        """Samples ``start..stop-1`` of a field (stacked array, or list of strings), one read per shard;
        ``start`` and ``stop`` as in a slice (a negative one counts from the end, like ``read``'s index)."""
        try:
            if isinstance(start, (bool, np.bool_)) or isinstance(stop, (bool, np.bool_)):  # as read refuses them
                raise TypeError
            start, stop, _ = slice(operator.index(start), operator.index(stop)).indices(self._count)
        except TypeError:
            raise TypeError(f"sample ranges are integers, got {start!r}, {stop!r}") from None
        stop = max(start, stop)
        layout = self._layouts.get(field)
        if field not in self.fields:
            self._check(field, 0)
        if layout is None:
            with self._decoding(field, f"samples {start}-{stop - 1}"):
                return list(self._zarr_array(field)[start:stop]) if field in STRING_FIELDS else np.asarray(self._zarr_array(field)[start:stop])
        out = []
        i = start
        while i < stop:
            k, j0 = divmod(i, layout.shard_size)
            j1 = min(layout.shard_size, stop - k * layout.shard_size)
            idx = self._shard_index(field, k)[j0:j1]
            valid = idx[:, 0] != MAX_U64
            if valid.any():
                lo = int(idx[valid, 0].min())
                hi = int((idx[valid, 0] + idx[valid, 1]).max())
                blob = os.pread(self._fd(field, k), hi - lo, lo)
            for (off, n), ok in zip(idx, valid):
                if not ok:
                    out.append("" if layout.dtype == STRING else np.zeros(layout.sample_shape, np.uint8))
                else:
                    with self._decoding(field, f"shard {k}"):
                        out.append(decode_chunk(layout, blob[int(off) - lo : int(off + n) - lo]))
            i = (k + 1) * layout.shard_size
        return out if layout.dtype == STRING else np.stack(out) if out else np.zeros((0, *layout.sample_shape), np.uint8)

    def read_many(self, field: str, indices, out: np.ndarray | None = None) -> np.ndarray:
        """Samples at ``indices`` (any order) of an image field, decoded straight into ``out``.

        Indices are grouped by shard: one pread per shard for the span they cover when it is
        dense, one per chunk otherwise. ``out`` (N×H×W[×C] uint8) may be a pinned or shared
        buffer; it is allocated when omitted.
        """
        if field not in self.fields:  # also with no indices
            raise DaguerreError(f"{self.path}: no field {field!r} (have {', '.join(self.fields)})")
        indices = [self._check(field, i) for i in indices]
        layout = self._layouts[field]
        if layout.dtype == STRING if layout else field in STRING_FIELDS:  # a list through zarr-python too (not a numpy array)
            return [self.read(field, i) for i in indices]
        shape = (len(indices), *(layout.sample_shape if layout else sample_shape(field, self.attrs["size"])))
        if out is None:
            out = np.empty(shape, np.uint8)
        elif not (isinstance(out, np.ndarray) and out.dtype == np.uint8 and out.shape == shape
                  and out.flags.c_contiguous and out.flags.writeable):  # fmt: skip
            raise DaguerreError(f"read_many: out must be a writeable, C-contiguous uint8 array of shape {shape}")
        if layout is None:  # zarr-python's path fills out too (it was left untouched) and reads no indices as none
            for pos, i in enumerate(indices):
                out[pos] = self.read(field, i)
            return out
        by_shard: dict[int, list[tuple[int, int]]] = {}
        for pos, i in enumerate(indices):
            k, j = divmod(i, layout.shard_size)
            by_shard.setdefault(k, []).append((pos, j))
        for k, items in by_shard.items():
            idx = self._shard_index(field, k)
            fd = self._fd(field, k)
            rows = idx[[j for _, j in items]]
            valid = rows[:, 0] != MAX_U64
            span = int((rows[valid, 0] + rows[valid, 1]).max() - rows[valid, 0].min()) if valid.any() else 0
            dense = span <= 2 * int(rows[valid, 1].sum()) if valid.any() else False
            blob, lo = (os.pread(fd, span, int(rows[valid, 0].min())), int(rows[valid, 0].min())) if dense else (None, 0)
            with self._decoding(field, f"shard {k}"):  # once a shard, not once a sample: this is the training loop's path
                for (pos, _), (off, n), ok in zip(items, rows, valid):
                    if not ok:
                        out[pos] = 0
                        continue
                    data = blob[int(off) - lo : int(off + n) - lo] if dense else os.pread(fd, int(n), int(off))
                    layout_decode_into(layout, data, out[pos])
        return out

    def __getitem__(self, i: int) -> dict[str, Any]:
        """Every field of sample ``i``; ``params`` and ``source`` parsed from JSON."""
        out: dict[str, Any] = {"index": self._check(self.fields[0], i)}
        for f in self.fields:
            v = self.read(f, i)
            out[f] = json.loads(v) if f in STRING_FIELDS and v else v
        return out

    def __enter__(self) -> Dataset:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close every thread's file handles (call it once no thread reads any more; reading again reopens them).
        ``with open_dataset(ref) as ds:`` closes them at the end of the block."""
        with self._fd_lock:
            maps = list(self._fd_maps)
        for fds in maps:
            fds.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # noqa: BLE001  interpreter shutdown
            pass


def open_dataset(ref: str | DatasetRef | os.PathLike) -> Dataset:
    """Open a complete dataset version by reference (``NAME``, ``NAME@VERSION``) or store path."""
    return Dataset(resolve(ref))
