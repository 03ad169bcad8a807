"""A restoration bundle: VAE1's encoder, the mapping, VAE2's decoder and the scratch detector, under one name."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from degrade.errors import DaguerreError

from . import checkpoint, store
from .mapping import Mapping
from .registry import create_model
from .scratch import ScratchUNet
from .vae import VAE

PARTS = {"vae1": ("vae", ("encoder", "to_stats")), "vae2": ("vae", ("decoder",)), "mapping": ("mapping", None), "scratch": ("scratch_unet", None)}


@dataclass
class Bundle:
    """The four networks restoration runs: G_Y ∘ T ∘ E_R, with the detector providing T's mask."""

    vae1: VAE
    mapping: Mapping
    vae2: VAE
    scratch: ScratchUNet
    card: dict[str, Any]

    @property
    def stride(self) -> int:
        return self.vae1.cfg.stride

    def to(self, device) -> Bundle:
        """Move to ``device``, weights channels-last: oneDNN's convolutions run ~12 % faster on
        this CPU in that layout (bench/restore_speed.py), with outputs equal to ±1 grey level."""
        for m in (self.vae1, self.mapping, self.vae2, self.scratch):
            m.to(device, memory_format=torch.channels_last)
        return self


def _keep(key: str, parts: tuple[str, ...] | None) -> bool:
    return parts is None or key.split(".", 1)[0] in parts


def make_bundle(name: str, vae1: str, vae2: str, mapping: str, scratch: str, extra_card: dict | None = None) -> Path:
    """Combine four trained checkpoints (names or paths) into one bundle in the model store."""
    tensors: dict[str, torch.Tensor] = {}
    cards = {}
    for part, ref in (("vae1", vae1), ("vae2", vae2), ("mapping", mapping), ("scratch", scratch)):
        model, keep = PARTS[part]
        t, card = store.load(ref, model, f"--{part}")
        for k, v in checkpoint.prefixed(t, "model").items():
            if _keep(k, keep):
                tensors[f"{part}.{k}"] = v
        cards[part] = {k: card.get(k) for k in ("name", "model", "config", "stage", "datasets", "steps", "losses", "saved")}
        # a fine-tuned part names what it started from (its steps count from there)
        cards[part]["upstream"] = {k: Path(v).stem for k, v in (card.get("upstream") or {}).items()}
    c1, c2, cm = cards["vae1"]["config"], cards["vae2"]["config"], cards["mapping"]["config"]
    if c1["latent"] != c2["latent"] or c1["n_down"] != c2["n_down"] or cm["latent"] != c1["latent"]:
        raise DaguerreError("vae1, vae2 and mapping disagree on latent channels or stride")
    card = {"model": "bundle", "stage": "bundle", "parts": cards, **(extra_card or {})}
    return store.register(name, tensors, card)


def load_bundle(ref: str | Path, device: str | torch.device = "cpu") -> Bundle:
    """Load a bundle by name or path (a corrupt or foreign file is a clear error)."""
    tensors, card = checkpoint.load(store.resolve(ref))
    if card.get("model") != "bundle":
        raise DaguerreError(f"{ref} is a {card.get('model')!r} checkpoint, not a restoration bundle")
    parts = card["parts"]
    vae1 = create_model("vae", parts["vae1"]["config"])
    vae2 = create_model("vae", parts["vae2"]["config"])
    mapping = create_model("mapping", parts["mapping"]["config"])
    scratch = create_model("scratch_unet", parts["scratch"]["config"])
    for sub in ("encoder", "to_stats"):
        checkpoint.load_module(getattr(vae1, sub), tensors, f"vae1.{sub}", str(ref))
    checkpoint.load_module(vae2.decoder, tensors, "vae2.decoder", str(ref))
    checkpoint.load_module(mapping, tensors, "mapping", str(ref))
    checkpoint.load_module(scratch, tensors, "scratch", str(ref))
    for m in (vae1, vae2, mapping, scratch):
        m.eval().requires_grad_(False)
    return Bundle(vae1, mapping, vae2, scratch, card).to(device)


def calibrate_threshold(name: str, dataset: str, n: int = 200, on_sample=None) -> dict[str, Any]:
    """Pick the detector threshold that maximises pooled pixel F1 on a validation dataset, store it in the bundle.

    Use a dataset made from training photographs (never the test set): the choice is part of training.
    """
    import numpy as np

    from pipelines import open_dataset

    from .metrics import detection, scores
    from .restore import detect

    path = store.resolve(name)
    tensors, card = checkpoint.load(path)
    b = load_bundle(path)
    ds = open_dataset(dataset)
    if "mask" not in ds.fields:
        raise DaguerreError(f"{dataset} has no masks to calibrate against")
    grid = np.round(np.r_[np.arange(0.1, 0.91, 0.05), 0.925, 0.95, 0.965, 0.98, 0.99], 3)  # balanced CE over-predicts: fine at the top
    counts = np.zeros((len(grid), 3), np.int64)
    for i in range(min(n, len(ds))):
        s = ds[i]
        prob = detect(b, s["degraded"])
        for k, th in enumerate(grid):
            d = detection(prob > th, s["mask"])
            counts[k] += (d["tp"], d["fp"], d["fn"])
        if on_sample:
            on_sample()
    f1 = [scores(*c)["f1"] for c in counts]
    best = int(np.nanargmax(f1))
    card["parts"]["scratch"]["config"]["threshold"] = float(grid[best])
    card["calibration"] = {"dataset": dataset, "identity": ds.attrs.get("identity"), "samples": min(n, len(ds)),
                           "thresholds": grid.tolist(), "f1": [round(float(x), 4) for x in f1], "chosen": float(grid[best])}  # fmt: skip
    checkpoint.save(path, tensors, card)
    from .restore import _cached_bundle

    _cached_bundle.cache_clear()
    return card["calibration"]
