"""Training every stage a few steps on tiny generated datasets: losses fall, checkpoints round-trip, runs resume."""

from __future__ import annotations

import csv
import dataclasses
import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from cli_helpers import fails_if_it_hangs, one_line_error, run
from degrade.errors import DaguerreError
from pipelines import build_spec, create_dataset
from zoo import checkpoint, losses, store
from zoo.bundle import load_bundle, make_bundle, replace_parts
from zoo.train import TrainConfig, train

TINY = {
    "vae": {"base": 8, "max_channels": 16, "latent": 8, "n_res": 1},
    "patch_discriminator": {"width": 8, "scales": 1, "layers": 2},
    "latent_discriminator": {"width": 8, "layers": 2},
    "mapping": {"width": 16, "n_res": 1, "global_res": 1, "inter": 8},
    "scratch_unet": {"base": 8, "depth": 2},
}


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    import os

    home = tmp_path_factory.mktemp("home")
    old = os.environ.get("DAGUERRE_HOME")
    os.environ["DAGUERRE_HOME"] = str(home)
    severe = {"steps": [{"op": "scratches", "count": [3, 8], "width_px": [1.5, 3.0]}, {"op": "gaussian_noise", "sigma": 0.05}]}
    from degrade import Recipe

    recipe_file = home / "r.yaml"
    recipe_file.write_text(Recipe.from_dict(severe).to_yaml())
    create_dataset(build_spec("x", "builtin:samples", 48, 48, 0, str(recipe_file), shard_size=16), workers=1, scheduler="threads")
    create_dataset(build_spec("r", "builtin:real", 48, 48, 0, real=True, shard_size=16), workers=1, scheduler="threads")
    yield home
    if old is None:
        os.environ.pop("DAGUERRE_HOME", None)
    else:
        os.environ["DAGUERRE_HOME"] = old


def cfg(stage, out, **kw):
    base = dict(stage=stage, steps=40, batch_size=4, size=32, lr=1e-3, workers=0, out=str(out), sample_every=20,
                ckpt_every=20, model_overrides=TINY)  # fmt: skip
    return TrainConfig(**{**base, **kw})


def fixed_batch(ref: str, fields: tuple[str, ...]) -> dict[str, torch.Tensor]:
    """The first 8 samples, centre-cropped to 32 px, as the training loop sees them."""
    from zoo.data import ShardDataset

    raw = ShardDataset(ref, fields).__getitems__(list(range(8)))
    out = {}
    for f in fields:
        t = raw[f][:, 8:40, 8:40]
        out[f] = (t > 0).float().unsqueeze(1) if f == "mask" else t.permute(0, 3, 1, 2).float() / 127.5 - 1
    return out


def held_loss(stage: str, model, frozen=None) -> float:
    """The loss each stage minimises, on a fixed batch, for an initial or trained model."""
    with torch.no_grad():
        model.eval()
        if stage in ("vae1", "vae2"):
            x = fixed_batch("x", ("degraded",))["degraded"] if stage == "vae1" else fixed_batch("x", ("clean",))["clean"]
            return losses.l1(model(x)[0], x).item()
        b = fixed_batch("x", ("degraded", "clean", "mask"))
        if stage == "scratch":
            return losses.balanced_bce(model(b["degraded"]), b["mask"]).item()
        vae1, vae2 = frozen
        zhat = model(vae1.encode(b["degraded"])[0], b["mask"])
        return losses.l1(zhat, vae2.encode(b["clean"])[0]).item()


def initial_model(stage: str, c: TrainConfig, **overrides):
    from zoo.registry import create_model, init_weights, make_config

    name, offset = {"vae1": ("vae", 1), "vae2": ("vae", 1), "mapping": ("mapping", 4), "scratch": ("scratch_unet", 6)}[stage]
    return init_weights(create_model(name, make_config(name, "small", **{**TINY[name], **overrides})), c.seed * 1000 + offset)


def trained_model(card):
    from zoo.registry import create_model

    tensors, card = checkpoint.load(card["path"])
    m = create_model(card["model"], card["config"])
    checkpoint.load_module(m, tensors, "model")
    return m


def test_every_stage_trains_and_its_loss_falls(data, tmp_path):
    cards = {}
    # the detector starts at the balanced loss's trivial optimum (logits 0) and learns thin lines slowly
    for stage, kw, gain in [
        ("vae1", {"real": "r", "synthetic": "x"}, 0.8),
        ("vae2", {"clean": "x"}, 0.8),
        ("scratch", {"pairs": "x", "steps": 80, "lr": 3e-3}, 0.95),
    ]:
        c = cfg(stage, tmp_path / stage, **kw)
        before = held_loss(stage, initial_model(stage, c))
        cards[stage] = train(c)
        after = held_loss(stage, trained_model(cards[stage]))
        assert after < gain * before, (stage, before, after)
    c = cfg("mapping", tmp_path / "mapping", pairs="x", vae1="vae1", vae2="vae2")
    frozen = (trained_model(cards["vae1"]), trained_model(cards["vae2"]))
    before = held_loss("mapping", initial_model("mapping", c, latent=8), frozen)
    cards["mapping"] = train(c)
    after = held_loss("mapping", trained_model(cards["mapping"]), frozen)
    assert after < 0.8 * before, ("mapping", before, after)
    for stage, card in cards.items():
        out = tmp_path / stage
        assert (out / "losses.png").stat().st_size > 1000
        sheets = sorted(p.name for p in (out / "samples").iterdir())
        assert sheets[:2] == ["step-000020.png", "step-000040.png"]
        assert card["steps"] in (40, 80) and card["datasets"] and card["datasets"][0]["identity"]
        assert Path(card["path"]).exists() and Path(card["path"]).with_suffix(".json").exists()
    assert cards["vae1"]["datasets"][0]["ref"] == "r" and cards["vae1"]["datasets"][1]["ref"] == "x"
    assert cards["mapping"]["upstream"]["vae1"].endswith("vae1.safetensors")
    # the four stages tie into a bundle that loads back
    with pytest.raises(DaguerreError, match="--vae1 vae2 was trained as vae2, not vae1"):
        make_bundle("b", "vae2", "vae1", "mapping", "scratch")  # same architecture, other latent space
    import shutil

    for suffix in (".safetensors", ".json"):
        shutil.copy(Path(cards["vae1"]["path"]).with_suffix(suffix), store.models_dir() / f"vae1-copy{suffix}")
    make_bundle("b", "vae1-copy", "vae2", "mapping", "scratch")  # the same file under another name is fine
    c = train(cfg("vae1", tmp_path / "other", steps=1, real="r", synthetic="x", name="vae1-other"))
    with pytest.raises(DaguerreError, match="the mapping was trained on the latents of vae1 vae1, not vae1-other"):
        make_bundle("b", "vae1-other", "vae2", "mapping", "scratch")
    assert c["steps"] == 1
    with pytest.raises(DaguerreError, match="scratch is a 'scratch_unet' checkpoint in the store"):
        make_bundle("scratch", "vae1", "vae2", "mapping", "scratch")
    with pytest.raises(DaguerreError, match="model 'b' is already registered"):  # never silently over another bundle
        make_bundle("b", "vae1", "vae2", "mapping", "scratch")
    path = make_bundle("b", "vae1", "vae2", "mapping", "scratch", replace=True)
    b = load_bundle("b")
    assert b.card["parts"]["mapping"]["stage"] == "mapping" and path.exists()
    assert b.card["parts"]["mapping"]["upstream"] == {"vae1": "vae1", "vae2": "vae2"}
    x = torch.rand(1, 3, 32, 32) * 2 - 1
    with torch.no_grad():
        z = b.mapping(b.vae1.encode(x)[0], (torch.sigmoid(b.scratch(x)) > 0.5).float())
        y = b.vae2.decode(z)
    assert y.shape == x.shape
    # a bundle with another detector, from the bundle alone (no part checkpoints needed)
    other = train(cfg("scratch", tmp_path / "scratch-other", steps=1, pairs="x", name="scratch-other"))
    replace_parts("b2", "b", scratch="scratch-other")
    b2, (t_b, _), (t_b2, _) = load_bundle("b2"), checkpoint.load(path), checkpoint.load(store.resolve("b2"))
    t_other = checkpoint.prefixed(checkpoint.load(other["path"])[0], "model")
    assert b2.card["parts"]["scratch"]["name"] == "scratch-other" and "calibration" not in b2.card
    assert all(torch.equal(t_b2[f"scratch.{k}"], v) for k, v in t_other.items())
    kept = [k for k in t_b if not k.startswith("scratch.")]
    assert kept and all(torch.equal(t_b[k], t_b2[k]) for k in kept)
    assert b2.card["parts"]["mapping"] == b.card["parts"]["mapping"]
    replace_parts("b3", "b", mapping="mapping")  # the mapping of the same VAEs
    with pytest.raises(DaguerreError, match="--mapping vae1 is a 'vae' checkpoint, expected 'mapping'"):
        replace_parts("b3", "b", mapping="vae1")
    with pytest.raises(DaguerreError, match="--from replaces --scratch and/or --mapping"):
        replace_parts("b3", "b", vae1="vae1")
    with pytest.raises(DaguerreError, match="--from scratch is a 'scratch_unet' checkpoint, not a restoration bundle"):
        replace_parts("b3", "scratch", scratch="scratch-other")
    # a VAE retrained under the same name has another latent space: the mapping pinned the file's content
    assert cards["mapping"]["upstream_sha256"]["vae1"] == b.card["parts"]["vae1"]["sha256"]
    train(cfg("vae1", tmp_path / "vae1-again", steps=1, seed=5, real="r", synthetic="x", name="vae1"), replace=True)
    with pytest.raises(DaguerreError, match="latents of vae1 vae1, not vae1 \\(that name now holds other weights\\)"):
        make_bundle("b4", "vae1", "vae2", "mapping", "scratch")
    make_bundle("b4", "vae1-copy", "vae2", "mapping", "scratch")  # the file it was trained on, under another name
    train(cfg("mapping", tmp_path / "mapping-new", steps=1, pairs="x", vae1="vae1", vae2="vae2", name="mapping-new"))
    make_bundle("b5", "vae1", "vae2", "mapping-new", "scratch")  # the new vae1 with a mapping trained on it
    with pytest.raises(DaguerreError, match="the mapping was trained on the latents of vae1 vae1, not vae1 \\(the same name, other weights\\) \\(the vae1 of b5\\)"):
        replace_parts("b6", "b5", mapping="mapping")  # same names, other weights


