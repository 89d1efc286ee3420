"""The BD and DN degradations (RDN, Zhang et al., CVPR 2018, ``Prepare_TestData_HR_LR.m``) against an
independent numpy/scipy reference, their seeding, and their wiring into training, evaluation and the CLIs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir
from PIL import Image
from scipy.ndimage import correlate

import esrt_lit.train  # noqa: F401  (registers the config resolvers)
from esrt_lit.data.datasets import PairStore, SREvalDataset, SRTrainDataset, _digest, _file_key
from esrt_lit.data.degradations import Bicubic, BicubicNoise, BlurDown, build_degradation, image_seed
from esrt_lit.data.imresize import imresize
from esrt_lit.data.sources import BenchmarkSource, ImageRecord
from esrt_lit.evaluation import iter_sr_pairs, run_benchmarks
from esrt_lit.paths import CONF_DIR
from train_helpers import make_tiny_images, run_command, tiny_datamodule, tiny_overrides

#: the ``degradation=dn`` option as the data module receives it from the config
DN_SPEC = {"_target_": "esrt_lit.data.degradations.BicubicNoise", "sigma": 30.0}


def _image(h: int = 36, w: int = 48, seed: int = 0) -> np.ndarray:
    """A fixed uint8 HWC image with edges and texture (smooth noise plus sharp steps)."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (h // 4, w // 4, 3), dtype=np.uint8)
    image = np.asarray(Image.fromarray(small).resize((w, h), Image.BICUBIC)).astype(np.int16)
    image[: h // 2, : w // 3] += rng.integers(-40, 40, (h // 2, w // 3, 3)).astype(np.int16)
    return np.clip(image, 0, 255).astype(np.uint8)


#: RDN's imresize_BD kernel sides for sigma 1.6: 2 ceil(3 sigma) + 2 at even scales, 7 at x3
RDN_SIDES = {2: 12, 3: 7, 4: 12}


def _fspecial(side: int, sigma: float = 1.6) -> np.ndarray:
    x = np.arange(side) - (side - 1) / 2
    kernel = np.exp(-(x[:, None] ** 2 + x[None] ** 2) / (2 * sigma**2))
    return kernel / kernel.sum()


def _reference_bd(hr: np.ndarray, scale: int) -> np.ndarray:
    """RDN's ``imresize_BD(HR, s, 'Gaussian', 1.6)`` in numpy/scipy. ``imfilter(.., 'replicate')`` is
    ``correlate(mode='nearest')`` with the kernel's centre at ``floor((k + 1) / 2)`` (1-based), i.e.
    ``origin=-1`` for an even ``k``; the ``uint8`` result is rounded half up. Odd ``s``:
    ``imresize(.., 1/s, 'nearest')`` maps LR pixel ``k`` (1-based) to HR ``s (k - 1/2) + 1/2``; even ``s``:
    ``blurred(s/2 : s : end - s/2)``."""
    side = RDN_SIDES[scale]
    origin = -1 if side % 2 == 0 else 0
    channels = [
        correlate(hr[..., c].astype(np.float64), _fspecial(side), mode="nearest", origin=origin)
        for c in range(hr.shape[2])
    ]
    blurred = np.floor(np.clip(np.stack(channels, -1), 0, 255) + 0.5).astype(np.uint8)
    h, w = hr.shape[0] // scale, hr.shape[1] // scale
    if scale % 2:
        rows = [round(scale * (k - 0.5) + 0.5) - 1 for k in range(1, h + 1)]
        cols = [round(scale * (k - 0.5) + 0.5) - 1 for k in range(1, w + 1)]
    else:
        rows = list(range(scale // 2 - 1, hr.shape[0] - scale // 2, scale))
        cols = list(range(scale // 2 - 1, hr.shape[1] - scale // 2, scale))
    return blurred[np.ix_(rows, cols)]


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_bd_equals_the_matlab_reference_to_the_last_level(scale: int) -> None:
    hr = _image()
    lr = BlurDown()(hr, scale)
    assert lr.dtype == np.uint8 and lr.shape == (hr.shape[0] // scale, hr.shape[1] // scale, 3)
    np.testing.assert_array_equal(lr, _reference_bd(hr, scale))
    batch = torch.from_numpy(np.stack([hr, hr[::-1].copy()])).permute(0, 3, 1, 2)  # [B, C, H, W] too
    out = BlurDown()(batch, scale)
    np.testing.assert_array_equal(out[1].permute(1, 2, 0).numpy(), _reference_bd(hr[::-1].copy(), scale))
    as_float = BlurDown()(batch.float() / 255, scale)
    assert as_float.dtype == torch.float32
    assert torch.equal((as_float * 255).round().to(torch.uint8), out)


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_bd_kernel_is_rdns_fspecial(scale: int) -> None:
    kernel = BlurDown().kernel(scale)[0].numpy()
    np.testing.assert_allclose(kernel, _fspecial(RDN_SIDES[scale]), rtol=1e-12)
    assert BlurDown(kernel_size=5).kernel(scale).shape == (1, 5, 5)


def test_dn_noise_has_level_30_and_no_bias() -> None:
    hr = np.full((240, 240, 3), 128, np.uint8)  # bicubic of a flat image is flat: LR - 128 is the noise
    noise = BicubicNoise()(hr, 2, image_seed("grey", 2)).astype(np.float64) - 128
    assert noise.shape == (120, 120, 3)
    assert abs(noise.mean()) < 0.5 and abs(noise.std() - 30) < 0.5
    assert not (noise == 0).all(axis=None)


def test_dn_is_bicubic_plus_rounded_noise() -> None:
    hr = _image()
    noisy = BicubicNoise()(hr, 3, 7).astype(np.int16)
    clean = imresize(hr, 1 / 3).astype(np.int16)
    noise = torch.randn((3, 12, 16), generator=torch.Generator().manual_seed(7)).permute(1, 2, 0).numpy()
    expected = np.floor(np.clip(clean + 30 * noise, 0, 255) + 0.5)
    np.testing.assert_array_equal(noisy, expected)


def test_dn_seed_is_per_image_name_and_scale(tmp_path: Path) -> None:
    path = tmp_path / "img.png"
    Image.fromarray(_image()).save(path)
    store = PairStore(2, "none", degradation=BicubicNoise())
    first, again = store.get(ImageRecord("baby", path))[0], store.get(ImageRecord("baby", path))[0]
    other = store.get(ImageRecord("bird", path))[0]
    np.testing.assert_array_equal(first, again)
    assert (first != other).mean() > 0.9
    assert image_seed("baby", 2) == 3_321_013_820 and image_seed("baby", 2) != image_seed("baby", 4)
    sr1 = [sr for _, sr, _ in iter_sr_pairs(tmp_path, 2, degradation=BicubicNoise())]
    sr2 = [sr for _, sr, _ in iter_sr_pairs(tmp_path, 2, degradation=BicubicNoise())]
    assert torch.equal(sr1[0], sr2[0])


def test_bicubic_is_unchanged_and_keeps_its_caches(tmp_path: Path) -> None:
    path = tmp_path / "img.png"
    hr = _image()
    Image.fromarray(hr).save(path)
    np.testing.assert_array_equal(Bicubic()(hr, 4), imresize(hr, 1 / 4))
    store = PairStore(4, "npy", tmp_path / "cache")
    lr, _ = store.get(ImageRecord("img", path))
    np.testing.assert_array_equal(lr, imresize(hr, 1 / 4))
    old_key = f"{_file_key(path)}|matlab-bicubic-v1|x4"  # the key of the caches written before degradations
    assert (tmp_path / "cache" / f"img-{_digest(old_key)}.lr_x4.npy").is_file()
    PairStore(4, "npy", tmp_path / "cache", BlurDown()).get(ImageRecord("img", path))
    assert len(list((tmp_path / "cache").glob("*.lr_x4.npy"))) == 2  # BD caches its own LR
    clean = PairStore(4, "npy", tmp_path / "cache", BicubicNoise(), noise=False).get(
        ImageRecord("img", path)
    )[0]
    np.testing.assert_array_equal(clean, imresize(hr, 1 / 4))  # DN training reads the bicubic cache
    assert len(list((tmp_path / "cache").glob("*.lr_x4.npy"))) == 2
    noisy = PairStore(4, "npy", tmp_path / "cache", BicubicNoise()).get(ImageRecord("img", path))[0]
    assert len(list((tmp_path / "cache").glob("*.lr_x4.npy"))) == 3 and (noisy != clean).any()
    again = PairStore(4, "npy", tmp_path / "cache", BicubicNoise()).get(ImageRecord("img", path))[0]
    np.testing.assert_array_equal(noisy, again)


def test_stored_bicubic_lr_is_ignored_by_other_degradations(tmp_path: Path) -> None:
    hr = _image()
    (tmp_path / "HR").mkdir()
    (tmp_path / "LR_bicubic" / "X2").mkdir(parents=True)
    Image.fromarray(hr).save(tmp_path / "HR" / "a.png")
    Image.fromarray(np.zeros((18, 24, 3), np.uint8)).save(tmp_path / "LR_bicubic" / "X2" / "ax2.png")
    (record,) = BenchmarkSource(str(tmp_path)).records(2)
    assert not PairStore(2, "none").get(record)[0].any()  # bicubic reads the stored LR
    np.testing.assert_array_equal(
        PairStore(2, "none", degradation=BlurDown()).get(record)[0], _reference_bd(hr, 2)
    )


def test_training_patches_get_fresh_noise_validation_fixed(tmp_path: Path) -> None:
    path = tmp_path / "grey.png"
    Image.fromarray(np.full((64, 64, 3), 128, np.uint8)).save(path)
    dm = tiny_datamodule(make_tiny_images(tmp_path / "data"), degradation=DN_SPEC)
    assert dm.train_store.noise is False and dm.store.noise is True
    train = SRTrainDataset(
        [ImageRecord("grey", path)], dm.train_store, patch_size=16, augment=False, repeat=4
    )
    torch.manual_seed(0)
    a, b = train[0]["lr"], train[1]["lr"]
    assert not torch.equal(a, b)  # a fresh draw per sample
    assert abs(float((a * 255 - 128).std()) - 30) < 3
    val = SREvalDataset([ImageRecord("grey", path)], dm.store, "v")
    again = SREvalDataset([ImageRecord("grey", path)], PairStore(2, "none", degradation=BicubicNoise()), "v")
    assert torch.equal(val[0]["lr"], again[0]["lr"])  # evaluation: the same noise on every run
    assert float((val[0]["lr"] * 255 - 128).std()) > 25


def test_bad_degradations_are_refused_naming_the_value() -> None:
    with pytest.raises(ValueError, match="kernel_size=0"):
        BlurDown(kernel_size=0)
    with pytest.raises(ValueError, match="sigma=0"):
        BicubicNoise(sigma=0)
    with pytest.raises(ValueError, match="degradation='gauss'"):
        build_degradation("gauss")
    with pytest.raises(ValueError, match="not a multiple of scale=3"):
        BlurDown()(np.zeros((10, 9, 3), np.uint8), 3)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("degradation", [Bicubic(), BlurDown(), BicubicNoise()], ids=repr)
def test_cpu_and_cuda_agree(degradation: Bicubic) -> None:
    crop = torch.from_numpy(np.stack([_image(48, 48, s) for s in range(4)])).permute(0, 3, 1, 2)
    seeds = [image_seed(f"crop{i}", 4) for i in range(4)]
    cpu = degradation(crop, 4, seeds)
    cuda = degradation(crop.cuda(), 4, seeds)
    assert cuda.device.type == "cuda"
    assert torch.equal(cpu, cuda.cpu())
    as_float = degradation(crop.cuda().float() / 255, 4, seeds)
    assert torch.equal((as_float * 255).round().to(torch.uint8).cpu(), cpu)


def test_ablation_preset_sweeps_the_three_degradations() -> None:
    targets = {}
    with initialize_config_dir(CONF_DIR, version_base="1.3"):
        base = compose("train", overrides=["experiment=ablation_degradation"], return_hydra_config=True)
        assert str(base.hydra.sweeper.params.degradation).split(",") == ["bicubic", "bd", "dn"]
        for name in ("bicubic", "bd", "dn"):
            cfg = compose("train", overrides=["experiment=ablation_degradation", f"degradation={name}"])
            assert cfg.scale == 3 and cfg.data.degradation == cfg.degradation
            targets[name] = build_degradation(dict(cfg.data.degradation))
    assert [type(d) for d in targets.values()] == [Bicubic, BlurDown, BicubicNoise]
    assert (targets["bd"].kernel_size, targets["bd"].sigma, targets["dn"].noise_sigma) == (None, 1.6, 30.0)


def test_train_degradation_bd_runs(tmp_path: Path) -> None:
    data = make_tiny_images(tmp_path / "data")
    run = tmp_path / "run"
    args = [*tiny_overrides(data, epochs=1, steps=2), "degradation=bd", "logger=csv", f"hydra.run.dir={run}"]
    code, out = run_command("esrt_lit.train", args)
    assert code == 0, out[-3000:]
    assert "bd degradation" in out
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["global_step"] == 2


def test_eval_degradation_dn_is_reproducible(tmp_path: Path) -> None:
    data = make_tiny_images(tmp_path / "data")
    runs = []
    for i in range(2):
        args = ["model=bicubic", "scales=[2]", "degradation=dn", f"benchmark_root={tmp_path / 'data'}"]
        code, out = run_command("esrt_lit.eval", [*args, "names=[val]", f"hydra.run.dir={tmp_path / str(i)}"])
        assert code == 0, out[-3000:]
        runs.append(json.loads((tmp_path / str(i) / "results.json").read_text()))
    assert runs[0] == runs[1] and runs[0]["degradation"] == "dn"
    assert "RGB upscaling of the dn LR" in runs[0]["model"]
    clean = run_benchmarks("bicubic", [2], tmp_path / "data", names=["val"], degradation=Bicubic())
    assert clean["results"]["x2"]["val"]["psnr"] > runs[0]["results"]["x2"]["val"]["psnr"] + 3
    assert data["val"].is_dir()


def test_eval_refuses_a_bad_degradation_in_one_line(tmp_path: Path) -> None:
    args = [
        "model=bicubic",
        "scales=[2]",
        "degradation=bd",
        "degradation.sigma=-1",
        f"hydra.run.dir={tmp_path}",
    ]
    code, out = run_command("esrt_lit.eval", args)
    errors = [line for line in out.splitlines() if line.startswith("error: ")]
    assert code == 1 and len(errors) == 1 and "sigma=-1" in errors[0], out[-2000:]
