"""High preserving block (HPB) with its high-frequency filtering module (HFM), and the
lightweight CNN backbone (LCB) that stacks HPBs; Sec. 3.2 of Lu et al. (arXiv 2108.11084)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from esrt_lit.models.arfb import ARFB
from esrt_lit.models.layers import ChannelAttention, ConvReLU, conv3x3


class HFM(nn.Module):
    """High-frequency filtering module (Sec. 3.2, Fig. 4).

    Given features ``x`` and their 2× average-pooled ``low`` (floor for odd sizes), returns the
    high-frequency residual ``x − bilinear(low, size(x), align_corners=True)``.
    """

    def forward(self, x: torch.Tensor, low: torch.Tensor) -> torch.Tensor:
        return x - upsample_to(low, x)


def upsample_to(x: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """Bilinear resize of ``x`` to the spatial size of ``ref`` (align_corners=True, as released)."""
    return F.interpolate(x, size=ref.shape[-2:], mode="bilinear", align_corners=True)


class HPB(nn.Module):
    """High preserving block (Sec. 3.2, Fig. 2), released ``Updownblock``.

    ``e = ARFB_in(x)``; HFM splits ``e`` into a half-resolution ``low`` and a ``high`` residual;
    ``low`` passes ``low_repeats`` times through one shared ARFB; ``high`` through its own ARFB;
    both are fused by ``ARFB_out(CA(ConvReLU1(cat[up(low), high]))) + x``.

    Args:
        n_feats: feature width.
        rsa: learnable residual scales in the ARFBs.
        hfm: when False (ablation) the high-frequency branch and its ARFB are removed and only the
            upsampled low-frequency path is fused.
        low_repeats: how often the shared low-frequency ARFB runs (5 in the released code).
    """

    def __init__(self, n_feats: int, rsa: bool = True, hfm: bool = True, low_repeats: int = 5) -> None:
        super().__init__()
        self.low_repeats = low_repeats
        self.arfb_in = ARFB(n_feats, rsa)
        self.hfm = HFM() if hfm else None
        self.arfb_low = ARFB(n_feats, rsa)
        self.arfb_high = ARFB(n_feats, rsa) if hfm else None
        self.fuse = ConvReLU((2 if hfm else 1) * n_feats, n_feats, 1)
        self.ca = ChannelAttention(n_feats)
        self.arfb_out = ARFB(n_feats, rsa)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        e = self.arfb_in(x)
        low = F.avg_pool2d(e, 2)
        high = self.arfb_high(self.hfm(e, low)) if self.hfm is not None else None
        for _ in range(self.low_repeats):
            low = self.arfb_low(low)
        branches = [upsample_to(low, x)] if high is None else [upsample_to(low, x), high]
        return self.arfb_out(self.ca(self.fuse(torch.cat(branches, dim=1)))) + x


class LCB(nn.Module):
    """Lightweight CNN backbone (Sec. 3.2): ``n_hpb`` HPBs in sequence, their outputs concatenated
    and reduced by a 3×3 convolution."""

    def __init__(
        self, n_feats: int, n_hpb: int = 3, rsa: bool = True, hfm: bool = True, low_repeats: int = 5
    ):
        super().__init__()
        self.hpbs = nn.ModuleList(HPB(n_feats, rsa, hfm, low_repeats) for _ in range(n_hpb))
        self.fuse = conv3x3(n_hpb * n_feats, n_feats)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outs = []
        for hpb in self.hpbs:
            x = hpb(x)
            outs.append(x)
        return self.fuse(torch.cat(outs, dim=1))
