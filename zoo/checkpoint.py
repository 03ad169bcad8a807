"""Checkpoints: ``NAME.safetensors`` (tensors only, never pickled) plus ``NAME.json`` (the card).

The card holds the model name and config, the stage, the datasets (name, version, identity)
it was trained on, steps, final losses, metrics, code version and date. The same JSON also
travels in the safetensors header, so a lone ``.safetensors`` file is self-describing.
"""

from __future__ import annotations

import dataclasses
import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from degrade.errors import DaguerreError, some
from degrade.io import atomic_write_bytes

from .store import CARD_KEY, card_of, check_checkpoint_file, stem_of, with_ext  # in zoo.store, which reads names, cards and headers without torch


def save(path: str | Path, tensors: dict[str, torch.Tensor], card: dict[str, Any]) -> Path:
    """Write ``path.safetensors`` and ``path.json`` atomically; returns the .safetensors path."""
    stem = stem_of(path)
    card = {**card, "saved": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    text = json.dumps(card, indent=2, sort_keys=True, default=_jsonable)
    data = st_save({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, metadata={CARD_KEY: text})
    atomic_write_bytes(with_ext(stem, ".safetensors"), data, durable=True)
    atomic_write_bytes(with_ext(stem, ".json"), (text + "\n").encode(), durable=True)
    return with_ext(stem, ".safetensors")


def restore_card_file(path: str | Path) -> None:
    """Write ``path.json`` again from the card in the safetensors header if it does not read back as that card (a
    kill between :func:`save`'s two writes, a power cut): the same bytes save wrote; the weights are left alone."""
    stem = stem_of(path)
    with open(with_ext(stem, ".safetensors"), "rb") as f:
        header = f.read(int.from_bytes(f.read(8), "little"))
    text = json.loads(header).get("__metadata__", {}).get(CARD_KEY)
    js = with_ext(stem, ".json")
    if text is not None and (not js.is_file() or js.read_bytes() != (text + "\n").encode()):
        atomic_write_bytes(js, (text + "\n").encode())


def _jsonable(o: Any) -> Any:
    if dataclasses.is_dataclass(o):
        return dataclasses.asdict(o)
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON-serialisable: {type(o).__name__}")


def load(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Read tensors and card; any unreadable, truncated or foreign file is a one-line DaguerreError."""
    stem = stem_of(path)
    st = with_ext(stem, ".safetensors")
    check_checkpoint_file(st)
    try:
        raw = st.read_bytes()
        tensors = st_load(raw)
        header_len = int.from_bytes(raw[:8], "little")
        meta = json.loads(raw[8 : 8 + header_len]).get("__metadata__", {})
    except (SafetensorError, ValueError, OSError, UnicodeDecodeError) as e:
        raise DaguerreError(f"{st} is not a valid safetensors checkpoint ({str(e).splitlines()[0]})") from None
    return tensors, card_of(st, meta)


def prefixed(tensors: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """The sub-dictionary under ``prefix.`` with the prefix stripped."""
    n = len(prefix) + 1
    return {k[n:]: v for k, v in tensors.items() if k.startswith(prefix + ".")}


def load_module(module: torch.nn.Module, tensors: dict[str, torch.Tensor], prefix: str, where: str = "") -> None:
    """Load ``prefix.*`` tensors into a module strictly; mismatches are a clear error."""
    sub = prefixed(tensors, prefix)
    if not sub:
        raise DaguerreError(f"{where or 'checkpoint'}: no weights for {prefix!r}")
    check_finite(sub, f"{where or 'checkpoint'}: weights for {prefix!r}")
    if _other_kind(module.state_dict(), sub):  # torch would cast integers into float weights: garbage, no error
        raise DaguerreError(f"{where or 'checkpoint'}: weights for {prefix!r} do not fit the model ({misfit(module, sub)})")
    try:
        module.load_state_dict(sub, strict=True)
    except RuntimeError:
        raise DaguerreError(f"{where or 'checkpoint'}: weights for {prefix!r} do not fit the model ({misfit(module, sub)})") from None


def check_fit(module: torch.nn.Module, tensors: dict[str, torch.Tensor], prefix: str, where: str = "") -> None:
    """Refuse ``prefix.*`` tensors whose names or shapes are not ``module``'s, without loading them: on a module
    built on torch's meta device (no memory), so that a card's config cannot allocate more than its file holds."""
    sub = prefixed(tensors, prefix)
    want = module.state_dict()
    if not sub:
        raise DaguerreError(f"{where or 'checkpoint'}: no weights for {prefix!r}")
    if set(sub) != set(want) or any(sub[k].shape != want[k].shape for k in want) or _other_kind(want, sub):
        raise DaguerreError(f"{where or 'checkpoint'}: weights for {prefix!r} do not fit the model ({misfit(module, sub)})")


def _other_kind(want: dict[str, torch.Tensor], tensors: dict[str, torch.Tensor]) -> list[str]:
    """Tensors that are integers where the model holds floats, or the other way round."""
    return sorted(k for k in set(want) & set(tensors) if tensors[k].is_floating_point() != want[k].is_floating_point())


def misfit(module: torch.nn.Module, tensors: dict[str, torch.Tensor]) -> str:
    """Which tensors keep ``tensors`` from loading into ``module``: missing, unexpected, other shapes."""
    want = module.state_dict()

    def dims(t: torch.Tensor) -> str:
        return "×".join(map(str, t.shape)) or "scalar"

    missing = sorted(set(want) - set(tensors))
    extra = sorted(set(tensors) - set(want))
    shaped = [f"{k}: {dims(tensors[k])} in the file, {dims(want[k])} in the model"
              for k in sorted(set(want) & set(tensors)) if tensors[k].shape != want[k].shape]  # fmt: skip
    typed = [f"{k}: {tensors[k].dtype} in the file, {want[k].dtype} in the model" for k in _other_kind(want, tensors)]
    parts = [f"{n} {what}: {some(keys, 3)}" for n, what, keys in ((len(missing), "missing", missing), (len(extra), "unexpected", extra),
                                                              (len(shaped), "of another shape", shaped),
                                                              (len(typed), "of another type", typed)) if n]  # fmt: skip
    return "; ".join(parts) or "the model refused them"


def check_finite(tensors: dict[str, torch.Tensor], what: str) -> None:
    """NaN or infinite weights make a network whose every output is NaN (a detector that finds nothing,
    a restoration of NaN): refuse them when loaded, as any other bad weights."""
    for k, v in tensors.items():
        if v.is_floating_point() and not bool(torch.isfinite(v).all()):
            raise DaguerreError(f"{what} hold NaN or infinite values ({k})")


def module_tensors(prefix: str, module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {f"{prefix}.{k}": v for k, v in module.state_dict().items()}


# -- optimizer state as plain tensors (resumable training without pickle) --------------------
def optimizer_tensors(prefix: str, opt: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    state = opt.state_dict()
    tensors, meta = {}, {"param_groups": state["param_groups"], "state": {}}
    for pid, st in state["state"].items():
        meta["state"][str(pid)] = {}
        for k, v in st.items():
            if isinstance(v, torch.Tensor):
                tensors[f"{prefix}.{pid}.{k}"] = v
                meta["state"][str(pid)][k] = "tensor"
            else:
                meta["state"][str(pid)][k] = v
    return tensors, meta


def restore_optimizer(opt: torch.optim.Optimizer, prefix: str, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
    state = {}
    for pid, st in meta["state"].items():
        state[int(pid)] = {k: (tensors[f"{prefix}.{pid}.{k}"] if v == "tensor" else v) for k, v in st.items()}
    opt.load_state_dict({"state": state, "param_groups": meta["param_groups"]})
