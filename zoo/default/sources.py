"""The photographs behind the shipped default model: which, under what licence, and the held-out split.

``python -m zoo.default.sources DIR`` links the training photographs into ``DIR/clean-train``
and the held-out ones into ``DIR/clean-test`` (``DIR/real`` gets the real old photos), so that
``daguerre dataset create`` can read each set as one folder.
"""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "data"

# Photographs (not renders) from Debian packages, with their licences (debian/copyright).
# plasma-workspace-wallpapers: each folder's largest size (5.27 ships most of them up to 2560×1600).
PLASMA_PHOTOS = ["BytheWater", "ColdRipple", "EveningGlow", "FallenLeaf", "Grey", "OneStandsOut", "Path", "Volna"]
PLASMA_LICENCE = "plasma-workspace-wallpapers, GPL-2+ (KDE VDG)"
DEBIAN_PHOTOS = {
    "/usr/share/backgrounds/Bridge_by_Sander_Klootwijk.jpg": "lomiri-wallpapers, CC-BY-SA-4.0 (Sander Klootwijk)",
    "/usr/share/backgrounds/Dragonfly_by_Bolly.jpg": "lomiri-wallpapers, CC-BY-SA-4.0 (Bolly)",
    "/usr/share/backgrounds/Infinite-Sea_by_Aury88.jpg": "lomiri-wallpapers (Aury88), see debian/copyright",
    "/usr/share/backgrounds/Kleiber_by_Lukas_Baubkus.jpg": "lomiri-wallpapers (Lukas Baubkus), see debian/copyright",
    "/usr/share/backgrounds/Painting-Colors_by__herobrine7gamer.jpg": "lomiri-wallpapers (herobrine7gamer), see debian/copyright",
    "/usr/share/backgrounds/Picture_0B_by_freespace.jpg": "lomiri-wallpapers, CC-BY-4.0 (Trevor Freespace)",
    "/usr/share/backgrounds/Picture_1A_by_freespace.jpg": "lomiri-wallpapers, CC-BY-4.0 (Trevor Freespace)",
    "/usr/share/backgrounds/Wine_by_Jakkub_Mede.jpg": "lomiri-wallpapers (Jakkub Mede), see debian/copyright",
    "/usr/share/backgrounds/aitzgorri_by_Aitzol_Berasategi.jpg": "lomiri-wallpapers, CC-BY-4.0 (Aitzol Berasategi)",
    "/usr/share/backgrounds/friends_by_Aitzol_Berasategi.jpg": "lomiri-wallpapers, CC-BY-4.0 (Aitzol Berasategi)",
    "/usr/share/backgrounds/life_by_Aitzol_Berasategi.jpg": "lomiri-wallpapers, CC-BY-4.0 (Aitzol Berasategi)",
    "/usr/share/backgrounds/picosdeeuropa_by_Aitzol_Berasategi.jpg": "lomiri-wallpapers, CC-BY-4.0 (Aitzol Berasategi)",
    "/usr/share/backgrounds/seeding_by_Clements_Engelhardt.jpg": "lomiri-wallpapers, CC0-1.0 (Clemens Engelhardt)",
    "/usr/share/backgrounds/sunset_by_Aitzol_Berasategi.jpg": "lomiri-wallpapers, CC-BY-4.0 (Aitzol Berasategi)",
    "/usr/share/backgrounds/umang_by_Abhishek_Mudgal.jpg": "lomiri-wallpapers (Abhishek Mudgal), see debian/copyright",
    "/usr/share/backgrounds/mate/nature/Aqua.jpg": "mate-backgrounds, GPL-2+ (Charles Barbin)",
    "/usr/share/backgrounds/mate/nature/Blinds.jpg": "mate-backgrounds, GPL-2+ (Lennart Poettering, Andrea Cimitan)",
    "/usr/share/backgrounds/mate/nature/Dune.jpg": "mate-backgrounds, GPL-2+ (Marco Cogoni, Hylke Bons)",
    "/usr/share/backgrounds/mate/nature/FreshFlower.jpg": "mate-backgrounds, GPL-2+ (Jens Ansorg)",
    "/usr/share/backgrounds/mate/nature/Garden.jpg": "mate-backgrounds, GPL-2+ (Charles Barbin)",
    "/usr/share/backgrounds/mate/nature/GreenMeadow.jpg": "mate-backgrounds, GPL-2+ (Timothy Schellhase, Lapo Calamandrei)",
    "/usr/share/backgrounds/mate/nature/LadyBird.jpg": "mate-backgrounds, GPL-2+ (Charles Barbin)",
    "/usr/share/backgrounds/mate/nature/RainDrops.jpg": "mate-backgrounds, GPL-2+ (blackcombwhistler07)",
    "/usr/share/backgrounds/mate/nature/Storm.jpg": "mate-backgrounds, GPL-2+ (Sergey Nazarov)",
    "/usr/share/backgrounds/mate/nature/TwoWings.jpg": "mate-backgrounds, GPL-2+ (Charles Barbin, Hylke Bons)",
    "/usr/share/backgrounds/mate/nature/Wood.jpg": "mate-backgrounds, GPL-2+ (Jean-François Fortin Tam)",
    "/usr/share/backgrounds/mate/nature/YellowFlower.jpg": "mate-backgrounds, GPL-2+ (Charles Barbin)",
}


