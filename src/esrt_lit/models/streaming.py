"""Exact whole-image ESRT inference in bounded memory: the token and reconstruction stages in row blocks.

Tiles cannot reproduce ESRT's whole-image output: the channel attention (CA) of every ARFB and HPB
pools over the whole feature map, and the EMHA (Sec. 3.3) attends within chunks of a quarter of the
image's tokens, i.e. bands of full-width rows. This executor computes the same function as
``ESRT.forward`` (to float rounding) while holding only what the whole-image computation must see at
once:

- SFE and LCB run on whole feature maps (``n_feats`` channels; every CA mean is global);
- the LTB never materialises the ``[N, 9·n_feats]`` token sequence: for each EMHA chunk, the
  chunk's ``q, k, v`` are computed block by block (3×3 unfold of the padded map → LayerNorm →
  reduction → qkv), the chunk attends once (fused, memory linear in its length), and the
  projection, residual, MLP and 3×3 fold run block by block into an accumulating map (tokens are
  kept only between stacked ETs);
- the IR, whose 3×3 convolutions and pixel shuffles are local, runs in bands of LR rows with a halo
  of one LR row per convolution and writes into the output.

Whole-image inference of a 960×540 input at x4 peaks at ~3.6 GB on CPU, mostly the LTB's token
tensors and the x4 upsampler's 128-channel maps; here the peak is the LCB's (~1 GB), with the same
output (``docs/performance.md``).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from esrt_lit.models.esrt import ESRT
from esrt_lit.models.transformer import LTB, EfficientTransformer, chunk_ranges, match_layout

__all__ = ["DEFAULT_ROWS", "forward_streamed"]

#: LR rows per block by default (3840×2160 output at x4: ~1 GB peak, the LCB's).
DEFAULT_ROWS = 32


def _row_span(a: int, b: int, w: int) -> tuple[int, int]:
    """LR rows ``[r0, r1)`` that hold the row-major token range ``[a, b)`` of a ``w``-wide map."""
    return a // w, (b - 1) // w + 1


def _blocks(a: int, b: int, size: int) -> list[tuple[int, int]]:
    return [(i, min(i + size, b)) for i in range(a, b, size)]


def _unfold_range(padded: torch.Tensor, a: int, b: int) -> torch.Tensor:
    """Tokens ``[a, b)`` of ``feature_to_tokens(x)`` from ``x`` zero-padded by 1: ``[B, b − a, 9C]``."""
    w = padded.shape[-1] - 2
    r0, r1 = _row_span(a, b, w)
    t = F.unfold(padded[:, :, r0 : r1 + 2], kernel_size=3).transpose(1, 2)
    return t[:, a - r0 * w : b - r0 * w]


def _fold_range_into(acc: torch.Tensor, t: torch.Tensor, a: int, b: int) -> None:
    """Add the 3×3 fold of tokens ``[a, b)`` into ``acc``, the zero-padded ``[B, C, H + 2, W + 2]`` map."""
    w = acc.shape[-1] - 2
    r0, r1 = _row_span(a, b, w)
    cols = F.pad(t.transpose(1, 2), (a - r0 * w, r1 * w - b))  # whole rows, absent tokens zero
    acc[:, :, r0 : r1 + 2] += F.fold(cols, output_size=(r1 - r0 + 2, w + 2), kernel_size=3)


Tokens = Callable[[int, int], torch.Tensor]
Sink = Callable[[torch.Tensor, int, int], None]


def _stream_et(et: EfficientTransformer, read: Tokens, write: Sink, n: int, block: int) -> None:
    """One ET over ``n`` tokens, chunk by chunk: ``read(a, b)`` gives input tokens ``[a, b)``,
    ``write(t, a, b)`` takes output tokens ``[a, b)``. Each chunk's ``q, k, v`` are complete before
    any of its outputs is written, so ``write`` may overwrite what ``read`` reads."""
    attn = et.attn
    for ca, cb in chunk_ranges(n, attn.splits):
        parts = [attn.heads_qkv(et.norm1(read(a, b))) for a, b in _blocks(ca, cb, block)]
        q, k, v = (torch.cat(p, dim=2) for p in zip(*parts, strict=True))
        del parts
        out = attn.attend(q, k, v, splits=1)
        del q, k, v
        for a, b in _blocks(ca, cb, block):
            t = read(a, b) + attn.merge(out[:, :, a - ca : b - ca])
            write(t + et.mlp(et.norm2(t)), a, b)


def _stream_ltb(ltb: LTB, x: torch.Tensor, block: int) -> torch.Tensor:
    """``ltb(x)`` with the ETs streamed (see the module docstring)."""
    if len(ltb.ets) == 0:
        return ltb.conv(x)
    bsz, c, h, w = x.shape
    n = h * w
    padded = F.pad(x, (1, 1, 1, 1))
    acc = torch.zeros(bsz, c, h + 2, w + 2, dtype=x.dtype, device=x.device)

    def unfold(a: int, b: int) -> torch.Tensor:
        return _unfold_range(padded, a, b)

    def fold(t: torch.Tensor, a: int, b: int) -> None:
        _fold_range_into(acc, t, a, b)

    read: Tokens = unfold
    tokens: torch.Tensor | None = None  # kept between stacked ETs only
    for i, et in enumerate(ltb.ets):
        if i == len(ltb.ets) - 1:
            _stream_et(et, read, fold, n, block)
            break
        if tokens is None:  # later ETs overwrite it in place
            tokens = torch.empty(bsz, n, 9 * c, dtype=x.dtype, device=x.device)

        def store(t: torch.Tensor, a: int, b: int, dst: torch.Tensor = tokens) -> None:
            dst[:, a:b] = t

        _stream_et(et, read, store, n, block)
        read = lambda a, b, src=tokens: src[:, a:b]  # noqa: E731
    return ltb.conv(match_layout(acc[:, :, 1:-1, 1:-1], x))


def _ir_halo(ir: nn.Module) -> int:
    """LR rows of context one output row of the IR needs: one per 3×3 convolution on its longest path."""
    return 1 + sum(isinstance(m, nn.Conv2d) for m in ir.up)


def _stream_ir(model: ESRT, body: torch.Tensor, f0: torch.Tensor, rows: int) -> torch.Tensor:
    s, h = model.scale, body.shape[-2]
    halo = _ir_halo(model.ir)
    out: torch.Tensor | None = None
    for r0, r1 in _blocks(0, h, rows):
        lo, hi = max(r0 - halo, 0), min(r1 + halo, h)
        y = model.ir(body[:, :, lo:hi], f0[:, :, lo:hi])
        if out is None:
            out = torch.empty(*y.shape[:2], h * s, y.shape[-1], dtype=y.dtype, device=y.device)
        out[:, :, r0 * s : r1 * s] = y[:, :, (r0 - lo) * s : (r1 - lo) * s]
    assert out is not None
    return out


def forward_streamed(model: ESRT, x: torch.Tensor, rows: int = DEFAULT_ROWS) -> torch.Tensor:
    """``model(x)`` computed with the LTB and IR in blocks of ``rows`` LR rows (module docstring).

    The result equals the whole-image forward to float rounding (float64: ~1e-15), for any knobs,
    batch size and image size. Call under :func:`torch.inference_mode` (or ``no_grad``); nothing here
    is meant for training.

    Args:
        model: an :class:`~esrt_lit.models.ESRT`.
        x: ``[B, 3, h, w]`` in [0, 1].
        rows: LR rows per block; memory of the blocked stages grows linearly with it.

    Raises:
        ValueError: ``rows`` not a positive integer, or what ``ESRT.forward`` rejects.
    """
    if isinstance(rows, bool) or not isinstance(rows, int) or rows < 1:
        raise ValueError(f"rows={rows!r}; expected a positive integer number of LR rows per block")
    return model.forward_with(
        x,
        lambda feat: _stream_ltb(model.ltb, feat, rows * feat.shape[-1]),
        lambda body, f0: _stream_ir(model, body, f0, rows),
    )
