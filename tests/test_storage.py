"""A new storage is one source class whose records read themselves, plus one YAML mapping with its
``_target_``: here images kept in one ``.npz`` file, trained on and validated through the data module
as ``train`` builds it, its caches included, without a change anywhere else."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from esrt_lit.data.datamodule import SRDataModule
from esrt_lit.data.imresize import imresize
from esrt_lit.data.io import file_key, modcrop
from esrt_lit.data.sources import Record, build_sources


def _member(archive: Path, key: str) -> np.ndarray:
    with np.load(archive) as data:
        return np.ascontiguousarray(data[key])


@dataclass(frozen=True)
class NpzRecord:
    """An image of an ``.npz`` shard: ``hr_<name>``, and ``lr_x<s>_<name>`` when the LR is stored."""

    archive: Path
    name: str
    lr_member: str | None = None

    @property
    def location(self) -> str:
        return f"{self.archive}[hr_{self.name}]"

    @property
    def lr_location(self) -> str | None:
        return None if self.lr_member is None else f"{self.archive}[{self.lr_member}]"

    def read_hr(self) -> np.ndarray:
        return _member(self.archive, f"hr_{self.name}")

    def read_lr(self) -> np.ndarray | None:
        return None if self.lr_member is None else _member(self.archive, self.lr_member)

    def hr_key(self) -> str:
        return f"{file_key(self.archive)}|hr_{self.name}"

    def lr_key(self) -> str | None:
        return None if self.lr_member is None else f"{file_key(self.archive)}|{self.lr_member}"


@dataclass
class NpzSource:
    """Every ``hr_<name>`` array of one ``.npz`` file."""

    archive: str
    name: str = "npz"

    @property
    def label(self) -> str:
        return self.name

    def records(self, scale: int) -> list[NpzRecord]:
        archive = Path(self.archive)
        with np.load(archive) as data:
            keys = set(data.files)
        names = sorted(k.removeprefix("hr_") for k in keys if k.startswith("hr_"))
        lr = {n: f"lr_x{scale}_{n}" for n in names if f"lr_x{scale}_{n}" in keys}
        return [NpzRecord(archive, n, lr.get(n)) for n in names]


TARGET = f"{NpzSource.__module__}.{NpzSource.__qualname__}"


def _image(h: int, w: int, seed: int) -> np.ndarray:
    small = np.random.default_rng(seed).integers(0, 256, (h // 4 + 1, w // 4 + 1, 3)).astype(np.float64)
    return np.kron(small, np.ones((4, 4, 1)))[:h, :w].astype(np.uint8)


def _datamodule(archive: Path, cache_dir: Path) -> SRDataModule:
    """The data module as ``train`` builds it from a data config (YAML) naming the storage's class."""
    cfg = OmegaConf.create(
        f"""
        _target_: esrt_lit.data.SRDataModule
        _recursive_: false
        scale: 2
        train:
          - {{_target_: {TARGET}, archive: '{archive}', name: shard}}
        val:
          - {{_target_: {TARGET}, archive: '{archive}', name: shard_val}}
        patch_size: 8
        batch_size: 2
        num_workers: 0
        cache: npy
        cache_dir: '{cache_dir}'
        seed: 0
        """
    )
    return instantiate(cfg, _convert_="all", _recursive_=False)


def test_a_new_storage_is_one_class_and_one_yaml_mapping(tmp_path: Path) -> None:
    hr_a, hr_b = _image(40, 40, 0), _image(37, 45, 1)  # b is not a multiple of the scale: modcropped
    lr_a = imresize(hr_a, 1 / 2)
    archive = tmp_path / "shard.npz"
    np.savez(archive, hr_a=hr_a, hr_b=hr_b, lr_x2_a=lr_a)
    assert isinstance(NpzSource(str(archive)).records(2)[0], Record)

    dm = _datamodule(archive, tmp_path / "cache")
    assert dm.val_names == ["shard_val"]
    batch = next(iter(dm.train_dataloader()))
    assert batch["lr"].shape == (2, 3, 8, 8) and batch["hr"].shape == (2, 3, 16, 16)
    assert batch["lr"].dtype == torch.float32 and batch["lr"].min() >= 0 and batch["hr"].max() <= 1

    (loader,) = dm.val_dataloader()
    pairs = {item["name"][0]: item for item in loader}
    assert sorted(pairs) == ["a", "b"] and pairs["a"]["path"] == [f"{archive}[hr_a]"]
    expected = {"a": (lr_a, hr_a), "b": (imresize(modcrop(hr_b, 2), 1 / 2), modcrop(hr_b, 2))}
    for name, (lr, hr) in expected.items():  # the stored LR of a, the LR made from the HR for b
        got = pairs[name]
        assert np.array_equal((got["lr"][0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8), lr)
        assert np.array_equal((got["hr"][0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8), hr)

    cached = sorted(p.name.split("-")[0] + p.name.split(".", 1)[1] for p in (tmp_path / "cache").iterdir())
    assert cached == ["ahr.npy", "alr_x2.npy", "bhr.npy", "blr_x2.npy"], "cached by the records' keys"
    again = _datamodule(archive, tmp_path / "cache")
    (loader,) = again.val_dataloader()
    assert torch.equal(next(iter(loader))["lr"], pairs["a"]["lr"]), "read back from the cache"


def test_a_new_storage_names_its_images_in_errors(tmp_path: Path) -> None:
    archive = tmp_path / "shard.npz"
    np.savez(archive, hr_a=_image(40, 40, 0), lr_x2_a=_image(19, 20, 1))
    with pytest.raises(ValueError, match=rf"LR {archive}\[lr_x2_a\] is 20x19, HR {archive}\[hr_a\] is 40x40"):
        _datamodule(archive, tmp_path / "cache").setup("validate")
    with pytest.raises(ValueError, match=r"unknown key\(s\) path; accepted: archive, name$"):
        build_sources([{"_target_": TARGET, "path": str(archive)}])
