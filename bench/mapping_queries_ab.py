"""What exact mapping inference costs: 512×512 restores with the exact query set and with the damaged cells alone.

Usage: python bench/mapping_queries_ab.py [--model default] [--rounds 7]

The partial nonlocal block queries, at inference, the damaged latent cells and the cells its
global branch's convolutions reach from them (``Mapping.queried``: the training computation,
exactly). Until 2026-11-27 it queried the damaged cells alone. The two run interleaved in one
process (alternating which goes first), 2 threads, on the astronaut sample and three bundled real
old photos; medians and their ratio.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="default")
    ap.add_argument("--rounds", type=int, default=7)
    args = ap.parse_args()
    import cv2
    import torch

    torch.set_num_threads(2)
    from degrade.io import read_image
    from degrade.samples import sample_photo_paths
    from zoo.bundle import load_bundle
    from zoo.mapping import Mapping
    from zoo.restore import restore

    bundle = load_bundle(args.model)
    exact = Mapping.queried
    variants = {"exact": exact, "damaged only": lambda self, m: m}
    shared = ROOT.parent / "shared" / "data" / "real_old_photos"
    real = sorted(shared.rglob("*.png")) + sorted((shared / "historical").rglob("*.jpg"))
    photos = [next(p for p in sample_photo_paths() if p.name == "astronaut.png"), *(real[i] for i in (0, 3, 40) if i < len(real))]
    try:
        for p in photos:
            img = cv2.resize(read_image(p).rgb(), (512, 512), interpolation=cv2.INTER_AREA)
            restore(img, bundle)  # warm-up
            times = {k: [] for k in variants}
            for i in range(args.rounds):
                for k in (list(variants) if i % 2 else list(variants)[::-1]):
                    Mapping.queried = variants[k]
                    t = time.perf_counter()
                    r = restore(img, bundle)
                    times[k].append(time.perf_counter() - t)
            e, h = (statistics.median(times[k]) for k in variants)
            print(f"{p.name[:24]:<24} masked {float((r.mask > 0).mean()):.3f}  exact {e:.3f} s  damaged only {h:.3f} s  ×{e / h:.2f}")
    finally:
        Mapping.queried = exact


if __name__ == "__main__":
    main()
