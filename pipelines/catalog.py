"""The dataset catalog: an embedded SQLite database of immutable versions, their identities and tags.

A version is registered in one transaction, after its data is complete and renamed into
place, so readers (which resolve names only through the catalog) never see half a version; a
crash between the rename and the commit leaves an unreferenced directory that ``gc`` removes
(or that the same ``create`` command adopts). Creation of a name is serialised by a lock file
(``flock``, released by the kernel if the process dies), the catalog itself by SQLite.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import re
import shutil
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from degrade.errors import DaguerreError

from .layout import read_attrs, write_attrs
from .refs import NAME_RE, DatasetRef, check_name, daguerre_home, dataset_dir, parse_ref, reads_as_version, user_path, version_number

_SCHEMA = """
CREATE TABLE IF NOT EXISTS versions (
    name TEXT NOT NULL,
    number INTEGER NOT NULL,
    path TEXT NOT NULL,
    kind TEXT NOT NULL,
    count INTEGER NOT NULL,
    size INTEGER NOT NULL,
    recipe_name TEXT,
    recipe_hash TEXT,
    lineage_hash TEXT NOT NULL,
    checksum TEXT NOT NULL,
    identity TEXT NOT NULL,
    created TEXT NOT NULL,
    bytes INTEGER NOT NULL,
    PRIMARY KEY (name, number)
);
CREATE TABLE IF NOT EXISTS numbers (
    name TEXT PRIMARY KEY,
    last INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS tags (
    name TEXT NOT NULL,
    tag TEXT NOT NULL,
    number INTEGER NOT NULL,
    created TEXT NOT NULL,
    PRIMARY KEY (name, tag)
);
CREATE TABLE IF NOT EXISTS removals (
    path TEXT PRIMARY KEY,
    started TEXT NOT NULL
);
"""
_COLUMNS = {
    table: set(re.findall(r"^    ([a-z_]+) [A-Z]+", body, re.M))
    for table, body in re.findall(r"CREATE TABLE IF NOT EXISTS (\w+) \((.*?)\n\);", _SCHEMA, re.S)
}
"""Each table's columns, read from the schema above."""


def identity(lineage_hash: str, checksum: str) -> str:
    """A version's identity: its lineage and the checksums of its decoded data, hashed together."""
    return hashlib.sha256(f"{lineage_hash}:{checksum}".encode()).hexdigest()


def disk_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


@dataclass
class Removal:
    """What ``Catalog.remove`` removed: the version, those still recorded as made from it (``force``), and whether its
    data had already gone (deleted by hand)."""

    version: Version
    dependants: list[str]
    data_was_gone: bool


@dataclass
class Version:
    """One catalog row, plus its tags."""

    name: str
    number: int
    path: str
    kind: str
    count: int
    size: int
    recipe_name: str | None
    recipe_hash: str | None
    lineage_hash: str
    checksum: str
    identity: str
    created: str
    bytes: int
    tags: tuple[str, ...] = ()

    @property
    def version(self) -> str:
        return f"v{self.number}"

    @property
    def ref(self) -> str:
        return f"{self.name}@{self.version}"

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["version"] = self.version
        d["tags"] = list(self.tags)
        return d


class Catalog:
    """The catalog under ``$DAGUERRE_HOME`` (``catalog.sqlite``)."""

    def __init__(self, home: Path | None = None) -> None:
        self.home = Path(home) if home else daguerre_home()
        self.home.mkdir(parents=True, exist_ok=True)
        self.path = self.home / "catalog.sqlite"
        self.db = None
        try:
            self.db = sqlite3.connect(self.path, timeout=60, isolation_level=None)
            self.db.row_factory = sqlite3.Row
            self.db.executescript(_SCHEMA)
            check = self.db.execute("PRAGMA quick_check").fetchone()[0]  # pages a power cut zeroed fail only when read
            if check != "ok":
                raise sqlite3.DatabaseError(" ".join(check.split()))
            lacking = {t: c - {r[1] for r in self.db.execute(f"PRAGMA table_info({t})")} for t, c in _COLUMNS.items()}
        except sqlite3.DatabaseError as e:
            if self.db is not None:
                self.db.close()
            raise DaguerreError(f"the catalog {self.path} is unreadable ({e})") from None
        for table, missing in lacking.items():  # a table of that name made by something else
            if missing:
                self.db.close()
                raise DaguerreError(f"the catalog {self.path} is not daguerre's: its table {table!r} lacks {', '.join(sorted(missing))}")

    def close(self) -> None:
        self.db.close()

    def check_writable(self) -> None:
        """Fail now, naming the catalog, rather than after a whole generation (read-only home or file)."""
        try:
            self.db.execute("BEGIN IMMEDIATE")
            try:
                self.db.execute("INSERT OR REPLACE INTO numbers VALUES ('', 0)")  # a real write, rolled back
            finally:
                if self.db.in_transaction:  # SQLite rolls back by itself after an I/O error or a full disk
                    self.db.execute("ROLLBACK")
        except sqlite3.OperationalError as e:
            raise DaguerreError(f"the catalog {self.path} cannot be written ({e})") from None

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """BEGIN IMMEDIATE … COMMIT: writers are serialised, a failure rolls everything back. SQLite's own
        failures (a full disk, a file-size limit, a lock held past the timeout) name the catalog: the rollback
        after one, which SQLite may have done itself, hid it behind "cannot rollback - no transaction is active"."""
        try:
            self.db.execute("BEGIN IMMEDIATE")
            try:
                yield self.db
            except BaseException:
                if self.db.in_transaction:
                    self.db.execute("ROLLBACK")
                raise
            self.db.execute("COMMIT")
        except sqlite3.OperationalError as e:
            if self.db.in_transaction:  # a COMMIT refused (busy): still open, holding the write lock and the rows
                with suppress(sqlite3.Error):
                    self.db.execute("ROLLBACK")
            raise DaguerreError(f"the catalog {self.path} cannot be written ({e}); nothing was changed in it") from None

    # -- reading ------------------------------------------------------------------------------
    def _row(self, r: sqlite3.Row) -> Version:
        tags = tuple(t[0] for t in self.db.execute(
            "SELECT tag FROM tags WHERE name=? AND number=? ORDER BY tag", (r["name"], r["number"])))  # fmt: skip
        return Version(**{k: r[k] for k in r.keys() if k != "path"}, path=self._where(r["name"], r["number"], r["path"]), tags=tags)

    def _recorded(self, store: Path) -> str:
        """How a store's place is recorded: under ``datasets/``, relative to the home (which may be moved
        or copied whole); a ``--store`` elsewhere, absolute."""
        home, where = os.path.abspath(self.home), os.path.abspath(store)
        return os.path.relpath(where, home) if where.startswith(os.path.join(home, "datasets") + os.sep) else where

    def _where(self, name: str, number: int, recorded: str) -> str:
        """The absolute path of a recorded place (see :meth:`_recorded`)."""
        home = self.home.absolute()
        if not os.path.isabs(recorded):
            return str(home / recorded)
        managed = home / "datasets" / name / f"v{number}.zarr"  # catalogs from before relative places recorded
        if recorded.endswith(os.sep + os.path.join("datasets", name, f"v{number}.zarr")) and managed.exists():
            return str(managed)  # the home's own copy, wherever the home was when it was registered
        return recorded

    def versions(self, name: str | None = None) -> list[Version]:
        q, args = "SELECT * FROM versions", ()
        if name is not None:
            q, args = q + " WHERE name=?", (name,)
        return [self._row(r) for r in self.db.execute(q + " ORDER BY name, number", args)]

    def get(self, name: str, number: int) -> Version | None:
        r = self.db.execute("SELECT * FROM versions WHERE name=? AND number=?", (name, number)).fetchone()
        return self._row(r) if r else None

    def resolve(self, ref: str | DatasetRef) -> Version:
        """``NAME`` (newest), ``NAME@vN`` or ``NAME@TAG`` to a registered version."""
        r = ref if isinstance(ref, DatasetRef) else parse_ref(str(ref))
        if r.path is not None:
            raise DaguerreError(f"{r.path} is a store path, not a catalog reference")
        rows = self.versions(r.name)
        if not rows:
            raise DaguerreError(f"unknown dataset {r.name!r} (see `daguerre dataset ls`)")
        if r.version is None:
            return rows[-1]
        n = version_number(r.version)
        if n is not None:
            for v in rows:
                if v.number == n:
                    return v
            raise DaguerreError(f"dataset {r.name!r} has no version {r.version} (it has {', '.join(v.version for v in rows)})")
        t = None
        if NAME_RE.match(r.version):  # a tag has a name's form (and bytes that are not UTF-8 cannot reach SQLite)
            t = self.db.execute("SELECT number FROM tags WHERE name=? AND tag=?", (r.name, r.version)).fetchone()
        if t is None:
            tags = sorted({tag for v in rows for tag in v.tags})
            have = f"its tags: {', '.join(tags)}" if tags else "it has no tags"
            raise DaguerreError(f"dataset {r.name!r} has no version or tag {r.version!r} ({have})")
        v = self.get(r.name, t[0])
        if v is None:  # left by a tag that raced an rm (catalogs from before tag checked inside its transaction)
            raise DaguerreError(f"tag {r.name}@{r.version} points at v{t[0]}, which was removed; untag it")
        return v

    def find_lineage(self, name: str, lineage_hash: str) -> Version | None:
        r = self.db.execute(
            "SELECT * FROM versions WHERE name=? AND lineage_hash=? ORDER BY number LIMIT 1", (name, lineage_hash)
        ).fetchone()
        return self._row(r) if r else None

    def referenced_paths(self) -> set[str]:
        """Registered stores, symlinks resolved: the same home reached by another path is the same data."""
        return {os.path.realpath(v.path) for v in self.versions()}

    # -- writing ------------------------------------------------------------------------------
    def register(self, name: str, store: Path, final: Path | None = None) -> Version:
        """Register a complete store as the next version of ``name`` (numbers are never reused) and move it into place.

        ``final`` is the external ``--store`` path; otherwise ``datasets/NAME/vN.zarr``. The
        rename happens inside the transaction: if anything fails before COMMIT, nothing is
        registered and the data stays (unreferenced) for ``gc``.
        """
        check_name(name)
        attrs = read_attrs(store)
        if not attrs.get("complete"):
            raise DaguerreError(f"{store} is not complete; only complete data is registered")
        nbytes = disk_bytes(store)
        with self.transaction() as db:
            # a removed version's number is never given again: a recorded NAME@vN keeps meaning one dataset
            last = db.execute("SELECT last FROM numbers WHERE name=?", (name,)).fetchone()
            number = max(db.execute("SELECT MAX(number) FROM versions WHERE name=?", (name,)).fetchone()[0] or 0, last[0] if last else 0) + 1
            db.execute("INSERT OR REPLACE INTO numbers VALUES (?,?)", (name, number))
            target = final if final is not None else dataset_dir(name) / f"v{number}.zarr"
            if target.exists() and target.resolve() != store.resolve():
                if os.path.realpath(target) in self.referenced_paths():
                    raise DaguerreError(f"{target} already holds a registered dataset")
                # an unregistered leftover of a crash: set it aside for gc
                os.rename(target, target.parent / f".trash-{target.name}-{time.time_ns()}")
            attrs.update(name=name, version=f"v{number}", identity=identity(attrs["lineage_hash"], attrs["checksum"]))
            write_attrs(store, attrs)
            if target.resolve() != store.resolve():
                from degrade.io import fsync_dir  # (OpenCV, numpy: not for the catalog's readers)

                target.parent.mkdir(parents=True, exist_ok=True)
                os.rename(store, target)
                for d in {target.parent, store.parent}:  # the move is on disk before the catalog records it
                    fsync_dir(d)
            recipe_name = (attrs.get("recipe") or {}).get("name") or None
            db.execute(
                "INSERT INTO versions VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (name, number, self._recorded(target), attrs["kind"], attrs["count"], attrs["size"], recipe_name,
                 attrs.get("recipe_hash"), attrs["lineage_hash"], attrs["checksum"], attrs["identity"], attrs.get("created") or now(),
                 nbytes),
            )  # fmt: skip
        return self.get(name, number)

    def tag(self, ref: str, tag: str) -> Version:
        v = self.resolve(ref)
        if not NAME_RE.match(tag) or reads_as_version(tag) or tag.endswith(".zarr"):  # NAME@T.zarr reads as a path
            raise DaguerreError(f"invalid tag {tag!r}: letters, digits, '.', '_', '-', not v and digits in any spelling "
                                f"(v2, V2, v02: a version) nor ending in .zarr")  # fmt: skip
        with self.transaction() as db:
            if db.execute("SELECT 1 FROM versions WHERE name=? AND number=?", (v.name, v.number)).fetchone() is None:
                raise DaguerreError(f"{v.ref} was removed meanwhile; nothing tagged")  # an rm between resolve and here
            old = db.execute("SELECT number FROM tags WHERE name=? AND tag=?", (v.name, tag)).fetchone()
            if old is not None and old[0] != v.number:
                raise DaguerreError(f"tag {v.name}@{tag} already points at v{old[0]}; untag it first")
            db.execute("INSERT OR REPLACE INTO tags VALUES (?,?,?,?)", (v.name, tag, v.number, now()))
        return self.get(v.name, v.number)

    def untag(self, name: str, tag: str) -> None:
        with self.transaction() as db:
            if not NAME_RE.match(tag) or db.execute("DELETE FROM tags WHERE name=? AND tag=?", (name, tag)).rowcount == 0:
                raise DaguerreError(f"dataset {name!r} has no tag {tag!r}")

    def derived_from(self, v: Version) -> list[str]:
        """The other registered versions made from ``v``'s clean tiles: a source recorded as ``dataset:NAME@vN``
        or as its store's path (``reproduce`` of them needs ``v``)."""
        here = os.path.realpath(v.path)
        out = []
        for w in self.versions():
            try:
                spec = (read_attrs(w.path).get("source") or {}).get("spec")
            except (OSError, ValueError, AttributeError):
                continue  # data gone or damaged: verify's finding, not rm's
            if w.ref != v.ref and isinstance(spec, str) and spec.startswith("dataset:"):
                if spec == f"dataset:{v.ref}" or os.path.realpath(user_path(spec[len("dataset:"):])) == here:
                    out.append(w.ref)
        return out

    def remove(self, ref: str, force: bool = False) -> Removal:
        """Unregister a version (refusing, without ``force``, a tagged one or one that others were made from),
        then delete its data."""
        v = self.resolve(ref)
        doomed = Path(v.path)
        gone = not os.path.lexists(doomed)  # deleted by hand: nothing is freed, whatever the record says
        aside = doomed.parent / f".{doomed.name}.removing-{time.time_ns()}"
        outside = os.path.isabs(self._recorded(doomed))  # a --store: gc finds it only through this record
        # a --store path is the user's: what was put there since (the store deleted by hand) is not deleted
        foreign = outside and not gone and not holds_version(doomed, v)
        with self.transaction() as db:
            tags = [t[0] for t in db.execute("SELECT tag FROM tags WHERE name=? AND number=? ORDER BY tag", (v.name, v.number))]
            if tags and not force:  # read inside the transaction: a tag added since resolve counts too
                raise DaguerreError(f"{v.ref} is tagged ({', '.join(tags)}); use --force to remove it anyway")
            made = self.derived_from(v)
            if made and not force:  # inside the transaction too: no version can be registered meanwhile
                raise DaguerreError(f"{v.ref} is the source of {', '.join(made)} (`reproduce` of them needs it); "
                                    f"use --force to remove it anyway")  # fmt: skip
            db.execute("DELETE FROM tags WHERE name=? AND number=?", (v.name, v.number))
            db.execute("DELETE FROM versions WHERE name=? AND number=?", (v.name, v.number))
            if outside and not foreign:
                db.execute("INSERT OR REPLACE INTO removals VALUES (?,?)", (str(aside), now()))
        if foreign:
            raise DaguerreError(f"{v.ref} is unregistered, but {doomed} was left in place: its attributes are unreadable or "
                                f"name another dataset (something else is at that path now); delete it by hand if it is not needed")  # fmt: skip
        # after COMMIT: a crash here leaves garbage for gc, not a dangling entry; renamed first, so that a
        # half-deleted store never sits at a path that the same create would adopt (vN.zarr, --store PATH)
        try:
            discard(doomed, aside)
        except FileNotFoundError:
            pass
        except OSError as e:  # unregistered, but the data stays: say where
            left = aside if aside.exists() else doomed
            raise DaguerreError(f"{v.ref} is unregistered, but its data could not be deleted ({e.strerror or e}): "
                                f"{'run `daguerre dataset gc` again later or ' if left == aside else ''}delete {left} by hand") from None  # fmt: skip
        if outside:
            with self.transaction() as db:
                db.execute("DELETE FROM removals WHERE path=?", (str(aside),))
        return Removal(v, made, gone)

    def removals(self, prune: bool = False) -> list[Path]:
        """Hidden ``.NAME.removing-…`` folders of ``--store`` versions whose ``rm`` was cut short (outside
        ``datasets/``, so only this record leads ``gc`` to them). ``prune``: drop the records whose folder is
        gone, once they are a minute old (an ``rm`` records its folder an instant before renaming the store to it)."""
        rows = [(Path(r[0]), r[1]) for r in self.db.execute("SELECT path, started FROM removals ORDER BY path")]
        there = [p for p, _ in rows if os.path.lexists(p)]
        if prune:
            cutoff = (datetime.now(timezone.utc) - timedelta(seconds=60)).isoformat(timespec="seconds")
            gone = [(str(p),) for p, started in rows if p not in there and started < cutoff]
            if gone:
                with self.transaction() as db:
                    db.executemany("DELETE FROM removals WHERE path=?", gone)
        return [p for p in there if REMOVING.fullmatch(p.name)]


