"""Restoration end to end: defect detection → E_R (VAE1) → T with the mask → G_Y (VAE2), tiled.

Any size: the image is cut into windows of ``tile`` pixels plus ``overlap`` of context on each
inner side, processed one at a time (memory bounded by the window, not the photo) and blended
with linear ramps across the overlaps, so tile borders leave no seam. The detector runs first
over the whole photo (in windows of twice the tile) so that every window of the restoration
sees the same mask. Grayscale stays grayscale, RGBA keeps its alpha, 16-bit input comes back
16-bit (the networks see it scaled to 8 bits; the tone anchoring keeps its full depth).
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

from degrade.errors import DaguerreError, ImageError
from degrade.filekind import read_json
from degrade.io import to_uint8

from .bundle import Bundle, load_bundle
from .store import file_sha256
from .nn import from_signed, to_signed

DEFAULT_MODEL = "default"
MIN_SIDE = 32
"""A side below this is enlarged by a whole factor for the networks and shrunk back: at a few pixels they
see mostly padding, and an 8-pixel thumbnail came back 20 grey levels darker."""


@dataclass
class RestoreResult:
    image: np.ndarray  # same shape and type as the input (uint8 or uint16)
    mask: np.ndarray  # uint8 H×W, 255 where defects were detected (or given)
    seconds: dict[str, float] = field(default_factory=dict)


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    from .train import resolve_device as _resolve

    return _resolve(str(device))


@lru_cache(maxsize=4)
def _cached_bundle(path: str, stamp: tuple[int, int], device: str) -> Bundle:
    return load_bundle(path, device)


def get_bundle(model: str | Path | Bundle = DEFAULT_MODEL, device: str = "cpu") -> Bundle:
    """A loaded restoration bundle, cached per file (path, modification time, size) and device, so a
    recalibrated bundle or another ``DAGUERRE_HOME`` is never served from a stale copy."""
    if isinstance(model, Bundle):
        return model
    if not isinstance(model, (str, Path)):  # a network from zoo.create_model, say: its repr is no file name
        raise DaguerreError(f"model must be a bundle's name or path, or a loaded Bundle (zoo.bundle.load_bundle), "
                            f"not a {type(model).__name__}")  # fmt: skip
    from .store import resolve

    path = resolve(model, "bundle")
    st = path.stat()
    return _cached_bundle(str(path), (st.st_mtime_ns, st.st_size), str(device))


def windows(length: int, tile: int, overlap: int) -> list[tuple[int, int, int, int]]:
    """Along one axis: (start, stop) of each processed window and (core_start, core_stop) it owns."""
    if length <= tile + 2 * overlap:
        return [(0, length, 0, length)]
    n = -(-length // tile)
    bounds = [round(i * length / n) for i in range(n + 1)]
    return [(max(0, a - overlap), min(length, b + overlap), a, b) for a, b in zip(bounds[:-1], bounds[1:])]


def ramp(start: int, stop: int, core_start: int, core_stop: int, length: int) -> np.ndarray:
    """Blend weights of a window along one axis: 1 in its core, linear to ~0 across inner overlaps."""
    w = np.ones(stop - start, np.float32)
    left, right = core_start - start, stop - core_stop
    if start > 0 and left > 0:
        w[: 2 * left] = np.minimum(w[: 2 * left], (np.arange(2 * left, dtype=np.float32) + 0.5) / (2 * left))
    if stop < length and right > 0:
        w[-2 * right :] = np.minimum(w[-2 * right :], ((np.arange(2 * right, dtype=np.float32) + 0.5) / (2 * right))[::-1])
    return w


def _blend(h: int, w: int, channels: int, tile: int, overlap: int, fn) -> np.ndarray:
    """Run ``fn(y0, y1, x0, x1)`` (→ float32 window × ``channels``) over overlapping windows, blended by ramps."""
    acc = np.zeros((h, w, channels), np.float32)
    wsum = np.zeros((h, w, 1), np.float32)
    for y0, y1, cy0, cy1 in windows(h, tile, overlap):
        for x0, x1, cx0, cx1 in windows(w, tile, overlap):
            weight = np.outer(ramp(y0, y1, cy0, cy1, h), ramp(x0, x1, cx0, cx1, w))[..., None]
            acc[y0:y1, x0:x1] += fn(y0, y1, x0, x1).reshape(y1 - y0, x1 - x0, channels) * weight
            wsum[y0:y1, x0:x1] += weight
    return acc / np.maximum(wsum, 1e-6)


def _to_tensor(rgb: np.ndarray, device) -> torch.Tensor:
    return to_signed(torch.from_numpy(np.require(rgb, requirements=["C", "W"])).to(device)[None])


def detect(bundle: Bundle, rgb: np.ndarray, tile: int = 512, overlap: int = 32, device="cpu") -> np.ndarray:
    """Defect probability map (float32 H×W in [0, 1]) from the bundle's detector, tiled and blended.

    Its windows default to twice the restoration tile: the detector is the smaller network, and
    fewer, larger windows spend less on overlaps.
    """

    def window(y0, y1, x0, x1):
        return torch.sigmoid(bundle.scratch(_to_tensor(rgb[y0:y1, x0:x1], device)))[0, 0].cpu().numpy()

    with torch.inference_mode():
        return _blend(*rgb.shape[:2], 1, tile, overlap, window)[..., 0]


def hysteresis(prob: np.ndarray, low: float, high: float) -> np.ndarray:
    """Boolean mask of the 8-connected regions of ``prob > low`` that contain a pixel ``> high``
    (plain ``prob > low`` when ``high <= low``): isolated weak responses go, whole scratches stay."""
    region = prob > low
    if high <= low or not region.any():
        return region
    n, labels = cv2.connectedComponents(region.view(np.uint8), connectivity=8, ltype=cv2.CV_32S)
    keep = np.zeros(n, bool)
    keep[labels[prob > high]] = True
    keep[0] = False
    return keep[labels]


def detect_mask(bundle: Bundle, rgb: np.ndarray, tile: int = 512, overlap: int = 32, device="cpu", seeds: bool = True) -> np.ndarray:
    """The detector's defect mask (uint8 H×W, 255 = damaged) at the bundle's calibrated thresholds
    (without ``seeds``: every region above the threshold, confident or not)."""
    cfg = bundle.scratch.cfg
    prob = detect(bundle, rgb, tile, overlap, device)
    return np.where(hysteresis(prob, cfg.threshold, cfg.seed_threshold if seeds else 0.0), np.uint8(255), np.uint8(0))


def translate(bundle: Bundle, rgb: np.ndarray, mask: np.ndarray, tile: int = 256, overlap: int = 32, device="cpu",
              as_float: bool = False) -> np.ndarray:  # fmt: skip
    """G_Y(T(E_R(x), m)) over windows, blended; returns uint8 H×W×3 (``as_float``: float32 in [0, 255], unrounded)."""
    from .nn import pad_to_multiple

    s = bundle.stride

    def window(y0, y1, x0, x1):
        x = _to_tensor(rgb[y0:y1, x0:x1], device)
        m = torch.from_numpy(mask[y0:y1, x0:x1] > 0).to(device)[None, None].float()
        xp, size = pad_to_multiple(x, s, minimum=max(8, 2 * s))
        mp = torch.nn.functional.pad(m, (0, xp.shape[-1] - m.shape[-1], 0, xp.shape[-2] - m.shape[-2]))
        y = bundle.vae2.decode(bundle.mapping(bundle.vae1.encode(xp)[0], mp))[..., : size[0], : size[1]]
        return from_signed(y)[0].cpu().numpy()

    with torch.inference_mode():
        out = _blend(*rgb.shape[:2], 3, tile, overlap, window)
    if as_float:
        return np.clip(out, 0, 255, out=out)
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)


def _split(image: np.ndarray) -> tuple[np.ndarray, np.ndarray | None, bool]:
    """RGB, alpha (or None), whether the input was grayscale; uint8, or uint16 for a uint16 input."""
    if not isinstance(image, np.ndarray):
        raise ImageError(f"expected a numpy image, got {type(image).__name__}")
    if image.dtype.kind == "u" and image.dtype.itemsize == 2 and not image.dtype.isnative:
        image = image.astype(np.uint16)  # big-endian samples (as a raw or FITS reader gives them): the same values
    if image.dtype not in (np.uint8, np.uint16):  # the result keeps the input's type: only these two have one
        raise ImageError(f"expected uint8 or uint16 pixels, got {image.dtype}: convert it first (an int16 array may "
                         f"hold 8-bit values or a signed scan, which need different scalings)")  # fmt: skip
    if image.ndim == 2:
        return np.repeat(image[..., None], 3, axis=2), None, True
    if image.ndim == 3 and image.shape[2] in (3, 4):
        return np.ascontiguousarray(image[..., :3]), (image[..., 3].copy() if image.shape[2] == 4 else None), False
    if image.ndim == 3 and image.shape[2] in (1, 2):  # gray, gray + alpha
        return np.repeat(image[..., :1], 3, axis=2), (image[..., 1].copy() if image.shape[2] == 2 else None), True
    raise ImageError(f"expected an H×W, H×W×1, H×W×2 (gray + alpha), H×W×3 or H×W×4 image, got shape {image.shape}")


SCRATCH_MODES = ("auto", "all", "none")


def check_tile(tile: int, overlap: int = 32) -> None:
    """Windows must hold their blending ramps: the tile at least twice the overlap (and 32 px)."""
    for what, v in (("tile", tile), ("overlap", overlap)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
            raise DaguerreError(f"{what} must be a whole number of pixels, got {v!r}")
    if overlap < 0:
        raise DaguerreError(f"overlap must be at least 0, got {overlap}")
    least = max(32, 2 * overlap)
    if tile < least:
        raise DaguerreError(f"--tile must be at least {least} pixels (twice the {overlap}-pixel overlap), got {tile}")


def _releases_memory(fn):
    """Return the heap's freed pages to the system once ``fn`` has returned and its temporaries are gone."""
    import functools

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        finally:
            from degrade.runtime import release_free_memory

            release_free_memory()

    return wrapper


