"""Gather what `zoo/default/train-gpu.sh` needs on a GPU machine into one folder (default `.gpu/`).

The device tool carries at most 64 MiB with the working tree, so the large wallpapers are
downscaled (short side 1536 px, JPEG quality 93) and the McMaster TIFFs become lossless PNGs;
the other photographs travel as they are (with --webp, 8-bit PNGs and TIFFs as lossless WebP). Usage: DAGUERRE_HOME=… python -m zoo.default.gpu_inputs WORK [DEST [MODEL,MODEL…]] [--webp]
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import cv2

WHEELS = ["zarr==3.1.6", "numcodecs==0.16.6", "donfig==0.8.1.post1", "google-crc32c==1.9.0",
          "dask==2026.8.0", "partd==1.4.2", "locket==1.0.0"]  # fmt: skip
MODELS = "default-vae1,default-vae2,default-mapping-ft2"  # what train-gpu.sh starts from; train-gpu-detector.sh needs its INIT_A
SHORT_SIDE = 1536


def copy_photos(src: Path, dst: Path, webp: bool = False) -> int:
    """Training photographs, each under its own name; returns the bytes written.

    ``webp``: 8-bit PNGs and TIFFs travel as lossless WebP, the same pixels in about 70 % of the bytes."""
    dst.mkdir(parents=True, exist_ok=True)
    total = 0
    for f in sorted(src.iterdir()):
        real = f.resolve()
        if "backgrounds" in str(real) or "wallpapers" in str(real):
            im = cv2.imread(str(real), cv2.IMREAD_COLOR)
            s = SHORT_SIDE / min(im.shape[:2])
            if s < 1:
                im = cv2.resize(im, (round(im.shape[1] * s), round(im.shape[0] * s)), interpolation=cv2.INTER_AREA)
            out = dst / f"{f.stem}.jpg"
            cv2.imwrite(str(out), im, [cv2.IMWRITE_JPEG_QUALITY, 93])
        elif real.suffix.lower() in (".tif", ".tiff") or (webp and real.suffix.lower() == ".png"):
            im = cv2.imread(str(real), cv2.IMREAD_UNCHANGED)
            if webp and im.dtype == "uint8" and im.ndim == 3 and im.shape[2] == 3:
                out = dst / f"{f.stem}.webp"
                cv2.imwrite(str(out), im, [cv2.IMWRITE_WEBP_QUALITY, 101])  # above 100: lossless
            else:
                out = dst / f"{f.stem}.png"
                cv2.imwrite(str(out), im, [cv2.IMWRITE_PNG_COMPRESSION, 9])
        else:
            out = dst / f.name
            shutil.copyfile(real, out)
        total += out.stat().st_size
    return total


def main(work: str, dest: str = ".gpu", models: str = MODELS, webp: bool = False) -> None:
    work_p, dest_p = Path(work), Path(dest)
    n = copy_photos(work_p / "clean-train", dest_p / "clean-train", webp)
    home = Path(os.environ.get("DAGUERRE_HOME", work_p / "home"))  # where train.sh registered them
    names = [m for m in models.split(",") if m]
    (dest_p / "models").mkdir(parents=True, exist_ok=True)
    for m in names:
        for ext in (".safetensors", ".json"):
            shutil.copyfile(home / "models" / f"{m}{ext}", dest_p / "models" / f"{m}{ext}")
    subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:",
                    "--python-version", "3.12", "--implementation", "cp", "--platform", "manylinux_2_28_x86_64",
                    "--platform", "manylinux_2_17_x86_64", "--platform", "manylinux2014_x86_64",
                    "-d", str(dest_p / "whl"), *WHEELS], check=True)  # fmt: skip
    total = sum(f.stat().st_size for f in dest_p.rglob("*") if f.is_file())
    print(f"{dest_p}: {total / 2**20:.0f} MiB (photos {n / 2**20:.0f} MiB), models {', '.join(names)}, wheels {len(WHEELS)}")
    if total > 30 * 2**20:  # the working tree itself is about 31 MB, and a call carries 64 MiB in all
        print(f"warning: with the working tree this is over the device tool's 64 MiB; lower SHORT_SIDE (now {SHORT_SIDE})"
              " or move large tracked files (docs/img) aside for the call")  # fmt: skip


if __name__ == "__main__":
    args = [a for a in sys.argv[1:] if a != "--webp"]
    main(*args, webp="--webp" in sys.argv[1:])