# -- creation lock ----------------------------------------------------------------------------
@contextmanager
def file_lock(path: Path, busy: str, wait: float = 1.0, unwritable: str | None = None) -> Iterator[None]:
    """Hold an exclusive flock on ``path`` (created if needed; a planted link is refused, never truncated) or fail
    after ``wait`` seconds with ``busy`` (the holder's pid appended). The default second is for ``is_locked``'s probe,
    which holds the lock for an instant. ``unwritable``: the error (the reason appended) when the lock cannot be made.
    A holder may delete the file (and its emptied folder) before it lets go: the lock of a deleted file is let go and
    the one now at ``path`` taken instead."""
    deadline = time.monotonic() + wait
    while True:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)
        except OSError as e:
            if isinstance(e, FileNotFoundError) and time.monotonic() < deadline:
                time.sleep(0.01)
                continue  # the folder was removed between the two calls
            if unwritable is None:
                raise
            raise DaguerreError(f"{unwritable} ({e.strerror or e})") from None
        try:
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() > deadline:
                        holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "?"
                        raise DaguerreError(f"{busy} (pid {holder}); wait for it to finish") from None
                    time.sleep(0.05)
        except BaseException:
            os.close(fd)
            raise
        if _is_at(fd, path):
            break
        os.close(fd)
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        yield
    finally:
        os.close(fd)  # closing releases the flock


