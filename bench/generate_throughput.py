"""Dataset generation and reading throughput on this machine (2 cores), 256 px, ``old-photo``.

Usage: python bench/generate_throughput.py [--count 2048] [--rounds 3] [--scheduler processes] [--generation-only]
                                          [--zstd-levels -1,-100]

Measured in one run, rounds interleaved:
  (a) pure compute: the same dask tasks making the samples (pick, crop, degrade) without writing;
  (b) generation to sharded zarr (``create_dataset``) with 1 and 2 workers;
  (c) the same samples written as a PNG folder (clean, degraded, mask PNGs + params JSON per
      sample, as the seed project stored its data), 2 workers;
  reader: random-access samples/s through a torch DataLoader (2 workers, shuffled, batch 32)
  from the zarr store vs from the PNG folder; bytes on disk for both;
  (d) in this one process, serially: making a shard's samples vs making, encoding, hashing and
      writing it (``generate_shard``), i.e. the share of a busy core that the write path costs.
Also compares the threads and processes schedulers for generation. ``--zstd-levels`` adds (b), (d),
the zarr reader and bytes on disk at each further zstd level, keyed ``…@LEVEL``, in the same rounds.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import cv2

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from degrade.io import atomic_write_bytes, encode_png  # noqa: E402
from pipelines import build_spec, create_dataset  # noqa: E402
from pipelines.generate import generate_shard, make_samples, prepare_store  # noqa: E402
from pipelines.shards import DEFAULT_ZSTD_LEVEL  # noqa: E402
from zoo.data import ShardDataset, passthrough  # noqa: E402


# -- task bodies (top level: they travel to worker processes) --------------------------------
def compute_only(spec, k: int) -> int:
    start, stop = k * spec.shard_size, min(spec.count, (k + 1) * spec.shard_size)
    make_samples(spec, start, stop)
    return stop - start


def write_png_shard(spec, out: str, k: int) -> int:
    start, stop = k * spec.shard_size, min(spec.count, (k + 1) * spec.shard_size)
    s = make_samples(spec, start, stop)
    for j, i in enumerate(range(start, stop)):
        stem = Path(out) / f"{i:06d}"
        for f in ("clean", "degraded", "mask"):
            atomic_write_bytes(stem.with_suffix(f".{f}.png"), encode_png(s[f][j]))
        atomic_write_bytes(stem.with_suffix(".json"), json.dumps({"params": s["params"][j], "source": s["source"][j]}).encode())
    return stop - start


def run_dask(fn, spec, workers: int, scheduler: str, *args) -> float:
    import dask

    tasks = [dask.delayed(fn, pure=False)(spec, *args, k) for k in range(spec.n_shards)]
    t = time.perf_counter()
    dask.compute(*tasks, scheduler=scheduler, num_workers=workers)
    return spec.count / (time.perf_counter() - t)


def fresh(store: Path) -> None:
    """Remove a store and the catalog that registered it, so the next create generates again."""
    shutil.rmtree(store, ignore_errors=True)
    shutil.rmtree(os.environ["DAGUERRE_HOME"], ignore_errors=True)


def serial_share(spec, store: Path, shards: int = 8) -> tuple[float, float]:
    """ms per sample to make the first ``shards`` shards and to make+encode+hash+write them, interleaved, one process."""
    prepare_store(spec, store)
    make_samples(spec, 0, spec.shard_size)  # warm caches and imports
    t_make = t_write = 0.0
    n = 0
    for k in range(min(shards, spec.n_shards)):
        a, b = k * spec.shard_size, min(spec.count, (k + 1) * spec.shard_size)
        n += b - a
        t = time.perf_counter()
        make_samples(spec, a, b)
        t_make += time.perf_counter() - t
        t = time.perf_counter()
        generate_shard(spec, str(store), k)
        t_write += time.perf_counter() - t
    return 1e3 * t_make / n, 1e3 * t_write / n


def du(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


# -- readers ------------------------------------------------------------------------------------
class PngTorch:
    def __init__(self, folder):
        self.folder = Path(folder)
        self.n = len(list(self.folder.glob("*.json")))

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        import torch

        stem = self.folder / f"{i:06d}"
        d = cv2.cvtColor(cv2.imread(str(stem.with_suffix(".degraded.png"))), cv2.COLOR_BGR2RGB)
        c = cv2.cvtColor(cv2.imread(str(stem.with_suffix(".clean.png"))), cv2.COLOR_BGR2RGB)
        return torch.from_numpy(d), torch.from_numpy(c)


def loader_rate(dataset, n: int, collate=None) -> float:
    """Samples/s of a shuffled DataLoader (2 workers, batch 32) over ``n`` samples (workers warm)."""
    import torch

    g = torch.Generator()
    g.manual_seed(0)
    kw = {"collate_fn": collate} if collate else {}
    dl = torch.utils.data.DataLoader(dataset, batch_size=32, shuffle=True, num_workers=2, generator=g, **kw)
    it = iter(dl)
    next(it)  # worker start-up is not reading
    seen = 0
    t = time.perf_counter()
    for batch in it:
        seen += len(batch["degraded"]) if isinstance(batch, dict) else batch[0].shape[0]
        if seen >= n:
            break
    return seen / (time.perf_counter() - t)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--count", type=int, default=2048)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--scheduler", default="processes")
    ap.add_argument("--out", default="bench/out/generate_throughput.json")
    ap.add_argument("--generation-only", action="store_true", help="only (a) and (b): compute vs zarr, 1 and 2 workers")
    ap.add_argument("--zstd-levels", default="", help="comma-separated zstd levels to compare with the default (e.g. -100)")
    args = ap.parse_args()
    others = [int(v) for v in args.zstd_levels.split(",") if v.strip() and int(v) != DEFAULT_ZSTD_LEVEL]
    tmp = Path(tempfile.mkdtemp(prefix="daguerre-bench-"))
    os.environ["DAGUERRE_HOME"] = str(tmp / "home")
    spec = build_spec("bench", "builtin:samples", args.count, 256, 7, "old-photo", 64)
    level_specs = {f"@{v}": build_spec("bench", "builtin:samples", args.count, 256, 7, "old-photo", 64, zstd_level=v) for v in others}
    level_bytes: dict[str, int] = {}
    cv2.setNumThreads(1)
    rates: dict[str, list[float]] = {}

    def add(key, v):
        rates.setdefault(key, []).append(v)
        unit = "ms/sample" if "_ms_per_sample" in key else "samples/s"
        print(f"  {key:<40} {v:8.2f} {unit}", flush=True)

    zarr_path = tmp / "gen.zarr"
    png_dir = tmp / "png"
    for r in range(args.rounds):
        print(f"round {r + 1}/{args.rounds}")
        for w in (1, 2):
            add(f"compute_{w}w", run_dask(compute_only, spec, w, args.scheduler))
            fresh(zarr_path)
            t = time.perf_counter()
            create_dataset(spec, store=str(zarr_path), workers=w, scheduler=args.scheduler)
            add(f"zarr_{w}w", spec.count / (time.perf_counter() - t))
            for tag, s in level_specs.items():
                fresh(zarr_path)
                t = time.perf_counter()
                create_dataset(s, store=str(zarr_path), workers=w, scheduler=args.scheduler)
                add(f"zarr_{w}w{tag}", s.count / (time.perf_counter() - t))
                if w == 2 and not args.generation_only:
                    level_bytes[tag] = du(zarr_path)
                    add(f"read_zarr_dataloader{tag}", loader_rate(ShardDataset(str(zarr_path), ("degraded", "clean")), min(args.count, 1024), passthrough))
        for tag, s in {"": spec, **level_specs}.items():
            shutil.rmtree(tmp / "serial.zarr", ignore_errors=True)
            make_ms, write_ms = serial_share(s, tmp / "serial.zarr")
            add(f"serial_make_ms_per_sample{tag}", make_ms)
            add(f"serial_make_encode_write_ms_per_sample{tag}", write_ms)
        if args.generation_only:
            continue
        other = "threads" if args.scheduler == "processes" else "processes"
        fresh(zarr_path)
        t = time.perf_counter()
        create_dataset(spec, store=str(zarr_path), workers=2, scheduler=other)
        add(f"zarr_2w_{other}", spec.count / (time.perf_counter() - t))
        shutil.rmtree(png_dir, ignore_errors=True)
        png_dir.mkdir()
        add("png_2w", run_dask(write_png_shard, spec, 2, args.scheduler, str(png_dir)))
        n_read = min(args.count, 1024)
        add("read_zarr_dataloader", loader_rate(ShardDataset(str(zarr_path), ("degraded", "clean")), n_read, passthrough))
        add("read_png_dataloader", loader_rate(PngTorch(png_dir), n_read))
    med = {k: statistics.median(v) for k, v in rates.items()}
    levels = {tag: {f"zarr_vs_compute_{w}w": round(med[f"zarr_{w}w{tag}"] / med[f"compute_{w}w"], 3) for w in (1, 2)}
              | {"zarr_2w_vs_1w": round(med[f"zarr_2w{tag}"] / med[f"zarr_1w{tag}"], 2),
                 "serial_make_vs_make_encode_write": round(med[f"serial_make_ms_per_sample{tag}"] / med[f"serial_make_encode_write_ms_per_sample{tag}"], 3)}
              for tag in ["", *level_specs]}  # fmt: skip
    if args.generation_only:
        print(json.dumps({f"zstd {tag[1:] or DEFAULT_ZSTD_LEVEL}": v for tag, v in levels.items()}, indent=2))
        return
    for tag in level_specs:
        levels[tag] |= {"read_zarr_vs_png": round(med[f"read_zarr_dataloader{tag}"] / med["read_png_dataloader"], 2), "bytes_zarr": level_bytes[tag]}
    result = {
        "count": args.count,
        "scheduler": args.scheduler,
        "samples_per_s": {k: round(v, 1) for k, v in med.items() if "_ms_per_sample" not in k},
        "ms_per_sample": {k: round(v, 2) for k, v in med.items() if "_ms_per_sample" in k},
        "spread": {k: [round(min(v), 1), round(max(v), 1)] for k, v in rates.items()},
        **levels[""],  # zarr / compute at 1 and 2 workers, 2w / 1w, the in-process share, at the default level
        "zarr_vs_png_2w": round(med["zarr_2w"] / med["png_2w"], 2),
        "read_zarr_vs_png": round(med["read_zarr_dataloader"] / med["read_png_dataloader"], 2),
        "bytes_zarr": du(zarr_path),
        "bytes_png": du(png_dir),
        "other_zstd_levels": {tag[1:]: levels[tag] for tag in level_specs},
    }
    print(json.dumps(result, indent=2))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
