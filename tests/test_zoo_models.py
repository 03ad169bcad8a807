"""zoo models: registry examples, shapes at odd sizes, the partial nonlocal property, losses by hand."""

from __future__ import annotations

import math
import re

import pytest
import torch

from cli_helpers import python_ok
from degrade.errors import DaguerreError
from zoo import losses
from zoo.mapping import PartialNonLocal, latent_mask
from zoo.registry import create_model, init_weights, list_models, make_config

NAMES = [s.name for s in list_models()]


def test_registry_has_the_five_models():
    assert set(NAMES) == {"vae", "latent_discriminator", "patch_discriminator", "mapping", "scratch_unet"}


def test_a_model_name_taken_by_a_built_in_is_refused_in_a_fresh_process():
    """register_model silently replaced a built-in (or, registered before the built-ins loaded, was
    replaced by it on the first lookup)."""
    code = ("from zoo.registry import register_model, get_spec\n"
            "try:\n    register_model('vae', object, lambda c: ())(lambda c: None)\n"
            "except ValueError as e:\n    assert 'already registered' in str(e), e\n"
            "else:\n    raise SystemExit('replaced the built-in vae')\n"
            "assert get_spec('vae').builder.__name__ != '<lambda>'\n")  # fmt: skip
    python_ok(code)


def test_a_builder_without_a_docstring_registers_with_an_empty_summary():
    """register_model took the first line of the builder's docstring: none raised IndexError."""
    code = ("import dataclasses, torch\nfrom zoo.registry import register_model, get_spec\n"
            "@dataclasses.dataclass(frozen=True)\nclass C:\n    width: int = 2\n"
            "register_model('bare', C, lambda c: (torch.zeros(1, 2),))(lambda c: torch.nn.Linear(2, c.width))\n"
            "print(repr(get_spec('bare').summary))\n")  # fmt: skip
    assert python_ok(code).strip() == "''"


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("preset", ["small", "default", "official"])
def test_every_model_builds_from_its_presets_and_runs_its_example(name, preset):
    spec = [s for s in list_models() if s.name == name][0]
    assert spec.summary and spec.example is not None, f"{name} has no example"
    m = init_weights(create_model(name, preset=preset), 0).eval()
    with torch.no_grad():
        out = m(*spec.example(m.config))
    flat = out[0] if isinstance(out, tuple) else out
    while isinstance(flat, list):
        flat = flat[-1]
    assert torch.isfinite(flat).all()


def test_unknown_model_preset_and_setting_are_clear():
    with pytest.raises(DaguerreError, match="unknown model 'vea'"):
        create_model("vea")
    with pytest.raises(DaguerreError, match="no preset 'huge'"):
        create_model("vae", preset="huge")
    with pytest.raises(DaguerreError, match="no setting 'widht'"):
        make_config("vae", widht=3)
    assert create_model("vae", config=make_config("vae"), latent=8).config.latent == 8  # overrides on a config apply
    for bad in ({"config": make_config("vae"), "widht": 3}, {"config": {"widht": 3}}):
        with pytest.raises(DaguerreError, match="no setting 'widht'"):
            create_model("vae", **bad)


@pytest.mark.parametrize("name", ["vae", "patch_discriminator", "mapping"])
def test_create_model_initialises_privately_and_leaves_torchs_generator_alone(name):
    """zoo.create_model gave weights drawn from torch's global generator (different on every call) and
    advanced it; the docs promise initialisation from a private generator."""
    state = torch.random.get_rng_state()
    a, b, c = create_model(name), create_model(name), create_model(name, seed=1)
    assert torch.equal(state, torch.random.get_rng_state())
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa) and any(not torch.equal(sa[k], sc[k]) for k in sa)
    assert all(torch.equal(v, init_weights(create_model(name, seed=None), 0).state_dict()[k]) for k, v in sa.items())
    create_model(name, seed=None)
    assert torch.equal(state, torch.random.get_rng_state())
    for bad in (-1, 1.5, True, "0"):
        with pytest.raises(DaguerreError, match="seed must be"):
            create_model(name, seed=bad)


