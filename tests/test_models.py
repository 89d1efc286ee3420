"""ESRT port: golden outputs of the released network, parameter counts, gradients, checkpoint
conversion and the ablation knobs."""

from __future__ import annotations

import re

import pytest
import torch

from esrt_lit import ESRT
from esrt_lit.models.arfb import ARFB
from esrt_lit.models.checkpoint import load_network
from esrt_lit.models.layers import Scale
from esrt_lit.models.official import from_official, to_official
from esrt_lit.models.transformer import EfficientTransformer

SCALES = (2, 3, 4)
RELEASED_PARAMS = {2: 677_771, 3: 770_251, 4: 751_755}
UNUSED = re.compile(r"\.(encoder|decoder_low|decoder_high|alise)\.weight1\.scale$")


def n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("attention", ["sdpa", "explicit"])
@pytest.mark.parametrize("scale", SCALES)
def test_golden_outputs(golden: dict, scale: int, attention: str) -> None:
    entry = golden[f"x{scale}"]
    model64 = from_official(entry["state_dict"], attention=attention).double().eval()
    model32 = from_official(entry["state_dict"], attention=attention).eval()
    assert set(entry["cases"]) == {"square24", "odd29x37"}
    for case in entry["cases"].values():
        lr, sr = case["lr"], case["sr"]
        with torch.no_grad():
            out64 = model64(lr)
            out32 = model32(lr.float()).double()
        assert out64.shape == sr.shape
        assert (out64 - sr).abs().max().item() <= 1e-8
        assert ((out32 - sr).abs().max() / sr.abs().max()).item() <= 1e-4


def test_golden_inferred_scale_and_prefix(golden: dict) -> None:
    for scale in SCALES:
        state = {f"module.{k}": v for k, v in golden[f"x{scale}"]["state_dict"].items()}
        assert from_official(state).scale == scale


@pytest.mark.parametrize("scale", SCALES)
def test_parameter_counts(scale: int) -> None:
    assert n_params(ESRT(scale=scale)) == RELEASED_PARAMS[scale]


@pytest.mark.parametrize("scale", SCALES)
def test_every_parameter_gets_a_gradient(scale: int) -> None:
    torch.manual_seed(0)
    model = ESRT(scale=scale)
    # Perturb the scales away from 1, and keep the 2-unit channel-attention bottlenecks out of the dead
    # ReLU region that a random initialisation can put them in, so that every gradient is informative.
    for name, p in model.named_parameters():
        if p.numel() == 1:
            p.data.uniform_(0.5, 1.5)
        elif name.endswith("ca.reduce.bias"):
            p.data.fill_(1.0)
    lr = torch.rand(2, 3, 12, 10)
    loss = (model(lr) - torch.rand(2, 3, 12 * scale, 10 * scale)).abs().mean()
    loss.backward()
    dead = [n for n, p in model.named_parameters() if p.grad is None or not torch.any(p.grad != 0)]
    assert dead == []


def test_round_trip_official_names(golden: dict) -> None:
    state = golden["x4"]["state_dict"]
    model = from_official(state).double().eval()
    official = to_official(model)
    assert set(official) == set(state)
    for key, value in state.items():
        if UNUSED.search(key):
            assert torch.equal(official[key], torch.ones(1, dtype=official[key].dtype))
        else:
            assert torch.equal(official[key], value.double()), key
    again = from_official(official).double().eval()
    lr = golden["x4"]["cases"]["odd29x37"]["lr"]
    with torch.no_grad():
        assert torch.equal(model(lr), again(lr))


def test_round_trip_random_weights_all_scales(tmp_path) -> None:
    for scale in SCALES:
        torch.manual_seed(scale)
        model = ESRT(scale=scale).eval()
        path = tmp_path / f"x{scale}.pth"
        torch.save(to_official(model), path)
        again = load_network(path).eval()
        lr = torch.rand(1, 3, 9, 11)
        with torch.no_grad():
            assert torch.equal(model(lr), again(lr))


