"""Benchmarking restoration methods on a dataset version: metrics, breakdowns, CIs, traceability.

The engine behind ``daguerre bench``: every method runs on the same samples in worker
processes (deterministic: results are put back in sample order), per-sample metrics are
aggregated with 95 % bootstrap confidence intervals, and broken down by the degradations each
sample's stored params record.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import time
from collections import defaultdict
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from degrade.errors import DaguerreError
from degrade.runtime import usable_cores

from . import metrics, niqe

_STATE: dict[str, Any] = {}
MS_SSIM_MIN = 161
"""The shortest side MS-SSIM's five scales need (smaller samples get none)."""


def _init_worker(ref: str, specs: list[str], mask_source: str, parent: int | None = None, device: str = "cpu",
                 modules: tuple[str, ...] = ()) -> None:
    import importlib

    import torch

    if parent is not None:  # a worker process: it dies with the command (SIGTERM left them running)
        from degrade.runtime import die_with_parent

        die_with_parent(parent)

    torch.set_num_threads(1)  # one thread per worker (run_bench restores the caller's when it runs here)
    from pipelines import open_dataset

    from .methods import get_method

    for name in modules:  # where methods registered outside zoo live: a spawned worker knows only the built-ins
        importlib.import_module(name)
    zoo = [s.partition(":")[2] for s in specs if s.partition(":")[0] in ("zoo", "zoo-raw")]
    _STATE.update(ds=open_dataset(ref), methods=[get_method(s, device) for s in specs], mask_source=mask_source,
                  detector=zoo[0] if zoo else "default", device=device)  # fmt: skip


def _worker_modules(methods: list) -> tuple[str, ...]:
    """Modules the workers import to know ``methods``; one defined where no worker can import it is an error."""
    import sys

    main = getattr(sys.modules["__main__"], "__file__", None)  # spawn re-runs a main script, not a session's cells
    for m in methods:
        if type(m).__module__ == "__main__" and not (main and Path(main).is_file()):
            raise DaguerreError(f"method {m.label!r} is defined in an interactive session, which the worker processes "
                                "cannot import: define it in a module, or pass workers=1")  # fmt: skip
    return tuple(sorted({type(m).__module__ for m in methods} - {"__main__"}))


def _detected_mask(image: np.ndarray) -> np.ndarray:
    """The detector of the first zoo method benchmarked (else the default bundle's)."""
    from .methods import detected_mask

    return detected_mask(image, _STATE["detector"], device=_STATE["device"])


def _one(i: int, keep: bool) -> dict[str, Any]:
    """Every method on sample ``i``: metrics, timings and (when ``keep``) the restored images."""
    ds, methods = _STATE["ds"], _STATE["methods"]
    s = ds[i]
    degraded = s["degraded"]
    clean = s.get("clean")
    truth = s.get("mask")
    row: dict[str, Any] = {"index": i, "params": s.get("params") or [], "methods": {}}
    given = None
    if any(m.needs_mask for m in methods):
        given = truth if (_STATE["mask_source"] == "gt" and truth is not None) else _detected_mask(degraded)
    kept = {}
    for m in methods:
        t = time.perf_counter()
        out, used = m.run(degraded, given if m.needs_mask else None)
        dt = time.perf_counter() - t
        r: dict[str, Any] = {"seconds": dt}
        if clean is not None:
            r["psnr"] = metrics.psnr(out, clean)
            r["ssim"] = metrics.ssim(out, clean)
            if min(clean.shape[:2]) >= MS_SSIM_MIN:
                r["ms_ssim"] = metrics.ms_ssim(out, clean)
            r["gmsd"] = metrics.gmsd(out, clean)
            if truth is not None and truth.any():
                r["psnr_in_mask"] = metrics.psnr(out, clean, truth > 0)
                r["psnr_out_mask"] = metrics.psnr(out, clean, truth == 0)
        elif min(out.shape[:2]) >= niqe.PATCH:  # a real photo: no ground truth, only naturalness
            score = niqe.niqe(out)
            if math.isfinite(score):  # a flat tile has no statistics to score
                r["niqe"] = score
        if m.detects and used is not None and truth is not None:
            r["detection"] = metrics.detection(used, truth)
        row["methods"][m.label] = r
        if keep:
            kept[m.label] = out
    if keep:
        row["images"] = {"degraded": degraded, "clean": clean, "mask": truth, **kept}
    return row


def bootstrap_ci(values: list[float], n: int = 1000, seed: int = 0) -> tuple[float, float, float]:
    """Mean and 95 % percentile-bootstrap interval (deterministic resampling); no interval (NaN) of one value."""
    v = np.asarray([x for x in values if x is not None and math.isfinite(x)], dtype=float)
    if v.size == 0:
        return (float("nan"),) * 3
    if v.size == 1:  # every resample is that value: a zero-width interval would pass for certainty
        return float(v[0]), float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    means = v[rng.integers(0, v.size, (n, v.size))].mean(axis=1)
    return float(v.mean()), float(np.quantile(means, 0.025)), float(np.quantile(means, 0.975))


