"""Publish the trained default bundle: card with provenance and metrics, weights into zoo/weights,
before/after sheets of every real old photo and the README's before | after into docs/img.

``python -m zoo.default.publish WORK`` (the last step of ``make train-default``). Run again on a
published bundle (recalibrated, say) without WORK's provenance.json, it keeps the card's; on a
bundle of the shipped networks with another detector, it takes the shipped card's.
"""

from __future__ import annotations

import json
import shutil
import sys
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
README_PHOTO = "old_w_scratch/a.png"


def provenance(work: Path) -> dict:
    files = json.loads((work / "provenance.json").read_text())
    return {"clean_training_photos": len(files), "by_source": dict(Counter(files.values())),
            "held_out_for_testing": "every third CBSD68 image by name (22 images), used only by the test datasets",
            "real_old_photos": "../shared/data/real_old_photos: 9 from microsoft/Bringing-Old-Photos-Back-to-Life (MIT), "
                               "248 historical photographs from jantic/DeOldify's test_images history (mostly public domain)"}  # fmt: skip


def before_after_sheets(model: str, photos: list[Path], out_prefix: Path, per_sheet: int = 64, tile: int = 128) -> list[Path]:
    """Restore every photo and write sheets of (before | after) pairs, ``per_sheet`` photos each."""
    import cv2

    from degrade.io import read_image
    from degrade.sheet import contact_sheet, save_sheet
    from zoo.restore import restore

    written = []
    tiles, labels = [], []

    def flush(k):
        path = out_prefix.parent / f"{out_prefix.name}-{k}.png"
        title = f"Real old photos, before | after (default bundle), sheet {k}"
        save_sheet(contact_sheet(tiles, labels, ncols=8, tile_size=tile, title=title, label_lines=1), path)
        written.append(path)

    for i, p in enumerate(photos):
        pic = read_image(p)
        rgb = pic.rgb()
        s = min(1.0, 768 / max(rgb.shape[:2]))
        if s < 1:
            rgb = cv2.resize(rgb, (round(rgb.shape[1] * s), round(rgb.shape[0] * s)), interpolation=cv2.INTER_AREA)
        res = restore(rgb, model)
        tiles += [rgb, res.image]
        labels += [p.name[:24], "restored"]
        if len(tiles) == 2 * per_sheet:
            flush(len(written) + 1)
            tiles, labels = [], []
    if tiles:
        flush(len(written) + 1)
    return written


def readme_image(model: str, photo: Path, out: Path) -> None:
    """The README's before | after: what `daguerre restore` writes as NAME.compare.png."""
    from degrade.io import atomic_write_bytes, encode_png, read_image
    from zoo.restore import compare_image, picture_array, restore

    px = picture_array(read_image(photo))
    atomic_write_bytes(out, encode_png(compare_image(px, restore(px, model).image)))


def _shipped_card() -> dict | None:
    path = ROOT / "zoo" / "weights" / "default.json"
    card = json.loads(path.read_text()) if path.exists() else None
    return card if card and "provenance" in card else None


def real_photos() -> tuple[Path, list[Path]]:
    """The shared real old photos the sheets show (../shared/data/real_old_photos next to the checkout)."""
    shared = ROOT.parent / "shared" / "data" / "real_old_photos"
    photos = sorted(p for p in shared.rglob("*") if p.suffix.lower() in (".png", ".jpg", ".jpeg"))
    if not photos or not (shared / README_PHOTO).is_file():
        raise SystemExit(f"no real old photos in {shared} (with {README_PHOTO}): publish needs them next to the checkout")
    return shared, photos


def main(work: str) -> None:
    work = Path(work)
    shared, photos = real_photos()  # before anything is written: a half-published bundle has no sheets
    sys.path.insert(0, str(ROOT / "bench"))
    import restore_quality

    from zoo import checkpoint, store

    quality = restore_quality.evaluate("default", ["test-bopbtl", "test-old-photo"], workers=2)
    (ROOT / "bench" / "out").mkdir(parents=True, exist_ok=True)
    (ROOT / "bench" / "out" / "restore_quality.json").write_text(json.dumps(quality, indent=2))
    tensors, card = checkpoint.load(store.resolve("default"))
    if (work / "provenance.json").exists():
        card["provenance"] = provenance(work)
    elif "provenance" in card:  # re-publishing a published bundle (say, recalibrated): its training photos are unchanged
        print(f"no {work / 'provenance.json'}: keeping the card's provenance ({card['provenance']['clean_training_photos']} photos)")
    elif (shipped := _shipped_card()) and all(shipped["parts"][k] == card["parts"][k] for k in ("vae1", "vae2", "mapping")):
        card["provenance"] = shipped["provenance"]  # a new detector or calibration on the shipped networks
        print(f"no {work / 'provenance.json'}: the networks are the shipped ones, keeping their provenance")
    else:
        raise SystemExit(f"no {work / 'provenance.json'} and no provenance in the bundle's card: run zoo.default.sources first")
    card["name"] = "default"
    det = card["parts"]["scratch"]
    if any(d.get("name") == "x-gpu" for d in det.get("datasets", [])):
        start = (det.get("upstream") or {}).get("init", "scratch")
        card["provenance"]["detector"] = ("trained on a GPU, each run from the one before, from the CPU-trained detector on "
                                          "(zoo/default/gpu-run-detector/README.md); the last run: "
                                          f"{det['steps']} steps from {start} on x-gpu, {det['datasets'][0]['count']} train-mix "
                                          "samples of the 112 photographs zoo/default/sources.py lists (18 more than the 94 "
                                          "the networks were trained on)")  # fmt: skip
    card["metrics"] = {ref: {"psnr": r["methods"]["zoo:default"]["psnr"], "ssim": r["methods"]["zoo:default"]["ssim"],
                             "gain_psnr": r["gain_over_input"]["psnr"], "gain_ssim": r["gain_over_input"]["ssim"],
                             "detection_f1": (r["detection"] or {}).get("pooled", {}).get("f1")} for ref, r in quality.items()}  # fmt: skip
    card["vgg_perceptual_loss"] = False
    card["licence"] = "weights: MIT (this project); training photographs: see provenance"
    checkpoint.save(ROOT / "zoo" / "weights" / "default", tensors, card)
    sheets = before_after_sheets(str(ROOT / "zoo" / "weights" / "default.safetensors"), photos, ROOT / "docs" / "img" / "real-before-after")
    for stale in set((ROOT / "docs" / "img").glob("real-before-after-*.png")) - set(sheets):  # an earlier, longer series
        stale.unlink()
    readme_image(str(ROOT / "zoo" / "weights" / "default.safetensors"), shared / README_PHOTO,
                 ROOT / "docs" / "img" / "readme-before-after.png")  # fmt: skip
    print(json.dumps(card["metrics"], indent=1))
    print(f"published zoo/weights/default.safetensors; {len(sheets)} before/after sheets in docs/img/")
    shutil.rmtree(ROOT / "bench" / "out" / "tmp", ignore_errors=True)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "work/default")