def test_models_built_on_two_threads_at_once_leave_torchs_generator_alone(monkeypatch):
    """Each build forks torch's generator; interleaved on two threads (``serve`` loads bundles on its
    workers), the first to finish restored its saved state and the second then restored a moved one."""
    import dataclasses
    import threading

    from zoo import registry

    spec = registry.get_spec("vae")
    first_drew, second_started, first_done = threading.Event(), threading.Event(), threading.Event()

    def builder(cfg):
        if threading.current_thread().name == "first":
            torch.rand(1)
            first_drew.set()
            second_started.wait(timeout=1)  # without a lock the second forks now, from the moved state
        else:
            second_started.set()
            first_done.wait(timeout=5)  # and restores that moved state after the first has restored its own
        return spec.builder(cfg)

    monkeypatch.setitem(registry.MODELS, "vae", dataclasses.replace(spec, builder=builder))
    state = torch.random.get_rng_state()
    first = threading.Thread(target=lambda: (create_model("vae"), first_done.set()), name="first")
    second = threading.Thread(target=lambda: (first_drew.wait(timeout=5), create_model("vae")), name="second")
    first.start(), second.start()
    first.join(), second.join()
    assert torch.equal(state, torch.random.get_rng_state())


def test_a_builder_may_build_registered_parts():
    """A model made of registered parts (its builder calls create_model) waited for ever on the lock that
    the outer build held around torch's generator."""
    code = """
import dataclasses, torch
from zoo import create_model
from zoo.registry import register_model

@dataclasses.dataclass(frozen=True)
class PairConfig:
    base: int = 8

@register_model("pair-of-vaes", PairConfig, lambda c: (torch.zeros(1, 3, 32, 32),))
def pair(cfg):
    '''Two VAEs.'''
    return torch.nn.ModuleList([create_model("vae", seed=None), create_model("vae", seed=None)])

state = torch.random.get_rng_state()
m = create_model("pair-of-vaes", seed=3)
assert len(m) == 2 and torch.equal(state, torch.random.get_rng_state())
print("built")
"""
    assert python_ok(code, timeout=60).strip() == "built"


def test_loading_a_bundle_leaves_torchs_generator_alone():
    """zoo.restore's first call advanced torch's global generator (building the bundle's networks)."""
    from zoo.bundle import load_bundle

    state = torch.random.get_rng_state()
    load_bundle("default")
    assert torch.equal(state, torch.random.get_rng_state())


@pytest.mark.parametrize("name", ["vae", "patch_discriminator", "latent_discriminator"])
def test_init_is_deterministic_without_global_seeds(name):
    a = init_weights(create_model(name), 7)
    torch.rand(100)  # global RNG use in between changes nothing (spectral norm draws its vectors from it)
    b = init_weights(create_model(name), 7)
    c = init_weights(create_model(name), 8)
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert any(not torch.equal(sa[k], sc[k]) for k in sa)


@pytest.mark.parametrize("h, w", [(64, 64), (37, 53), (100, 17), (8, 8)])
def test_vae_and_detector_keep_any_size(h, w):
    vae = init_weights(create_model("vae"), 0).eval()
    x = torch.rand(1, 3, h, w) * 2 - 1
    with torch.no_grad():
        xr, mu, logvar = vae(x)
        assert xr.shape == x.shape
        s = vae.cfg.stride
        assert mu.shape == (1, vae.cfg.latent, math.ceil(h / s), math.ceil(w / s))
        u = init_weights(create_model("scratch_unet"), 0).eval()
        assert u(x).shape == (1, 1, h, w)


def test_vae_latent_is_spatial_and_sampling_uses_the_generator():
    vae = init_weights(create_model("vae"), 0)
    x = torch.rand(2, 3, 32, 48)
    mu, logvar = vae.encode(x)
    assert mu.shape == (2, 32, 8, 12) and logvar.shape == mu.shape
    g1, g2 = torch.Generator().manual_seed(1), torch.Generator().manual_seed(1)
    assert torch.equal(vae.sample(mu, logvar, g1), vae.sample(mu, logvar, g2))


def test_partial_nonlocal_ignores_damaged_sources():
    """Changing features at masked positions leaves the global branch's output unchanged elsewhere."""
    torch.manual_seed(0)  # test-local data only
    block = PartialNonLocal(8, 4, block=7)
    with torch.no_grad():
        block.W.weight.normal_()  # the real block starts at zero: make it visible
    x = torch.randn(2, 8, 6, 5)
    m = torch.zeros(2, 1, 6, 5)
    m[0, 0, 1:3, 2:4] = 1
    m[1, 0, 4, :] = 1
    y1 = block(x, m)
    x2 = x.clone()
    x2[m.expand_as(x) > 0] = torch.randn(int((m.expand_as(x) > 0).sum())) * 10
    y2 = block(x2, m)
    keep = (m == 0).expand_as(y1)
    assert torch.allclose(y1[keep], y2[keep], atol=1e-5)
    assert not torch.allclose(y1[~keep], y2[~keep])  # damaged queries do change
    # a plain (mask-free) attention would have been affected everywhere
    y3 = block(x2, torch.zeros_like(m))
    y0 = block(x, torch.zeros_like(m))
    assert not torch.allclose(y3[keep], y0[keep])
    # queries restricted to damaged positions give the same values there, with no HW×HW matrix
    y4 = block(x, m, query=m)
    assert torch.allclose(y4[~keep], y1[~keep], atol=1e-5)