def _is_at(fd: int, path: Path) -> bool:
    """Whether the open file ``fd`` is the one at ``path`` (not one deleted since it was opened)."""
    try:
        here = os.stat(path, follow_symlinks=False)
    except FileNotFoundError:
        return False
    there = os.fstat(fd)
    return (here.st_dev, here.st_ino) == (there.st_dev, there.st_ino)


@contextmanager
def creation_lock(name: str) -> Iterator[None]:
    """Exclusive right to create versions of ``name``; a second creator fails within a second, clearly. A dataset
    folder made for it that holds only the lock at the end (a create that failed before writing, or one into a
    ``--store``) is removed."""
    d = dataset_dir(name)
    made = not d.exists()
    with file_lock(d / ".lock", f"dataset {name!r} is being created by another process"):
        try:
            yield
        finally:
            if made:
                drop_if_only_lock(d)


def only_lock(d: Path, going: set[Path] | frozenset = frozenset()) -> bool:
    """Whether the folder ``d`` holds nothing but its ``.lock`` once ``going`` is removed (False once it is gone:
    a create's end, or another gc, may remove it at any moment)."""
    try:
        return all(p.name == ".lock" or p in going for p in d.iterdir())
    except OSError:
        return False


def drop_if_only_lock(d: Path) -> bool:
    """Delete the dataset folder ``d`` if it holds nothing but its ``.lock``, which the caller holds; whether it did."""
    if not only_lock(d):
        return False
    try:
        (d / ".lock").unlink(missing_ok=True)
        d.rmdir()  # fails if a create has made its own lock here meanwhile: then it stays
    except OSError:
        return False
    return True


