"""Whole-image and tiled inference, and the fast paths against the released computation."""

from __future__ import annotations

import copy
import itertools

import numpy as np
import pytest
import torch
from torch import nn

from esrt_lit.inference import tile_starts, upscale
from esrt_lit.models import ESRT


def tiny_esrt(scale: int = 2, **knobs) -> ESRT:
    torch.manual_seed(0)
    return ESRT(scale=scale, n_feats=8, n_hpb=1, et_heads=4, low_repeats=1, **knobs).eval()


class PointwiseSR(nn.Module):
    """Each output pixel depends on one input pixel only: tiling must not change anything."""

    def __init__(self, scale: int) -> None:
        super().__init__()
        self.scale = scale
        self.conv = nn.Conv2d(3, 3 * scale * scale, 1)
        self.shuffle = nn.PixelShuffle(scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.shuffle(self.conv(x))


class LocalSR(PointwiseSR):
    """3×3 receptive field: tiles differ from the whole image only next to tile edges."""

    def __init__(self, scale: int) -> None:
        super().__init__(scale)
        self.conv = nn.Conv2d(3, 3 * scale * scale, 3, padding=1)


@pytest.mark.parametrize(
    ("length", "tile", "overlap"), [(100, 32, 8), (33, 32, 8), (32, 32, 8), (20, 32, 4), (97, 16, 15)]
)
def test_tile_starts_cover_the_axis_with_the_overlap(length: int, tile: int, overlap: int) -> None:
    starts = tile_starts(length, tile, overlap)
    assert starts[0] == 0
    assert starts[-1] + min(tile, length) == length
    assert all(b - a <= tile - overlap for a, b in itertools.pairwise(starts))
    assert starts == sorted(set(starts))


def test_whole_image_equals_the_model_and_keeps_the_input_type() -> None:
    net = tiny_esrt()
    x = torch.rand(2, 3, 11, 13, dtype=torch.float64)
    net64 = copy.deepcopy(net).double()
    with torch.no_grad():
        ref = net64(x)
    out = upscale(net64, x)
    assert out.dtype == torch.float64 and torch.equal(out, ref)
    assert not out.is_inference()
    single = upscale(net64, x[1])
    assert single.shape == (3, 22, 26) and torch.allclose(single, ref[1], atol=1e-12, rtol=0)
    # a float32 model on a float64 image: computed in float32, returned as float64
    assert upscale(net, x).dtype == torch.float64


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_tiles_are_exact_for_a_pointwise_model(scale: int) -> None:
    torch.manual_seed(0)
    net = PointwiseSR(scale).double()
    x = torch.rand(1, 3, 37, 29, dtype=torch.float64)
    whole = upscale(net, x)
    for tile, overlap, batch_tiles in [(16, 4, 1), (10, 9, 3), (64, 8, 1)]:
        tiled = upscale(net, x, tile=tile, overlap=overlap, batch_tiles=batch_tiles)
        assert torch.allclose(tiled, whole, atol=1e-12, rtol=0)


def test_blending_hides_the_seams_of_a_local_model() -> None:
    torch.manual_seed(0)
    net = LocalSR(2).double()
    x = torch.rand(1, 3, 40, 40, dtype=torch.float64)
    whole = upscale(net, x)
    blended = upscale(net, x, tile=16, overlap=8)
    hard = upscale(net, x, tile=16, overlap=0)  # abutting tiles: zero-padded edges show
    err_blended = (blended - whole).abs().max().item()
    err_hard = (hard - whole).abs().max().item()
    assert err_blended < 0.25 * err_hard
    # away from every tile edge, blending reproduces the whole image exactly
    inner = (blended - whole)[..., 4:12, 4:12].abs().max().item()
    assert inner < 1e-12


def test_tiled_esrt_is_close_to_whole_image() -> None:
    net = tiny_esrt(scale=3)
    x = torch.rand(1, 3, 30, 26)
    whole = upscale(net, x)
    tiled = upscale(net, x, tile=20, overlap=8, batch_tiles=2)
    assert tiled.shape == whole.shape == (1, 3, 90, 78)
    mse = ((tiled - whole) ** 2).mean().item()
    assert 0 < mse < 1e-2 * whole.var().item()  # attention and channel pooling see less context per tile
    # a tile as large as the image is the whole image
    assert torch.allclose(upscale(net, x, tile=32, overlap=8), whole, atol=1e-6)


def test_batches_and_batch_tiles_give_the_same_result() -> None:
    net = tiny_esrt()
    x = torch.rand(2, 3, 24, 20)
    one = upscale(net, x, tile=12, overlap=4, batch_tiles=1)
    many = upscale(net, x, tile=12, overlap=4, batch_tiles=5)
    assert torch.allclose(one, many, atol=1e-5)
    assert torch.allclose(one[1], upscale(net, x[1], tile=12, overlap=4), atol=1e-6)


def test_numpy_uint8_round_trip_rgb_and_grey() -> None:
    net = tiny_esrt()
    rgb = np.random.default_rng(0).integers(0, 256, (9, 14, 3), dtype=np.uint8)
    out = upscale(net, rgb)
    assert out.dtype == np.uint8 and out.shape == (18, 28, 3)
    ref = net(torch.from_numpy(rgb).permute(2, 0, 1)[None].float() / 255)[0].detach()
    expected = (ref.clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
    assert np.array_equal(out, expected)
    grey = rgb[:, :, 0]
    assert upscale(net, grey).shape == (18, 28)
    assert upscale(net, grey[:, :, None], tile=8, overlap=2).shape == (18, 28, 1)


def test_bf16_autocast_is_close_and_keeps_float32() -> None:
    net = tiny_esrt()
    x = torch.rand(1, 3, 16, 16)
    ref = upscale(net, x)
    low = upscale(net, x, amp="bf16")
    assert low.dtype == torch.float32
    assert (low - ref).abs().max().item() < 0.05 * ref.abs().max().item()


@pytest.mark.parametrize(
    ("image", "kwargs", "message"),
    [
        (np.zeros((8, 8, 3), np.float32), {}, "uint8"),
        (np.zeros((8, 8, 4), np.uint8), {}, "shape"),
        (torch.zeros(1, 4, 8, 8), {}, "shape"),
        (torch.zeros(3, 8, 8, dtype=torch.uint8), {}, "float"),
        (torch.zeros(3, 8, 8), {"tile": 8, "overlap": 8}, "overlap"),
        (torch.zeros(3, 8, 8), {"tile": 1}, "minimum"),
        (torch.zeros(3, 8, 8), {"tile": 0}, "tile"),
        (torch.zeros(3, 8, 8), {"batch_tiles": 0}, "batch_tiles"),
        (torch.zeros(3, 8, 8), {"amp": "int8"}, "amp"),
        (torch.zeros(3, 8, 8), {"scale": 3}, "x3"),
    ],
)
def test_bad_arguments_are_rejected(image, kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        upscale(tiny_esrt(), image, **kwargs)


def test_the_scale_is_read_off_a_model_without_one() -> None:
    torch.manual_seed(0)
    net = PointwiseSR(3)
    del net.scale
    assert upscale(net, torch.rand(3, 10, 10), tile=6, overlap=2).shape == (3, 30, 30)


# ----------------------------------------------------------------------------- fast paths


@pytest.mark.parametrize("hw", [(12, 12), (9, 13)])  # 9·13 = 117 tokens: an extra short chunk
def test_default_path_equals_the_released_computation(hw: tuple[int, int]) -> None:
    """sdpa + channels-last (default) against explicit softmax(q·kᵀ)·v on NCHW (released), float64."""
    fast = tiny_esrt(scale=4).double()
    released = copy.deepcopy(fast).set_attention("explicit")
    released.channels_last = False
    x = torch.rand(2, 3, *hw, dtype=torch.float64)
    with torch.no_grad():
        a, b = fast(x), released(x)
    assert a.is_contiguous()
    assert (a - b).abs().max().item() < 1e-12


def test_default_training_step_equals_the_released_one() -> None:
    """Same loss and gradients (float32, batch 4): the fast paths change speed, not the numbers."""
    fast = tiny_esrt(scale=2).train()
    released = copy.deepcopy(fast).set_attention("explicit")
    released.channels_last = False
    lr, hr = torch.rand(4, 3, 12, 12), torch.rand(4, 3, 24, 24)
    grads = []
    losses = []
    for net in (fast, released):
        loss = (net(lr) - hr).abs().mean()
        loss.backward()
        losses.append(loss.item())
        grads.append(torch.cat([p.grad.flatten() for p in net.parameters()]))
    assert abs(losses[0] - losses[1]) < 1e-6
    assert torch.allclose(grads[0], grads[1], atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("multiple", [1, 8, 16])
def test_fused_attention_head_padding_is_exact(multiple: int) -> None:
    from esrt_lit.models.transformer import fused_attention

    gen = torch.Generator().manual_seed(4)
    q, k, v = (torch.randn(2, 8, 37, 18, dtype=torch.float64, generator=gen) for _ in range(3))
    ref = torch.softmax((q @ k.transpose(-2, -1)) * 0.3, dim=-1) @ v
    out = fused_attention(q, k, v, 0.3, head_multiple=multiple)
    assert out.shape == ref.shape and (out - ref).abs().max().item() <= 1e-13