def test_partial_nonlocal_equals_the_formula():
    block = PartialNonLocal(3, 2, block=1000)
    with torch.no_grad():
        block.W.weight.copy_(torch.eye(3, 2).view(3, 2, 1, 1))
        block.W.bias.zero_()
    x = torch.randn(1, 3, 2, 3)
    m = torch.tensor([[[[0, 1, 0], [0, 0, 1]]]], dtype=torch.float32)
    y = block(x, m)
    q = block.theta(x).flatten(2)[0].T
    k = block.phi(x).flatten(2)[0]
    v = block.g(x).flatten(2)[0].T
    f = torch.exp((q @ k) * block.scale)  # f_ij
    valid = 1 - m.flatten()
    s = (valid[None, :] * f) / (valid[None, :] * f).sum(1, keepdim=True)  # s_ij
    expected = (s @ v).T.reshape(1, 2, 2, 3)
    assert torch.allclose(y[:, :2], expected, atol=1e-5)


@torch.no_grad()
def _naive_partial_nonlocal(block, x, m):
    """s_ij = (1 − m_j)·f_ij / Σ_k (1 − m_k)·f_ik, one query and one key at a time (every key valid if none is)."""
    b, _, h, w = x.shape
    q, k, v = (c(x).flatten(2).double() for c in (block.theta, block.phi, block.g))
    out = torch.zeros(b, q.shape[1], h * w, dtype=torch.float64)
    for bi in range(b):
        valid = [float(mm == 0) for mm in m[bi].flatten().tolist()]
        if not any(valid):
            valid = [1.0] * len(valid)
        for i in range(h * w):
            f = [valid[j] * math.exp(float(q[bi, :, i] @ k[bi, :, j]) * block.scale) for j in range(h * w)]
            out[bi, :, i] = sum(f[j] * v[bi, :, j] for j in range(h * w)) / sum(f)
    return block.W(out.float().reshape(b, -1, h, w))


def test_partial_nonlocal_blocks_and_queries_agree_with_a_naive_reference():
    """Blocked queries (any block size), damaged-only queries and per-sample masks give the O(N²) formula's values."""
    torch.manual_seed(0)  # test-local data only
    block = PartialNonLocal(6, 4)
    with torch.no_grad():
        block.W.weight.normal_()
    x = torch.randn(3, 6, 5, 7) * 3  # large logits: the softmax must stay finite
    m = torch.zeros(3, 1, 5, 7)
    m[0, 0, 1:4, 2:5] = 1  # a hole
    m[1] = 1  # damaged everywhere
    # m[2] undamaged: plain attention
    expected = _naive_partial_nonlocal(block, x, m)
    damaged = (m > 0).expand_as(expected)
    with torch.no_grad():
        for size in (1, 4, 35, 10**6):
            block.block = size
            full, masked = block(x, m), block(x, m, query=m)
            assert torch.isfinite(full).all() and torch.allclose(full, expected, atol=1e-4)
            assert torch.allclose(masked[damaged], expected[damaged], atol=1e-4)


def test_a_photo_damaged_everywhere_is_inpainted_by_attention_at_inference():
    """Every position is a query when all are damaged: inference equals training (it gave W's bias alone)."""
    torch.manual_seed(0)  # test-local data only
    T = init_weights(create_model("mapping"), 0)
    with torch.no_grad():
        T.nonlocal_.W.weight.normal_()
    z, mask = torch.randn(2, 32, 6, 6), torch.ones(2, 1, 24, 24)
    mask[1, :, :12] = 0  # the other sample: partly damaged
    h = T.head(z)
    with torch.no_grad():
        queried = T.nonlocal_(h, torch.ones(2, 1, 6, 6), query=torch.ones(2, 1, 6, 6))
        assert torch.allclose(queried, T.nonlocal_(h, torch.ones(2, 1, 6, 6)), atol=1e-5)
        assert not torch.allclose(queried, T.nonlocal_.W.bias.view(1, -1, 1, 1).expand_as(queried))
        a, b = T.eval()(z, mask)[0], T.train()(z, mask)[0]
    assert torch.allclose(a, b, atol=1e-5)


