"""What the versioning commands compute: info, diff, verify, reproduce."""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from degrade.errors import DaguerreError, some

from .catalog import Catalog, Version, file_lock, scratch_dir
from .layout import library_versions, read_attrs, read_store
from .refs import parse_ref, resolve

if TYPE_CHECKING:
    from .reader import Dataset
    from .spec import GenerationSpec

# diff, verify and reproduce import the reader, the recipes, the generation code and the sources in their
# functions (numpy, OpenCV, Pillow, YAML, every operator): `dataset info` reads a version's attributes only.


def resolve_version(ref: str) -> Version | None:
    """The catalog entry a reference names (None for a store path); an unknown one is a DaguerreError."""
    r = parse_ref(ref)
    if r.path is not None:
        return None
    cat = Catalog()
    try:
        return cat.resolve(r)
    finally:
        cat.close()


def version_store(ref: str, v: Version | None = None) -> tuple[Path, Version | None]:
    """The store and, for catalog references, its catalog entry (``v``: already resolved)."""
    v = v or resolve_version(ref)
    return (resolve(parse_ref(ref)), None) if v is None else (resolve(v.path), v)


def open_version(ref: str, v: Version | None = None) -> tuple[Dataset, Version | None]:
    """The dataset and, for catalog references, its catalog entry (``v``: already resolved)."""
    from .reader import Dataset

    path, v = version_store(ref, v)
    return Dataset(path), v


# -- info ---------------------------------------------------------------------------------------
def info(ref: str) -> dict[str, Any]:
    path, v = version_store(ref)
    a, _ = read_store(path)  # checked as the reader checks it, without the reader (numpy)
    src = a.get("source", {})
    return {
        "ref": v.ref if v else str(path),
        "path": str(path),
        "tags": list(v.tags) if v else [],
        "kind": a.get("kind"),
        "count": a.get("count"),
        "size": a.get("size"),
        "fields": list(a["fields"]),
        "created": a.get("created"),
        "identity": a.get("identity"),
        "lineage": a.get("lineage"),
        "lineage_hash": a.get("lineage_hash"),
        "recipe_hash": a.get("recipe_hash"),
        "recipe": a.get("recipe"),
        "source": {"spec": src.get("spec"), "fingerprint": src.get("fingerprint"), "files": src.get("count"), "skipped": src.get("skipped", [])},
        "seed": a.get("seed"),
        "shard_size": a.get("shard_size"),
        "zstd_level": a.get("zstd_level"),
        "code_version": a.get("code_version"),
        "versions": a.get("versions"),
        "checksums": {"shards": len(a.get("shards", [])), "checksum": a.get("checksum")},
        "bytes": v.bytes if v else None,
    }


# -- diff ---------------------------------------------------------------------------------------
def _flatten_recipe(recipe: dict[str, Any] | None) -> dict[str, dict[str, Any]]:
    """Operator nodes by path (``steps[2].one_of[0]``) with their settings; combinator options too."""
    out: dict[str, dict[str, Any]] = {}

    def walk(node: dict[str, Any], path: str) -> None:
        kids = [(k, v) for k, v in node.items() if isinstance(v, list) and v and isinstance(v[0], dict)]
        if "op" in node:
            out[path] = dict(node)
        elif "maybe" in node:
            out[path] = {k: v for k, v in node.items() if k != "maybe"} | {"combinator": "maybe"}
            walk(node["maybe"], f"{path}.maybe")
        else:
            for key, children in kids:
                out[path] = {k: v for k, v in node.items() if k != key} | {"combinator": key}
                for i, c in enumerate(children):
                    walk(c, f"{path}.{key}[{i}]")

    for i, step in enumerate((recipe or {}).get("steps", [])):
        walk(step, f"steps[{i}]")
    return out


def recipe_diff(a: dict[str, Any] | None, b: dict[str, Any] | None) -> list[str]:
    """Operator/parameter-level differences: added, removed and changed nodes and settings."""
    fa, fb = _flatten_recipe(a), _flatten_recipe(b)
    lines = []
    def order(p: str) -> tuple:  # steps[2] before steps[10]: indices compared as numbers, not text
        return (p.count("."), [(0, int(t), "") if t.isdigit() else (1, 0, t) for t in re.split(r"(\d+)", p)])

    for path in sorted(set(fa) | set(fb), key=order):
        x, y = fa.get(path), fb.get(path)
        if x is None:
            lines.append(f"+ {path}: {y.get('op') or y.get('combinator')} {json.dumps({k: v for k, v in y.items() if k not in ('op', 'combinator')})}")
        elif y is None:
            lines.append(f"- {path}: {x.get('op') or x.get('combinator')}")
        else:
            what_x, what_y = x.get("op") or x.get("combinator"), y.get("op") or y.get("combinator")
            if what_x != what_y:
                lines.append(f"~ {path}: {what_x} -> {what_y}")
                continue
            for k in sorted(set(x) | set(y)):
                if x.get(k) != y.get(k):
                    lines.append(f"~ {path}.{k} ({what_x}): {json.dumps(x.get(k))} -> {json.dumps(y.get(k))}")
    return lines


