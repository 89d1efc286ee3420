"""The streamed executor computes the whole-image forward (golden vectors included), in any blocking."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from esrt_lit.inference import upscale
from esrt_lit.models import ESRT, Bicubic
from esrt_lit.models.official import from_official
from esrt_lit.models.streaming import forward_streamed
from esrt_lit.models.transformer import chunk_ranges


def perturbed_esrt(scale: int, **knobs) -> ESRT:
    """A small float64 ESRT whose residual scales are not 1 (every term of every sum matters)."""
    torch.manual_seed(0)
    net = ESRT(scale=scale, n_feats=8, n_hpb=2, et_heads=4, low_repeats=2, **knobs).double().eval()
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return net


@pytest.mark.parametrize(
    ("n", "splits", "expected"),
    [(16, 4, [(0, 4), (4, 8), (8, 12), (12, 16)]), (7, 2, [(0, 3), (3, 6), (6, 7)]), (5, 1, [(0, 5)])],
)
def test_chunk_ranges_follow_torch_split(n: int, splits: int, expected: list) -> None:
    assert chunk_ranges(n, splits) == expected
    sizes = [len(c) for c in torch.arange(n).split(n // splits)]
    assert [b - a for a, b in chunk_ranges(n, splits)] == sizes


@pytest.mark.parametrize(
    ("scale", "knobs", "hw", "rows", "batch"),
    [
        (4, {}, (13, 19), 2, 1),  # 247 tokens: four chunks of 61 and one of 3, chunk edges mid-row
        (2, {"n_et": 2}, (13, 19), 3, 2),  # stacked ETs keep tokens between them, batch of two
        (3, {"n_et": 0}, (9, 7), 2, 1),  # no transformer: only the IR is streamed
        (4, {"n_et": 3, "attn_splits": 3}, (16, 12), 5, 1),
        (2, {"hfm": False, "rsa": False}, (20, 20), 64, 1),  # one block holds everything
        (3, {"attn_splits": 1}, (11, 16), 1, 1),  # one chunk: the attention spans the image
    ],
)
def test_streamed_equals_whole_image(scale: int, knobs: dict, hw: tuple, rows: int, batch: int) -> None:
    net = perturbed_esrt(scale, **knobs)
    x = torch.rand(batch, 3, *hw, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        ref, got = net(x), forward_streamed(net, x, rows=rows)
    assert got.shape == ref.shape
    assert (got - ref).abs().max().item() <= 1e-12


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_streamed_reproduces_the_released_network(golden: dict, scale: int) -> None:
    net = from_official(golden[f"x{scale}"]["state_dict"]).double().eval()
    for case in golden[f"x{scale}"]["cases"].values():
        with torch.inference_mode():
            out = forward_streamed(net, case["lr"], rows=4)
        assert (out - case["sr"]).abs().max().item() <= 1e-8


def test_float32_channels_last_matches_the_forward() -> None:
    net = perturbed_esrt(4).float()
    assert net.channels_last
    x = torch.rand(1, 3, 24, 40, generator=torch.Generator().manual_seed(2))
    with torch.inference_mode():
        ref, got = net(x), forward_streamed(net, x, rows=7)
    assert got.is_contiguous()
    assert torch.allclose(got, ref, rtol=1e-5, atol=1e-5)


def test_upscale_stream_rows_equals_whole_image_for_numpy_images() -> None:
    net = perturbed_esrt(2).float()
    image = np.random.default_rng(3).integers(0, 256, (18, 22, 3), dtype=np.uint8)
    whole, streamed = upscale(net, image), upscale(net, image, stream_rows=5)
    assert streamed.shape == (36, 44, 3)
    assert np.abs(whole.astype(int) - streamed.astype(int)).max() <= 1  # uint8 rounding of ~1e-6


@pytest.mark.parametrize(
    ("model", "kwargs", "message"),
    [
        ("esrt", {"stream_rows": 4, "tile": 32}, "choose one"),
        ("esrt", {"stream_rows": 0}, "stream_rows=0"),
        ("bicubic", {"stream_rows": 4}, "needs an ESRT network; got Bicubic"),
    ],
)
def test_stream_rows_errors(model: str, kwargs: dict, message: str) -> None:
    net = perturbed_esrt(2) if model == "esrt" else Bicubic(2)
    with pytest.raises(ValueError, match=message):
        upscale(net, torch.rand(3, 12, 12, dtype=torch.float64), **kwargs)


def test_forward_streamed_rejects_bad_rows_and_inputs() -> None:
    net = perturbed_esrt(2)
    with pytest.raises(ValueError, match="rows=0"):
        forward_streamed(net, torch.rand(1, 3, 8, 8, dtype=torch.float64), rows=0)
    with pytest.raises(ValueError, match=r"\[B, 3, H, W\]"):
        forward_streamed(net, torch.rand(1, 4, 8, 8, dtype=torch.float64))
