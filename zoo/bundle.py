"""A restoration bundle: VAE1's encoder, the mapping, VAE2's decoder and the scratch detector, under one name."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from degrade.errors import DaguerreError

from . import checkpoint, store
from .anchor import GRID as ANCHOR_GRID
from .anchor import AnchorConfig
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

    @property
    def anchor(self) -> AnchorConfig | None:
        """The calibrated tone anchoring applied after G_Y (None: the bundle has none)."""
        return AnchorConfig.from_card(self.card.get("anchor"))

    def to(self, device, channels_last: bool = True) -> Bundle:
        """Move to ``device``; weights channels-last by default: oneDNN's convolutions run 3–21 %
        faster on this CPU in that layout (bench/restore_speed.py), outputs equal to ±1 grey level."""
        layout = torch.channels_last if channels_last else torch.contiguous_format
        for m in (self.vae1, self.mapping, self.vae2, self.scratch):
            m.to(device, memory_format=layout)
        return self


def _keep(key: str, parts: tuple[str, ...] | None) -> bool:
    return parts is None or key.split(".", 1)[0] in parts


def _same_model(recorded: str, given: Path, sha256: str | None = None) -> bool:
    """The file the mapping was trained with, by content where its card pinned it (a VAE retrained
    under the same name has another latent space), else by name or identical bytes."""
    if sha256:
        return store.file_sha256(given) == sha256
    if Path(recorded).stem == given.stem:
        return True
    try:  # a path from a card: only a regular file is read (not /dev/zero)
        return Path(recorded).is_file() and Path(recorded).read_bytes() == given.read_bytes()
    except OSError:
        return False


def _part_card(card: dict) -> dict:
    """What a bundle's card keeps of a part's card; a fine-tuned part names what it started from."""
    kept = {k: card.get(k) for k in ("name", "model", "config", "stage", "datasets", "steps", "losses", "saved")}
    pinned = {"upstream_sha256": card["upstream_sha256"]} if isinstance(card.get("upstream_sha256"), dict) else {}
    return {**kept, "upstream": {k: Path(v).stem for k, v in (card.get("upstream") or {}).items()}, **pinned}


def _load_part(part: str, ref: str) -> tuple[dict[str, torch.Tensor], dict, dict]:
    """A part's tensors under the bundle's ``part.`` prefix, its bundle card and its own card."""
    model, keep = PARTS[part]
    t, card = store.load(ref, model, f"--{part}", part)
    checkpoint.check_finite(t, f"--{part} {ref}: weights")
    kept = _part_card(card)
    if part in ("vae1", "vae2"):  # what a mapping trained on this file pinned: checked when a mapping joins later
        kept["sha256"] = store.file_sha256(store.resolve(ref))
    return {f"{part}.{k}": v for k, v in checkpoint.prefixed(t, "model").items() if _keep(k, keep)}, kept, card


def _check_bundle_name(name: str) -> None:
    """Never overwrite a store model that is not a bundle."""
    try:
        existing = checkpoint.load(store.models_dir() / name)[1].get("model")
    except DaguerreError:
        existing = None
    if existing not in (None, "bundle"):
        raise DaguerreError(f"{name} is a {existing!r} checkpoint in the store; give the bundle another name")


def make_bundle(name: str, vae1: str, vae2: str, mapping: str, scratch: str, extra_card: dict | None = None,
                replace: bool = False) -> Path:  # fmt: skip
    """Combine four trained checkpoints (names or paths) into one bundle in the model store."""
    tensors: dict[str, torch.Tensor] = {}
    cards = {}
    for part, ref in (("vae1", vae1), ("vae2", vae2), ("mapping", mapping), ("scratch", scratch)):
        t, cards[part], own = _load_part(part, ref)
        tensors.update(t)
        if part == "mapping":
            trained_on = own.get("upstream") or {}  # the VAE files it was trained with, as paths
            pinned = own.get("upstream_sha256") if isinstance(own.get("upstream_sha256"), dict) else {}
    for part, ref in (("vae1", vae1), ("vae2", vae2)):
        given = store.resolve(ref)
        if trained_on.get(part) and not _same_model(trained_on[part], given, pinned.get(part)):
            was = Path(trained_on[part]).stem
            changed = " (that name now holds other weights)" if was == given.stem else ""
            raise DaguerreError(f"the mapping was trained on the latents of {part} {was}, not {given.stem}{changed} (--{part})")
    c1, c2, cm = cards["vae1"]["config"], cards["vae2"]["config"], cards["mapping"]["config"]
    if c1["latent"] != c2["latent"] or c1["n_down"] != c2["n_down"] or cm["latent"] != c1["latent"]:
        raise DaguerreError("vae1, vae2 and mapping disagree on latent channels or stride")
    _check_bundle_name(name)
    card = {"model": "bundle", "stage": "bundle", "parts": cards, **(extra_card or {})}
    return store.register(name, tensors, card, replace)


def _not_a_bundle(where: str, card: dict) -> DaguerreError:
    """The error for a checkpoint that holds another model, a run's training state or no model name, not a bundle."""
    if card.get("kind") == "training-state":
        return DaguerreError(f"{where} is a run's training state, not a restoration bundle: give a bundle (daguerre zoo ls)")
    what = f"a {card['model']!r} checkpoint" if card.get("model") else "a checkpoint that names no model"
    return DaguerreError(f"{where} is {what}, not a restoration bundle")


