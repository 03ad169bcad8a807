"""Where trained models live: ``$DAGUERRE_HOME/models/NAME.{safetensors,json}`` and the shipped weights."""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from degrade.errors import DaguerreError
from degrade.filekind import BROKEN_LINK, DEVICE, MISSING, read_json, read_regular, refusal, what_is
from pipelines.refs import NAME_RE, daguerre_home

# zoo.checkpoint (and torch with it) is imported by the functions that read weights: `zoo ls` and `zoo info` read
# only the cards and the safetensors headers
SHIPPED = Path(__file__).resolve().parent / "weights"
CARD_KEY = "daguerre_card"


def stem_of(path: str | Path) -> Path:
    p = Path(path)
    return p.with_suffix("") if p.suffix in (".safetensors", ".json") else p


def with_ext(stem: Path, ext: str) -> Path:
    """``stem`` + ``ext``, keeping every dot of the name (``with_suffix`` made ``v2.new`` into ``v2.safetensors``)."""
    return stem.with_name(stem.name + ext)


def card_of(st: Path, meta: dict[str, Any]) -> dict[str, Any]:
    """The card of checkpoint ``st``: from its header's metadata ``meta``, else from the .json beside it."""
    card_text = meta.get(CARD_KEY)
    js = with_ext(stem_of(st), ".json")
    if card_text is None and (kind := what_is(js)) not in (MISSING, BROKEN_LINK):
        if kind:  # a FIFO blocked `zoo info` and `restore` for ever
            raise DaguerreError(f"{js} is {refusal(kind)}")
        try:
            card_text = read_regular(js).decode("utf-8")
        except UnicodeDecodeError:  # an internal UnicodeDecodeError for `zoo info` and `restore`
            raise DaguerreError(f"{js}: the card is not valid JSON (not UTF-8 text)") from None
    if card_text is None:
        raise DaguerreError(f"{st} has no daguerre card (not a daguerre checkpoint)")
    try:
        card = json.loads(card_text)
    except (ValueError, TypeError, RecursionError):  # RecursionError: nested thousands deep; TypeError: not a string
        raise DaguerreError(f"{st}: the card is not valid JSON") from None
    if not isinstance(card, dict):
        raise DaguerreError(f"{st}: the card is not a JSON object")
    return card


def models_dir() -> Path:
    return daguerre_home() / "models"


def register(name: str, tensors, card: dict[str, Any], replace: bool = False) -> Path:
    """Save a checkpoint under ``name`` in the model store.

    A name already in the store is kept unless ``replace`` or the new card comes from the same training
    run (``run``: a re-run of a finished stage re-registers it); a shipped model's name only with ``replace``.
    """
    from . import checkpoint

    check_name(name)
    with store_lock():  # a `zoo rm` of the same name cannot set aside half of the pair being written
        check_free(name, card.get("run"), replace)
        return checkpoint.save(models_dir() / name, tensors, {**card, "name": name})


def check_name(name: str, hint: str = "") -> None:
    """Refuse what cannot be a model's name; one ending in ``.json`` or ``.safetensors`` was saved without
    it (``x.json`` as ``x.safetensors``), over model ``x``, without a word."""
    if not NAME_RE.match(name) or name.endswith((".json", ".safetensors")):
        raise DaguerreError(f"invalid model name {name!r}: letters, digits, '.', '_' or '-', not ending in .json or .safetensors{hint}")


LOCK_WAIT = 60.0
"""Seconds :func:`store_lock` waits for another process's register or remove (each holds it for an instant)."""


@contextmanager
def store_lock() -> Iterator[None]:
    """Exclusive right to change the model store's files (:func:`register`, :func:`remove`): an flock on
    ``models/.lock`` (released by the kernel if the process dies), waited for up to :data:`LOCK_WAIT` seconds."""
    from pipelines.catalog import file_lock

    d = models_dir()
    with file_lock(d / ".lock", f"the model store {d} is being changed by another process", LOCK_WAIT,
                   unwritable=f"the model store {d} cannot be written"):  # fmt: skip
        yield


