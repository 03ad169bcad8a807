"""Where a bundle's PSNR and detection F1 go, per kind of damage: a diagnostic for the issue-6 gap.

Usage: python bench/damage_breakdown.py --dataset test-old-photo [--n 240] [--bundle default]
                                        [--json bench/out/damage_breakdown-test-old-photo.json]

Two questions, on a synthetic dataset (clean, degraded, mask, params):

1. **Which defects make up the mask, and which does the detector find?** Each sample's params
   record is replayed operator by operator to get every structured operator's own mask; per
   operator we report its share of the mask pixels and the detector's recall on them, with the
   threshold alone and with the bundle's calibrated (hysteresis) mask. Replaying the record
   without its structured operators (``apply`` is pure, so every other step is the same) gives
   the damage-free twin of the degraded image; a mask pixel is *visible* where the two differ by
   more than ``--visible`` grey levels, and recall and F1 are also reported on visible pixels.
2. **How much of the input's PSNR loss is global colour and tone?** An oracle fits, per image and
   by least squares against the clean image, one affine colour transform (3×3 matrix + offset).
   ``input + colour oracle`` bounds what any global correction (fading, sepia, exposure) could
   give; ``restored + colour oracle`` is the bundle's output with its global colour fixed the same
   way, i.e. the bundle's structural fidelity; ``restored (ground-truth mask)`` isolates detection.
3. **Which defects is inpainting worth it for?** Per structured operator, on the samples that
   have it: the PSNR of the restoration with the whole ground-truth mask minus that with the
   operator's own pixels left out of the mask (and so left to the mapping's local branch).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def affine_oracle(x, y, mask=None):
    """``x`` with the per-image affine colour transform that best maps it to ``y`` (least squares)."""
    import numpy as np

    a = np.c_[x.reshape(-1, 3).astype(np.float64), np.ones(x.size // 3)]
    keep = slice(None) if mask is None or mask.all() else ~mask.ravel()
    coef, *_ = np.linalg.lstsq(a[keep], y.reshape(-1, 3).astype(np.float64)[keep], rcond=None)
    return np.clip(a @ coef + 0.5, 0, 255).astype(np.uint8).reshape(x.shape)


def own_masks(clean, record) -> dict[str, "np.ndarray"]:
    """Each structured operator's own mask (bool), replaying ``record`` on ``clean``."""
    from degrade.operator import STRUCTURED, get_operator
    from degrade.recipe import replay

    out, masks = clean, {}
    for entry in record:
        out, m = replay(out, [entry], validate=False)
        if get_operator(entry["op"], "record").kind == STRUCTURED:
            masks[entry["op"]] = masks.get(entry["op"], False) | (m > 127)
    return masks


