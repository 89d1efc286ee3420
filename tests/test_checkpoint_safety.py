"""Checkpoints are data, never code.

Each hostile checkpoint below is made of plain dicts, strings and tensors, so ``torch.load`` with
``weights_only=True`` reads it; what it records as its network would write a marker file if anything
passed it to ``hydra.utils.instantiate`` (or imported and called what it names). Every loader path
(the library's ``load_network``, and the ``eval``, ``upscale``, ``export`` and ``train`` commands)
must refuse it with one line naming the file, and the marker must never appear.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
import torch

from esrt_lit.models import ESRT
from esrt_lit.models.checkpoint import CheckpointError, load_network
from esrt_lit.models.config import ESRTConfig
from esrt_lit.models.official import to_official
from esrt_lit.training.module import describe_net
from train_helpers import make_tiny_images, run_command, tiny_net, tiny_overrides

TRACEBACK = "Traceback (most recent call last)"


def _writer(marker: Path) -> dict[str, Any]:
    """A Hydra node that writes ``marker`` when instantiated."""
    return {"_target_": "pathlib.Path.write_text", "_args_": [str(marker), "pwned"]}


def _checkpoint(path: Path, net_record: Any, net: ESRT | None = None) -> Path:
    net = net or tiny_net()
    state = {f"net.{k}": v for k, v in net.state_dict().items()}
    torch.save(
        {"state_dict": state, "pytorch-lightning_version": "2.6.0", "hyper_parameters": {"net": net_record}},
        path,
    )
    return path


def _payloads(marker: Path) -> dict[str, Any]:
    """Recorded networks that would run code, each of a different shape."""
    real = describe_net(tiny_net())
    assert real is not None
    return {
        "target": _writer(marker),  # the network itself is the call
        "nested-knob": {**real, "n_feats": _writer(marker)},  # instantiation is recursive
        "extra-key": {**real, "extra": _writer(marker)},  # a key no ESRT knob has
        "partial": {**real, "_target_": "pathlib.Path.write_text", "_partial_": True},
        "convert": {**real, "_convert_": "all", "hook": _writer(marker)},
        "list-knob": {**real, "mlp_ratio": [_writer(marker)]},
    }


@pytest.fixture
def marker(tmp_path: Path) -> Path:
    path = tmp_path / "marker.txt"
    yield path
    assert not path.exists(), "a checkpoint ran code: the marker file was written"


@pytest.mark.parametrize("kind", ["target", "nested-knob", "extra-key", "partial", "convert", "list-knob"])
def test_load_network_refuses_code_in_a_checkpoint(tmp_path: Path, marker: Path, kind: str) -> None:
    ckpt = _checkpoint(tmp_path / f"{kind}.ckpt", _payloads(marker)[kind])
    with pytest.raises(CheckpointError, match=rf"^{ckpt}: its network"):
        load_network(ckpt)


def test_the_recorded_network_is_read_as_data() -> None:
    real = describe_net(tiny_net())
    assert ESRTConfig.from_checkpoint(real, "x.ckpt") == ESRTConfig(**tiny_net().config)
    assert ESRTConfig.from_checkpoint({**real, "_target_": "esrt_lit.models.ESRT"}, "x.ckpt").n_feats == 8
    with pytest.raises(
        ValueError, match=r"x\.ckpt: its network records an unknown knob 'nfeats' \(did you mean n_feats\?\)"
    ):
        ESRTConfig.from_checkpoint({**real, "nfeats": 8}, "x.ckpt")
    with pytest.raises(ValueError, match=r"x\.ckpt: its network knobs are invalid: n_hpb=0 is invalid"):
        ESRTConfig.from_checkpoint({**real, "n_hpb": 0}, "x.ckpt")
    with pytest.raises(ValueError, match=r"rsa='yes' is invalid; expected true or false"):
        ESRTConfig.from_checkpoint({**real, "rsa": "yes"}, "x.ckpt")
    with pytest.raises(ValueError, match=r"'net' hyper-parameter is list; expected a mapping"):
        ESRTConfig.from_checkpoint([real], "x.ckpt")


def test_a_genuine_training_checkpoint_still_loads(tmp_path: Path) -> None:
    net = tiny_net()
    ckpt = _checkpoint(tmp_path / "good.ckpt", describe_net(net), net)
    loaded = load_network(ckpt)
    x = torch.rand(1, 3, 8, 8)
    with torch.no_grad():
        assert torch.equal(loaded(x), net.eval()(x))


@pytest.mark.parametrize("kind", ["training", "port", "released"])
def test_non_finite_weights_are_refused_at_load(tmp_path: Path, kind: str) -> None:
    net = tiny_net()
    state = net.state_dict()  # shares storage with the parameters
    first = "lcb.hpbs.0.arfb_in.ru1.conv_up.weight"
    if kind == "training":
        state[first].view(-1)[0] = math.nan
        ckpt = _checkpoint(tmp_path / "nan.ckpt", describe_net(net), net)
    elif kind == "port":
        state[first].view(-1)[0] = math.inf
        ckpt = tmp_path / "inf.pt"
        torch.save(state, ckpt)
    else:
        released = to_official(ESRT(scale=2))
        first = next(k for k, v in released.items() if v.is_floating_point() and v.ndim == 4)
        released[first].view(-1)[0] = math.nan
        ckpt = tmp_path / "released.pth"
        torch.save(released, ckpt)
    with pytest.raises(CheckpointError, match=rf"^{ckpt}: tensor '{first}' holds NaN or infinite values"):
        load_network(ckpt)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("module", "args"),
    [
        ("esrt_lit.eval", ["ckpt_path={ckpt}"]),
        ("esrt_lit.upscale", ["ckpt_path={ckpt}", "input={image}", "output={tmp}/out"]),
        ("esrt_lit.export", ["ckpt_path={ckpt}", "output={tmp}/net.onnx"]),
        ("esrt_lit.train", ["ckpt_path={ckpt}", "logger=csv", "test=false"]),
    ],
)
def test_every_command_refuses_code_in_a_checkpoint(
    tmp_path: Path, marker: Path, module: str, args: list[str]
) -> None:
    data = make_tiny_images(tmp_path / "data")
    image = next(data["val"].iterdir())
    for kind, record in _payloads(marker).items():
        ckpt = _checkpoint(tmp_path / f"{kind}.ckpt", record)
        filled = [a.format(ckpt=ckpt, image=image, tmp=tmp_path / kind) for a in args]
        if module != "esrt_lit.export":  # the Hydra commands' run folder
            filled.append(f"hydra.run.dir={tmp_path / kind / 'run'}")
        extra = tiny_overrides(data, epochs=1, steps=1) if module == "esrt_lit.train" else []
        code, out = run_command(module, [*extra, *filled])
        assert code == 1, f"{kind}: exit {code}\n{out[-2000:]}"
        errors = [line for line in out.splitlines() if line.startswith("error: ")]
        assert len(errors) == 1 and str(ckpt) in errors[0] and "its network" in errors[0], (
            f"{kind}: {out[-2000:]}"
        )
        assert TRACEBACK not in out, kind


@pytest.mark.parametrize(
    "override",
    [
        "model._target_=pathlib.Path.write_text",
        "+callbacks.evil={{_target_:pathlib.Path.write_text,_args_:['{marker}',pwned]}}",
    ],
)
def test_a_resumed_run_folder_is_read_as_data(tmp_path: Path, marker: Path, override: str) -> None:
    """``resume_dir`` takes the run's recorded overrides; one that would instantiate is refused."""
    run = tmp_path / "run"
    (run / ".hydra").mkdir(parents=True)
    (run / ".hydra" / "overrides.yaml").write_text(f"- {override.format(marker=marker)!r}\n- scale=2\n")
    (run / "checkpoints").mkdir()
    code, out = run_command("esrt_lit.train", [f"resume_dir={run}"])
    assert code == 1, out[-2000:]
    errors = [line for line in out.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "overrides.yaml" in errors[0] and "instantiation key" in errors[0], out
    assert TRACEBACK not in out
