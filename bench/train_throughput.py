"""Training throughput of every stage on this CPU: 128 px crops, batch 8, DataLoader with 2 workers.

Usage: python bench/train_throughput.py [--steps 40] [--preset small] [--out bench/out/train_throughput.json]

For each stage: steps/s (median over steps after a warm-up) and the share of step time spent
waiting for and preparing data (target < 10 %). Datasets: 512 synthetic ``old-photo`` tiles and
512 real-photo tiles of 256 px from the bundled photos, generated first.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--preset", default="small")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--out", default="bench/out/train_throughput.json")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="daguerre-train-bench-"))
    os.environ["DAGUERRE_HOME"] = str(tmp / "home")
    import torch

    from pipelines import build_spec, create_dataset
    from zoo.train import TrainConfig, train

    create_dataset(build_spec("x", "builtin:samples", 512, 256, 0, "old-photo"), workers=2)
    create_dataset(build_spec("r", "builtin:real", 512, 256, 0, real=True), workers=2)
    stages = [
        ("vae1", {"real": "r", "synthetic": "x"}),
        ("vae2", {"clean": "x"}),
        ("mapping", {"pairs": "x", "vae1": "vae1", "vae2": "vae2"}),
        ("scratch", {"pairs": "x"}),
    ]
    results = {}
    for stage, kw in stages:
        out = tmp / "runs" / stage
        cfg = TrainConfig(stage=stage, steps=args.steps, batch_size=8, size=128, workers=args.workers, out=str(out),
                          preset=args.preset, sample_every=10**9, ckpt_every=10**9, **kw)  # fmt: skip
        t = time.perf_counter()
        train(cfg)
        wall = time.perf_counter() - t
        rows = list(csv.DictReader((out / "losses.csv").open()))[args.warmup :]
        step_s = [float(r["seconds"]) for r in rows]
        data_s = [float(r["data_seconds"]) for r in rows]
        results[stage] = {
            "steps_per_s": round(1 / statistics.median(step_s), 3),
            "seconds_per_step": round(statistics.median(step_s), 4),
            "data_share": round(sum(data_s) / sum(step_s), 4),
            "wall_seconds": round(wall, 1),
        }
        print(f"{stage:<8} {results[stage]['steps_per_s']:6.2f} steps/s   {results[stage]['seconds_per_step'] * 1000:7.1f} ms/step"
              f"   data {results[stage]['data_share']:6.1%} of step time", flush=True)  # fmt: skip
    meta = {"preset": args.preset, "batch": 8, "size": 128, "workers": args.workers, "torch_threads": torch.get_num_threads(),
            "torch": torch.__version__}  # fmt: skip
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"meta": meta, "results": results}, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
