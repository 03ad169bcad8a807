"""Trial, not shipped: can test-time flips or a morphological post-process lift the detector's F1?

Usage: DAGUERRE_HOME=... python bench/detector_trial.py [--model default] [--datasets val-old-photo,test-old-photo]
                                                      [--n 240] [--out bench/out/detector_trial.json]

Issue 6 asks for pixel F1 >= 0.6 on the structured defects. This scores the bundle's detector at
the best threshold of a fixed grid (pooled pixels, as ``zoo calibrate --objective f1`` does) with:
its plain output; the mean of its probabilities over flipped copies of the input (horizontal;
horizontal and vertical; all eight flips and transposes); the maps of the image at half and twice
its size, alone and averaged with or as the maximum of the plain map (multi-scale); and three
post-processes of the plain map before the threshold (a Gaussian of σ 1 px, a 1 px dilation, a
closing of radius 2 px).
Choose on the validation sets, read the test sets.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import cv2
import numpy as np

GRID = (0.5, 0.6, 0.7, 0.75, 0.8, 0.85, 0.9, 0.925, 0.95, 0.965, 0.98)
# each view: (transpose first, dims to flip) of an N×C×H×W tensor
VIEWS = {
    "plain": [(False, ())],
    "flip-h": [(False, ()), (False, (3,))],
    "flip-hv": [(False, ()), (False, (3,)), (False, (2,)), (False, (2, 3))],
    "dihedral-8": [(t, f) for t in (False, True) for f in ((), (3,), (2,), (2, 3))],
}
_ELLIPSE = lambda r: cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))  # noqa: E731
SCALES = {  # name: (scales whose maps combine, how)
    "scale-0.5": ((0.5,), "mean"),
    "scale-2": ((2.0,), "mean"),
    "mean-1-0.5": ((1.0, 0.5), "mean"),
    "max-1-0.5": ((1.0, 0.5), "max"),
    "mean-1-2": ((1.0, 2.0), "mean"),
    "max-1-2": ((1.0, 2.0), "max"),
}
POST = {
    "gaussian-1px": lambda p, t: cv2.GaussianBlur(p, (0, 0), 1.0) > t,
    "dilate-1px": lambda p, t: cv2.dilate((p > t).astype(np.uint8), _ELLIPSE(1)) > 0,
    "close-2px": lambda p, t: cv2.morphologyEx((p > t).astype(np.uint8), cv2.MORPH_CLOSE, _ELLIPSE(2)) > 0,
}


def probabilities(scratch, x, views) -> np.ndarray:
    """Mean defect probability over the views of one image tensor (each view undone on the output)."""
    import torch

    out = []
    for transpose, dims in views:
        y = x.transpose(2, 3) if transpose else x
        y = torch.flip(y, dims) if dims else y
        p = torch.sigmoid(scratch(y))
        p = torch.flip(p, dims) if dims else p
        out.append(p.transpose(2, 3) if transpose else p)
    return torch.stack(out).mean(0)[0, 0].numpy()


def scaled_probabilities(scratch, x, scale: float) -> np.ndarray:
    """The detector's map of the image resized by ``scale`` (padded to its stride), brought back to the image's size."""
    import torch
    import torch.nn.functional as F

    h, w = x.shape[-2:]
    y = F.interpolate(x, scale_factor=scale, mode="bilinear", align_corners=False, antialias=scale < 1)
    hs, ws = y.shape[-2:]
    y = F.pad(y, (0, (-ws) % 8, 0, (-hs) % 8), mode="reflect")
    p = torch.sigmoid(scratch(y))[..., :hs, :ws]
    return F.interpolate(p, size=(h, w), mode="bilinear", align_corners=False)[0, 0].numpy()


def best_f1(counts: np.ndarray) -> tuple[float, float, float, float]:
    """(F1, precision, recall, threshold) at the grid's best threshold from per-threshold (tp, fp, fn)."""
    tp, fp, fn = counts.T.astype(float)
    f1 = 2 * tp / np.maximum(2 * tp + fp + fn, 1)
    k = int(np.argmax(f1))
    return float(f1[k]), float(tp[k] / max(tp[k] + fp[k], 1)), float(tp[k] / max(tp[k] + fn[k], 1)), GRID[k]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="default")
    ap.add_argument("--datasets", default="val-old-photo,test-old-photo")
    ap.add_argument("--n", type=int, default=240)
    ap.add_argument("--out", default="bench/out/detector_trial.json")
    args = ap.parse_args()

    import torch
    from rich.progress import track

    from pipelines import open_dataset
    from zoo.bundle import load_bundle
    from zoo.restore import _to_tensor

    torch.set_num_threads(2)
    bundle = load_bundle(args.model)
    result = {"model": args.model, "grid": GRID, "datasets": {}}
    for name in args.datasets.split(","):
        ds = open_dataset(name)
        n = min(args.n, len(ds))
        counts = {k: np.zeros((len(GRID), 3), np.int64) for k in [*VIEWS, *SCALES, *POST]}
        seconds = dict.fromkeys(VIEWS, 0.0)
        for i in track(range(n), description=f"{name}: {len(VIEWS) + 2} maps per image", transient=True):
            s = ds[i]
            truth = s["mask"] > 0
            x = _to_tensor(s["degraded"], "cpu")
            maps = {}
            with torch.inference_mode():
                for v, views in VIEWS.items():
                    t = time.perf_counter()
                    maps[v] = probabilities(bundle.scratch, x, views)
                    seconds[v] += time.perf_counter() - t
                by_scale = {1.0: maps["plain"], **{sc: scaled_probabilities(bundle.scratch, x, sc) for sc in (0.5, 2.0)}}
            for key, (scales, how) in SCALES.items():
                stack = np.stack([by_scale[sc] for sc in scales])
                maps[key] = stack.mean(0) if how == "mean" else stack.max(0)
            for key in counts:
                for k, th in enumerate(GRID):
                    pred = POST[key](maps["plain"], th) if key in POST else maps[key] > th
                    counts[key][k] += (np.count_nonzero(pred & truth), np.count_nonzero(pred & ~truth), np.count_nonzero(~pred & truth))
        rows = {}
        for key, c in counts.items():
            f1, p, r, th = best_f1(c)
            rows[key] = {"f1": round(f1, 4), "precision": round(p, 4), "recall": round(r, 4), "threshold": th}
            if key in VIEWS:
                rows[key]["ms_per_image"] = round(1e3 * seconds[key] / n, 1)
            print(f"{name:16} {key:14} F1 {f1:.4f} (P {p:.3f} R {r:.3f} at {th})", flush=True)
        result["datasets"][name] = {"identity": ds.attrs.get("identity"), "samples": n, "variants": rows}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
