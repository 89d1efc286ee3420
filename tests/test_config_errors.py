"""Values of the wrong type or range, and keys nothing reads, end every command before anything is built:
one line naming the key, the value and what was expected (:mod:`esrt_lit.config_schema`), exit status 1,
no traceback, no training step, nothing that existed before changed.

The commands run in this process (:func:`train_helpers.run_command`, as ``test_bad_input`` does); one case
runs the real ``python -m esrt_lit.upscale`` on non-ASCII paths, which Hydra's parser reads only quoted.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig
from PIL import Image

from esrt_lit.cli import quote_non_ascii
from esrt_lit.config_schema import check_schema
from esrt_lit.errors import ConfigError
from esrt_lit.paths import CONF_DIR
from esrt_lit.training.module import describe_net
from train_helpers import make_tiny_images, run_cli, run_command, tiny_net, tiny_overrides

TRACEBACK = "Traceback (most recent call last)"
TRAIN, EVAL, UPSCALE, EXPORT = "esrt_lit.train", "esrt_lit.eval", "esrt_lit.upscale", "esrt_lit.export"


@pytest.fixture(scope="module")
def ws(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Training data, checkpoints that are no run's, an image to upscale and outputs that exist."""
    root = tmp_path_factory.mktemp("schema")
    make_tiny_images(root / "tiny")
    torch.save(tiny_net().state_dict(), root / "plain_x2.pth")
    net = tiny_net()  # a network record and weights, but none of Lightning's (version, optimiser states)
    state = {f"net.{k}": v for k, v in net.state_dict().items()}
    torch.save({"state_dict": state, "hyper_parameters": {"net": describe_net(net)}}, root / "weights.ckpt")
    pixels = np.random.default_rng(0).integers(0, 256, (12, 10, 3), dtype=np.uint8)
    for path in (root / "up" / "a.png", root / "taken" / "a.png", root / "фото" / "фото.png"):
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(pixels).save(path)
    (root / "taken.onnx").write_text("user data")
    return root


def _snapshot(root: Path) -> dict[str, str]:
    return {str(p): hashlib.sha256(p.read_bytes()).hexdigest() for p in root.rglob("*") if p.is_file()}


# (id, command, arguments ({ws}: the workspace, {out}: a fresh folder), the whole error line)
CASES = [
    ("batch-text", TRAIN, ["data.batch_size=abc"], "data: batch_size='abc' is invalid; expected an integer"),
    ("augment", TRAIN, ["data.augment=maybe"], "data: augment='maybe' is invalid; expected true or false"),
    (
        "patch-negative",
        TRAIN,
        ["data.patch_size=-4"],
        "data.patch_size=-4 is invalid; expected a positive LR patch side",
    ),
    ("seed-text", TRAIN, ["seed=abc"], "seed='abc' is invalid; expected an integer or null"),
    ("seed-negative", TRAIN, ["seed=-1"], "seed=-1 is invalid; expected an integer from 0 to 4294967295"),
    ("train-no", TRAIN, ["train=no"], "train='no' is invalid; expected true or false"),
    (
        "print-config",
        TRAIN,
        ["extras.print_config=maybe"],
        "extras: print_config='maybe' is invalid; expected true or false",
    ),
    (
        "accumulate-0",
        TRAIN,
        ["trainer.accumulate_grad_batches=0"],
        "trainer: accumulate_grad_batches=0 is invalid; expected an integer >= 1",
    ),
    (
        "precision",
        TRAIN,
        ["trainer.precision=bf17"],
        "trainer: precision='bf17' is not supported; allowed values: 64, 32, 16, transformer-engine",
    ),
    (
        "betas",
        TRAIN,
        ["optimizer.betas=[0.9]"],
        "optimizer: betas=[0.9] is invalid; expected a list of 2 numbers",
    ),
    (
        "step-size-0",
        TRAIN,
        ["scheduler.step_size=0"],
        "scheduler: step_size=0 is invalid; expected an integer >= 1",
    ),
    (
        "data-scale",
        TRAIN,
        ["data.scale=3"],
        "data.scale=3 contradicts scale=2: the data and the model take one SR factor, the top-level one; "
        "set scale=3 instead of data.scale",
    ),
    ("model-scale", TRAIN, ["model.scale=4"], "model.scale=4 contradicts scale=2"),
    (
        "plus-group-typo",
        TRAIN,
        ["+modle=esrt_tiny"],
        "+modle=esrt_tiny: nothing reads the key 'modle'; did you mean model? (model=esrt_tiny picks a model config)",
    ),
    ("plus-key-typo", TRAIN, ["+sed=1"], "+sed=1: nothing reads the key 'sed'; did you mean seed?"),
    (
        "plus-parameter-typo",
        TRAIN,
        ["+data.bach_size=8"],
        "+data.bach_size=8: esrt_lit.data.SRDataModule takes no parameter 'bach_size'; did you mean data.batch_size?",
    ),
    (
        "ckpt-state-dict",
        TRAIN,
        ["ckpt_path={ws}/plain_x2.pth"],
        "plain_x2.pth: a run continues only from a checkpoint of esrt_lit.train (<run folder>/checkpoints/*.ckpt), "
        "and this file is not one (no 'net' hyper-parameter); eval and upscale take any weights",
    ),
    (
        "ckpt-weights-only",
        TRAIN,
        ["ckpt_path={ws}/weights.ckpt"],
        "weights.ckpt: a run continues only from a checkpoint of esrt_lit.train (<run folder>/checkpoints/*.ckpt), "
        "and this file is not one (no 'pytorch-lightning_version', 'optimizer_states', 'lr_schedulers')",
    ),
    (
        "non-ascii-in-a-list",
        TRAIN,
        ["data.train=[{kind:folder,path:{ws}/фото}]"],
        "Hydra's override syntax reads non-ASCII characters only inside quotes",
    ),
    (
        "eval-scale",
        EVAL,
        ["model=bicubic", "scale=abc"],
        "scale='abc' is not supported; allowed values: 2, 3, 4",
    ),
    (
        "eval-plus-typo",
        EVAL,
        ["+modle=bicubic"],
        "+modle=bicubic: nothing reads the key 'modle'; did you mean model? (model=bicubic picks a model config)",
    ),
    (
        "up-overwrite-no",
        UPSCALE,
        ["input={ws}/up", "output={ws}/taken", "model=bicubic", "overwrite=no"],
        "overwrite='no' is invalid; expected true or false",
    ),
    (
        "up-overwrite-1",
        UPSCALE,
        ["input={ws}/up", "output={ws}/taken", "model=bicubic", "overwrite=1"],
        "overwrite=1 is invalid; expected true or false",
    ),
    (
        "up-overlap",
        UPSCALE,
        ["input={ws}/up", "output={out}", "model=bicubic", "tile_overlap=abc"],
        "tile_overlap='abc' is invalid; expected an integer or null",
    ),
    (
        "export-overwrite-no",
        EXPORT,
        ["ckpt_path=null", "scale=2", "output={ws}/taken.onnx", "overwrite=no"],
        "overwrite='no'",
    ),
    ("export-opset", EXPORT, ["ckpt_path=null", "scale=2", "opset=abc"], "opset='abc' is invalid"),
    (
        "export-plus-typo",
        EXPORT,
        ["ckpt_path=null", "scale=2", "+opsett=17"],
        "opsett=17: nothing reads the key 'opsett'; did you mean opset?",
    ),
]


