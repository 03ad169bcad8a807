"""Reading and writing images safely: every failure is a one-line ImageError, writes are atomic."""

from __future__ import annotations

import os
import re
import tempfile
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .errors import ImageError
from .filekind import BROKEN_LINK, FOLDER, MISSING, refusal, what_is

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp", ".webp")  # what folders give dataset sources
INPUT_SUFFIXES = (*IMAGE_SUFFIXES, ".gif")  # what folders give `degrade` and `restore` (a GIF's first frame)
MAX_PIXELS = 250_000_000
"""Refuse larger images before decoding them (decompression bombs); a 16k×15k scan still fits."""
Image.MAX_IMAGE_PIXELS = max(Image.MAX_IMAGE_PIXELS or 0, MAX_PIXELS)  # Pillow's own guard stopped at 89.5 M; ours is in _decode
cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)  # its decoders' errors come back as None, said in one line


@dataclass
class Picture:
    """A decoded image: uint8 pixels (H×W grayscale or H×W×3 RGB), its alpha if any, its source bit depth."""

    pixels: np.ndarray
    alpha: np.ndarray | None = None
    bit_depth: int = 8
    path: str = ""
    icc: bytes | None = None
    """The embedded ICC profile when it describes ``pixels`` (RGB for colour, GRAY for gray), else None."""
    deep: np.ndarray | None = None
    """With ``deep=True``, a 16-bit source's own samples as uint16 (gray or RGB, alpha as the last channel,
    oriented like ``pixels``) when a second, full-depth decoder agrees with ``pixels``; else None."""

    @property
    def is_gray(self) -> bool:
        return self.pixels.ndim == 2

    def rgb(self, background: int = 255) -> np.ndarray:
        """H×W×3 RGB, alpha composited over a ``background`` grey level (white by default)."""
        px = self.pixels if self.pixels.ndim == 3 else cv2.cvtColor(self.pixels, cv2.COLOR_GRAY2RGB)
        if self.alpha is None:
            return px
        a = self.alpha.astype(np.float32)[..., None] * np.float32(1 / 255)
        out = px.astype(np.float32) * a + np.float32(background) * (1 - a)
        return np.clip(out + 0.5, 0, 255).astype(np.uint8)


def to_uint8(array: np.ndarray) -> np.ndarray:
    """Scale a 16-bit (or wider integer) array to 8-bit with rounding; uint8 passes through."""
    if array.dtype == np.uint8:
        return array
    if array.dtype == np.bool_:
        return array.astype(np.uint8) * 255
    if array.dtype.kind in "ui":
        a = array.astype(np.float64)
        top = 65535.0 if array.max(initial=0) > 255 or array.dtype.itemsize == 2 else 255.0
        return np.clip(np.rint(a * (255.0 / top)), 0, 255).astype(np.uint8)
    raise ImageError(f"unsupported pixel type {array.dtype}: expected 8- or 16-bit integers")


def _sixteen_bit(im: Image.Image) -> bool:
    return any(";16" in str(t.args) for t in getattr(im, "tile", []) or [])


def read_image(path: str | os.PathLike, max_pixels: int = MAX_PIXELS, deep: bool = False) -> Picture:
    """Decode an image file (EXIF orientation applied) into a Picture.

    16-bit images are scaled to 8-bit (bit_depth records 16), palette and CMYK images become
    RGB, LA/RGBA keep their alpha separately, bilevel images become grayscale, multi-page TIFFs
    and animated GIFs give their first frame. ``deep``: also keep a 16-bit source's full-depth
    samples (``Picture.deep``). Unreadable, truncated, floating-point or oversized images raise
    ImageError naming the file.
    """
    p = Path(path)
    try:
        kind = what_is(p)
    except OSError as e:  # a folder on the way that may not be searched (Permission denied)
        raise ImageError(f"{p}: cannot read ({e.strerror or e})") from None
    if kind in (MISSING, BROKEN_LINK):
        hint = " (the built-in inputs are builtin:samples and builtin:real)" if str(path).startswith("builtin:") else ""
        raise ImageError(f"{p}: {kind}{hint}")
    if kind == FOLDER:
        raise ImageError(f"{p}: is a directory, not an image")
    if kind:  # opening a FIFO waits for a writer for ever; /dev/zero reads until memory runs out
        raise ImageError(f"{p}: {refusal(kind)}, not an image")
    try:
        f = open(p, "rb")  # a file object, not the path: Pillow memory-maps paths, and its mapped TIFF
    except OSError as e:  # decoder ignores the orientation swap (gray TIFFs tagged 5–8 came out as stripes)
        raise ImageError(f"{p}: cannot read ({e.strerror or e})") from None
    with f:
        return _decode(f, str(p), max_pixels, deep)


