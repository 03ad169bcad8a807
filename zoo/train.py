"""Training of every stage, in one readable loop (nanoGPT-style).

    daguerre train vae1 --real R --synthetic X      # VAE1 on R ∪ X + latent discriminator
    daguerre train vae2 --clean Y                   # VAE2 on clean photos
    daguerre train mapping --pairs XY --vae1 A --vae2 B
    daguerre train scratch --pairs XY               # defect detector

A run lives in ``--out``: ``last.safetensors`` (models, discriminators, optimizers, step),
``losses.csv``, ``losses.png``, ``samples/step-NNNNNN.png``, ``config.yaml``. Killed and run
again with the same command it resumes from the last checkpoint. Batches are a function of
(seed, step) only, so a resumed run sees exactly the batches an uninterrupted one would. At the
end the deployable weights are registered in the model store with their card.
"""

from __future__ import annotations

import contextlib
import collections
import csv
import dataclasses
import json
import math
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from degrade.errors import DaguerreError
from degrade.filekind import NotRegularFile, read_regular
from degrade.io import atomic_write_bytes, is_write_temporary
from degrade.runtime import usable_cores

from . import checkpoint, losses, store
from .data import ShardDataset, passthrough
from .nn import from_signed, to_signed
from .registry import create_model, get_spec, make_config

STAGES = ("vae1", "vae2", "mapping", "scratch")
PRECISIONS = ("fp32", "bf16")
STAGE_DATASETS = {"vae1": ("real", "synthetic"), "vae2": ("clean",), "mapping": ("pairs",), "scratch": ("pairs",)}
# (models key, registry model name) of the weights each stage registers
DEPLOYED = {"vae1": ("vae", "vae"), "vae2": ("vae", "vae"), "mapping": ("mapping", "mapping"), "scratch": ("scratch", "scratch_unet")}


MAX_SEED = 2**53 - 1
"""Seeds are kept exact by every JSON reader of the card up to here (and the initialisation's ``seed·1000`` fits 64 bits)."""
LOSS_LIMIT = 1e6
"""A logged loss term (any but the weighted ``total``) beyond this means the run diverged, finite or not. The terms are
means over images in [-1, 1] and latents of a few units (the decoders end in tanh, the image discriminators are spectrally
normalised): none is above 5 in the shipped models' logs and cards, nor above 25 in tiny runs at 50 times the default
--lr, while runs that diverge reach 1e13 to 1e27 within ten steps, often without overflowing float32 to infinity."""
LOSS_WEIGHTS = ("kl_weight", "l1_weight", "gan_weight", "fm_weight", "latent_gan_weight", "map_l1_weight", "map_image_l1_weight")


@dataclass
class TrainConfig:
    """Every setting of a run; recorded in the run folder and the checkpoint card."""

    stage: str
    steps: int = 1000
    batch_size: int = 8
    size: int = 128  # random crop side taken from the dataset tiles
    lr: float = 2e-4
    decay_start: int = 0  # with decay_steps > 0: lr falls linearly to 0 over decay_steps steps from here
    decay_steps: int = 0  # (the official schedule: niter steps at lr, then niter_decay steps decaying)
    beta1: float = 0.5
    beta2: float = 0.999
    device: str = "auto"
    precision: str = "fp32"  # bf16: forward passes and losses under bfloat16 autocast (weights, optimiser and checkpoints stay fp32)
    workers: int = 2
    seed: int = 0
    out: str = ""
    name: str = ""  # model-store name; default: the out folder's name
    preset: str = "small"  # model preset
    # datasets and upstream models
    real: str = ""
    synthetic: str = ""
    clean: str = ""
    pairs: str = ""
    vae1: str = ""
    vae2: str = ""
    init: str = ""  # fine-tune: start the trained model from this checkpoint (store name or path)
    # loss weights (official defaults where they exist)
    kl_weight: float = 0.01
    l1_weight: float = 10.0  # α of the VAE reconstruction term
    gan_weight: float = 1.0
    fm_weight: float = 10.0  # λ2, feature matching
    latent_gan_weight: float = 1.0
    map_l1_weight: float = 60.0  # λ1, latent L1 of the mapping
    map_image_l1_weight: float = 0.0  # L1 of the decoded mapping output against y (not in the official losses)
    # bookkeeping
    log_every: int = 10
    sample_every: int = 200
    ckpt_every: int = 200
    model_overrides: dict[str, Any] = field(default_factory=dict)

    def check(self) -> None:
        if self.stage not in STAGES:
            raise DaguerreError(f"unknown stage {self.stage!r} (use {', '.join(STAGES)})")
        for f in dataclasses.fields(self):  # YAML can hold anything: each setting has its default's type
            if f.default is not dataclasses.MISSING:
                want = type(f.default)
            elif f.default_factory is not dataclasses.MISSING:
                want = type(f.default_factory())
            else:
                continue
            v = getattr(self, f.name)
            if want is float:
                ok = isinstance(v, (int, float)) and not isinstance(v, bool)
            else:
                ok = isinstance(v, want) and not (want is int and isinstance(v, bool))
            if not ok:
                raise DaguerreError(f"setting {f.name}: expected {want.__name__}, got {v!r}")
        if not math.isfinite(self.lr) or abs(self.lr) > torch.finfo(torch.float32).max:  # Adam steps in float32
            raise DaguerreError(f"--lr must be finite, got {self.lr}")
        if self.seed > MAX_SEED:
            raise DaguerreError(f"--seed must be at most {MAX_SEED}, got {self.seed}")
        for f in LOSS_WEIGHTS:  # a NaN weight read as a divergence ("lower --lr"), a negative one trains to maximise its loss
            if not (math.isfinite(getattr(self, f)) and getattr(self, f) >= 0):
                raise DaguerreError(f"setting {f} must be a finite number of at least 0, got {getattr(self, f)}")
        for f in ("beta1", "beta2"):
            if not 0 <= getattr(self, f) < 1:
                raise DaguerreError(f"--{f} must be in [0, 1), got {getattr(self, f)}")
        if self.lr / (1 - self.beta1) > torch.finfo(torch.float32).max:  # Adam's first step is lr / (1 - beta1), in float32
            raise DaguerreError(f"--lr {self.lr} is too large for Adam with --beta1 {self.beta1} (its first step overflows float32)")
        for f, lo in (("seed", 0), ("log_every", 1), ("sample_every", 1), ("ckpt_every", 1)):
            if getattr(self, f) < lo:
                raise DaguerreError(f"--{f.replace('_', '-')} must be at least {lo}, got {getattr(self, f)}")
        from .registry import list_models

        known = {s.name for s in list_models()}
        for k, v in self.model_overrides.items():
            if k not in known or not isinstance(v, dict):
                raise DaguerreError(f"model_overrides.{k}: expected settings of one of {', '.join(sorted(known))}")
        for f in required_inputs(self.stage):
            if not getattr(self, f):
                raise DaguerreError(f"train {self.stage} needs --{f}")
        for f, lo in (("steps", 1), ("batch_size", 1), ("size", 16), ("workers", 0), ("decay_start", 0), ("decay_steps", 0)):
            if getattr(self, f) < lo:
                raise DaguerreError(f"--{f.replace('_', '-')} must be at least {lo}, got {getattr(self, f)}")
        if self.stage == "vae1" and self.batch_size < 2:
            raise DaguerreError("train vae1 needs --batch-size of at least 2 (half real, half synthetic)")
        if not self.lr > 0:
            raise DaguerreError(f"--lr must be positive, got {self.lr}")
        if self.precision not in PRECISIONS:
            raise DaguerreError(f"--precision must be {' or '.join(PRECISIONS)}, got {self.precision!r}")
        if self.stage in ("vae1", "vae2"):  # the mapping's VAEs are trained files: build_run checks against theirs
            _check_size(self.size, make_config("vae", self.preset, **self.model_overrides.get("vae", {})).stride)

    def lr_at(self, step: int) -> float:
        """Learning rate of optimisation step ``step`` (0-based)."""
        if self.decay_steps <= 0 or step < self.decay_start:
            return self.lr
        return self.lr * max(0.0, 1.0 - (step - self.decay_start) / self.decay_steps)

    def identity(self) -> dict[str, Any]:
        """What must match for a run folder to be resumed (not steps, workers, device or logging)."""
        skip = {"steps", "workers", "device", "precision", "log_every", "sample_every", "ckpt_every", "out", "name"}
        return {k: v for k, v in dataclasses.asdict(self).items() if k not in skip}


