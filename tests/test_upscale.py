"""Upscaling images and folders in-process: grey and RGBA layouts, tiling choice, never overwriting,
what the command says (the weights, the mode per image, progress)."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from esrt_lit import inference
from esrt_lit.data.imresize import imresize
from esrt_lit.data.io import read_image
from esrt_lit.errors import ConfigError
from esrt_lit.inference import (
    AUTO_ESRT_TILE,
    AUTO_TILE,
    AUTO_TILE_DB,
    AUTO_WHOLE_PIXELS,
    choose_tile,
    upscale,
    upscale_files,
    upscale_image,
)
from esrt_lit.models import ESRT, Bicubic


@pytest.fixture
def images(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    folder = tmp_path / "in"
    folder.mkdir()
    Image.fromarray(rng.integers(0, 256, (10, 14, 3), dtype=np.uint8)).save(folder / "rgb.png")
    Image.fromarray(rng.integers(0, 256, (10, 14), dtype=np.uint8)).save(folder / "grey.png")
    Image.fromarray(rng.integers(0, 256, (10, 14, 4), dtype=np.uint8)).save(folder / "rgba.png")
    (folder / "notes.txt").write_text("not an image")
    return folder


def test_layouts_are_kept(images: Path) -> None:
    net = Bicubic(2)
    rgb, grey, rgba = (read_image(images / f"{n}.png", keep_alpha=True) for n in ("rgb", "grey", "rgba"))
    assert upscale_image(net, rgb, 2).shape == (20, 28, 3)
    assert upscale_image(net, grey, 2).shape == (20, 28, 1)
    out = upscale_image(net, rgba, 2)
    assert out.shape == (20, 28, 4) and out.dtype == np.uint8
    alpha = np.clip(np.floor(imresize(rgba[:, :, 3:].astype(np.float64), 2) + 0.5), 0, 255)
    assert np.array_equal(out[:, :, 3:], alpha.astype(np.uint8))
    assert np.array_equal(out[:, :, :3], upscale_image(net, np.ascontiguousarray(rgba[:, :, :3]), 2))


def test_grey_goes_through_the_network_as_rgb(images: Path) -> None:
    grey = read_image(images / "grey.png")
    net = ESRT(scale=2, n_feats=8, n_hpb=1, et_heads=4, low_repeats=1).eval()
    out = upscale_image(net, grey, 2)
    x = torch.from_numpy(grey).permute(2, 0, 1)[None].float().div(255).repeat(1, 3, 1, 1)
    with torch.no_grad():
        expected = net(x).mean(dim=1)[0].clamp(0, 1).mul(255).round().numpy()
    assert out.shape == (20, 28, 1)
    assert np.abs(out[:, :, 0].astype(float) - expected).max() <= 1


def test_choose_tile() -> None:
    assert choose_tile("auto", (100, 100), 512 * 512) == (
        None,
        "100x100 LR: whole image (up to max_whole_pixels=262144)",
    )
    assert choose_tile("auto", (1000, 1000), 512 * 512) == (
        AUTO_TILE,
        "1000x1000 LR: tiles of 256 (above max_whole_pixels=262144) - tile=exact for the whole-image output",
    )
    assert choose_tile(64, (10, 10), 1) == (64, "10x10 LR: tiles of 64 (tile=64)")
    assert choose_tile(None, (5000, 5000), 1) == (None, "5000x5000 LR: whole image (tile=null)")
    with pytest.raises(ConfigError, match="tile=0"):
        choose_tile(0, (10, 10), 1)


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_auto_rule_for_esrt_picks_the_measured_mode_by_size(scale: int) -> None:
    assert (AUTO_WHOLE_PIXELS, AUTO_ESRT_TILE) == (128 * 128, 64)  # docs/performance.md, "Choosing tile=auto"
    assert choose_tile("auto", (128, 128), 512 * 512, scale) == (
        None,
        f"128x128 LR at x{scale}: whole image (exact; faster than tiles up to 16384 LR pixels)",
    )
    assert choose_tile("auto", (256, 256), 512 * 512, scale) == (
        64,
        f"256x256 LR at x{scale}: tiles of 64 (near-exact: PSNR within {AUTO_TILE_DB:g} dB) - tile=exact for the "
        "whole-image output",
    )
    assert choose_tile("auto", (100, 160), 512 * 512, scale)[0] is None
    for hw in [(129, 128), (192, 192), (384, 384), (2000, 1000)]:  # above 512x512 too: not AUTO_TILE
        assert choose_tile("auto", hw, 512 * 512, scale)[0] == 64, hw
    # max_whole_pixels still caps the whole image; exact and null keep the whole-image output
    assert choose_tile("auto", (100, 100), 16, scale)[0] == 64
    assert choose_tile("exact", (256, 256), 512 * 512, scale)[0] is None
    assert choose_tile("exact", (1000, 1000), 512 * 512, scale)[0] == "exact"
    assert choose_tile(None, (1000, 1000), 512 * 512, scale)[0] is None


def test_auto_keeps_small_images_byte_identical_and_tiles_large_ones(
    images: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    net = ESRT(scale=2, n_feats=8, n_hpb=1, et_heads=4, low_repeats=1).eval()
    (whole,) = upscale_files(net, 2, images / "rgb.png", tmp_path / "whole", tile=None)
    (auto,) = upscale_files(net, 2, images / "rgb.png", tmp_path / "auto")
    assert whole.read_bytes() == auto.read_bytes(), "below the rule's size: the whole image, as before"
    monkeypatch.setattr(inference, "AUTO_WHOLE_PIXELS", 100)
    monkeypatch.setattr(inference, "AUTO_ESRT_TILE", 8)
    (tiled,) = upscale_files(net, 2, images / "rgb.png", tmp_path / "tiled", overlap=2)
    expected = upscale(net, read_image(images / "rgb.png"), tile=8, overlap=2)
    assert np.array_equal(read_image(tiled), expected)


def test_tiled_output_has_the_whole_image_size(images: Path, tmp_path: Path) -> None:
    (written,) = upscale_files(Bicubic(3), 3, images / "rgb.png", tmp_path / "out", tile=6, overlap=2)
    assert read_image(written).shape == (30, 42, 3)


def test_folder_names_kept_and_never_overwritten(images: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    written = upscale_files(Bicubic(2), 2, images, out)
    assert sorted(p.name for p in written) == ["grey.png", "rgb.png", "rgba.png"]
    assert [Image.open(out / n).mode for n in ("grey.png", "rgb.png", "rgba.png")] == ["L", "RGB", "RGBA"]
    (out / "rgb.png").write_bytes(b"mine")
    (out / "grey.png").unlink()
    with pytest.raises(FileExistsError, match=r"out/rgb\.png.*overwrite=true"):
        upscale_files(Bicubic(2), 2, images, out)
    assert (out / "rgb.png").read_bytes() == b"mine" and not (out / "grey.png").exists()  # nothing written
    upscale_files(Bicubic(2), 2, images, out, overwrite=True)
    assert read_image(out / "rgb.png").shape == (20, 28, 3)


def test_bad_inputs(tmp_path: Path, images: Path) -> None:
    with pytest.raises(FileNotFoundError, match="missing.png"):
        upscale_files(Bicubic(2), 2, tmp_path / "missing.png", tmp_path / "out")
    with pytest.raises(ValueError, match=r"notes\.txt: not an image"):
        upscale_files(Bicubic(2), 2, images / "notes.txt", tmp_path / "out")


def test_exact_streams_large_images_and_equals_the_whole_image(images: Path, tmp_path: Path) -> None:
    assert choose_tile("exact", (100, 100), 512 * 512)[0] is None
    assert choose_tile("exact", (1000, 1000), 512 * 512)[0] == "exact"
    net = ESRT(scale=2, n_feats=8, n_hpb=1, et_heads=4, low_repeats=1).eval()
    kwargs = {"max_whole_pixels": 16}  # the 10×14 test images count as large
    (whole,) = upscale_files(net, 2, images / "rgb.png", tmp_path / "whole", tile=None)
    (exact,) = upscale_files(net, 2, images / "rgb.png", tmp_path / "exact", tile="exact", **kwargs)
    (bicubic,) = upscale_files(Bicubic(2), 2, images / "rgb.png", tmp_path / "bic", tile="exact", **kwargs)
    a, b = read_image(whole).astype(int), read_image(exact).astype(int)
    assert a.shape == b.shape == (20, 28, 3) and np.abs(a - b).max() <= 1
    assert read_image(bicubic).shape == (20, 28, 3)


def test_progress_and_mode_lines_over_a_folder(
    images: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="esrt_lit.inference"):
        upscale_files(Bicubic(2), 2, images, tmp_path / "out")
    lines = [r.getMessage() for r in caplog.records if r.name == "esrt_lit.inference"]
    assert lines[0] == "[1/3] grey.png: 14x10 LR: whole image (up to max_whole_pixels=262144)"
    pattern = (
        r"\[(\d)/3\] (\w+)\.png \(14x10, \d ch\) -> \S+ \(28x20\) in [\d.]+ s; [\d.]+ s elapsed, ETA [\d.]+ s"
    )
    done = [re.fullmatch(pattern, line) for line in lines[1::2]]
    assert all(done) and len(done) == 3, lines
    assert [(m.group(1), m.group(2)) for m in done] == [("1", "grey"), ("2", "rgb"), ("3", "rgba")]
    assert lines[-1].endswith("ETA 0.0 s")


def test_the_shipped_weights_are_named(
    images: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from hydra import compose, initialize_config_dir
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import open_dict

    from esrt_lit.inference import upscale_from_config as upscale_command
    from esrt_lit.paths import CONF_DIR

    overrides = [f"input={images / 'rgb.png'}", f"output={tmp_path / 'out'}", "scale=2", "device=cpu"]
    with initialize_config_dir(CONF_DIR, version_base="1.3"):
        cfg = compose("upscale", overrides=overrides, return_hydra_config=True)
    HydraConfig().set_config(cfg)
    with open_dict(cfg):
        cfg.paths.output_dir = str(tmp_path / "run")
        del cfg["hydra"]
    with caplog.at_level(logging.INFO):
        (written,) = upscale_command(cfg)
    assert read_image(written).shape == (20, 28, 3)
    weights = [r.getMessage() for r in caplog.records if r.getMessage().startswith("weights: ")]
    assert len(weights) == 1
    assert re.fullmatch(
        r"weights: shipped pretrained:x2 \(esrt_x2\.pt, sha256 2c020ccaec5f\): trained by "
        r"experiment=pretrained_x2, 6000 steps; Set5 36\.29 dB \(bicubic 33\.66\), Set14 32\.11 dB \(bicubic 30\.23\)",
        weights[0],
    ), weights[0]
    assert any("rgb.png: 14x10 LR at x2: whole image" in r.getMessage() for r in caplog.records)