def decode_image(data: bytes, name: str = "<bytes>", max_pixels: int = MAX_PIXELS, deep: bool = False) -> Picture:
    """Like ``read_image`` for in-memory bytes (uploads)."""
    import io

    return _decode(io.BytesIO(data), name, max_pixels, deep)


def _decode(source, name: str, max_pixels: int, deep: bool = False) -> Picture:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # corrupt-EXIF and TIFF-tag chatter: the image decodes or raises
            im = Image.open(source)
            w, h = im.size
            if w * h > max_pixels:
                raise ImageError(f"{name}: {w}×{h} pixels exceeds the limit of {max_pixels:,}")
            if w < 1 or h < 1:
                raise ImageError(f"{name}: empty image ({w}×{h})")
            depth = 16 if (_sixteen_bit(im) or im.mode.startswith("I;16")) else 8
            gray_alpha = any(str(t.args).startswith("LA;16") for t in getattr(im, "tile", []) or [])  # opened as RGBA
            white_is_zero = im.mode.startswith("I;16") and getattr(im, "tag_v2", {}).get(262) == 0  # Pillow keeps the
            # samples of a 16-bit MinIsWhite TIFF as they are (its 8-bit and 1-bit ones it inverts): a negative
            _check_sample_format(im, name)
            im.load()
            icc = im.info.get("icc_profile")
            orientation = _orientation(im) if deep and depth == 16 else 1  # only the second decoder needs it
            im = ImageOps.exif_transpose(im)
    except ImageError:
        raise
    except UnidentifiedImageError:
        refused = _tiff_refusal(source)
        pic = None if refused else _gray_alpha_tiff(source, name, max_pixels, deep)
        if pic is not None:
            return pic
        raise ImageError(f"{name}: {refused or 'not a recognised image format'}") from None
    except Image.DecompressionBombError:
        raise ImageError(f"{name}: too many pixels to decode safely") from None
    except MemoryError:
        raise ImageError(f"{name}: not enough memory to decode it") from None
    except Exception as e:  # noqa: BLE001  Pillow's plugins raise OSError, ValueError, RuntimeError (AVIF), struct.error…
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise ImageError(f"{name}: cannot decode image ({msg})") from None
    if white_is_zero:
        im = Image.fromarray(65535 - np.asarray(im).astype(np.int32))  # mode I, still 16-bit: depth says so
    try:
        pic = _from_pil(im, name, depth)
    except ImageError:
        raise
    except (ValueError, OSError, MemoryError) as e:  # a mode Pillow opens but cannot convert: one line, not an internal error
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise ImageError(f"{name}: cannot decode image ({msg})") from None
    if gray_alpha and pic.pixels.ndim == 3:  # Pillow widens 16-bit gray + alpha PNGs to RGBA: keep them gray
        pic.pixels = np.ascontiguousarray(pic.pixels[..., 0])
    pic.icc = icc_for(icc, pic.pixels.ndim == 2)
    if deep and depth == 16:
        source.seek(0)
        pic.deep = _deep_samples(source.read(), pic, orientation, white_is_zero)
    return pic


def _orientation(im: Image.Image) -> int:
    try:
        return int(im.getexif().get(0x0112, 1))
    except Exception:  # noqa: BLE001  a corrupt EXIF block: exif_transpose ignores it too
        return 1


SAMPLE_FORMATS = {2: "signed-integer", 3: "floating-point", 5: "complex", 6: "complex"}  # TIFF tag 339
PLANAR_REFUSED = "16-bit TIFFs with separate colour planes are not supported (save with interleaved, contiguous samples)"


def _unsupported_samples(sample_format: int, bits: int) -> str | None:
    kind = SAMPLE_FORMATS.get(sample_format)
    if kind == "floating-point":
        return FLOAT_REFUSED
    if kind:
        return f"{kind} images are not supported (convert to 8 or 16-bit unsigned)"
    if bits > 16:
        return f"{bits}-bit images are not supported (convert to 8 or 16 bit)"
    return None