def check_writable() -> None:
    """Refuse, before any work, a model store that cannot be written (a read-only ``$DAGUERRE_HOME``): a
    training run found out only when it registered, after its last step."""
    import tempfile

    d = models_dir()
    try:
        d.mkdir(parents=True, exist_ok=True)
        tempfile.TemporaryFile(dir=d).close()
    except OSError as e:
        raise DaguerreError(f"the model store {d} cannot be written ({e.strerror or e})") from None


def check_free(name: str, run: str | None = None, replace: bool = False) -> None:
    """Refuse, before any work, a name that :func:`register` would refuse."""
    from . import checkpoint

    if (SHIPPED / f"{name}.safetensors").exists() and not replace:  # make train-default does it on purpose
        raise DaguerreError(f"{name!r} is the name of a shipped model, which a store model of that name would hide; "
                            f"choose another name, or pass --replace to hide it on purpose")  # fmt: skip
    stem = models_dir() / name
    if checkpoint.with_ext(stem, ".safetensors").exists() and not replace:
        try:
            old = json.loads(checkpoint.with_ext(stem, ".json").read_text())
        except (OSError, ValueError, RecursionError):
            old = {}
        if not isinstance(old, dict) or not old:  # the card file lost (a kill between a save's two writes): the header's
            try:
                old = checkpoint.load(stem)[1]
            except DaguerreError:
                old = {}
        if not (run and old.get("run") == run):
            raise DaguerreError(f"model {name!r} is already registered (a {old.get('stage') or old.get('model') or '?'}, "
                                f"saved {old.get('saved', '?')}); choose another name, or replace it with --replace")  # fmt: skip


def resolve(ref: str | Path, model: str | None = None) -> Path:
    """A model name (store first, then shipped weights) or a checkpoint path, to its .safetensors path.
    ``model``: the kind wanted (``bundle``…), so that an unknown name lists only those."""
    s = str(ref)
    p = stem_of(s)
    if "/" in s or s.endswith((".safetensors", ".json")):
        st = with_ext(p, ".safetensors")
        if not st.exists():
            kind = what_is(s)
            if kind is None:
                raise DaguerreError(f"{s} is not a .safetensors checkpoint (daguerre reads no other format, never a pickle)")
            if kind in (BROKEN_LINK, DEVICE):  # its checkpoint moved away (or links that loop); /dev/null, a FIFO: read as nothing
                raise DaguerreError(f"{s} is {refusal(kind)}, not a checkpoint")
            raise DaguerreError(f"no checkpoint at {st}")
        return st
    for root in (models_dir(), SHIPPED):
        q = root / f"{s}.safetensors"
        if q.exists():
            return q
    have = sorted({c["name"] for c in cards() if model is None or c.get("model") == model})
    what = f"{model}s" if model else "models"
    raise DaguerreError(f"unknown model {s!r} ({what}: {', '.join(have) or 'none'}; see `daguerre zoo ls`)")


