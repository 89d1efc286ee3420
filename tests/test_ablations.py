"""Every ablation preset composes into a Hydra multirun grid whose models have the parameter count
that each knob value implies (counted in closed form from the paper's blocks, not from the code)."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

import esrt_lit.train  # noqa: F401  (registers the config resolvers)
from esrt_lit.reference import PORT_PARAMS

CONF = Path(__file__).resolve().parents[1] / "conf"
# the paper's model ablations (ablation_degradation sweeps the data: tests/test_degradations.py)
PRESETS = sorted(
    p.stem for p in (CONF / "experiment").glob("ablation_*.yaml") if p.stem != "ablation_degradation"
)

F = 32  # feature width
RU = 2 * (9 * F * F // 2) + F // 2 + F // 2 + F + 2  # two 3x3 convs (with bias), PReLU, two scales
CA = F * 2 + 2 + 2 * F + F  # 1x1 convs 32->2->32 with bias
ARFB = 2 * RU + 2 + 2 * F * F + CA + 9 * F * F + 2  # RUs, 2 scales, 1x1 fuse, CA, 3x3 conv, 2 scales
DIM = 9 * F


def hpb(hfm: bool) -> int:
    return (4 if hfm else 3) * ARFB + (2 if hfm else 1) * F * F + CA


def et(mlp_ratio: float = 0.25) -> int:
    hidden = int(DIM * mlp_ratio)
    return (
        2 * 2 * DIM
        + DIM * DIM // 2
        + (DIM // 2) * (3 * DIM // 2)
        + (DIM // 2) * DIM
        + DIM
        + 2 * DIM * hidden
        + hidden
        + DIM
    )


def expected_params(
    scale: int, n_hpb: int = 3, n_et: int = 1, hfm: bool = True, rsa: bool = True, **_: object
) -> int:
    total = PORT_PARAMS[scale] - 3 * hpb(True) - 9 * 3 * F * F - et()  # everything but the ablated parts
    total += n_hpb * hpb(hfm) + 9 * n_hpb * F * F + n_et * et()
    if not rsa:
        total -= (
            n_hpb * (4 if hfm else 3) * (4 + 2 * 2) + 2
        )  # per ARFB 4 scales + 2 per RU; 2 in the LTB residual
    return total


def test_closed_form_matches_the_released_counts() -> None:
    assert {s: expected_params(s) for s in PORT_PARAMS} == PORT_PARAMS


def test_every_paper_ablation_has_a_preset() -> None:
    expected = [f"ablation_{n}" for n in sorted(["et", "grid", "heads", "hfm", "hpb", "rsa", "splits"])]
    assert expected == PRESETS


@pytest.mark.parametrize("preset", PRESETS)
def test_preset_grid_composes_with_implied_params(preset: str) -> None:
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        base = compose(config_name="train", overrides=[f"experiment={preset}"], return_hydra_config=True)
        grid = {k: str(v).split(",") for k, v in base.hydra.sweeper.params.items()}
        assert grid and all(k.startswith("model.") for k in grid)
        jobs = [[]]
        for key, values in grid.items():
            jobs = [[*job, f"{key}={v}"] for job in jobs for v in values]
        for job in jobs:
            cfg = compose(config_name="train", overrides=[f"experiment={preset}", *job])
            net = instantiate(cfg.model)
            knobs = {k.removeprefix("model."): v for k, v in (o.split("=") for o in job)}
            assert all(str(net.config[k]).lower() == v.lower() for k, v in knobs.items()), job
            assert sum(p.numel() for p in net.parameters()) == expected_params(**net.config), job