def replace_parts(name: str, base: str, replace: bool = False, **refs: str | None) -> Path:
    """A copy of bundle ``base`` with its detector and/or mapping replaced (``scratch=``, ``mapping=``).

    A new detector trained elsewhere (a GPU, say) joins the shipped networks without their part
    checkpoints. Its calibration and tone anchoring were for the old parts: the copy has none until
    ``zoo calibrate``. The VAEs cannot be swapped alone: the mapping is tied to their latent spaces.
    """
    refs = {k: v for k, v in refs.items() if v}
    if not refs or set(refs) - {"mapping", "scratch"}:
        raise DaguerreError("--from replaces --scratch and/or --mapping (the VAEs only with a mapping trained on them: "
                            "bundle the four parts instead)")  # fmt: skip
    tensors, card = checkpoint.load(store.resolve(base))
    if card.get("model") != "bundle":
        raise _not_a_bundle(f"--from {base}", card)
    for part, ref in refs.items():
        t, card["parts"][part], _ = _load_part(part, ref)
        if part == "mapping":  # by content where both cards pinned it (bundles made since), else by name
            pinned = card["parts"]["mapping"].get("upstream_sha256") or {}
            for vae, stem in card["parts"]["mapping"]["upstream"].items():
                if vae not in ("vae1", "vae2"):
                    continue
                have = card["parts"][vae].get("sha256")
                if not (pinned[vae] == have if pinned.get(vae) and have else stem == card["parts"][vae]["name"]):
                    other = " (the same name, other weights)" if stem == card["parts"][vae]["name"] else ""
                    raise DaguerreError(f"the mapping was trained on the latents of {vae} {stem}, "
                                        f"not {card['parts'][vae]['name']}{other} (the {vae} of {base})")  # fmt: skip
            if card["parts"]["mapping"]["config"]["latent"] != card["parts"]["vae1"]["config"]["latent"]:
                raise DaguerreError("--mapping and the bundle's VAEs disagree on latent channels")
        tensors = {**{k: v for k, v in tensors.items() if not k.startswith(f"{part}.")}, **t}
    for stale in ("calibration", "anchor", "metrics"):
        card.pop(stale, None)
    if "scratch" in refs and isinstance(card.get("provenance"), dict):
        card["provenance"].pop("detector", None)  # it told how the old detector was trained
    card["name"] = name
    _check_bundle_name(name)
    return store.register(name, tensors, card, replace)


def _networks(parts: dict) -> tuple[torch.nn.Module, ...]:
    """The four networks a bundle card's parts describe (VAE1, VAE2, mapping, detector), without weights."""
    return (create_model("vae", parts["vae1"]["config"], seed=None), create_model("vae", parts["vae2"]["config"], seed=None),
            create_model("mapping", parts["mapping"]["config"], seed=None),
            create_model("scratch_unet", parts["scratch"]["config"], seed=None))  # fmt: skip


def _weighted(nets: tuple[torch.nn.Module, ...]) -> list[tuple[torch.nn.Module, str]]:
    """(module, tensor prefix) of each part of ``nets`` that a bundle holds weights for."""
    vae1, vae2, mapping, scratch = nets
    return [(vae1.encoder, "vae1.encoder"), (vae1.to_stats, "vae1.to_stats"), (vae2.decoder, "vae2.decoder"),
            (mapping, "mapping"), (scratch, "scratch")]  # fmt: skip


def load_bundle(ref: str | Path, device: str | torch.device = "cpu") -> Bundle:
    """Load a bundle by name or path (a corrupt or foreign file is a clear error)."""
    tensors, card = checkpoint.load(store.resolve(ref, "bundle"))
    if card.get("model") != "bundle":
        raise _not_a_bundle(str(ref), card)
    parts = card.get("parts")
    if not isinstance(parts, dict) or any(not isinstance(parts.get(p), dict) or not isinstance(parts[p].get("config"), dict) for p in PARTS):
        raise DaguerreError(f"{ref}: the bundle card does not describe its parts ({', '.join(PARTS)})")
    AnchorConfig.from_card(card.get("anchor"))  # a bad card fails here, not on the first photo
    with torch.device("meta"):  # shapes first, in no memory: a crafted config (width 4096, …) allocated terabytes
        for module, prefix in _weighted(_networks(parts)):
            checkpoint.check_fit(module, tensors, prefix, str(ref))
    vae1, vae2, mapping, scratch = nets = _networks(parts)
    for module, prefix in _weighted(nets):
        checkpoint.load_module(module, tensors, prefix, str(ref))
    for m in nets:
        m.eval().requires_grad_(False)
    return Bundle(vae1, mapping, vae2, scratch, card).to(device)


