"""ONNX export: dynamic sizes (including an extra short attention chunk), the CLI, no overwriting."""

from __future__ import annotations

import hashlib
from pathlib import Path
from unittest import mock

import numpy as np
import pytest
import torch

from esrt_lit.export import export_onnx, export_pretrained, load_net, main, verify_onnx
from esrt_lit.models import ESRT
from esrt_lit.models.transformer import (
    chunked_attention,
    feature_to_tokens,
    padded_chunked_attention,
    tokens_to_feature,
)
from esrt_lit.training.module import describe_net
from train_helpers import tiny_net

TRACEBACK = "Traceback (most recent call last)"


@pytest.mark.parametrize("n", [4, 5, 7, 16, 35, 117, 1073])
def test_padded_attention_is_the_chunked_attention(n: int) -> None:
    torch.manual_seed(n)
    q, k, v = (torch.randn(2, 3, n, 6, dtype=torch.float64) for _ in range(3))
    ref = chunked_attention(q, k, v, 4, 0.4, "explicit")
    assert torch.allclose(padded_chunked_attention(q, k, v, 4, 0.4), ref, atol=1e-14, rtol=0)
    assert torch.allclose(chunked_attention(q, k, v, 4, 0.4, "sdpa"), ref, atol=1e-14, rtol=0)


def test_export_forms_of_unfold_and_fold_are_exact() -> None:
    x = torch.randn(2, 5, 7, 9, dtype=torch.float64)
    t = torch.randn(2, 63, 45, dtype=torch.float64)
    tokens, feature = feature_to_tokens(x), tokens_to_feature(t, (7, 9))
    with mock.patch("torch.onnx.is_in_onnx_export", return_value=True):
        assert torch.equal(feature_to_tokens(x, 5), tokens)
        assert torch.allclose(tokens_to_feature(t, (7, 9), 5), feature, atol=1e-13, rtol=0)


def test_onnxruntime_matches_pytorch_on_sizes_not_used_at_export(tmp_path: Path) -> None:
    torch.manual_seed(0)
    net = ESRT(scale=3, n_feats=8, n_hpb=1, et_heads=4, low_repeats=2).eval()
    path = export_onnx(net, tmp_path / "tiny.onnx", trace_hw=(16, 20))
    # 13·19 = 247 tokens (247 % 4 = 3: five chunks, the last one short) and a different aspect ratio
    diffs = verify_onnx(net, path, [(13, 19), (24, 10)])
    assert set(diffs) == {(13, 19), (24, 10)}
    assert max(diffs.values()) <= 1e-4
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (out,) = session.run(["sr"], {"lr": np.random.default_rng(0).random((2, 3, 7, 11), dtype=np.float32)})
    assert out.shape == (2, 3, 21, 33)  # dynamic batch too


def test_export_refuses_to_overwrite(tmp_path: Path) -> None:
    target = tmp_path / "model.onnx"
    target.write_bytes(b"user data")
    net = ESRT(scale=2, n_feats=8, n_hpb=1, et_heads=4, low_repeats=1).eval()
    with pytest.raises(FileExistsError, match="overwrite=true"):
        export_onnx(net, target, trace_hw=(8, 8))
    assert target.read_bytes() == b"user data"
    export_onnx(net, target, trace_hw=(8, 8), overwrite=True)
    assert target.read_bytes() != b"user data"
    assert [p.name for p in tmp_path.iterdir()] == ["model.onnx"]  # no temporary file left


def test_load_net_sources(tmp_path: Path, golden: dict) -> None:
    with pytest.raises(ValueError, match="scale"):
        load_net(None)
    assert load_net(None, 3).scale == 3
    with pytest.raises(FileNotFoundError, match="nope.pth"):
        load_net(tmp_path / "nope.pth")
    official = tmp_path / "ESRT_x2.pth"
    torch.save(golden["x2"]["state_dict"], official)
    net = load_net(official)
    assert net.scale == 2 and not net.training
    with pytest.raises(ValueError, match="x2"):
        load_net(official, scale=4)


def test_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "x2.onnx"
    args = ["ckpt_path=null", "scale=2", f"output={out}", "trace_hw=[12,16]", "verify_hw=[[9,13],[10,7]]"]
    assert main(args) == 0
    assert "9×13" in capsys.readouterr().out and out.is_file()
    stamp = out.stat().st_mtime_ns
    assert main(args) == 1
    assert "overwrite=true" in capsys.readouterr().err and out.stat().st_mtime_ns == stamp
    assert main(["ckpt_path=null", "scale=2", "format=tflite"]) == 1
    assert "format='tflite'" in capsys.readouterr().err
    assert main([]) == 1
    assert "ckpt_path" in capsys.readouterr().err
    assert main(["ckpt_path=null", "scale=2", "colour=1"]) == 1


