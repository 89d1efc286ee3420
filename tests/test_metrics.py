"""PSNR/SSIM as the SR tables compute them: known values, Y channel, crop, per-image mean, DDP reduction."""

from __future__ import annotations

import doctest
import importlib
import math
import os
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from skimage.metrics import structural_similarity
from torchmetrics.image import PeakSignalNoiseRatio

from esrt_lit.metrics import PSNR, SSIM, rgb_to_y
from esrt_lit.metrics.functional import psnr, ssim


@pytest.mark.parametrize(
    "module",
    [
        "esrt_lit.metrics.color",
        "esrt_lit.metrics.functional.psnr",
        "esrt_lit.metrics.functional.ssim",
        "esrt_lit.metrics.psnr",
        "esrt_lit.metrics.ssim",
    ],
)
def test_docstring_examples_hold(module):
    result = doctest.testmod(importlib.import_module(module))
    assert result.attempted > 0 and result.failed == 0


def test_rgb_to_y_is_matlab_studio_range():
    rgb = torch.tensor([[0, 0, 0], [255, 255, 255], [255, 0, 0], [0, 255, 0], [0, 0, 255], [10, 200, 99]])
    img = rgb.T.reshape(1, 3, 1, 6).to(torch.uint8)
    # Y = 16 + (65.481 R + 128.553 G + 24.966 B) / 255, rounded half away from zero
    expected = [16, 235, round(16 + 65.481), round(16 + 128.553), round(16 + 24.966)]
    expected.append(math.floor(16 + (65.481 * 10 + 128.553 * 200 + 24.966 * 99) / 255 + 0.5))
    y = rgb_to_y(img)
    assert y.dtype == torch.uint8 and y.shape == (1, 1, 1, 6)
    assert y.flatten().tolist() == expected == [16, 235, 81, 145, 41, 129]
    # float [0, 1] gives the unrounded value / 255; numpy HWC agrees with torch
    yf = rgb_to_y(img.double() / 255) * 255
    torch.testing.assert_close(yf.round(), y.double())
    assert abs(yf[0, 0, 0, 2].item() - 81.481) < 1e-9
    hwc = img[0].permute(1, 2, 0).numpy()
    np.testing.assert_array_equal(rgb_to_y(hwc)[..., 0], y[0, 0].numpy())
    with pytest.raises(ValueError, match="expected"):
        rgb_to_y(torch.zeros(1, 1, 4, 4))


def test_psnr_hand_computed():
    target = torch.full((1, 1, 10, 10), 100 / 255)
    preds = target.clone()
    preds[0, 0, 2:4, 2:7] = 110 / 255  # 10 pixels off by 10 levels: MSE = 10 * 100 / 100 = 10
    assert psnr(preds, target, crop_border=0).item() == pytest.approx(10 * math.log10(255**2 / 10), abs=1e-12)
    # with a 1-pixel crop, the 10 errors lie in the 8x8 centre: MSE = 1000 / 64
    assert psnr(preds, target, crop_border=1).item() == pytest.approx(
        10 * math.log10(255**2 * 64 / 1000), abs=1e-12
    )
    # scored on 8-bit levels: sub-level noise rounds away
    assert psnr(target + 0.4 / 255, target, crop_border=0).item() == math.inf


def test_psnr_on_y_of_colour_images():
    rng = np.random.default_rng(0)
    target = torch.from_numpy(rng.integers(0, 256, (2, 3, 16, 16), dtype=np.uint8))
    preds = torch.from_numpy(rng.integers(0, 256, (2, 3, 16, 16), dtype=np.uint8))
    y_t, y_p = rgb_to_y(target).double(), rgb_to_y(preds).double()
    mse = ((y_p - y_t) ** 2).mean(dim=(1, 2, 3))
    expected = 10 * torch.log10(255**2 / mse)
    torch.testing.assert_close(psnr(preds.float() / 255, target.float() / 255, crop_border=0), expected)
    rgb_mse = ((preds.double() - target.double()) ** 2).mean(dim=(1, 2, 3))
    torch.testing.assert_close(
        psnr(preds, target, crop_border=0, test_y_channel=False), 10 * torch.log10(255**2 / rgb_mse)
    )


