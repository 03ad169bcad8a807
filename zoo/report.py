"""Benchmark reports: results.json, report.md, report.html, contact sheets and plots; comparisons."""

from __future__ import annotations

import html
import math
import os
from pathlib import Path
from typing import Any

import numpy as np

from degrade.errors import DaguerreError
from degrade.filekind import NotRegularFile, read_json
from degrade.io import atomic_write_bytes

from .metrics import QUALITY_KEYS


def _f(v: Any, digits: int = 2) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "–"
    return f"{v:.{digits}f}"


def _ci(a: dict[str, Any] | None, d: int = 2) -> str:
    """A mean and its interval; ``[n/a]`` where there is no interval (one value); – where there is no mean."""
    if not a or a["mean"] is None or not math.isfinite(a["mean"]):  # no defined value: not "– [n/a]"
        return "–"
    lo, hi = a["ci95"]
    if any(v is None or not math.isfinite(v) for v in (lo, hi)):
        return f"{_f(a['mean'], d)} [n/a]"
    return f"{_f(a['mean'], d)} [{_f(lo, d)}, {_f(hi, d)}]"


def _too_small(result: dict[str, Any], side: int) -> str | None:
    """``n/a (<N px)`` where the dataset's samples are too small for a score (its cell said only –)."""
    size = result["dataset"].get("size")
    return f"n/a (<{side} px)" if isinstance(size, int) and size < side else None


def summary_rows(result: dict[str, Any]) -> list[list[str]]:
    from .bench import MS_SSIM_MIN

    rows = []
    for label, agg in result["aggregate"].items():
        def ci(key, d=2):
            if key == "ms_ssim" and key not in agg and "ssim" in agg:
                return _too_small(result, MS_SSIM_MIN) or "–"
            return _ci(agg.get(key), d)

        det = agg.get("detection", {}).get("pooled", {})
        rows.append([label, ci("psnr"), ci("ssim", 4), ci("ms_ssim", 4), ci("gmsd", 4), ci("psnr_in_mask"), ci("psnr_out_mask"),
                     _f(det.get("precision"), 3), _f(det.get("recall"), 3), _f(det.get("f1"), 3), _f(det.get("iou"), 3),
                     _f(agg["seconds"]["mean"] * 1000, 1) if "seconds" in agg else "–"])  # fmt: skip
    return rows


def real_rows(result: dict[str, Any]) -> list[list[str]]:
    """Method, NIQE with its interval, and time per image, for a real-photo benchmark."""
    from .niqe import PATCH

    rows = []
    for label, agg in result["aggregate"].items():
        niqe = _ci(agg["niqe"]) if "niqe" in agg else _too_small(result, PATCH) or "–"
        rows.append([label, niqe, _f(agg["seconds"]["mean"] * 1000, 1) if "seconds" in agg else "–"])
    return rows


HEADER = ["method", "PSNR dB [95% CI]", "SSIM [95% CI]", "MS-SSIM [95% CI]", "GMSD ↓ [95% CI]", "PSNR in mask dB [95% CI]",
          "PSNR outside mask dB [95% CI]", "precision", "recall", "F1", "IoU", "ms/image"]  # fmt: skip


def masked_note(result: dict[str, Any]) -> str | None:
    """On how many samples the PSNR in and outside the mask is averaged (those with a defect), where not all."""
    n = max((agg["psnr_in_mask"]["n"] for agg in result["aggregate"].values() if "psnr_in_mask" in agg), default=0)
    return f"PSNR in and outside the mask: over the {n} of {result['samples']} samples with a defect." if 0 < n < result["samples"] else None


_NAMES = {"psnr": "PSNR", "ssim": "SSIM", "ms_ssim": "MS-SSIM", "gmsd": "GMSD", "psnr_in_mask": "PSNR in mask",
          "psnr_out_mask": "PSNR outside mask", "niqe": "NIQE"}


def counted_note(result: dict[str, Any]) -> str | None:
    """The aggregate's ``capped`` (PSNR at 100 dB) and ``not_finite`` (undefined) counts, where there are any."""
    parts = {"capped": [], "not_finite": []}
    for label, agg in result["aggregate"].items():
        for key, a in agg.items():
            for kind in parts:
                if isinstance(a, dict) and a.get(kind):
                    total = a["n"] + a.get("not_finite", 0)
                    parts[kind].append(f"{label} {_NAMES.get(key, key)} {a[kind]} of {total}")
    notes = []
    if parts["capped"]:
        notes.append("Capped at 100 dB (an output equal to the ground truth there; averaged as 100): " + ", ".join(parts["capped"]) + ".")
    if parts["not_finite"]:
        notes.append("Undefined, left out of the means: " + ", ".join(parts["not_finite"]) + ".")
    return " ".join(notes) or None


