"""The latent mapping T: Z_X → Z_Y, with a mask-aware partial nonlocal branch for inpainting."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .nn import ResBlock, act, conv, norm_layer
from .registry import register_model


def latent_mask(mask: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """A B×1×H×W defect mask (1 = damaged) brought to latent size; any damage in a cell marks it."""
    if mask.shape[-2:] == size:
        return (mask > 0).to(mask.dtype if mask.is_floating_point() else torch.float32)
    return (F.adaptive_max_pool2d(mask.float(), size) > 0).float()


class PartialNonLocal(nn.Module):
    """Nonlocal attention whose sources are the undamaged positions only.

    s_ij = (1 − m_j)·f_ij / Σ_k (1 − m_k)·f_ik with f_ij = exp(θ_i·φ_j): a softmax over valid
    keys. θ, φ, g and the output projection W are 1×1 convolutions, so the output at a position
    depends on that position's query and the valid positions' keys and values only. Queries are
    processed in blocks of ``block`` positions (memory O(block × HW) instead of O(HW²)), and
    given a ``query`` mask only the positions it marks are computed: the others hold W's bias.
    """

    def __init__(self, channels: int, inter: int, block: int = 1024) -> None:
        super().__init__()
        self.theta = nn.Conv2d(channels, inter, 1)
        self.phi = nn.Conv2d(channels, inter, 1)
        self.g = nn.Conv2d(channels, inter, 1)
        self.W = nn.Conv2d(inter, channels, 1)
        self.W._zero_init = True  # starts as a no-op, as in the official block
        self.block = block
        self.scale = inter**-0.5

    def forward(self, x: torch.Tensor, m: torch.Tensor, query: torch.Tensor | None = None) -> torch.Tensor:
        b, _, h, w = x.shape
        q = self.theta(x).flatten(2).transpose(1, 2)  # B×N×C
        k = self.phi(x).flatten(2)  # B×C×N
        v = self.g(x).flatten(2).transpose(1, 2)  # B×N×C
        damaged = m.flatten(1) > 0  # B×N
        # an image damaged everywhere has no source: let every position serve rather than divide by zero
        invalid = damaged & ~damaged.all(dim=1, keepdim=True)
        out = torch.zeros_like(q)
        for bi in range(b):
            rows = torch.nonzero(query[bi].flatten() > 0).squeeze(1) if query is not None else None
            n_q = rows.numel() if rows is not None else h * w
            keys_ok = ~invalid[bi]
            kb, vb = k[bi][:, keys_ok], v[bi][keys_ok]
            for s in range(0, n_q, self.block):
                idx = rows[s : s + self.block] if rows is not None else slice(s, s + self.block)
                att = torch.softmax((q[bi, idx] @ kb) * self.scale, dim=-1)
                out[bi, idx] = att @ vb
        return self.W(out.transpose(1, 2).reshape(b, -1, h, w))


@dataclass
class MappingConfig:
    latent: int = 32  # channels of Z_X and Z_Y
    width: int = 64
    n_res: int = 4  # residual blocks of the local branch
    global_res: int = 2  # residual blocks after the nonlocal aggregation
    inter: int = 32  # attention channels
    nonlocal_block: int = 1024
    norm: str = "none"

    PRESETS = {
        "small": {},
        "default": {"latent": 48, "width": 96, "n_res": 4, "global_res": 2, "inter": 48},
        # BOPBtL: 64 → 512 channels, 6 residual blocks, nonlocal on 512-channel features
        "official": {"latent": 64, "width": 512, "n_res": 6, "global_res": 3, "inter": 256, "norm": "instance"},
    }


class Mapping(nn.Module):
    """T(z, m): local residual branch everywhere, partial nonlocal branch fused in under the mask."""

    def __init__(self, cfg: MappingConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.head = nn.Sequential(conv(cfg.latent, cfg.width), norm_layer(cfg.norm, cfg.width), act())
        self.local = nn.Sequential(*[ResBlock(cfg.width, cfg.norm) for _ in range(cfg.n_res)])
        self.nonlocal_ = PartialNonLocal(cfg.width, cfg.inter, cfg.nonlocal_block)
        self.global_res = nn.Sequential(*[ResBlock(cfg.width, cfg.norm) for _ in range(cfg.global_res)])
        self.tail = nn.Sequential(*[ResBlock(cfg.width, cfg.norm) for _ in range(1)], conv(cfg.width, cfg.latent))

    def queried(self, m: torch.Tensor) -> torch.Tensor | None:
        """The cells whose attention output the fusion uses: the damaged ones and every cell the global
        branch's 3×3 convolutions reach from them (two per residual block), so that skipping the
        rest changes nothing; all cells (None) when its normalisation pools over the whole map."""
        if self.cfg.norm in ("instance", "group"):
            return None
        r = 2 * self.cfg.global_res
        return F.max_pool2d(m, 2 * r + 1, 1, r) if r else m

    def forward(self, z: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        h = self.head(z)
        local = self.local(h)
        if mask is None or not bool((mask > 0).any()):
            return self.tail(local)
        m = latent_mask(mask, z.shape[-2:])
        glob = self.global_res(h + self.nonlocal_(h, m, query=None if self.training else self.queried(m)))
        fused = (1 - m) * local + m * glob
        return self.tail(fused)


def _example(cfg: MappingConfig) -> tuple:
    mask = torch.zeros(2, 1, 64, 64)
    mask[:, :, 20:30, 10:50] = 1
    return torch.zeros(2, cfg.latent, 16, 16), mask


@register_model("mapping", MappingConfig, _example)
def build_mapping(cfg: MappingConfig) -> Mapping:
    """Latent mapping T: residual local branch plus mask-aware partial nonlocal global branch."""
    return Mapping(cfg)