F1_GRID = (*[round(0.1 + 0.05 * i, 3) for i in range(17)], 0.925, 0.95, 0.965, 0.98, 0.99)
"""Thresholds tried for pixel F1 (balanced CE over-predicts: fine at the top)."""
SEED_GRID = (0.9, 0.95, 0.98, 0.99, 0.995, 0.998, 0.999)
"""Hysteresis seed thresholds tried for restoration PSNR (each costs a restore per sample)."""
OBJECTIVES = ("restore", "f1")


def _choose_seed(per_dataset: dict[str, np.ndarray]) -> tuple[int, str, dict[str, dict]]:
    """Index of the chosen candidate from per-sample PSNRs (samples × candidates, most conservative
    first) per dataset, the rule used, and the per-dataset table. Used for seeds and for anchoring.

    One dataset: the first candidate within one standard error (paired differences) of the best mean.
    Several (say, one per damage recipe): the seed whose worst shortfall from a dataset's own best
    mean is smallest, so that no kind of damage pays much for another's optimum.
    """
    table, shortfall = {}, []
    for name, x in per_dataset.items():
        x = np.minimum(x, 100.0)  # an exact restoration (inf) must not swamp the mean
        mean = x.mean(axis=0)
        top = int(np.argmax(mean))
        se = (x[:, top : top + 1] - x).std(axis=0, ddof=1) / np.sqrt(len(x)) if len(x) > 1 else np.zeros(x.shape[1])
        table[name] = {"samples": len(x), "psnr": [round(float(v), 3) for v in mean], "psnr_se_vs_best": [round(float(v), 3) for v in se]}
        shortfall.append((mean[top] - mean, se))
    if len(per_dataset) == 1:
        gap, se = shortfall[0]
        return int(np.flatnonzero(gap <= se)[0]), "one standard error", table
    return int(np.argmin(np.max([gap for gap, _ in shortfall], axis=0))), "minimax shortfall", table


def _calibrate_anchor(restored: dict[str, list]) -> tuple[dict | None, dict]:
    """Choose the tone anchoring (or none) from ``(sample, (restoration, mask))`` pairs per dataset, by the seeds' rule."""
    from .anchor import anchor
    from .metrics import psnr

    per_dataset = {}
    for d, pairs in restored.items():
        x = per_dataset[d] = np.zeros((len(pairs), len(ANCHOR_GRID)))
        for i, (s, (out, pred)) in enumerate(pairs):
            mask = pred.view(np.uint8)
            for k, cfg in enumerate(ANCHOR_GRID):
                x[i, k] = psnr(out if cfg is None else anchor(s["degraded"], out, mask, cfg), s["clean"])
    best, rule, table = _choose_seed(per_dataset)
    grid = [None if c is None else c.to_dict() for c in ANCHOR_GRID]
    return grid[best], {"grid": grid, "chosen": grid[best], "rule": rule, "restoration": table}


def _identity(path: Path) -> tuple[int, int, int, int] | None:
    """Which file ``path`` is now (device, inode, size, mtime; each save writes a new one), or None when it is gone."""
    try:
        s = os.stat(path)
    except FileNotFoundError:
        return None
    return s.st_dev, s.st_ino, s.st_size, s.st_mtime_ns


