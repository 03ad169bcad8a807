"""Contact sheets: labelled grids of images, written as PNG for people to look at."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont


def _font(size: int):
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1
        return ImageFont.load_default()


def _rgb(tile: np.ndarray) -> np.ndarray:
    if tile.ndim == 2:
        return np.repeat(tile[..., None], 3, axis=2)
    return tile[..., :3]


def fit(tile: np.ndarray, size: int) -> np.ndarray:
    """Scale ``tile`` so that its longer side is ``size`` (never upscaling by more than 4x)."""
    h, w = tile.shape[:2]
    s = min(size / max(h, w), 4.0)
    if s == 1:
        return _rgb(tile)
    im = Image.fromarray(_rgb(tile)).resize((max(1, round(w * s)), max(1, round(h * s))), Image.Resampling.LANCZOS)
    return np.asarray(im)


def contact_sheet(
    tiles: Sequence[np.ndarray],
    labels: Sequence[str] | None = None,
    ncols: int = 4,
    tile_size: int = 256,
    title: str = "",
    label_lines: int = 2,
    pad: int = 6,
) -> Image.Image:
    """A grid of ``tiles`` (uint8 RGB or gray, any sizes), each with up to ``label_lines`` lines of caption."""
    labels = list(labels) if labels is not None else [""] * len(tiles)
    ncols = max(1, min(ncols, len(tiles) or 1))
    nrows = (len(tiles) + ncols - 1) // ncols
    font_size = max(10, tile_size // 18)
    font = _font(font_size)
    line_h = font_size + 3
    cap_h = line_h * label_lines if any(labels) else 0
    title_h = (font_size + 10) if title else 0
    cell_w, cell_h = tile_size + pad, tile_size + cap_h + pad
    sheet = Image.new("RGB", (ncols * cell_w + pad, nrows * cell_h + pad + title_h), (250, 250, 247))
    draw = ImageDraw.Draw(sheet)
    if title:
        draw.text((pad, 4), title, fill=(20, 20, 20), font=_font(font_size + 2))
    for i, tile in enumerate(tiles):
        r, c = divmod(i, ncols)
        x, y = pad + c * cell_w, title_h + pad + r * cell_h
        t = fit(tile, tile_size)
        sheet.paste(Image.fromarray(t), (x + (tile_size - t.shape[1]) // 2, y + (tile_size - t.shape[0]) // 2))
        for j, line in enumerate(str(labels[i]).splitlines()[:label_lines]):
            while line and draw.textlength(line, font=font) > tile_size:
                line = line[:-2] + "…" if len(line) > 2 else ""
            draw.text((x, y + tile_size + 2 + j * line_h), line, fill=(30, 30, 30), font=font)
    return sheet


SHEET_FORMATS = {".png": ("PNG", {"compress_level": 9}), ".jpg": ("JPEG", {"quality": 92}), ".jpeg": ("JPEG", {"quality": 92}),
                 ".webp": ("WEBP", {"quality": 92})}  # fmt: skip
SHEET_MAX_SIDE = {"JPEG": 65_500, "WEBP": 16_383}
"""The longest side libjpeg and libwebp encode (a 200-sample `dataset show` sheet is about 23,000 px tall)."""


def check_sheet_path(path) -> None:
    """Refuse, before any work, a sheet path whose suffix names no format we write, or where it cannot be written.
    (Whether a file there may be replaced is the caller's to say: the command line refuses a user's file,
    :func:`degrade.batch.check_not_foreign`; the library replaces it, as its own docs images and reports.)"""
    import os
    from pathlib import Path

    from .errors import DaguerreError
    from .io import nearest_existing

    if Path(path).suffix.lower() not in SHEET_FORMATS:
        raise DaguerreError(f"{path}: a sheet is written as .png, .jpg or .webp")
    folder = nearest_existing(Path(path).absolute().parent)
    if not (folder.is_dir() and os.access(folder, os.W_OK | os.X_OK)):
        raise DaguerreError(f"{path}: cannot write there ({folder} is not a writable folder)")
    if Path(path).is_dir():  # --overwrite cannot help: the write would fail after all the work
        raise DaguerreError(f"{path} is a folder; name a file for the sheet")


def save_sheet(sheet: Image.Image, path) -> None:
    """Write a sheet atomically, in the format its suffix names (.png, or .jpg/.jpeg/.webp), marked as
    daguerre's (so that the command line, which refuses to replace a user's file, replaces its own)."""
    from .io import JPEG_COMMENT, MARK, WEBP_XMP, _after_ihdr, atomic_write_bytes
    import io
    from pathlib import Path

    check_sheet_path(path)
    fmt, opts = SHEET_FORMATS[Path(path).suffix.lower()]
    if max(sheet.size) > SHEET_MAX_SIDE.get(fmt, max(sheet.size)):  # Pillow: 'encoding error 5', an internal ValueError
        from .errors import DaguerreError

        raise DaguerreError(f"{path}: a {fmt} image holds at most {SHEET_MAX_SIDE[fmt]:,} pixels a side, this sheet is "
                            f"{sheet.size[0]}×{sheet.size[1]}; write it as .png or show fewer samples")  # fmt: skip
    mark = {"JPEG": {"comment": JPEG_COMMENT}, "WEBP": {"xmp": WEBP_XMP}}.get(fmt, {})
    buf = io.BytesIO()
    sheet.convert("RGB").save(buf, format=fmt, **opts, **mark)
    data = buf.getvalue()
    atomic_write_bytes(path, _after_ihdr(data, MARK) if fmt == "PNG" else data)