def load(ref: str | Path, expected: str, option: str = "", stage: str | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
    """(tensors, card) of a stored checkpoint that must hold a ``expected`` model (trained as ``stage``, if
    given: a VAE2 shares VAE1's architecture, not its latent space); ``option`` names where it was given."""
    from . import checkpoint

    tensors, card = checkpoint.load(resolve(ref, expected))
    where = f"{option} {ref}" if option else str(ref)
    if stage is not None and card.get("model") == expected and card.get("stage") not in (None, stage):
        raise DaguerreError(f"{where} was trained as {card.get('stage')}, not {stage}")
    if card.get("model") != expected:
        if card.get("kind") == "training-state":
            raise DaguerreError(f"{where} is a run's training state, not a trained {expected!r} model: give a registered model (daguerre zoo ls)")
        raise DaguerreError(f"{where} is a {card.get('model')!r} checkpoint, expected {expected!r}")
    if not isinstance(card.get("config"), dict):  # what the network is built from: a hand-edited card may lack it
        raise DaguerreError(f"{where}: its card has no model configuration ('config' is {card.get('config')!r})")
    return tensors, card


def _tensor_entry(v: Any, data_bytes: int) -> bool:
    """Whether ``v`` is a header's tensor entry: a shape of whole numbers and data within the ``data_bytes`` after the header."""
    if not isinstance(v, dict):
        return False
    shape, offsets = v.get("shape"), v.get("data_offsets")
    return (isinstance(shape, list) and all(type(d) is int and d >= 0 for d in shape) and isinstance(offsets, list)
            and len(offsets) == 2 and all(type(o) is int for o in offsets) and 0 <= offsets[0] <= offsets[1] <= data_bytes)


def check_checkpoint_file(st: Path) -> None:
    """Refuse a checkpoint path that is missing or not a regular file, before reading it: a link to /dev/zero in
    the model store was read until memory ran out, and a FIFO blocked for ever."""
    kind = what_is(st)
    if kind in (MISSING, BROKEN_LINK):
        raise DaguerreError(f"no checkpoint at {st}")
    if kind:
        raise DaguerreError(f"{st} is {refusal(kind)}")


def header(st: Path) -> dict[str, Any]:
    """The JSON header of safetensors file ``st`` (after its length, 8 bytes little-endian), checked against the
    file's size; read without torch or the weights."""
    check_checkpoint_file(st)
    try:
        with open(st, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            n = int.from_bytes(f.read(8), "little")
            if size < 8 or n > min(size - 8, 100_000_000):  # safetensors' own limit of a header
                raise ValueError(f"a header of {n} bytes in a file of {size}")
            h = json.loads(f.read(n))
        if not isinstance(h, dict):
            raise ValueError("the header is not a JSON object")
        bad = [k for k, v in h.items() if k != "__metadata__" and not _tensor_entry(v, size - 8 - n)]
        if bad:
            raise ValueError(f"tensor {bad[0]!r}: no shape, or data beyond the file")
    except (ValueError, OSError, RecursionError) as e:  # UnicodeDecodeError is a ValueError
        raise DaguerreError(f"{st} is not a valid safetensors checkpoint ({str(e).splitlines()[0]})") from None
    meta = h.get("__metadata__", {})
    if not isinstance(meta, dict):
        raise DaguerreError(f"{st} is not a valid safetensors checkpoint (its __metadata__ is not a JSON object)")
    return h


def info(ref: str | Path) -> dict[str, Any]:
    """A checkpoint's card with its path and parameter count (what ``zoo info`` prints), read from the header."""
    import math

    path = resolve(ref)
    h = header(path)
    card = card_of(path, h.get("__metadata__", {}))
    return {**card, "path": str(path), "parameters": sum(math.prod(v["shape"]) for k, v in h.items() if k != "__metadata__")}


def summary(card: dict[str, Any]) -> dict[str, str]:
    """What ``zoo ls`` shows of a card, tolerant of hand-edited or foreign cards (one bad card hid the rest)."""
    def refs(ds: Any) -> list[str]:
        return [str(d.get("ref") or "?") if isinstance(d, dict) else str(d) for d in ds] if isinstance(ds, list) else []

    def number(v: Any) -> bool:
        return isinstance(v, (int, float)) and not isinstance(v, bool)

    ds, parts = card.get("datasets"), card.get("parts")
    trained = ", ".join(refs(ds))
    if not trained and isinstance(parts, dict):  # a bundle: the datasets its parts were trained on (it lists the parts' roles otherwise)
        seen = dict.fromkeys(r for p in parts.values() if isinstance(p, dict) for r in refs(p.get("datasets")))
        trained = ", ".join(seen) or ", ".join(sorted(map(str, parts)))
    metrics = card.get("metrics") or card.get("losses")
    metrics = metrics if isinstance(metrics, dict) else {}
    if any(isinstance(v, dict) for v in metrics.values()):  # a bundle's held-out metrics, per test set: its PSNR gain and F1 on each
        shown = " ".join(f"{k}: {'/'.join(f'{m}={v[m]:.3g}' for m in ('gain_psnr', 'detection_f1') if number(v.get(m)))}"
                         for k, v in metrics.items() if isinstance(v, dict))  # fmt: skip
    else:
        shown = " ".join(f"{k}={v:.3g}" for k, v in list(metrics.items())[:4] if number(v))
    return {"name": str(card.get("name")), "stage": str(card.get("stage") or "?"), "origin": str(card.get("origin", "?")),
            "trained_on": trained or "-", "metrics": shown}  # fmt: skip


def cards() -> list[dict[str, Any]]:
    """The cards of every stored and shipped checkpoint (with ``path`` and ``bytes`` added)."""
    out = []
    for root, origin in ((SHIPPED, "shipped"), (models_dir(), "store")):
        if not root.exists():
            continue
        for js in sorted(root.glob("*.json")):
            st = js.with_suffix(".safetensors")
            if not st.exists():
                continue
            try:  # a FIFO blocked `zoo ls`: refused unopened, an OSError
                card = read_json(js)
                size = st.stat().st_size
            except (ValueError, OSError):  # a dangling link, a folder, an unreadable or too deeply nested file: one bad card hid the rest
                continue
            if not isinstance(card, dict):
                continue
            # the file's name is what resolves (a renamed copy keeps its old name in the card)
            out.append({**card, "name": js.stem, "path": str(st), "bytes": size, "origin": origin})
    return out


REMOVING = re.compile(r"\.(.+)\.(safetensors|json)\.removing-\d+")
"""What :func:`remove` renames a model's two files to before deleting them: hidden, and neither ``*.json`` nor
``*.safetensors``, so that ``zoo ls``, ``zoo info`` and a model name never see them."""


def file_sha256(path: str | Path) -> str | None:
    """SHA-256 of a regular file's bytes, read in blocks (what a mapping pins of its VAEs, what a restore record
    holds of its input, model and outputs); None when it is not one (never a FIFO or /dev/zero) or cannot be read."""
    import hashlib

    h = hashlib.sha256()
    try:
        if what_is(path):
            return None
        with open(path, "rb") as f:
            while block := f.read(1 << 20):
                h.update(block)
    except OSError:
        return None
    return h.hexdigest()


def dependants(name: str) -> list[str]:
    """The other store models whose cards record store model ``name`` as what they were made from, each as
    ``MODEL (ROLE)``: a mapping's ``upstream`` VAEs, any model's ``upstream`` init, a bundle's parts. A record
    counts when it names this model (by store path or name) and, where it pins the file's SHA-256, these
    weights: a model retrained under the name since (``--replace``) is not what they were made from."""
    d = models_dir()
    st = d / f"{name}.safetensors"
    digest: list[str | None] = []

    def sha() -> str | None:
        if not digest:
            digest.append(file_sha256(st))
        return digest[0]

    def names_it(recorded: Any) -> bool:
        if not isinstance(recorded, str) or not recorded:
            return False
        return recorded == name or os.path.realpath(recorded) == os.path.realpath(st)

    def same(pin: Any) -> bool:
        return not isinstance(pin, str) or not pin or pin == sha()

    out = []
    for other in sorted(d.glob("*.safetensors")):
        if other.name == st.name:
            continue
        try:  # the header's card: a card file lost to a kill between a save's two writes does not hide a dependant
            card = card_of(other, header(other).get("__metadata__", {}))
        except DaguerreError:
            continue
        roles = []
        up, pins = card.get("upstream"), card.get("upstream_sha256")
        pins = pins if isinstance(pins, dict) else {}
        if isinstance(up, dict):
            roles += [str(k) for k, v in up.items() if names_it(v) and same(pins.get(k))]
        parts = card.get("parts")
        if card.get("model") == "bundle" and isinstance(parts, dict):
            roles += [f"part {k}" for k, p in parts.items() if isinstance(p, dict) and p.get("name") == name and same(p.get("sha256"))]
        if roles:
            out.append(f"{other.name[: -len('.safetensors')]} ({', '.join(roles)})")
    return out


def _regular_bytes(p: Path) -> int:
    """The bytes that deleting ``p`` frees: a regular file's size; nothing for a link (its target stays)."""
    import stat

    try:
        s = os.lstat(p)
    except FileNotFoundError:
        return 0
    return s.st_size if stat.S_ISREG(s.st_mode) else 0


def _set_aside(p: Path, aside: Path) -> None:
    os.rename(p, aside)  # a link is renamed itself, never followed


def _delete(paths: list[Path]) -> None:
    for p in paths:
        try:
            os.unlink(p)  # a link is removed, never its target
        except FileNotFoundError:
            pass


def _unknown(name: str, d: Path) -> DaguerreError:
    """The refusal of a name that is not in the store: a shipped model's, or one with the store's close matches."""
    import difflib

    if (SHIPPED / f"{name}.safetensors").exists():
        return DaguerreError(f"{name!r} is a shipped model ({SHIPPED}), not in the model store: zoo rm removes only registered models")
    have = sorted(q.name[: -len(".safetensors")] for q in d.glob("*.safetensors")) if d.is_dir() else []
    hint = difflib.get_close_matches(name, have, n=3)
    more = f" (did you mean {', '.join(hint)}?)" if hint else " (see `daguerre zoo ls`)"
    return DaguerreError(f"no model {name!r} in the store {d}{more}")


def remove(name: str, force: bool = False) -> dict[str, Any]:
    """Delete store model ``name`` (both files), refusing one that other store models were made from
    (:func:`dependants`) unless ``force``.

    Under :func:`store_lock`, the weights are renamed aside first (from then on the model is gone for
    ``resolve``, ``zoo ls`` and ``zoo info``), then the card, then both are deleted: a run cut short leaves hidden
    ``.NAME.*.removing-…`` files (and maybe ``NAME.json`` alone), which the next ``remove`` of any model deletes,
    of ``name`` too once it is gone. Returns the name, the files deleted with their bytes, the dependants (removed
    with ``force``), whether it finished an earlier remove and whether a shipped model of that name shows again."""
    if "/" in name or name.endswith((".safetensors", ".json")) or name in (".", ".."):
        raise DaguerreError(f"zoo rm takes a model name from `daguerre zoo ls`, not a path or file: {name}")
    check_name(name)
    d = models_dir()
    st = d / f"{name}.safetensors"
    if not d.is_dir():
        raise _unknown(name, d)
    with store_lock():
        leftovers = [p for p in sorted(d.iterdir()) if REMOVING.fullmatch(p.name) and not _is_folder(p)]
        owners = {REMOVING.fullmatch(p.name).group(1) for p in leftovers}  # type: ignore[union-attr]
        there = os.path.lexists(st)
        if not there and name not in owners:
            raise _unknown(name, d)
        if there and _is_folder(st):
            raise DaguerreError(f"{st} is a folder, not a checkpoint: remove it by hand")
        found = dependants(name) if there else []
        if found and not force:
            raise DaguerreError(f"model {name!r} is recorded as what other models were made from: {', '.join(found)}; "
                                f"remove those first, or pass --force")  # fmt: skip
        stamp, doomed = time.time_ns(), []
        for p, ext in ((st, "safetensors"), (d / f"{name}.json", "json")) if there else ():  # the weights first: then the model is gone
            if os.path.lexists(p) and not _is_folder(p):
                aside = d / f".{name}.{ext}.removing-{stamp}"
                _set_aside(p, aside)
                doomed.append((p, aside))
        for owner in sorted(owners):  # the card an earlier remove cut short left alone, if no model took the name since
            js = d / f"{owner}.json"
            if not os.path.lexists(d / f"{owner}.safetensors") and os.path.lexists(js) and not _is_folder(js):
                doomed.append((js, js))
        doomed += [(p, p) for p in leftovers]
        files = [{"path": str(p), "bytes": _regular_bytes(a)} for p, a in doomed]
        try:
            _delete([a for _, a in doomed])
        except OSError as e:
            raise DaguerreError(f"model {name!r} is out of the store, but its files could not be deleted ({e.strerror or e}): "
                                f"the next `daguerre zoo rm` deletes them, or delete {d}/.*.removing-* by hand") from None  # fmt: skip
    return {"name": name, "files": files, "bytes": sum(f["bytes"] for f in files), "finished": not there,
            "dependants": found, "shipped": (SHIPPED / f"{name}.safetensors").exists()}


def _is_folder(p: Path) -> bool:
    """A real folder (not a link to one): never what a model's file is, never deleted here."""
    return p.is_dir() and not p.is_symlink()