def required_inputs(stage: str) -> tuple[str, ...]:
    """The settings naming the datasets and models that train ``stage`` cannot do without."""
    return STAGE_DATASETS[stage] + (("vae1", "vae2") if stage == "mapping" else ())


def _check_size(size: int, stride: int) -> None:
    """A crop side that a VAE of this stride encodes and decodes to the same size."""
    if size % stride:
        raise DaguerreError(f"--size must be a multiple of the VAE's stride ({stride}), got {size}")
    if size // stride < 2:  # a 1-pixel latent cannot be reflect-padded
        raise DaguerreError(f"--size must be at least twice the VAE's stride ({stride}), got {size}")


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise DaguerreError("--device cuda: no CUDA device is available here")
    if name not in ("cpu", "cuda"):
        raise DaguerreError(f"--device must be auto, cpu or cuda, got {name!r}")
    return torch.device(name)


def step_generator(seed: int, step: int, stream: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence(int(seed), spawn_key=(int(step), int(stream))))


# -- data -----------------------------------------------------------------------------------------
class StepSampler(torch.utils.data.Sampler):
    """Batch indices for steps ``start..stop-1``, each a function of (seed, step, stream) only."""

    def __init__(self, n: int, batch: int, seed: int, stream: int, start: int, stop: int) -> None:
        self.n, self.batch, self.seed, self.stream, self.start, self.stop = n, batch, seed, stream, start, stop

    def __iter__(self) -> Iterator[list[int]]:
        for step in range(self.start, self.stop):
            yield step_generator(self.seed, step, self.stream).integers(self.n, size=self.batch).tolist()

    def __len__(self) -> int:
        return self.stop - self.start


def loader_workers(asked: int, batches: int) -> int:
    """Loader processes for ``--workers``: no more than the batches left to load nor than this machine's cores
    (decoding is CPU work); ``--workers 1000000`` started a process per worker at once."""
    return max(0, min(asked, batches, usable_cores()))


def _end_quietly_on_sigterm(_: int) -> None:
    """In a loader process: SIGTERM ends it with status 0, whoever sent it. torch's workers exit so only on their
    parent's; one sent to the whole group (``timeout``, a service manager) killed them, and the training process,
    stopping on its own SIGTERM, failed with an internal 'DataLoader worker is killed by signal' instead.
    A batch on its way to a training process that has just stopped is dropped without a word (below)."""
    import signal
    import sys

    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    sys.excepthook = _quiet_when_the_reader_is_gone(sys.excepthook)


def _quiet_when_the_reader_is_gone(hook):
    """``hook``, less the broken pipes of a consumer that is gone: multiprocessing's resource sharer thread, handing a
    batch's file descriptors to a training process that stopped an instant before, printed their traceback after
    'terminated'."""

    def excepthook(kind, value, tb):
        if not issubclass(kind, (BrokenPipeError, ConnectionResetError)):
            hook(kind, value, tb)

    return excepthook