def test_crop_border_removes_border_errors():
    target = torch.full((1, 3, 20, 20), 0.5)
    preds = target.clone()
    preds[..., :3, :] = 0.0  # damage the top 3 rows only
    assert psnr(preds, target, crop_border=3).item() == math.inf
    assert psnr(preds, target, crop_border=2).item() < 40
    assert ssim(preds, target, crop_border=3).item() == pytest.approx(1.0, abs=1e-12)
    assert ssim(preds, target, crop_border=2).item() < 0.99


def test_per_image_mean_differs_from_pooled_torchmetrics_psnr():
    target = torch.zeros(2, 1, 8, 8)
    preds = target.clone()
    preds[0] += 1 / 255  # MSE 1   -> 48.13 dB
    preds[1] += 10 / 255  # MSE 100 -> 28.13 dB
    ours = PSNR(crop_border=0)
    ours.update(preds, target)
    per_image = (10 * math.log10(255**2 / 1) + 10 * math.log10(255**2 / 100)) / 2
    assert ours.compute().item() == pytest.approx(per_image, abs=1e-10)
    pooled = PeakSignalNoiseRatio(data_range=1.0)  # pools squared errors over the batch
    pooled.update(preds, target)
    assert pooled.compute().item() == pytest.approx(10 * math.log10(255**2 / 50.5), abs=1e-4)
    assert per_image - pooled.compute().item() > 7  # 38.13 vs 31.10 dB


@pytest.mark.parametrize("crop", [0, 4])
def test_ssim_matches_skimage_gaussian_ssim(crop):
    # skimage with gaussian_weights, sigma 1.5 and population covariance is Wang et al.'s ssim_index; it
    # averages the map over the region its padding does not reach, i.e. MATLAB's 'valid' filtering.
    rng = np.random.default_rng(1)
    target = torch.from_numpy(rng.integers(0, 256, (2, 1, 40, 33), dtype=np.uint8))
    noise = torch.from_numpy(rng.integers(-40, 41, (2, 1, 40, 33)))
    preds = (target.long() + noise).clamp(0, 255).to(torch.uint8)
    ours = ssim(preds.float() / 255, target.float() / 255, crop_border=crop)
    for i in range(2):
        sl = (slice(crop, 40 - crop), slice(crop, 33 - crop))
        ref = structural_similarity(
            preds[i, 0].numpy()[sl].astype(np.float64),
            target[i, 0].numpy()[sl].astype(np.float64),
            gaussian_weights=True,
            sigma=1.5,
            use_sample_covariance=False,
            data_range=255,
        )
        assert ours[i].item() == pytest.approx(ref, abs=1e-10)


def test_grey_target_is_scored_on_its_own_channel():
    target = torch.full((1, 1, 12, 12), 100 / 255)
    preds = torch.full((1, 1, 12, 12), 101 / 255)
    # a grey value is its own Y: one level off gives MSE 1 (a 16..235 conversion would scale it by 219/255)
    assert psnr(preds, target, crop_border=0).item() == pytest.approx(20 * math.log10(255), abs=1e-12)
    # a 3-channel prediction (grey fed to an RGB model) is reduced to grey by its rounded channel mean
    rgb = torch.cat([preds, preds, preds], dim=1)
    assert psnr(rgb, target, crop_border=0).item() == psnr(preds, target, crop_border=0).item()
    mixed = torch.cat([target, target, target + 3 / 255], dim=1)  # mean 101 levels
    assert psnr(mixed, target, crop_border=0).item() == pytest.approx(20 * math.log10(255), abs=1e-12)
    assert ssim(rgb, target, crop_border=0).item() == ssim(preds, target, crop_border=0).item()
    with pytest.raises(ValueError, match="1 channels and target 3"):
        psnr(preds, rgb, crop_border=0)


def test_invalid_inputs_are_reported():
    x = torch.rand(1, 3, 16, 16)
    with pytest.raises(ValueError, match="differ in batch or spatial size"):
        psnr(x, torch.rand(1, 3, 16, 15), crop_border=0)
    with pytest.raises(ValueError, match="leaves nothing"):
        psnr(x, x, crop_border=8)
    with pytest.raises(ValueError, match="at least 11x11"):
        ssim(x, x, crop_border=3)
    with pytest.raises(ValueError, match="crop_border"):
        PSNR(crop_border=-1)