def _seconds(s: float) -> str:
    """A wall time with the precision its size deserves: 0.43 s, 4.3 s, 43 s."""
    return f"{s:.{2 if s < 1 else 1 if s < 10 else 0}f} s"


def _md_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join("---" for _ in header) + " |"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def _detecting(result: dict[str, Any]) -> set[str]:
    return {lab for lab, agg in result["aggregate"].items() if "detection" in agg}


def breakdown_header(result: dict[str, Any]) -> list[str]:
    cols, detecting = ["operator", "applied"], _detecting(result)
    for lab in result["aggregate"]:
        cols += [lab] + ([f"{lab} detection F1"] if lab in detecting else [])
    return cols


def breakdown_rows(result: dict[str, Any]) -> list[list[str]]:
    labels, detecting = list(result["aggregate"]), _detecting(result)
    rows = []
    for op, e in result["breakdown"].items():
        cells = [op, f"{e['applied']}/{e['applied'] + e['not_applied']}"]
        for lab in labels:
            m = e["methods"][lab]
            cells.append(f"{_f(m['psnr_applied'])} / {_f(m['psnr_not_applied'])}")
            if lab in detecting:
                cells.append(f"{_f(m.get('f1_applied'), 3)} / {_f(m.get('f1_not_applied'), 3)}")
        rows.append(cells)
    return rows


def plot_bins(result: dict[str, Any], out: Path) -> list[Path]:
    """One PNG per operator with a main parameter: PSNR per bin of that parameter, a line per method."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = []
    for op, e in result["breakdown"].items():
        bins = e.get("bins")
        if not bins:
            continue
        fig, ax = plt.subplots(figsize=(5.5, 3.2))
        centers = [f"{b['range'][0]:.3g}–{b['range'][1]:.3g}" for b in bins]
        for lab in result["aggregate"]:
            ax.plot(range(len(bins)), [b["psnr"][lab] if b["psnr"][lab] is not None else np.nan for b in bins], marker="o", label=lab)
        ax.set_xticks(range(len(bins)), centers, fontsize=7)
        ax.set_xlabel(f"{op}.{e['main']}")
        ax.set_ylabel("PSNR (dB)")
        ax.set_title(f"PSNR by {op} {e['main']} (samples where applied)", fontsize=9)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
        fig.tight_layout()
        p = out / f"plot-{op}.png"
        fig.savefig(p, dpi=100)
        plt.close(fig)
        paths.append(p)
    return paths


def sheet(result: dict[str, Any], out: Path) -> Path | None:
    """input | each method | ground truth (and mask) for the kept samples, with PSNR under each."""
    from degrade.sheet import contact_sheet, save_sheet

    rows = result.get("sheet_rows") or []
    if not rows:
        return None
    labels_m = [m for m in result["aggregate"] if m != "identity"]  # the input itself: its PSNR goes under the input
    tiles, labels = [], []
    for r in rows:
        im = r["images"]
        tiles.append(im["degraded"])
        p = (r["methods"].get("identity") or {}).get("psnr")
        labels.append(f"#{r['index']} input" + (f" {_f(p)} dB" if p is not None else ""))
        for lab in labels_m:
            tiles.append(im[lab])
            p = r["methods"][lab].get("psnr")
            labels.append(f"{lab} {_f(p)} dB" if p is not None else lab)
        if im.get("clean") is not None:
            tiles.append(im["clean"])
            labels.append("ground truth")
    ncols = 1 + len(labels_m) + (1 if rows[0]["images"].get("clean") is not None else 0)
    p = out / "sheet.png"
    save_sheet(contact_sheet(tiles, labels, ncols=ncols, tile_size=160, label_lines=1,
                             title=f"{result['dataset']['name']}@{result['dataset']['version']}: input | methods | ground truth"), p)  # fmt: skip
    return p


def prepare_out(out: Path) -> None:
    """Make the report folder before the benchmark runs: a bad --out used to lose every result at the end."""
    import os

    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise DaguerreError(f"--out {out}: {e.strerror or e}") from None
    if not os.access(out, os.W_OK | os.X_OK):
        raise DaguerreError(f"--out {out}: not a writable folder")
    # a report replaces an earlier report's files, never a user's own (``--out .`` beside a report.md)
    present = [out / f for f in REPORT_FILES if os.path.lexists(out / f)] + sorted(out.glob("plot-*.png"))
    if present and not _bench_results(out / "results.json"):
        raise DaguerreError(f"{present[0]} exists and was not written by `daguerre bench`; choose another --out")


REPORT_FILES = ("results.json", "report.md", "report.html", "sheet.png")
"""What :func:`write_report` writes into ``--out`` (with ``plot-OPERATOR.png``), results.json first."""


def _bench_results(path: Path) -> bool:
    """Whether ``path`` is a results.json that ``daguerre bench`` wrote (its folder is then a report folder)."""
    try:  # a FIFO there waited for a writer for ever, a link to /dev/zero was read until memory ran out
        return _results_shaped(read_json(path))
    except (OSError, ValueError):  # ValueError: not JSON, or nested thousands deep
        return False


def _results_shaped(r: Any) -> bool:
    """Parsed JSON that has the shape of bench's results: an aggregate and a dataset."""
    return isinstance(r, dict) and isinstance(r.get("aggregate"), dict) and isinstance(r.get("dataset"), dict)