def test_bf16_autocast_trains_every_stage_and_saves_fp32(data, tmp_path):
    """--precision bf16 (for GPU runs): the losses still fall, the weights and checkpoints stay float32."""
    for stage, kw, gain in [("scratch", {"pairs": "x", "steps": 80, "lr": 3e-3}, 0.95), ("vae2", {"clean": "x"}, 0.8)]:
        c = cfg(stage, tmp_path / stage, precision="bf16", name=f"{stage}-bf16", **kw)
        before = held_loss(stage, initial_model(stage, c))
        card = train(c)
        assert held_loss(stage, trained_model(card)) < gain * before, stage
        assert card["train_config"]["precision"] == "bf16"
        assert all(t.dtype == torch.float32 for t in checkpoint.load(card["path"])[0].values())
    v1 = train(cfg("vae1", tmp_path / "vae1", steps=2, real="r", synthetic="x", precision="bf16", name="vae1-bf16"))
    m = train(cfg("mapping", tmp_path / "mapping", steps=2, pairs="x", vae1="vae1-bf16", vae2="vae2-bf16", precision="bf16", name="map-bf16"))
    assert all(np.isfinite(v) for card in (v1, m) for v in card["losses"].values())
    with pytest.raises(DaguerreError, match="--precision must be fp32 or bf16, got 'fp16'"):
        cfg("scratch", tmp_path / "x", pairs="x", precision="fp16").check()


def test_checkpoint_round_trip_and_resume_is_exact(data, tmp_path):
    full = train(cfg("scratch", tmp_path / "full", steps=10, ckpt_every=5, name="full", pairs="x"))
    part = train(cfg("scratch", tmp_path / "part", steps=6, ckpt_every=5, name="part", pairs="x"))
    assert part["steps"] == 6
    resumed = train(cfg("scratch", tmp_path / "part", steps=10, ckpt_every=5, name="part", pairs="x"))
    assert resumed["steps"] == 10 and resumed["path"] == part["path"]
    a, _ = checkpoint.load(full["path"])
    b, card = checkpoint.load(resumed["path"])
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a), "resumed weights differ from an uninterrupted run"
    rows = list(csv.DictReader((tmp_path / "part" / "losses.csv").open()))
    assert [int(r["step"]) for r in rows] == list(range(1, 11))
    assert card["model"] == "scratch_unet" and card["config"]["base"] == 8


@pytest.mark.parametrize("damage", ["cut", "zeros", "no-header"])
def test_resume_mends_a_loss_log_that_a_kill_or_power_cut_left_damaged(data, tmp_path, damage):
    """A cut last line got the next row appended onto it; a cut "150,..." read as step 15 was kept;
    a zero-filled log was an internal error. Now only whole rows up to the checkpoint are kept
    (rows the damage took are lost, not invented)."""
    kw = dict(ckpt_every=4, name=f"r-{damage}", pairs="x")
    train(cfg("scratch", tmp_path / "r", steps=6, **kw))  # checkpoints at 4 and 6
    log = tmp_path / "r" / "losses.csv"
    text = log.read_text()
    log.write_text({"cut": text[: text.index("\n5,") + 3], "zeros": text[: text.index("\n4,") + 1] + "\0" * 100,
                    "no-header": text.split("\n", 1)[1]}[damage])  # fmt: skip
    train(cfg("scratch", tmp_path / "r", steps=8, **kw))
    rows = list(csv.DictReader(log.open()))
    assert [int(r["step"]) for r in rows] == {"cut": [1, 2, 3, 4, 7, 8], "zeros": [1, 2, 3, 7, 8], "no-header": [7, 8]}[damage]
    assert all(float(r["total"]) > 0 and None not in r.values() for r in rows), rows
    assert (tmp_path / "r" / "losses.png").stat().st_size > 0


def test_resuming_a_run_whose_loss_log_is_a_fifo_is_one_line(data, tmp_path):
    """A run's ``losses.csv`` replaced by a FIFO: resuming waited for a writer for ever. It is refused unopened,
    as a damaged run folder, and the run's checkpoint is left as it was."""
    kw = dict(ckpt_every=4, name="r-fifo", pairs="x")
    train(cfg("scratch", tmp_path / "r", steps=4, **kw))
    log = tmp_path / "r" / "losses.csv"
    log.unlink()
    os.mkfifo(log)
    state = (tmp_path / "r" / "last.safetensors").read_bytes()
    with fails_if_it_hangs(120), pytest.raises(DaguerreError) as e:
        train(cfg("scratch", tmp_path / "r", steps=6, **kw))
    assert str(e.value) == f"{log} is not a regular file (a pipe, socket or device), not the run's loss log (a damaged run folder); remove it to resume"
    assert (tmp_path / "r" / "last.safetensors").read_bytes() == state
    log.unlink()
    assert train(cfg("scratch", tmp_path / "r", steps=6, **kw))["steps"] == 6
    assert [int(r["step"]) for r in csv.DictReader(log.open())] == [5, 6]


@pytest.mark.parametrize("damage", ["missing", "zeroed"])
def test_a_registration_cut_between_its_two_files_is_finished_by_the_same_command(data, tmp_path, damage):
    """Killed between writing the model's weights and its card file (or the card zeroed by a power cut): the same
    command then failed for ever with "model 'x' is already registered (a ?, saved ?)", and `zoo ls` hid it."""
    c = cfg("scratch", tmp_path / "run", steps=2, name=f"cut-{damage}", pairs="x")
    card = train(c)
    weights, js = Path(card["path"]), Path(card["path"]).with_suffix(".json")
    before = (weights.read_bytes(), js.read_bytes())
    js.unlink() if damage == "missing" else js.write_bytes(bytes(len(before[1])))
    again = train(c)
    assert again["path"] == card["path"] and (weights.read_bytes(), js.read_bytes()) == before
    assert f"cut-{damage}" in {c["name"] for c in store.cards()}


def test_export_state_registers_a_run_stopped_early(data, tmp_path):
    """A run killed after its checkpoint at step 5 of 10 still yields a loadable model, marked as such."""
    from zoo.train import export_state

    def stop(step, logs):
        if step == 7:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(cfg("scratch", tmp_path / "killed", steps=10, ckpt_every=5, name="killed", pairs="x"), on_step=stop)
    assert not (Path(data) / "models" / "killed.safetensors").exists()
    card = export_state(tmp_path / "killed" / "last", "killed-5")
    assert (card["steps"], card["planned_steps"], card["model"]) == (5, 10, "scratch_unet")
    assert card["datasets"][0]["ref"] == "x" and card["datasets"][0]["identity"]
    five = train(cfg("scratch", tmp_path / "five", steps=5, ckpt_every=5, name="five", pairs="x"))
    a, _ = checkpoint.load(five["path"])
    b, loaded = store.load("killed-5", "scratch_unet")
    assert a.keys() == b.keys() and all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)
    assert loaded["planned_steps"] == 10
    with pytest.raises(DaguerreError, match="not a training checkpoint"):
        export_state(five["path"], "nope")


def test_export_state_away_from_the_training_machine(data, tmp_path, monkeypatch):
    """Where the run's datasets and upstream models are not in the store, the card keeps their references."""
    from zoo.train import export_state

    train(cfg("scratch", tmp_path / "base", steps=1, name="away-base", pairs="x"))
    train(cfg("scratch", tmp_path / "run", steps=2, ckpt_every=2, name="run", pairs="x", init="away-base"))
    monkeypatch.setenv("DAGUERRE_HOME", str(tmp_path / "elsewhere"))
    card = export_state(tmp_path / "run" / "last", "moved")
    from pipelines import open_dataset

    monkeypatch.setenv("DAGUERRE_HOME", str(data))
    x_identity = open_dataset("x").attrs["identity"]
    monkeypatch.setenv("DAGUERRE_HOME", str(tmp_path / "elsewhere"))
    assert card["datasets"] == [{"ref": "x", "identity": x_identity}] and card["upstream"] == {"init": "away-base"}
    assert card["steps"] == card["planned_steps"] == 2
    assert store.load("moved", "scratch_unet")[1]["exported_from"].endswith("last.safetensors")


