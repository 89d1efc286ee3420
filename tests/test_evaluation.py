"""The evaluation protocol: the published bicubic rows, the RGB pipeline for models, benchmark packs, errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from esrt_lit.data.imresize import imresize
from esrt_lit.data.io import read_image, write_image
from esrt_lit.evaluation import (
    evaluate_folder,
    find_benchmarks,
    format_table,
    iter_sr_pairs,
    run_benchmarks,
)
from esrt_lit.models import ESRT
from esrt_lit.models.bicubic import Bicubic
from esrt_lit.models.checkpoint import load_network
from esrt_lit.reference import PAPER_BICUBIC
from esrt_lit.training.module import describe_net

# Bicubic rows of the published tables (ESRT.md, "Published numbers"): PSNR / SSIM.
PUBLISHED = {f"x{s}": row for s, row in PAPER_BICUBIC.items()}
# What the Y-first procedure reaches on this copy of the data (ESRT.md, protocol details).
Y_FIRST = {
    "x2": {"Set5": (33.661, 0.9299), "Set14": (30.232, 0.8687)},
    "x3": {"Set5": (30.392, 0.8682), "Set14": (27.541, 0.7736)},
    "x4": {"Set5": (28.421, 0.8104), "Set14": (26.000, 0.7019)},
}


@pytest.fixture(scope="module")
def bicubic_table(benchmarks: Path) -> dict:
    return run_benchmarks("bicubic", [2, 3, 4], benchmarks, names=["Set5", "Set14"])


@pytest.mark.parametrize("scale", ["x2", "x3", "x4"])
@pytest.mark.parametrize("bench", ["Set5", "Set14"])
def test_bicubic_reproduces_published_table(bicubic_table, scale, bench):
    res = bicubic_table["results"][scale][bench]
    published_psnr, published_ssim = PUBLISHED[scale][bench]
    assert res["psnr"] == pytest.approx(published_psnr, abs=0.01)
    assert res["ssim"] == pytest.approx(published_ssim, abs=0.0005 if bench == "Set5" else 0.001)
    # and, tighter, the values the Y-first procedure reaches on this copy of the benchmarks
    exact_psnr, exact_ssim = Y_FIRST[scale][bench]
    assert res["psnr"] == pytest.approx(exact_psnr, abs=0.0006)
    assert res["ssim"] == pytest.approx(exact_ssim, abs=0.00006)
    assert len(res["images"]) == {"Set5": 5, "Set14": 14}[bench]


def test_bicubic_table_formats_like_the_paper(bicubic_table):
    table = format_table(bicubic_table)
    assert table.splitlines()[0] == "| scale | Set5 | Set14 |"
    assert "| x2 | 33.66/0.9299 | 30.23/0.8687 |" in table


def test_rgb_pipeline_is_slightly_below_the_y_first_row(benchmarks: Path, bicubic_table):
    # Bicubic as a model: RGB uint8 LR (MATLAB imresize), RGB upscale, rounded, then Y. ESRT.md: 0.001-0.02 dB lower.
    res = evaluate_folder(benchmarks / "Set5", 4, Bicubic(4))
    y_first = bicubic_table["results"]["x4"]["Set5"]["psnr"]
    assert 0.0005 < y_first - res["psnr"] < 0.02
    assert res["ssim"] == pytest.approx(0.8104, abs=0.001)


def test_grey_image_is_fed_as_rgb_and_scored_on_grey(tmp_path: Path):
    rng = np.random.default_rng(0)
    grey = np.clip(rng.normal(128, 30, (40, 36, 1)), 0, 255).astype(np.uint8)
    write_image(tmp_path / "grey.png", grey)
    seen = []

    class Spy(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            seen.append(tuple(x.shape))
            return imresize(x, 2)

    ((name, sr, hr),) = list(iter_sr_pairs(tmp_path, 2, Spy()))
    assert seen == [(1, 3, 20, 18)] and name == "grey"
    assert sr.shape == (1, 3, 40, 36) and hr.shape == (1, 1, 40, 36) and sr.dtype == torch.uint8
    # the score equals that of the grey channel upscaled on its own
    single = evaluate_folder(tmp_path, 2, Bicubic(2))
    lr = imresize(grey, 1 / 2)
    up = imresize(torch.from_numpy(lr[..., 0].copy()).float()[None, None] / 255, 2).clamp(0, 1)
    up = torch.floor(up * 255 + 0.5)
    mse = ((up - torch.from_numpy(grey[..., 0].copy()).double())[..., 2:-2, 2:-2] ** 2).mean().item()
    assert single["psnr"] == pytest.approx(10 * np.log10(255**2 / mse), abs=1e-9)


def _nearest(scale: int) -> nn.Module:
    class Nearest(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return F.interpolate(x, scale_factor=scale, mode="nearest")

    return Nearest()


def test_tiled_forward_matches_whole_image_for_a_local_model(tmp_path: Path):
    rng = np.random.default_rng(1)
    write_image(tmp_path / "a.png", rng.integers(0, 256, (70, 58, 3), dtype=np.uint8))
    whole = list(iter_sr_pairs(tmp_path, 2, _nearest(2)))
    tiled = list(iter_sr_pairs(tmp_path, 2, _nearest(2), tile=16, tile_overlap=4))
    torch.testing.assert_close(tiled[0][1], whole[0][1], rtol=0, atol=0)


def test_wrong_scale_model_is_reported(tmp_path: Path):
    write_image(tmp_path / "a.png", np.zeros((24, 24, 3), np.uint8))
    with pytest.raises(ValueError, match=r"a.png: .*expected \(1, 3, 24, 24\) \(a x2 model\)"):
        evaluate_folder(tmp_path, 2, _nearest(3))


def _make_pack(root: Path, name: str, hr_images: dict[str, np.ndarray], scale: int, lr_suffix: str) -> Path:
    pack = root / name
    for stem, img in hr_images.items():
        write_image(pack / "HR" / f"{stem}.png", img)
        lr = imresize(img[: img.shape[0] // scale * scale, : img.shape[1] // scale * scale], 1 / scale)
        write_image(pack / "LR_bicubic" / f"X{scale}" / f"{stem}{lr_suffix}.png", lr)
    return pack


def test_pack_layout_feeds_the_stored_lr(tmp_path: Path):
    rng = np.random.default_rng(2)
    imgs = {
        "a": rng.integers(0, 256, (50, 45, 3), dtype=np.uint8),
        "b": rng.integers(0, 256, (36, 36, 3), dtype=np.uint8),
    }
    pack = _make_pack(tmp_path / "root", "Pack", imgs, 3, "x3")
    plain = tmp_path / "root" / "Set5"
    for stem, img in imgs.items():
        write_image(plain / f"{stem}.png", img)
    # stored LR made by the same MATLAB imresize: same result as computing it
    from_pack = evaluate_folder(pack, 3, Bicubic(3))
    computed = evaluate_folder(plain, 3, Bicubic(3))
    assert from_pack["psnr"] == pytest.approx(computed["psnr"], abs=1e-12)
    # and the stored LR really is what the model gets
    lr_b = pack / "LR_bicubic" / "X3" / "bx3.png"
    lr_b.unlink()
    write_image(lr_b, np.zeros((12, 12, 3), np.uint8))
    changed = evaluate_folder(pack, 3, Bicubic(3))
    assert changed["images"][0] == from_pack["images"][0]
    assert changed["images"][1]["psnr"] < from_pack["images"][1]["psnr"] - 5
    lr_b.unlink()
    write_image(lr_b, np.zeros((11, 12, 3), np.uint8))
    # the data layer's message, W×H as everywhere: the LR is 12 wide and 11 high
    with pytest.raises(ValueError, match=r"LR .*bx3\.png is 12x11, HR .*b\.png is 36x36"):
        evaluate_folder(pack, 3, Bicubic(3))
    # discovery: both layouts, paper order first
    benches = find_benchmarks(tmp_path / "root")
    assert [b.name for b in benches] == ["Set5", "Pack"]
    assert benches[1].hr_dir == pack / "HR" and benches[1].lr_dirs == {3: pack / "LR_bicubic" / "X3"}


def test_run_benchmarks_writes_results_without_overwriting(tmp_path: Path):
    rng = np.random.default_rng(3)
    root = tmp_path / "bench"
    for name in ("Set14", "Set5"):
        write_image(root / name / "a.png", rng.integers(0, 256, (36, 30, 3), dtype=np.uint8))
    (root / "notes").mkdir()  # no images: not a benchmark
    out = tmp_path / "out"
    res = run_benchmarks("bicubic", [2, 3], root, out_dir=out)
    assert res["benchmarks"] == ["Set5", "Set14"] and list(res["results"]) == ["x2", "x3"]
    assert json.loads((out / "results.json").read_text()) == res
    md = (out / "results.md").read_text()
    assert format_table(res) in md
    cell = f"{res['results']['x3']['Set14']['psnr']:.2f}/{res['results']['x3']['Set14']['ssim']:.4f}"
    assert md.splitlines()[-1].endswith(f"| {cell} |")
    before = (out / "results.json").read_bytes()
    with pytest.raises(FileExistsError, match="results.json"):
        run_benchmarks("bicubic", [2], root, out_dir=out)
    assert (out / "results.json").read_bytes() == before
    with pytest.raises(FileNotFoundError, match="Urban100"):
        run_benchmarks("bicubic", [2], root, names=["Set5", "Urban100"])
    with pytest.raises(ValueError, match="no entry for scale"):
        run_benchmarks({2: "bicubic"}, [2, 4], root)


def test_format_table_cells():
    results = {
        "benchmarks": ["Set5", "Set14"],
        "results": {
            "x4": {"Set5": {"psnr": 32.19449, "ssim": 0.894712}, "Set14": {"psnr": 28.6951, "ssim": 0.78326}}
        },
    }
    assert (
        format_table(results)
        == "| scale | Set5 | Set14 |\n|---|---|---|\n| x4 | 32.19/0.8947 | 28.70/0.7833 |"
    )


def test_evaluate_folder_errors_name_the_problem(tmp_path: Path):
    with pytest.raises(FileNotFoundError, match="missing"):
        evaluate_folder(tmp_path / "missing", 2)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no image files"):
        evaluate_folder(tmp_path / "empty", 2)
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "broken.png").write_bytes(b"not a png")
    with pytest.raises(ValueError, match="broken.png"):
        evaluate_folder(bad, 2)
    with pytest.raises(ValueError, match="positive integer"):
        evaluate_folder(bad, 0)


def test_model_specs(tmp_path: Path):
    with pytest.raises(ValueError, match="'bicubc'"):
        load_network("bicubc")
    with pytest.raises(FileNotFoundError, match="nope.ckpt"):
        load_network(tmp_path / "nope.ckpt")
    with pytest.raises(FileNotFoundError, match=r"^ckpt_path=\S*nope.ckpt: checkpoint not found"):
        load_network(tmp_path / "nope.ckpt", key="ckpt_path")  # the option named first, the file once
    # the baseline and a network object are sources too
    with pytest.raises(ValueError, match="bicubic upscales by a given scale"):
        load_network("bicubic")
    bicubic = load_network("bicubic", 3)
    assert isinstance(bicubic, Bicubic) and bicubic.scale == 3
    module = ESRT(scale=2, n_feats=8, n_hpb=1, et_heads=4, low_repeats=1).train()
    assert load_network(module) is module and not module.training
    with pytest.raises(ValueError, match="scale=4 was asked for but ESRT holds an x2 network"):
        load_network(module, 4)
    # a checkpoint of esrt_lit.train is rebuilt from its `net` hyper-parameter, by the one loader
    torch.manual_seed(0)
    net = ESRT(scale=2, n_feats=8, n_hpb=1, et_heads=4, low_repeats=1)
    ckpt = tmp_path / "run.ckpt"
    state = {f"net.{k}": v for k, v in net.state_dict().items()}
    torch.save({"state_dict": state, "hyper_parameters": {"net": describe_net(net)}}, ckpt)
    loaded = load_network(ckpt)
    assert isinstance(loaded, ESRT) and loaded.config == net.config and not loaded.training
    assert all(torch.equal(v, net.state_dict()[k]) for k, v in loaded.state_dict().items())
    # a Lightning checkpoint that is not esrt_lit.train's is refused, naming the file
    torch.save({"state_dict": {}, "hyper_parameters": {"scale": 2}}, tmp_path / "other.ckpt")
    with pytest.raises(
        ValueError, match=r"other\.ckpt: a Lightning checkpoint with no 'net' hyper-parameter"
    ):
        load_network(tmp_path / "other.ckpt")


def test_released_checkpoint_is_evaluated(tmp_path: Path, golden: dict):
    path = tmp_path / "esrt_x2.pth"
    torch.save(golden["x2"]["state_dict"], path)
    net = load_network(path)
    assert not net.training
    folder = tmp_path / "imgs"
    write_image(folder / "a.png", np.random.default_rng(4).integers(0, 256, (32, 30, 3), dtype=np.uint8))
    res = evaluate_folder(folder, 2, path)
    assert np.isfinite(res["psnr"]) and -1 <= res["ssim"] <= 1
    # the same numbers as the module itself
    assert evaluate_folder(folder, 2, net)["psnr"] == res["psnr"]
    assert read_image(folder / "a.png").shape == (32, 30, 3)