@pytest.mark.parametrize(("case", "module", "args", "line"), CASES, ids=[c[0] for c in CASES])
def test_bad_value_ends_with_one_line(
    case: str, module: str, args: list[str], line: str, ws: Path, tmp_path: Path
) -> None:
    out, run = tmp_path / "out", tmp_path / "run"
    args = [a.replace("{ws}", str(ws)).replace("{out}", str(out)) for a in args]
    if module == TRAIN:
        args = [
            *tiny_overrides({"train": ws / "tiny" / "train", "val": ws / "tiny" / "val"}),
            "logger=none",
            *args,
        ]
    if module != EXPORT:
        args.append(f"hydra.run.dir={run}")
    before = _snapshot(ws)
    code, output = run_command(module, args)
    assert code == 1, f"{case}: exit status {code}\n{output[-3000:]}"
    assert TRACEBACK not in output, f"{case}: a traceback\n{output[-6000:]}"
    last = output.strip().splitlines()[-1]
    assert last.startswith("error: ") and line in last, f"{case}: {last}"
    assert _snapshot(ws) == before, (
        f"{case}: changed a file of the workspace"
    )  # overwrite=no replaced nothing
    assert not (run / "checkpoints").exists() and not out.exists(), f"{case}: trained or wrote"


def test_non_ascii_paths_work_from_the_shell(ws: Path, tmp_path: Path) -> None:
    """``input=фото.png output=résultat/`` as typed: quoted for Hydra's parser, which refused them unquoted."""
    out = tmp_path / "résultat"
    result = run_cli(
        UPSCALE,
        f"input={ws}/фото/фото.png",
        f"output={out}/",
        "model=bicubic",
        f"hydra.run.dir={tmp_path / 'run'}",
        HYDRA_FULL_ERROR="0",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert Image.open(out / "фото.png").size == (40, 48)


def test_quote_non_ascii() -> None:
    assert quote_non_ascii(["-m", "input=фото.png", "scale=2", "+output=résultat/"]) == [
        "-m",
        "input='фото.png'",
        "scale=2",
        "+output='résultat/'",
    ]
    quoted = ["input='фото.png'", 'data.train=[{kind:folder,path:"/data/фото"}]']
    assert quote_non_ascii(quoted) == quoted  # quoted already: kept
    for arg in ("input=фото1.png,фото2.png", "données=1"):  # a sweep; a key
        with pytest.raises(SystemExit):
            quote_non_ascii([arg])


def _check(overrides: list[str]) -> None:
    with initialize_config_dir(CONF_DIR, version_base="1.3"):
        cfg = compose("train", overrides=overrides, return_hydra_config=True)
        HydraConfig().set_config(cfg)
        check_schema(cfg)


def test_what_lightning_and_the_groups_take_is_accepted() -> None:
    _check(["+trainer.limit_train_batches=2", "++trainer.max_steps=2", "trainer.precision=bf16-mixed"])
    _check(["trainer.devices=[0,1]", "seed=null", "+callbacks.extra={_target_:torch.nn.Identity}"])
    _check(["trainer.devices=auto", "trainer.deterministic=warn", "callbacks.rich_progress_bar=null"])
    _check(["model=esrt_tiny", "data.num_workers=auto", "optimizer.lr=1", "trainer.gradient_clip_val=0.5"])


def test_unknown_key_of_a_target_is_refused_whatever_set_it() -> None:
    with pytest.raises(ConfigError, match=r"data.bach_size=8: esrt_lit.data.SRDataModule takes no parameter"):
        _check(["+data.bach_size=8"])
    with pytest.raises(ConfigError, match=r"callbacks.extra: p='abc' is invalid; expected a number"):
        _check(["+callbacks.extra={_target_:torch.nn.Dropout,p:abc}"])