def test_fidelity_only_mapping_has_no_discriminator(data, tmp_path):
    """Without GAN or feature-matching losses the mapping run neither trains nor saves a PatchGAN, and resumes."""
    from test_restore import make_random_bundle

    make_random_bundle("fo")
    kw = dict(pairs="x", vae1="fo-vae1", vae2="fo-vae2")
    plain = train(cfg("mapping", tmp_path / "plain", steps=2, ckpt_every=2, gan_weight=0.0, fm_weight=0.0, **kw))
    state, card = checkpoint.load(tmp_path / "plain" / "last")
    assert not any(k.startswith(("model.D.", "optim.D.")) for k in state) and set(card["optim"]) == {"G"}
    assert "gan" not in plain["losses"] and plain["losses"]["d"] == 0
    resumed = train(cfg("mapping", tmp_path / "plain", steps=4, ckpt_every=2, gan_weight=0.0, fm_weight=0.0, **kw))
    assert resumed["steps"] == 4
    train(cfg("mapping", tmp_path / "gan", steps=2, ckpt_every=2, **kw))
    state, card = checkpoint.load(tmp_path / "gan" / "last")
    assert any(k.startswith("model.D.") for k in state) and set(card["optim"]) == {"G", "D"}


def test_resume_refuses_a_different_run(data, tmp_path):
    train(cfg("scratch", tmp_path / "o", steps=2, pairs="x"))
    with pytest.raises(DaguerreError, match="holds a run with other settings"):
        train(cfg("scratch", tmp_path / "o", steps=4, lr=5e-4, pairs="x"))
    with pytest.raises(DaguerreError, match="already at step 2; --steps must be at least that"):
        train(cfg("scratch", tmp_path / "o", steps=1, pairs="x"))


def test_resume_follows_what_references_resolve_to(data, tmp_path):
    """NAME means the newest version: a run started on y@v1 must not go on with y@v2, nor refuse y@v1 by name."""
    create_dataset(build_spec("y", "builtin:samples", 8, 48, 0, shard_size=4), workers=1, scheduler="threads")
    train(cfg("scratch", tmp_path / "p", steps=2, ckpt_every=1, pairs="y", name="p"))
    create_dataset(build_spec("y", "builtin:samples", 8, 48, 5, shard_size=4), workers=1, scheduler="threads")
    from zoo.train import export_state

    exported = export_state(tmp_path / "p" / "last", "p-early")  # the card names the version trained on, not the newest
    assert exported["datasets"][0]["version"] == "v1" and exported["datasets"][0]["ref"] == "y"
    with pytest.raises(DaguerreError, match="started on other pairs data than --pairs y gives now"):
        train(cfg("scratch", tmp_path / "p", steps=4, ckpt_every=1, pairs="y", name="p"))
    assert train(cfg("scratch", tmp_path / "p", steps=4, ckpt_every=1, pairs="y@v1", name="p"))["steps"] == 4


def test_runs_with_a_discriminator_are_reproducible_and_resume_exactly(data, tmp_path):
    """Spectral norm's vectors come from the run's seed too (they came from torch's global generator).
    Resumed with another --workers: the batches do not depend on it. Bit for bit, optimizer state included."""
    kw = dict(steps=4, ckpt_every=2, clean="x")
    a = train(cfg("vae2", tmp_path / "a", name="va", **kw))
    train(cfg("vae2", tmp_path / "b", name="vb", **{**kw, "steps": 2}))
    b = train(cfg("vae2", tmp_path / "b", name="vb", **kw, workers=1))
    ta, _ = checkpoint.load(tmp_path / "a" / "last")
    tb, _ = checkpoint.load(tmp_path / "b" / "last")
    assert ta.keys() == tb.keys() and all(torch.equal(ta[k], tb[k]) for k in ta)
    la = (tmp_path / "a" / "losses.csv").read_text().splitlines()
    lb = (tmp_path / "b" / "losses.csv").read_text().splitlines()
    assert [r.split(",")[:-2] for r in la] == [r.split(",")[:-2] for r in lb]  # every loss, timings aside
    assert a["losses"] == b["losses"]  # and the cards say so (the resumed one averaged only its own steps)
    # so do the checkpoints, which `export_state` registers (the resumed one's averaged only its own steps)
    assert checkpoint.load(tmp_path / "a" / "last")[1]["losses"] == checkpoint.load(tmp_path / "b" / "last")[1]["losses"]


@pytest.mark.parametrize("kind", ["random", "truncated", "nocard", "json"])
def test_bad_checkpoint_files_are_clear_errors(data, tmp_path, kind):
    target = tmp_path / "bad.safetensors"
    if kind == "random":
        target.write_bytes(np.random.default_rng(0).bytes(4000))
    elif kind == "truncated":
        good = train(cfg("scratch", tmp_path / "t", steps=1, pairs="x", name="t"))
        target.write_bytes(Path(good["path"]).read_bytes()[:-100])
    elif kind == "nocard":
        from safetensors.torch import save_file

        save_file({"w": torch.zeros(2)}, str(target))
    else:
        target.write_text('{"not": "a checkpoint"}')
    with pytest.raises(DaguerreError) as e:
        checkpoint.load(target)
    assert "\n" not in str(e.value) and "bad.safetensors" in str(e.value)


def test_wrong_upstream_model_kind(data, tmp_path):
    train(cfg("scratch", tmp_path / "s", steps=1, pairs="x", name="s"))
    with pytest.raises(DaguerreError, match="--vae1 s is a 'scratch_unet' checkpoint, expected 'vae'"):
        train(cfg("mapping", tmp_path / "m", steps=1, pairs="x", vae1="s", vae2="s"))
    with pytest.raises(DaguerreError, match="--vae1 s is a 'scratch_unet' checkpoint, expected 'vae'"):
        make_bundle("bad", "s", "s", "s", "s")


def test_a_runs_config_yaml_reads_back_as_written(data, tmp_path):
    """config.yaml was written by YAML 1.1 rules and read by 1.2 ones: a run named 1e5 came back as the
    number 100000.0 when the file was given to --config."""
    from degrade.yamltext import load_yaml

    train(cfg("scratch", tmp_path / "r", steps=1, pairs="x", name="1e5"))
    back = load_yaml((tmp_path / "r" / "config.yaml").read_text())
    assert back["name"] == "1e5" and back["pairs"] == "x" and back["steps"] == 1


def test_cli_train_zoo_ls_info_and_errors(capsys, data, tmp_path):
    conf = tmp_path / "c.yaml"
    conf.write_text(yaml.safe_dump({"steps": 3, "batch_size": 2, "size": 32, "workers": 0, "model_overrides": TINY}))
    r = run(capsys, "train", "vae2", "--clean", "x", "--config", conf, "--out", tmp_path / "cli", "--name", "cli-vae2", "--lr", "1e-3")
    assert r.code == 0 and "registered cli-vae2" in r.out, r.err
    logged = [line.split()[1] for line in r.err.splitlines() if line.startswith("step ")]
    assert logged == ["3/3"], r.err  # --log-every 10 (the default): every 10th step and the last, on stderr off a terminal
    r = run(capsys, "train", "vae2", "--clean", "x", "--config", conf, "--out", tmp_path / "cli2", "--name", "cli-vae2b", "--log-every", "2")
    assert [line.split()[:2] for line in r.err.splitlines() if line.startswith("step ")] == [["step", "2/3"], ["step", "3/3"]], r.err
    assert " l1 " in r.err and " total " in r.err  # the step's losses, named
    recorded = yaml.safe_load((tmp_path / "cli" / "config.yaml").read_text())
    assert recorded["steps"] == 3 and recorded["lr"] == 1e-3 and recorded["model_overrides"]["vae"]["base"] == 8
    r = run(capsys, "zoo", "ls", "--json")
    names = {c["name"]: c for c in json.loads(r.out)}
    assert names["cli-vae2"]["stage"] == "vae2" and names["cli-vae2"]["datasets"][0]["ref"] == "x"
    r = run(capsys, "zoo", "ls")
    assert "cli-vae2" in r.out
    r = run(capsys, "zoo", "info", "cli-vae2", "--json")
    d = json.loads(r.out)
    tensors, card = checkpoint.load(d["path"])
    assert d == {**card, "path": d["path"], "parameters": sum(t.numel() for t in tensors.values())} and d["parameters"] > 1000
    r = run(capsys, "zoo", "info", "cli-vae2")  # the card's gist, readable
    assert r.code == 0 and r.out.startswith(f"cli-vae2  (model vae, stage vae2, {d['parameters']:,} parameters)"), r.out
    assert "trained on: x\n" in r.out and '"base": 8' in r.out
    for settings, msg in [({"steps": "abc"}, "setting steps: expected int"), ({"steps": 2.5}, "setting steps: expected int"),
                          ({"lr": "fast"}, "setting lr: expected float"), ({"model_overrides": 5}, "setting model_overrides: expected dict"),
                          ({"model_overrides": {"vea": {}}}, "model_overrides.vea: expected settings of one of")]:  # fmt: skip
        conf.write_text(yaml.safe_dump(settings))
        r = run(capsys, "train", "scratch", "--pairs", "x", "--config", conf)
        assert one_line_error(r) and msg in r.err, (settings, r.err)
    for args, msg in [
        (["train", "vae1", "--real", "r"], "needs --synthetic"),
        (["train", "vae2", "--clean", "nope", "--steps", "1"], "unknown dataset 'nope'"),
        (["train", "scratch", "--pairs", "r", "--steps", "1", "--out", str(tmp_path / "e1")], "has no field 'mask'"),
        (["train", "vae2", "--clean", "x", "--size", "1000", "--steps", "1", "--out", str(tmp_path / "e2")], "larger than the tiles"),
        (["train", "vae2", "--clean", "x", "--size", "30", "--steps", "1"], "multiple of the VAE's stride (4)"),
        (["train", "scratch", "--pairs", "x", "--beta1", "1.5", "--steps", "1"], "'--beta1': 1.5 is not in the range 0<=x<1"),
        (["train", "scratch", "--pairs", "x", "--seed", "-1", "--steps", "1"], "'--seed' / '-s': -1 is not in the range 0<=x<=9007199254740991"),
        (["train", "scratch", "--pairs", "x", "--ckpt-every", "0", "--steps", "1"], "'--ckpt-every': 0 is not in the range x>=1"),
        (["train", "scratch", "--pairs", "x", "--lr", "inf", "--steps", "1"], "--lr must be finite"),
        (["train", "scratch", "--pairs", "x", "--steps", "1", "--out", str(tmp_path / "bad name")], "invalid model name 'bad name'"),
        (["train", "vae1", "--real", "x", "--synthetic", "r", "--steps", "1", "--batch-size", "2"], "--real x is a synthetic dataset"),
        (["train", "vae2", "--clean", "x", "--config", str(tmp_path / "missing.yaml")], "cannot read config"),
        (["zoo", "info", "nothing"], "unknown model 'nothing'"),
        (["zoo", "info", str(tmp_path / "x.safetensors")], "no checkpoint at"),
        (["zoo", "info", "/dev/null"], "/dev/null is not a regular file (a pipe, socket or device), not a checkpoint"),
        (["restore", "builtin:real", "-m", "/dev/null", "-o", str(tmp_path / "r")], "/dev/null is not a regular file"),
        (["zoo", "bundle", "b", "--vae1", "a", "--scratch", "s"], "missing --vae2, --mapping (or --from BUNDLE"),
        (["zoo", "bundle", "b", "--from", "nothing", "--scratch", "s"], "unknown model 'nothing'"),
        (["zoo", "bundle", "b", "--from", "nothing", "--vae1", "v"], "--from keeps the bundle's VAEs"),
    ]:
        r = run(capsys, *args)
        assert one_line_error(r) and msg in r.err, (args, r.err)
    assert not (tmp_path / "bad name").exists()  # refused before any work


