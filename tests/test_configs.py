"""Every option of every config group composes and instantiates (the Lightning-Hydra template's config
test), and the resolvers behave."""

from __future__ import annotations

from pathlib import Path

import hydra
import pytest
from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig
from hydra.errors import MissingConfigException
from lightning.pytorch import Callback, LightningDataModule, Trainer
from lightning.pytorch.loggers import Logger
from omegaconf import DictConfig, open_dict

from esrt_lit.config_schema import check_schema
from esrt_lit.configs import register_configs, wandb_key_configured, wandb_mode
from esrt_lit.train import CONF_DIR
from esrt_lit.training.instantiators import instantiate_callbacks, instantiate_loggers
from esrt_lit.training.module import SRLitModule

register_configs()

CONF = Path(CONF_DIR)
GROUPS = [
    "data",
    "model",
    "module",
    "loss",
    "optimizer",
    "scheduler",
    "callbacks",
    "logger",
    "trainer",
    "paths",
    "extras",
    "experiment",
    "hparams_search",
    "debug",
]
OPTIONS = [(g, p.stem) for g in GROUPS for p in sorted((CONF / g).glob("*.yaml"))]
LAUNCHERS = ["basic", "joblib", "submitit_slurm", "slurm"]


def _compose(name: str, overrides: list[str], tmp_path: Path) -> DictConfig:
    with initialize_config_dir(CONF_DIR, version_base="1.3"):
        cfg = compose(name, overrides=overrides, return_hydra_config=True)
    HydraConfig().set_config(cfg)
    with open_dict(cfg):
        cfg.paths.output_dir = str(tmp_path)
        cfg.paths.work_dir = str(tmp_path)
        del cfg["hydra"]
    return cfg


@pytest.fixture(autouse=True)
def _offline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WANDB_MODE", "offline")


def test_every_group_has_options() -> None:
    for group in GROUPS:
        assert list((CONF / group).glob("*.yaml")), f"conf/{group} has no option"


@pytest.mark.parametrize(("group", "option"), OPTIONS, ids=[f"{g}={o}" for g, o in OPTIONS])
def test_option_composes_and_instantiates(group: str, option: str, tmp_path: Path) -> None:
    cfg = _compose("train", [f"{group}={option}"], tmp_path)
    cfg.monitor_set = "Set5"
    assert cfg.scale in (2, 3, 4) and cfg.model.scale == cfg.scale and cfg.data.scale == cfg.scale
    assert isinstance(hydra.utils.instantiate(cfg.data), LightningDataModule)
    net = hydra.utils.instantiate(cfg.model)
    assert net.scale == cfg.scale
    if "Bicubic" not in cfg.model._target_:
        partials = {
            k: hydra.utils.instantiate(cfg[k]) if cfg.get(k) else None
            for k in ("loss", "optimizer", "scheduler")
        }
        module = hydra.utils.instantiate(cfg.module, _recursive_=False, net=net, **partials)
        assert isinstance(module, SRLitModule)
        optimizer = module.configure_optimizers()
        assert optimizer is not None
    assert all(isinstance(c, Callback) for c in instantiate_callbacks(cfg.get("callbacks")))
    loggers = instantiate_loggers(cfg.get("logger"))
    assert all(isinstance(lg, Logger) for lg in loggers)
    if cfg.trainer.accelerator in ("cpu", "auto") and not (
        cfg.trainer.get("strategy") == "ddp" and cfg.trainer.devices > 1
    ):
        trainer = hydra.utils.instantiate(cfg.trainer, logger=loggers or False)
        assert isinstance(trainer, Trainer)
    assert cfg.optimized_metric == "val/Set5/psnr_best"


@pytest.mark.parametrize(("group", "option"), OPTIONS, ids=[f"{g}={o}" for g, o in OPTIONS])
def test_option_passes_the_schema(group: str, option: str, tmp_path: Path) -> None:
    """Every shipped option's keys are read and typed as their targets and defaults say (no false alarm)."""
    check_schema(_compose("train", [f"{group}={option}"], tmp_path))


@pytest.mark.parametrize("name", ["eval", "upscale", "export"])
def test_other_commands_pass_the_schema(name: str, tmp_path: Path) -> None:
    extra = {
        "eval": ["model=bicubic"],
        "upscale": ["model=bicubic", "input=a.png"],
        "export": ["ckpt_path=null"],
    }
    if name == "export":
        with initialize_config_dir(CONF_DIR, version_base="1.3"):
            cfg = compose(name, overrides=extra[name])
        check_schema(cfg, name)
    else:
        check_schema(_compose(name, extra[name], tmp_path))


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_released_recipes(scale: int, tmp_path: Path) -> None:
    cfg = _compose("train", [f"experiment=esrt_x{scale}"], tmp_path)
    assert cfg.scale == scale and cfg.model.scale == scale and cfg.data.scale == scale
    assert (cfg.data.batch_size, cfg.data.patch_size, cfg.data.iters_per_epoch) == (16, 48, 1000)
    assert cfg.trainer.max_epochs == 1000
    assert (cfg.optimizer.lr, list(cfg.optimizer.betas)) == (2e-4, [0.9, 0.999])
    assert (cfg.scheduler.step_size, cfg.scheduler.gamma) == (200, 0.5)
    assert cfg.loss._target_ == "torch.nn.L1Loss"
    assert cfg.monitor_set == "Set5" and cfg.data.val[0].names == ["Set5"]
    assert cfg.data.train[0].root.endswith("DIV2K")
    net = hydra.utils.instantiate(cfg.model)
    assert 670_000 < sum(p.numel() for p in net.parameters()) < 780_000  # ESRT.md: 677K/770K/751K