@contextmanager
def store_lock(store: Path) -> Iterator[None]:
    """Exclusive right to generate into the ``--store`` path ``store``, whatever the dataset's name (the lock
    lives in ``$DAGUERRE_HOME/locks``, not next to the user's store)."""
    key = hashlib.sha256(os.path.realpath(store).encode()).hexdigest()[:32]
    with file_lock(daguerre_home() / "locks" / f"store-{key}.lock", f"{store} is being generated by another process"):
        yield


def scratch_dir(home: Path | None = None) -> Path:
    """Where ``reproduce`` regenerates (one locked folder each); ``gc`` removes the unlocked ones."""
    return (home or daguerre_home()) / "scratch"


def is_locked(name: str) -> bool:
    """Whether a create of ``name`` holds its lock now (probed by taking it for an instant)."""
    return lock_held(dataset_dir(name) / ".lock")


def lock_held(p: Path) -> bool:
    """Whether some process holds the flock of ``p`` now (probed by taking it for an instant)."""
    try:
        fd = os.open(p, os.O_RDWR)
    except FileNotFoundError:  # also one deleted by the holder of its lock an instant ago
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return False
    except BlockingIOError:
        return True
    finally:
        os.close(fd)


def discard(p: Path, aside: Path) -> None:
    """Rename ``p`` to the hidden ``aside``, then delete it: a delete cut short never leaves a half-deleted
    store where a create would resume or adopt it, only hidden garbage."""
    if p != aside:
        os.rename(p, aside)
    shutil.rmtree(aside) if aside.is_dir() else aside.unlink()


