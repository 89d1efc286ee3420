"""The LightningModule, checkpoints (atomic, rebuilt without pickles), the NaN guard and the
resumable training loader, in-process on tiny data."""

from __future__ import annotations

import functools
import math
from pathlib import Path

import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from torch.utils.data import Dataset

import esrt_lit.training.checkpoint_io as checkpoint_module
from esrt_lit.data.sampling import ResumableDataLoader
from esrt_lit.evaluation import evaluate_folder
from esrt_lit.models import ESRT, Bicubic
from esrt_lit.models.checkpoint import load_network
from esrt_lit.training.callbacks import NonFiniteLossError, NonFiniteLossGuard
from esrt_lit.training.checkpoint_io import AtomicCheckpointIO, atomic_torch_save, resolve_ckpt_path
from esrt_lit.training.module import CharbonnierLoss, SRLitModule, describe_net
from train_helpers import NaNAfter, tiny_datamodule, tiny_net, tiny_trainer


def test_charbonnier_loss() -> None:
    x, y = torch.tensor([0.0, 1.0]), torch.tensor([0.0, 0.0])
    expected = (torch.sqrt(torch.tensor(1e-6)) + torch.sqrt(torch.tensor(1 + 1e-6))) / 2
    assert torch.allclose(CharbonnierLoss(1e-3)(x, y), expected)
    with pytest.raises(ValueError, match="eps=0"):
        CharbonnierLoss(0)


def test_released_optimisation_by_default() -> None:
    module = SRLitModule(tiny_net())
    optimizer = module.configure_optimizers()
    assert isinstance(optimizer, torch.optim.Adam)
    assert optimizer.defaults["lr"] == 2e-4 and optimizer.defaults["betas"] == (0.9, 0.999)
    step = functools.partial(torch.optim.lr_scheduler.StepLR, step_size=200, gamma=0.5)
    config = SRLitModule(tiny_net(), scheduler=step).configure_optimizers()
    assert (
        config["lr_scheduler"]["interval"] == "epoch" and config["lr_scheduler"]["scheduler"].step_size == 200
    )
    assert isinstance(SRLitModule(tiny_net()).loss_fn, torch.nn.L1Loss)


def test_bicubic_cannot_be_trained() -> None:
    with pytest.raises(ValueError, match="esrt_lit.eval model=bicubic"):
        SRLitModule(Bicubic(2)).configure_optimizers()
    with pytest.raises(ValueError, match="ema_decay=1.5"):
        SRLitModule(tiny_net(), ema_decay=1.5)


def test_hparams_hold_the_net_config_only() -> None:
    module = SRLitModule(tiny_net())
    assert module.hparams["net"] == describe_net(module.net)
    assert module.hparams["net"]["_target_"] == "esrt_lit.models.esrt.ESRT"
    assert all(isinstance(v, (dict, str, int, float, bool, type(None))) for v in module.hparams.values())


def test_validation_scores_follow_the_protocol(tiny_data: dict[str, Path], tmp_path: Path) -> None:
    """Lightning's val/<set>/psnr|ssim equal the offline evaluator's on the same images (grey included)."""
    net = tiny_net()
    module = SRLitModule(net)
    tiny_trainer(tmp_path).validate(module, datamodule=tiny_datamodule(tiny_data))
    reference = evaluate_folder(tiny_data["val"], 2, model=net)
    assert module.scores["val/tiny/psnr"] == pytest.approx(reference["psnr"], abs=1e-9)
    assert module.scores["val/tiny/ssim"] == pytest.approx(reference["ssim"], abs=1e-9)
    bicubic = evaluate_folder(tiny_data["val"], 2, model=Bicubic(2))
    assert module.bicubic_scores["val"]["tiny"]["psnr"] == pytest.approx(bicubic["psnr"], abs=1e-9)


def test_panel_is_bicubic_network_truth(tiny_data: dict[str, Path]) -> None:
    module = SRLitModule(tiny_net(), image_crop=8)
    lr, hr = torch.rand(1, 3, 20, 20), torch.rand(1, 1, 40, 40)
    panel = module._panel("a", lr, module.net(lr).clamp(0, 1), hr)
    assert panel.shape == (3, 16, 3 * 16 + 4)
    assert torch.equal(panel[:, :, -16:], hr[0, :, 12:28, 12:28].expand(3, -1, -1))


