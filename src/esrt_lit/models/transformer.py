"""Lightweight transformer backbone (LTB): efficient transformer (ET) with efficient multi-head
attention (EMHA), Sec. 3.3 of Lu et al. (arXiv 2108.11084).

Feature maps become tokens by a 3×3 unfold (each token is a 3×3×C patch) and return to maps by
the matching fold, which sums overlapping contributions, as in the released code.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from esrt_lit.models.config import AttentionImpl
from esrt_lit.models.layers import conv3x3


def _patch_kernel(channels: int, like: torch.Tensor) -> torch.Tensor:
    """``[9C, 1, 3, 3]`` one-hot kernel: output channel ``9c + 3i + j`` picks pixel ``(i, j)`` of channel ``c``."""
    return torch.eye(9, dtype=like.dtype, device=like.device).reshape(9, 1, 3, 3).repeat(channels, 1, 1, 1)


def feature_to_tokens(x: torch.Tensor, channels: int | None = None) -> torch.Tensor:
    """(B, C, H, W) → (B, H·W, 9C): 3×3 patches with zero padding 1, stride 1.

    Under ONNX export the unfold is written as the equivalent grouped convolution with a one-hot
    kernel, which keeps the height and width dynamic; ``channels`` (C) then fixes the kernel's shape
    (a traced ``x.shape[1]`` would make it unknown to the exporter).
    """
    if torch.onnx.is_in_onnx_export():
        c = channels if channels is not None else int(x.shape[1])
        return F.conv2d(x, _patch_kernel(c, x), padding=1, groups=c).flatten(2).transpose(1, 2)
    return F.unfold(x, kernel_size=3, padding=1).transpose(1, 2)


def tokens_to_feature(t: torch.Tensor, size: tuple[int, int], channels: int | None = None) -> torch.Tensor:
    """(B, H·W, 9C) → (B, C, H, W): 3×3 fold with padding 1; overlapping patches are summed.

    Under ONNX export the fold is written as the adjoint of :func:`feature_to_tokens`' convolution
    (a grouped transposed convolution), since ONNX ``Col2Im`` needs a static output size.
    """
    if torch.onnx.is_in_onnx_export():
        c = channels if channels is not None else int(t.shape[2]) // 9
        cols = t.transpose(1, 2).reshape(t.shape[0], 9 * c, size[0], size[1])
        return F.conv_transpose2d(cols, _patch_kernel(c, t), padding=1, groups=c)
    return F.fold(t.transpose(1, 2), output_size=size, kernel_size=3, padding=1)


def match_layout(y: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """``y`` in channels-last when ``like`` is (the fold returns NCHW; the caller's layout is kept for
    the convolutions that follow)."""
    if like.is_contiguous(memory_format=torch.channels_last) and not like.is_contiguous():
        return y.contiguous(memory_format=torch.channels_last)
    return y


#: Head width multiple that CUDA's fused attention kernels (flash, memory-efficient) require.
CUDA_HEAD_MULTIPLE = 8


def fused_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float, head_multiple: int | None = None
) -> torch.Tensor:
    """``scaled_dot_product_attention`` with the head width zero-padded to ``head_multiple``.

    ESRT's heads are 18 wide (144 / 8). CUDA's flash and memory-efficient kernels need a multiple of 8
    and otherwise fall back to the math kernel, which materialises ``q·kᵀ`` like the released code.
    Zero columns change no dot product and the scale is explicit, so padding is exact; the padded
    output columns are dropped. Default: pad on CUDA only (CPU's flash kernel takes any width).
    """
    if head_multiple is None:
        head_multiple = CUDA_HEAD_MULTIPLE if q.device.type == "cuda" else 1
    d = q.shape[-1]
    pad = -d % head_multiple
    if pad:
        q, k, v = (F.pad(t, (0, pad)) for t in (q, k, v))
    out = F.scaled_dot_product_attention(q, k, v, scale=scale)
    return out[..., :d] if pad else out


def _attend(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float, impl: AttentionImpl
) -> torch.Tensor:
    if impl == "sdpa":
        return fused_attention(q, k, v, scale)
    return torch.softmax((q @ k.transpose(-2, -1)) * scale, dim=-1) @ v


def chunk_length(n: int, splits: int) -> int:
    """Tokens per EMHA chunk: ``n // splits`` (``torch.split`` semantics, as released).

    Raises:
        ValueError: fewer than ``splits`` tokens.
    """
    if n < splits:
        raise ValueError(
            f"{n} tokens cannot be cut into attn_splits={splits} chunks; need at least {splits} tokens"
        )
    return n // splits


def chunk_ranges(n: int, splits: int) -> list[tuple[int, int]]:
    """``[start, stop)`` token ranges of the EMHA chunks of an ``n``-token sequence: chunks of
    :func:`chunk_length` tokens and, when ``n`` is not a multiple, one shorter chunk at the end."""
    chunk = chunk_length(n, splits)
    return [(a, min(a + chunk, n)) for a in range(0, n, chunk)]


def chunked_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, splits: int, scale: float, impl: AttentionImpl = "sdpa"
) -> torch.Tensor:
    """Softmax attention restricted to consecutive token chunks (the EMHA "feature split").

    The sequence of N tokens is cut with ``torch.split`` semantics into chunks of ``N // splits``
    tokens; when N is not a multiple, the remainder forms one extra, shorter chunk (29×37 tokens and
    4 splits give 5 chunks), exactly as the released code. With ``"sdpa"`` the equal chunks run as
    one batched fused call (memory linear in N); ``"explicit"`` attends one chunk at a time with the
    ``q·kᵀ`` matrix materialised, as the released code does (its memory, ~13–20 GB for a 320×180
    input, is what the benchmark compares against).

    Args:
        q, k, v: ``[B, heads, N, d]``.
        splits: the split count (4 in the released code).
        scale: softmax temperature applied to ``q·kᵀ``.
        impl: ``"sdpa"`` (fused ``scaled_dot_product_attention``) or ``"explicit"``
            (``softmax(q kᵀ · scale) v`` materialised, the released computation).

    Returns:
        ``[B, heads, N, d]``.
    """
    if torch.onnx.is_in_onnx_export():
        return padded_chunked_attention(q, k, v, splits, scale)
    b, h, n, d = q.shape
    chunk = chunk_length(n, splits)
    if impl == "explicit":
        chunks = zip(q.split(chunk, dim=2), k.split(chunk, dim=2), v.split(chunk, dim=2), strict=True)
        return torch.cat([_attend(qc, kc, vc, scale, impl) for qc, kc, vc in chunks], dim=2)
    n_chunks = n // chunk
    n_even = n_chunks * chunk

    def grouped(t: torch.Tensor) -> torch.Tensor:
        return t[:, :, :n_even].reshape(b, h * n_chunks, chunk, d)

    out = _attend(grouped(q), grouped(k), grouped(v), scale, impl).reshape(b, h, n_even, d)
    if n_even < n:
        rest = _attend(q[:, :, n_even:], k[:, :, n_even:], v[:, :, n_even:], scale, impl)
        out = torch.cat([out, rest], dim=2)
    return out


def padded_chunked_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, splits: int, scale: float
) -> torch.Tensor:
    """The same function as :func:`chunked_attention` in one shape-generic graph, for ONNX export.

    The sequence is padded to ``ceil(N / chunk) · chunk`` tokens so that the extra short chunk becomes
    a full one; padded keys are masked out of the softmax and padded queries dropped. Every
    size is computed from the input's shape, so a graph traced at one size stays correct at any other
    (the eager path's Python branch on ``N % chunk`` would be frozen by tracing). The softmax
    ``(q kᵀ · scale)`` is written out, which ONNX runtimes execute as plain MatMul/Softmax.

    Args:
        q, k, v: ``[B, heads, N, d]``.
        splits: the split count.
        scale: softmax temperature.

    Returns:
        ``[B, heads, N, d]``.
    """
    b, h, n, d = q.shape
    chunk = n // splits
    groups = (n + chunk - 1) // chunk
    total = groups * chunk
    pos = torch.arange(total, device=q.device)
    key_valid = (pos < n).reshape(groups, 1, chunk)
    # Gathering with clamped indices pads without a shape-dependent pad width (padded rows repeat the
    # last token; their keys are masked and their outputs dropped).
    index = pos.clamp(max=n - 1)
    q, k, v = (t.index_select(2, index).reshape(b, h, groups, chunk, d) for t in (q, k, v))
    scores = (q @ k.transpose(-2, -1)) * scale
    scores = scores.masked_fill(~key_valid, torch.finfo(scores.dtype).min)
    out = torch.softmax(scores, dim=-1) @ v
    return out.reshape(b, h, total, d)[:, :, :n]


class EMHA(nn.Module):
    """Efficient multi-head attention (Sec. 3.3, Fig. 5).

    A bias-free linear reduction halves the token width, a bias-free linear layer gives q, k, v,
    attention runs per head inside each of ``splits`` token chunks, and a linear projection restores
    the width. The softmax scale is ``(dim / heads) ** -0.5``, taken from the width before the
    reduction as in the released code.
    """

    def __init__(self, dim: int, heads: int = 8, splits: int = 4, attention: AttentionImpl = "sdpa") -> None:
        super().__init__()
        self.heads = heads
        self.splits = splits
        self.attention = attention
        self.scale = (dim // heads) ** -0.5
        inner = dim // 2
        self.reduce = nn.Linear(dim, inner, bias=False)
        self.qkv = nn.Linear(inner, 3 * inner, bias=False)
        self.proj = nn.Linear(inner, dim)

    def heads_qkv(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Tokens ``[B, N, dim]`` → per-head ``q, k, v``, each ``[B, heads, N, dim / 2 / heads]``."""
        x = self.reduce(x)
        b, n, c = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        return q, k, v

    def merge(self, out: torch.Tensor) -> torch.Tensor:
        """Per-head attention output ``[B, heads, N, d]`` → projected tokens ``[B, N, dim]``."""
        b, h, n, d = out.shape
        return self.proj(out.transpose(1, 2).reshape(b, n, h * d))

    def attend(
        self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, splits: int | None = None
    ) -> torch.Tensor:
        """Chunked softmax attention with this EMHA's scale and implementation (``splits`` default: its own)."""
        return chunked_attention(
            q, k, v, self.splits if splits is None else splits, self.scale, self.attention
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, N, dim]`` → ``[B, N, dim]``."""
        return self.merge(self.attend(*self.heads_qkv(x)))


class MLP(nn.Module):
    """Token MLP of the ET: Linear → ReLU → Linear."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(torch.relu(self.fc1(x)))


class EfficientTransformer(nn.Module):
    """Efficient transformer (ET, Sec. 3.3), released ``MLABlock``: pre-norm EMHA and MLP residuals on tokens."""

    def __init__(
        self,
        dim: int,
        heads: int = 8,
        splits: int = 4,
        mlp_ratio: float = 0.25,
        attention: AttentionImpl = "sdpa",
    ) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = EMHA(dim, heads, splits, attention)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = MLP(dim, int(dim * mlp_ratio))

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        """``[B, N, dim]`` → ``[B, N, dim]``."""
        t = t + self.attn(self.norm1(t))
        return t + self.mlp(self.norm2(t))


class LTB(nn.Module):
    """Lightweight transformer backbone (Sec. 3.3): unfold to 3×3-patch tokens, ``n_et`` ETs, fold
    back, 3×3 convolution. With ``n_et=0`` (ablation) the tokens are skipped and only the
    convolution remains."""

    def __init__(
        self,
        n_feats: int,
        n_et: int = 1,
        heads: int = 8,
        splits: int = 4,
        mlp_ratio: float = 0.25,
        attention: AttentionImpl = "sdpa",
    ) -> None:
        super().__init__()
        dim = 9 * n_feats
        self.ets = nn.ModuleList(
            EfficientTransformer(dim, heads, splits, mlp_ratio, attention) for _ in range(n_et)
        )
        self.conv = conv3x3(n_feats, n_feats)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if len(self.ets) > 0:
            c = self.conv.in_channels
            t = feature_to_tokens(x, c)
            for et in self.ets:
                t = et(t)
            x = match_layout(tokens_to_feature(t, (x.shape[-2], x.shape[-1]), c), x)
        return self.conv(x)