def _check_sample_format(im: Image.Image, name: str) -> None:
    """Refuse TIFF sample types that Pillow opens but whose tones it cannot map to 8 bits faithfully."""
    tags = getattr(im, "tag_v2", None)
    if tags is None:
        return
    first = lambda v: int(v[0] if isinstance(v, tuple) else v)  # noqa: E731  one value or one per sample
    try:
        bits = first(tags.get(258, (8,)))
        refused = _unsupported_samples(first(tags.get(339, (1,))), bits)
        if not refused and bits > 8 and first(tags.get(284, 1)) == 2 and first(tags.get(277, 1)) > 1:
            refused = PLANAR_REFUSED  # Pillow (and OpenCV) decode its 16-bit planes as 8-bit: a garbled image
    except (TypeError, ValueError, IndexError):
        return
    if refused:
        raise ImageError(f"{name}: {refused}")


_ORIENT = {  # EXIF orientation → the array operation of ImageOps.exif_transpose (tested against it)
    2: lambda a: a[:, ::-1],
    3: lambda a: a[::-1, ::-1],
    4: lambda a: a[::-1],
    5: lambda a: a.swapaxes(0, 1),
    6: lambda a: np.rot90(a, -1),
    7: lambda a: np.rot90(a, -1)[::-1],
    8: lambda a: np.rot90(a, 1),
}


def _deep_samples(data: bytes, pic: Picture, orientation: int, invert: bool = False) -> np.ndarray | None:
    """The source's 16-bit samples in ``pic``'s layout, decoded by OpenCV: Pillow reduces 48- and 64-bit
    colour to 8 bits itself. Accepted only if it matches ``pic`` within a grey level (orientation included:
    OpenCV applies it for some formats and not others); None otherwise, and the 8-bit pixels stand."""
    arr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if arr is None or arr.dtype != np.uint16:
        return None
    if invert:  # MinIsWhite: OpenCV keeps its samples as they are, too
        arr = 65535 - arr
    if arr.ndim == 3 and arr.shape[2] in (3, 4):
        arr = cv2.cvtColor(arr, cv2.COLOR_BGR2RGB if arr.shape[2] == 3 else cv2.COLOR_BGRA2RGBA)
    expected = pic.pixels if pic.alpha is None else np.dstack([pic.pixels, pic.alpha])
    fits = []
    for cand in (arr, _ORIENT[orientation](arr)) if orientation in _ORIENT else (arr,):
        c = _like(cand, pic)
        if c is not None and c.shape == expected.shape:
            d = np.abs((c[::4, ::4] >> 8).astype(np.int16) - expected[::4, ::4])
            if d.size == 0 or d.max() <= 1:
                fits.append(c)
    if len(fits) > 1:  # a nearly flat image (a gentle ramp within a grey level or two) fits either way round:
        fits.sort(key=lambda c: _misfit(c, expected))  # the right orientation is the one that agrees best
    return np.ascontiguousarray(fits[0]) if fits else None


def _misfit(deep: np.ndarray, eight: np.ndarray) -> float:
    """Mean distance between 16-bit samples on the 8-bit scale and an 8-bit decode of them, in row strips."""
    total = 0.0
    for y in range(0, deep.shape[0], 256):
        total += float(np.abs(deep[y : y + 256] * np.float32(1 / 257) - eight[y : y + 256]).sum())
    return total / max(1, deep.size)


def _like(a: np.ndarray, pic: Picture) -> np.ndarray | None:
    """``a`` (H×W or H×W×C, RGB order) as gray or RGB plus alpha when ``pic`` has one, or None if it cannot be."""
    channels = 1 if a.ndim == 2 else a.shape[2]
    alpha = a[..., -1] if channels in (2, 4) else None
    if pic.is_gray:
        if channels >= 3 and not (np.array_equal(a[..., 0], a[..., 1]) and np.array_equal(a[..., 0], a[..., 2])):
            return None
        base = a if channels == 1 else a[..., 0]
    elif channels in (3, 4):
        base = a[..., :3]
    else:
        return None
    if pic.alpha is None:
        return base
    if alpha is None and not np.any((pic.alpha != 0) & (pic.alpha != 255)):  # a colour key's alpha (tRNS): OpenCV drops it
        alpha = pic.alpha.astype(np.uint16) * np.uint16(257)
    return None if alpha is None else np.dstack([base, alpha])


