"""Image sources for dataset generation and the deterministic per-sample pick and crop.

A source is a list of decodable images (files, scikit-image's bundled photographs, or the clean
tiles of an existing dataset) with a content fingerprint. Sample *i* picks its image and crop
from its own generator, ``default_rng(SeedSequence(seed, spawn_key=(i, 1)))`` (the recipe uses
``spawn_key=(i,)``), so nothing depends on worker count, shard size or order.
"""

from __future__ import annotations

import hashlib
import math
import os
import threading
from collections import OrderedDict
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from degrade.errors import DaguerreError, ImageError
from degrade.filekind import MISSING, refusal, what_is
from degrade.io import IMAGE_SUFFIXES, decode_image, list_images, read_image
from degrade.samples import BUILTIN_REAL, BUILTIN_SAMPLES, real_photo_paths, sample_photo_paths

from .refs import user_path

CROP_STREAM = 1  # spawn_key=(i, CROP_STREAM) for the pick-and-crop generator


@dataclass
class SourceFile:
    """One usable source image: where it is, its identity (name relative to the source, bytes, sha256)."""

    path: str
    name: str
    nbytes: int
    sha256: str


@dataclass
class Source:
    """A scanned source: the usable images, the skipped ones (with reasons), and a fingerprint."""

    spec: str
    files: list[SourceFile]
    skipped: list[dict[str, str]] = field(default_factory=list)
    dataset: str | None = None  # ``dataset:`` sources read tiles of this store

    @property
    def fingerprint(self) -> str:
        """SHA-256 over (relative name, size, content hash) of every usable image, in order."""
        return fingerprint_of((f.name, f.nbytes, f.sha256) for f in self.files)

    def lineage(self) -> dict[str, Any]:
        return {
            "spec": self.spec,
            "fingerprint": self.fingerprint,
            "count": len(self.files),
            "files": [{"name": f.name, "bytes": f.nbytes, "sha256": f.sha256} for f in self.files],
            "skipped": self.skipped,
        }


def fingerprint_of(files: Iterable[tuple[str, int, str]]) -> str:
    """A source's fingerprint from its files' (relative name, bytes, SHA-256), in order; a name that is not
    UTF-8 (undecodable bytes, which Python holds as surrogates) is hashed as its bytes."""
    h = hashlib.sha256()
    for name, nbytes, sha256 in files:
        h.update(f"{name}\0{nbytes}\0{sha256}\n".encode("utf-8", "surrogateescape"))
    return h.hexdigest()


def _hash_file(path: Path) -> tuple[int, str]:
    h = hashlib.sha256()
    n = 0
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
            n += len(chunk)
    return n, h.hexdigest()


def _probe(path: Path, root: Path | None) -> SourceFile | tuple[str, str]:
    """Hash and fully decode one file; a failure is returned as (path, reason)."""
    try:
        read_image(path)
        nbytes, digest = _hash_file(path)
    except ImageError as e:
        return (str(path), str(e))
    except OSError as e:
        return (str(path), f"{path}: {e.strerror or e}")
    name = os.path.relpath(path, root) if root is not None else path.name
    return SourceFile(str(path), name, nbytes, digest)