def _training_checkpoint(path: Path) -> Path:
    """A checkpoint of ``esrt_lit.train`` holding :func:`tiny_net` (any suffix)."""
    net = tiny_net()
    state = {f"net.{k}": v for k, v in net.state_dict().items()}
    torch.save({"state_dict": state, "hyper_parameters": {"net": describe_net(net)}}, path)
    return path


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _one_error_line(err: str) -> str:
    assert TRACEBACK not in err
    (line,) = [line for line in err.splitlines() if line.startswith("error:")]
    return line


@pytest.mark.parametrize(
    "args",
    [
        ["format=pretrained", "overwrite=true"],  # the default output is the checkpoint's path with .pt
        ["format=pretrained", "output={ckpt}", "overwrite=true"],
        ["format=pretrained", "output={ckpt}"],
        ["format=onnx", "output={ckpt}", "overwrite=true"],
        ["output={ckpt}"],
    ],
    ids=["pretrained-default", "pretrained-overwrite", "pretrained", "onnx-overwrite", "onnx"],
)
def test_export_never_replaces_its_input(
    args: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ckpt = _training_checkpoint(tmp_path / "mine.pt")
    before = _digest(ckpt)
    assert main([f"ckpt_path={ckpt}", *(a.replace("{ckpt}", str(ckpt)) for a in args)]) == 1
    line = _one_error_line(capsys.readouterr().err)
    assert f"output={ckpt} is the input {ckpt}" in line and "even with overwrite=true" in line
    assert _digest(ckpt) == before and sorted(p.name for p in tmp_path.iterdir()) == ["mine.pt"]


def test_export_pretrained_never_replaces_the_runs_metrics(tmp_path: Path) -> None:
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    ckpt = _training_checkpoint(run / "checkpoints" / "best.ckpt")
    metrics = run / "metrics.json"
    metrics.write_text("{}\n")
    with pytest.raises(ValueError, match=r"provenance record of output=.*metrics\.json is the input"):
        export_pretrained(load_net(ckpt), ckpt, run / "metrics.pt", overwrite=True)
    assert metrics.read_text() == "{}\n" and not (run / "metrics.pt").exists()


@pytest.mark.parametrize("value", ["no", "yes", "1", "'false'"])
def test_export_overwrite_must_be_a_boolean(
    value: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "model.onnx"
    target.write_bytes(b"user data")
    assert main(["ckpt_path=null", "scale=2", f"output={target}", f"overwrite={value}"]) == 1
    line = _one_error_line(capsys.readouterr().err)
    assert line.startswith("error: overwrite=") and "expected true or false" in line
    assert target.read_bytes() == b"user data"


@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "0", "-1e-4", "abc", "true"])
def test_export_tolerance_must_be_finite_and_positive(
    value: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "x2.onnx"
    assert main(["ckpt_path=null", "scale=2", f"output={out}", f"tolerance={value}"]) == 1
    line = _one_error_line(capsys.readouterr().err)
    assert line.startswith("error: tolerance=") and "expected a finite positive number" in line
    assert not out.exists()


def test_verification_fails_on_outputs_that_are_not_finite(tmp_path: Path) -> None:
    good = tiny_net().eval()
    broken = tiny_net().eval()
    with torch.no_grad():
        broken.sfe.weight.fill_(float("nan"))
    good_onnx = export_onnx(good, tmp_path / "good.onnx", trace_hw=(8, 8))
    nan_onnx = export_onnx(broken, tmp_path / "nan.onnx", trace_hw=(8, 8))
    for net, path, counts in (
        (broken, nan_onnx, r"onnxruntime [1-9]\d*, PyTorch [1-9]"),  # both sides NaN: |Δ| was nan and passed
        (broken, good_onnx, r"onnxruntime 0, PyTorch [1-9]"),
        (good, nan_onnx, r"onnxruntime [1-9]\d*, PyTorch 0"),
    ):
        with pytest.raises(ValueError, match=rf"{path.name}: the outputs are not finite .*{counts}"):
            verify_onnx(net, path, [(9, 11)])
    assert verify_onnx(good, good_onnx, [(9, 11)])[(9, 11)] <= 1e-4