def test_dataloader_workers_give_the_same_batches(data, tmp_path):
    """Batches are a function of (seed, step): worker processes change nothing."""
    a = train(cfg("scratch", tmp_path / "w0", steps=3, pairs="x", name="w0", workers=0))
    b = train(cfg("scratch", tmp_path / "w2", steps=3, pairs="x", name="w2", workers=2))
    ta, _ = checkpoint.load(a["path"])
    tb, _ = checkpoint.load(b["path"])
    assert all(torch.equal(ta[k], tb[k]) for k in ta)


def test_huge_workers_start_no_more_loader_processes_than_cores_or_batches(data, tmp_path, monkeypatch):
    """``--workers 1000000`` asked the DataLoader for a million processes and it started them at once; the
    loader gets no more than the cores here and the batches left (the DataLoader is stopped before it starts any)."""
    from zoo import train as training

    asked = []

    class Stop(Exception):
        pass

    def loader(*args, num_workers=0, **kw):
        asked.append(num_workers)
        raise Stop

    monkeypatch.setattr(torch.utils.data, "DataLoader", loader)
    # four cores, whatever this machine has: on two (CI) or one, cores and batches left were the same cap
    monkeypatch.setattr(training.os, "sched_getaffinity", lambda pid: {0, 1, 2, 3}, raising=False)
    for steps, start in ((10**5, 0), (12, 10)):
        with pytest.raises(Stop):
            training.Batches("x", ("degraded", "mask"), cfg("scratch", tmp_path, steps=steps, workers=10**6), 4, 0, start, "cpu")
    assert asked == [4, 2]


def test_sigterm_to_the_process_group_stops_training_with_loader_workers_in_one_line(data, tmp_path):
    """``timeout`` and service managers send SIGTERM to every process of the job: torch's loader workers died of it
    (they exit quietly only on their parent's) and the run failed with 'internal RuntimeError: DataLoader worker
    … is killed by signal', or printed torch's traceback after 'terminated'."""
    import os
    import signal
    import subprocess
    import sys
    import time

    (tmp_path / "tiny.yaml").write_text(yaml.safe_dump({"model_overrides": TINY}))
    args = ["train", "scratch", "--pairs", "x", "--steps", "100000", "--size", "32", "--batch-size", "2", "--workers", "2",
            "--config", str(tmp_path / "tiny.yaml"), "--out", str(tmp_path / "run"), "--name", "term"]  # fmt: skip
    p = subprocess.Popen([sys.executable, "-c", "import cli; cli.main()", *args], env={**os.environ, "DAGUERRE_HOME": str(data)},
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)  # fmt: skip
    log, deadline = tmp_path / "run" / "losses.csv", time.monotonic() + 120
    while time.monotonic() < deadline and p.poll() is None and not (log.exists() and len(log.read_text().splitlines()) > 20):
        time.sleep(0.05)
    assert p.poll() is None, "training ended before it could be stopped"
    os.killpg(p.pid, signal.SIGTERM)
    _, err = p.communicate(timeout=60)
    text = err.decode()
    assert p.returncode == 143 and text.strip().endswith("terminated"), (p.returncode, text[-2000:])
    assert "Traceback" not in text and "internal" not in text, text[-2000:]


def test_a_model_store_that_cannot_be_written_is_refused_before_the_steps(data, tmp_path, monkeypatch):
    """A read-only (or misplaced) ``$DAGUERRE_HOME`` failed only at the registration, after every step."""
    (tmp_path / "file").write_text("not a folder")
    monkeypatch.setenv("DAGUERRE_HOME", str(tmp_path / "file" / "home"))
    pairs = str(data / "datasets" / "x" / "v1.zarr")
    with pytest.raises(DaguerreError, match="model store .* cannot be written"):
        train(cfg("scratch", tmp_path / "run", steps=2, pairs=pairs, name="ro"))
    assert not (tmp_path / "run" / "last.safetensors").exists()


def test_training_leaves_torchs_global_generator_alone(data, tmp_path):
    """Model building and the DataLoader drew from torch's global generator: a script's own torch
    stream changed with every training run it started."""
    state = torch.random.get_rng_state()
    train(cfg("scratch", tmp_path / "s", pairs="x", steps=2, workers=1, sample_every=2, ckpt_every=2, name="rng-free"))
    assert torch.equal(state, torch.random.get_rng_state())


def test_vae1_latent_adversary_labels_and_gradient_flow():
    """The latent term moves only the encoder, towards D(E(r)) = 0; the latent D learns r → 1, x → 0 on detached latents."""
    from zoo.registry import create_model
    from zoo.train import Run, _vae_step

    c = cfg("vae1", "unused", real="r", synthetic="x", kl_weight=0.0, l1_weight=0.0, gan_weight=0.0, fm_weight=0.0)
    vae = create_model("vae", TINY["vae"], seed=1)
    DL = create_model("latent_discriminator", {**TINY["latent_discriminator"], "latent": 8}, seed=2)
    D = create_model("patch_discriminator", TINY["patch_discriminator"], seed=3)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        DL.net[-1].bias.fill_(0.5)  # scores between the labels: each label pulls its own way
        for _ in range(30):  # spectral norm's power iteration settles before anything is measured
            DL(torch.randn(2, 8, 8, 8, generator=g))
    r, x = torch.rand(2, 3, 32, 32, generator=g) * 0.2 + 0.6, torch.rand(2, 3, 32, 32, generator=g) * 0.2 - 0.8

    def steps(g_lr, d_lr, n=3):
        opt_g, opt_d = torch.optim.Adam(vae.parameters(), lr=g_lr), torch.optim.Adam([*D.parameters(), *DL.parameters()], lr=d_lr)
        for _ in range(n):
            batches = {"real": iter([{"degraded": r}]), "synthetic": iter([{"degraded": x}])}
            run = Run({"vae": vae, "D": D, "D_latent": DL}, {}, {"G": opt_g, "D": opt_d}, batches, _vae_step, None)
            _vae_step(run, c, 0, torch.Generator().manual_seed(0))

    def scores():
        with torch.no_grad():
            DL.eval()  # no power iteration while measuring
            sr, sx = DL(vae.encode(r)[0]).mean().item(), DL(vae.encode(x)[0]).mean().item()
            DL.train()
            return sr, sx

    before = {k: v.clone() for k, v in vae.state_dict().items()}
    sr, _ = scores()
    steps(1e-3, 0.0)  # the encoder alone: real-photo latents pushed towards the synthetic label 0
    assert scores()[0] < sr
    assert all(torch.equal(before[k], v) for k, v in vae.state_dict().items() if k.startswith("decoder."))
    assert any(not torch.equal(before[k], v) for k, v in vae.state_dict().items() if k.startswith("encoder."))
    frozen = {k: v.clone() for k, v in vae.state_dict().items()}
    sr, sx = scores()
    steps(0.0, 1e-3)  # the discriminator alone: real photos up, synthetic down; the encoder untouched
    nr, nx = scores()
    assert nr - nx > sr - sx
    assert all(torch.equal(frozen[k], v) for k, v in vae.state_dict().items())


def test_lr_schedule_is_constant_then_linear_to_zero():
    c = TrainConfig(stage="scratch", lr=1e-3, decay_start=10, decay_steps=20)
    assert [c.lr_at(s) for s in (0, 9, 10)] == [1e-3, 1e-3, 1e-3]
    assert c.lr_at(20) == pytest.approx(5e-4) and c.lr_at(30) == 0.0 and c.lr_at(99) == 0.0
    assert TrainConfig(stage="scratch", lr=1e-3).lr_at(10**6) == 1e-3
    with pytest.raises(DaguerreError, match="--decay-steps must be at least 0"):
        TrainConfig(stage="scratch", pairs="x", decay_steps=-1).check()


