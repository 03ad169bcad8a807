"""``make demo``: degrade the bundled photos, build a versioned dataset, restore the bundled real
old photos with the default model, and write ``index.html`` with sheets, pairs and timings."""

from __future__ import annotations

import html
import time
from pathlib import Path

from degrade.io import atomic_write_bytes


def build_demo(out: Path, model: str = "default", count: int = 96, size: int = 128, log=print) -> Path:
    from degrade import load_recipe
    from degrade.batch import degrade_files, preview_sheet, resolve_inputs
    from degrade.sheet import save_sheet
    from pipelines import build_spec, create_dataset, open_dataset
    from pipelines.show import dataset_sheet

    from .restore import get_bundle, resolve_device, restore_files

    get_bundle(model, str(resolve_device("auto")))  # an unknown model or bad checkpoint fails before --out and the dataset are made
    out.mkdir(parents=True, exist_ok=True)
    timings: list[tuple[str, float]] = []

    t = time.perf_counter()
    recipe = load_recipe("old-photo")
    rep = degrade_files(resolve_inputs(["builtin:samples"]), recipe, 0, out / "degraded", 1, keep_previews=13,
                        overwrite=True)  # fmt: skip  (the demo's own subfolders, also those of older versions)
    save_sheet(preview_sheet(rep, title=f"old-photo recipe ({recipe.hash[:12]}) on scikit-image's photographs"), out / "degrade-sheet.png")
    timings.append((f"degrade {len(rep.written)} photos (old-photo recipe)", time.perf_counter() - t))
    log(f"degraded {len(rep.written)} photos")

    t = time.perf_counter()
    spec = build_spec("demo", "builtin:samples", count, size, 0, "old-photo", shard_size=32)
    res = create_dataset(spec, workers=2, scheduler="processes")
    ds = open_dataset(res.path)
    save_sheet(dataset_sheet(ds, 12), out / "dataset-sheet.png")
    what = "reused" if res.reused else "generated"
    timings.append((f"dataset {res.version.ref}: {count} samples of {size} px ({what}) + contact sheet", time.perf_counter() - t))
    log(f"dataset {res.version.ref} ({what})")

    t = time.perf_counter()
    photos = resolve_inputs(["builtin:real"])
    rr = restore_files(photos, out / "restored", model, "auto", 256, "auto", overwrite=True, redo=True)  # the page shows and times every photo
    if rr.failed:
        from degrade.errors import DaguerreError

        raise DaguerreError(f"restoring the bundled photos failed: {rr.failed[0][1]}")
    timings.append((f"restore {len(rr.written)} real old photos (default bundle)", time.perf_counter() - t))
    per_photo = [(p.stem, s) for p, s in zip(rr.written, rr.seconds)]
    log(f"restored {len(rr.written)} real old photos")

    rows = "\n".join(f"<tr><td>{html.escape(k)}</td><td>{v:.1f} s</td></tr>" for k, v in timings)
    photo_rows = "\n".join(f"<tr><td>{html.escape(n)}</td><td>{s:.2f} s</td></tr>" for n, s in per_photo)
    pairs = "\n".join(
        f'<figure><img src="restored/{html.escape(p.stem)}.compare.png" alt="{html.escape(p.stem)} before and after">'
        f"<figcaption>{html.escape(p.stem)}: input | restored "
        f'(<a href="restored/{html.escape(p.stem)}.mask.png">detected defects</a>)</figcaption></figure>'
        for p in rr.written
    )
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>daguerre demo</title>
<style>body{{font-family:system-ui,sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;color:#222}}
img{{max-width:100%;border:1px solid #ddd}}figure{{margin:1.5em 0}}table{{border-collapse:collapse}}
td{{padding:.2em .8em;border-bottom:1px solid #eee}}</style></head><body>
<h1>daguerre demo</h1>
<h2>Timings</h2><table>{rows}</table>
<h2>Restored real old photos</h2>
<p>Defect detection, then VAE1's encoder, the latent mapping with the detected mask, VAE2's decoder, and the bundle's calibrated tone anchoring.</p>
{pairs}
<table><tr><th>photo</th><th>restore time</th></tr>{photo_rows}</table>
<h2>Synthetic dataset</h2><p>A versioned dataset built from the bundled photographs:
degraded | clean | defect mask, with the operators applied.</p>
<img src="dataset-sheet.png" alt="dataset contact sheet">
<h2>Degradations</h2><img src="degrade-sheet.png" alt="degraded photographs">
</body></html>
"""
    atomic_write_bytes(out / "index.html", page.encode())
    return out / "index.html"
