"""Restoration speed and memory on this CPU: model load, 512×512 restore (2 threads), a 4000×3000 scan.

Usage: python bench/restore_speed.py [--model default] [--repeats 5] [--out bench/out/restore_speed.json]

The 4000×3000 case runs through ``daguerre restore`` in a fresh process and reports its peak
resident memory (target < 3 GiB); the 512×512 figure is the median of ``zoo.restore`` calls
after a warm-up (target ≤ 1.0 s), model loading the median of fresh loads (target ≤ 1 s).
The same 512×512 restore with the weights in PyTorch's default NCHW layout, interleaved, is the
same-run baseline for the bundle's channels-last layout.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="default")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--out", default="bench/out/restore_speed.json")
    args = ap.parse_args()
    import cv2
    import numpy as np
    import torch

    torch.set_num_threads(2)
    from degrade.io import read_image
    from degrade.samples import sample_photo_paths
    from zoo.bundle import load_bundle
    from zoo.restore import restore

    loads = []
    for _ in range(args.repeats):
        t = time.perf_counter()
        load_bundle(args.model)
        loads.append(time.perf_counter() - t)
    bundle = load_bundle(args.model)
    photo = read_image([p for p in sample_photo_paths() if p.name == "astronaut.png"][0]).rgb()
    img = cv2.resize(photo, (512, 512), interpolation=cv2.INTER_AREA)
    # same-run baseline: the same weights in PyTorch's default (NCHW) layout
    nchw = load_bundle(args.model).to("cpu", channels_last=False)
    restore(img, bundle)  # warm-up
    restore(img, nchw)
    times, parts, nchw_times = [], [], []
    for _ in range(args.repeats):
        t = time.perf_counter()
        r = restore(img, bundle)
        times.append(time.perf_counter() - t)
        parts.append(r.seconds)
        t = time.perf_counter()
        restore(img, nchw)
        nchw_times.append(time.perf_counter() - t)
    tmp = Path(tempfile.mkdtemp(prefix="daguerre-restore-bench-"))
    big = cv2.resize(photo, (4000, 3000), interpolation=cv2.INTER_CUBIC)
    big = np.clip(big.astype(np.int16) + np.random.default_rng(0).integers(-12, 13, big.shape), 0, 255).astype(np.uint8)
    cv2.imwrite(str(tmp / "scan.jpg"), big[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 92])
    code = (
        "import resource, time, cli\n"
        "t = time.perf_counter()\n"
        "try:\n"
        f"    cli.main(['restore', r'{tmp / 'scan.jpg'}', '--out', r'{tmp / 'out'}', '--model', r'{args.model}'])\n"
        "except SystemExit as e:\n"
        "    assert not e.code, e.code\n"
        "print(time.perf_counter() - t, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)\n"
    )
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "2"})
    if p.returncode:
        raise SystemExit(p.stderr)
    big_s, rss_kb = p.stdout.strip().splitlines()[-1].split()
    result = {
        "model_load_s": round(statistics.median(loads), 3),
        "restore_512_s": round(statistics.median(times), 3),
        "restore_512_parts_s": {k: round(statistics.median(x[k] for x in parts), 3) for k in parts[0]},
        "restore_512_nchw_baseline_s": round(statistics.median(nchw_times), 3),
        "restore_512_speedup_vs_nchw": round(statistics.median(nchw_times) / statistics.median(times), 2),
        "scan_4000x3000_s": round(float(big_s), 1),
        "scan_4000x3000_peak_rss_gib": round(int(rss_kb) / 1024**2, 2),
        "threads": torch.get_num_threads(),
    }
    print(json.dumps(result, indent=2))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
