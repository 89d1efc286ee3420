"""Small layers shared by the ESRT blocks (Lu et al., arXiv 2108.11084, Sec. 3).

``Scale`` is the learnable residual scale of the paper's RSA; ``ConvReLU`` the bias-free
convolution + ReLU that the released code calls ``BasicConv``; ``ChannelAttention`` the
squeeze-and-excitation gate inside ARFB and HPB; ``Upsampler`` the pixel-shuffle stack of the
image reconstruction (IR) module.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from esrt_lit.models.config import check_scale


def conv3x3(in_ch: int, out_ch: int, bias: bool = True) -> nn.Conv2d:
    """3×3 convolution with padding 1 (the released code's ``default_conv``)."""
    return nn.Conv2d(in_ch, out_ch, 3, padding=1, bias=bias)


class Scale(nn.Module):
    """Adaptive residual scaling (RSA, Sec. 3.2): ``y = s·x`` with one learnable scalar ``s``.

    Args:
        learnable: when False (the ``rsa=false`` ablation) the scale is the constant 1 and the
            module holds no parameter.
    """

    def __init__(self, learnable: bool = True) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.ones(1)) if learnable else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x if self.scale is None else x * self.scale


class ConvReLU(nn.Module):
    """Bias-free ``k×k`` convolution followed by ReLU (the released ``BasicConv``)."""

    def __init__(self, in_ch: int, out_ch: int, kernel_size: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_ch, out_ch, kernel_size, padding=kernel_size // 2, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.conv(x))


class ChannelAttention(nn.Module):
    """Channel attention (CA): ``x · sigmoid(W2 relu(W1 avgpool(x)))`` with reduction 16."""

    def __init__(self, channels: int, reduction: int = 16) -> None:
        super().__init__()
        hidden = max(channels // reduction, 1)
        self.reduce = nn.Conv2d(channels, hidden, 1)
        self.expand = nn.Conv2d(hidden, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate = x.mean(dim=(2, 3), keepdim=True)
        return x * torch.sigmoid(self.expand(torch.relu(self.reduce(gate))))


class Upsampler(nn.Sequential):
    """Sub-pixel upsampler: (conv3×3 → PixelShuffle(2)) × log2(s) for s = 2, 4; conv → PixelShuffle(3) for 3."""

    def __init__(self, scale: int, n_feats: int) -> None:
        layers: list[nn.Module] = []
        if check_scale(scale) == 3:
            layers += [conv3x3(n_feats, 9 * n_feats), nn.PixelShuffle(3)]
        else:
            for _ in range(int(math.log2(scale))):
                layers += [conv3x3(n_feats, 4 * n_feats), nn.PixelShuffle(2)]
        super().__init__(*layers)