def test_ablation_knobs_are_overrides(tmp_path: Path) -> None:
    cfg = _compose(
        "train", ["model.n_hpb=2", "model.et_heads=4", "model.rsa=false", "trainer.devices=4"], tmp_path
    )
    net = hydra.utils.instantiate(cfg.model)
    assert (net.config["n_hpb"], net.config["et_heads"], net.config["rsa"]) == (2, 4, False)
    assert cfg.trainer.devices == 4


def test_ddp_trainer_configs(tmp_path: Path) -> None:
    ddp_cpu = _compose("train", ["trainer=ddp_cpu"], tmp_path).trainer
    assert (ddp_cpu.accelerator, ddp_cpu.strategy, ddp_cpu.devices) == ("cpu", "ddp", 2)
    multinode = _compose("train", ["trainer=multinode"], tmp_path).trainer
    assert (multinode.strategy, multinode.num_nodes, multinode.precision) == ("ddp", 2, "32-true")


@pytest.mark.parametrize("launcher", LAUNCHERS)
def test_launchers_compose(launcher: str) -> None:
    with initialize_config_dir(CONF_DIR, version_base="1.3"):
        cfg = compose("train", overrides=[f"hydra/launcher={launcher}"], return_hydra_config=True)
    assert "Launcher" in cfg.hydra.launcher._target_
    if launcher == "slurm":
        HydraConfig().set_config(cfg)
        assert cfg.hydra.launcher.tasks_per_node == cfg.trainer.devices


def test_optuna_search_composes() -> None:
    with initialize_config_dir(CONF_DIR, version_base="1.3"):
        cfg = compose("train", overrides=["hparams_search=esrt_optuna"], return_hydra_config=True)
    assert cfg.hydra.sweeper._target_.endswith("OptunaSweeper")
    assert cfg.hydra.sweeper.direction == "maximize"
    assert "optimizer.lr" in cfg.hydra.sweeper.params
    assert hydra.utils.instantiate(cfg.hydra.sweeper.sampler) is not None


def test_unknown_option_names_group_and_value() -> None:
    with (
        initialize_config_dir(CONF_DIR, version_base="1.3"),
        pytest.raises(MissingConfigException, match="model/foo"),
    ):
        compose("train", overrides=["model=foo"])


@pytest.mark.parametrize("name", ["eval", "upscale"])
def test_other_entry_points_compose(name: str, tmp_path: Path) -> None:
    # upscale's scale defaults to the checkpoint's (null); model=bicubic takes a given one
    extra = ["input=a.png", f"output={tmp_path}", "scale=3"] if name == "upscale" else []
    cfg = _compose(name, ["model=bicubic", *extra], tmp_path)
    assert hydra.utils.instantiate(cfg.model).scale == cfg.scale


def test_resume_dir_sets_the_run_folder(tmp_path: Path) -> None:
    with initialize_config_dir(CONF_DIR, version_base="1.3"):
        cfg = compose("train", overrides=[f"resume_dir={tmp_path}"], return_hydra_config=True)
        default = compose("train", return_hydra_config=True)
    assert cfg.hydra.run.dir == str(tmp_path)
    assert "/logs/train/runs/" in default.hydra.run.dir


def test_wandb_mode(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("NETRC", str(tmp_path / "netrc"))
    assert not wandb_key_configured() and wandb_mode() == "offline"
    (tmp_path / "netrc").write_text("machine api.wandb.ai\n  login user\n  password x\n")
    assert wandb_key_configured() and wandb_mode() == "online"
    monkeypatch.setenv("WANDB_MODE", "disabled")
    assert wandb_mode() == "disabled"
    monkeypatch.setenv("WANDB_MODE", "sometimes")
    with pytest.raises(ValueError, match="WANDB_MODE='sometimes'"):
        wandb_mode()


def test_no_config_key_left_unresolved(tmp_path: Path) -> None:
    cfg = _compose("train", [], tmp_path)
    cfg.monitor_set = "skimage"
    from omegaconf import OmegaConf

    resolved = OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True)
    assert resolved["logger"]["wandb"]["mode"] == "offline"
    assert resolved["logger"]["wandb"]["save_dir"] == str(tmp_path)
    assert resolved["callbacks"]["model_checkpoint"]["monitor"] == "val/skimage/psnr"


def test_the_released_optimizer_is_defined_once(tmp_path: Path) -> None:
    """The module's default optimiser and ``optimizer=adam`` are the same Adam (2e-4, betas 0.9/0.999)."""
    from esrt_lit.training.module import RELEASED_OPTIMIZER

    adam = hydra.utils.instantiate(_compose("train", ["optimizer=adam"], tmp_path).optimizer)
    assert adam.func is RELEASED_OPTIMIZER.func
    assert {k: v for k, v in adam.keywords.items() if k in RELEASED_OPTIMIZER.keywords} == {
        "lr": 2e-4,
        "betas": [0.9, 0.999],
    }
    assert RELEASED_OPTIMIZER.keywords == {"lr": 2e-4, "betas": (0.9, 0.999)}


def test_every_lazy_package_name_resolves() -> None:
    """The names the packages export lazily all exist (a moved function leaves no dangling name)."""
    import esrt_lit
    import esrt_lit.data
    import esrt_lit.models

    for package in (esrt_lit, esrt_lit.data, esrt_lit.models):
        for name in package.__all__:
            assert getattr(package, name) is not None, f"{package.__name__}.{name}"