def _sha(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


def probe_device(device: str, workers: int, count: int | None = None) -> str:
    """Where this process loads the zoo bundles that check the methods: the run's device when it will score the
    samples itself (that load then serves the run: a CPU load first loaded the bundle twice), else the CPU (each
    worker process loads its own). ``count``: the samples scored (``-n`` capped at the dataset's length)."""
    return device if min(workers, usable_cores(), workers if count is None else count) <= 1 else "cpu"


def run_bench(
    dataset: str,
    methods: list[str],
    n: int | None = None,
    mask_source: str = "detected",
    workers: int = 2,
    sheet_samples: int = 6,
    on_sample: Callable[[], None] | None = None,
    device: str = "cpu",
) -> dict[str, Any]:
    """Run ``methods`` on the first ``n`` samples of ``dataset`` (zoo bundles on ``device``: cpu, cuda or auto);
    returns the results dict."""
    from pipelines import open_dataset

    from .methods import get_method
    from .restore import resolve_device

    if mask_source not in ("gt", "detected"):
        raise DaguerreError(f"--mask must be gt or detected, got {mask_source!r}")
    if not methods:
        raise DaguerreError("no methods to benchmark")
    device = str(resolve_device(device))  # --device cuda without one: fails before any work too
    ds = open_dataset(dataset)
    count = len(ds) if n is None else max(1, min(n, len(ds)))
    probe = [get_method(m, probe_device(device, workers, count)) for m in methods]  # unknown names, missing models: fail before any work
    real = "clean" not in ds.fields
    if mask_source == "gt" and "mask" not in ds.fields:
        raise DaguerreError(f"--mask gt: {dataset} has no ground-truth masks (a real-photo dataset?); use --mask detected")
    keep = set(np.linspace(0, count - 1, min(sheet_samples, count)).round().astype(int).tolist())
    rows: list[dict[str, Any]] = [None] * count  # type: ignore[list-item]
    t0 = time.perf_counter()
    workers = min(workers, count, usable_cores())
    if workers <= 1:  # (each process holds a bundle: --workers 1000 would start one per sample)
        import torch

        threads = torch.get_num_threads()
        try:
            _init_worker(str(ds.path), methods, mask_source, device=device)
            for i in range(count):
                rows[i] = _one(i, i in keep)
                if on_sample:
                    on_sample()
        finally:
            torch.set_num_threads(threads)
    else:
        import multiprocessing as mp

        modules = _worker_modules(probe)
        with ProcessPoolExecutor(workers, mp.get_context("spawn"), initializer=_init_worker,
                                 initargs=(str(ds.path), methods, mask_source, os.getpid(), device, modules)) as pool:  # fmt: skip
            futures = {pool.submit(_one, i, i in keep): i for i in range(count)}
            for fut in _as_completed(futures):
                rows[futures[fut]] = fut.result()
                if on_sample:
                    on_sample()
    wall = time.perf_counter() - t0
    a = ds.attrs
    result = {
        "schema": 1,
        "dataset": {"ref": dataset, "path": str(ds.path), "name": a.get("name"), "version": a.get("version"),
                    "identity": a.get("identity"), "lineage_hash": a.get("lineage_hash"), "recipe_hash": a.get("recipe_hash"),
                    "kind": a.get("kind"), "count": a.get("count"), "size": a.get("size")},  # fmt: skip
        "samples": count,
        "mask_source": mask_source,
        "mask_methods": [m.label for m in probe if m.needs_mask],  # the ones given the --mask mask
        "real_photos": real,
        "methods": {m.label: m.card() for m in probe},
        "wall_seconds": wall,
        "workers": workers,
        "device": device,
        "aggregate": aggregate(rows, [m.label for m in probe]),
        "breakdown": breakdown(rows, [m.label for m in probe]) if not real else {},
        "per_sample": [{k: v for k, v in r.items() if k != "images"} for r in rows],
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    result["sheet_rows"] = [r for r in rows if "images" in r]
    return result


def _as_completed(futures):
    from concurrent.futures import as_completed

    return as_completed(futures)


def aggregate(rows: list[dict[str, Any]], labels: list[str]) -> dict[str, Any]:
    out = {}
    for label in labels:
        per = [r["methods"][label] for r in rows]
        agg: dict[str, Any] = {}
        for key in (*metrics.QUALITY_KEYS, "seconds"):
            vals = [p[key] for p in per if key in p]
            if vals:
                # a PSNR outside a mask that covers the image is undefined: the mean is over the defined
                # values, and ``n`` counts those (the others are counted apart); an exact result's PSNR is
                # PSNR_MAX, averaged like any other and counted as ``capped``
                finite = [v for v in vals if v is not None and math.isfinite(v)]
                mean, lo, hi = bootstrap_ci(finite)
                agg[key] = {"mean": mean, "ci95": [lo, hi], "n": len(finite)}
                if len(finite) < len(vals):
                    agg[key]["not_finite"] = len(vals) - len(finite)
                if key.startswith("psnr") and any(v >= metrics.PSNR_MAX for v in finite):
                    agg[key]["capped"] = sum(v >= metrics.PSNR_MAX for v in finite)
        dets = [p["detection"] for p in per if "detection" in p]
        if dets:
            f1 = [d["f1"] for d in dets if math.isfinite(d["f1"])]
            agg["detection"] = {"pooled": pooled_detection(dets), "per_image_f1": bootstrap_ci(f1)[0] if f1 else float("nan")}
        out[label] = agg
    return out


def breakdown(rows: list[dict[str, Any]], labels: list[str], bins: int = 4) -> dict[str, Any]:
    """Per operator: PSNR/SSIM where it was applied vs not, and by quantile bins of its main parameter."""
    from degrade import get_operator

    applied: dict[str, list[int]] = defaultdict(list)
    main_values: dict[str, dict[int, float]] = defaultdict(dict)
    for k, r in enumerate(rows):
        for e in r["params"]:
            applied[e["op"]].append(k)
            key = get_operator(e["op"]).main_param()
            v = e["params"].get(key) if key else None
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                main_values[e["op"]][k] = float(v)
    out = {}
    for op in sorted(applied):
        applied_set = set(applied[op])
        with_op = sorted(applied_set)
        without = [k for k in range(len(rows)) if k not in applied_set]
        entry: dict[str, Any] = {"applied": len(with_op), "not_applied": len(without), "main": get_operator(op).main_param()}
        entry["methods"] = {
            label: {f"{key}_{side}": _mean_metric(rows, idx, label, key)
                    for key in ("psnr", "ssim") for side, idx in (("applied", with_op), ("not_applied", without))}
            for label in labels
        }  # fmt: skip
        for label in labels:  # which defects the detector misses: pooled F1 with and without this operator
            for side, idx in (("applied", with_op), ("not_applied", without)):
                f1 = _pooled_f1(rows, idx, label)
                if f1 is not None:
                    entry["methods"][label][f"f1_{side}"] = f1
        vals = main_values.get(op, {})
        if len(vals) >= bins:
            edges = np.quantile(list(vals.values()), np.linspace(0, 1, bins + 1))
            edges = np.unique(edges)
            groups = []
            for b in range(len(edges) - 1):
                lo, hi = edges[b], edges[b + 1]
                idx = [k for k, v in vals.items() if (lo <= v < hi) or (b == len(edges) - 2 and v == hi)]
                groups.append({"range": [float(lo), float(hi)], "n": len(idx),
                               "psnr": {lab: _mean_metric(rows, idx, lab, "psnr") for lab in labels},
                               "ssim": {lab: _mean_metric(rows, idx, lab, "ssim") for lab in labels}})  # fmt: skip
            entry["bins"] = groups
        out[op] = entry
    return out


def pooled_detection(dets: list[dict[str, Any]]) -> dict[str, float]:
    """Precision, recall, F1 and IoU over all pixels of several images (their tp/fp/fn summed)."""
    return metrics.scores(*(sum(d[k] for d in dets) for k in ("tp", "fp", "fn")))


def _pooled_f1(rows, idx, label) -> float | None:
    dets = [rows[k]["methods"][label]["detection"] for k in idx if "detection" in rows[k]["methods"][label]]
    return pooled_detection(dets)["f1"] if dets else None


def _mean_metric(rows, idx, label, key):
    vals = [rows[k]["methods"][label].get(key) for k in idx]
    vals = [v for v in vals if v is not None and math.isfinite(v)]
    return float(np.mean(vals)) if vals else None


def save_results(result: dict[str, Any], path: Path) -> None:
    from degrade.io import atomic_write_bytes

    data = strict_json({k: v for k, v in result.items() if k != "sheet_rows"})
    data["results_sha256"] = _sha(data)
    atomic_write_bytes(path, json.dumps(data, indent=1, allow_nan=False).encode())


def strict_json(v: Any) -> Any:
    """Standard JSON values: numpy scalars as Python numbers, NaN and infinities (an F1 of 0/0 on a set
    without damage) as null, which strict parsers accept and ``NaN`` literals they refuse."""
    if isinstance(v, dict):
        return {k: strict_json(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [strict_json(x) for x in v]
    if isinstance(v, (bool, np.bool_)):
        return bool(v)
    if isinstance(v, (int, np.integer)):
        return int(v)
    if isinstance(v, (float, np.floating)):
        return float(v) if math.isfinite(v) else None
    return v if v is None or isinstance(v, str) else str(v)


__all__ = ["bootstrap_ci", "run_bench", "save_results"]