def scan_source(spec: str | os.PathLike, workers: int = 2, strict: bool = False) -> Source:
    """Resolve a source spec and check every image once (decode and hash), in parallel.

    Spec: a folder (recursive) or glob of jpg/png/tif/bmp/webp, ``builtin:samples``,
    ``builtin:real`` or ``dataset:NAME[@VERSION]``. Unreadable files are skipped and listed;
    with ``strict`` any of them is an error. No usable image is an error.
    """
    spec = os.fspath(spec) if isinstance(spec, os.PathLike) else spec  # a Path from a script: the folder or file
    if not isinstance(spec, str):
        raise DaguerreError(f"--source must be text or a path, got {type(spec).__name__} {spec!r}"[:200])
    if not spec.strip():
        raise DaguerreError("--source is empty: give a folder, file, glob, builtin:samples, builtin:real or dataset:NAME")
    if spec.startswith("dataset:"):
        return _dataset_source(spec)
    root: Path | None = None
    unlisted: list[dict[str, str]] = []  # folders inside the source that cannot be listed: skipped, said so

    def cannot_list(folder: Path, e: OSError) -> None:
        unlisted.append({"path": str(folder), "reason": f"{folder}: cannot list this folder ({e.strerror or e})"})

    if spec == BUILTIN_SAMPLES:
        paths = sample_photo_paths()
    elif spec == BUILTIN_REAL:
        paths = real_photo_paths()
    else:
        p = user_path(spec)
        if p.is_dir():
            root = p
            paths = list_images([p], on_error=cannot_list)
            spec = str(p.absolute())  # recorded absolute: `reproduce` must not depend on the current folder
        elif any(ch in spec for ch in "*?["):
            spec = os.path.join(os.getcwd(), os.path.expanduser(spec))
            paths = [q for q in list_images([spec], on_error=cannot_list) if q.suffix.lower() in IMAGE_SUFFIXES]
            root = Path(os.path.commonpath([str(q.parent) for q in paths])) if paths else None
        elif p.is_file():
            paths, root = [p], p.parent
            spec = str(p.absolute())
        elif (kind := what_is(p)) != MISSING:  # a FIFO or device (never opened), a link whose target is gone (or loops)
            raise DaguerreError(f"source {spec!r} is {refusal(kind)}")
        else:
            raise DaguerreError(
                f"unknown source {spec!r}: not a folder, file or glob, nor builtin:samples, builtin:real, dataset:NAME"
            )
    if not paths:
        why = f"; {len(unlisted)} folder(s) in it cannot be listed, first: {unlisted[0]['reason']}" if unlisted else ""
        raise DaguerreError(f"source {spec!r} holds no images ({', '.join(IMAGE_SUFFIXES)}){why}")
    with ThreadPoolExecutor(max(1, workers)) as pool:
        probed = list(pool.map(lambda q: _probe(q, root), paths))
    files = [x for x in probed if isinstance(x, SourceFile)]
    skipped = unlisted + [{"path": x[0], "reason": x[1]} for x in probed if not isinstance(x, SourceFile)]
    if skipped and strict:
        raise DaguerreError(f"{len(skipped)} unreadable source image(s) with --strict, first: {skipped[0]['reason']}")
    if not files:
        raise DaguerreError(f"source {spec!r}: none of its {len(paths)} images could be read")
    return Source(spec, files, skipped)


def _dataset_source(spec: str) -> Source:
    from .reader import open_dataset

    from .refs import parse_ref

    ref = parse_ref(spec[len("dataset:") :])
    try:
        ds = open_dataset(ref)
    except DaguerreError as e:  # `reproduce` of a version made from it: the user did not type this source
        raise DaguerreError(f"the source {spec}: {e}") from None
    if "clean" not in ds.fields:
        raise DaguerreError(f"{spec}: dataset has no clean images (a real-photo dataset?)")
    ident = ds.attrs.get("checksum") or ds.attrs.get("lineage_hash", "")
    files = [SourceFile(f"{ds.path}#{i}", f"clean[{i}]", 0, f"{ident}:{i}") for i in range(len(ds))]
    # recorded pinned (NAME@vN, or an absolute store path), so a newer version of NAME does not break `reproduce`
    a = ds.attrs
    pinned = f"dataset:{a['name']}@{a['version']}" if ref.path is None and a.get("name") and a.get("version") else f"dataset:{ds.path.absolute()}"
    return Source(pinned, files, [], dataset=str(ds.path))


