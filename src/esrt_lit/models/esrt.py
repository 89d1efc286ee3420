"""ESRT: Efficient Super-Resolution Transformer.

Lu, Li, Zhang, Cao, Wang, Wang, "Transformer for Single Image Super-Resolution", CVPR 2022
Workshops, arXiv 2108.11084. Port of the authors' released code (github.com/luissen/ESRT, MIT
licence), verified against the released network's float64 outputs; the paper-level knobs are
exposed for its ablations. Inputs and outputs are RGB in [0, 1] (no mean shift).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from esrt_lit.models.config import AttentionImpl, ESRTConfig, check_attention
from esrt_lit.models.hpb import LCB
from esrt_lit.models.layers import ConvReLU, Scale, Upsampler, conv3x3
from esrt_lit.models.transformer import LTB

__all__ = ["ESRT", "IR"]


class IR(nn.Module):
    """Image reconstruction (Sec. 3.1): an upsampled main path plus an upsampled skip from the
    shallow features: ``conv3(up(body)) + ConvReLU3(up(f0))``."""

    def __init__(self, n_feats: int, scale: int, out_ch: int = 3) -> None:
        super().__init__()
        self.up = Upsampler(scale, n_feats)
        self.conv = conv3x3(n_feats, out_ch)
        self.skip_up = Upsampler(scale, n_feats)
        self.skip_conv = ConvReLU(n_feats, out_ch, 3)

    def forward(self, body: torch.Tensor, shallow: torch.Tensor) -> torch.Tensor:
        return self.conv(self.up(body)) + self.skip_conv(self.skip_up(shallow))


class ESRT(nn.Module):
    """ESRT (Sec. 3, Fig. 2): shallow feature extraction (SFE), lightweight CNN backbone (LCB) of
    HPBs, lightweight transformer backbone (LTB) of ETs, image reconstruction (IR).

    Defaults reproduce the released network; each knob is one of the paper's ablations. The knobs,
    their ranges and their defaults are :class:`~esrt_lit.models.config.ESRTConfig`'s (its ``Args``).

    Attributes:
        channels_last: on CPU, run on channels-last (NHWC) activations, which oneDNN convolves
            faster (see docs/performance.md); the output is returned contiguous. Not an architecture
            knob (not in ``config``, no effect on the weights); False gives the released NCHW layout.

    Raises:
        ValueError: a knob outside its allowed values, naming the knob.
    """

    def __init__(
        self,
        scale: int = ESRTConfig.scale,
        n_feats: int = ESRTConfig.n_feats,
        n_hpb: int = ESRTConfig.n_hpb,
        n_et: int = ESRTConfig.n_et,
        et_heads: int = ESRTConfig.et_heads,
        attn_splits: int = ESRTConfig.attn_splits,
        mlp_ratio: float = ESRTConfig.mlp_ratio,
        rsa: bool = ESRTConfig.rsa,
        hfm: bool = ESRTConfig.hfm,
        low_repeats: int = ESRTConfig.low_repeats,
        attention: AttentionImpl = ESRTConfig.attention,
    ) -> None:
        super().__init__()
        config = ESRTConfig(
            scale, n_feats, n_hpb, n_et, et_heads, attn_splits, mlp_ratio, rsa, hfm, low_repeats, attention
        )
        self.config: dict[str, Any] = config.as_dict()
        self.scale = scale
        self.sfe = conv3x3(3, n_feats)
        self.lcb = LCB(n_feats, n_hpb, rsa, hfm, low_repeats)
        self.ltb = LTB(n_feats, n_et, et_heads, attn_splits, mlp_ratio, attention)
        self.skip_scale = Scale(rsa)
        self.body_scale = Scale(rsa)
        self.body_conv = conv3x3(n_feats, n_feats)
        self.ir = IR(n_feats, scale)
        self.channels_last = True

    @property
    def min_size(self) -> int:
        """Smallest input height and width (2: the HPB pools by 2 and the EMHA needs a token per chunk)."""
        return 2

    def set_attention(self, attention: AttentionImpl) -> ESRT:
        """Switch every EMHA between ``"sdpa"`` and ``"explicit"``; weights are untouched."""
        check_attention(attention)
        for et in self.ltb.ets:
            et.attn.attention = attention
        self.config["attention"] = attention
        return self

    def check_input(self, x: torch.Tensor) -> None:
        """Raise ValueError unless ``x`` is ``[B, 3, h, w]`` with ``h, w >= 2`` and at least
        ``attn_splits`` pixels."""
        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"ESRT expects a [B, 3, H, W] tensor, got shape {tuple(x.shape)}")
        h, w = x.shape[-2], x.shape[-1]
        if h < self.min_size or w < self.min_size or h * w < self.config["attn_splits"]:
            raise ValueError(
                f"input of {h}×{w} pixels is too small; ESRT needs height and width >= {self.min_size}"
                f" and at least attn_splits={self.config['attn_splits']} pixels"
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, 3, h, w]`` in [0, 1] → ``[B, 3, h·s, w·s]``.

        Raises:
            ValueError: not a 4-D 3-channel tensor, or ``h``/``w`` below 2, or fewer tokens than
                ``attn_splits``.
        """
        return self.forward_with(x, self.ltb, self.ir)

    def forward_with(
        self,
        x: torch.Tensor,
        ltb: Callable[[torch.Tensor], torch.Tensor],
        ir: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    ) -> torch.Tensor:
        """The forward pass with the LTB and IR stages given as callables (``self.ltb``, ``self.ir``
        in :meth:`forward`; :mod:`esrt_lit.models.streaming` passes row-blocked equivalents)."""
        self.check_input(x)
        nhwc = self.channels_last and x.device.type == "cpu" and not torch.onnx.is_in_onnx_export()
        if nhwc:
            x = x.contiguous(memory_format=torch.channels_last)
        f0 = self.sfe(x)
        body = self.body_conv(self.skip_scale(f0) + self.body_scale(ltb(self.lcb(f0))))
        out = ir(body, f0)
        return out.contiguous() if nhwc else out