def test_checkpoint_errors_list_keys(tmp_path) -> None:
    state = to_official(ESRT(scale=2))
    missing = dict(state)
    del missing["body.0.attention.norm1.weight"]
    del missing["tail.1.bias"]
    with pytest.raises(ValueError, match=r"missing \(2\): body\.0\.attention\.norm1\.weight, tail\.1\.bias"):
        from_official(missing)
    shaped = dict(state)
    shaped["head.0.weight"] = torch.zeros(32, 3, 5, 5)
    with pytest.raises(ValueError, match=r"mis-shaped \(1\): head\.0\.weight: checkpoint \(32, 3, 5, 5\)"):
        from_official(shaped)
    extra = dict(state)
    extra["body.0.bogus.weight"] = torch.zeros(1)
    with pytest.raises(ValueError, match=r"unexpected \(1\): body\.0\.bogus\.weight"):
        from_official(extra)
    with pytest.raises(ValueError, match="scale=3 was asked for but the checkpoint is a x2 model"):
        from_official(state, scale=3)
    with pytest.raises(FileNotFoundError, match="nope.pth"):
        load_network(tmp_path / "nope.pth")
    wrapped = tmp_path / "wrapped.pth"
    torch.save({"state_dict": {f"module.{k}": v for k, v in state.items()}}, wrapped)
    assert load_network(wrapped).scale == 2


def test_checkpoint_refuses_pickled_objects(tmp_path) -> None:
    path = tmp_path / "pickled.pth"
    torch.save({"state_dict": to_official(ESRT(scale=2)), "extra": object()}, path)
    with pytest.raises(Exception, match="(?i)weights_only|unsupported global"):
        load_network(path)