def test_ema_weights_are_validated_and_exported(tiny_data: dict[str, Path], tmp_path: Path) -> None:
    module = SRLitModule(tiny_net(), ema_decay=0.5)
    ckpt = ModelCheckpoint(dirpath=tmp_path, save_last=True, save_top_k=0)
    tiny_trainer(tmp_path, callbacks=[ckpt], limit_val_batches=0).fit(
        module, datamodule=tiny_datamodule(tiny_data)
    )
    assert module.eval_net is module.net_ema.module
    path = tmp_path / "last.ckpt"
    torch.load(path, weights_only=True)  # no pickled object in the checkpoint
    ema, trained = load_network(path), load_network(path, prefer_ema=False)
    assert not ema.training
    ema_sd, net_sd = module.net_ema.module.state_dict(), module.net.state_dict()
    assert all(torch.equal(v, ema_sd[k]) for k, v in ema.state_dict().items())
    assert all(torch.equal(v, net_sd[k]) for k, v in trained.state_dict().items())
    assert any(not torch.equal(ema_sd[k], net_sd[k]) for k in net_sd)


def test_load_network_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="missing.ckpt"):
        load_network(tmp_path / "missing.ckpt")
    torch.save({"state_dict": {}, "hyper_parameters": {}}, tmp_path / "other.ckpt")
    with pytest.raises(ValueError, match="no 'net' hyper-parameter"):
        load_network(tmp_path / "other.ckpt")


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(
    tiny_data: dict[str, Path], tmp_path: Path
) -> None:
    module = SRLitModule(tiny_net(), loss=NaNAfter(3))
    ckpt = ModelCheckpoint(dirpath=tmp_path, save_last=True, save_top_k=0, every_n_train_steps=1)
    run = tiny_trainer(tmp_path, callbacks=[NonFiniteLossGuard(), ckpt], max_epochs=3, limit_val_batches=0)
    with pytest.raises(NonFiniteLossError, match=r"train/loss is nan .*global step 2.*last\.ckpt"):
        run.fit(module, datamodule=tiny_datamodule(tiny_data))
    saved = torch.load(tmp_path / "last.ckpt", weights_only=True)
    assert saved["global_step"] == 2
    weights = {k: v for k, v in saved["state_dict"].items() if k.startswith("net.") and v.is_floating_point()}
    assert weights and all(torch.isfinite(v).all() for v in weights.values())
    assert saved["state_dict"]["val_best.tiny.max_value"] == -math.inf  # no validation yet: no best
    assert all(torch.isfinite(p).all() for p in module.net.parameters())  # the bad step never happened


def test_checkpoint_save_is_atomic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "last.ckpt"
    AtomicCheckpointIO().save_checkpoint({"step": 1}, path)
    good = path.read_bytes()

    def torn_save(obj: object, f: object) -> None:
        f.write(b"partial")  # type: ignore[attr-defined]
        raise OSError("disk full")

    monkeypatch.setattr(checkpoint_module.torch, "save", torn_save)
    with pytest.raises(OSError, match="disk full"):
        atomic_torch_save({"step": 2}, path)
    assert path.read_bytes() == good
    assert [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]


def test_resolve_ckpt_path(tmp_path: Path) -> None:
    assert resolve_ckpt_path(None, tmp_path) is None
    with pytest.raises(
        FileNotFoundError, match=r"ckpt_path=last: checkpoint not found: .*checkpoints/last\.ckpt"
    ):
        resolve_ckpt_path("last", tmp_path)
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "last.ckpt").write_bytes(b"x")
    assert resolve_ckpt_path("last", tmp_path) == str(tmp_path / "checkpoints" / "last.ckpt")


class RandomItems(Dataset):
    """Items drawn from the global torch RNG, like the training crops."""

    def __len__(self) -> int:
        return 10

    def __getitem__(self, index: int) -> torch.Tensor:
        return torch.tensor([index, torch.randint(0, 10**6, (1,)).item()])


def _epoch(loader: ResumableDataLoader, epoch: int) -> list[torch.Tensor]:
    loader.sampler.set_epoch(epoch)  # what Lightning does before each epoch
    return list(loader)


