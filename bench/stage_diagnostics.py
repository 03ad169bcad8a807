"""Which stage limits a bundle: each VAE's own reconstruction next to the full restoration, per mapping.

Usage: python bench/stage_diagnostics.py --dataset val [--n 60] [--vae1 default-vae1] [--vae2 default-vae2]
                                         [--bundle default] [--mappings default-mapping,default-mapping-ft]
                                         [--source-regex REGEX]

On samples whose degraded and clean images differ, mean PSNR (dB) of: the degraded input against
the clean image; VAE2 reconstructing the clean image (G_Y(E_Y(y)), the ceiling of any restoration);
VAE1 reconstructing the degraded image (G_X(E_X(x)), how much E_X keeps); and G_Y(T(E_X(x), m)) with
the ground-truth mask for each mapping checkpoint (the bundle's own and any others given). From
the second ``--mappings`` entry on, each also gets its paired difference from the first, with a
95 % interval.
"""

from __future__ import annotations

import argparse
import copy
import json
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--dataset", required=True)
    ap.add_argument("--n", type=int, default=60)
    ap.add_argument("--bundle", default="default")
    ap.add_argument("--vae1", default="default-vae1")
    ap.add_argument("--vae2", default="default-vae2")
    ap.add_argument("--mappings", default="", help="comma-separated mapping checkpoints to compare")
    ap.add_argument("--source-regex", default="", help="only samples whose source file name matches (e.g. one photo collection)")
    args = ap.parse_args()

    import numpy as np
    import torch

    from pipelines import open_dataset
    from zoo import checkpoint, metrics, store
    from zoo.bundle import load_bundle
    from zoo.nn import to_signed
    from zoo.train import load_frozen, to_image

    torch.set_num_threads(2)
    b = load_bundle(args.bundle)
    v1, v2 = load_frozen(args.vae1, "vae", "cpu"), load_frozen(args.vae2, "vae", "cpu")
    maps = {f"{args.bundle} (its mapping)": b.mapping}
    for name in filter(None, args.mappings.split(",")):
        m = copy.deepcopy(b.mapping)
        checkpoint.load_module(m, store.load(name, "mapping")[0], "model", name)
        maps[name] = m.eval()

    def t(a):
        return to_signed(torch.from_numpy(np.array(a))[None])

    def u(x):
        return to_image(x)[0]

    ds = open_dataset(args.dataset)
    rows: dict[str, list[float]] = {}
    with torch.inference_mode():
        for i in range(min(args.n, len(ds))):
            if args.source_regex and not re.search(args.source_regex, json.loads(ds.read("source", i))["file"]):
                continue
            x, y, mask = ds.read("degraded", i), ds.read("clean", i), ds.read("mask", i)
            if np.array_equal(x, y):
                continue
            zx, m = b.vae1.encode(t(x))[0], torch.from_numpy(mask > 0)[None, None].float()
            rows.setdefault("degraded input", []).append(metrics.psnr(x, y))
            rows.setdefault("VAE2 reconstruction of clean", []).append(metrics.psnr(u(v2(t(y))[0]), y))
            rows.setdefault("VAE1 reconstruction of degraded (vs degraded)", []).append(metrics.psnr(u(v1(t(x))[0]), x))
            for name, T in maps.items():
                rows.setdefault(f"restored, gt mask: {name}", []).append(metrics.psnr(u(b.vae2.decode(T(zx, m))), y))
    out = {k: {"psnr": round(float(np.mean(v)), 3), "samples": len(v)} for k, v in rows.items()}
    names = [k for k in rows if k.startswith("restored, gt mask: ")]
    for k in names[2:]:  # each further mapping against the first one given: paired per-sample differences
        d = np.array(rows[k]) - np.array(rows[names[1]])
        half = 1.96 * d.std(ddof=1) / np.sqrt(len(d)) if len(d) > 1 else float("nan")
        out[k]["minus_first"] = {"mean": round(float(d.mean()), 3), "ci95": [round(float(d.mean() - half), 3), round(float(d.mean() + half), 3)]}
    print(json.dumps({"dataset": args.dataset, "source_regex": args.source_regex, "results": out}, indent=2))


if __name__ == "__main__":
    main()