class Batches:
    """Training batches of a dataset: random crops of ``size`` and flips on top, as float tensors.

    Images come as B×3×S×S in [-1, 1] and masks as B×1×S×S in {0, 1}, on ``device``.
    """

    def __init__(self, ref: str, fields: tuple[str, ...], cfg: TrainConfig, batch: int, stream: int, start: int, device) -> None:
        self.ds = ShardDataset(ref, fields)
        if batch > len(self.ds):  # a batch beyond the dataset only repeats samples, at any memory cost
            raise DaguerreError(f"a batch of {batch} samples from {ref}, which holds {len(self.ds)}: lower --batch-size")
        self.fields, self.cfg, self.stream, self.device = fields, cfg, stream, device
        tile = int(self.ds.ds.attrs["size"])
        if cfg.size > tile:
            raise DaguerreError(f"--size {cfg.size} is larger than the tiles of {ref} ({tile} px)")
        loader = torch.utils.data.DataLoader(
            self.ds,
            batch_sampler=StepSampler(len(self.ds), batch, cfg.seed, stream, start, cfg.steps),
            collate_fn=passthrough,
            num_workers=loader_workers(cfg.workers, cfg.steps - start),
            persistent_workers=False,
            worker_init_fn=_end_quietly_on_sigterm,
            generator=torch.Generator(),  # its workers' base seed (unused), not a draw from torch's global generator
        )
        self.it = iter(loader)
        self.step = start
        self.wait = 0.0  # seconds spent waiting for and preparing batches (data-loading share)

    def __next__(self) -> dict[str, torch.Tensor]:
        t = time.perf_counter()
        raw = next(self.it)
        rng = step_generator(self.cfg.seed, self.step, 100 + self.stream)
        self.step += 1
        out = augment(raw, self.fields, self.cfg.size, rng, self.device)
        self.wait += time.perf_counter() - t
        return out


def augment(raw: dict[str, torch.Tensor], fields, size: int, rng: np.random.Generator, device) -> dict[str, torch.Tensor]:
    """Same random crop and flip for every field of a sample; uint8 NHWC → float NCHW."""
    first = raw[fields[0]]
    b, tile = first.shape[0], first.shape[1]
    ys = rng.integers(0, tile - size + 1, b)
    xs = rng.integers(0, tile - size + 1, b)
    flips = rng.random(b) < 0.5
    out = {}
    for f in fields:
        t = raw[f]
        crops = []
        for i in range(b):
            c = t[i, ys[i] : ys[i] + size, xs[i] : xs[i] + size]
            crops.append(c.flip(1) if flips[i] else c)
        out[f] = to_model(f, torch.stack(crops).to(device))
    return out


def to_model(field: str, x: torch.Tensor) -> torch.Tensor:
    """A batch of one dataset field as the networks take it: masks 0/1 B×1×H×W, images [-1, 1] B×3×H×W."""
    return (x > 0).float().unsqueeze(1) if field == "mask" else to_signed(x)


def to_image(x: torch.Tensor) -> np.ndarray:
    """B×3×H×W in [-1, 1] (or B×1×H×W in [0, 1]) to a list-like uint8 array for sheets."""
    if x.shape[1] == 1:
        return (x[:, 0].clamp(0, 1) * 255).round().byte().cpu().numpy()
    return from_signed(x).round().byte().cpu().numpy()


# -- the stages ---------------------------------------------------------------------------------
@dataclass
class Run:
    """Everything a stage trains, freezes and reads."""

    models: dict[str, torch.nn.Module]  # trained, saved and resumed
    frozen: dict[str, torch.nn.Module]
    optims: dict[str, torch.optim.Optimizer]
    batches: dict[str, Batches]
    step_fn: Callable[..., dict[str, float]]
    sample_fn: Callable[..., tuple[list, list]]
    amp: Callable[[], Any] = contextlib.nullcontext  # wraps each forward pass and its losses, never a backward


def _adam(cfg: TrainConfig, *mods: torch.nn.Module) -> torch.optim.Optimizer:
    params = [p for m in mods for p in m.parameters() if p.requires_grad]
    return torch.optim.Adam(params, lr=cfg.lr, betas=(cfg.beta1, cfg.beta2))


def _model(name: str, cfg: TrainConfig, seed_offset: int, device, **overrides):
    extra = {**cfg.model_overrides.get(name, {}), **overrides}
    return create_model(name, make_config(name, cfg.preset, **extra), seed=cfg.seed * 1000 + seed_offset).to(device)


def load_frozen(ref: str, expected: str, device, option: str = "", stage: str | None = None) -> torch.nn.Module:
    """A trained model from the store or a path, frozen in eval mode (trained as ``stage``, if given)."""
    tensors, card = store.load(ref, expected, option, stage)
    with torch.device("meta"):  # shapes first, in no memory: a crafted config allocated more than the file holds
        checkpoint.check_fit(create_model(expected, card["config"], seed=None), tensors, "model", str(ref))
    m = create_model(expected, card["config"], seed=None)
    checkpoint.load_module(m, tensors, "model", str(ref))
    m.eval().requires_grad_(False)
    return m.to(device)


def _vae_step(run: Run, cfg: TrainConfig, step: int, gen: torch.Generator) -> dict[str, float]:
    vae, D = run.models["vae"], run.models["D"]
    if cfg.stage == "vae2":
        x = next(run.batches["clean"])["clean"]
        n_real = 0
    else:
        r = next(run.batches["real"])["degraded"]
        s = next(run.batches["synthetic"])["degraded"]
        x, n_real = torch.cat([r, s]), r.shape[0]
    with run.amp():
        mu, logvar = vae.encode(x)
        xr = vae.decode(vae.sample(mu, logvar, gen))
        out = {"kl": losses.kl_divergence(mu, logvar), "l1": losses.l1(xr, x)}
        g_loss = cfg.kl_weight * out["kl"] + cfg.l1_weight * out["l1"]
        adversarial = cfg.gan_weight > 0 or cfg.fm_weight > 0  # weights 0: skip the image discriminator entirely
        if adversarial:
            d_fake, d_real = D(xr), D(x)
            out["gan"], out["fm"] = losses.lsgan_g(d_fake), losses.feature_matching(d_fake, d_real)
            g_loss = g_loss + cfg.gan_weight * out["gan"] + cfg.fm_weight * out["fm"]
        if n_real:
            # the encoder makes real-photo latents look synthetic to the latent discriminator (label 0)
            out["latent_gan"] = losses.lsgan_g(run.models["D_latent"](mu[:n_real]), target=0.0)
            g_loss = g_loss + cfg.latent_gan_weight * out["latent_gan"]
    run.optims["G"].zero_grad(set_to_none=True)
    g_loss.backward()
    run.optims["G"].step()
    with run.amp():
        d_loss = losses.lsgan_d(D(x), D(xr.detach())) if adversarial else torch.zeros(())
        if n_real:
            DL = run.models["D_latent"]
            mu_d = mu.detach()
            out["latent_d"] = losses.lsgan_d(DL(mu_d[:n_real]), DL(mu_d[n_real:]))  # real photos 1, synthetic 0
            d_loss = d_loss + out["latent_d"]
    if d_loss.requires_grad:
        run.optims["D"].zero_grad(set_to_none=True)
        d_loss.backward()
        run.optims["D"].step()
    out["d"] = d_loss
    out["total"] = g_loss
    return {k: float(v.detach()) if isinstance(v, torch.Tensor) else float(v) for k, v in out.items()}