def test_fine_tune_starts_from_init_and_decays(data, tmp_path):
    base = train(cfg("scratch", tmp_path / "base", steps=30, lr=3e-3, pairs="x", name="ft-base"))
    before = held_loss("scratch", trained_model(base))
    # a vanishing learning rate leaves the init weights where they were (a fresh initialisation is far from them)
    still = train(cfg("scratch", tmp_path / "still", steps=2, lr=1e-12, pairs="x", name="ft-still", init="ft-base"))
    a, _ = checkpoint.load(base["path"])
    b, _ = checkpoint.load(still["path"])
    assert all(torch.allclose(a[k], b[k], atol=1e-9) for k in a)
    assert still["upstream"]["init"].endswith("ft-base.safetensors")
    tuned = train(cfg("scratch", tmp_path / "ft", steps=30, lr=1e-3, pairs="x", name="ft", init="ft-base", decay_steps=30))
    assert held_loss("scratch", trained_model(tuned)) < before
    rows = list(csv.DictReader((tmp_path / "ft" / "losses.csv").open()))
    assert [int(r["step"]) for r in rows] == list(range(1, 31))
    # a checkpoint saved before a setting existed (the shipped detector predates seed_threshold) still seeds a fine-tune
    t, card = checkpoint.load(base["path"])
    del card["config"]["seed_threshold"]
    store.register("ft-older", t, card)
    train(cfg("scratch", tmp_path / "older", steps=1, pairs="x", name="ft-o", init="ft-older"))
    card["config"]["no_such_setting"] = 1
    store.register("ft-alien", t, card)
    with pytest.raises(DaguerreError, match="--init ft-alien: its scratch_unet configuration differs"):
        train(cfg("scratch", tmp_path / "alien", steps=1, pairs="x", init="ft-alien"))
    other = {**TINY, "scratch_unet": {"base": 4, "depth": 2}}
    with pytest.raises(DaguerreError, match="--init ft-base: its scratch_unet configuration differs"):
        train(cfg("scratch", tmp_path / "o", steps=1, pairs="x", init="ft-base", model_overrides=other))
    with pytest.raises(DaguerreError, match="no checkpoint|unknown model"):
        train(cfg("scratch", tmp_path / "n", steps=1, pairs="x", init="nothing-here"))
    with pytest.raises(DaguerreError, match="are the same model: the run would overwrite what it starts from"):
        train(cfg("scratch", tmp_path / "same", steps=1, pairs="x", init="ft-base", name="ft-base"))
    store.register("ft-vae", {"w": torch.zeros(2)}, {"model": "vae", "config": {}})
    with pytest.raises(DaguerreError, match="--init ft-vae is a 'vae' checkpoint, expected 'scratch_unet'"):
        train(cfg("scratch", tmp_path / "k", steps=1, pairs="x", init="ft-vae"))


def test_a_fine_tune_resumes_without_its_init_checkpoint(data, tmp_path):
    """A resumed run does not read --init again, yet it looked it up first: a fine-tune whose init model was
    removed (or a path no longer there) could not resume ("unknown model")."""
    train(cfg("vae2", tmp_path / "base", steps=1, clean="x", name="gone-base"))
    train(cfg("vae2", tmp_path / "ft", steps=1, clean="x", name="gone-ft", init="gone-base"))
    for f in store.models_dir().glob("gone-base.*"):
        f.unlink()
    card = train(cfg("vae2", tmp_path / "ft", steps=2, clean="x", name="gone-ft", init="gone-base"))
    assert card["steps"] == 2 and card["upstream"]["init"] == "gone-base"
    assert [int(r["step"]) for r in csv.DictReader((tmp_path / "ft" / "losses.csv").open())] == [1, 2]
    with pytest.raises(DaguerreError, match="unknown model 'gone-base'"):  # a new run reads it: still refused, before any work
        train(cfg("vae2", tmp_path / "fresh", steps=1, clean="x", name="gone-ft2", init="gone-base"))
    assert not (tmp_path / "fresh").exists()


def test_init_refuses_a_checkpoint_of_another_stage_or_kind(capsys, data, tmp_path):
    """`train vae1 --init` took a VAE2 (VAE1's architecture, another latent space) and fine-tuned it as a VAE1."""
    v1 = train(cfg("vae1", tmp_path / "v1", steps=1, real="r", synthetic="x", name="init-vae1"))
    train(cfg("vae2", tmp_path / "v2", steps=1, clean="x", name="init-vae2"))
    train(cfg("scratch", tmp_path / "s", steps=1, pairs="x", name="init-scratch"))
    conf = tmp_path / "c.yaml"
    conf.write_text(yaml.safe_dump({"steps": 1, "batch_size": 4, "size": 32, "workers": 0, "model_overrides": TINY}))
    out = tmp_path / "ft"
    for args, msg in [
        (["vae1", "--real", "r", "--synthetic", "x", "--init", "init-vae2"], "--init init-vae2 was trained as vae2, not vae1"),
        (["vae2", "--clean", "x", "--init", "init-vae1"], "--init init-vae1 was trained as vae1, not vae2"),
        (["vae2", "--clean", "x", "--init", "init-scratch"], "--init init-scratch is a 'scratch_unet' checkpoint, expected 'vae'"),
        (["mapping", "--pairs", "x", "--vae1", "init-vae1", "--vae2", "init-vae2", "--init", "init-vae1"],
         "--init init-vae1 is a 'vae' checkpoint, expected 'mapping'"),
    ]:  # fmt: skip
        r = run(capsys, "train", *args, "--config", conf, "--out", out, "--name", "init-ft")
        assert one_line_error(r) and msg in r.err, (args, r.err)
        assert not out.exists() and not (store.models_dir() / "init-ft.safetensors").exists()  # refused before any work
    r = run(capsys, "train", "vae1", "--real", "r", "--synthetic", "x", "--init", "init-vae1", "--config", conf, "--out", out, "--name", "init-ft")
    assert r.code == 0 and checkpoint.load(store.resolve("init-ft"))[1]["upstream"]["init"] == v1["path"], r.err


def test_config_numbers_are_yaml_1_2_and_keys_unique(tmp_path):
    """PyYAML's YAML 1.1 read `lr: 1e-4` as the string '1e-4' (refused as not a float)."""
    from zoo.train import run_command_config

    (tmp_path / "c.yaml").write_text("lr: 1e-4\nkl_weight: 5E-3\nsteps: 2\n")
    c = run_command_config("vae2", {"clean": "x"}, str(tmp_path / "c.yaml"))
    assert c.lr == 1e-4 and c.kl_weight == 5e-3 and c.steps == 2
    (tmp_path / "d.yaml").write_text("lr: 1e-4\nlr: 1e-3\n")
    with pytest.raises(DaguerreError, match="cannot read config .*duplicate key 'lr'"):
        run_command_config("vae2", {"clean": "x"}, str(tmp_path / "d.yaml"))


def test_config_alias_bombs_are_refused_when_read(capsys, tmp_path):
    """Recipes counted the values YAML aliases multiply; training configs did not: 1 KB of nested aliases in a
    setting made `train` hang while it wrote the value into its type error (10^9 values)."""
    import time

    from zoo.train import run_command_config

    value = '&a ["x", "x", "x", "x", "x", "x", "x", "x", "x"]'
    for name, prev in zip("bcdefghi", "abcdefgh"):
        value = f"&{name} [{value}, " + ", ".join([f"*{prev}"] * 8) + "]"
    (tmp_path / "bomb.yaml").write_text(f"model_overrides:\n  vae:\n    n_down: {value}\n")
    t0 = time.perf_counter()
    with pytest.raises(DaguerreError, match="cannot read config .*at most 100,000 values"):
        run_command_config("vae2", {"clean": "x"}, str(tmp_path / "bomb.yaml"))
    r = run(capsys, "train", "vae2", "--clean", "x", "--config", tmp_path / "bomb.yaml", "--out", tmp_path / "run")
    assert one_line_error(r) and "at most 100,000 values" in r.err and time.perf_counter() - t0 < 10


def test_default_training_configs_are_valid():
    """Every config zoo/default/train.sh uses parses into a TrainConfig (a typo would surface hours into training)."""
    import re

    from zoo.train import run_command_config

    root = Path(__file__).resolve().parents[1] / "zoo" / "default"
    used = re.findall(r"train (\w+) --config (zoo/default/[\w-]+\.yaml)", (root / "train.sh").read_text())
    assert len(used) == 7, used
    for stage, path in used:
        c = run_command_config(stage, {}, str(root.parents[1] / path))
        assert c.preset == "default" and c.steps > 0
        assert c.decay_steps == 0 or c.lr_at(c.steps - 1) < c.lr  # a decay ends inside the run
    # a phase that continues another draws its own batches, not the earlier phase's again
    seeds = {}
    for stage, path in re.findall(r"train (\w+) --config (zoo/default/[\w-]+\.yaml)", (root / "train.sh").read_text()):
        seeds.setdefault(stage, []).append(run_command_config(stage, {}, str(root.parents[1] / path)).seed)
    assert all(len(set(s)) == len(s) for s in seeds.values()), seeds
    # the smoke run (COUNT, STEPS, PUBLISH=0; docs/restore.md) reaches every dataset and every stage
    script = (root / "train.sh").read_text()
    commands = re.sub(r"\\\n\s*", " ", script).splitlines()
    creates = [c for c in commands if c.startswith("$DG dataset create")]
    trains = [c for c in commands if c.startswith("$DG train ")]
    assert len(creates) == 7 and all(re.search(r"--count \$\(n \d+\)", c) for c in creates), creates
    assert len(trains) == 7 and all(c.rstrip().endswith(" $S") for c in trains), trains
    assert 'if [ "$PUBLISH" = 1 ]; then $PY -m zoo.default.publish' in script