@pytest.mark.parametrize("overrides", [{}, {"global_res": 0}, {"global_res": 3}, {"norm": "instance"}])
def test_inference_queries_only_what_the_fusion_uses_and_equals_training(overrides):
    """Skipping queries at inference changes nothing: the global branch's convolutions carry attention
    outputs from undamaged neighbours into the hole (querying the hole alone moved the shipped bundle's pixels by up to 83 levels)."""
    torch.manual_seed(0)  # test-local data only
    T = init_weights(create_model("mapping", **overrides), 0)
    with torch.no_grad():
        T.nonlocal_.W.weight.normal_()
    z, mask = torch.randn(2, 32, 12, 12), torch.zeros(2, 1, 48, 48)
    mask[0, :, 20:26, 8:30] = 1
    mask[1, :, 0:4, :] = 1
    with torch.no_grad():
        a, b = T.eval()(z, mask), T.train()(z, mask)
    assert torch.allclose(a, b, atol=1e-5)
    q = T.queried(latent_mask(mask, (12, 12)))
    if q is not None:  # fewer queries than cells, more than the hole
        assert 0 < latent_mask(mask, (12, 12)).sum() < q.sum() < q.numel() or T.cfg.global_res == 0


def test_latent_mask_marks_any_damaged_cell():
    m = torch.zeros(1, 1, 8, 8)
    m[0, 0, 5, 2] = 1
    lm = latent_mask(m, (2, 2))
    assert lm.tolist() == [[[[0.0, 0.0], [1.0, 0.0]]]]


def test_mapping_uses_the_mask_and_keeps_shapes():
    T = init_weights(create_model("mapping"), 0)
    with torch.no_grad():
        T.nonlocal_.W.weight.normal_()
    z = torch.randn(1, 32, 9, 11)
    mask = torch.zeros(1, 1, 36, 44)
    mask[..., 10:20, 10:30] = 1
    T.eval()
    with torch.no_grad():
        a, b = T(z, mask), T(z, None)
    assert a.shape == z.shape
    assert not torch.allclose(a, b)


# -- losses against hand-computed values ------------------------------------------------------------
def test_kl_divergence_by_hand():
    mu = torch.tensor([0.0, 1.0])
    logvar = torch.tensor([0.0, math.log(4.0)])
    # element 1: 0; element 2: 0.5 (1 + 4 - 1 - ln 4)
    expected = (0 + 0.5 * (1 + 4 - 1 - math.log(4))) / 2
    assert abs(losses.kl_divergence(mu, logvar).item() - expected) < 1e-6


def test_lsgan_by_hand():
    real, fake = torch.tensor([0.5, 1.5]), torch.tensor([0.0, 1.0])
    # D: 0.5 * (mean((0.25, 0.25)) + mean((0, 1))) = 0.5 * (0.25 + 0.5)
    assert abs(losses.lsgan_d(real, fake).item() - 0.375) < 1e-6
    # G: mean((1-0)^2, (1-1)^2) = 0.5 ; with target 0: mean(0, 1) = 0.5
    assert abs(losses.lsgan_g(fake).item() - 0.5) < 1e-6
    assert abs(losses.lsgan_g(torch.tensor([0.2]), target=0.0).item() - 0.04) < 1e-6
    # multi-scale: summed over scales, last entry of each scale is the score
    two = [[torch.zeros(1), torch.tensor([1.0])], [torch.zeros(1), torch.tensor([0.0])]]
    assert abs(losses.lsgan_g(two).item() - 1.0) < 1e-6


def test_feature_matching_by_hand():
    fake = [[torch.tensor([1.0, 2.0]), torch.tensor([0.0]), torch.tensor([9.0])]]
    real = [[torch.tensor([0.0, 0.0]), torch.tensor([2.0]), torch.tensor([-9.0])]]
    # mean L1 per layer (1.5 and 2.0) over 2 layers, one scale; the score layer is ignored
    assert abs(losses.feature_matching(fake, real).item() - (1.5 + 2.0) / 2) < 1e-6