def _batches(seed: int, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    target = torch.rand(n, 3, 24, 20, generator=g)
    preds = (target + 0.1 * torch.randn(n, 3, 24, 20, generator=g)).clamp(0, 1)
    return preds, target


def test_metric_classes_equal_functional_mean():
    psnr_metric, ssim_metric = PSNR(crop_border=2), SSIM(crop_border=2)
    values_p, values_s = [], []
    for seed, n in ((0, 3), (1, 1), (2, 2)):
        preds, target = _batches(seed, n)
        psnr_metric.update(preds, target)
        ssim_metric.update(preds, target)
        values_p.append(psnr(preds, target, crop_border=2))
        values_s.append(ssim(preds, target, crop_border=2))
    torch.testing.assert_close(psnr_metric.compute(), torch.cat(values_p).mean())
    torch.testing.assert_close(ssim_metric.compute(), torch.cat(values_s).mean())
    assert psnr_metric.total.item() == 6
    psnr_metric.reset()
    assert psnr_metric.total.item() == 0


# Rank 0 sees 3 images in two batches, rank 1 sees 2 images: unequal shards.
_SHARDS = {0: [(0, 2), (1, 1)], 1: [(2, 2)]}


def _ddp_worker(rank: int, world_size: int, init_file: str, out_dir: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world_size)
    try:
        torch.set_num_threads(1)
        metrics = [PSNR(crop_border=2), SSIM(crop_border=2)]
        for seed, n in _SHARDS[rank]:
            preds, target = _batches(seed, n)
            for m in metrics:
                m.update(preds, target)
        values = torch.stack([m.compute() for m in metrics])
        torch.save(values, os.path.join(out_dir, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


def test_ddp_two_processes_give_the_single_process_mean(tmp_path: Path):
    mp.spawn(_ddp_worker, args=(2, str(tmp_path / "init"), str(tmp_path)), nprocs=2, join=True)
    single = [PSNR(crop_border=2), SSIM(crop_border=2)]
    for seed, n in _SHARDS[0] + _SHARDS[1]:
        preds, target = _batches(seed, n)
        for m in single:
            m.update(preds, target)
    expected = torch.stack([m.compute() for m in single])
    for rank in range(2):
        got = torch.load(tmp_path / f"rank{rank}.pt", weights_only=True)
        torch.testing.assert_close(got, expected, rtol=0, atol=1e-12)
    # the per-rank means alone would differ: the reduction did the work
    local = PSNR(crop_border=2)
    for seed, n in _SHARDS[1]:
        local.update(*_batches(seed, n))
    assert abs(local.compute().item() - expected[0].item()) > 1e-3


def test_the_metrics_are_named_once_with_their_direction() -> None:
    from esrt_lit.metrics import METRICS, PRIMARY, SRMetric, format_scores, is_better

    assert [m.name for m in METRICS] == ["psnr", "ssim"] and PRIMARY.name == "psnr"
    assert format_scores({"psnr": 33.6612, "ssim": 0.92991}) == "33.66/0.9299"
    assert format_scores({"val/Set5/psnr": 30.0, "val/Set5/ssim": 0.9}, "val/Set5/") == "30.00/0.9000"
    assert format_scores({"psnr": 30.0}) == "-"
    assert is_better("psnr", 30.0, 29.0) and not is_better("psnr", 29.0, 30.0)
    assert not is_better("psnr", float("nan"), 1.0) and is_better("psnr", 1.0, float("nan"))
    lower = SRMetric("lpips", PSNR, higher_is_better=False, spec=".3f")  # a lower-is-better metric
    tracker = lower.tracker()
    for value in (0.3, 0.1, 0.2):
        tracker.update(value)
    assert float(tracker.compute()) == pytest.approx(0.1) and lower.tracker_state == "min_value"
    assert float(getattr(tracker, lower.tracker_state)) == pytest.approx(0.1)