def _vae_samples(run: Run, cfg: TrainConfig, batch: dict[str, torch.Tensor]):
    vae = run.models["vae"]
    x = batch["clean"] if "clean" in batch else batch["degraded"]
    with torch.no_grad():
        vae.eval()
        xr = vae(x)[0]
        vae.train()
    tiles, labels = [], []
    for a, b in zip(to_image(x[:6]), to_image(xr[:6])):
        tiles += [a, b]
        labels += ["input", "reconstruction"]
    return tiles, labels


def _mapping_step(run: Run, cfg: TrainConfig, step: int, gen: torch.Generator) -> dict[str, float]:
    b = next(run.batches["pairs"])
    T, D = run.models["mapping"], run.models.get("D")
    vae1, vae2 = run.frozen["vae1"], run.frozen["vae2"]
    with torch.no_grad(), run.amp():
        zx, zy = vae1.encode(b["degraded"])[0], vae2.encode(b["clean"])[0]
    with run.amp():
        zhat = T(zx, b["mask"])
        yhat = vae2.decode(zhat)
        out = {"latent_l1": losses.l1(zhat, zy), "image_l1": losses.l1(yhat, b["clean"])}
        g_loss = cfg.map_l1_weight * out["latent_l1"] + cfg.map_image_l1_weight * out["image_l1"]
        adversarial = D is not None
        if adversarial:
            d_fake, d_real = D(yhat), D(b["clean"])
            out["gan"], out["fm"] = losses.lsgan_g(d_fake), losses.feature_matching(d_fake, d_real)
            g_loss = g_loss + cfg.gan_weight * out["gan"] + cfg.fm_weight * out["fm"]
    run.optims["G"].zero_grad(set_to_none=True)
    g_loss.backward()
    run.optims["G"].step()
    d_loss = torch.zeros(())
    if adversarial:
        with run.amp():
            d_loss = losses.lsgan_d(D(b["clean"]), D(yhat.detach()))
        run.optims["D"].zero_grad(set_to_none=True)
        d_loss.backward()
        run.optims["D"].step()
    out["d"], out["total"] = d_loss, g_loss
    return {k: float(v.detach()) if isinstance(v, torch.Tensor) else float(v) for k, v in out.items()}


def _mapping_samples(run: Run, cfg: TrainConfig, b: dict[str, torch.Tensor]):
    T = run.models["mapping"]
    with torch.no_grad():
        T.eval()
        yhat = run.frozen["vae2"].decode(T(run.frozen["vae1"].encode(b["degraded"])[0], b["mask"]))
        T.train()
    tiles, labels = [], []
    for x, y, c in zip(to_image(b["degraded"][:4]), to_image(yhat[:4]), to_image(b["clean"][:4])):
        tiles += [x, y, c]
        labels += ["degraded", "restored", "clean"]
    return tiles, labels


def _scratch_step(run: Run, cfg: TrainConfig, step: int, gen: torch.Generator) -> dict[str, float]:
    b = next(run.batches["pairs"])
    U = run.models["scratch"]
    with run.amp():
        logits = U(b["degraded"])
        loss = losses.balanced_bce(logits.float(), b["mask"])
    run.optims["G"].zero_grad(set_to_none=True)
    loss.backward()
    run.optims["G"].step()
    with torch.no_grad():
        pred, truth = logits > 0, b["mask"] > 0
        counts = torch.stack([(pred & truth).sum(), (pred & ~truth).sum(), (~pred & truth).sum()])
        bce, (tp, fp, fn) = float(loss.detach()), counts.tolist()  # one device sync for the logs, not four
    return {"bce": bce, "f1": 2 * tp / max(1, 2 * tp + fp + fn), "total": bce}


def _scratch_samples(run: Run, cfg: TrainConfig, b: dict[str, torch.Tensor]):
    U = run.models["scratch"]
    with torch.no_grad():
        U.eval()
        p = torch.sigmoid(U(b["degraded"]))
        U.train()
    tiles, labels = [], []
    for x, pm, gt in zip(to_image(b["degraded"][:4]), to_image(p[:4]), to_image(b["mask"][:4])):
        tiles += [x, pm, gt]
        labels += ["degraded", "predicted", "ground truth"]
    return tiles, labels