def test_default_datasets_use_recipes_pinned_to_their_operator_versions():
    """train.sh rebuilds the published test and validation sets byte for byte: a builtin recipe follows
    its operators' newest versions (stains v2, film_grain v2 changed old-photo), a pinned file does not."""
    import re

    from degrade import load_recipe
    from degrade.recipe import builtin_recipes

    root = Path(__file__).resolve().parents[1]
    script = re.sub(r"\\\n\s*", " ", (root / "zoo" / "default" / "train.sh").read_text())
    recipes = re.findall(r"dataset create [\w-]+ --recipe (\S+)", script)
    assert len(recipes) == 6 and not set(recipes) & set(builtin_recipes()), recipes
    for path in set(recipes):
        text = (root / path).read_text()
        recipe = load_recipe(root / path)
        assert text.startswith(f"# recipe_hash: {recipe.hash}\n"), path  # the pin is the hash it was published with
        assert text.count("op: ") == text.count("version: ") == len(recipe.operators()), path
    published = {"zoo/default/old-photo-v1.yaml": "e50094dd", "zoo/default/bopbtl-v1.yaml": "875c7a4e",  # the card's test sets
                 "zoo/default/train-mix.yaml": "10a31402"}  # fmt: skip  (and its training data: every part's datasets)
    assert {p: load_recipe(root / p).hash[:8] for p in published} == published


def test_training_photos_take_each_wallpapers_largest_size(tmp_path):
    """A listed Debian photograph is found at whatever sizes the installed package ships, or reported missing."""
    from zoo.default.sources import PLASMA_PHOTOS, debian_photos, largest_image

    images = tmp_path / PLASMA_PHOTOS[0] / "contents" / "images"
    images.mkdir(parents=True)
    for name in ("640x480.jpg", "2560x1440.jpg", "2560x1600.jpg", "1920x1200.jpg", "notes.jpg"):
        (images / name).write_bytes(b"")
    assert largest_image(images) == images / "2560x1600.jpg"
    assert largest_image(tmp_path / "absent") is None
    found, missing = debian_photos(tmp_path)
    assert str(images / "2560x1600.jpg") in found and "GPL" in found[str(images / "2560x1600.jpg")]
    assert set(PLASMA_PHOTOS[1:]) <= set(missing) and PLASMA_PHOTOS[0] not in missing


def test_registered_models_are_never_overwritten_by_accident(data, tmp_path, monkeypatch):
    """A dotted name was saved over another model (V2.new → V2.safetensors); an existing name, even the
    shipped default's, was replaced silently; a diverged run was registered as if it were fine."""
    first = train(cfg("vae2", tmp_path / "a", steps=1, clean="x", name="V2"))
    dotted = train(cfg("vae2", tmp_path / "b", steps=1, clean="x", name="V2.new"))
    assert Path(dotted["path"]).name == "V2.new.safetensors" and Path(first["path"]).exists()
    assert checkpoint.load(store.resolve("V2"))[1]["run"] == str(tmp_path / "a")
    with pytest.raises(DaguerreError, match="model 'V2' is already registered"):
        train(cfg("vae2", tmp_path / "c", steps=1, clean="x", name="V2"))
    before = store.resolve("V2").read_bytes()
    for bad in ("V2.json", "V2.safetensors"):  # saved as V2.safetensors, over V2, without a word
        with pytest.raises(DaguerreError, match=f"invalid model name '{bad}': .*not ending in .json or .safetensors"):
            store.register(bad, {"w": torch.zeros(2)}, {"model": "vae"})
        with pytest.raises(DaguerreError, match=r"not ending in .json or .safetensors \(set --name\)"):
            train(cfg("vae2", tmp_path / "g", steps=1, clean="x", name=bad))
    assert store.resolve("V2").read_bytes() == before and not (tmp_path / "g").exists()
    again = train(cfg("vae2", tmp_path / "a", steps=1, clean="x", name="V2"))  # the same run, re-run: its own name
    assert again["name"] == "V2" and store.resolve("V2").read_bytes() == before  # untouched: a mapping pins its hash
    replaced = train(cfg("vae2", tmp_path / "c", steps=1, clean="x", name="V2"), replace=True)
    assert checkpoint.load(store.resolve("V2"))[1]["run"] == str(tmp_path / "c") and replaced["name"] == "V2"
    with pytest.raises(DaguerreError, match="'default' is the name of a shipped model, which a store model of that name would hide"):
        train(cfg("vae2", tmp_path / "d", steps=1, clean="x", name="default"))
    with pytest.raises(DaguerreError, match=r"training diverged at step \d \(\w+ is nan\); nothing registered"):
        train(cfg("vae2", tmp_path / "e", steps=3, clean="x", name="diverged", lr=1e30))
    assert not (store.models_dir() / "diverged.safetensors").exists()
    train(cfg("vae2", tmp_path / "e", steps=2, clean="x", name="calmer", lr=1e-4))  # no checkpoint was kept: the same --out
    import zoo.train as training

    real = training._vae_step
    monkeypatch.setattr(training, "_vae_step", lambda run, c, step, gen: {**real(run, c, step, gen), **({"l1": float("nan")} if step == 2 else {})})
    with pytest.raises(DaguerreError, match=r"diverged at step 3 \(l1 is nan\); nothing registered: lower --lr and run in another --out"):
        train(cfg("vae2", tmp_path / "f", steps=4, clean="x", name="late", ckpt_every=2))  # a checkpoint at step 2: another --out
    (tmp_path / "evil.pt").write_bytes(b"\x80\x04K\x01.")
    with pytest.raises(DaguerreError, match="is not a .safetensors checkpoint"):
        store.resolve(str(tmp_path / "evil.pt"))


def test_a_run_that_diverges_to_huge_finite_losses_registers_nothing(capsys, data, tmp_path):
    """At --lr 1 or 10 the losses reached 1e13 to 1e27 without turning NaN or infinite, and the ruined model was registered."""
    conf = tmp_path / "c.yaml"
    conf.write_text(yaml.safe_dump({"lr": 1.0, "steps": 4, "batch_size": 4, "size": 32, "workers": 0, "model_overrides": TINY}))
    r = run(capsys, "train", "vae2", "--clean", "x", "--config", conf, "--out", tmp_path / "v2", "--name", "huge-vae2")
    assert one_line_error(r) and "training diverged at step 2 (kl is " in r.err and ", over 1e+06); nothing registered: lower --lr" in r.err, r.err
    with pytest.raises(DaguerreError, match=r"training diverged at step 2 \(bce is [\d.]+e\+\d+, over 1e\+06\); nothing registered"):
        train(cfg("scratch", tmp_path / "s", steps=4, pairs="x", lr=10.0, name="huge-scratch"))
    assert not any((store.models_dir() / f"huge-{s}.safetensors").exists() for s in ("vae2", "scratch"))
    r = run(capsys, "train", "vae2", "--clean", "x", "--config", conf, "--lr", "1e-3", "--out", tmp_path / "calm", "--name", "calm-vae2")
    assert r.code == 0 and "registered calm-vae2" in r.out, r.err


def test_the_divergence_guard_passes_every_logged_step_of_the_shipped_models():
    from zoo.train import LOSS_LIMIT, _diverged

    logs = sorted((Path(__file__).parents[1] / "zoo" / "default").rglob("*losses.csv"))
    assert len(logs) >= 7
    for log in logs:
        for row in csv.DictReader(log.open()):
            assert not _diverged({k: float(v) for k, v in row.items() if k not in ("step", "seconds", "data_seconds")}), (log, row)
    parts = json.loads((store.SHIPPED / "default.json").read_text())["parts"]
    assert {p["stage"] for p in parts.values()} == {"vae1", "vae2", "mapping", "scratch"}
    assert all(not _diverged(p["losses"]) for p in parts.values())
    assert _diverged({"kl": 2 * LOSS_LIMIT, "total": 1.0}) == "kl is 2e+06, over 1e+06"
    assert _diverged({"l1": 0.5, "total": float("nan")}) == "total is nan" and not _diverged({"l1": 0.5, "total": 10 * LOSS_LIMIT})


def test_zoo_ls_survives_a_malformed_card_and_training_states_are_named(capsys, data, tmp_path):
    from cli_helpers import run

    store.register("odd", {"w": torch.zeros(2)}, {"model": "vae", "stage": "vae1", "datasets": "abc", "losses": [1, 2]})
    good = train(cfg("vae2", tmp_path / "run", steps=1, clean="x", name="after-odd"))
    r = run(capsys, "zoo", "ls")
    assert r.code == 0 and "odd" in r.out and good["name"] in r.out, r.err
    with pytest.raises(DaguerreError, match="is a run's training state, not a trained 'vae' model"):
        store.load(str(tmp_path / "run" / "last"), "vae", "--init")


