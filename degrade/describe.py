"""Human and machine descriptions of the operator registry (CLI listings, generated docs)."""

from __future__ import annotations

import inspect
from typing import Any

from .errors import first_line
from .operator import Operator, list_operators
from .params import Bool, Choice, Float, Int


def _default(spec) -> Any:
    d = spec.default
    return list(d) if isinstance(d, tuple) else d


def _param_kind(spec) -> str:
    return {Float: "float", Int: "int", Choice: "choice", Bool: "bool"}[type(spec)]


def operator_info(cls: type[Operator]) -> dict[str, Any]:
    """A JSON-able description of one operator."""
    params = {
        name: {
            "type": _param_kind(spec),
            "range": spec.describe(),
            "default": _default(spec),
            "doc": spec.doc,
        }
        for name, spec in cls.params.items()
    }
    if cls.name == "imgaug":
        params = {
            "augmenter": {"type": "str", "range": "any imgaug.augmenters class", "default": None, "doc": "e.g. GaussianBlur, pillike.EnhanceColor"},
            "args": {"type": "mapping", "range": "keyword arguments", "default": {}, "doc": "lists become tuples (ranges); {choice: [...]} a list"},
        }
    return {
        "name": cls.name,
        "kind": cls.kind,
        "version": cls.version,
        "earlier_versions": sorted(cls.earlier),
        "summary": first_line(cls.__doc__),
        "seeded": cls.seeded,
        "main": cls.main_param(),
        "params": params,
        "example": cls.example,
    }


def version_label(cls: type[Operator]) -> str:
    """``v2`` or, with earlier versions kept for replay, ``v2; v1 kept``."""
    kept = ", ".join(f"v{v}" for v in sorted(cls.earlier))
    return f"v{cls.version}" + (f"; {kept} kept" if kept else "")


def operators_table():
    """A rich table of every operator and its parameters."""
    from rich.table import Table

    t = Table(title="daguerre operators", show_lines=False)
    t.add_column("name", style="bold")
    t.add_column("kind")
    t.add_column("parameters (range; default)")
    for cls in list_operators():
        info = operator_info(cls)
        params = "\n".join(f"{k}: {v['range']}; {v['default']}" for k, v in info["params"].items())
        t.add_row(f"{cls.name} {version_label(cls)}", cls.kind, params)
    return t


def operator_text(cls: type[Operator]) -> str:
    """Plain-text description of one operator."""
    info = operator_info(cls)
    fn_doc = _function_doc(cls)
    lines = [f"{cls.name} ({version_label(cls)}, {cls.kind}): {info['summary']}"]
    if fn_doc:
        lines += ["", fn_doc]
    lines += ["", "parameters:"]
    for k, v in info["params"].items():
        lines.append(f"  {k:<14} {v['range']}; default {v['default']}  {v['doc']}")
    if cls.seeded:
        lines.append(f"  {'seed':<14} drawn per sample; drives the pixel-level randomness")
    lines += ["", f"example: {info['example']}"]
    return "\n".join(lines)


def _function_doc(cls: type[Operator]) -> str:
    """The docstring of the functional form (same module, same name) when there is one."""
    module = inspect.getmodule(cls)
    fn = getattr(module, cls.name, None) or getattr(module, cls.name + "_noise", None)
    if fn is None or not callable(fn) or isinstance(fn, type):
        return ""
    return inspect.cleandoc(fn.__doc__ or "")


def operators_markdown() -> str:
    """The operator reference of docs/degrade.md, generated from the registry."""
    out = []
    for kind in ("unstructured", "structured"):
        out.append(f"### {kind.capitalize()} operators\n")
        for cls in [c for c in list_operators() if c.kind == kind]:
            info = operator_info(cls)
            out.append(f"#### `{cls.name}` ({version_label(cls)})\n")
            out.append(info["summary"] + "\n")
            doc = _function_doc(cls)
            if doc:
                out.append(doc + "\n")
            out.append("| parameter | range | default | meaning |")
            out.append("| --- | --- | --- | --- |")
            for k, v in info["params"].items():
                star = " (main)" if k == info["main"] else ""
                out.append(f"| `{k}`{star} | {v['range']} | `{v['default']}` | {v['doc']} |")
            if cls.seeded:
                out.append("| `seed` | drawn per sample | | pixel-level randomness |")
            out.append(f"\nExample: `{info['example']}`\n")
    return "\n".join(out)