def garbage(catalog: Catalog, held: Path | None = None) -> list[Path]:
    """Data under ``datasets/`` that no catalog entry references (crash leftovers, unfinished runs), and
    the scratch copies of killed ``reproduce`` runs.

    ``held``: a dataset folder whose creation lock this process holds: only its garbage is listed."""
    root = catalog.home / "datasets"
    refs = catalog.referenced_paths()

    def holds_data(p: Path) -> bool:  # a registered store, inside one, or a folder holding one (a --store path)
        a = os.path.realpath(p)
        return any(r == a or r.startswith(a + os.sep) or a.startswith(r + os.sep) for r in refs)

    def dataset_folder(d: Path) -> bool:  # NAME/ holding vN.zarr; not something else, nor a folder around a --store
        if not NAME_RE.match(d.name) or d.name.endswith(".zarr"):
            return False
        return not holds_data(d) or any(os.path.dirname(r) == os.path.realpath(d) for r in refs)

    out = []
    folders = [held] if held is not None else sorted(p for p in (root.iterdir() if root.exists() else ()) if p.is_dir())
    for d in (d for d in folders if dataset_folder(d)):
        busy = held is None and is_locked(d.name)
        for p in sorted(d.iterdir()):
            if p.name == ".lock":
                continue
            unfinished = p.name.startswith((".partial-", ".init-")) or ".init-" in p.name
            if unfinished and busy:
                continue  # a create is running right now
            if not holds_data(p):
                out.append(p)
    scratch = scratch_dir(catalog.home)
    if held is None and scratch.is_dir():  # copies that a killed `reproduce` left (a minute's grace: one made an instant ago takes its lock next)
        now = time.time()
        out += [p for p in sorted(scratch.iterdir()) if now - p.lstat().st_mtime > 60 and not lock_held(p / ".lock")]
    if held is None:
        out += catalog.removals()
    return out