def calibrate_threshold(
    name: str, datasets: str | list[str], n: int = 200, on_sample=None, objective: str = "restore", device: str = "cpu"
) -> dict[str, Any]:
    """Calibrate the detector's mask on validation datasets and store it in the bundle (in place;
    a shipped bundle is written to the model store under its name, which then takes precedence).

    ``f1``: the threshold with the best pooled pixel F1. ``restore`` (default): that threshold sets
    how far a defect reaches; the hysteresis seed threshold (or none) then decides which regions
    count, by the PSNR of the whole restoration (see ``_choose_seed``): false alarms cost the
    mapping more than faint misses. Then, on the chosen mask's restorations, the tone anchoring
    (:mod:`zoo.anchor`, or none) by the same rule; ``f1`` leaves the bundle without anchoring.
    Use datasets made from training photographs, ``n`` samples each; the networks run on ``device``.
    """
    from pipelines import open_dataset

    from .metrics import detection, psnr, scores
    from .restore import detect, hysteresis, resolve_device, translate

    if objective not in OBJECTIVES:
        raise DaguerreError(f"unknown calibration objective {objective!r} (use {' or '.join(OBJECTIVES)})")
    names = list(dict.fromkeys([datasets] if isinstance(datasets, str) else datasets))  # a repeated -d counted once
    if not names:
        raise DaguerreError("calibration needs at least one validation dataset")
    dev = resolve_device(device)
    path = store.resolve(name)
    loaded = _identity(path)
    tensors, card = checkpoint.load(path)
    b = load_bundle(path, dev)
    sets = {d: open_dataset(d) for d in names}
    for d, ds in sets.items():
        if "mask" not in ds.fields or (objective == "restore" and "clean" not in ds.fields):
            raise DaguerreError(f"{d} has no masks and clean images to calibrate against")
    grid = np.array(F1_GRID)
    counts = np.zeros((len(grid), 3), np.int64)
    kept: dict[str, list] = {d: [] for d in names}  # (sample, detector output) for the restore objective
    for d, ds in sets.items():
        for i in range(min(n, len(ds))):
            s = ds[i]
            prob = detect(b, s["degraded"], device=dev)
            for k, th in enumerate(grid):
                r = detection(prob > th, s["mask"])
                counts[k] += (r["tp"], r["fp"], r["fn"])
            if objective == "restore":
                kept[d].append((s, prob))
            if on_sample:
                on_sample()
    if counts[0][0] + counts[0][2] == 0:  # tp + fn: no defect pixel in any mask
        raise DaguerreError(f"{', '.join(names)}: no defect pixel in the masks of the first {n} samples; calibrate on "
                            f"damage with structured defects (scratches, dust, tears); nothing was changed")  # fmt: skip
    f1 = [scores(*c)["f1"] for c in counts]
    low = float(grid[int(np.nanargmax(f1))])
    cal = {"datasets": {d: ds.attrs.get("identity") for d, ds in sets.items()}, "samples": sum(min(n, len(ds)) for ds in sets.values()),
           "objective": objective, "thresholds": grid.tolist(), "f1": [round(float(x), 4) for x in f1], "chosen": low, "seed": 0.0}  # fmt: skip
    if objective == "restore":
        seeds = [0.0] + [h for h in SEED_GRID if h > low]
        seed_counts = np.zeros((len(seeds), 3), np.int64)
        per_dataset = {}
        restorations: dict[str, list] = {d: [] for d in names}  # (sample, [(restored, mask) per seed])
        for d in names:
            x = per_dataset[d] = np.zeros((len(kept[d]), len(seeds)))
            for i, (s, prob) in enumerate(kept[d]):
                per_seed = []
                for k, h in enumerate(seeds):
                    pred = hysteresis(prob, low, h)
                    if not per_seed or not np.array_equal(pred, per_seed[-1][1]):  # same mask: same restoration
                        r = detection(pred, s["mask"])
                        restored = translate(b, s["degraded"], pred.view(np.uint8), device=dev)
                        score = psnr(restored, s["clean"])
                    seed_counts[k] += (r["tp"], r["fp"], r["fn"])
                    x[i, k] = score
                    per_seed.append((restored, pred))
                restorations[d].append((s, per_seed))
                if on_sample:
                    on_sample()
        best, rule, table = _choose_seed(per_dataset)
        cal.update(seeds=seeds, seed=seeds[best], rule=rule, restoration=table,
                   seed_f1=[round(float(scores(*c)["f1"]), 4) for c in seed_counts])  # fmt: skip
        card["anchor"], cal["anchor"] = _calibrate_anchor({d: [(s, r[best]) for s, r in pairs] for d, pairs in restorations.items()})
    else:
        card["anchor"] = None  # nothing restored to calibrate it on
    card["parts"]["scratch"]["config"]["threshold"] = low
    card["parts"]["scratch"]["config"]["seed_threshold"] = cal["seed"]
    card["calibration"] = cal
    shipped = path.resolve().parent == store.SHIPPED.resolve()
    if shipped:  # never rewrite the installed package's weights
        path = store.models_dir() / path.name
    if path.resolve().parent != store.models_dir().resolve():  # a bundle file outside the store: the user's own
        cal["written"] = str(checkpoint.save(path, tensors, card))
        return card["calibration"]
    with store.store_lock():  # as register and `zoo rm` do: a removal or replacement while this ran is not undone
        now = _identity(path)
        if not shipped and now is None:
            raise DaguerreError(f"{path.stem} was removed from the model store while it was calibrated; nothing written")
        if now != (None if shipped else loaded):
            raise DaguerreError(f"{path.stem} was registered anew in the model store while it was calibrated; nothing written "
                                f"(calibrate it again)")  # fmt: skip
        cal["written"] = str(checkpoint.save(path, tensors, card))
    return card["calibration"]