def test_resumable_loader_continues_exactly() -> None:
    reference = ResumableDataLoader(RandomItems(), batch_size=3, seed=7, drop_last=True)
    epochs = [_epoch(reference, 0), _epoch(reference, 1)]
    assert len(epochs[0]) == 3 and not all(torch.equal(a, b) for a, b in zip(*epochs, strict=True))
    assert sorted(torch.cat(epochs[0])[:, 0].tolist()) != list(range(9))  # shuffled, one sample dropped

    loader = ResumableDataLoader(RandomItems(), batch_size=3, seed=7, drop_last=True)
    loader.sampler.set_epoch(1)
    it = iter(loader)
    next(it)
    state = loader.state_dict()
    assert state == {"seed": 7, "epoch": 1, "batches": 1}
    resumed = ResumableDataLoader(RandomItems(), batch_size=3, seed=0, drop_last=True)
    resumed.load_state_dict(state)
    rest = list(resumed)
    assert len(rest) == 2 and all(torch.equal(a, b) for a, b in zip(rest, epochs[1][1:], strict=True))
    assert resumed.state_dict()["batches"] == 3

    finished = ResumableDataLoader(RandomItems(), batch_size=3, seed=0, drop_last=True)
    finished.load_state_dict({"seed": 7, "epoch": 0, "batches": 3})  # saved at the end of epoch 0
    assert all(torch.equal(a, b) for a, b in zip(list(finished), epochs[1], strict=True))


def test_best_psnr_survives_a_resume(tiny_data: dict[str, Path], tmp_path: Path) -> None:
    dm = tiny_datamodule(tiny_data)
    first = SRLitModule(tiny_net())
    run = tiny_trainer(tmp_path)
    run.validate(first, datamodule=dm)
    best = first.best_scores()["val/tiny/psnr_best"]
    assert best == first.scores["val/tiny/psnr"]
    run.save_checkpoint(tmp_path / "a.ckpt")
    saved = torch.load(tmp_path / "a.ckpt", weights_only=True)
    assert saved["state_dict"]["val_best.tiny.max_value"] == best  # a MaxMetric state, in the checkpoint
    saved["state_dict"]["val_best.tiny.max_value"] = torch.tensor(best + 10)
    torch.save(saved, tmp_path / "b.ckpt")
    worse = SRLitModule(ESRT(scale=2, n_feats=8, n_hpb=1, et_heads=4, low_repeats=1))
    tiny_trainer(tmp_path).validate(worse, datamodule=dm, ckpt_path=tmp_path / "b.ckpt", weights_only=True)
    assert worse.scores["val/tiny/psnr_best"] == pytest.approx(best + 10)
    # a checkpoint of an earlier version kept the best in `val_scores`
    del saved["state_dict"]["val_best.tiny.max_value"]
    saved["val_scores"] = {"val/tiny/psnr_best": best + 20}
    torch.save(saved, tmp_path / "c.ckpt")
    older = SRLitModule(tiny_net())
    tiny_trainer(tmp_path).validate(older, datamodule=dm, ckpt_path=tmp_path / "c.ckpt", weights_only=True)
    assert older.scores["val/tiny/psnr_best"] == pytest.approx(best + 20)


def test_resumable_skip_applies_to_its_epoch_only() -> None:
    reference = ResumableDataLoader(RandomItems(), batch_size=3, seed=7, drop_last=True)
    epoch1 = [_epoch(reference, 0), _epoch(reference, 1)][1]
    cut = ResumableDataLoader(RandomItems(), batch_size=3, seed=0, drop_last=True)
    cut.load_state_dict({"seed": 7, "epoch": 0, "batches": 1})  # an epoch cut short (limit_train_batches)
    assert all(torch.equal(a, b) for a, b in zip(_epoch(cut, 1), epoch1, strict=True))


def test_validation_crops_go_to_tensorboard(tiny_data: dict[str, Path], tmp_path: Path) -> None:
    from lightning.pytorch.loggers import TensorBoardLogger
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    logger = TensorBoardLogger(tmp_path, name="tb", version="")
    tiny_trainer(tmp_path, logger=logger).validate(
        SRLitModule(tiny_net(), log_images=2), datamodule=tiny_datamodule(tiny_data)
    )
    events = EventAccumulator(str(tmp_path / "tb")).Reload()
    assert sorted(events.Tags()["images"]) == ["val/tiny/img0", "val/tiny/img1"]
    image = events.Images("val/tiny/img0")[0]
    assert (image.width, image.height) == (3 * 48 + 4, 48)  # bicubic | network | truth, 24x24 LR at x2