def without_defects(clean, record):
    """The degraded image the record gives with its structured operators left out."""
    from degrade.operator import STRUCTURED, get_operator
    from degrade.recipe import replay

    return replay(clean, [e for e in record if get_operator(e["op"], "record").kind != STRUCTURED], validate=False)[0]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--dataset", required=True)
    ap.add_argument("--n", type=int, default=240)
    ap.add_argument("--bundle", default="default")
    ap.add_argument("--visible", type=int, default=10, help="grey levels a defect must change to count as visible")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()

    import numpy as np
    import torch
    from rich.progress import track

    from pipelines import open_dataset
    from zoo.bundle import load_bundle
    from zoo.metrics import detection, psnr, scores
    from zoo.restore import detect, hysteresis, translate

    torch.set_num_threads(2)
    b = load_bundle(args.bundle)
    cfg = b.scratch.cfg
    ds = open_dataset(args.dataset)
    n = min(args.n, len(ds))
    pixels, samples, found = Counter(), Counter(), {"threshold": Counter(), "calibrated": Counter()}
    seen, seen_found = Counter(), {k: Counter() for k in found}
    worth: dict[str, list[float]] = {}
    counts = {k: Counter() for k in (*found, *(f"{k}, visible defects" for k in found))}
    rows: dict[str, list[float]] = {}

    def add(key, img, clean):
        rows.setdefault(key, []).append(psnr(img, clean))

    for i in track(range(n), description=f"{args.dataset}", transient=True):
        s = ds[i]
        clean, deg, gt = s["clean"], s["degraded"], s["mask"] > 127
        prob = detect(b, deg)
        preds = {"threshold": prob > cfg.threshold, "calibrated": hysteresis(prob, cfg.threshold, cfg.seed_threshold)}
        changed = np.abs(deg.astype(np.int16) - without_defects(clean, s["params"])).max(2) > args.visible
        visible = gt & changed
        masks = own_masks(clean, s["params"])
        for op, m in masks.items():
            samples[op] += 1
            pixels[op] += int(m.sum())
            seen[op] += int((m & changed).sum())
            for k, p in preds.items():
                found[k][op] += int((p & m).sum())
                seen_found[k][op] += int((p & m & changed).sum())
        for k, p in preds.items():
            # against the visible defects, detections of invisible ones count neither way
            for key, pred, truth in ((k, p, gt), (f"{k}, visible defects", p & ~(gt & ~changed), visible)):
                r = detection(pred, truth)
                counts[key].update(tp=r["tp"], fp=r["fp"], fn=r["fn"])
        restored = translate(b, deg, preds["calibrated"].view(np.uint8))
        add("input", deg, clean)
        add("input + colour oracle", affine_oracle(deg, clean, gt), clean)
        add("restored", restored, clean)
        add("restored + colour oracle", affine_oracle(restored, clean), clean)
        full = psnr(translate(b, deg, gt.view(np.uint8)), clean)
        rows.setdefault("restored (ground-truth mask)", []).append(full)
        for op, m in masks.items():
            rest = np.logical_or.reduce([np.zeros_like(gt)] + [mo for other, mo in masks.items() if other != op])
            if m.any():
                worth.setdefault(op, []).append(full - psnr(translate(b, deg, rest.view(np.uint8)), clean))

    total = sum(pixels.values()) or 1
    ops = {
        op: {
            "samples": samples[op],
            "mask_share": pixels[op] / total,
            "visible_share": seen[op] / max(pixels[op], 1),
            **{f"recall_{k}": found[k][op] / max(pixels[op], 1) for k in found},
            **{f"visible_recall_{k}": seen_found[k][op] / max(seen[op], 1) for k in found},
            "inpainting_gain_db": float(np.mean(worth[op])) if worth.get(op) else None,
            "inpainting_gain_se": float(np.std(worth[op], ddof=1) / np.sqrt(len(worth[op]))) if len(worth.get(op, [])) > 1 else None,
        }
        for op in sorted(pixels, key=lambda o: -pixels[o])
    }
    pooled = {k: scores(c["tp"], c["fp"], c["fn"]) for k, c in counts.items()}
    result = {
        "dataset": args.dataset,
        "n": n,
        "bundle": args.bundle,
        "threshold": cfg.threshold,
        "seed_threshold": cfg.seed_threshold,
        "visible_grey_levels": args.visible,
        "operators": ops,
        "detection": pooled,
        "psnr": {k: float(np.mean(v)) for k, v in rows.items()},
    }
    print(f"{args.dataset}, {n} samples, bundle {args.bundle} (threshold {cfg.threshold}, seeds {cfg.seed_threshold})")
    print(f"| operator | samples | share of mask pixels | visible (> {args.visible} grey levels) | recall, threshold "
          "| recall, calibrated mask | same, visible pixels |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for op, o in ops.items():
        print(f"| {op} | {o['samples']} | {o['mask_share']:.2f} | {o['visible_share']:.2f} | {o['recall_threshold']:.2f} "
              f"| {o['recall_calibrated']:.2f} | {o['visible_recall_threshold']:.2f}, {o['visible_recall_calibrated']:.2f} |")
    for k, d in pooled.items():
        print(f"{k}: precision {d['precision']:.2f} recall {d['recall']:.2f} F1 {d['f1']:.2f}")
    print("| operator | samples | PSNR gained by inpainting it (dB, ± s.e.), ground-truth masks |")
    print("| --- | --- | --- |")
    for op, o in ops.items():
        if o["inpainting_gain_db"] is not None:
            print(f"| {op} | {len(worth[op])} | {o['inpainting_gain_db']:+.2f} ± {o['inpainting_gain_se'] or 0:.2f} |")
    print("| PSNR (dB) | mean |")
    print("| --- | --- |")
    for k, v in result["psnr"].items():
        print(f"| {k} | {v:.2f} |")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
