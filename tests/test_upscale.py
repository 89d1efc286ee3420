"""Upscaling images and folders in-process: grey and RGBA layouts, tiling choice, never overwriting."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from esrt_lit.data.imresize import imresize
from esrt_lit.data.io import read_image
from esrt_lit.inference import AUTO_TILE, choose_tile, upscale_files, upscale_image
from esrt_lit.models import ESRT, Bicubic
from esrt_lit.utils.task import ConfigError


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
    assert choose_tile("auto", (100, 100), 512 * 512) is None
    assert choose_tile("auto", (1000, 1000), 512 * 512) == AUTO_TILE
    assert choose_tile(64, (10, 10), 1) == 64 and choose_tile(None, (5000, 5000), 1) is None
    with pytest.raises(ConfigError, match="tile=0"):
        choose_tile(0, (10, 10), 1)


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


def test_demo_comparison_panel() -> None:
    from esrt_lit.demo import comparison_panel

    rng = np.random.default_rng(0)
    hr = rng.integers(0, 256, (60, 80, 3), dtype=np.uint8)
    panel = comparison_panel(hr, hr, hr, scale=2, crop=40)
    assert panel.size == (3 * 80 + 2 * 4, 80 + 18)
    assert np.array_equal(
        np.asarray(panel)[18:, :80], np.kron(hr[10:50, 20:60], np.ones((2, 2, 1), np.uint8))
    )


def test_exact_streams_large_images_and_equals_the_whole_image(images: Path, tmp_path: Path) -> None:
    assert choose_tile("exact", (100, 100), 512 * 512) is None
    assert choose_tile("exact", (1000, 1000), 512 * 512) == "exact"
    net = ESRT(scale=2, n_feats=8, n_hpb=1, et_heads=4, low_repeats=1).eval()
    kwargs = {"max_whole_pixels": 16}  # the 10×14 test images count as large
    (whole,) = upscale_files(net, 2, images / "rgb.png", tmp_path / "whole", tile=None)
    (exact,) = upscale_files(net, 2, images / "rgb.png", tmp_path / "exact", tile="exact", **kwargs)
    (bicubic,) = upscale_files(Bicubic(2), 2, images / "rgb.png", tmp_path / "bic", tile="exact", **kwargs)
    a, b = read_image(whole).astype(int), read_image(exact).astype(int)
    assert a.shape == b.shape == (20, 28, 3) and np.abs(a - b).max() <= 1
    assert read_image(bicubic).shape == (20, 28, 3)