def build_run(cfg: TrainConfig, start: int, device) -> Run:
    """Models, optimizers and data of a stage, from a fresh initialisation."""
    if cfg.stage in ("vae1", "vae2"):
        vae = _model("vae", cfg, 1, device)
        D = _model("patch_discriminator", cfg, 2, device)
        models = {"vae": vae, "D": D}
        d_params = [D]
        if cfg.stage == "vae1":
            DL = _model("latent_discriminator", cfg, 3, device, latent=vae.config.latent)
            models["D_latent"] = DL
            d_params.append(DL)
            half = cfg.batch_size // 2
            batches = {
                "real": Batches(cfg.real, ("degraded",), cfg, half, 0, start, device),
                "synthetic": Batches(cfg.synthetic, ("degraded",), cfg, cfg.batch_size - half, 1, start, device),
            }
        else:
            batches = {"clean": Batches(cfg.clean, ("clean",), cfg, cfg.batch_size, 0, start, device)}
        optims = {"G": _adam(cfg, vae), "D": _adam(cfg, *d_params)}
        return Run(models, {}, optims, batches, _vae_step, _vae_samples)
    if cfg.stage == "mapping":
        vae1, vae2 = load_frozen(cfg.vae1, "vae", device, "--vae1", "vae1"), load_frozen(cfg.vae2, "vae", device, "--vae2", "vae2")
        if vae1.config.latent != vae2.config.latent or vae1.config.stride != vae2.config.stride:
            raise DaguerreError("--vae1 and --vae2 must share latent channels and stride")
        _check_size(cfg.size, vae1.config.stride)
        T = _model("mapping", cfg, 4, device, latent=vae1.config.latent)
        models, optims = {"mapping": T}, {"G": _adam(cfg, T)}
        if cfg.gan_weight > 0 or cfg.fm_weight > 0:  # a fidelity-only run has no discriminator to train or save
            models["D"] = _model("patch_discriminator", cfg, 5, device)
            optims["D"] = _adam(cfg, models["D"])
        batches = {"pairs": Batches(cfg.pairs, ("degraded", "clean", "mask"), cfg, cfg.batch_size, 0, start, device)}
        return Run(models, {"vae1": vae1, "vae2": vae2}, optims, batches, _mapping_step, _mapping_samples)
    U = _model("scratch_unet", cfg, 6, device)
    batches = {"pairs": Batches(cfg.pairs, ("degraded", "mask"), cfg, cfg.batch_size, 0, start, device)}
    return Run({"scratch": U}, {}, {"G": _adam(cfg, U)}, batches, _scratch_step, _scratch_samples)


# -- checkpoints of a run -----------------------------------------------------------------------
def _state_tensors(run: Run) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    tensors, meta = {}, {}
    for k, m in run.models.items():
        tensors.update(checkpoint.module_tensors(f"model.{k}", m))
    for k, o in run.optims.items():
        t, om = checkpoint.optimizer_tensors(f"optim.{k}", o)
        tensors.update(t)
        meta[k] = om
    return tensors, meta


def _dataset_cards(refs: list[str]) -> list[dict[str, Any]]:
    from pipelines import open_dataset

    out = []
    for r in refs:
        ds = open_dataset(r)
        a = ds.attrs
        out.append({"ref": r, "name": a.get("name"), "version": a.get("version"), "identity": a.get("identity"),
                    "recipe_hash": a.get("recipe_hash"), "kind": a.get("kind"), "count": a.get("count")})  # fmt: skip
    return out


def _save_state(path: Path, run: Run, cfg: TrainConfig, step: int, recent: dict[str, float], pins: dict[str, str]) -> None:
    tensors, optim_meta = _state_tensors(run)
    card = {"kind": "training-state", "stage": cfg.stage, "step": step, "config": dataclasses.asdict(cfg),
            "identity": cfg.identity(), "pins": pins, "optim": optim_meta, "losses": recent,
            "models": {k: {"model": m.model_name, "config": dataclasses.asdict(m.config)} for k, m in run.models.items()}}  # fmt: skip
    checkpoint.save(path, tensors, card)


REFS = ("real", "synthetic", "clean", "pairs", "vae1", "vae2")
"""Settings that name data or frozen models: a resumed run compares what they resolve to (``pins``),
not their text (``init`` is compared as text: a resumed run does not read it again)."""


def _pins(cfg: TrainConfig) -> dict[str, str]:
    """What the run's inputs resolve to now: dataset identities, and the frozen VAEs' file hashes.
    Opening the datasets here also checks vae1's are of the kinds their options name."""
    from pipelines import open_dataset

    pins = {}
    for f in STAGE_DATASETS[cfg.stage]:
        ds = open_dataset(getattr(cfg, f))
        pins[f] = str(ds.attrs.get("identity") or ds.path)
        want = {"real": "real", "synthetic": "synthetic"}.get(f)
        if want and ds.attrs.get("kind") != want:
            raise DaguerreError(f"--{f} {getattr(cfg, f)} is a {ds.attrs.get('kind')} dataset, expected a {want} one")
    if cfg.stage == "mapping":
        for f in ("vae1", "vae2"):
            pins[f] = _file_sha256(getattr(cfg, f))
    return pins


def _check_resume(out: Path, card: dict[str, Any], cfg: TrainConfig, pins: dict[str, str]) -> None:
    saved, now = card.get("identity") or {}, json.loads(json.dumps(cfg.identity()))
    if "pins" not in card:  # a state saved before pins: the references' text must match
        if saved != now:
            raise DaguerreError(f"{out} holds a run with other settings; use another --out or remove it")
        return
    drop = lambda d: {k: v for k, v in d.items() if k not in REFS}  # noqa: E731
    if drop(saved) != drop(now):
        raise DaguerreError(f"{out} holds a run with other settings; use another --out or remove it")
    for k, v in pins.items():
        if card["pins"].get(k) != v:
            raise DaguerreError(
                f"{out} was started on other {k} data than --{k} {getattr(cfg, k)} gives now (it was {saved.get(k)!r}: "
                "name the version it used, e.g. NAME@vN, or use another --out)"
            )
    if int(card["step"]) > cfg.steps:
        raise DaguerreError(f"{out} is already at step {card['step']}; --steps must be at least that")


RUN_FILES = ("config.yaml", "losses.csv", "losses.png")
"""What a fresh run writes at the top of ``--out`` (besides its checkpoint and ``samples/``)."""


