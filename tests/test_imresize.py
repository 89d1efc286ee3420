"""MATLAB-exact bicubic imresize: hand-computed values, MATLAB's size and axis-order rules, numpy/torch agreement."""

from __future__ import annotations

import doctest
import math
from fractions import Fraction

import numpy as np
import pytest
import torch

import esrt_lit.data.imresize
from esrt_lit.data.imresize import check_factor, imresize, round_uint8
from esrt_lit.models.bicubic import Bicubic

SCALES = [2, 3, 4, 1 / 2, 1 / 3, 1 / 4]


def keys_cubic(x: float) -> float:
    """Keys' cubic (a = -0.5), written out independently of the implementation."""
    x = abs(x)
    if x <= 1:
        return 1.5 * x**3 - 2.5 * x**2 + 1
    if x <= 2:
        return -0.5 * x**3 + 2.5 * x**2 - 4 * x + 2
    return 0.0


def naive_resize_1d(v: list[float], scale: float) -> list[float]:
    """MATLAB's documented 1-D bicubic resampling, one output sample at a time (scalar maths only)."""
    n = len(v)
    out = []
    shrink = scale < 1
    width = 4 / scale if shrink else 4
    for k in range(1, math.ceil(scale * n) + 1):
        u = k / scale + 0.5 * (1 - 1 / scale)
        total = acc = 0.0
        for j in range(math.floor(u - width / 2), math.floor(u - width / 2) + math.ceil(width) + 2):
            w = scale * keys_cubic(scale * (u - j)) if shrink else keys_cubic(u - j)
            m = (j - 1) % (2 * n)  # symmetric mirror: 1..n, n..1, repeated
            src = m if m < n else 2 * n - 1 - m
            total += w
            acc += w * v[src]
        out.append(acc / total)
    return out


def test_docstring_examples_hold():
    result = doctest.testmod(esrt_lit.data.imresize)
    assert result.attempted > 0 and result.failed == 0


def test_hand_computed_upscale_of_two_pixels():
    # x2: output k sits at u = k/2 + 1/4, i.e. at distances 0.25/0.75/1.25/1.75 from its taps, where the
    # cubic is 0.8671875, 0.2265625, -0.0703125, -0.0234375; [0, 1] mirrors to [.., 1, 0 | 0, 1 | 1, 0, ..].
    assert [keys_cubic(d) for d in (0.25, 0.75, 1.25, 1.75)] == [0.8671875, 0.2265625, -0.0703125, -0.0234375]
    expected = [
        -0.0234375 * 1 + 0.2265625 * 0 + 0.8671875 * 0 - 0.0703125 * 1,  # u = 0.75
        -0.0703125 * 0 + 0.8671875 * 0 + 0.2265625 * 1 - 0.0234375 * 1,  # u = 1.25
        -0.0234375 * 0 + 0.2265625 * 0 + 0.8671875 * 1 - 0.0703125 * 1,  # u = 1.75
        -0.0703125 * 0 + 0.8671875 * 1 + 0.2265625 * 1 - 0.0234375 * 0,  # u = 2.25
    ]
    assert expected == [-0.09375, 0.203125, 0.796875, 1.09375]
    out = imresize(np.array([[0.0, 1.0]]), 2)
    np.testing.assert_array_equal(out, [expected, expected])
    # uint8: 255 * [-0.09375, 0.203125, 0.796875, 1.09375] = [-23.9, 51.8, 203.2, 278.9] -> saturated, rounded
    out8 = imresize(np.array([[0, 255]], dtype=np.uint8), 2)
    np.testing.assert_array_equal(out8, [[0, 52, 203, 255]] * 2)


def test_hand_computed_antialiased_downscale():
    # x1/2: the kernel is 0.5 * cubic(0.5 * d); output 1 sits at u = 1.5 with taps j = -2..5 at distances
    # 3.5..-3.5 -> weights -0.01171875, -0.03515625, 0.11328125, 0.43359375 (and mirrored); [0, 0, 255, 255]
    # mirrors to j=-2..5 -> [255, 0, 0, 0, 0, 255, 255, 255].
    w = [0.5 * keys_cubic(0.5 * d) for d in (3.5, 2.5, 1.5, 0.5)]
    assert w == [-0.01171875, -0.03515625, 0.11328125, 0.43359375]
    first = 255 * (w[0] * 1 + w[1] * 0 + w[2] * 0 + w[3] * 0 + w[3] * 0 + w[2] * 1 + w[1] * 1 + w[0] * 1)
    assert first == pytest.approx(13.9453125)
    out = imresize(np.array([[0.0, 0.0, 255.0, 255.0]]), 1 / 2)
    np.testing.assert_allclose(out, [[first, 255 - first]], rtol=0, atol=1e-12)
    out8 = imresize(np.array([[0, 0, 255, 255]], dtype=np.uint8), 1 / 2)
    np.testing.assert_array_equal(out8, [[14, 241]])


