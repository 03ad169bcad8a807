"""Where datasets live and how a reference (``NAME[@VERSION]`` or a store path) finds one."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from degrade.errors import DaguerreError

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}\Z")  # \Z: "$" would let a trailing newline in
VERSION_RE = re.compile(r"^v([1-9][0-9]{0,62})\Z")  # at most a name's 64 characters: int() refuses 4,300 digits


def user_path(text: str | os.PathLike) -> Path:
    """``text`` as a path with ``~`` expanded; ``~nobody/x`` (no such user) stays as written, where
    ``Path.expanduser`` raised an internal RuntimeError."""
    return Path(os.path.expanduser(text))


def daguerre_home() -> Path:
    """``$DAGUERRE_HOME``, default ``~/.daguerre``."""
    return Path(os.environ.get("DAGUERRE_HOME") or Path.home() / ".daguerre").expanduser()


def datasets_root() -> Path:
    return daguerre_home() / "datasets"


def managed_root_around(path: str | os.PathLike, home: Path | None = None) -> str | None:
    """The catalog's folder (``$DAGUERRE_HOME/datasets``, resolved) if ``path`` is it or lies inside it,
    else None: ``gc`` deletes what no catalog entry references there, so nothing else may be put there."""
    managed = os.path.realpath((home or daguerre_home()) / "datasets")
    here = os.path.realpath(path)
    return managed if here == managed or here.startswith(managed + os.sep) else None


def check_name(name: str) -> str:
    if not NAME_RE.match(name or ""):
        raise DaguerreError(f"invalid dataset name {name!r}: use letters, digits, '.', '_' or '-' (max 64)")
    return name


@dataclass(frozen=True)
class DatasetRef:
    """A parsed reference: a store ``path``, or a ``name`` with an optional ``version`` or tag."""

    name: str | None = None
    version: str | None = None
    path: Path | None = None

    def __str__(self) -> str:
        if self.path is not None:
            return str(self.path)
        return f"{self.name}@{self.version}" if self.version else str(self.name)


def looks_like_path(text: str) -> bool:
    return "/" in text or text.endswith(".zarr") or text.startswith(".") or os.sep in text


def parse_ref(text: str) -> DatasetRef:
    """``NAME``, ``NAME@v3``, ``NAME@tag`` or a path to a store (anything with a '/' or ending .zarr)."""
    text = str(text).strip()
    if not text:
        raise DaguerreError("empty dataset reference")
    if looks_like_path(text):
        return DatasetRef(path=user_path(text))
    name, _, version = text.partition("@")
    check_name(name)
    if "@" in text and not version:
        raise DaguerreError(f"dataset reference {text!r}: nothing after '@'")
    return DatasetRef(name=name, version=version or None)


def resolve(ref: str | DatasetRef | os.PathLike) -> Path:
    """Find the store a reference points to: a path as is, a name or tag through the catalog.

    A ``Path`` (any ``os.PathLike``) is a store path, even one without a '/' or a ``.zarr`` suffix:
    read as text, ``Path("train")`` would open the catalog's ``train`` instead."""
    if isinstance(ref, os.PathLike):
        ref = DatasetRef(path=user_path(ref))
    r = ref if isinstance(ref, DatasetRef) else parse_ref(str(ref))
    if r.path is not None:
        if not r.path.exists():
            raise DaguerreError(f"no dataset at {r.path}")
        return r.path
    from .catalog import Catalog  # (which imports this module)

    cat = Catalog()
    try:
        return Path(cat.resolve(r).path)
    finally:
        cat.close()


def version_number(version: str) -> int | None:
    m = VERSION_RE.match(version)
    return int(m.group(1)) if m else None


def reads_as_version(text: str) -> bool:
    """Whether ``text`` is ``v`` and digits in any spelling (``v2``, ``V2``, ``v02``, ``v0``), which a user reads as a
    version number: not a tag, though only ``vN`` parses as one."""
    return re.fullmatch(r"[vV][0-9]+", text) is not None


def dataset_dir(name: str) -> Path:
    return datasets_root() / check_name(name)