def lock_only_folders(catalog: Catalog, going: set[Path] | frozenset = frozenset()) -> list[Path]:
    """Dataset folders under ``datasets/`` that hold nothing but a lock no process holds (left by a create that failed
    early, or by an ``rm`` of a name's last version), once ``going`` is removed."""
    root = catalog.home / "datasets"
    return [
        d for d in sorted(root.iterdir() if root.is_dir() else ())
        if NAME_RE.match(d.name) and not d.name.endswith(".zarr") and d.is_dir() and not d.is_symlink()
        and only_lock(d, going) and not lock_held(d / ".lock")
    ]  # fmt: skip


STORE_NAME = re.compile(r"v\d+\.zarr")
REMOVING = re.compile(r"\..+\.removing-\d+")
"""What :meth:`Catalog.remove` renames a store to before deleting it."""


def holds_version(p: Path, v: Version) -> bool:
    """Whether the store at ``p`` is version ``v`` (its attributes record ``v``'s identity)."""
    try:
        return read_attrs(p).get("identity") == v.identity
    except (OSError, ValueError, AttributeError):
        return False


def complete_store(p: Path) -> bool:
    """A published ``vN.zarr`` whose attributes are marked complete: a whole dataset, not a leftover."""
    try:
        return bool(STORE_NAME.fullmatch(p.name) and p.is_dir() and read_attrs(p).get("complete"))
    except (OSError, ValueError, AttributeError):  # unreadable (JSON nested thousands deep too): a leftover
        return False


