"""Regenerate the generated parts of the docs from the code: ``python docs/generate.py``.

* docs/degrade.md: the operator reference between the GENERATED markers, from the registry;
* docs/img/operators.png: every operator's example on one photograph;
* docs/img/old-photo-vs-real.png: ``old-photo`` samples next to real old photographs.
"""

from __future__ import annotations

import sys
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from degrade import list_operators, load_recipe  # noqa: E402
from degrade.describe import operators_markdown  # noqa: E402
from degrade.io import read_image  # noqa: E402
from degrade.samples import real_photo_paths, sample_photo_paths  # noqa: E402
from degrade.sheet import contact_sheet, save_sheet  # noqa: E402

BEGIN, END = "<!-- BEGIN GENERATED: operators -->", "<!-- END GENERATED: operators -->"
SHARED_REAL = ROOT.parent / "shared" / "data" / "real_old_photos"


def reference_section() -> str:
    return f"{BEGIN}\n{operators_markdown()}\n{END}"


def update_reference(path: Path = ROOT / "docs" / "degrade.md") -> bool:
    """Rewrite the generated section; returns whether the file changed."""
    text = path.read_text()
    start, end = text.index(BEGIN), text.index(END) + len(END)
    new = text[:start] + reference_section() + text[end:]
    changed = new != text
    path.write_text(new)
    return changed


def _square(im: np.ndarray, size: int) -> np.ndarray:
    h, w = im.shape[:2]
    s = min(h, w)
    y, x = (h - s) // 2, (w - s) // 2
    return cv2.resize(im[y : y + s, x : x + s], (size, size), interpolation=cv2.INTER_AREA)


def operators_sheet(out: Path) -> None:
    photo = [p for p in sample_photo_paths() if p.name == "astronaut.png"][0]
    img = _square(read_image(photo).rgb(), 256)
    tiles, labels = [img], ["original"]
    for cls in list_operators():
        op = cls(**cls.example)
        res, mask = op(img, np.random.default_rng(1))
        tiles.append(res)
        labels.append(cls.name)
        if mask is not None:
            tiles.append(mask)
            labels.append(f"{cls.name} mask")
    save_sheet(contact_sheet(tiles, labels, ncols=7, tile_size=180, label_lines=1, title="Every operator, its example settings"), out)


def realism_sheet(out: Path) -> None:
    """Rows of synthetic old-photo samples, then rows of real old photos, at the same scale."""
    recipe = load_recipe("old-photo")
    clean = [_square(read_image(p).rgb(), 256) for p in sample_photo_paths()[:7]]
    synth = [recipe.apply(clean[i % len(clean)], seed=2026, index=i).image for i in range(14)]
    real_paths = sorted((SHARED_REAL / "old_w_scratch").glob("*.png")) + sorted((SHARED_REAL / "old").glob("*.png"))
    real_paths += sorted((SHARED_REAL / "historical").glob("*.jpg"))[:: 25][: max(0, 14 - len(real_paths))]
    if not real_paths:
        real_paths = real_photo_paths()
    real = [_square(read_image(p).rgb(), 256) for p in real_paths[:14]]
    tiles = synth + real
    labels = [f"synthetic #{i}" for i in range(len(synth))] + [f"real: {p.parent.name}/{p.name}" for p in real_paths[:14]]
    save_sheet(
        contact_sheet(tiles, labels, ncols=7, tile_size=180, label_lines=1, title="Top: old-photo recipe on clean photos. Bottom: real old photos (centre crops)."),
        out,
    )


def main() -> None:
    changed = update_reference()
    (ROOT / "docs" / "img").mkdir(parents=True, exist_ok=True)
    operators_sheet(ROOT / "docs" / "img" / "operators.png")
    realism_sheet(ROOT / "docs" / "img" / "old-photo-vs-real.png")
    print(f"docs/degrade.md {'updated' if changed else 'up to date'}; sheets written to docs/img/")


if __name__ == "__main__":
    main()