def param_stats(ds: Dataset, limit: int = 20000) -> dict[str, dict[str, Any]]:
    """Per (operator, parameter): share of samples where applied, and mean/quantiles or frequencies."""
    import numpy as np

    if "params" not in ds.fields:
        return {}
    n = min(len(ds), limit)
    applied: dict[str, int] = defaultdict(int)
    values: dict[str, list] = defaultdict(list)
    for text in ds.read_range("params", 0, n):
        record = json.loads(text) if text else []
        for op in {e["op"] for e in record}:
            applied[op] += 1
        for e in record:
            for k, v in e["params"].items():
                if k != "seed":
                    values[f"{e['op']}.{k}"].append(v)
    out = {}
    for key, vals in sorted(values.items()):
        op = key.split(".")[0]
        entry: dict[str, Any] = {"applied": applied[op] / n}
        if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in vals):
            arr = np.asarray(vals, dtype=float)
            entry.update(mean=float(arr.mean()), p10=float(np.quantile(arr, 0.1)), p50=float(np.median(arr)), p90=float(np.quantile(arr, 0.9)))
        else:
            counts: dict[str, int] = defaultdict(int)
            for v in vals:
                counts[json.dumps(v)] += 1
            entry["freq"] = {k: c / len(vals) for k, c in sorted(counts.items())}
        out[key] = entry
    return out


def diff(ref_a: str, ref_b: str) -> dict[str, Any]:
    da, va = open_version(ref_a)
    db, vb = open_version(ref_b)
    a, b = da.attrs, db.attrs
    settings = {}
    for k in ("kind", "seed", "count", "size", "shard_size", "zstd_level", "recipe_hash", "crop", "code_version"):
        if a.get(k) != b.get(k):
            settings[k] = [a.get(k), b.get(k)]
    sa, sb = a.get("source", {}), b.get("source", {})
    files_a = {f["name"]: f["sha256"] for f in sa.get("files", [])}
    files_b = {f["name"]: f["sha256"] for f in sb.get("files", [])}
    source = {}
    skipped = [len(sa.get("skipped", [])), len(sb.get("skipped", []))]  # in the lineage: only its count
    if sa.get("fingerprint") != sb.get("fingerprint") or skipped[0] != skipped[1]:
        source = {
            "spec": [sa.get("spec"), sb.get("spec")],
            "only_in_a": sorted(set(files_a) - set(files_b)),
            "only_in_b": sorted(set(files_b) - set(files_a)),
            "changed": sorted(k for k in set(files_a) & set(files_b) if files_a[k] != files_b[k]),
            "skipped": skipped,
        }
    versions = {k: [a.get("versions", {}).get(k), b.get("versions", {}).get(k)]
                for k in sorted(set(a.get("versions", {})) | set(b.get("versions", {})))
                if a.get("versions", {}).get(k) != b.get("versions", {}).get(k)}  # fmt: skip
    pa, pb = param_stats(da), param_stats(db)
    params = {k: [pa.get(k), pb.get(k)] for k in sorted(set(pa) | set(pb))}
    return {
        "a": va.ref if va else str(da.path),
        "b": vb.ref if vb else str(db.path),
        "identical": a.get("identity") is not None and a.get("identity") == b.get("identity"),
        "settings": settings,
        "recipe": recipe_diff(a.get("recipe"), b.get("recipe")),
        "source": source,
        "library_versions": versions,
        "params": params,
    }


# -- verify -------------------------------------------------------------------------------------
@dataclass
class VerifyReport:
    ref: str
    shards: int
    problems: list[str] = field(default_factory=list)
    missing: bool = False  # a catalog entry whose data is gone, not data that is damaged

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def status(self) -> str:
        return "ok" if self.ok else "MISSING" if self.missing else "CORRUPT"