def collect_garbage(catalog: Catalog, dry_run: bool = False, force: bool = False,
                    kept: list[Path] | None = None) -> list[tuple[Path, int]]:  # fmt: skip
    """Remove (or list) unreferenced data; returns (path, bytes).

    A complete ``vN.zarr`` that no entry lists is kept (appended to ``kept``) unless ``force``: it is a
    create that crashed before registering (re-running it adopts the store) or, with a lost or
    emptied ``catalog.sqlite``, a whole dataset that gc must not take for garbage.

    Each name's leftovers are removed under its creation lock (a create that starts meanwhile could
    resume or adopt them), each first renamed out of the way (``.gc-…``): a gc killed halfway never
    leaves a half-deleted store under a name that a create resumes or adopts."""

    def size(p: Path) -> int:
        return disk_bytes(p) if p.is_dir() else p.stat().st_size

    listed = garbage(catalog)
    if not force:
        whole = [p for p in listed if complete_store(p)]
        listed = [p for p in listed if p not in whole]
        if kept is not None:
            kept += whole
    if dry_run:
        return [(p, size(p)) for p in listed] + [(d, size(d)) for d in lock_only_folders(catalog, set(listed))]
    found = []
    scratch = scratch_dir(catalog.home)
    removing = set(catalog.removals())
    # outside datasets/, no creation lock to hold: a reproduce's own folder (unlocked: dead), an rm cut short (one still
    # running deletes alongside)
    for p in (q for q in listed if q in removing or (q.parent == scratch and not lock_held(q / ".lock"))):
        n = size(p)
        shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)
        found.append((p, n))
    catalog.removals(prune=True)  # drops the records of what is gone now
    for folder in sorted({p.parent for p in listed if p not in removing} - {scratch}):
        try:
            with file_lock(folder / ".lock", f"dataset {folder.name!r} is being created"):
                for p in garbage(catalog, held=folder):  # again: no create can start now
                    if force or not complete_store(p):
                        n = size(p)
                        discard(p, p if p.name.startswith(".gc-") else folder / f".gc-{time.time_ns()}")
                        found.append((p, n))
        except DaguerreError:  # a create of this name is running: its folder is its own
            continue
    for d in lock_only_folders(catalog):
        try:
            with file_lock(d / ".lock", f"dataset {d.name!r} is being created"):
                n = size(d)
                if drop_if_only_lock(d):
                    found.append((d, n))
        except DaguerreError:
            continue
    return found
