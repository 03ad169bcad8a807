"""The sharded zarr v3 format, encoded and decoded directly.

zarr-python costs ~1.5 ms per sample on top of compression when writing whole shards and
~1 ms per sample to read one chunk; daguerre writes and reads the same bytes itself: inner
chunks ``[bytes | vlen-utf8, zstd]`` concatenated, then the shard index (offset, length)
uint64 pairs with a crc32c, at the end of the shard (``sharding_indexed`` with
``index_location: end``). zarr-python reads what this writes and vice versa (tested).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import TYPE_CHECKING

import google_crc32c
import numpy as np

if TYPE_CHECKING:
    from numcodecs import Zstd

MAX_U64 = np.uint64(2**64 - 1)
STRING = "string"
DEFAULT_ZSTD_LEVEL = -1
"""zstd's first fast level: on 256 px photo tiles it reads 19 % faster than level 1 for 8 % more
bytes (docs/benchmarks.md); ``--zstd-level 3`` trades speed for size, ``-100`` size for speed."""
ZSTD_LEVELS = (-131072, 22)  # zstd's own range (ZSTD_minCLevel, ZSTD_maxCLevel), as the zarr v3 zstd codec takes it


@dataclass(frozen=True)
class ArrayLayout:
    """One array of a dataset: N samples of ``sample_shape``, one sample per chunk, K per shard."""

    name: str
    count: int
    sample_shape: tuple[int, ...]
    shard_size: int
    dtype: str = "uint8"  # or STRING (one JSON document per sample)
    zstd_level: int = DEFAULT_ZSTD_LEVEL

    @property
    def shape(self) -> tuple[int, ...]:
        return (self.count, *self.sample_shape)

    @property
    def n_shards(self) -> int:
        return -(-self.count // self.shard_size)

    def shard_range(self, k: int) -> tuple[int, int]:
        return k * self.shard_size, min(self.count, (k + 1) * self.shard_size)

    def shard_key(self, k: int) -> str:
        """Store key of shard ``k`` (default chunk key encoding, '/' separator)."""
        return "/".join(["c", str(k), *["0"] * len(self.sample_shape)])

    @property
    def index_nbytes(self) -> int:
        return self.shard_size * 16 + 4

    def metadata(self) -> dict:
        """The array's ``zarr.json`` (what zarr-python writes for the same array; tested), so that
        generation needs no zarr-python import (~0.4 s per dataset)."""
        string = self.dtype == STRING
        bytes_codec = {"name": "vlen-utf8", "configuration": {}} if string else {"name": "bytes"}
        return {
            "shape": list(self.shape),
            "data_type": "string" if string else self.dtype,
            "chunk_grid": {"name": "regular", "configuration": {"chunk_shape": [self.shard_size, *self.sample_shape]}},
            "chunk_key_encoding": {"name": "default", "configuration": {"separator": "/"}},
            "fill_value": "" if string else 0,
            "codecs": [
                {
                    "name": "sharding_indexed",
                    "configuration": {
                        "chunk_shape": [1, *self.sample_shape],
                        "codecs": [bytes_codec, {"name": "zstd", "configuration": {"level": self.zstd_level, "checksum": False}}],
                        "index_codecs": [{"name": "bytes", "configuration": {"endian": "little"}}, {"name": "crc32c"}],
                        "index_location": "end",
                    },
                }
            ],
            "attributes": {},
            "zarr_format": 3,
            "node_type": "array",
            "storage_transformers": [],
        }


# -- chunks -------------------------------------------------------------------------------
_zstd_cache: dict[int, Zstd] = {}


def _zstd(level: int) -> Zstd:
    z = _zstd_cache.get(level)
    if z is None:
        from numcodecs import Zstd  # (55 ms to import: not for `dataset info`, which reads no chunk)

        z = _zstd_cache[level] = Zstd(level=level)
    return z


def vlen_utf8(text: str) -> bytes:
    """numcodecs/zarr ``vlen-utf8`` encoding of a one-element string chunk."""
    b = text.encode("utf-8")
    return struct.pack("<II", 1, len(b)) + b


def un_vlen_utf8(data: bytes) -> str:
    n, length = struct.unpack_from("<II", data, 0)
    if n != 1:
        raise ValueError(f"expected a one-element vlen-utf8 chunk, got {n} elements")
    return bytes(data[8 : 8 + length]).decode("utf-8")


def encode_chunk(layout: ArrayLayout, value) -> bytes:
    raw = vlen_utf8(value) if layout.dtype == STRING else np.ascontiguousarray(value, dtype=layout.dtype)
    return _zstd(layout.zstd_level).encode(raw)


def decode_chunk(layout: ArrayLayout, data: bytes):
    raw = _zstd(layout.zstd_level).decode(data)
    if layout.dtype == STRING:
        return un_vlen_utf8(raw)
    return np.frombuffer(raw, dtype=layout.dtype).reshape(layout.sample_shape)


def decode_into(layout: ArrayLayout, data: bytes, out: np.ndarray) -> None:
    """Decode an image chunk straight into ``out`` (a C-contiguous sample-shaped uint8 view)."""
    _zstd(layout.zstd_level).decode(data, out=out.reshape(-1))


# -- shards -------------------------------------------------------------------------------
def encode_shard(layout: ArrayLayout, chunks: list[bytes]) -> list[bytes]:
    """The pieces of a shard file: encoded chunks, then the crc32c-protected index (unused slots empty).

    Returned as a list so that the writer can stream them without concatenating megabytes.
    """
    index = np.full((layout.shard_size, 2), MAX_U64, dtype="<u8")
    offset = 0
    for i, c in enumerate(chunks):
        index[i] = (offset, len(c))
        offset += len(c)
    index_bytes = index.tobytes()
    crc = struct.pack("<I", google_crc32c.value(index_bytes))
    return [*chunks, index_bytes, crc]


def decode_index(layout: ArrayLayout, tail: bytes) -> np.ndarray:
    """The (offset, length) pairs of a shard from its last ``index_nbytes`` bytes; checks the crc32c."""
    if len(tail) != layout.index_nbytes:
        raise ValueError(f"shard index of {layout.name}: expected {layout.index_nbytes} bytes, got {len(tail)}")
    body, crc = tail[:-4], struct.unpack("<I", tail[-4:])[0]
    if google_crc32c.value(bytes(body)) != crc:
        raise ValueError(f"shard index of {layout.name}: crc32c mismatch (corrupt shard)")
    return np.frombuffer(body, dtype="<u8").reshape(layout.shard_size, 2)
