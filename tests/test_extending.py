"""docs/extending.md, done for real: each recipe's toy (a loss, a metric, a logger, a network knob; the
storage recipe's toy is tests/test_storage.py) goes through the files the recipe names and nothing else,
and a short training run uses it.

The loss and the logger come in as a user's own would: a class in the user's module (here, this one) and
one YAML in a config folder on Hydra's search path (``hydra.searchpath``), not in ``conf/``.
"""

from __future__ import annotations

import dataclasses
import inspect
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest
import torch
from lightning.pytorch.loggers import Logger
from omegaconf import OmegaConf

from esrt_lit.metrics import METRICS, PerImageMeanMetric, SRMetric, format_scores, is_better, score_images
from esrt_lit.models import ESRT
from esrt_lit.models.checkpoint import load_network
from esrt_lit.models.config import ESRTConfig
from esrt_lit.paths import CONF_DIR
from esrt_lit.train import train
from train_helpers import compose_train, tiny_overrides


def _train(
    tiny_data: dict[str, Path], tmp_path: Path, *overrides: str, config_dir: Path | None = None
) -> dict:
    cfg = compose_train(
        [*tiny_overrides(tiny_data, epochs=1, steps=2), "logger=none", *overrides],
        tmp_path / "run",
        (config_dir,) if config_dir else (),
    )
    metrics, objects = train(cfg)
    return {**metrics, "module": objects["module"]}


def _yaml(folder: Path, group: str, name: str, content: dict[str, Any]) -> Path:
    path = folder / group / f"{name}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(OmegaConf.to_yaml(content))
    return folder


# --- a loss: one class, one YAML in the loss group --------------------------------------------------


class ToyL2Loss(torch.nn.Module):
    """Mean squared error, counting its calls."""

    calls: ClassVar[int] = 0

    def forward(self, sr: torch.Tensor, hr: torch.Tensor) -> torch.Tensor:
        type(self).calls += 1
        return ((sr - hr) ** 2).mean()


def test_recipe_loss(tiny_data: dict[str, Path], tmp_path: Path) -> None:
    conf = _yaml(tmp_path / "conf", "loss", "toy_l2", {"_target_": f"{__name__}.ToyL2Loss"})
    ToyL2Loss.calls = 0
    metrics = _train(tiny_data, tmp_path, "loss=toy_l2", config_dir=conf)
    assert isinstance(metrics["module"].loss_fn, ToyL2Loss)
    assert ToyL2Loss.calls >= 2 and metrics["global_step"] == 2


# --- a logger: one YAML in the logger group (a Lightning logger, or one's own class) -----------------


class ToyLogger(Logger):
    """Keeps every logged value in memory."""

    seen: ClassVar[dict[str, float]] = {}

    @property
    def name(self) -> str:
        return "toy"

    @property
    def version(self) -> str:
        return "0"

    def log_hyperparams(self, params: Any, *args: Any, **kwargs: Any) -> None:
        type(self).seen["hyperparams"] = 1.0

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        type(self).seen.update(metrics)


def test_recipe_logger(tiny_data: dict[str, Path], tmp_path: Path) -> None:
    conf = _yaml(tmp_path / "conf", "logger", "toy", {"toy": {"_target_": f"{__name__}.ToyLogger"}})
    ToyLogger.seen = {}
    _train(tiny_data, tmp_path, "logger=toy", config_dir=conf)
    assert "val/tiny/psnr" in ToyLogger.seen and "val/tiny/ssim" in ToyLogger.seen
    assert "hyperparams" in ToyLogger.seen


# --- a metric: its class and one entry of METRICS -----------------------------------------------------


def _mae(preds: torch.Tensor, target: torch.Tensor, crop_border: int, test_y_channel: bool) -> torch.Tensor:
    """Mean absolute error per image, in 0–255 units, border cropped (lower is better)."""
    scale = 1.0 if preds.dtype == torch.uint8 else 255.0
    diff = (preds.double() - target.double()).abs() * scale
    if crop_border:
        diff = diff[..., crop_border:-crop_border, crop_border:-crop_border]
    return diff.flatten(1).mean(1)


class MAE(PerImageMeanMetric):
    higher_is_better = False
    _score = staticmethod(_mae)


@pytest.fixture
def toy_metric() -> Iterator[SRMetric]:
    """The recipe's entry, appended to the one list every consumer iterates (as a line in
    metrics/collection.py would be), removed afterwards."""
    metric = SRMetric("mae", MAE, higher_is_better=False, spec=".3f")
    METRICS.append(metric)
    yield metric
    METRICS.remove(metric)


def test_recipe_metric(toy_metric: SRMetric, tiny_data: dict[str, Path], tmp_path: Path) -> None:
    hr = torch.zeros(1, 3, 16, 16, dtype=torch.uint8)
    scores = score_images(hr + 2, hr, 2)
    assert scores["mae"] == pytest.approx(2.0)
    assert (
        format_scores(scores) == f"{scores['psnr']:.2f}/{scores['ssim']:.4f}/2.000"
    )  # one cell, three scores
    assert is_better("mae", 1.0, 2.0) and not is_better("mae", 3.0, 2.0)  # its direction
    metrics = _train(tiny_data, tmp_path)
    assert math.isfinite(metrics["val/tiny/mae"]) and math.isfinite(metrics["test/tiny/mae"])
    assert metrics["bicubic/tiny/mae"] > 0


def test_metric_recipe_names_every_consumer() -> None:
    """The consumers iterate the same list object: the toy above reaches them through it alone."""
    from esrt_lit.metrics import collection

    assert METRICS is collection.METRICS
    assert [m.name for m in METRICS][:2] == ["psnr", "ssim"]
    assert set(score_images(torch.rand(1, 3, 16, 16), torch.rand(1, 3, 16, 16), 2)) == {
        m.name for m in METRICS
    }
    assert format_scores({"psnr": 33.664, "ssim": 0.92991}) == "33.66/0.9299"
    assert is_better("psnr", 30.0, 29.0)


# --- a network knob: ESRTConfig, the block that reads it, ESRT's signature, conf/model/esrt.yaml ---------


def test_recipe_knob_every_knob_is_wired() -> None:
    """Each ESRTConfig field is a parameter of ESRT with that default, and a key of the composed
    ``model=esrt`` (which takes ESRTConfig's defaults, the released network) that the command line
    overrides; with the checkpoint round trip below, a knob added by the recipe and forgotten in one of
    those places fails here."""
    from hydra import compose, initialize_config_dir

    released = ESRTConfig()
    signature = inspect.signature(ESRT)
    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        model = compose("train", overrides=["scale=3", "model.n_hpb=2"]).model
    assert OmegaConf.to_container(model, resolve=True) == {
        "_target_": "esrt_lit.models.ESRT",
        **released.as_dict(),
        "scale": 3,
        "n_hpb": 2,
    }
    for field in dataclasses.fields(ESRTConfig):
        assert field.name in signature.parameters, f"ESRT takes no {field.name}"
        if field.name != "scale":
            assert signature.parameters[field.name].default == getattr(released, field.name), field.name


def test_recipe_knob_round_trips_through_a_checkpoint(tmp_path: Path) -> None:
    from esrt_lit.training.module import describe_net

    torch.manual_seed(0)
    net = ESRT(scale=2, n_feats=8, n_hpb=1, n_et=1, et_heads=4, low_repeats=1, rsa=False, hfm=False)
    path = tmp_path / "run.ckpt"
    state = {f"net.{k}": v for k, v in net.state_dict().items()}
    torch.save({"state_dict": state, "hyper_parameters": {"net": describe_net(net)}}, path)
    assert load_network(path).config == net.config