def shard_problem(ds: Dataset, fields: list[str], sh: dict[str, Any]) -> str | None:
    """What is wrong with one shard's decoded data against its recorded checksums, or None."""
    from .generate import field_checksum, shard_checksum

    start, stop = sh["samples"]
    sums, why = {}, {}
    for f in fields:
        try:
            vals = ds.read_range(f, start, stop)
            sums[f] = field_checksum(list(vals) if isinstance(vals, list) else [vals[i] for i in range(len(vals))])
        except Exception as e:  # noqa: BLE001  corrupt bytes raise what the codec raises (zstd: RuntimeError)
            sums[f], why[f] = None, _reason(e)
    bad = [f for f in fields if sums[f] != sh["fields"].get(f)]
    if bad:
        return ", ".join(f"{f} unreadable ({why[f]})" if f in why else f"{f} checksum mismatch" for f in bad)
    if shard_checksum(sums) != sh["sha256"]:
        return "shard checksum mismatch"
    return None


def lineage_problems(a: dict[str, Any]) -> list[str]:
    """Recorded settings that disagree with the lineage the identity hashes: the lineage against its hash,
    the settings that ``info``, ``diff`` and ``reproduce`` read against the lineage, the source file
    list against its fingerprint, the canonical recipe against its hash."""
    from degrade.recipe import canonical_sha256, recipe_hash

    from .sources import fingerprint_of

    lineage = a.get("lineage")
    if not isinstance(lineage, dict):
        return ["attributes: no lineage recorded"]
    out = []
    if canonical_sha256(lineage) != a.get("lineage_hash"):
        out.append("attributes: the lineage does not hash to the recorded lineage_hash")
    for k in ("kind", "recipe_hash", "seed", "count", "size", "shard_size", "crop"):
        if a.get(k) != lineage.get(k):
            out.append(f"attributes: {k} {json.dumps(a.get(k))} differs from the lineage's {json.dumps(lineage.get(k))}")
    src = a.get("source") if isinstance(a.get("source"), dict) else {}
    try:
        fp = fingerprint_of((f["name"], f["bytes"], f["sha256"]) for f in src.get("files") or [])
    except (KeyError, TypeError):
        fp = None
    if src.get("fingerprint") != lineage.get("source_fingerprint") or fp != src.get("fingerprint"):
        out.append("attributes: the source files or fingerprint differ from the lineage's source_fingerprint")
    recipe = a.get("recipe")
    try:
        rhash = None if recipe is None else recipe_hash(recipe)
    except (KeyError, TypeError, ValueError):
        rhash = "?"
    if rhash != a.get("recipe_hash"):
        out.append("attributes: the recorded recipe does not hash to its recipe_hash")
    return out