def test_inputs_that_would_train_or_calibrate_nonsense_are_refused(data, tmp_path):
    from pipelines import build_spec, create_dataset
    from test_restore import make_random_bundle
    from zoo.bundle import calibrate_threshold as calibrate

    with pytest.raises(DaguerreError, match="a batch of 100000 samples from x, which holds"):
        train(cfg("vae2", tmp_path / "big", steps=1, clean="x", batch_size=100000, name="big-batch"))
    train(cfg("vae1", tmp_path / "v1", steps=1, real="r", synthetic="x", name="sw-vae1"))
    train(cfg("vae2", tmp_path / "v2", steps=1, clean="x", name="sw-vae2"))
    with pytest.raises(DaguerreError, match="--vae1 sw-vae2 was trained as vae2, not vae1"):
        train(cfg("mapping", tmp_path / "m", steps=1, pairs="x", vae1="sw-vae2", vae2="sw-vae1", name="sw-map"))
    make_random_bundle("cal-rb")
    create_dataset(build_spec("nomask", "builtin:samples", 4, 32, 0, {"steps": [{"op": "gaussian_blur"}]}), workers=1, scheduler="threads")
    before = checkpoint.load(store.resolve("cal-rb"))[1]
    with pytest.raises(DaguerreError, match="no defect pixel in the masks"):
        calibrate("cal-rb", ["nomask", "nomask"], n=4)
    assert checkpoint.load(store.resolve("cal-rb"))[1] == before  # nothing was changed


def test_a_refused_run_leaves_no_folder_and_a_resumed_one_no_scratch_files(data, tmp_path):
    with pytest.raises(DaguerreError):
        train(cfg("vae2", tmp_path / "refused", steps=1, clean="x", size=4096, name="refused"))
    assert not (tmp_path / "refused").exists()
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / ".a1b2c3_x.tmp").write_bytes(b"half a checkpoint")  # what kill -9 mid-write leaves (mkstemp's name)
    (tmp_path / "run" / ".notes.tmp").write_text("mine")  # not atomic_write_bytes' own: kept
    train(cfg("vae2", tmp_path / "run", steps=1, clean="x", name="after-kill"))
    assert [p.name for p in (tmp_path / "run").glob(".*.tmp")] == [".notes.tmp"]
    from pipelines.catalog import file_lock

    with file_lock(tmp_path / "run" / ".lock", "held"):  # another training in the same folder (it deleted the first's log)
        with pytest.raises(DaguerreError, match="is in use by another training"):
            train(cfg("vae2", tmp_path / "run", steps=2, clean="x", name="after-kill"))


def test_a_fresh_run_never_replaces_files_it_did_not_write(data, tmp_path):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "config.yaml").write_text("my: notes\n")
    (mine / "losses.csv").write_text("my,data\n")
    with pytest.raises(DaguerreError, match="was not written by a daguerre training run"):
        train(cfg("vae2", mine, steps=1, clean="x", name="foreign-out"))
    assert (mine / "config.yaml").read_text() == "my: notes\n" and (mine / "losses.csv").read_text() == "my,data\n"
    assert not (store.models_dir() / "foreign-out.safetensors").exists()
    only_log = tmp_path / "only-log"
    only_log.mkdir()
    (only_log / "losses.png").write_bytes(b"a plot of mine")
    with pytest.raises(DaguerreError, match="losses.png exists and was not written"):
        train(cfg("vae2", only_log, steps=1, clean="x", name="foreign-out"))
    # a run killed before its first checkpoint leaves its own config and log: run again, it starts over
    killed = tmp_path / "killed"
    killed.mkdir()
    (killed / "config.yaml").write_text(yaml.safe_dump(dataclasses.asdict(cfg("scratch", killed, pairs="x")), sort_keys=False))
    (killed / "losses.csv").write_text("step,bce,f1,total,seconds,data_seconds\n1,0.5,0.1,0.5,0.1,0.0\n")
    card = train(cfg("vae2", killed, steps=1, clean="x", name="after-early-kill"))
    assert card["steps"] == 1 and yaml.safe_load((killed / "config.yaml").read_text())["stage"] == "vae2"


def test_a_fifo_or_device_named_config_yaml_in_a_fresh_runs_out_is_refused_unread(tmp_path):
    """--out holding a FIFO named config.yaml waited for a writer for ever (a link to /dev/zero: read to 16 MiB)."""
    from cli_helpers import refusals_of_fifo_and_zero

    assert refusals_of_fifo_and_zero(tmp_path, "config.yaml", "zoo.train", "_check_fresh_out") == [
        f"{tmp_path / d / 'config.yaml'} exists and was not written by a daguerre training run; "
        "give --out a folder of the run's own (a new or a run folder)" for d in ("fifo", "zero")]


@pytest.mark.parametrize("config", ["missing", "abc", [1, 2], None])
def test_a_card_without_a_model_configuration_is_a_clear_error(data, tmp_path, config):
    from zoo.registry import create_model

    vae1 = train(cfg("vae1", tmp_path / "v1", steps=1, real="r", synthetic="x", name="cfgless-vae1"), replace=True)
    tensors, card = checkpoint.load(vae1["path"])
    if config == "missing":
        del card["config"]
    else:
        card["config"] = config
    checkpoint.save(tmp_path / "edited", tensors, card)
    edited = str(tmp_path / "edited.safetensors")
    with pytest.raises(DaguerreError, match="its card has no model configuration"):
        train(cfg("mapping", tmp_path / "m", steps=1, pairs="x", vae1=edited, vae2=edited, name="cfgless-map"))
    with pytest.raises(DaguerreError, match="its card has no model configuration"):
        train(cfg("vae1", tmp_path / "ft", steps=1, real="r", synthetic="x", init=edited, name="cfgless-ft"))
    if config is not None:
        with pytest.raises(DaguerreError, match="config must be a VAEConfig or a mapping"):
            create_model("vae", card.get("config", "missing"))


@pytest.mark.parametrize("stage, settings, message", [
    ("scratch", {"lr": 1e300}, "--lr must be finite"),
    ("scratch", {"lr": 3e38}, r"--lr 3e\+38 is too large for Adam with --beta1 0.5"),  # was an internal RuntimeError at step 1
    ("scratch", {"seed": 10**22}, "--seed must be at most"),
    ("vae2", {"kl_weight": float("nan")}, "setting kl_weight must be a finite number of at least 0"),
    ("vae2", {"l1_weight": -1.0}, "setting l1_weight must be a finite number of at least 0"),
    ("vae2", {"size": 32, "model_overrides": {"vae": {"n_down": 5}}}, "--size must be at least twice the VAE's stride"),
])  # fmt: skip


def test_settings_that_crashed_or_trained_nonsense_are_refused_up_front(data, tmp_path, stage, settings, message):
    out = tmp_path / "run"
    with pytest.raises(DaguerreError, match=message):
        train(cfg(stage, out, steps=1, clean="x", pairs="x", name="bad-setting", **settings))
    assert not out.exists() and not (store.models_dir() / "bad-setting.safetensors").exists()


def test_zoo_ls_survives_an_unreadable_card(capsys, data, tmp_path):
    good = train(cfg("vae2", tmp_path / "run", steps=1, clean="x", name="before-unreadable"))
    models = store.models_dir()
    src = models / "before-unreadable.safetensors"
    (models / "dangling.safetensors").write_bytes(src.read_bytes())
    (models / "dangling.json").symlink_to(tmp_path / "moved-away.json")  # a card linked from a folder since removed
    (models / "folder.safetensors").write_bytes(src.read_bytes())
    (models / "folder.json").mkdir()
    try:
        r = run(capsys, "zoo", "ls")
        assert r.code == 0 and good["name"] in r.out, r.err
    finally:
        for p in ("dangling.safetensors", "dangling.json", "folder.safetensors"):
            (models / p).unlink()
        (models / "folder.json").rmdir()


def test_a_run_folder_inside_the_dataset_catalog_is_refused(data):
    """``--out $DAGUERRE_HOME/datasets/NAME`` trained, and the next ``dataset gc`` deleted the run (its
    checkpoint to resume from) as data no catalog entry lists."""
    from pipelines.refs import daguerre_home

    out = daguerre_home() / "datasets" / "x" / "run"
    with pytest.raises(DaguerreError, match="which the dataset catalog manages"):
        train(cfg("vae2", out, steps=1, clean="x", name="in-catalog"))
    assert not out.exists()


def test_zoo_ls_has_a_header_and_a_bundles_datasets_and_held_out_metrics(capsys):
    """A bundle's row named its parts' roles as what it was trained on, and showed no metrics (they are per test set)."""
    card = json.loads((Path(store.SHIPPED) / "default.json").read_text())
    r = run(capsys, "zoo", "ls")
    assert r.code == 0, r.err
    lines = r.out.splitlines()
    assert lines[0].split()[:4] == ["name", "stage", "size", "origin"]
    row = next(line for line in lines if line.startswith("default "))
    refs = dict.fromkeys(d["ref"] for p in card["parts"].values() for d in p["datasets"])
    assert f"on {', '.join(refs)} " in row
    for test_set, m in card["metrics"].items():
        assert f"{test_set}: gain_psnr={m['gain_psnr']:.3g}/detection_f1={m['detection_f1']:.3g}" in row


def test_a_mapping_crop_is_checked_against_its_vaes_stride(data, tmp_path):
    """The check read the stride of the preset's VAE, not of the trained --vae1/--vae2: VAEs of stride 8 and
    --size 36 (a multiple of the preset's 4) passed it and the first step failed with an internal RuntimeError."""
    from zoo import create_model

    for stage in ("vae1", "vae2"):
        vae = create_model("vae", {**TINY["vae"], "n_down": 3}, seed=0)
        store.register(f"s8-{stage}", checkpoint.module_tensors("model", vae), {"model": "vae", "config": dataclasses.asdict(vae.config), "stage": stage})
    out = tmp_path / "m"
    with pytest.raises(DaguerreError, match=r"--size must be a multiple of the VAE's stride \(8\), got 36"):
        train(cfg("mapping", out, steps=1, size=36, pairs="x", vae1="s8-vae1", vae2="s8-vae2", name="s8-map"))
    assert not out.exists()