@_releases_memory
def restore(
    image: np.ndarray,
    model: str | Path | Bundle = DEFAULT_MODEL,
    scratches: str | np.ndarray = "auto",
    tile: int = 256,
    overlap: int = 32,
    device: str = "auto",
    anchor: bool = True,
) -> RestoreResult:
    """Restore an old photo: returns the restored image (same shape, mode and type) and the defect mask.

    A uint16 image is restored by the 8-bit networks and returned as uint16: the tone anchoring
    takes the input's full-depth tones, so smooth gradients keep more than 256 levels.

    ``scratches``: ``auto`` (the bundle's detector and calibrated mask), ``all`` (every detection
    above the threshold, without the hysteresis seeds: more faint defects inpainted, more false
    alarms), ``none`` (no inpainting branch), or a mask array (H×W, nonzero = damaged).
    ``anchor``: apply the bundle's calibrated tone anchoring (:mod:`zoo.anchor`), if it has one.
    """
    check_tile(tile, overlap)
    if not isinstance(anchor, (bool, np.bool_)):  # "false" would be truthy
        raise DaguerreError(f"anchor must be True or False, got {anchor!r}")
    dev = resolve_device(device)
    t0 = time.perf_counter()
    bundle = get_bundle(model, str(dev))
    rgb, alpha, gray = _split(image)
    deep = rgb.dtype == np.uint16
    if deep:
        rgb16, rgb = rgb, to_uint8(rgb)
    h, w = rgb.shape[:2]
    if min(h, w) < 1:
        raise ImageError(f"empty image of shape {image.shape}")
    times = {"load": time.perf_counter() - t0}
    t = time.perf_counter()
    kh, kw = -(-MIN_SIDE // h), -(-MIN_SIDE // w)  # each side on its own: a 1×4000 strip becomes 32×4000, not 32×128000
    small = kh > 1 or kw > 1
    if small:
        rgb = cv2.resize(rgb, (w * kw, h * kh), interpolation=cv2.INTER_CUBIC)
        if deep:
            rgb16 = cv2.resize(rgb16, (w * kw, h * kh), interpolation=cv2.INTER_CUBIC)
    if isinstance(scratches, np.ndarray):
        if scratches.ndim not in (2, 3) or scratches.shape[:2] != (h, w):
            raise ImageError(f"mask of shape {scratches.shape} does not match the image ({h}×{w}; H×W or H×W×C)")
        m = scratches != 0 if scratches.ndim == 2 else (scratches != 0).any(axis=2)  # as the CLI reads a colour mask file
        mask = given = np.where(m, np.uint8(255), np.uint8(0))
        mask = np.repeat(np.repeat(mask, kh, axis=0), kw, axis=1)
    elif scratches in ("auto", "all"):
        mask = detect_mask(bundle, rgb, 2 * tile, overlap, dev, seeds=scratches == "auto")
    elif scratches == "none":
        mask = np.zeros(rgb.shape[:2], np.uint8)  # the enlarged size under MIN_SIDE
    else:
        raise DaguerreError(f"scratches must be auto, all, none or a mask, got {scratches!r}")
    times["detect"] = time.perf_counter() - t
    t = time.perf_counter()
    out = translate(bundle, rgb, mask, tile, overlap, dev, as_float=deep)
    times["restore"] = time.perf_counter() - t
    cfg = bundle.anchor if anchor else None
    if cfg is not None:
        from .anchor import anchor as anchor_tones

        t = time.perf_counter()
        inp = rgb16.astype(np.float32) * np.float32(1 / 257) if deep else rgb  # 16-bit tones on the 8-bit scale
        out = anchor_tones(inp, out, mask, cfg)
        times["anchor"] = time.perf_counter() - t
    if small:
        out = cv2.resize(out, (w, h), interpolation=cv2.INTER_AREA)
        mask = given if isinstance(scratches, np.ndarray) else np.where(cv2.resize(mask, (w, h), interpolation=cv2.INTER_AREA) >= 128, np.uint8(255), np.uint8(0))
    if deep:  # float32 on the 8-bit scale, unrounded
        out = np.clip(out * np.float32(257) + np.float32(0.5), 0, 65535).astype(np.uint16)
    if gray:
        out = cv2.cvtColor(out, cv2.COLOR_RGB2GRAY)
        if image.ndim == 3:
            out = out[..., None]
    if alpha is not None:
        out = np.dstack([out, alpha])
    return RestoreResult(out, mask, times)


@dataclass
class FileReport:
    written: list[Path] = field(default_factory=list)
    skipped: list[Path] = field(default_factory=list)  # inputs whose outputs were already up to date
    failed: list[tuple[str, str]] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)