def verify(ref: str, on_shard: Callable[[int], None] | None = None, on_start: Callable[[int, int], None] | None = None) -> VerifyReport:
    """Recompute every shard's SHA-256 from the decoded data and compare with the recorded ones."""
    v = resolve_version(ref)  # a name the catalog does not know is a usage error, not a corrupt dataset
    try:
        ds, v = open_version(ref, v)
        a = ds.attrs
        fields = list(ds.fields)
    except Exception as e:  # noqa: BLE001  a store too damaged to open is a finding, not a crash
        gone = v is not None and not os.path.lexists(v.path)
        return VerifyReport(v.ref if v else ref, 0, [_reason(e)], missing=gone)
    shards = a.get("shards", [])
    report = VerifyReport(v.ref if v else str(ds.path), len(shards))
    from .catalog import identity
    from .generate import dataset_checksum

    if "identity" in a and identity(a.get("lineage_hash", ""), a.get("checksum", "")) != a["identity"]:
        report.problems.append("attributes: identity does not match lineage and checksums")
    if v is not None and (v.identity != a.get("identity") or v.checksum != a.get("checksum")):
        report.problems.append("catalog: recorded identity differs from the store's attributes")
    try:
        expected = -(-int(a["count"]) // int(a["shard_size"]))
    except (KeyError, TypeError, ValueError, ZeroDivisionError):
        expected = None
    if expected is not None and len(shards) != expected:
        report.problems.append(f"attributes: {len(shards)} shard checksums recorded, {expected} expected")
    if dataset_checksum([str(sh.get("sha256")) for sh in shards]) != a.get("checksum"):
        report.problems.append("attributes: the dataset checksum does not match its shards' checksums")
    report.problems += lineage_problems(a)
    if on_start:
        on_start(sum(int(sh["samples"][1]) - int(sh["samples"][0]) for sh in shards), 0)
    for k, sh in enumerate(shards):
        start, stop = sh["samples"]
        problem = shard_problem(ds, fields, sh)
        if problem:
            report.problems.append(f"shard {k} (samples {start}-{stop - 1}): {problem}")
        if on_shard:
            on_shard(stop - start)
    return report


def _reason(e: BaseException) -> str:
    """One line for a report: our own errors as they are, others with their type."""
    text = str(e).splitlines()[0] if str(e) else ""
    if isinstance(e, DaguerreError):
        return text
    return f"{type(e).__name__}: {text}" if text else type(e).__name__


# -- reproduce ----------------------------------------------------------------------------------
@dataclass
class ReproduceReport:
    ref: str
    identical: bool
    differing_shards: list[str]
    changed_versions: dict[str, list[str]]


def spec_from_attrs(attrs: dict[str, Any], workers: int = 2) -> GenerationSpec:
    """Rebuild the generation spec a version records (rescanning and checking its source)."""
    from degrade import Recipe

    from .sources import CropConfig, scan_source
    from .spec import GenerationSpec

    src_attrs = attrs["source"]
    source = scan_source(src_attrs["spec"], workers=workers)
    if source.fingerprint != src_attrs["fingerprint"]:
        recorded = {f["name"]: f["sha256"] for f in src_attrs.get("files", [])}
        now = {f.name: f.sha256 for f in source.files}
        kinds = (("added", sorted(set(now) - set(recorded))), ("removed", sorted(set(recorded) - set(now))),
                 ("modified", sorted(k for k in set(recorded) & set(now) if recorded[k] != now[k])))  # fmt: skip
        what = "; ".join(f"{len(n)} {kind}: {some(n, 10)}" for kind, n in kinds if n) or "the same files, another fingerprint"
        raise DaguerreError(f"the source {src_attrs['spec']} changed since generation ({what})")
    recipe = attrs.get("recipe")
    rhash = None
    if recipe is not None:
        r = Recipe.from_dict(recipe)
        if r.hash != attrs["recipe_hash"]:
            raise DaguerreError("the recorded recipe no longer hashes the same with the installed operators")
        recipe, rhash = r.canonical(), r.hash
    crop = CropConfig(**attrs.get("crop", {}))
    # -1, not DEFAULT_ZSTD_LEVEL: stores from before the level was recorded were all written at -1
    return GenerationSpec(
        attrs["name"], source, recipe, rhash, attrs["seed"], attrs["count"], attrs["size"], attrs["shard_size"],
        attrs["kind"] == "real", crop, attrs.get("zstd_level", -1),
    )  # fmt: skip


def reproduce(ref: str, workers: int = 2, scheduler: str = "processes", on_shard=None, on_start=None) -> ReproduceReport:
    """Regenerate a version from its recorded lineage into a temporary store and compare checksums."""
    from .generate import generate

    if workers < 1:
        raise DaguerreError(f"--workers must be at least 1, got {workers}")
    ds, v = open_version(ref)
    a = ds.attrs
    spec = spec_from_attrs(a, workers)
    changed = {k: [old, library_versions().get(k)] for k, old in a.get("versions", {}).items() if library_versions().get(k) != old}
    # next to the datasets (the system's temp folder may be a small tmpfs), locked while in use, so that
    # `gc` removes the copy a killed reproduce leaves and leaves a running one alone
    scratch = scratch_dir()
    scratch.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="reproduce-", dir=scratch))
    try:
        with file_lock(tmp / ".lock", f"{tmp} is in use"):
            target = tmp / "copy.zarr"
            generate(spec, tmp / ".copy.partial", lambda p: (p.rename(target), target)[1], workers, scheduler, None, on_start, on_shard)
            fresh = read_attrs(target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    diffs = []
    recorded = a.get("shards", [])
    if len(recorded) != len(fresh["shards"]):  # zip below stops at the shorter list
        diffs.append(f"the version records {len(recorded)} shard checksums, its lineage makes {len(fresh['shards'])}")
    for k, (old, new) in enumerate(zip(recorded, fresh["shards"])):
        if old["sha256"] != new["sha256"]:
            fields = [f for f in old["fields"] if old["fields"][f] != new["fields"].get(f)]
            diffs.append(f"shard {k} (samples {old['samples'][0]}-{old['samples'][1] - 1}): {', '.join(fields)}")
    if not diffs and a.get("checksum") != fresh.get("checksum"):  # every shard agrees, the recorded total does not
        diffs.append("the dataset checksum differs")
    return ReproduceReport(v.ref if v else str(ds.path), not diffs, diffs, changed)
