"""Restore on CUDA against CPU: the same outputs (to float rounding) and the time per image.

Usage: python bench/restore_device_check.py [--n 8] [--size 512] [--json]

Runs only where CUDA is available (a lent GPU machine). The default bundle restores the bundled
real old photos, resized to fit ``--size``, once on each device. The script reports, per device,
the mean seconds per image after a warm-up. Between the devices it reports the largest and the
mean absolute difference of the restored pixels, and the share of mask pixels that differ.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=8)
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--devices", default="cpu,cuda", help="two devices to compare (cpu,cpu checks the script itself)")
    args = ap.parse_args()

    import cv2
    import numpy as np
    import torch

    from degrade.io import read_image
    from degrade.samples import real_photo_paths
    from zoo.restore import picture_array, restore

    devices = args.devices.split(",")
    if "cuda" in devices and not torch.cuda.is_available():
        print("restore_device_check: no CUDA device here")
        return 1
    photos = []
    for p in real_photo_paths()[: args.n]:
        px = picture_array(read_image(p))
        s = min(1.0, args.size / max(px.shape[:2]))
        photos.append(cv2.resize(px, (round(px.shape[1] * s), round(px.shape[0] * s)), interpolation=cv2.INTER_AREA) if s < 1 else px)
    runs = []  # (device, results, seconds) per device, in order
    for dev in devices:
        restore(photos[0], device=dev)  # warm-up: load, cuDNN autotune
        res, t = [], []
        for px in photos:
            t0 = time.perf_counter()
            r = restore(px, device=dev)
            if dev == "cuda":
                torch.cuda.synchronize()
            t.append(time.perf_counter() - t0)
            res.append(r)
        runs.append((dev, res, t))
    first, second = runs[0][1], runs[-1][1]
    diffs = [np.abs(a.image.astype(np.int16) - b.image.astype(np.int16)) for a, b in zip(first, second)]
    mask_diff = [float(np.mean(a.mask != b.mask)) for a, b in zip(first, second)]
    report = {
        "device": torch.cuda.get_device_name(0) if "cuda" in devices else "cpu",
        "torch": torch.__version__,
        "images": len(photos),
        "sizes": [list(p.shape[:2]) for p in photos],
        "seconds_per_image": [[d, round(float(np.mean(t)), 4)] for d, _, t in runs],
        "max_abs_diff": int(max(d.max() for d in diffs)),
        "mean_abs_diff": round(float(np.mean([d.mean() for d in diffs])), 4),
        "mask_pixels_differing": round(float(np.mean(mask_diff)), 6),
    }
    print(json.dumps(report, indent=None if args.json else 2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
