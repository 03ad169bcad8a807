"""Package exports imported on first use (PEP 562), so that a cheap command pays only for what it touches."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable
from typing import Any


def lazy_exports(package: str, exports: dict[str, str], first: str | None = None) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``(__getattr__, __dir__)`` for ``package``: each name of ``exports`` is looked up in its submodule
    (``".reader"``) on first access and kept; ``first``: a submodule imported before any of them."""
    namespace = sys.modules[package].__dict__

    def __getattr__(name: str) -> Any:
        if name not in exports:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        if first:
            importlib.import_module(first, package)
        value = namespace[name] = getattr(importlib.import_module(exports[name], package), name)
        return value

    def __dir__() -> list[str]:
        return sorted({*namespace, *namespace.get("__all__", ())})

    return __getattr__, __dir__