def _check_fresh_out(out: Path) -> None:
    """A fresh run writes :data:`RUN_FILES` into ``out``: refuse, before any work, to replace files of
    those names that no daguerre run wrote (``--out .`` in a folder of one's own); a run killed before
    its first checkpoint left its own ``config.yaml`` beside them, and those are replaced."""
    import yaml

    from degrade.yamltext import load_yaml, read_text

    present = [f for f in RUN_FILES if os.path.lexists(out / f)]
    if not present:
        return
    try:  # read as --config reads it (a FIFO, never opened), and as the run wrote it (degrade.yamltext)
        saved = load_yaml(read_text(out / "config.yaml"))
    except (OSError, ValueError, yaml.YAMLError):
        saved = None
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    if isinstance(saved, dict) and saved.get("stage") in STAGES and set(saved) <= fields:
        return
    raise DaguerreError(f"{out / present[0]} exists and was not written by a daguerre training run; "
                        "give --out a folder of the run's own (a new or a run folder)")  # fmt: skip


def _init_from(run: Run, cfg: TrainConfig) -> None:
    """Fine-tuning: load the deployable model's weights from a trained checkpoint of the same model and stage."""
    ref = cfg.init
    key, model_name = DEPLOYED[cfg.stage]
    tensors, card = store.load(ref, model_name, "--init", cfg.stage)  # a VAE2 has VAE1's architecture, not its latent space
    try:  # the dataclass's defaults fill settings added since the checkpoint was saved
        saved = dataclasses.asdict(get_spec(model_name).config(**(card.get("config") or {})))
    except TypeError:
        saved = None
    if json.loads(json.dumps(saved)) != json.loads(json.dumps(dataclasses.asdict(run.models[key].config))):
        raise DaguerreError(f"--init {ref}: its {model_name} configuration differs from this run's (preset, overrides)")
    checkpoint.load_module(run.models[key], tensors, "model", str(ref))


def _load_state(path: Path, run: Run) -> int:
    tensors, card = checkpoint.load(path)
    for k, m in run.models.items():
        checkpoint.load_module(m, tensors, f"model.{k}", str(path))
    for k, o in run.optims.items():
        checkpoint.restore_optimizer(o, f"optim.{k}", tensors, card["optim"][k])
    return int(card["step"])


# -- logging ------------------------------------------------------------------------------------
def _logged_rows(csv_path: Path, start: int) -> str:
    """The loss log's header and whole rows up to step ``start`` (the resumed checkpoint's): later rows
    are replayed, and a kill or a power cut can leave a cut or zero-filled last line. "" if no header."""
    try:  # a FIFO in its place waited for a writer for ever
        data = read_regular(csv_path)
    except NotRegularFile as e:
        raise DaguerreError(f"{csv_path} is {e.strerror}, not the run's loss log (a damaged run folder); remove it to resume") from None
    lines = data.decode("utf-8", "replace").splitlines(keepends=True)
    if not lines or not lines[0].startswith("step,") or not lines[0].endswith("\n"):
        return ""
    keep, last = lines[:1], 0
    for line in lines[1:]:
        step = line.split(",", 1)[0]
        if not (line.endswith("\n") and line.count(",") == lines[0].count(",") and step.isdigit() and last < int(step) <= start):
            break
        keep.append(line)
        last = int(step)
    return "".join(keep)


def _log_means(csv_path: Path, window: int = 50) -> dict[str, float]:
    """Each loss's mean over the log's last ``window`` rows: what a card reports, the same for a resumed run."""
    rows = []
    if csv_path.exists():
        with csv_path.open() as f:
            rows = list(collections.deque(csv.DictReader(f), maxlen=window))
    return {k: float(np.mean([float(r[k]) for r in rows])) for k in (rows[0] if rows else {}) if k not in ("step", "seconds", "data_seconds")}


def _log_timing(csv_path: Path) -> tuple[float | None, float | None]:
    """Seconds a step and the data-loading share over every step of the log (a resumed run's earlier ones too)."""
    with csv_path.open() as f:
        rows = [(float(r["seconds"]), float(r["data_seconds"])) for r in csv.DictReader(f)]
    total = sum(s for s, _ in rows)
    return (total / len(rows) if rows else None), (sum(d for _, d in rows) / total if total else None)


