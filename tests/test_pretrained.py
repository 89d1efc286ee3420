"""The weights shipped with the package: their checksums, their provenance, their scores (those the
docs state, to 0.01 dB), and loading them by name wherever a checkpoint is accepted."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import esrt_lit.models.checkpoint as pretrained_module
from esrt_lit.evaluation import evaluate_folder
from esrt_lit.models.checkpoint import (
    PRETRAINED,
    CheckpointError,
    load_network,
    pretrained_path,
    pretrained_state,
    provenance,
)
from esrt_lit.paths import PROJECT_ROOT
from train_helpers import run_command

NAMES = sorted(PRETRAINED)


def test_weights_are_shipped_for_x2_and_x4() -> None:
    assert {"x2", "x4"} <= set(PRETRAINED)
    assert all(PRETRAINED[n].scale == int(n.removeprefix("x")) for n in NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_shipped_file_checksum_and_provenance(name: str) -> None:
    path = pretrained_path(name)
    entry = PRETRAINED[name]
    assert hashlib.sha256(path.read_bytes()).hexdigest() == entry.sha256
    assert path.stat().st_size < 2 * 2**20  # fp16: about 1.5 MB
    state = torch.load(path, weights_only=True)
    assert all(v.dtype == torch.float16 for v in state.values())
    record = provenance(name)
    assert record["sha256"] == entry.sha256 and record["config"] == entry.config
    assert record["command"].startswith("python -m esrt_lit.train experiment=pretrained_")
    assert (
        re.fullmatch(r"[0-9a-f]{40}", record["commit"]) and record["wandb_summary"] and record["run_config"]
    )
    for bench in ("Set5", "Set14"):  # the weights beat bicubic
        assert record["scores"][bench]["psnr"] > record["bicubic"][bench]["psnr"]


@pytest.mark.parametrize("name", NAMES)
def test_loaded_by_name(name: str) -> None:
    net = load_network(f"pretrained:{name}")
    assert not net.training and net.scale == PRETRAINED[name].scale
    state, config = pretrained_state(name)
    assert net.config == config
    assert state.keys() == net.state_dict().keys()
    assert all(torch.equal(v, net.state_dict()[k]) for k, v in state.items())
    with pytest.raises(CheckpointError, match=rf"scale=9 was asked for but pretrained:{name} holds an x"):
        load_network(f"pretrained:{name}", scale=9)


def test_unknown_name_lists_the_shipped_weights() -> None:
    with pytest.raises(
        CheckpointError, match=r"pretrained:x8: no such shipped weights; shipped: pretrained:x"
    ):
        load_network("pretrained:x8")


def test_a_changed_file_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    name = NAMES[0]
    copy = tmp_path / "weights"
    shutil.copytree(pretrained_path(name).parent, copy)
    target = copy / PRETRAINED[name].file
    data = bytearray(target.read_bytes())
    data[-100] ^= 0xFF
    target.write_bytes(bytes(data))
    monkeypatch.setattr(pretrained_module, "_folder", lambda: copy)
    with pytest.raises(CheckpointError, match=r"SHA-256 .* is not the shipped .*reinstall esrt-lit"):
        load_network(f"pretrained:{name}")


def _documented_scores() -> dict[str, dict[str, float]]:
    """``{"x4": {"Set5": psnr, "Set14": psnr}}`` from the "Pretrained weights" table of docs/training.md."""
    text = (PROJECT_ROOT / "docs" / "training.md").read_text()
    section = text[text.index("## Pretrained weights") :]
    scores = {}
    for match in re.finditer(
        r"^\| (x\d) \|.*?\| ([\d.]+)/[\d.]+ \| ([\d.]+)/[\d.]+ \|", section, re.MULTILINE
    ):
        scores[match.group(1)] = {"Set5": float(match.group(2)), "Set14": float(match.group(3))}
    return scores


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_shipped_weights_score_what_the_docs_say(name: str, benchmarks: Path) -> None:
    """Set5 measured now; the docs' Set5 and Set14 cells are the provenance's (measured when shipped)."""
    documented, recorded = _documented_scores()[name], provenance(name)["scores"]
    net = load_network(f"pretrained:{name}")
    measured = evaluate_folder(benchmarks / "Set5", net.scale, net)["psnr"]
    assert measured == pytest.approx(recorded["Set5"]["psnr"], abs=1e-4)
    assert measured == pytest.approx(documented["Set5"], abs=0.01)
    assert recorded["Set14"]["psnr"] == pytest.approx(documented["Set14"], abs=0.005)


def test_upscale_without_a_checkpoint_uses_the_shipped_weights(tmp_path: Path) -> None:
    image = tmp_path / "in" / "a.png"
    image.parent.mkdir()
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (16, 20, 3), dtype=np.uint8)).save(image)
    scale = PRETRAINED[NAMES[0]].scale
    code, output = run_command(
        "esrt_lit.upscale",
        [
            f"input={image.parent}",
            f"output={tmp_path / 'out'}",
            f"scale={scale}",
            f"hydra.run.dir={tmp_path / 'run'}",
        ],
    )
    assert code == 0, output[-3000:]
    assert Image.open(tmp_path / "out" / "a.png").size == (20 * scale, 16 * scale)
    missing = next(s for s in (2, 3, 4) if f"x{s}" not in PRETRAINED) if len(PRETRAINED) < 3 else None
    if missing is not None:
        code, output = run_command(
            "esrt_lit.upscale",
            [
                f"input={image.parent}",
                f"output={tmp_path / 'o2'}",
                f"scale={missing}",
                f"hydra.run.dir={tmp_path / 'r2'}",
            ],
        )
        assert (
            code == 1
            and f"scale={missing}: no weights ship for x{missing} (shipped: x2, x4); give ckpt_path="
            in output.strip().splitlines()[-1]
        )
    json.dumps(provenance(NAMES[0]))  # the provenance is plain JSON