def test_the_cards_timing_covers_every_logged_step(data, tmp_path):
    """A run that resumed with no step left (killed between its last checkpoint and its registration) said
    0.0 s a step, and a resumed run timed only the steps since it resumed; both now read the whole log."""
    kw = dict(pairs="x", name="timed", ckpt_every=2)
    train(cfg("scratch", tmp_path / "t", steps=2, **kw))
    card = train(cfg("scratch", tmp_path / "t", steps=4, **kw))
    rows = list(csv.DictReader((tmp_path / "t" / "losses.csv").open()))
    seconds, data = [float(r["seconds"]) for r in rows], [float(r["data_seconds"]) for r in rows]
    assert len(rows) == 4 and card["seconds_per_step"] == pytest.approx(sum(seconds) / 4)
    assert card["data_share"] == pytest.approx(sum(data) / sum(seconds))
    for f in store.models_dir().glob("timed.*"):  # the kill came before the registration
        f.unlink()
    again = train(cfg("scratch", tmp_path / "t", steps=4, **kw))
    assert again["seconds_per_step"] == card["seconds_per_step"] > 0 and again["data_share"] == card["data_share"]


def test_zoo_rm_removes_a_model_but_not_one_that_others_were_made_from_without_force(capsys, data, tmp_path):
    """The store could register models but not remove them; a model that others record as made from it (a
    mapping's VAEs, an --init, a bundle's parts) is kept unless --force, and the dependants are named."""
    for stage, name, kw in [("vae1", "rm-v1", {"real": "r", "synthetic": "x"}), ("vae2", "rm-v2", {"clean": "x"}),
                            ("mapping", "rm-map", {"pairs": "x", "vae1": "rm-v1", "vae2": "rm-v2"}), ("scratch", "rm-det", {"pairs": "x"}),
                            ("scratch", "rm-det2", {"pairs": "x", "init": "rm-det"})]:  # fmt: skip
        train(cfg(stage, tmp_path / name, steps=1, batch_size=2, name=name, **kw))
    make_bundle("rm-b", "rm-v1", "rm-v2", "rm-map", "rm-det")
    r = run(capsys, "zoo", "rm", "rm-v1")
    assert one_line_error(r) and len(r.err.strip().splitlines()) == 1, r.err
    assert "rm-b (part vae1), rm-map (vae1); remove those first, or pass --force" in r.err, r.err
    r = run(capsys, "zoo", "rm", "rm-det")
    assert one_line_error(r) and "rm-b (part scratch), rm-det2 (init)" in r.err, r.err
    assert store.resolve("rm-v1").exists() and store.resolve("rm-det").exists()  # refused: both files kept
    size = sum((store.models_dir() / f"rm-b{ext}").stat().st_size for ext in (".safetensors", ".json"))
    r = run(capsys, "zoo", "rm", "rm-b", "--json")
    d = json.loads(r.out)
    assert r.code == 0 and d["name"] == "rm-b" and d["bytes"] == size and not d["dependants"], r.err
    assert sorted(Path(f["path"]).name for f in d["files"]) == ["rm-b.json", "rm-b.safetensors"]
    r = run(capsys, "zoo", "rm", "rm-det2")
    assert r.code == 0 and r.out.startswith("removed rm-det2: 2 file(s), ") and r.out.strip().endswith("freed"), r.out
    assert run(capsys, "zoo", "rm", "rm-det").code == 0  # its dependants are gone
    r = run(capsys, "zoo", "rm", "rm-v1")
    assert one_line_error(r) and "were made from: rm-map (vae1);" in r.err, r.err
    r = run(capsys, "zoo", "rm", "rm-v1", "--force")
    assert r.code == 0 and "removed rm-v1" in r.out and "still recorded as made from it: rm-map (vae1)" in r.out, r.out
    # a VAE retrained under the name since is not what the mapping was made from (it pins the file's SHA-256)
    train(cfg("vae2", tmp_path / "rm-v2-new", steps=1, batch_size=2, name="rm-v2", clean="x"), replace=True)
    assert run(capsys, "zoo", "rm", "rm-v2").code == 0
    names = {c["name"] for c in json.loads(run(capsys, "zoo", "ls", "--json").out)}
    assert "rm-map" in names and not names & {"rm-v1", "rm-v2", "rm-det", "rm-det2", "rm-b"}
    assert "rm-b" not in run(capsys, "zoo", "ls").out
    assert not [p.name for p in store.models_dir().iterdir() if p.name.startswith((".rm-", "rm-")) and not p.name.startswith("rm-map.")]
    for args, msg in [(["nothing"], "no model 'nothing' in the store"), (["rm-mab"], "(did you mean rm-map?)"),
                      (["rm-v1"], "no model 'rm-v1'"), (["default"], "'default' is a shipped model"),
                      ([str(store.models_dir() / "rm-map.safetensors")], "not a path or file"), (["rm-map.json"], "not a path or file"),
                      (["../rm-map"], "not a path or file"), (["bad name"], "invalid model name")]:  # fmt: skip
        r = run(capsys, "zoo", "rm", *args)
        assert one_line_error(r) and len(r.err.strip().splitlines()) == 1 and msg in r.err, (args, r.err)
    assert store.resolve("rm-map").exists()


@pytest.mark.parametrize("cut", ["between the renames", "before the delete"])
def test_a_zoo_rm_cut_short_leaves_the_store_consistent_and_the_next_rm_finishes(capsys, data, tmp_path, monkeypatch, cut):
    name = f"cut-{cut.split()[1]}"
    train(cfg("scratch", tmp_path / "run", steps=1, batch_size=2, pairs="x", name=name))
    set_aside, renamed = store._set_aside, []

    def killed(*args):
        if cut == "before the delete" or renamed:
            raise KeyboardInterrupt
        renamed.append(set_aside(*args))

    monkeypatch.setattr(store, "_delete" if cut == "before the delete" else "_set_aside", killed)
    r = run(capsys, "zoo", "rm", name)
    assert r.code != 0 and "aborted" in r.err, r.err
    monkeypatch.undo()
    left = sorted(p.name for p in store.models_dir().iterdir() if name in p.name)
    assert left and not [n for n in left if n.endswith(".safetensors")], left  # the weights went first: no half model
    r = run(capsys, "zoo", "ls", "--json")
    assert r.code == 0 and name not in {c["name"] for c in json.loads(r.out)}
    r = run(capsys, "zoo", "info", name)
    assert one_line_error(r) and f"unknown model {name!r}" in r.err, r.err
    with pytest.raises(DaguerreError, match="unknown model"):
        store.resolve(name)
    r = run(capsys, "zoo", "rm", name)
    assert r.code == 0 and r.out.startswith(f"finished removing {name} (an earlier rm was cut short)"), (r.out, r.err)
    assert not [p.name for p in store.models_dir().iterdir() if name in p.name]
    assert one_line_error(run(capsys, "zoo", "rm", name))  # now it is unknown


def test_zoo_rm_and_register_take_the_model_stores_lock(data, tmp_path, monkeypatch):
    """A register and a remove of the same name interleaved: the remove could set aside the new card of a model whose
    weights it had already moved, leaving half a pair."""
    train(cfg("scratch", tmp_path / "run", steps=1, batch_size=2, pairs="x", name="locked"))
    monkeypatch.setattr(store, "LOCK_WAIT", 0.2)
    with store.store_lock():  # another process's register or remove, as far as flock is concerned (another open file)
        with pytest.raises(DaguerreError, match="is being changed by another process"):
            store.remove("locked")
        with pytest.raises(DaguerreError, match="is being changed by another process"):
            store.register("locked2", {"w": torch.zeros(2)}, {"model": "vae"})
    assert store.resolve("locked").exists()
    with store.store_lock():  # a re-run of the finished run rewrites its card under the lock too
        with pytest.raises(DaguerreError, match="is being changed by another process"):
            train(cfg("scratch", tmp_path / "run", steps=1, batch_size=2, pairs="x", name="locked"))
    assert train(cfg("scratch", tmp_path / "run", steps=1, batch_size=2, pairs="x", name="locked"))["name"] == "locked"
    assert store.remove("locked")["name"] == "locked"
    (store.models_dir() / "linked").write_bytes(b"kept")  # a link in the store is removed, never what it points to
    (store.models_dir() / "link.safetensors").symlink_to(store.models_dir() / "linked")
    (store.models_dir() / "link.json").symlink_to(tmp_path / "outside.json")
    (tmp_path / "outside.json").write_text("{}")
    d = store.remove("link")
    assert d["bytes"] == 0 and (store.models_dir() / "linked").read_bytes() == b"kept" and (tmp_path / "outside.json").exists()
    assert not os.path.lexists(store.models_dir() / "link.safetensors") and not os.path.lexists(store.models_dir() / "link.json")


def test_a_loader_worker_drops_the_broken_pipes_of_a_stopped_trainer_and_reports_the_rest():
    """A loader worker's resource sharer thread reports through sys.excepthook: its BrokenPipeError, handing a batch to a
    training process that had just stopped on SIGTERM, printed a traceback after 'terminated' (seen under load)."""
    from zoo.train import _quiet_when_the_reader_is_gone

    seen = []
    hook = _quiet_when_the_reader_is_gone(lambda kind, value, tb: seen.append(kind))
    for kind in (BrokenPipeError, ConnectionResetError, ValueError, OSError):
        hook(kind, kind(), None)
    assert seen == [ValueError, OSError]
