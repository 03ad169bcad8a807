"""No-reference quality of restorations of real old photos: NIQE of the input and of each method.

Usage: python bench/real_photo_quality.py [--photos ../shared/data/real_old_photos] [--model default]
                                          [--methods nlm+telea,zoo-raw:default,zoo:default] [--n N]
                                          [--out bench/out/real_photo_quality.json] [--plot PATH]

Real old photos have no ground truth, so PSNR and SSIM cannot say whether a restoration helps
them. NIQE (``zoo/niqe.py``; lower is more natural) can rank the input against each method's
output on the same photograph. Daguerre's NIQE model is fitted on its own clean training
photographs, not the published one: compare methods within this table, not with papers.
Each photo is restored whole, at its own size; inpainting baselines get the bundle's detected mask.
Reports the mean NIQE per method and the mean paired difference to the input with a 95 %
bootstrap interval, and writes a plot of every photo's input NIQE against each method's.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np

from zoo.bench import strict_json  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def _interval(ci: list[float], fmt: str = ".3f") -> str:
    """``[lo, hi]``, or ``[n/a]`` when one photo gives no interval."""
    lo, hi = ci
    return "[n/a]" if not (np.isfinite(lo) and np.isfinite(hi)) else f"[{lo:{fmt}}, {hi:{fmt}}]"


def evaluate(photos: list[Path], specs: list[str], model: str, on_photo=None) -> dict:
    from degrade.io import read_image
    from zoo.bench import bootstrap_ci
    from zoo.methods import detected_mask, get_method
    from zoo.niqe import PATCH, niqe

    methods = [get_method(s) for s in specs]
    scores: dict[str, list[float]] = {"input": []}
    seconds: dict[str, list[float]] = {m.label: [] for m in methods}
    names = []
    for p in photos:
        img = read_image(p).rgb()
        if min(img.shape[:2]) < PATCH:
            continue
        before = niqe(img)
        if not np.isfinite(before):  # a flat image has nothing to score
            continue
        names.append(p.name)
        scores["input"].append(before)
        mask = detected_mask(img, model) if any(m.needs_mask for m in methods) else None
        for m in methods:
            t = time.perf_counter()
            out, _ = m.run(img, mask if m.needs_mask else None)
            seconds[m.label].append(time.perf_counter() - t)
            scores.setdefault(m.label, []).append(niqe(out))
        if on_photo:
            on_photo()
    base = np.asarray(scores["input"])
    table = {}
    for label, vals in scores.items():
        v = np.asarray(vals)
        mean, lo, hi = bootstrap_ci(v.tolist())
        row = {"niqe": mean, "ci95": [lo, hi]}
        if label != "input":
            d, dlo, dhi = bootstrap_ci((v - base).tolist())
            row.update(change=d, change_ci95=[dlo, dhi], better_share=float(np.mean(v < base)),
                       seconds=float(np.mean(seconds[label])))  # fmt: skip
        table[label] = row
    return {"photos": len(names), "names": names, "model": model, "methods": table,
            "per_photo": {k: [round(x, 4) for x in v] for k, v in scores.items()}}  # fmt: skip


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x = np.asarray(result["per_photo"]["input"])
    fig, ax = plt.subplots(figsize=(6, 6), dpi=110)
    finite = [x for v in result["per_photo"].values() for x in v if np.isfinite(x)]
    lim = [0, max(finite) * 1.05]
    for label, v in result["per_photo"].items():
        if label != "input":
            ax.scatter(x, v, s=10, alpha=0.6, label=f"{label} ({result['methods'][label]['change']:+.2f})")
    ax.plot(lim, lim, color="gray", lw=1)
    ax.set(xlim=lim, ylim=lim, xlabel="NIQE of the input", ylabel="NIQE of the output (below the line: more natural)",
           title=f"{result['photos']} real old photos (NIQE, daguerre's model)")  # fmt: skip
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def main() -> None:
    from degrade.io import list_images

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--photos", default=str(ROOT.parent / "shared" / "data" / "real_old_photos"))
    ap.add_argument("--model", default="default")
    ap.add_argument("--methods", default="nlm+telea,zoo-raw:default,zoo:default")
    ap.add_argument("--n", type=int, default=None)
    ap.add_argument("--out", default="bench/out/real_photo_quality.json")
    ap.add_argument("--plot", default="bench/out/real_photo_quality.png")
    args = ap.parse_args()
    photos = list_images([args.photos])[: args.n]
    if not photos:
        sys.exit(f"error: no photos under {args.photos}")
    done = [0]

    def tick():
        done[0] += 1
        print(f"\r{done[0]}/{len(photos)} photos", end="", file=sys.stderr, flush=True)

    res = evaluate(photos, [s.strip() for s in args.methods.split(",") if s.strip()], args.model, tick)
    print(file=sys.stderr)
    if not res["photos"]:
        sys.exit(f"error: none of the {len(photos)} photos can be scored (NIQE needs 96×96 pixels and some texture)")
    print(f"{res['photos']} real old photos, NIQE (lower is more natural), mean [95 % CI]")
    for label, r in res["methods"].items():
        extra = ""
        if label != "input":
            extra = (f"  change {r['change']:+.3f} {_interval(r['change_ci95'], '+.3f')}, "
                     f"better on {r['better_share']:.0%}, {r['seconds']:.2f} s/photo")  # fmt: skip
        print(f"  {label:<18} {r['niqe']:.3f} {_interval(r['ci95'])}{extra}")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(strict_json(res), indent=1, allow_nan=False))  # one photo: no interval, null
    plot(res, Path(args.plot))
    print(f"wrote {args.out}, {args.plot}")


if __name__ == "__main__":
    main()