def test_balanced_bce_by_hand():
    logits = torch.tensor([[[[0.0, 2.0], [-1.0, 0.5]]]])
    target = torch.tensor([[[[1.0, 0.0], [0.0, 0.0]]]])
    alpha = 3 / 4  # negatives' share weights the one positive
    sp = lambda v: math.log1p(math.exp(v))  # noqa: E731  -log(1 - sigmoid(v)) = softplus(v)
    terms = [alpha * sp(-0.0), (1 - alpha) * sp(2.0), (1 - alpha) * sp(-1.0), (1 - alpha) * sp(0.5)]
    assert abs(losses.balanced_bce(logits, target).item() - sum(terms) / 4) < 1e-5
    # balancing: the 2 scratch pixels weigh as much in total as the 98 clean ones
    t = torch.zeros(1, 1, 10, 10)
    t[0, 0, 0, :2] = 1
    zero = torch.zeros(1, 1, 10, 10)
    assert abs(losses.balanced_bce(zero, t).item() - math.log(2) * 2 * (2 * 98) / 100**2) < 1e-6


def test_balanced_bce_takes_alpha_per_mask_not_per_batch():
    """Each mask is balanced by its own proportions (α_i), and a positive weighs its mask's negative share."""
    logits = torch.tensor([[0.3, -0.7, 1.1, 0.0], [2.0, -1.5, 0.4, -0.2]]).view(2, 1, 2, 2)
    target = torch.tensor([[1.0, 0, 0, 0], [1.0, 1, 0, 0]]).view(2, 1, 2, 2)
    bce = lambda z, y: math.log1p(math.exp(-z)) if y else math.log1p(math.exp(z))  # noqa: E731
    total = 0.0
    for z_row, y_row in zip(logits.view(2, 4).tolist(), target.view(2, 4).tolist()):
        alpha = 1 - sum(y_row) / 4  # 3/4 for the first mask, 1/2 for the second
        total += sum((alpha if y else 1 - alpha) * bce(z, y) for z, y in zip(z_row, y_row))
    assert abs(losses.balanced_bce(logits, target).item() - total / 8) < 1e-6


@pytest.mark.parametrize("overrides, message", [
    ({"latent": -3}, "latent: expected a whole number in [1, 4096]"), ({"base": 0}, "base: expected a whole number"),
    ({"latent": "x"}, "latent: expected a whole number"), ({"latent": 1.5}, "latent: expected a whole number"),
    ({"latent": 100_000_000}, "in [1, 4096], got 100000000"), ({"n_down": 3000}, "n_down: expected a whole number in [0, 8]"),
    ({"norm": "bogus"}, "these settings do not make a network (unknown norm 'bogus'"), ({"norm": 3}, "norm: expected a str"),
])  # fmt: skip
def test_model_settings_are_checked_before_anything_is_allocated(overrides, message):
    """A --config's model_overrides reached torch as they were: internal errors, or 51 GB for latent 10^8."""
    from degrade.errors import DaguerreError
    from zoo.registry import create_model

    with pytest.raises(DaguerreError, match=re.escape(message)):
        create_model("vae", None, "small", **overrides)


@pytest.mark.parametrize("setting, value", [("threshold", 5.0), ("threshold", -0.1), ("seed_threshold", 1.5)])
def test_a_detector_threshold_is_a_probability(setting, value):
    """A card with threshold 5 loaded, and its detector then found nothing, silently."""
    from degrade.errors import DaguerreError
    from zoo.registry import create_model

    with pytest.raises(DaguerreError, match=re.escape(f"{setting}: expected a probability in [0, 1], got {value}")):
        create_model("scratch_unet", None, "small", **{setting: value})
    assert create_model("scratch_unet", None, "small", **{setting: 1.0}).config.threshold <= 1


def test_weights_that_do_not_fit_name_the_tensors():
    """The message was torch's first line ("Error(s) in loading state_dict for VAE:"), naming nothing."""
    from zoo import checkpoint

    model = create_model("vae")
    good = checkpoint.module_tensors("model", model)
    bad = dict(good)
    dropped = sorted(bad)[0]
    del bad[dropped]
    bad["model.stray"] = torch.zeros(1)
    reshaped = next(k for k, v in sorted(good.items()) if v.ndim == 4)
    bad[reshaped] = torch.zeros(1, *good[reshaped].shape[1:])
    with pytest.raises(DaguerreError) as e:
        checkpoint.load_module(create_model("vae"), bad, "model", "mine.safetensors")
    msg = str(e.value)
    assert "mine.safetensors: weights for 'model' do not fit the model" in msg
    assert f"1 missing: {dropped[len('model.'):]}" in msg and "1 unexpected: stray" in msg
    assert f"1 of another shape: {reshaped[len('model.'):]}: 1×" in msg and "\n" not in msg
    checkpoint.load_module(create_model("vae"), good, "model")  # what fits still loads