def write_report(result: dict[str, Any], out: Path) -> dict[str, Path]:
    """results.json, report.md, report.html, sheet.png and plots in ``out``."""
    from .bench import save_results

    out.mkdir(parents=True, exist_ok=True)
    earlier = _bench_results(out / "results.json")  # replacing an earlier report: its files must not outlive it
    save_results(result, out / "results.json")
    sheet_path = sheet(result, out)
    plots = plot_bins(result, out) if not result["real_photos"] else []
    if earlier:  # an earlier run's plots of operators (or a sheet) this one has none of would pass for this run's
        for p in [*out.glob("plot-*.png"), out / "sheet.png"]:
            if p not in plots and p != sheet_path and os.path.lexists(p):
                p.unlink()
    d = result["dataset"]
    md = [f"# Benchmark: {d['name']}@{d['version']}", "",
          f"{result['samples']} samples of {d['size']} px; dataset identity `{d['identity']}`, recipe `{d['recipe_hash']}`; "
          + (f"inpainting methods use the {result['mask_source']} mask; " if result.get("mask_methods") else "")
          + f"{result['workers']} worker{'s' if result['workers'] != 1 else ''}, {_seconds(result['wall_seconds'])}.", ""]  # fmt: skip
    if result["real_photos"]:
        md += ["Real old photos have no ground truth. The one score is NIQE, a no-reference naturalness score (lower "
               "is more natural) against daguerre's pristine model, fitted on its clean training photographs "
               "(`zoo/niqe.py`; not on the published NIQE scale; samples of at least 96 px).", ""]  # fmt: skip
        md += [_md_table(["method", "NIQE ↓ [95% CI]", "ms/image"], real_rows(result))]
    else:
        md += ["## Scores (mean and 95 % bootstrap interval)", "", _md_table(HEADER, summary_rows(result)), ""]
        for note in (masked_note(result), counted_note(result)):
            md += [note, ""] if note else []
        md += ["## By degradation", "", "PSNR (and, for methods that detect defects, pooled pixel F1) where the operator "
               "was applied / where it was not.", "", _md_table(breakdown_header(result), breakdown_rows(result)), ""]  # fmt: skip
        md += [f"![{p.stem}]({p.name})" for p in plots]
    if sheet_path:
        md += ["", "## Samples", "", f"![samples]({sheet_path.name})"]
    md += ["", "## Methods", ""] + [f"* `{k}`: {v['doc']}" for k, v in result["methods"].items()]
    md += ["", "LPIPS, DISTS and FID need ImageNet-trained weights that are not available offline; they are not reported."]
    text = "\n".join(md) + "\n"
    atomic_write_bytes(out / "report.md", text.encode())
    atomic_write_bytes(out / "report.html", markdown_to_html(text, f"Benchmark {d['name']}@{d['version']}").encode())
    return {"results": out / "results.json", "md": out / "report.md", "html": out / "report.html", "sheet": sheet_path, "plots": plots}