def icc_for(icc: bytes | None, gray: bool) -> bytes | None:
    """``icc`` if it is a profile of the pixels' colour space (RGB, or GRAY for gray pixels), else None.

    Restored and compared images keep their input's encoding, so its profile still describes them; a
    CMYK or Lab profile no longer does once the pixels are RGB.
    """
    if not icc or len(icc) < 128 or icc[36:40] != b"acsp":
        return None
    return icc if icc[16:20] == (b"GRAY" if gray else b"RGB ") else None


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    """One PNG chunk: length, type, data, CRC-32 of type and data."""
    import struct
    import zlib

    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


_AFTER_IHDR = 8 + 8 + 13 + 4  # signature, IHDR's length/type, its 13 bytes, its CRC
MARK = _png_chunk(b"tEXt", b"Software\x00daguerre")  # right after IHDR in the files daguerre writes as outputs


def _after_ihdr(png: bytes, chunk: bytes) -> bytes:
    if png[12:16] != b"IHDR":
        raise ImageError("PNG encoding failed (no IHDR first)")
    return png[:_AFTER_IHDR] + chunk + png[_AFTER_IHDR:]


def _png_with_icc(png: bytes, icc: bytes) -> bytes:
    """PNG bytes with an iCCP chunk (the profile, deflated) right after IHDR, as the PNG spec places it."""
    import zlib

    return _after_ihdr(png, _png_chunk(b"iCCP", b"ICC profile\x00\x00" + zlib.compress(icc)))


JPEG_COMMENT = b"Software: daguerre"
"""The comment (COM segment, right after JFIF's APP0) of the JPEG sheets daguerre writes."""
WEBP_XMP = (b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
            b'<rdf:Description xmlns:xmp="http://ns.adobe.com/xap/1.0/" xmp:CreatorTool="daguerre"/></rdf:RDF></x:xmpmeta>')  # fmt: skip
"""The XMP packet (the last chunk) of the WebP sheets daguerre writes."""
_JPEG_MARK = b"\xff\xfe" + (len(JPEG_COMMENT) + 2).to_bytes(2, "big") + JPEG_COMMENT
_WEBP_MARK = b"XMP " + len(WEBP_XMP).to_bytes(4, "little") + WEBP_XMP + b"\x00" * (len(WEBP_XMP) % 2)