# -- per-process image cache ----------------------------------------------------------------
class ImageCache:
    """Decoded RGB source images, least recently used evicted past ``budget`` bytes (per process)."""

    def __init__(self, budget: int = 768 << 20) -> None:
        self.budget = budget
        self._items: OrderedDict[str, np.ndarray] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self._datasets: dict[str, Any] = {}

    def get(self, source: Source, j: int) -> np.ndarray:
        f = source.files[j]
        with self._lock:
            img = self._items.get(f.path)
            if img is not None:
                self._items.move_to_end(f.path)
                return img
        img = self._load(source, f)
        with self._lock:
            if f.path not in self._items:
                self._items[f.path] = img
                self._bytes += img.nbytes
                while self._bytes > self.budget and len(self._items) > 1:
                    _, old = self._items.popitem(last=False)
                    self._bytes -= old.nbytes
        return img

    def _load(self, source: Source, f: SourceFile) -> np.ndarray:
        if source.dataset is not None:
            from .reader import open_dataset

            ds = self._datasets.get(source.dataset)
            if ds is None:
                ds = self._datasets[source.dataset] = open_dataset(source.dataset)
            return ds.read("clean", int(f.path.rsplit("#", 1)[1]))
        try:
            with open(f.path, "rb") as fh:
                data = fh.read()
        except OSError as e:
            raise ImageError(f"{f.path}: cannot read ({e.strerror or e})") from None
        if hashlib.sha256(data).hexdigest() != f.sha256:  # decode what was scanned, or nothing: the lineage records it
            raise DaguerreError(f"{f.path} changed since the source was scanned; re-run the command to rescan it")
        pic = decode_image(data, f.path)
        return pic.rgb()  # gray expanded, alpha composited on white, 16-bit already scaled


_CACHE = ImageCache()


@dataclass(frozen=True)
class CropConfig:
    """How a sample's tile is cut from its source image."""

    flip: bool = True
    min_fraction: float = 0.0
    """Smallest crop side as a fraction of the image's short side (0: down to the tile size, native pixels)."""

    def to_dict(self) -> dict[str, Any]:
        return {"flip": self.flip, "min_fraction": self.min_fraction}


def _crop_rng(seed: int, index: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence(int(seed), spawn_key=(int(index), CROP_STREAM)))


def pick(seed: int, index: int, n: int) -> int:
    """Which of ``n`` source images sample ``index`` crops: the first draw of its crop generator
    (``pick_and_crop`` makes the same draw; generation groups samples by it to decode each image once)."""
    return int(_crop_rng(seed, index).integers(n))


def pick_and_crop(
    source: Source, seed: int, index: int, size: int, crop: CropConfig, cache: ImageCache = _CACHE
) -> tuple[np.ndarray, dict[str, Any]]:
    """The clean tile of sample ``index`` and a record of where it came from.

    Picks an image uniformly, then a square crop whose side is log-uniform between the tile size
    (or ``min_fraction`` of the short side) and the whole short side, at a uniform position,
    mirrored with probability ½. The crop is resized to ``size`` (area filter); images smaller
    than the tile are enlarged (bicubic), never padded.
    """
    rng = _crop_rng(seed, index)
    j = int(rng.integers(len(source.files)))  # = pick(seed, index, len(source.files))
    img = cache.get(source, j)
    h, w = img.shape[:2]
    short = min(h, w)
    lo = min(short, max(size, int(math.ceil(crop.min_fraction * short))))
    side = short if lo >= short else int(round(math.exp(rng.uniform(math.log(lo), math.log(short)))))
    side = max(1, min(side, short))
    x = int(rng.integers(0, w - side + 1))
    y = int(rng.integers(0, h - side + 1))
    flip = bool(crop.flip and rng.random() < 0.5)
    tile = img[y : y + side, x : x + side]
    if side != size:
        interp = cv2.INTER_AREA if side > size else cv2.INTER_CUBIC
        tile = cv2.resize(tile, (size, size), interpolation=interp)
    if flip:
        tile = tile[:, ::-1]
    record = {"file": source.files[j].name, "index": j, "box": [x, y, side, side], "flip": flip}
    return np.ascontiguousarray(tile), record