def markdown_to_html(md: str, title: str) -> str:
    """The small Markdown subset the reports use (headings, paragraphs, tables, images, lists)."""
    out, table, items = [], [], []

    def inline(s: str) -> str:
        import re

        s = html.escape(s)
        s = re.sub(r"`([^`]+)`", r"<code>\1</code>", s)
        return s

    def flush_table():
        if not table:
            return
        head, *body = [r for r in table if not set(r.replace("|", "").strip()) <= {"-", " "}]
        cells = lambda r: [c.strip() for c in r.strip().strip("|").split("|")]  # noqa: E731
        out.append("<table><tr>" + "".join(f"<th>{inline(c)}</th>" for c in cells(head)) + "</tr>")
        out.extend("<tr>" + "".join(f"<td>{inline(c)}</td>" for c in cells(r)) + "</tr>" for r in body)
        out.append("</table>")
        table.clear()

    def flush_items():  # a list's items in one <ul>: bare <li> in the body is not HTML
        if items:
            out.append("<ul>" + "".join(f"<li>{inline(i)}</li>" for i in items) + "</ul>")
            items.clear()

    for line in md.splitlines():
        if line.startswith("|"):
            flush_items()
            table.append(line)
            continue
        if line.startswith("* "):
            flush_table()
            items.append(line[2:])
            continue
        flush_table()
        flush_items()
        if line.startswith("#"):
            level = len(line) - len(line.lstrip("#"))
            out.append(f"<h{level}>{inline(line[level:].strip())}</h{level}>")
        elif line.startswith("!["):
            alt, src = line[2:].split("](", 1)
            out.append(f'<p><img src="{html.escape(src.rstrip(")"))}" alt="{html.escape(alt)}"></p>')
        elif line.strip():
            out.append(f"<p>{inline(line)}</p>")
    flush_table()
    flush_items()
    style = ("body{font-family:system-ui,sans-serif;max-width:1200px;margin:2em auto;padding:0 1em}"
             "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ddd;padding:.25em .6em;font-size:.9em}"
             "img{max-width:100%}code{background:#f4f4f4}")  # fmt: skip
    return f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title><style>{style}</style></head><body>{''.join(out)}</body></html>"


def _well_formed(m: Any) -> bool:
    """An aggregate entry as bench writes it: metric statistics with numeric means, a pooled detection F1."""

    def number(v: Any) -> bool:
        return v is None or (isinstance(v, (int, float)) and not isinstance(v, bool))

    if not isinstance(m, dict):
        return False
    det = m.get("detection")
    pooled = {} if det is None else det.get("pooled", {}) if isinstance(det, dict) else None
    stats = [m.get(k) for k in (*QUALITY_KEYS, "seconds")]
    return all(s is None or (isinstance(s, dict) and number(s.get("mean"))) for s in stats) and isinstance(pooled, dict) and number(pooled.get("f1"))


def _share_mask_methods(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Whether a method both runs scored used the ``--mask`` mask (unknown for results that did not record it)."""
    ma, mb = a.get("mask_methods"), b.get("mask_methods")
    return ma is None or mb is None or bool(set(ma) & set(mb))


def compare(a_path: str, b_path: str) -> dict[str, Any]:
    """Differences between two results.json files: per method, metric deltas (B − A)."""
    def load(p):
        try:  # /dev/zero was read until memory ran out: refused unopened
            r = read_json(p)
        except NotRegularFile as e:
            raise DaguerreError(f"cannot read results {p}: {e.strerror}") from None
        except (OSError, ValueError) as e:
            raise DaguerreError(f"cannot read results {p}: {e}") from None
        if not _results_shaped(r):
            raise DaguerreError(f"{p} is not a results.json written by `daguerre bench`")
        for label, m in r["aggregate"].items():  # a hand-edited or damaged file: one line, not an AttributeError
            if not _well_formed(m):
                raise DaguerreError(f"{p}: aggregate entry {label!r} is not what `daguerre bench` writes")
        return r

    a, b = load(a_path), load(b_path)
    out = {"a": {"file": a_path, "dataset": a.get("dataset")}, "b": {"file": b_path, "dataset": b.get("dataset")},
           "same_dataset": a.get("dataset", {}).get("identity") == b.get("dataset", {}).get("identity"), "methods": {},
           "differences": {k: [a.get(k), b.get(k)] for k in ("samples", "mask_source") if a.get(k) != b.get(k)
                           and (k != "mask_source" or _share_mask_methods(a, b))},
           "timing_differences": {k: [a.get(k), b.get(k)] for k in ("device", "workers") if a.get(k) != b.get(k)}}  # fmt: skip
    for label in sorted(set(a.get("aggregate", {})) | set(b.get("aggregate", {}))):
        ma, mb = a["aggregate"].get(label, {}), b["aggregate"].get(label, {})
        row = {}
        for key in (*QUALITY_KEYS, "seconds"):
            va, vb = (ma.get(key) or {}).get("mean"), (mb.get(key) or {}).get("mean")
            row[key] = {"a": va, "b": vb, "delta": (vb - va) if va is not None and vb is not None else None}
        fa = (ma.get("detection") or {}).get("pooled", {}).get("f1")
        fb = (mb.get("detection") or {}).get("pooled", {}).get("f1")
        if fa is not None or fb is not None:
            row["f1"] = {"a": fa, "b": fb, "delta": (fb - fa) if fa is not None and fb is not None else None}
        out["methods"][label] = row
    return out