def compare_image(before: np.ndarray, after: np.ndarray, max_width: int = 3000) -> np.ndarray:
    """Input | restored side by side (alpha composited on white, gray as RGB), at most ``max_width`` wide."""
    def rgb(a):
        if a.ndim == 3 and a.shape[2] == 2:
            a = np.dstack([np.repeat(a[..., :1], 3, axis=2), a[..., 1]])
        if a.ndim == 2 or a.shape[2] == 1:
            return cv2.cvtColor(a.reshape(a.shape[:2]), cv2.COLOR_GRAY2RGB)
        if a.shape[2] == 4:
            al = a[..., 3:].astype(np.float32) / 255
            return (a[..., :3] * al + 255 * (1 - al)).round().astype(np.uint8)
        return a

    gap = np.full((before.shape[0], max(4, before.shape[1] // 100), 3), 255, np.uint8)
    sheet = np.hstack([rgb(before), gap, rgb(after)])
    if sheet.shape[1] > max_width:
        s = max_width / sheet.shape[1]
        sheet = cv2.resize(sheet, (max_width, max(1, round(sheet.shape[0] * s))), interpolation=cv2.INTER_AREA)
    return sheet


def _mask_file(spec: str, path: Path) -> Path:
    """The mask file that ``--scratches spec`` (a file, or a folder of NAME.mask.png or NAME.png) gives ``path``."""
    p = Path(spec)
    if p.is_dir():
        for cand in (p / f"{path.stem}.mask.png", p / f"{path.stem}.png"):  # a restore output folder holds both
            if cand.exists():
                return cand
        raise ImageError(f"no mask for {path.name} in {spec} (expected {path.stem}.mask.png or {path.stem}.png)")
    return p


def _mask_for(spec: str, path: Path, shape: tuple[int, int]) -> np.ndarray:
    from degrade.io import read_image

    p = _mask_file(spec, path)
    m = read_image(p).pixels
    m = m if m.ndim == 2 else m.max(axis=2)
    if m.shape != shape:
        raise ImageError(f"mask {p} is {m.shape[1]}×{m.shape[0]}, the image {shape[1]}×{shape[0]}")
    return m


def picture_array(pic) -> np.ndarray:
    """A decoded :class:`degrade.io.Picture` as the array :func:`restore` takes (alpha as the last channel):
    its 16-bit samples when it was read with ``deep=True`` from a 16-bit source."""
    if pic.deep is not None:
        return pic.deep
    return pic.pixels if pic.alpha is None else np.dstack([pic.pixels, pic.alpha])


def encode_restored(image: np.ndarray, has_alpha: bool, icc: bytes | None = None, mark: bool = True) -> bytes:
    """PNG of a :func:`restore` result: gray stays 1 channel, alpha (the last channel) stays alpha, and
    the input's colour profile (``Picture.icc``) stays its profile; ``mark``: see ``encode_png``."""
    from degrade.io import encode_png

    pixels, alpha = (image[..., :-1], image[..., -1]) if has_alpha else (image, None)
    if pixels.ndim == 3 and pixels.shape[2] == 1:
        pixels = pixels[..., 0]
    return encode_png(np.ascontiguousarray(pixels), alpha, icc=icc, mark=mark)


PIPELINE_VERSION = 1
"""Bump when :func:`restore` gives other pixels for the same bundle, options and input: a re-run of
``daguerre restore`` then redoes the outputs an earlier version wrote instead of keeping them."""
RECORD_DIR = ".daguerre-restore"
"""The folder in ``--out`` where :func:`restore_files` records, per output name, what made its outputs."""


def record_key(input_sum: str | None, model_sum: str | None, scratches: str | dict, tile: int, anchor: bool, device) -> dict:
    """What a restore record holds of how its outputs were made: the input's and bundle's SHA-256, the options that
    change pixels (``scratches``: a mode, or ``{"mask": SHA-256}`` of a mask file), the pipeline version and the
    device's type: CUDA's kernels round otherwise than the CPU's (its outputs differed from a CPU run's by up to a
    grey level, its masks in a pixel in a million), and a skip must keep only what a run there would write."""
    return {"pipeline": PIPELINE_VERSION, "input": input_sum, "model": model_sum, "tile": int(tile), "overlap": 32,
            "anchor": bool(anchor), "scratches": scratches, "device": torch.device(device).type}  # fmt: skip


def up_to_date(record: Path, key: dict, outputs: list[Path]) -> bool:
    """Whether ``record`` says ``outputs`` were made with ``key`` (input, model, options) and each still holds those bytes."""
    try:  # a FIFO there waited for a writer for ever, a link to /dev/zero was read until memory ran out
        held = read_json(record, 1_000_000)
    except (OSError, ValueError):
        return False
    if not isinstance(held, dict) or held.get("key") != key or not isinstance(held.get("outputs"), dict):
        return False
    sums = held["outputs"]
    return sorted(sums) == sorted(o.name for o in outputs) and all(isinstance(sums[o.name], str) and file_sha256(o) == sums[o.name] for o in outputs)


def restore_files(paths, out: Path, model: str = DEFAULT_MODEL, scratches: str = "auto", tile: int = 256,
                  device: str = "auto", on_file=None, anchor: bool = True, overwrite: bool = False,
                  redo: bool = False) -> FileReport:  # fmt: skip
    """Restore every input into ``out``: NAME.png, NAME.mask.png, NAME.compare.png; failures are collected.
    Files in their places that daguerre did not write are refused unless ``overwrite``.

    Resumes: an input is skipped (``FileReport.skipped``) when its record in ``out/.daguerre-restore/NAME.json``
    holds the same input bytes, bundle file, options and pipeline version and its three outputs still hold
    the bytes recorded; unless ``redo``. Outputs are synced to disk before their record, and both before the next input.
    """
    from degrade.batch import check_not_foreign, check_outputs, output_stems
    from degrade.io import atomic_write_bytes, encode_png, fsync_dir, icc_for, nearest_existing, read_image

    from .store import resolve

    report = FileReport()
    check_tile(tile)
    if scratches not in SCRATCH_MODES and (not scratches or not Path(scratches).exists()):
        raise DaguerreError(f"--scratches {scratches!r}: not {', '.join(SCRATCH_MODES)}, nor an existing mask file or folder")
    dev = resolve_device(device)
    # the card travels in the file's header, so a recalibration changes it; a loaded Bundle has no file: always restored.
    # Hashed before it is loaded: a file recalibrated in between is restored again by the next run, never skipped
    model_sum = file_sha256(resolve(model, "bundle")) if isinstance(model, (str, Path)) else None
    bundle = get_bundle(model, str(dev))  # unknown model or bad checkpoint: fail before touching any input
    stems = output_stems(list(paths))
    planned = [[out / f"{s}{x}" for x in (".png", ".mask.png", ".compare.png")] for s in stems]
    check_outputs(paths, planned)
    if not overwrite:
        check_not_foreign(planned)
    name_max = os.pathconf(nearest_existing(out), "PC_NAME_MAX")  # out may not exist yet
    for path, stem, outputs in zip(paths, stems, planned):
        t = time.perf_counter()
        try:
            if len(os.fsencode(f"{stem}.compare.png")) > name_max:  # before writing any of the three; names need not be UTF-8
                raise ImageError(f"{path}: its output names ({stem}.compare.png) would exceed {name_max} bytes; rename it")
            mask_file = None if scratches in SCRATCH_MODES else _mask_file(scratches, Path(path))
            mask_sum = "" if mask_file is None else file_sha256(mask_file)  # by content: a moved mask file is the same mask
            key = record_key(file_sha256(path), model_sum, scratches if mask_file is None else {"mask": mask_sum}, tile, anchor, dev)
            known = None not in (key["input"], model_sum, mask_sum)  # else (unreadable, not a regular file) no record
            record = out / RECORD_DIR / f"{stem}.json"
            if not redo and known and up_to_date(record, key, outputs):
                report.skipped.append(Path(path))
            else:
                pic = read_image(path, deep=True)
                px = picture_array(pic)
                mode = scratches if mask_file is None else _mask_for(scratches, Path(path), pic.pixels.shape[:2])
                res = restore(px, bundle, mode, tile, device=str(dev), anchor=anchor)  # the file hashed: one recalibrated meanwhile is not it
                restored = res.image
                compare = compare_image(to_uint8(px), to_uint8(restored))  # RGB and 8-bit: a gray input's GRAY profile does not fit it
                blobs = [encode_restored(restored, pic.alpha is not None, pic.icc), encode_png(res.mask, mark=True),
                         encode_png(compare, icc=icc_for(pic.icc, gray=False), mark=True)]  # fmt: skip
                for o, data in zip(outputs, blobs):
                    atomic_write_bytes(o, data, durable="data")  # the bytes on disk before the name
                if known:
                    sums = {o.name: hashlib.sha256(data).hexdigest() for o, data in zip(outputs, blobs)}
                    text = json.dumps({"key": key, "outputs": sums, "input_path": str(path), "model_name": str(model)}, indent=1)
                    atomic_write_bytes(record, (text + "\n").encode(), durable=True)
                fsync_dir(out)  # the outputs' names (and the record folder's) on disk before the next input
                report.written.append(outputs[0])
                report.seconds.append(time.perf_counter() - t)
        except (ImageError, DaguerreError) as e:
            report.failed.append((str(path), str(e)))
        except OSError as e:  # writing the outputs (name too long, disk full, permissions)
            report.failed.append((str(path), f"{path}: cannot write its outputs: {e.strerror or e}"))
        except Exception as e:  # noqa: BLE001  one photo's unexpected failure must not cost the others
            report.failed.append((str(path), f"{path}: internal {type(e).__name__}: {e}"))
        if on_file:
            on_file()
    return report


class _CallableModule(type(sys.modules[__name__])):
    """Lets ``zoo.restore(image, model=...)`` call :func:`restore` while the module stays importable."""

    def __call__(self, *args: Any, **kwargs: Any) -> RestoreResult:
        return restore(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
