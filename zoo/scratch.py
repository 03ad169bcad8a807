"""The scratch and defect detector: a U-Net trained with class-balanced binary cross-entropy."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .nn import ResBlock, act, conv, crop_to, norm_layer, pad_to_multiple
from .registry import register_model


@dataclass
class ScratchUNetConfig:
    in_channels: int = 3
    base: int = 16
    depth: int = 3  # downsamplings
    norm: str = "none"
    threshold: float = 0.5  # probability above which a pixel is called damaged
    # hysteresis: when above ``threshold``, a region of pixels above ``threshold`` counts only if
    # it holds a pixel above this (confident seeds decide whether, the threshold how far)
    seed_threshold: float = 0.0

    PRESETS = {"small": {}, "default": {"base": 16, "depth": 3}, "official": {"in_channels": 1, "base": 32, "depth": 4, "norm": "batch", "threshold": 0.4}}


class ScratchUNet(nn.Module):
    """U-Net: logits (B×1×H×W) that a pixel belongs to a structured defect."""

    def __init__(self, cfg: ScratchUNetConfig) -> None:
        super().__init__()
        self.cfg = cfg
        ch = [cfg.base * 2**i for i in range(cfg.depth + 1)]
        self.stem = nn.Sequential(conv(cfg.in_channels, ch[0]), norm_layer(cfg.norm, ch[0]), act())
        self.downs = nn.ModuleList(
            nn.Sequential(nn.AvgPool2d(2), conv(ch[i], ch[i + 1]), norm_layer(cfg.norm, ch[i + 1]), act()) for i in range(cfg.depth)
        )  # average pooling: anti-aliased downsampling, as the official detector
        self.mid = ResBlock(ch[-1], cfg.norm)
        self.ups = nn.ModuleList(
            nn.Sequential(conv(ch[i + 1] + ch[i], ch[i]), norm_layer(cfg.norm, ch[i]), act()) for i in reversed(range(cfg.depth))
        )
        self.head = nn.Conv2d(ch[0], 1, 1)

    @property
    def stride(self) -> int:
        return 2**self.cfg.depth

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.cfg.in_channels == 1 and x.shape[1] == 3:
            x = (0.299 * x[:, :1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3])
        x, size = pad_to_multiple(x, self.stride, minimum=2 * self.stride)
        skips = [self.stem(x)]
        for d in self.downs:
            skips.append(d(skips[-1]))
        y = self.mid(skips.pop())
        for up in self.ups:
            skip = skips.pop()
            y = nn.functional.interpolate(y, size=skip.shape[-2:], mode="nearest")
            y = up(torch.cat([y, skip], dim=1))
        return crop_to(self.head(y), size)


@register_model("scratch_unet", ScratchUNetConfig, lambda c: (torch.zeros(2, 3, 64, 64),))
def build_scratch_unet(cfg: ScratchUNetConfig) -> ScratchUNet:
    """U-Net scratch/defect detector trained with class-balanced binary cross-entropy."""
    return ScratchUNet(cfg)
