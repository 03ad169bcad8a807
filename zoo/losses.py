"""Losses of the method, each a small pure function (tested against hand-computed values)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def kl_divergence(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, exp(logvar)) || N(0, 1)), averaged over every latent element."""
    return 0.5 * torch.mean(mu.pow(2) + logvar.exp() - 1.0 - logvar)


def l1(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return torch.mean(torch.abs(a - b))


def _scores(pred) -> list[torch.Tensor]:
    """Final score maps from a discriminator output (a tensor, or per-scale feature lists)."""
    if isinstance(pred, torch.Tensor):
        return [pred]
    return [p[-1] if isinstance(p, (list, tuple)) else p for p in pred]


def lsgan_d(real, fake) -> torch.Tensor:
    """LSGAN discriminator loss: ½[(D(real) − 1)² + D(fake)²], averaged, summed over scales."""
    return sum(0.5 * (torch.mean((r - 1) ** 2) + torch.mean(f**2)) for r, f in zip(_scores(real), _scores(fake)))


def lsgan_g(fake, target: float = 1.0) -> torch.Tensor:
    """LSGAN generator loss: (D(fake) − target)², averaged, summed over scales."""
    return sum(torch.mean((f - target) ** 2) for f in _scores(fake))


def feature_matching(fake_feats, real_feats) -> torch.Tensor:
    """pix2pixHD feature matching: L1 between discriminator features of fake and (detached) real, per scale."""
    total = 0.0
    n = len(real_feats)
    for ff, rf in zip(fake_feats, real_feats):
        layers = len(rf) - 1  # the last entry is the score map
        for a, b in zip(ff[:-1], rf[:-1]):
            total = total + l1(a, b.detach()) / (n * layers)
    return total


def balanced_bce(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Class-balanced binary cross-entropy, α per mask from its positive/negative proportion.

    For each mask, positives are weighted by α = |negatives| / |pixels| and negatives by
    1 − α (HED's balancing, which the seed report's §3.3 formula intends), so the few scratch
    pixels weigh as much as the many clean ones. Averaged over pixels and batch.
    """
    t = target.float()
    b = t.shape[0]
    pos = t.reshape(b, -1).mean(dim=1).view(b, *([1] * (t.dim() - 1)))
    alpha = 1.0 - pos
    weight = alpha * t + (1.0 - alpha) * (1.0 - t)
    return F.binary_cross_entropy_with_logits(logits, t, weight=weight)