def largest_image(folder: Path) -> Path | None:
    """The biggest WIDTHxHEIGHT.jpg of a wallpaper's images folder, or None where it is not installed."""
    sized = [(int(m[1]) * int(m[2]), f) for f in folder.glob("*.jpg") if (m := re.fullmatch(r"(\d+)x(\d+)", f.stem))]
    return max(sized)[1] if sized else None


def debian_photos(wallpapers: Path = Path("/usr/share/wallpapers")) -> tuple[dict[str, str], list[str]]:
    """Path → licence of the listed Debian photographs that are installed, and the names of those that are not."""
    found, missing = {}, []
    for name in PLASMA_PHOTOS:
        f = largest_image(wallpapers / name / "contents" / "images")
        if f is None:
            missing.append(name)
        else:
            found[str(f)] = PLASMA_LICENCE
    for p, lic in DEBIAN_PHOTOS.items():
        if Path(p).exists():
            found[p] = lic
        else:
            missing.append(Path(p).name)
    return found, missing


def cbsd68_split() -> tuple[list[Path], list[Path]]:
    """CBSD68 sorted by name: every third image (from the third) is held out for testing."""
    files = sorted((SHARED / "clean_photos" / "CBSD68").glob("*"))
    test = [f for i, f in enumerate(files) if i % 3 == 2]
    return [f for f in files if f not in test], test


def training_photos(debian: dict[str, str] | None = None) -> dict[str, str]:
    """Path → provenance of every clean training photograph available on this machine
    (``debian``: the installed Debian photographs, if already looked up)."""
    from degrade.samples import sample_photo_paths

    out = {str(p): "scikit-image sample data (BSD-3-Clause and per-image public licences)" for p in sample_photo_paths()}
    out.update({str(p): "McMaster colour dataset (research use; via cszn/FFDNet testsets)" for p in sorted((SHARED / "clean_photos" / "McMaster").glob("*"))})
    train, _ = cbsd68_split()
    out.update({str(p): "CBSD68, Berkeley Segmentation Dataset test split (research use; via cszn/FFDNet)" for p in train})
    out.update(debian_photos()[0] if debian is None else debian)
    return out


def link(files, folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for i, f in enumerate(files):
        dst = folder / f"{i:03d}-{Path(f).name}"
        if not dst.exists():
            os.symlink(os.path.abspath(f), dst)


def main(root: str) -> None:
    r = Path(root)
    debian, missing = debian_photos()
    train = training_photos(debian)
    link(list(train), r / "clean-train")
    link(cbsd68_split()[1], r / "clean-test")
    link(sorted(p for p in (SHARED / "real_old_photos").rglob("*") if p.suffix.lower() in (".png", ".jpg", ".jpeg")), r / "real")
    (r / "provenance.json").write_text(json.dumps(train, indent=1))
    if missing:
        print(f"warning: {len(missing)} listed Debian photographs are not installed (plasma-workspace-wallpapers, "
              f"lomiri-wallpapers, mate-backgrounds): {', '.join(missing)}")  # fmt: skip
    print(f"{len(train)} training photos, {len(cbsd68_split()[1])} held out, real old photos linked under {r}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "work/default")
