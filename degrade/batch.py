"""Degrade image files into a folder: degraded PNG, mask PNG and params JSON per input and variant."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from .errors import DaguerreError, ImageError
from .io import INPUT_SUFFIXES, atomic_write_bytes, encode_png, list_images, marked_by_daguerre, read_image
from .recipe import Recipe
from .samples import expand_builtin


@dataclass
class BatchReport:
    """What a batch wrote and which inputs failed (path, one-line reason)."""

    written: list[Path] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)
    previews: list[tuple[str, object, object, object]] = field(default_factory=list)


def resolve_inputs(items: Iterable[str], out: Path | None = None, failed: list[tuple[str, str]] | None = None) -> list[Path]:
    """Files, folders, globs and ``builtin:samples`` / ``builtin:real`` to a list of paths, each file once
    (a file named twice, or also found in a folder or glob given, keeps its first place).

    A folder or glob skips what lies in the output folder ``out`` when ``out`` is inside it (a re-run
    into ``in/out`` must not take its own outputs for inputs); not when ``out`` is the folder itself
    or holds it (``--out .``), where that would skip every input. A folder or glob that matches nothing, and a folder inside one
    that cannot be listed, go to ``failed`` as (what, one-line reason).
    """
    skip = os.path.realpath(out) + os.sep if out is not None else None

    def below_out(item: str) -> bool:  # --out lies strictly inside what the folder or glob expands
        base = str(item).split("*")[0].split("?")[0].split("[")[0]
        base = base if os.path.isdir(base) else os.path.dirname(base) or "."
        return skip is not None and skip.startswith(os.path.realpath(base) + os.sep) and skip != os.path.realpath(base) + os.sep

    def unlisted(folder: Path, e: OSError) -> None:
        if failed is not None:
            failed.append((str(folder), f"{folder}: cannot list this folder ({e.strerror or e})"))

    paths: list[Path] = []
    seen: set[str] = set()
    for item in items:
        builtin = expand_builtin(str(item))
        found = builtin if builtin is not None else list_images([item], suffixes=INPUT_SUFFIXES, on_error=unlisted)
        if builtin is None and not _is_file(Path(item)) and below_out(str(item)):  # not `--out .` around the input
            found = [p for p in found if not os.path.realpath(p).startswith(skip)]
        if not found and failed is not None:
            failed.append((str(item), f"{item}: no images found"))
        for p in found:
            key = os.path.abspath(p)
            if key not in seen:
                seen.add(key)
                paths.append(p)
    return paths


def _is_file(p: Path) -> bool:
    try:
        return p.is_file()
    except OSError:  # a folder on the way that may not be searched: the reader reports it
        return True


def check_not_foreign(per_input: Iterable[Iterable[Path]], option: str = "--out") -> None:
    """Refuse, before any work, to replace a file that daguerre did not write where an output goes (a
    user's ``scan.png`` beside ``scan.jpg``, a photo named as ``--sheet``); its own earlier outputs are replaced,
    as a re-run should, and so are empty files (a power cut right after a run can leave its outputs empty, unmarked)."""
    for paths in per_input:
        for o in paths:
            if os.path.lexists(o) and not _ours(Path(o)):
                raise DaguerreError(f"{o} exists and was not written by daguerre; move it, choose another {option}, or pass --overwrite")


def _ours(path: Path) -> bool:
    try:
        if not path.is_file():
            return False
        if path.stat().st_size == 0:  # nothing to lose; what a power cut leaves of an output written just before it
            return True
        if path.suffix == ".json":  # degrade's params record
            record = json.loads(path.read_bytes()[:1_000_000])
            return isinstance(record, dict) and "recipe_hash" in record
    except (ValueError, TypeError, OSError):
        return False
    return marked_by_daguerre(path)


def output_stems(paths: list[Path]) -> list[str]:
    """One output stem per input; two inputs that would overwrite each other are an error, also where they
    differ only in case (``X.jpg``, ``x.jpg``), which is one file on macOS, Windows and exFAT drives."""
    stems: dict[str, Path] = {}
    for p in paths:
        key = p.stem.casefold()
        if key in stems and stems[key] != p:
            raise DaguerreError(f"inputs {stems[key]} and {p} would write the same outputs (named {p.stem}); rename one")
        stems[key] = p
    return [p.stem for p in paths]


def check_outputs(inputs, per_input, option: str = "--out") -> None:
    """Refuse, before any work, outputs that would overwrite an input (or be read back as one) or
    each other. ``per_input``: the paths each input writes (``x.png``'s ``x.mask.png`` and the
    input ``x.mask.png``'s ``x.mask.png`` collide)."""
    given = {os.path.realpath(p): p for p in inputs}
    owner: dict[str, Path] = {}
    for src, paths in zip(inputs, per_input):
        for o in paths:
            key = os.path.realpath(o)
            if key in given:
                raise DaguerreError(f"{o} would overwrite the input {given[key]}; choose another {option}")
            if owner.setdefault(key, src) != src:
                raise DaguerreError(f"inputs {owner[key]} and {src} would both write {o}; rename one or process them separately")


def check_not_among(path, planned: list[list[Path]], option: str) -> None:
    """Refuse an extra output (a contact sheet) that is also one of the run's own outputs."""
    if os.path.realpath(path) in {os.path.realpath(o) for outs in planned for o in outs}:
        raise DaguerreError(f"{option} {path} is one of this run's own outputs; choose another path")


def planned_outputs(paths: list[Path], out_dir: Path, count: int) -> list[list[Path]]:
    """The files :func:`degrade_files` writes for each input: NAME-KKK.png, .mask.png and .json."""
    return [[out_dir / f"{s}-{k:03d}{x}" for k in range(count) for x in (".png", ".mask.png", ".json")] for s in output_stems(paths)]


def degrade_files(
    paths: list[Path],
    recipe: Recipe,
    seed: int,
    out_dir: Path,
    count: int = 1,
    on_progress: Callable[[], None] | None = None,
    keep_previews: int = 0,
    overwrite: bool = False,
) -> BatchReport:
    """Degrade every input ``count`` times; sample index = input position × count + variant.

    Grayscale stays grayscale; an alpha channel is carried over untouched; 16-bit inputs are
    scaled to 8 bits (recorded as ``bit_depth`` in the JSON). Every file is written atomically;
    files in their places that daguerre did not write are refused unless ``overwrite``.
    """
    if count < 1:
        raise DaguerreError(f"--count must be at least 1, got {count}")
    report = BatchReport()
    stems = output_stems(paths)
    planned = planned_outputs(paths, out_dir, count)
    check_outputs(paths, planned)
    if not overwrite:
        check_not_foreign(planned)
    for pos, (path, stem) in enumerate(zip(paths, stems)):
        try:
            pic = read_image(path)
        except ImageError as e:
            report.failed.append((str(path), str(e)))
            if on_progress:
                for _ in range(count):
                    on_progress()
            continue
        for k in range(count):
            index = pos * count + k
            result = recipe.apply(pic.pixels, seed=seed, index=index)
            base = out_dir / f"{stem}-{k:03d}"
            meta = {
                "input": str(path),
                "recipe": recipe.name,
                "recipe_hash": recipe.hash,
                "seed": seed,
                "index": index,
                "variant": k,
                "height": int(pic.pixels.shape[0]),
                "width": int(pic.pixels.shape[1]),
                "mode": "gray" if pic.is_gray else "rgb",
                "alpha": pic.alpha is not None,
                "bit_depth": pic.bit_depth,
                "params": result.params,
            }
            try:
                atomic_write_bytes(base.with_suffix(".png"), encode_png(result.image, pic.alpha, mark=True))
                atomic_write_bytes(base.with_suffix(".mask.png"), encode_png(result.mask, mark=True))
                atomic_write_bytes(base.with_suffix(".json"), (json.dumps(meta, indent=1, sort_keys=True) + "\n").encode())
            except OSError as e:  # this input's outputs cannot be written (name too long, disk full): go on with the others
                report.failed.append((str(path), f"{path}: cannot write {base.name}.*: {e.strerror or e}"))
                if on_progress:  # the variants given up count as done, as for an unreadable input
                    for _ in range(count - k):
                        on_progress()
                break
            report.written.append(base.with_suffix(".png"))
            if len(report.previews) < keep_previews:
                report.previews.append((f"{stem}-{k:03d}", pic.pixels, result.image, result.mask))
            if on_progress:
                on_progress()
    return report


def preview_sheet(report: BatchReport, title: str = ""):
    """A contact sheet of (original | degraded | mask) rows for the kept previews."""
    from .sheet import contact_sheet

    tiles, labels = [], []
    for name, clean, degraded, mask in report.previews:
        tiles += [clean, degraded, mask]
        labels += [f"{name} clean", f"{name} degraded", f"{name} mask"]
    return contact_sheet(tiles, labels, ncols=6, tile_size=220, title=title, label_lines=1)