@pytest.mark.parametrize("scale", SCALES)
@pytest.mark.parametrize("length", [1, 2, 5, 12, 13])
def test_matches_naive_separable_reference(scale, length):
    # the separable 2-D result is the 1-D resampling of rows, then of columns
    img = np.random.default_rng(length).random((length, 7))
    rows = np.array([naive_resize_1d(r, scale) for r in img.tolist()])
    both = np.array([naive_resize_1d(c, scale) for c in rows.T.tolist()]).T
    np.testing.assert_allclose(imresize(img, scale), both, rtol=0, atol=1e-12)


@pytest.mark.parametrize("scale", SCALES)
@pytest.mark.parametrize("size", [(17, 23), (31, 9), (1, 5), (48, 48)])
def test_output_size_follows_matlab_ceil_rule(scale, size):
    exact = Fraction(1, round(1 / scale)) if scale < 1 else Fraction(scale)
    expected = tuple(math.ceil(exact * s) for s in size)
    assert imresize(torch.rand(2, 3, *size), scale).shape == (2, 3, *expected)
    assert imresize(np.zeros((*size, 3), np.uint8), scale).shape == (*expected, 3)


@pytest.mark.parametrize("scale", SCALES)
def test_constant_image_stays_constant(scale):
    img = np.full((13, 17, 3), 173, np.uint8)
    np.testing.assert_array_equal(imresize(img, scale), 173)
    out = imresize(torch.full((1, 3, 13, 17), 0.3, dtype=torch.float64), scale)
    torch.testing.assert_close(out, torch.full_like(out, 0.3), rtol=0, atol=1e-14)


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_linear_ramp_is_reproduced_without_shift(scale):
    # Keys' cubic reproduces linear functions: away from the mirrored borders, output sample k (1-based)
    # must equal the ramp at MATLAB's source position u = k / s + (1 - 1 / s) / 2 (0-based: u - 1).
    w = 20
    ramp = np.tile(np.arange(w, dtype=np.float64), (3, 1))
    out = imresize(ramp, scale)[1]
    k = np.arange(1, w * scale + 1)
    expected = k / scale + 0.5 * (1 - 1 / scale) - 1
    interior = slice(3 * scale, -3 * scale)
    np.testing.assert_allclose(out[interior], expected[interior], rtol=0, atol=1e-12)


def _smooth(h: int, w: int) -> np.ndarray:
    y, x = np.mgrid[0:h, 0:w] / 8.0
    return 0.5 + 0.2 * np.sin(x) * np.cos(0.7 * y) + 0.1 * np.cos(0.3 * x + 0.2 * y)


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_down_then_up_is_stable(scale):
    img = _smooth(48, 60)
    interior = (slice(16, -16), slice(16, -16))  # the mirrored borders creep inwards with every cycle
    x = img
    errors = []
    for _ in range(3):
        x = imresize(imresize(x, 1 / scale), scale)
        errors.append(np.abs(x - img)[interior].max())
        assert abs(x.mean() - img.mean()) < 2e-3  # no brightness drift
    assert errors[0] < 1e-3
    assert errors[-1] < 3 * errors[0]  # each cycle blurs a little more; the error does not run away
    # no shift: the round trip matches the original better than any one-pixel translation of it
    once = imresize(imresize(img, 1 / scale), scale)
    err0 = np.abs(once - img)[interior].mean()
    for dy, dx in ((0, 1), (1, 0), (0, -1), (-1, 0)):
        assert err0 < np.abs(once - np.roll(img, (dy, dx), axis=(0, 1)))[interior].mean()


@pytest.mark.parametrize("scale", SCALES)
def test_numpy_and_torch_paths_agree(scale):
    rng = np.random.default_rng(7)
    # a photo-like image: smooth structure plus noise, away from 0 and 255
    img = np.clip(_smooth(19, 26)[..., None] * 255 + rng.normal(0, 12, (19, 26, 3)), 0, 255).astype(np.uint8)
    chw = torch.from_numpy(img.transpose(2, 0, 1).copy())
    # uint8 in both front ends: identical, bit for bit
    out8 = imresize(img, scale)
    np.testing.assert_array_equal(imresize(chw, scale).numpy().transpose(1, 2, 0), out8)
    # float64 in both front ends: identical
    out64 = imresize(img.astype(np.float64), scale)
    t64 = imresize(chw.double(), scale)
    np.testing.assert_array_equal(t64.numpy().transpose(1, 2, 0), out64)
    # float then rounded vs uint8: MATLAB rounds (and saturates) uint8 between the two passes (see
    # test_uint8_rounds_between_passes_in_matlab_axis_order), so pixels may differ by one level, no more
    rounded = np.floor(np.clip(t64.numpy().transpose(1, 2, 0), 0, 255) + 0.5)
    diff = np.abs(rounded - out8.astype(np.float64))
    assert diff.max() <= 1
    assert diff.mean() < 0.3
    # float32 on [0, 1], as the data pipeline uses it
    t32 = imresize(chw.float() / 255, scale)
    assert t32.dtype == torch.float32
    torch.testing.assert_close(t32.double() * 255, t64, rtol=0, atol=1e-3)