def marked_by_daguerre(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a file daguerre wrote as an output (a PNG with ``encode_png(..., mark=True)``, a
    JPEG or WebP sheet): those it may replace on a re-run, where any other file in their place is refused
    (never lost)."""
    try:
        with open(path, "rb") as f:
            head = f.read(64)
            if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
                f.seek(0, os.SEEK_END)
                f.seek(max(0, f.tell() - len(_WEBP_MARK)))
                return f.read() == _WEBP_MARK
    except OSError:
        return False
    if head[:3] == b"\xff\xd8\xff":
        return _JPEG_MARK in head
    return head[:8] == b"\x89PNG\r\n\x1a\n" and head[_AFTER_IHDR : _AFTER_IHDR + len(MARK)] == MARK


_TIFF_MAGIC = (b"II*\x00", b"MM\x00*")
FLOAT_REFUSED = "floating-point images are not supported (convert to 8 or 16 bit)"


def _gray_alpha_tiff(f, name: str, max_pixels: int, deep: bool) -> Picture | None:
    """A 16-bit gray + alpha TIFF, which Pillow does not open, through tifffile (its first page); None
    for anything else. Orientation, MinIsWhite, associated (premultiplied) alpha and the profile are
    applied as for the files Pillow opens."""
    try:
        import tifffile

        f.seek(0)
        with tifffile.TiffFile(f) as tif:
            page = tif.pages[0]
            if page.imagelength * page.imagewidth > max_pixels:
                raise ImageError(f"{name}: {page.imagewidth}×{page.imagelength} pixels exceeds the limit of {max_pixels:,}")
            if page.dtype != np.uint16 or page.samplesperpixel != 2 or int(page.photometric) not in (0, 1):
                return None
            arr = page.asarray()
            tags = {t.code: t.value for t in page.tags.values() if t.code in (274, 338, 34675)}
    except ImageError:
        raise
    except Exception:  # noqa: BLE001  not a TIFF tifffile reads either: Pillow's verdict stands
        return None
    if arr.shape != (page.imagelength, page.imagewidth, 2):
        return None
    gray, alpha = arr[..., 0], arr[..., 1]
    if int(page.photometric) == 0:  # MinIsWhite
        gray = 65535 - gray
    extra = tags.get(338)
    if (extra[0] if isinstance(extra, tuple) else extra) == 1:  # associated alpha: gray is premultiplied
        a = alpha.astype(np.float64)
        gray = np.where(a > 0, np.clip(np.rint(gray * 65535.0 / np.maximum(a, 1)), 0, 65535), 0).astype(np.uint16)
    samples = np.dstack([gray, alpha])
    orientation = int(tags.get(274, 1))
    if orientation in _ORIENT:
        samples = np.ascontiguousarray(_ORIENT[orientation](samples))
    pic = Picture(to_uint8(samples[..., 0]), _alpha(to_uint8(samples[..., 1])), 16, name)
    icc = tags.get(34675)
    pic.icc = icc_for(bytes(icc) if icc is not None else None, True)
    if deep:
        pic.deep = samples if pic.alpha is not None else np.ascontiguousarray(samples[..., 0])
    return pic


def _tiff_refusal(f) -> str | None:
    """Why a file Pillow cannot identify is refused, if it is a TIFF of samples daguerre does not take
    (floating-point with 3–4 channels, complex, signed, over 16 bits): read from its first IFD's tags,
    not by decoding it (a small compressed file can hold gigabytes of float pixels)."""
    import struct

    try:
        f.seek(0)
        head = f.read(8)
        if head[:4] not in _TIFF_MAGIC:
            return None
        e = "<" if head[:2] == b"II" else ">"
        f.seek(struct.unpack(e + "I", head[4:8])[0])
        (n,) = struct.unpack(e + "H", f.read(2))
        entries = f.read(12 * min(n, 4096))
        tags = {}
        for i in range(len(entries) // 12):
            tag, kind, count, value = struct.unpack(e + "HHI4s", entries[12 * i : 12 * i + 12])
            if tag in (258, 339) and kind == 3:  # SHORT: the first value sits in the entry when count ≤ 2,
                if count > 2:  # else at the offset the entry holds
                    f.seek(struct.unpack(e + "I", value)[0])
                    value = f.read(2)
                tags[tag] = struct.unpack(e + "H", value[:2])[0]
        return _unsupported_samples(tags.get(339, 1), tags.get(258, 8))
    except (OSError, struct.error):
        return None


def _from_pil(im: Image.Image, name: str, depth: int) -> Picture:
    mode = im.mode
    alpha = None
    if mode == "F":
        raise ImageError(f"{name}: {FLOAT_REFUSED}")
    if mode == "P":
        im = im.convert("RGBA" if "transparency" in im.info else "RGB")
        mode = im.mode
    elif mode == "La":  # gray + associated (premultiplied) alpha, a TIFF's ExtraSamples 1: Pillow converts it only to LA
        im = im.convert("LA")
        mode = im.mode
    elif mode in ("L", "RGB") and "transparency" in im.info:  # a colour-key tRNS: that colour is transparent
        im = im.convert("LA" if mode == "L" else "RGBA")
        mode = im.mode
    if mode in ("1", "L"):
        return Picture(np.asarray(im.convert("L")).copy(), None, depth, name)
    if mode.startswith("I"):
        arr = np.asarray(im)
        if arr.size and (arr.min() < 0 or arr.max() > 65535):  # what the TIFF tag check cannot see (PNM, TIFFs without tags)
            raise ImageError(f"{name}: {'signed-integer' if arr.min() < 0 else '32-bit'} images are not supported (convert to 8 or 16-bit unsigned)")
        key = im.info.get("transparency")  # a 16-bit gray PNG's colour key: that grey level is transparent
        alpha = _alpha(np.where(arr == key, np.uint8(0), np.uint8(255))) if isinstance(key, int) else None
        if arr.dtype != np.uint8 and (depth == 16 or arr.max(initial=0) > 255):
            return Picture(to_uint8(arr.astype(np.uint16)), alpha, 16, name)  # in [0, 65535]: checked above
        return Picture(np.clip(arr, 0, 255).astype(np.uint8), alpha, depth, name)
    if mode == "LA":
        arr = np.asarray(im)
        return Picture(arr[..., 0].copy(), _alpha(arr[..., 1]), depth, name)
    if mode in ("RGBA", "RGBa", "PA"):
        arr = np.asarray(im.convert("RGBA"))
        return Picture(np.ascontiguousarray(arr[..., :3]), _alpha(arr[..., 3]), depth, name)
    if mode != "RGB":
        im = im.convert("RGB")
    return Picture(np.asarray(im).copy(), None, depth, name)


def _alpha(a: np.ndarray) -> np.ndarray | None:
    """An alpha channel worth keeping: None when the image is wholly opaque."""
    return None if a.min() == 255 else a.copy()


def nearest_existing(path: str | os.PathLike) -> Path:
    """``path`` itself if it exists, else its closest existing parent (where it would be created)."""
    p = Path(path).absolute()
    return next(d for d in (p, *p.parents) if d.exists())


def is_write_temporary(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a temporary of :func:`atomic_write_bytes` (one a kill cut short): ``.XXXXXXXX.tmp``,
    mkstemp's eight characters, and not, say, a user's ``.notes.tmp``."""
    return re.fullmatch(r"\.[a-z0-9_]{8}\.tmp", Path(path).name) is not None


def fsync_dir(path: str | os.PathLike) -> None:
    """Flush a folder's entries (a rename or a new file in it) to disk, where the platform allows it."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:  # Windows cannot open folders; nothing to flush there
        return
    try:
        os.fsync(fd)
    except OSError:  # some file systems refuse fsync on folders
        pass
    finally:
        os.close(fd)


def make_folders(folder: str | os.PathLike, durable: bool = False) -> None:
    """``mkdir -p``; ``durable``: each folder made is synced into its parent (a new folder is an entry
    there, which syncing the files inside it does not put on disk)."""
    missing, folder = [], Path(folder)
    while not folder.exists() and folder != folder.parent:
        missing.append(folder)
        folder = folder.parent
    for f in reversed(missing):
        f.mkdir(exist_ok=True)
        if durable:
            fsync_dir(f.parent)


def atomic_write_bytes(path: str | os.PathLike, data: bytes | list[bytes], durable: bool | str = False) -> None:
    """Write ``data`` (or a list of pieces) to ``path`` through a temporary file and a rename: never a partial file.

    ``durable``: the bytes reach the disk before the name does, and the name before this returns, so a
    power cut leaves either the old file or the whole new one (what a later step may rely on).
    ``"data"`` syncs the bytes only, for a caller that checks after a crash that the file is there.
    """
    p = Path(path)
    try:
        make_folders(p.parent, durable=bool(durable))
    except OSError as e:  # name the file the user asked for
        raise OSError(e.errno, e.strerror, str(p)) from None
    fd, tmp = _temporary_for(p)
    try:
        with os.fdopen(fd, "wb") as f:
            for piece in [data] if isinstance(data, (bytes, bytearray, memoryview)) else data:
                f.write(piece)
            if durable:
                f.flush()
                os.fsync(f.fileno())
        _publish(tmp, p)
        if durable is True:
            fsync_dir(p.parent)
    except BaseException as e:
        _remove(tmp)
        if isinstance(e, OSError) and e.errno is not None and e.filename in (None, tmp):  # a full disk: name the file asked for
            raise OSError(e.errno, e.strerror, str(p)) from None
        raise


class SyncedBatch:
    """Atomic writes made durable together, cheaper than ``atomic_write_bytes(durable=True)`` one by one: each
    file goes to a temporary beside its name; :meth:`commit` syncs all their bytes (the fsyncs overlapped, so
    the file system journals them in few commits), renames them in the order written and syncs each folder
    once. A kill leaves only temporaries (:func:`is_write_temporary`), never a partial file under a name."""

    def __init__(self) -> None:
        self.pending: list[tuple[int, str, Path]] = []  # (open descriptor, temporary, name)

    def write(self, path: str | os.PathLike, data: bytes) -> None:
        """``data`` into a temporary, unsynced; it takes the name ``path`` at :meth:`commit`."""
        p = Path(path)
        fd, tmp = _temporary_for(p)
        self.pending.append((fd, tmp, p))
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
        except OSError as e:  # a full disk
            raise OSError(e.errno, e.strerror, str(p)) from None

    def commit(self) -> None:
        """Every pending file's bytes on disk, then its name, then its folder's entries."""
        if len(self.pending) > 1:
            from concurrent.futures import ThreadPoolExecutor

            with ThreadPoolExecutor(min(8, len(self.pending)), thread_name_prefix="daguerre-sync") as pool:
                list(pool.map(_synced, self.pending))
        elif self.pending:
            _synced(self.pending[0])
        folders = {}
        while self.pending:
            fd, tmp, p = self.pending[0]
            os.close(fd)
            self.pending.pop(0)
            try:
                _publish(tmp, p)
            except BaseException:
                _remove(tmp)
                raise
            folders[p.parent] = None
        for d in folders:
            fsync_dir(d)

    def discard(self) -> None:
        """Close and delete the temporaries not committed (what an error or Ctrl-C leaves)."""
        while self.pending:
            fd, tmp, _ = self.pending.pop()
            os.close(fd)
            _remove(tmp)


def _temporary_for(p: Path) -> tuple[int, str]:
    """A new temporary file beside ``p`` (a short name: any legal name stays legal); an error names ``p``, the file
    asked for, not the temporary one."""
    try:
        return tempfile.mkstemp(prefix=".", suffix=".tmp", dir=p.parent)
    except OSError as e:
        raise OSError(e.errno, e.strerror, str(p)) from None


def _publish(tmp: str, p: Path) -> None:
    """Give the temporary ``tmp`` the usual permissions (mkstemp makes 0600), then the name ``p``."""
    os.chmod(tmp, 0o666 & ~_UMASK)
    os.replace(tmp, p)


def _synced(item: tuple[int, str, Path]) -> None:
    """fsync one of :class:`SyncedBatch`'s temporaries; an error names the file asked for."""
    try:
        os.fsync(item[0])
    except OSError as e:
        raise OSError(e.errno, e.strerror, str(item[2])) from None


def _remove(path: str) -> None:
    """Delete ``path`` if it is there."""
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def _read_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _read_umask()  # read once at import: os.umask can only be read by setting it


def encode_png(pixels: np.ndarray, alpha: np.ndarray | None = None, compression: int = 3, icc: bytes | None = None,
               mark: bool = False) -> bytes:  # fmt: skip
    """PNG bytes of a uint8 or uint16 gray or RGB image, with ``alpha`` (same type) as an extra channel
    (LA or RGBA) if given, and ``icc`` embedded as its colour profile if given (see :func:`icc_for`).
    ``mark``: a ``Software: daguerre`` text chunk, which :func:`marked_by_daguerre` recognises."""
    if pixels.dtype not in (np.uint8, np.uint16) or (alpha is not None and alpha.dtype != pixels.dtype):
        raise ImageError(f"can only write uint8 or uint16 images (alpha of the same type), got {pixels.dtype}")
    if pixels.dtype == np.uint16 and alpha is not None and pixels.ndim == 2:
        png = _png16_gray_alpha(pixels, alpha, compression)
    else:
        png = _encode_png(pixels, alpha, compression)
    png = _png_with_icc(png, icc) if icc else png
    return _after_ihdr(png, MARK) if mark else png


def _encode_png(pixels: np.ndarray, alpha: np.ndarray | None, compression: int) -> bytes:
    if alpha is not None and pixels.ndim == 2:
        import io

        buf = io.BytesIO()
        Image.fromarray(np.dstack([pixels, alpha]), "LA").save(buf, format="PNG", compress_level=compression)
        return buf.getvalue()
    if alpha is not None:
        arr = cv2.cvtColor(np.dstack([pixels, alpha]), cv2.COLOR_RGBA2BGRA)
    else:
        arr = pixels if pixels.ndim == 2 else cv2.cvtColor(pixels, cv2.COLOR_RGB2BGR)
    ok, buf = cv2.imencode(".png", arr, [cv2.IMWRITE_PNG_COMPRESSION, compression])
    if not ok:
        raise ImageError("PNG encoding failed")
    return buf.tobytes()


def _png16_gray_alpha(gray: np.ndarray, alpha: np.ndarray, compression: int) -> bytes:
    """A 16-bit gray + alpha PNG (colour type 4), which neither OpenCV nor Pillow writes; rows use the Up filter."""
    import struct
    import zlib

    h, w = gray.shape
    samples = np.dstack([gray, alpha]).astype(">u2").view(np.uint8).reshape(h, w * 4)
    up = samples.copy()
    up[1:] -= samples[:-1]  # filter 2 (Up): byte-wise difference with the row above, modulo 256
    rows = np.hstack([np.full((h, 1), 2, np.uint8), up])
    rows[0, 0] = 0  # the first row has no row above: filter 0
    ihdr = struct.pack(">IIBBBBB", w, h, 16, 4, 0, 0, 0)
    idat = zlib.compress(rows.tobytes(), compression)
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", idat) + _png_chunk(b"IEND", b"")


def _walk(root: Path, recursive: bool, on_error: Callable[[Path, OSError], None] | None) -> Iterator[Path]:
    """Every entry below ``root`` that is not a folder (symbolic links to folders are not followed)."""

    def failed(e: OSError) -> None:
        if on_error is not None:
            on_error(Path(e.filename) if e.filename else root, e)

    for folder, dirs, files in os.walk(root, onerror=failed):
        yield from (Path(folder) / f for f in files)
        if not recursive:
            dirs.clear()


def _not_folder(p: Path) -> bool:
    """Anything but a folder: a broken symbolic link, a FIFO, socket or device (left out without a word, each is
    reported unreadable instead, by :func:`read_image`, which never opens them)."""
    return not p.is_dir()


def _glob_walk(pattern: str, on_error: Callable[[Path, OSError], None] | None = None) -> Path | None:
    """Visit the folders a glob lists: those it cannot list go to ``on_error`` (glob skips them without a word),
    and a symbolic link below a ``**`` that leads back to a folder above it is returned (else None): glob
    follows links to folders, so one such link gave every file below it 41 times, two of them 2**40 times."""
    import glob

    parts, told = Path(pattern).parts, set()

    def failed(folder: Path, e: OSError) -> None:
        if on_error is not None and str(folder) not in told:
            told.add(str(folder))
            on_error(folder, e)

    for k, part in enumerate(parts):
        if not any(ch in part for ch in "*?["):
            continue
        prefix = str(Path(*parts[:k])) if k else "."
        for top in sorted(glob.glob(prefix)) if any(ch in prefix for ch in "*?[") else [prefix]:
            if not os.path.isdir(top):
                continue
            if part != "**":
                try:
                    os.scandir(top).close()
                except OSError as e:
                    failed(Path(top), e)
            elif (loop := _loop_below(top, failed)) is not None:
                return loop
        if part == "**":
            return None  # its walks went through every folder below
    return None


def _loop_below(top: str, failed: Callable[[Path, OSError], None]) -> Path | None:
    """Walk ``top`` as ``**`` does (links to folders followed, hidden folders not entered): the first link that
    leads back to one of the folders above it, or None."""
    above = {top: {os.path.realpath(top)}}  # each pending folder's own and its parents' real paths
    for folder, dirs, _ in os.walk(top, followlinks=True, onerror=lambda e: failed(Path(e.filename or top), e)):
        chain = above.pop(folder, set())
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        for d in dirs:
            p = os.path.join(folder, d)
            real = os.path.realpath(p)
            if real in chain:
                return Path(p)
            above[p] = chain | {real}
    return None


def list_images(paths, recursive: bool = True, suffixes: tuple[str, ...] = IMAGE_SUFFIXES,
                on_error: Callable[[Path, OSError], None] | None = None) -> list[Path]:  # fmt: skip
    """Expand files, folders (recursively; files with ``suffixes``) and globs into a de-duplicated list
    of image paths: in the order given, each folder's and glob's matches sorted. A folder inside that
    cannot be listed (permissions), or that a glob would list, goes to ``on_error``, where it was skipped
    without a word; a ``**`` glob below a symbolic link that loops back is an ImageError."""
    import glob

    out: list[Path] = []
    for raw in paths:
        s = str(raw)
        p = Path(s)
        try:
            p.exists()
        except OSError:  # not even its existence can be told (a folder on the way may not be searched):
            out.append(p)  # the reader reports it with the other failures, and the other inputs go on
            continue
        if p.is_dir():
            out.extend(sorted(q for q in _walk(p, recursive, on_error) if q.suffix.lower() in suffixes and _not_folder(q)))
        elif p.exists():
            out.append(p)
        elif any(ch in s for ch in "*?["):
            loop = _glob_walk(s, on_error)
            if loop is not None:
                raise ImageError(f"{s}: the symbolic link {loop} leads back to a folder above it, and ** follows it "
                                 "again and again; give the folder instead of the glob (links to folders are not followed there)")
            out.extend(sorted(Path(q) for q in glob.glob(s, recursive=True) if _not_folder(Path(q))))
        else:
            out.append(p)  # reported as missing by the reader, with the other failures
    seen, unique = set(), []
    for q in out:
        key = os.path.abspath(q)
        if key not in seen:
            seen.add(key)
            unique.append(q)
    return unique
