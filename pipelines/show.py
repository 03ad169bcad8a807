"""Contact sheets of a dataset: degraded / clean / mask triplets with the key params under each."""

from __future__ import annotations

import json
from typing import Any

from degrade.sheet import contact_sheet

from .reader import Dataset

_SHORT = {"gaussian_noise": "noise", "gaussian_blur": "blur", "brightness_contrast_gamma": "bcg", "poisson_noise": "shot",
          "salt_pepper": "s&p", "defocus_blur": "defocus", "motion_blur": "motion", "film_grain": "grain"}  # fmt: skip


def _fmt(v: Any) -> str:
    if isinstance(v, bool):
        return "y" if v else "n"
    if isinstance(v, float):
        return f"{v:.2g}"
    return str(v)


def summarize(record: list[dict[str, Any]], width: int = 60) -> str:
    """``blur sigma=1.3 · jpeg quality=40 · scratches count=5`` (each op's main parameter)."""
    from degrade import get_operator

    parts = []
    for e in record:
        name = _SHORT.get(e["op"], e["op"])
        key = get_operator(e["op"]).main_param()
        parts.append(f"{name} {key}={_fmt(e['params'][key])}" if key in e["params"] else name)
    text = " · ".join(parts) or "(nothing applied)"
    return text if len(text) <= width else text[: width - 1] + "…"


def dataset_sheet(ds: Dataset, n: int = 16, tile: int = 200):
    """A PIL image: ``n`` evenly spaced samples, each as degraded | clean | mask, captioned."""
    n = max(1, min(n, len(ds)))
    idx = sorted({round(i * (len(ds) - 1) / max(1, n - 1)) for i in range(n)})
    tiles, labels = [], []
    for i in idx:
        s = ds[i]
        src = s.get("source") or {}
        where = f"#{i} {src.get('file', '')}"
        if "clean" in s:
            caption = summarize(s.get("params") or [])
            tiles += [s["degraded"], s["clean"], s["mask"]]
            labels += [f"{where} degraded\n{caption}", f"#{i} clean", f"#{i} mask ({(s['mask'] > 0).mean():.1%})"]
        else:
            tiles.append(s["degraded"])
            labels.append(f"{where}\nreal photo crop {src.get('box', '')}")
    a = ds.attrs
    title = f"{a.get('name')}@{a.get('version', '?')}: {a.get('count')} samples, {a.get('size')} px, recipe {json.dumps((a.get('recipe') or {}).get('name'))} {str(a.get('recipe_hash'))[:12]}"
    ncols = 6 if "clean" in ds.fields else 8
    return contact_sheet(tiles, labels, ncols=ncols, tile_size=tile, title=title, label_lines=2)