def _plot_losses(csv_path: Path, png_path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with csv_path.open() as f:
        rows = list(csv.DictReader(f))
    if not rows:
        return
    keys = [k for k in rows[0] if k not in ("step", "seconds", "data_seconds")]
    fig, axes = plt.subplots(len(keys), 1, figsize=(7, 1.6 * len(keys)), sharex=True, squeeze=False)
    steps = [int(r["step"]) for r in rows]
    for ax, k in zip(axes[:, 0], keys):
        ax.plot(steps, [float(r[k]) if r[k] else math.nan for r in rows], lw=1)
        ax.set_ylabel(k, fontsize=8)
        ax.grid(alpha=0.3)
    axes[-1, 0].set_xlabel("step")
    fig.tight_layout()
    fig.savefig(png_path, dpi=90)
    plt.close(fig)


def train(cfg: TrainConfig, on_step: Callable[[int, dict[str, float]], None] | None = None, replace: bool = False) -> dict[str, Any]:
    """Run (or resume) a stage; returns the registered checkpoint's card. ``replace``: register over a model
    of the same name from another run (a re-run of the same run always may)."""
    cfg.check()
    out = Path(cfg.out or f"runs/{cfg.stage}").absolute()
    name = cfg.name or out.name
    store.check_name(name, " (set --name)")
    from pipelines.refs import managed_root_around

    if managed := managed_root_around(out):
        raise DaguerreError(f"--out {out} is inside {managed}, which the dataset catalog manages (`dataset gc` would "
                            "delete the run); choose another --out")  # fmt: skip
    pins = _pins(cfg)
    device = resolve_device(cfg.device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed tile sizes: let cuDNN pick its fastest kernels
    state_path = out / "last"
    start = 0
    if checkpoint.with_ext(state_path, ".safetensors").exists():
        _, card = checkpoint.load(state_path)
        _check_resume(out, card, cfg, pins)
        start = int(card["step"])
    else:
        _check_fresh_out(out)
    if cfg.init and not start and store.resolve(cfg.init).resolve() == (store.models_dir() / f"{name}.safetensors").resolve():
        raise DaguerreError(f"--init {cfg.init} and --name {name} are the same model: the run would overwrite what it starts from")
    run = build_run(cfg, start, device)  # checks the datasets against the settings: before anything is written
    if cfg.precision == "bf16":
        run.amp = lambda: torch.autocast(device.type, dtype=torch.bfloat16)
    if start:
        _load_state(state_path, run)
    elif cfg.init:
        _init_from(run, cfg)
    for m in run.models.values():
        m.train()
    store.check_free(name, str(out), replace)  # once the inputs are checked, and before the steps, not after them
    store.check_writable()
    from pipelines.catalog import file_lock

    out.mkdir(parents=True, exist_ok=True)
    with contextlib.ExitStack() as held:
        held.enter_context(file_lock(out / ".lock", f"the run folder {out} is in use by another training"))  # one run per folder
        (out / "samples").mkdir(exist_ok=True)
        for stray in out.glob(".*.tmp"):  # a checkpoint write cut by kill -9 (the write is atomic: never the checkpoint)
            if is_write_temporary(stray):  # atomic_write_bytes' own, not a user's .notes.tmp
                stray.unlink(missing_ok=True)
        import yaml

        from degrade.yamltext import Dumper  # reads back as written (a name such as 1e5 stays text for --config)

        (out / "config.yaml").write_text(yaml.dump(dataclasses.asdict(cfg), Dumper=Dumper, sort_keys=False))
        csv_path = out / "losses.csv"
        kept = _logged_rows(csv_path, start) if start > 0 and csv_path.exists() else ""
        atomic_write_bytes(csv_path, kept.encode())
        writer_file = held.enter_context(csv_path.open("a", newline=""))
        writer = None
        sample_batch = None
        for step in range(start, cfg.steps):
            t0 = time.perf_counter()
            waited = sum(b.wait for b in run.batches.values())
            for o in run.optims.values():
                for g in o.param_groups:
                    g["lr"] = cfg.lr_at(step)
            gen = torch.Generator(device=device).manual_seed(int(step_generator(cfg.seed, step, 7).integers(2**62)))
            logs = run.step_fn(run, cfg, step, gen)
            bad = _diverged(logs)
            if bad:  # the weights are ruined from here on: stop, register nothing (the last checkpoint stays)
                saved = checkpoint.with_ext(state_path, ".safetensors").exists()  # then this --out holds these settings
                raise DaguerreError(f"training diverged at step {step + 1} ({bad}); nothing registered: lower --lr"
                                    + (" and run in another --out (this one holds a checkpoint of the present settings)" if saved else ""))
            dt = time.perf_counter() - t0
            data_dt = sum(b.wait for b in run.batches.values()) - waited
            if writer is None:
                writer = csv.DictWriter(writer_file, fieldnames=["step", *logs, "seconds", "data_seconds"])
                if not kept:
                    writer.writeheader()
            writer.writerow({"step": step + 1, **{k: f"{v:.6g}" for k, v in logs.items()}, "seconds": f"{dt:.4f}",
                             "data_seconds": f"{data_dt:.4f}"})  # fmt: skip
            if on_step:
                on_step(step + 1, logs)
            done = step + 1
            if done % cfg.sample_every == 0 or done == cfg.steps:
                if sample_batch is None:
                    sample_batch = augment_fixed(run, cfg, device)
                tiles, labels = run.sample_fn(run, cfg, sample_batch)
                from degrade.sheet import contact_sheet, save_sheet

                sheet = contact_sheet(tiles, labels, ncols=6, tile_size=128, title=f"{cfg.stage} step {done}", label_lines=1)
                save_sheet(sheet, out / "samples" / f"step-{done:06d}.png")
            if done % cfg.ckpt_every == 0 or done == cfg.steps:
                writer_file.flush()
                _save_state(state_path, run, cfg, done, _log_means(csv_path), pins)  # from the log, as the card below
                _plot_losses(csv_path, out / "losses.png")
        writer_file.close()  # the log is read back below
        final = _log_means(csv_path)  # from the log, not memory: a resumed run's card then says what an uninterrupted one's says
        module = run.models[DEPLOYED[cfg.stage][0]]
        per_step, data_share = _log_timing(csv_path)  # a re-run with no step left to train said 0 s a step
        card = _model_card(cfg.stage, dataclasses.asdict(cfg), dataclasses.asdict(module.config), cfg.steps, final, pins,
                           device=str(device), seconds_per_step=per_step, data_share=data_share, run=str(out))  # fmt: skip
        tensors = checkpoint.module_tensors("model", module)
        same = _registered_unchanged(name, str(out), tensors)
        if same is not None:  # a finished run run again: leave the file's bytes alone, or what was trained on it
            return same  # (a mapping pins its VAEs' SHA-256) would no longer resume
        path = store.register(name, tensors, card, replace)
        return {**card, "name": name, "path": str(path)}


def _diverged(logs: dict[str, float]) -> str:
    """Why a step's losses count as diverged (NaN, infinite, a term beyond :data:`LOSS_LIMIT`), or "" if they do not."""
    for k, v in logs.items():
        if not math.isfinite(v):
            return f"{k} is {v}"
        if k != "total" and abs(v) > LOSS_LIMIT:
            return f"{k} is {v:.3g}, over {LOSS_LIMIT:g}"
    return ""


def _registered_unchanged(name: str, run: str, tensors: dict[str, torch.Tensor]) -> dict[str, Any] | None:
    """The card of ``name`` if the store holds exactly these weights from this run, else None."""
    with store.store_lock():  # a `zoo rm` of it cannot interleave with the card's rewrite (a lone card left)
        try:
            path = store.models_dir() / f"{name}.safetensors"
            if not path.exists():
                return None
            old, card = checkpoint.load(path)
        except DaguerreError:
            return None
        if card.get("run") != run or old.keys() != tensors.keys():
            return None
        if not all(torch.equal(old[k], tensors[k].detach().cpu()) for k in tensors):
            return None
        checkpoint.restore_card_file(path)  # `zoo ls` lists models by their card files
    return {**card, "name": name, "path": str(path)}


def _model_card(stage: str, cfg: dict[str, Any], config: dict[str, Any], steps: int, losses: dict,
                pins: dict[str, str] | None = None, **extra) -> dict[str, Any]:  # fmt: skip
    """The card a trained model is registered with (by ``train`` at its end, by ``export_state`` from a checkpoint).

    ``pins`` (what the inputs resolved to while training) win over what the names resolve to now:
    a dataset that got a newer version since is reported as the version trained on."""
    datasets = []
    for f in STAGE_DATASETS[stage]:
        ref, pin = cfg[f], (pins or {}).get(f)
        try:
            entry = _dataset_cards([ref])[0]
            if pin and entry.get("identity") != pin:
                entry = _dataset_by_identity(ref, pin)
        except DaguerreError:  # exported away from the training machine: name the datasets only
            entry = {"ref": ref, **({"identity": pin} if pin else {})}
        datasets.append(entry)
    changed = [k for k in ("vae1", "vae2") if pins and k in pins and cfg.get(k) and pins[k] != _file_sha256(cfg[k])]
    if changed:
        extra["upstream_changed_since_training"] = changed
    return {"model": DEPLOYED[stage][1], "config": config, "stage": stage, "datasets": datasets,
            "upstream": {k: _resolved(cfg[k]) for k in ("vae1", "vae2", "init") if cfg.get(k)},
            **({"upstream_sha256": up} if (up := {k: v for k, v in (pins or {}).items() if k in ("vae1", "vae2") and v}) else {}),
            "steps": steps, "losses": losses, "train_config": cfg, **extra,
            "code_version": _code_version(), "vgg_perceptual_loss": False}  # fmt: skip


def _dataset_by_identity(ref: str, identity: str) -> dict[str, Any]:
    """The catalog version of ``ref``'s name with this identity (the one a run was pinned to)."""
    from pipelines.catalog import Catalog
    from pipelines.refs import parse_ref

    r = parse_ref(ref)
    if r.path is None:
        cat = Catalog()
        try:
            for v in cat.versions(r.name):
                if v.identity == identity:
                    return {**_dataset_cards([v.ref])[0], "ref": ref}
        finally:
            cat.close()
    return {"ref": ref, "identity": identity, "note": "trained on this identity; the reference now resolves elsewhere"}


def _file_sha256(ref: str) -> str | None:
    try:
        return store.file_sha256(store.resolve(ref))
    except DaguerreError:
        return None


def _resolved(ref: str) -> str:
    try:
        return str(store.resolve(ref))
    except DaguerreError:  # not in this machine's store: keep the reference as given
        return ref


def export_state(state: str | Path, name: str) -> dict[str, Any]:
    """Register the trained model of a run's last checkpoint, e.g. of a run stopped before its last step.

    The card says at which step of how many the weights were saved (``steps`` of ``planned_steps``).
    """
    tensors, st = checkpoint.load(state)
    if st.get("kind") != "training-state":
        raise DaguerreError(f"{state} is not a training checkpoint (a run folder's `last`)")
    cfg = st["config"]
    key = DEPLOYED[st["stage"]][0]
    prefix = f"model.{key}."
    model = {"model." + k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}
    card = _model_card(st["stage"], cfg, st["models"][key]["config"], int(st["step"]), st.get("losses", {}), st.get("pins"),
                       planned_steps=int(cfg["steps"]), run=str(checkpoint.stem_of(state).parent.absolute()), exported_from=str(checkpoint.with_ext(checkpoint.stem_of(state), ".safetensors")))  # fmt: skip
    path = store.register(name, model, card)
    return {**card, "name": name, "path": str(path)}


def augment_fixed(run: Run, cfg: TrainConfig, device) -> dict[str, torch.Tensor]:
    """A fixed batch (first samples, centre crops) so that sample sheets are comparable across steps."""
    b = next(iter(run.batches.values()))
    ds = b.ds
    idx = list(range(min(8, len(ds))))
    raw = ds.__getitems__(idx)
    tile = raw[b.fields[0]].shape[1]
    off = (tile - cfg.size) // 2
    out = {}
    for f in b.fields:
        out[f] = to_model(f, raw[f][:, off : off + cfg.size, off : off + cfg.size].to(device))
    return out


def _code_version() -> str:
    from pipelines.layout import code_version

    return code_version()


def run_command_config(stage: str, options: dict[str, Any], config_file: str | None) -> TrainConfig:
    """Merge defaults < YAML config file < explicit command-line options into a TrainConfig."""
    values: dict[str, Any] = {}
    if config_file:
        import yaml

        from degrade.yamltext import error_parts, load_yaml, read_text

        try:
            loaded = load_yaml(read_text(config_file)) or {}
        except yaml.YAMLError as e:
            line, why = error_parts(e)
            raise DaguerreError(f"cannot read config {config_file}: {f'line {line}: ' if line else ''}{why}") from None
        except (OSError, ValueError) as e:
            raise DaguerreError(f"cannot read config {config_file}: {str(e).splitlines()[0]}") from None
        if not isinstance(loaded, dict):
            raise DaguerreError(f"config {config_file}: expected a mapping of settings")
        known = {f.name for f in dataclasses.fields(TrainConfig)}
        bad = sorted(set(loaded) - known)
        if bad:
            raise DaguerreError(f"config {config_file}: unknown setting {bad[0]!r}")
        values.update(loaded)
    values.update({k: v for k, v in options.items() if v is not None})
    values["stage"] = stage
    values.pop("config", None)
    return TrainConfig(**values)


__all__ = ["STAGES", "TrainConfig", "export_state", "run_command_config", "train"]