@pytest.mark.parametrize(
    ("knob", "value", "match"),
    [
        ("scale", 5, r"scale=5 is not supported; allowed values: 2, 3, 4"),
        (
            "et_heads",
            5,
            r"et_heads=5 does not divide the attention width 144 .* allowed values: \[1, 2, 3, 4, 6, 8",
        ),
        ("attention", "flash", r"attention='flash' is not supported; allowed values: sdpa, explicit"),
        ("n_hpb", 0, r"n_hpb=0 is invalid; expected an integer >= 1"),
        ("n_feats", 31, r"n_feats=31 is invalid; expected an even integer"),
        ("attn_splits", 0, r"attn_splits=0 is invalid"),
        ("rsa", "yes", r"rsa='yes' is invalid; expected true or false"),
        ("low_repeats", 0, r"low_repeats=0 is invalid"),
    ],
)
def test_invalid_knobs(knob: str, value: object, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        ESRT(**{knob: value})


@pytest.mark.parametrize(("h", "w"), [(2, 2), (2, 3), (3, 2), (5, 7)])
def test_small_and_odd_inputs(h: int, w: int) -> None:
    model = ESRT(scale=3).eval()
    with torch.no_grad():
        assert model(torch.rand(1, 3, h, w)).shape == (1, 3, 3 * h, 3 * w)


@pytest.mark.parametrize(("h", "w"), [(1, 1), (1, 8), (8, 1)])
def test_too_small_inputs_raise(h: int, w: int) -> None:
    with pytest.raises(ValueError, match=r"too small; ESRT needs height and width >= 2"):
        ESRT(scale=2)(torch.rand(1, 3, h, w))


def test_bad_input_layout_raises() -> None:
    with pytest.raises(ValueError, match=r"expects a \[B, 3, H, W\] tensor, got shape \(3, 8, 8\)"):
        ESRT(scale=2)(torch.rand(3, 8, 8))


def test_attention_paths_agree_with_remainder_chunks() -> None:
    torch.manual_seed(1)
    model = ESRT(scale=2, attn_splits=3).double().eval()
    lr = torch.rand(1, 3, 7, 5, dtype=torch.float64)  # 35 tokens, 3 splits -> chunks of 11 + a short one of 2
    with torch.no_grad():
        fused = model(lr)
        explicit = model.set_attention("explicit")(lr)
    assert (fused - explicit).abs().max().item() <= 1e-12


def _arfb_params(n_feats: int = 32) -> int:
    return n_params(ARFB(n_feats))


def _et_params(dim: int = 288, mlp_ratio: float = 0.25) -> int:
    return n_params(EfficientTransformer(dim, mlp_ratio=mlp_ratio))


def _scale_count(model: torch.nn.Module) -> int:
    return sum(1 for m in model.modules() if isinstance(m, Scale))


def _forward_backward(model: ESRT) -> torch.Tensor:
    lr = torch.rand(1, 3, 8, 9)
    out = model(lr)
    out.abs().mean().backward()
    assert all(p.grad is not None for p in model.parameters())
    return out.detach()


BASE = 751_755  # x4 released knobs


@pytest.mark.parametrize(
    ("knobs", "expected_params"),
    [
        # One HPB more or less: four ARFBs, 1x1 fuse (64->32, no bias), CA (32->2->32), and the LCB fuse conv
        # grows by 32 input channels (3x3x32x32 weights).
        ({"n_hpb": 2}, BASE - (4 * _arfb_params() + 64 * 32 + (32 * 2 + 2 + 2 * 32 + 32)) - 9 * 32 * 32),
        ({"n_hpb": 4}, BASE + (4 * _arfb_params() + 64 * 32 + (32 * 2 + 2 + 2 * 32 + 32)) + 9 * 32 * 32),
        # One ET more: LayerNorms, EMHA and MLP of 288-wide tokens; none: all ET parameters gone.
        ({"n_et": 2}, BASE + _et_params()),
        ({"n_et": 0}, BASE - _et_params()),
        # Heads and splits change the attention pattern, not the parameters.
        ({"et_heads": 4}, BASE),
        ({"attn_splits": 2}, BASE),
        ({"low_repeats": 3}, BASE),
        # MLP width 288 -> 144 instead of 72: (288*144+144) + (144*288+288) vs (288*72+72) + (72*288+288).
        ({"mlp_ratio": 0.5}, BASE + 2 * 288 * 72 + 72),
        # RSA off: every residual scale (RU 2, ARFB 4 + 2 RUs, 4 ARFBs per HPB, 2 in the LTB) becomes a constant 1.
        ({"rsa": False}, BASE - (3 * 4 * (4 + 2 * 2) + 2)),
        # HFM off: the high-frequency ARFB goes and the HPB fuse takes 32 instead of 64 channels.
        ({"hfm": False}, BASE - 3 * (_arfb_params() + 32 * 32)),
    ],
)
def test_ablation_knobs_change_params_and_output(knobs: dict, expected_params: int) -> None:
    torch.manual_seed(0)
    reference = ESRT(scale=4)
    for p in reference.parameters():
        if p.numel() == 1:
            p.data.uniform_(0.5, 1.5)
    torch.manual_seed(0)
    model = ESRT(scale=4, **knobs)
    assert n_params(model) == expected_params
    # Share every weight the two models have in common, so that only the knob can change the output.
    ref_state = reference.state_dict()
    model.load_state_dict(
        {
            k: ref_state[k] if k in ref_state and ref_state[k].shape == v.shape else v
            for k, v in model.state_dict().items()
        }
    )
    torch.manual_seed(3)
    out = _forward_backward(model)
    torch.manual_seed(3)
    ref_out = _forward_backward(reference)
    assert out.shape == ref_out.shape
    assert not torch.allclose(out, ref_out, atol=1e-6), f"{knobs} did not change the output"


def test_rsa_off_equals_unit_scales() -> None:
    torch.manual_seed(0)
    fixed = ESRT(scale=2, rsa=False).eval()
    learnable = ESRT(scale=2).eval()
    learnable.load_state_dict(fixed.state_dict(), strict=False)  # the scales stay at their initial 1
    assert _scale_count(fixed) == _scale_count(learnable)
    lr = torch.rand(1, 3, 6, 6)
    with torch.no_grad():
        assert torch.equal(fixed(lr), learnable(lr))
    official = to_official(fixed)
    assert set(official) == set(to_official(learnable))
    assert n_params(from_official(official, rsa=False)) == n_params(fixed)


def test_to_official_refuses_non_released_knobs() -> None:
    with pytest.raises(ValueError, match=r"cannot hold these knobs: \{'n_hpb': 2\}"):
        to_official(ESRT(scale=2, n_hpb=2))


@pytest.mark.parametrize(
    "knobs",
    [{"scale": 3}, {"n_hpb": 2, "n_et": 0}, {"rsa": False, "hfm": False}, {"mlp_ratio": 0.3, "n_feats": 16}],
    ids=["x3", "hpb2-et0", "rsa-hfm-off", "mlp0.3-feats16"],
)
def test_plain_state_dicts_load_with_the_architecture_their_tensors_show(knobs: dict, tmp_path) -> None:
    from esrt_lit.models.checkpoint import infer_esrt_config, load_network

    torch.manual_seed(0)
    net = ESRT(**{"scale": 2, **knobs}).eval()
    inferred = infer_esrt_config(net.state_dict())
    assert {k: v for k, v in inferred.items() if k != "mlp_ratio"} == {
        k: net.config[k] for k in inferred if k != "mlp_ratio"
    }
    torch.save(net.state_dict(), tmp_path / "plain.pth")
    loaded = load_network(tmp_path / "plain.pth")
    assert loaded.scale == net.scale and all(
        torch.equal(a, b)
        for a, b in zip(loaded.state_dict().values(), net.state_dict().values(), strict=True)
    )