def test_uint8_rounds_between_passes_in_matlab_axis_order():
    rng = np.random.default_rng(3)
    img = rng.integers(0, 256, size=(20, 30), dtype=np.uint8)
    # height scale 0.5 < width scale 1.5: MATLAB resizes the height first
    out = imresize(img, output_shape=(10, 45))
    h_first = imresize(imresize(img, output_shape=(10, 30)), output_shape=(10, 45))
    w_first = imresize(imresize(img, output_shape=(20, 45)), output_shape=(10, 45))
    np.testing.assert_array_equal(out, h_first)
    assert (out != w_first).any()
    # width scale 0.5 < height scale 2: the width first
    out = imresize(img, output_shape=(40, 15))
    np.testing.assert_array_equal(out, imresize(imresize(img, output_shape=(20, 15)), output_shape=(40, 15)))
    assert (out != imresize(imresize(img, output_shape=(40, 30)), output_shape=(40, 15))).any()


def test_batched_equals_per_image_and_dtype_is_kept():
    x = torch.rand(4, 3, 15, 22)
    out = imresize(x, 1 / 3)
    for i in range(4):
        torch.testing.assert_close(out[i], imresize(x[i], 1 / 3), rtol=0, atol=0)
    assert imresize(x.half(), 2).dtype == torch.float16
    assert imresize(x.double(), 2).dtype == torch.float64


def test_bicubic_module_is_parameter_free_imresize():
    model = Bicubic(3)
    x = torch.rand(2, 3, 7, 9)
    assert list(model.parameters()) == []
    out = model(x)
    assert out.shape == (2, 3, 21, 27)
    torch.testing.assert_close(out, imresize(x, 3), rtol=0, atol=0)
    with pytest.raises(ValueError, match="positive integer"):
        Bicubic(0)
    with pytest.raises(ValueError, match=r"\[B, C, H, W\]"):
        model(x[0])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_matches_cpu():
    x = torch.rand(2, 3, 33, 41, dtype=torch.float64)
    for scale in SCALES:
        torch.testing.assert_close(imresize(x.cuda(), scale).cpu(), imresize(x, scale), rtol=0, atol=1e-12)
    x8 = (x * 255).to(torch.uint8)
    torch.testing.assert_close(imresize(x8.cuda(), 1 / 3).cpu(), imresize(x8, 1 / 3), rtol=0, atol=0)


def test_invalid_arguments_are_reported():
    with pytest.raises(ValueError, match="exactly one of scale and output_shape"):
        imresize(np.zeros((4, 4)), 2, output_shape=(8, 8))
    with pytest.raises(ValueError, match="scale=-2"):
        imresize(np.zeros((4, 4)), -2)
    with pytest.raises(TypeError, match="int64"):
        imresize(torch.zeros(4, 4, dtype=torch.int64), 2)
    with pytest.raises(TypeError, match="list"):
        imresize([[0, 1]], 2)  # type: ignore[call-overload]


def test_round_uint8_is_matlabs_conversion_for_arrays_and_tensors() -> None:
    """Saturate to 0..255, round half away from zero; numpy and torch give the same levels."""
    values = np.array([-3.0, 0.49, 0.5, 1.5, 2.5, 254.5, 254.49, 300.0])
    expected = np.array([0, 0, 1, 2, 3, 255, 254, 255], dtype=np.uint8)
    np.testing.assert_array_equal(round_uint8(values), expected)
    np.testing.assert_array_equal(round_uint8(torch.from_numpy(values)).numpy(), expected)


@pytest.mark.parametrize("bad", [0, -2, 2.5, math.nan, math.inf, True, "2", None])
def test_check_factor_names_the_key_and_what_is_expected(bad: object) -> None:
    with pytest.raises(ValueError, match=r"^data\.scale=.*; expected a positive integer$"):
        check_factor(bad, "data.scale")
    assert check_factor(3.0) == 3 and check_factor(np.int64(2)) == 2
