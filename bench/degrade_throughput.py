"""Degradation throughput on one core: daguerre's recipes vs an equivalent imgaug pipeline, same run.

Usage: python bench/degrade_throughput.py [--n 300] [--rounds 5] [--out bench/out/degrade.json]

Measures samples/s at 256 and 512 px for
  * ``bopbtl`` (daguerre, per-sample seeded and replayable),
  * the equivalent imgaug ``Sequential`` (random order, Sometimes(0.7) groups, Cutout holes),
    both batched (imgaug's fast path: one call per 32 images, parameters drawn per batch) and
    per-sample reseeded (what reproducibility requires),
  * ``old-photo`` (daguerre's rich default).
Rounds are interleaved so that machine noise hits every pipeline alike; medians are reported
with their spread, and ratios are taken within each round.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import cv2  # noqa: E402
import numpy as np  # noqa: E402

from degrade import load_recipe  # noqa: E402
from degrade.compat import import_imgaug  # noqa: E402
from degrade.io import read_image  # noqa: E402
from degrade.runtime import tune_malloc  # noqa: E402
from degrade.samples import sample_photo_paths  # noqa: E402


def photos(size: int, k: int = 8) -> list[np.ndarray]:
    out = []
    for p in sample_photo_paths()[:k]:
        im = read_image(p).rgb()
        s = min(im.shape[:2])
        out.append(cv2.resize(im[:s, :s], (size, size), interpolation=cv2.INTER_AREA))
    return out


def imgaug_bopbtl():
    """The BOPBtL synthesis written with imgaug augmenters, as a user would."""
    iaa = import_imgaug()
    from imgaug import parameters as iap

    return iaa.Sequential(
        [
            iaa.Sequential(
                [
                    iaa.Sometimes(0.7, iaa.GaussianBlur(sigma=(1.0, 5.0))),
                    iaa.Sometimes(
                        0.7,
                        iaa.OneOf(
                            [
                                iaa.AdditiveGaussianNoise(scale=(5, 50), per_channel=True),
                                iaa.MultiplyElementwise(iap.Normal(1.0, iap.Uniform(5 / 255, 50 / 255)), per_channel=True),
                                iaa.SaltAndPepper(p=(0.0, 0.01), per_channel=True),
                            ]
                        ),
                    ),
                    iaa.Sometimes(
                        0.7,
                        iaa.KeepSizeByResize(
                            iaa.Resize({"height": (0.5, 1.0), "width": (0.5, 1.0)}, interpolation="cubic"),
                            interpolation=["nearest", "linear"],
                        ),
                    ),
                    iaa.Sometimes(0.7, iaa.JpegCompression(compression=(0, 60))),
                ],
                random_order=True,
            ),
            iaa.Sometimes(0.5, iaa.Cutout(nb_iterations=(1, 4), size=(0.05, 0.25), fill_mode="constant", cval=255)),
        ]
    )


def rate(fn, n: int) -> float:
    t = time.perf_counter()
    fn(n)
    return n / (time.perf_counter() - t)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=300, help="samples per measurement at 256 px (a quarter at 512)")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--out", default="bench/out/degrade_throughput.json")
    args = ap.parse_args()
    cv2.setNumThreads(1)
    tune_malloc()
    aug = imgaug_bopbtl()
    bop, old = load_recipe("bopbtl"), load_recipe("old-photo")
    results = {}
    for size in (256, 512):
        imgs = photos(size)
        n = args.n if size == 256 else max(40, args.n // 4)
        batch = np.stack([imgs[i % len(imgs)] for i in range(32)])

        def ours(recipe):
            return lambda k: [recipe.apply(imgs[i % len(imgs)], seed=0, index=i) for i in range(k)]

        def imgaug_batched(k):
            for j in range(0, k, 32):
                aug(images=batch[: min(32, k - j)])

        def imgaug_reseeded(k):
            for i in range(k):
                aug.seed_(i)
                aug(image=imgs[i % len(imgs)])

        pipelines = {
            "bopbtl": ours(bop),
            "imgaug_bopbtl_batched": imgaug_batched,
            "imgaug_bopbtl_reseeded": imgaug_reseeded,
            "old-photo": ours(old),
        }
        for fn in pipelines.values():  # warm caches and lazy imports
            fn(16)
        rounds = {name: [] for name in pipelines}
        for _ in range(args.rounds):
            for name, fn in pipelines.items():
                rounds[name].append(rate(fn, n))
        med = {name: statistics.median(v) for name, v in rounds.items()}
        ratio_batched = [a / b for a, b in zip(rounds["bopbtl"], rounds["imgaug_bopbtl_batched"])]
        ratio_reseeded = [a / b for a, b in zip(rounds["bopbtl"], rounds["imgaug_bopbtl_reseeded"])]
        results[size] = {
            "samples_per_s": {k: round(v, 1) for k, v in med.items()},
            "spread": {k: [round(min(v), 1), round(max(v), 1)] for k, v in rounds.items()},
            "bopbtl_vs_imgaug_batched": round(statistics.median(ratio_batched), 2),
            "bopbtl_vs_imgaug_reseeded": round(statistics.median(ratio_reseeded), 2),
        }
        print(f"{size} px, one core ({args.rounds} interleaved rounds of {n} samples, median [min, max]):")
        for k, v in med.items():
            lo, hi = results[size]["spread"][k]
            print(f"  {k:<24} {v:7.1f} samples/s  [{lo:.1f}, {hi:.1f}]")
        print(f"  bopbtl / imgaug batched  {results[size]['bopbtl_vs_imgaug_batched']:.2f}x")
        print(f"  bopbtl / imgaug reseeded {results[size]['bopbtl_vs_imgaug_reseeded']:.2f}x")
    meta = {
        "python": platform.python_version(),
        "numpy": np.__version__,
        "opencv": cv2.__version__,
        "cpu": platform.processor() or platform.machine(),
        "threads": 1,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"meta": meta, "results": results}, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
