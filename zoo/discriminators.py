"""Discriminators: the latent one that closes the R/X domain gap, and a multi-scale PatchGAN."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn.utils import spectral_norm

from .registry import register_model


def _sn_conv(cin: int, cout: int, k: int, stride: int) -> nn.Module:
    return spectral_norm(nn.Conv2d(cin, cout, k, stride, padding=(k - 1) // 2))


@dataclass
class LatentDiscriminatorConfig:
    latent: int = 32
    width: int = 64
    layers: int = 3

    PRESETS = {"small": {}, "default": {"latent": 48}, "official": {"latent": 64, "width": 64, "layers": 3}}


class LatentDiscriminator(nn.Module):
    """Patch scores on a latent map: real old photo (R) or synthetic (X)? (LSGAN, spectral norm)."""

    def __init__(self, cfg: LatentDiscriminatorConfig) -> None:
        super().__init__()
        layers, c = [], cfg.latent
        for i in range(cfg.layers):
            layers += [_sn_conv(c, cfg.width * 2**i, 3, 2 if i else 1), nn.LeakyReLU(0.2, inplace=True)]
            c = cfg.width * 2**i
        layers.append(_sn_conv(c, 1, 3, 1))
        self.net = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z)


@dataclass
class PatchDiscriminatorConfig:
    in_channels: int = 3
    width: int = 32
    layers: int = 3
    scales: int = 2

    PRESETS = {"small": {}, "default": {}, "official": {"width": 64, "layers": 3, "scales": 2}}


class NLayer(nn.Module):
    """One PatchGAN scale; returns every layer's features (for feature matching), the last is the score."""

    def __init__(self, cin: int, width: int, layers: int) -> None:
        super().__init__()
        blocks = [nn.Sequential(_sn_conv(cin, width, 4, 2), nn.LeakyReLU(0.2, inplace=True))]
        c = width
        for i in range(1, layers):
            nc = min(c * 2, 512)
            blocks.append(nn.Sequential(_sn_conv(c, nc, 4, 2), nn.LeakyReLU(0.2, inplace=True)))
            c = nc
        nc = min(c * 2, 512)
        blocks.append(nn.Sequential(_sn_conv(c, nc, 3, 1), nn.LeakyReLU(0.2, inplace=True)))
        blocks.append(_sn_conv(nc, 1, 3, 1))
        self.blocks = nn.ModuleList(blocks)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        feats = []
        for b in self.blocks:
            x = b(x)
            feats.append(x)
        return feats


class PatchDiscriminator(nn.Module):
    """Multi-scale PatchGAN (pix2pixHD): the same architecture on the image and its downsampled copies."""

    def __init__(self, cfg: PatchDiscriminatorConfig) -> None:
        super().__init__()
        self.scales = nn.ModuleList(NLayer(cfg.in_channels, cfg.width, cfg.layers) for _ in range(cfg.scales))
        self.down = nn.AvgPool2d(3, stride=2, padding=1, count_include_pad=False)

    def forward(self, x: torch.Tensor) -> list[list[torch.Tensor]]:
        out = []
        for i, d in enumerate(self.scales):
            if i:
                x = self.down(x)
            out.append(d(x))
        return out


@register_model("latent_discriminator", LatentDiscriminatorConfig, lambda c: (torch.zeros(2, c.latent, 16, 16),))
def build_latent_discriminator(cfg: LatentDiscriminatorConfig) -> LatentDiscriminator:
    """Latent discriminator between Z_R and Z_X (LSGAN); VAE1's encoder is trained to fool it."""
    return LatentDiscriminator(cfg)


@register_model("patch_discriminator", PatchDiscriminatorConfig, lambda c: (torch.zeros(2, c.in_channels, 64, 64),))
def build_patch_discriminator(cfg: PatchDiscriminatorConfig) -> PatchDiscriminator:
    """Multi-scale spectral-norm PatchGAN (LSGAN) for VAE realism and the mapping's GAN and feature matching."""
    return PatchDiscriminator(cfg)
