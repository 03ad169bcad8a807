"""The VAE of each domain: a convolutional encoder to a spatial latent (mean, log-variance), a decoder."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .nn import Down, ResBlock, Up, act, conv, crop_to, norm_layer, pad_to_multiple
from .registry import register_model


@dataclass
class VAEConfig:
    """Width, depth and downsampling of a VAE (``PRESETS``: ``small`` for CPUs, ``official``)."""

    in_channels: int = 3
    base: int = 32  # channels after the stem
    max_channels: int = 64
    latent: int = 32  # latent channels
    n_down: int = 2  # stride-2 stages: the latent is at H / 2**n_down
    n_res: int = 2  # residual blocks at the latent resolution, in encoder and decoder
    norm: str = "none"
    up: str = "nearest"  # decoder upsampling: nearest (+conv) or transposed
    edge_kernel: int = 7  # kernel of the first and last convolutions (full resolution)

    PRESETS = {
        "small": {},
        # the shipped CPU model: thin at full resolution, transposed upsampling, wider latent path
        "default": {"base": 16, "max_channels": 96, "latent": 48, "n_res": 2, "up": "transposed", "edge_kernel": 3},
        # BOPBtL's VAEs (n_downsample_global 3, start_r 1, mc 64 → two stride-2 stages, 64-channel latent at H/4)
        "official": {"base": 64, "max_channels": 64, "latent": 64, "n_down": 2, "n_res": 4, "norm": "instance", "up": "transposed"},
    }

    @property
    def stride(self) -> int:
        return 2**self.n_down


class VAE(nn.Module):
    """Encoder E: image → (mu, logvar) maps; decoder G: latent → image in [-1, 1]."""

    def __init__(self, cfg: VAEConfig) -> None:
        super().__init__()
        self.cfg = cfg
        chans = [min(cfg.base * 2**i, cfg.max_channels) for i in range(cfg.n_down + 1)]
        enc = [conv(cfg.in_channels, chans[0], cfg.edge_kernel), norm_layer(cfg.norm, chans[0]), act()]
        for i in range(cfg.n_down):
            enc.append(Down(chans[i], chans[i + 1], cfg.norm))
        enc += [ResBlock(chans[-1], cfg.norm) for _ in range(cfg.n_res)]
        self.encoder = nn.Sequential(*enc)
        self.to_stats = nn.Conv2d(chans[-1], 2 * cfg.latent, 1)
        dec = [nn.Conv2d(cfg.latent, chans[-1], 1)]
        dec += [ResBlock(chans[-1], cfg.norm) for _ in range(cfg.n_res)]
        for i in reversed(range(cfg.n_down)):
            dec.append(Up(chans[i + 1], chans[i], cfg.norm, cfg.up))
        dec += [conv(chans[0], cfg.in_channels, cfg.edge_kernel), nn.Tanh()]
        self.decoder = nn.Sequential(*dec)

    def after_init(self) -> None:
        """Start with small posterior variance (σ ≈ 0.05): early training is not drowned in sampling noise."""
        with torch.no_grad():
            self.to_stats.bias[self.cfg.latent :] = -6.0

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(mu, logvar), each B×latent×H/s×W/s; H and W must be multiples of the stride."""
        mu, logvar = self.to_stats(self.encoder(x)).chunk(2, dim=1)
        return mu, logvar.clamp(-10.0, 10.0)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(z)

    @staticmethod
    def sample(mu: torch.Tensor, logvar: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Reparameterised draw ``mu + exp(logvar/2)·eps`` (eps from ``generator``)."""
        eps = torch.randn(mu.shape, generator=generator, device=mu.device, dtype=mu.dtype)
        return mu + torch.exp(0.5 * logvar) * eps

    def forward(self, x: torch.Tensor, generator: torch.Generator | None = None) -> tuple[torch.Tensor, ...]:
        """Reconstruct any-size ``x`` (padded to the stride, cropped back): (x_hat, mu, logvar)."""
        xp, size = pad_to_multiple(x, self.cfg.stride, minimum=max(8, 2 * self.cfg.stride))
        mu, logvar = self.encode(xp)
        z = self.sample(mu, logvar, generator) if self.training else mu
        return crop_to(self.decode(z), size), mu, logvar


def _example(cfg: VAEConfig) -> tuple:
    return (torch.zeros(2, cfg.in_channels, 64, 64),)


@register_model("vae", VAEConfig, _example)
def build_vae(cfg: VAEConfig) -> VAE:
    """Convolutional VAE with a spatial latent (VAE1 for R∪X, VAE2 for Y)."""
    return VAE(cfg)
