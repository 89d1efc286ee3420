"""Adaptive residual feature block (ARFB), Sec. 3.2 of Lu et al. (arXiv 2108.11084)."""

from __future__ import annotations

import torch
from torch import nn

from esrt_lit.models.layers import ChannelAttention, ConvReLU, Scale, conv3x3


class ResidualUnit(nn.Module):
    """Residual unit (RU, released ``one_conv``): ``y = s1·x + s2·conv(PReLU(conv(x)))``.

    The two convolutions reduce the width to half and expand it back (Fig. 3 of the paper).
    """

    def __init__(self, n_feats: int, rsa: bool = True) -> None:
        super().__init__()
        self.conv_down = conv3x3(n_feats, n_feats // 2)
        self.act = nn.PReLU(n_feats // 2)
        self.conv_up = conv3x3(n_feats // 2, n_feats)
        self.skip_scale = Scale(rsa)
        self.res_scale = Scale(rsa)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.skip_scale(x) + self.res_scale(self.conv_up(self.act(self.conv_down(x))))


class ARFB(nn.Module):
    """Adaptive residual feature block (Sec. 3.2, Fig. 3), released ``one_module``.

    ``a = RU1(x); b = RU2(a); c = ConvReLU3(CA(ConvReLU1(cat[s2·b, s3·a]))); y = s4·x + s5·c``.
    The released module's unused ``weight1`` scale is not declared.
    """

    def __init__(self, n_feats: int, rsa: bool = True) -> None:
        super().__init__()
        self.ru1 = ResidualUnit(n_feats, rsa)
        self.ru2 = ResidualUnit(n_feats, rsa)
        self.scale_b = Scale(rsa)
        self.scale_a = Scale(rsa)
        self.fuse = ConvReLU(2 * n_feats, n_feats, 1)
        self.ca = ChannelAttention(n_feats)
        self.conv = ConvReLU(n_feats, n_feats, 3)
        self.skip_scale = Scale(rsa)
        self.res_scale = Scale(rsa)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.ru1(x)
        b = self.ru2(a)
        c = self.conv(self.ca(self.fuse(torch.cat([self.scale_b(b), self.scale_a(a)], dim=1))))
        return self.skip_scale(x) + self.res_scale(c)
