"""Datasets, sources, transforms and the data module: alignment, augmentation, caching, layouts, errors."""

from __future__ import annotations

import json
import os
import pickle
import socket
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch
from hydra.utils import instantiate

import esrt_lit.data.degradations as degradations_mod
from esrt_lit.data.datamodule import EvalDistributedSampler, SRDataModule
from esrt_lit.data.datasets import PairStore, SREvalDataset, SRTrainDataset
from esrt_lit.data.imresize import imresize
from esrt_lit.data.io import modcrop, read_image, write_image
from esrt_lit.data.sources import (
    SKIMAGE_TRAIN,
    SKIMAGE_VAL,
    BenchmarksSource,
    DIV2KSource,
    FolderSource,
    ImageRecord,
    PairedSource,
    SkimageSource,
    build_sources,
)
from esrt_lit.data.transforms import PairedD4, paired_random_crop

D4_ELEMENTS = {
    "e": lambda x: x,
    "r90": lambda x: np.rot90(x, 1),
    "r180": lambda x: np.rot90(x, 2),
    "r270": lambda x: np.rot90(x, 3),
    "v": lambda x: x[::-1],
    "h": lambda x: x[:, ::-1],
    "t": lambda x: x.transpose(1, 0, 2),
    "hvt": lambda x: np.rot90(x, 2).transpose(1, 0, 2),
}


def _noise(h: int, w: int, c: int = 3, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, c), dtype=np.uint8)


def _smooth(h: int, w: int, c: int = 3, seed: int = 0) -> np.ndarray:
    """A smooth-ish random image (noise upsampled), so bicubic LR windows are still unique."""
    small = _noise(h // 4 + 1, w // 4 + 1, c, seed).astype(np.float64)
    big = np.kron(small, np.ones((4, 4, 1)))[:h, :w]
    return np.clip(big + _noise(h, w, c, seed + 1) * 0.25, 0, 255).astype(np.uint8)


def _write(path: Path, image: np.ndarray) -> Path:
    return write_image(path, image)


def _tensor_to_uint8(t: torch.Tensor) -> np.ndarray:
    return (t.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)


def _element_of(out: np.ndarray, original: np.ndarray) -> str:
    matches = [k for k, f in D4_ELEMENTS.items() if np.array_equal(out, f(original))]
    assert len(matches) == 1, matches
    return matches[0]


# --- aligned crops --------------------------------------------------------------------------------


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_train_patch_is_window_of_whole_image_lr(tmp_path: Path, scale: int) -> None:
    hr = _smooth(30 * scale + 1, 26 * scale + scale - 1)  # not a multiple of the scale: modcrop is exercised
    path = _write(tmp_path / "img.png", hr)
    hr_mod = modcrop(hr, scale)
    lr_whole = imresize(hr_mod, 1 / scale)
    assert lr_whole.shape[:2] == (30, 26)
    ds = SRTrainDataset([ImageRecord("img", path)], PairStore(scale), patch_size=8, augment=False, repeat=12)
    offsets = set()
    for i in range(len(ds)):
        item = ds[i]
        lr_p, hr_p = _tensor_to_uint8(item["lr"]), _tensor_to_uint8(item["hr"])
        assert lr_p.shape == (8, 8, 3) and hr_p.shape == (8 * scale, 8 * scale, 3)
        hits = [
            (t, left)
            for t in range(30 - 8 + 1)
            for left in range(26 - 8 + 1)
            if np.array_equal(lr_whole[t : t + 8, left : left + 8], lr_p)
        ]
        assert len(hits) == 1, "the LR patch must be exactly one window of the whole image's LR"
        top, left = hits[0]
        assert np.array_equal(
            hr_p, hr_mod[top * scale : (top + 8) * scale, left * scale : (left + 8) * scale]
        )
        offsets.add((top, left))
    assert len(offsets) > 1, "crop offsets must vary"


def test_paired_random_crop_offset_and_mismatch() -> None:
    lr = _noise(10, 12)
    hr = np.kron(lr, np.ones((3, 3, 1), dtype=np.uint8))
    lr_p, hr_p, (top, left) = paired_random_crop(lr, hr, 4, 3, np.random.default_rng(5))
    assert np.array_equal(lr_p, lr[top : top + 4, left : left + 4])
    assert np.array_equal(hr_p, hr[3 * top : 3 * top + 12, 3 * left : 3 * left + 12])
    with pytest.raises(ValueError, match=r"HR 36x29 is not x3 of LR 12x10"):
        paired_random_crop(lr, hr[:29], 4, 3, np.random.default_rng(0))


# --- augmentation ---------------------------------------------------------------------------------


def test_paired_d4_keeps_pairs_aligned_and_covers_group() -> None:
    scale = 3
    lr = _noise(6, 6, seed=3)
    hr = np.kron(lr, np.ones((scale, scale, 1), dtype=np.uint8))  # nearest-upsampled test pattern
    d4 = PairedD4()
    seen = set()
    for seed in range(200):
        lr_a, hr_a = d4(lr, hr, seed)
        assert np.array_equal(hr_a[::scale, ::scale], lr_a)
        assert np.array_equal(hr_a, np.kron(lr_a, np.ones((scale, scale, 1), dtype=np.uint8)))
        seen.add(_element_of(lr_a, lr))
    assert seen == set(D4_ELEMENTS)
    a, b = d4(lr, hr, 7), d4(lr, hr, 7)
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])


def test_train_dataset_augmentation_identical_for_lr_and_hr(tmp_path: Path) -> None:
    scale = 2
    lr = _noise(12, 12, seed=4)
    hr = np.kron(lr, np.ones((scale, scale, 1), dtype=np.uint8))
    record = ImageRecord("p", _write(tmp_path / "hr.png", hr), _write(tmp_path / "lr.png", lr))
    ds = SRTrainDataset([record], PairStore(scale), patch_size=12, augment=True, repeat=160)
    seen = set()
    for i in range(len(ds)):
        item = ds[i]
        lr_p, hr_p = _tensor_to_uint8(item["lr"]), _tensor_to_uint8(item["hr"])
        assert np.array_equal(hr_p, np.kron(lr_p, np.ones((scale, scale, 1), dtype=np.uint8)))
        seen.add(_element_of(lr_p, lr))
    assert seen == set(D4_ELEMENTS)


def test_no_augmentation_keeps_orientation(tmp_path: Path) -> None:
    lr = _noise(8, 8, seed=6)
    hr = np.kron(lr, np.ones((2, 2, 1), dtype=np.uint8))
    record = ImageRecord("p", _write(tmp_path / "hr.png", hr), _write(tmp_path / "lr.png", lr))
    ds = SRTrainDataset([record], PairStore(2), patch_size=8, augment=False, repeat=10)
    for i in range(len(ds)):
        assert np.array_equal(_tensor_to_uint8(ds[i]["lr"]), lr)


# --- lengths, batches, data module ----------------------------------------------------------------


def test_repeat_and_length(tmp_path: Path) -> None:
    records = [ImageRecord(f"{i}", _write(tmp_path / f"{i}.png", _noise(16, 16, seed=i))) for i in range(3)]
    assert len(SRTrainDataset(records, PairStore(2), patch_size=4, repeat=5)) == 15
    assert len(SRTrainDataset(records, PairStore(2), patch_size=4, repeat=5, length=7)) == 7
    ds = SRTrainDataset(records, PairStore(2), patch_size=4, repeat=2)
    with pytest.raises(IndexError):
        ds[6]
    with pytest.raises(ValueError, match="repeat=0"):
        SRTrainDataset(records, PairStore(2), repeat=0)


def test_datamodule_train_batches_and_iters_per_epoch(tmp_path: Path) -> None:
    for i in range(3):
        _write(tmp_path / "hr" / f"{i}.png", _noise(40, 36, seed=i))
    dm = SRDataModule(
        scale=2,
        train=[{"kind": "folder", "path": str(tmp_path / "hr")}],
        val=[{"kind": "folder", "path": str(tmp_path / "hr"), "name": "tiny"}],
        patch_size=8,
        batch_size=4,
        iters_per_epoch=5,
        num_workers=0,
        seed=1,
    )
    loader = dm.train_dataloader()
    batches = list(loader)
    assert len(batches) == 5
    assert batches[0]["lr"].shape == (4, 3, 8, 8) and batches[0]["hr"].shape == (4, 3, 16, 16)
    assert batches[0]["lr"].dtype == torch.float32
    assert float(batches[0]["lr"].min()) >= 0 and float(batches[0]["hr"].max()) <= 1
    dm_again = SRDataModule(
        scale=2,
        train=[{"kind": "folder", "path": str(tmp_path / "hr")}],
        val=dm.val_specs,
        patch_size=8,
        batch_size=4,
        iters_per_epoch=5,
        num_workers=0,
        seed=1,
    )
    assert torch.equal(next(iter(dm_again.train_dataloader()))["lr"], batches[0]["lr"]), "seed must reproduce"
    assert dm.val_names == ["tiny"]
    (val_loader,) = dm.val_dataloader()
    assert val_loader.batch_size == 1 and isinstance(val_loader.sampler, torch.utils.data.SequentialSampler)


def test_val_batch_format_with_grey_set14_bridge(benchmarks: Path) -> None:
    dm = SRDataModule(
        scale=4, val=[{"kind": "benchmarks", "root": str(benchmarks), "names": ["Set14"], "limit": 3}]
    )
    assert dm.val_names == ["Set14"]
    (loader,) = dm.val_dataloader()
    batches = {b["name"][0]: b for b in loader}
    assert list(batches) == ["baboon", "barbara", "bridge"]
    bridge = batches["bridge"]
    assert bridge["hr"].shape[:2] == (1, 1), "a grey HR keeps its single channel for scoring"
    assert bridge["lr"].shape[:2] == (1, 3), "the LR of a grey image is repeated to 3 channels"
    assert bridge["hr"].dtype == bridge["lr"].dtype == torch.float32
    hr_u8 = modcrop(read_image(benchmarks / "Set14" / "bridge.png"), 4)
    assert bridge["hr"].shape[2:] == hr_u8.shape[:2]
    assert bridge["lr"].shape[2] * 4 == hr_u8.shape[0] and bridge["lr"].shape[3] * 4 == hr_u8.shape[1]
    expected_lr = imresize(hr_u8, 1 / 4)
    for c in range(3):
        assert np.array_equal(_tensor_to_uint8(bridge["lr"][0])[..., c], expected_lr[..., 0])
    assert batches["baboon"]["hr"].shape[1] == 3


def test_benchmarks_expand_in_given_order(benchmarks: Path) -> None:
    sources = build_sources([{"kind": "benchmarks", "root": str(benchmarks), "names": ["Set14", "Set5"]}])
    assert [s.label for s in sources] == ["Set14", "Set5"]
    found = [s.label for s in BenchmarksSource(str(benchmarks)).expand()]
    assert found[:2] == ["Set5", "Set14"]  # the paper's column order: a `benchmarks` source monitors Set5
    with pytest.raises(FileNotFoundError, match=r"Urban100 not found; available: .*Set14"):
        BenchmarksSource(str(benchmarks), names=["Urban100"]).expand()


def test_sun80_is_an_hr_only_folder(shared: Path) -> None:
    source = FolderSource(str(shared / "data" / "train" / "Sun80"), limit=2)
    records = source.records(4)
    assert source.label == "Sun80" and len(records) == 2 and all(r.lr is None for r in records)
    ds = SRTrainDataset(records, PairStore(4), patch_size=48)
    item = ds[0]
    assert item["lr"].shape == (3, 48, 48) and item["hr"].shape == (3, 192, 192)


def test_eval_distributed_sampler_scores_each_image_once() -> None:
    data = list(range(5))
    for world in (2, 3, 8):
        parts = [list(EvalDistributedSampler(data, num_replicas=world, rank=r)) for r in range(world)]
        assert sorted(i for p in parts for i in p if i < len(data)) == data
        assert [len(p) for p in parts] == [len(EvalDistributedSampler(data, world, r)) for r in range(world)]
        # a rank without an image gets one padding item (not scored), so that it runs the loop too
        assert all(parts) and [p for p in parts if p[0] >= len(data)] == [[5 + r] for r in range(5, world)]


def test_eval_loaders_split_images_across_ranks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for i in range(5):
        _write(tmp_path / "five" / f"{i}.png", _noise(16, 16, seed=i))
    dm = SRDataModule(
        scale=2, train=[], val=[{"kind": "folder", "path": str(tmp_path / "five")}], num_workers=0
    )
    names = []
    for rank in range(3):
        monkeypatch.setattr(torch.distributed, "is_initialized", lambda: True)
        monkeypatch.setattr(torch.distributed, "get_world_size", lambda: 3)
        monkeypatch.setattr(torch.distributed, "get_rank", lambda rank=rank: rank)
        (loader,) = dm.val_dataloader()
        assert isinstance(loader.sampler, EvalDistributedSampler)  # Lightning keeps a DistributedSampler
        names += [b["name"][0] for b in loader]
    assert sorted(names) == [str(i) for i in range(5)]


class _RecordingModule(L.LightningModule):
    """Records which validation images each rank sees and gathers them at epoch end."""

    def __init__(self) -> None:
        super().__init__()
        self.net = torch.nn.Sequential(torch.nn.Conv2d(3, 12, 3, padding=1), torch.nn.PixelShuffle(2))
        self.seen: list[tuple[str, str]] = []
        self.gathered: list[list[tuple[str, str]]] = []

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        return torch.nn.functional.l1_loss(self.net(batch["lr"]), batch["hr"])

    def validation_step(self, batch: dict, batch_idx: int, dataloader_idx: int = 0) -> None:
        self.seen.append((self.trainer.datamodule.val_names[dataloader_idx], batch["name"][0]))

    def on_validation_epoch_end(self) -> None:
        out: list = [None] * torch.distributed.get_world_size()
        torch.distributed.all_gather_object(out, self.seen)
        if self.global_rank == 0:
            Path(self.trainer.default_root_dir, "seen.json").write_text(json.dumps(out))

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.1)


@pytest.mark.slow
def test_ddp_validation_scores_each_image_once(tmp_path: Path) -> None:
    for i in range(5):
        _write(tmp_path / "bench" / "Five" / f"{i}.png", _noise(16, 16, seed=i))
    for i in range(3):
        _write(tmp_path / "bench" / "Three" / f"{i}.png", _noise(16, 16, seed=10 + i))
    dm = SRDataModule(
        scale=2,
        train=[{"kind": "folder", "path": str(tmp_path / "bench" / "Five")}],
        val=[{"kind": "benchmarks", "root": str(tmp_path / "bench")}],
        patch_size=4,
        batch_size=2,
        num_workers=0,
    )
    trainer = L.Trainer(
        max_epochs=1, limit_train_batches=1, accelerator="cpu", devices=2, strategy="ddp_spawn", logger=False,
        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
        num_sanity_val_steps=0, default_root_dir=str(tmp_path),
    )  # fmt: skip
    try:
        trainer.fit(_RecordingModule(), dm)
    except torch.multiprocessing.ProcessExitedException as err:
        # gloo occasionally aborts a rank at interpreter exit ("terminate called without an active
        # exception"), after fit has finished; the gathered result is already on disk then.
        if err.signal_name != "SIGABRT" or not (tmp_path / "seen.json").is_file():
            raise
    per_rank = json.loads((tmp_path / "seen.json").read_text())
    flat = [tuple(x) for rank in per_rank for x in rank]
    assert sorted(flat) == sorted({(n, str(i)) for n, k in (("Five", 5), ("Three", 3)) for i in range(k)})
    assert [len(r) for r in per_rank] == [5, 3], "no image padded or duplicated across ranks"


def test_hydra_instantiates_datamodule_with_target_specs(tmp_path: Path) -> None:
    """The way ``train`` builds the data module: sources spelt with ``_target_`` like every other object,
    ``kind:`` being their short form; a bad target or key is refused in one line naming the spec."""
    _write(tmp_path / "hr" / "a.png", _noise(32, 32))
    folder = {"_target_": "esrt_lit.data.sources.FolderSource", "path": str(tmp_path / "hr"), "name": "mine"}
    cfg = {
        "_target_": "esrt_lit.data.SRDataModule",
        "scale": 2,
        "train": [folder],
        "val": [
            {
                "_target_": "esrt_lit.data.sources.BenchmarkSource",
                "root": str(tmp_path / "hr"),
                "name": "bench",
            }
        ],
        "patch_size": 8,
        "num_workers": 0,
    }
    dm = instantiate(cfg, _convert_="all", _recursive_=False)
    assert isinstance(dm, SRDataModule) and dm.val_names == ["bench"] and dm.test_names == ["bench"]
    assert dm.hparams["train"] == [folder], (
        "the specs are kept as plain mappings (checkpoints hold no object)"
    )
    # one image, batch 16: the epoch holds one full batch (static shapes; it never rounds to nothing)
    assert next(iter(dm.train_dataloader()))["lr"].shape == (16, 3, 8, 8)
    short = {"kind": "folder", "path": str(tmp_path / "hr"), "name": "mine"}
    assert build_sources([short]) == build_sources([folder]) == [FolderSource(str(tmp_path / "hr"), "mine")]
    bad = {
        "not-a-source": (
            {"_target_": "torch.nn.Identity"},
            r"^source spec \{'_target_': 'torch.nn.Identity'\}: _target_ 'torch.nn.Identity' is not a source "
            r"class \(no records method\); expected a class with a label and records\(scale\), such as "
            r"esrt_lit.data.sources.FolderSource$",
        ),
        "not-importable": (
            {"_target_": "esrt_lit.data.sources.NoSuchSource", "path": "p"},
            r"^source spec .*NoSuchSource.*: _target_ 'esrt_lit.data.sources.NoSuchSource' cannot be imported "
            r"\(.*\); expected a source class such as esrt_lit.data.sources.FolderSource$",
        ),
        "unknown-key": (
            {**folder, "pth": "x"},
            r"^source spec \{.*'pth': 'x'\}: unknown key\(s\) pth; accepted: limit, name, path$",
        ),
        "missing-key": (
            {"_target_": "esrt_lit.data.sources.FolderSource", "name": "n"},
            r"^source spec \{.*\}: missing key\(s\) path; accepted: limit, name, path$",
        ),
    }
    for spec, message in bad.values():
        with pytest.raises(ValueError, match=message) as err:
            instantiate({**cfg, "train": [spec]}, _convert_="all", _recursive_=False).check()
        assert "\n" not in str(err.value)


def test_workers_draw_different_crops(tmp_path: Path) -> None:
    _write(tmp_path / "hr" / "a.png", _smooth(64, 64))
    dm = SRDataModule(
        scale=2,
        train=[{"kind": "folder", "path": str(tmp_path / "hr")}],
        val=[],
        patch_size=8,
        batch_size=2,
        repeat=8,
        num_workers=2,
        persistent_workers=False,
        seed=3,
    )
    assert dm.val_names == [] and dm.val_dataloader() == []
    lrs = torch.cat([b["lr"] for b in dm.train_dataloader()])
    assert lrs.shape[0] == 8
    flat = lrs.flatten(1)
    assert len({tuple(row.tolist()) for row in flat}) == 8, "every worker must draw its own crops"


# --- caching --------------------------------------------------------------------------------------


def test_npy_cache_reused_by_a_second_instance(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = _write(tmp_path / "img" / "a.png", _smooth(40, 48))
    record = ImageRecord("a", path)
    first = SREvalDataset([record], PairStore(4, "npy", tmp_path / "cache"), "x")
    first.warm()
    expected = first[0]
    assert len(list((tmp_path / "cache").glob("*.npy"))) == 2

    def fail(*args: object, **kwargs: object) -> None:
        raise AssertionError("imresize must not run again")

    monkeypatch.setattr(degradations_mod, "imresize", fail)  # the bicubic degradation's
    second = SREvalDataset([record], PairStore(4, "npy", tmp_path / "cache"), "x")
    item = second[0]
    assert torch.equal(item["lr"], expected["lr"]) and torch.equal(item["hr"], expected["hr"])
    # the key includes the source's mtime: a changed file is degraded again
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 10**9))
    with pytest.raises(AssertionError, match="must not run again"):
        SREvalDataset([record], PairStore(4, "npy", tmp_path / "cache"), "x")[0]


def test_npy_dataset_pickles_without_array_copies(tmp_path: Path) -> None:
    path = _write(tmp_path / "a.png", _smooth(32, 32))
    ds = SRTrainDataset([ImageRecord("a", path)], PairStore(2, "npy", tmp_path / "c"), patch_size=4)
    ds.warm()
    assert ds.store._pairs, "the main process keeps its memory maps"
    clone = pickle.loads(pickle.dumps(ds))  # what a spawned DataLoader worker receives
    assert clone.store._pairs == {}
    assert clone[0]["hr"].shape == (3, 8, 8)


def test_memory_cache_resizes_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = _write(tmp_path / "a.png", _smooth(32, 32))
    calls = []

    def counting(image: np.ndarray, scale: float) -> np.ndarray:
        calls.append(scale)
        return imresize(image, scale)

    monkeypatch.setattr(degradations_mod, "imresize", counting)  # the bicubic degradation's
    ds = SRTrainDataset([ImageRecord("a", path)], PairStore(2, "memory"), patch_size=4, repeat=10)
    for i in range(len(ds)):
        ds[i]
    assert calls == [0.5]
    none = SRTrainDataset([ImageRecord("a", path)], PairStore(2, "none"), patch_size=4, repeat=3)
    for i in range(len(none)):
        none[i]
    assert len(calls) == 4


# --- layouts --------------------------------------------------------------------------------------


def _div2k(root: Path, scale: int, n: int = 2) -> list[np.ndarray]:
    lrs = []
    for i in range(1, n + 1):
        hr = _smooth(24 * scale, 28 * scale, seed=i)
        _write(root / "DIV2K_train_HR" / f"{i:04d}.png", hr)
        lr = _noise(24, 28, seed=100 + i)  # a stored LR, distinguishable from imresize's
        _write(root / "DIV2K_train_LR_bicubic" / f"X{scale}" / f"{i:04d}x{scale}.png", lr)
        lrs.append(lr)
    return lrs


def test_paired_div2k_layout(tmp_path: Path) -> None:
    lrs = _div2k(tmp_path, 3)
    records = DIV2KSource(str(tmp_path)).records(3)
    assert [r.name for r in records] == ["0001", "0002"]
    assert records[0].lr == tmp_path / "DIV2K_train_LR_bicubic" / "X3" / "0001x3.png"
    item = SREvalDataset(records, PairStore(3), "DIV2K")[1]
    assert np.array_equal(_tensor_to_uint8(item["lr"]), lrs[1]), "the stored LR is used"
    train = SRTrainDataset(records, PairStore(3), patch_size=16)
    assert train[0]["hr"].shape == (3, 48, 48)
    # no LR folder for x2: degraded on the fly
    assert all(r.lr is None for r in DIV2KSource(str(tmp_path)).records(2))
    # the explicit paired spec with a {scale} template
    spec = {
        "kind": "paired",
        "hr_dir": str(tmp_path / "DIV2K_train_HR"),
        "lr_dir": str(tmp_path / "DIV2K_train_LR_bicubic" / "X{scale}"),
    }
    (paired,) = build_sources([spec])
    assert paired.records(3) == records


def test_benchmark_pack_layout(tmp_path: Path) -> None:
    hr = _smooth(64, 48)
    _write(tmp_path / "Set5" / "HR" / "baby.png", hr)
    stored = _noise(16, 12, seed=8)
    _write(tmp_path / "Set5" / "LR_bicubic" / "X4" / "babyx4.png", stored)
    _write(tmp_path / "Set5" / "LR_bicubic" / "X2" / "baby.png", _noise(32, 24, seed=9))  # no 'x2' suffix
    _write(tmp_path / "Plain" / "bird.png", _smooth(40, 40))
    sources = BenchmarksSource(str(tmp_path)).expand()
    assert [s.label for s in sources] == ["Set5", "Plain"]  # the paper's benchmarks first
    set5 = sources[0]
    (rec4,) = set5.records(4)
    assert rec4.lr == tmp_path / "Set5" / "LR_bicubic" / "X4" / "babyx4.png"
    assert set5.records(2)[0].lr == tmp_path / "Set5" / "LR_bicubic" / "X2" / "baby.png"
    assert set5.records(3)[0].lr is None
    item = SREvalDataset([rec4], PairStore(4), "Set5")[0]
    assert np.array_equal(_tensor_to_uint8(item["lr"]), stored)
    assert item["hr"].shape == (3, 64, 48) and item["name"] == "baby"


def test_skimage_default_loads_offline(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_network(*args: object, **kwargs: object) -> None:
        raise AssertionError("network access while loading the embedded default")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)
    assert not set(SKIMAGE_TRAIN) & set(SKIMAGE_VAL)
    dm = SRDataModule(scale=4, num_workers=0, batch_size=4)
    assert dm.val_names == ["skimage"]
    dm.setup("fit")
    assert all(read_image(r.hr).shape[2] == 3 for r in dm.train_set.records), "training photos are colour"
    batch = next(iter(dm.train_dataloader()))
    assert batch["lr"].shape == (4, 3, 48, 48) and batch["hr"].shape == (4, 3, 192, 192)
    (val,) = dm.val_dataloader()
    shapes = {b["name"][0]: (tuple(b["lr"].shape), tuple(b["hr"].shape)) for b in val}
    assert len(shapes) == len(SKIMAGE_VAL)
    assert all(lr[2] <= 128 and lr[3] <= 128 for lr, _ in shapes.values()), "validation LR at most 128x128"
    assert shapes["camera"][1][1] == 1
    assert len(SkimageSource("train").records(2)) == len(SKIMAGE_TRAIN)


# --- errors ---------------------------------------------------------------------------------------


def test_unreadable_and_truncated_images_name_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image")
    with pytest.raises(ValueError, match=r"bad\.png.*unreadable or truncated"):
        SREvalDataset([ImageRecord("bad", bad)], PairStore(2), "x")[0]
    good = _write(tmp_path / "cut.png", _noise(64, 64))
    good.write_bytes(good.read_bytes()[:200])
    with pytest.raises(ValueError, match=r"cut\.png: truncated image data"):
        SRTrainDataset([ImageRecord("cut", good)], PairStore(2), patch_size=4).warm()


def test_lr_hr_size_mismatch_names_both_files(tmp_path: Path) -> None:
    hr = _write(tmp_path / "0001.png", _noise(40, 40))
    lr = _write(tmp_path / "0001x4.png", _noise(11, 10))
    with pytest.raises(ValueError, match=r"0001x4\.png is 10x11, HR .*0001\.png is 40x40.*expected LR 10x10"):
        PairStore(4).get(ImageRecord("0001", hr, lr))


def test_image_smaller_than_patch(tmp_path: Path) -> None:
    small = _write(tmp_path / "small.png", _noise(100, 120))
    with pytest.raises(ValueError, match=r"small\.png.*LR 30x25.*LR patch 48x48.*at least 192x192"):
        SRTrainDataset([ImageRecord("small", small)], PairStore(4), patch_size=48)[0]


def test_empty_and_missing_folders(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match=r"empty: no image files"):
        FolderSource(str(tmp_path / "empty")).records(2)
    with pytest.raises(FileNotFoundError, match=r"image folder not found: .*nowhere"):
        build_sources([{"kind": "folder", "path": str(tmp_path / "nowhere")}])[0].records(2)
    with pytest.raises(FileNotFoundError, match=r"LR folder not found: .*X4"):
        PairedSource(str(tmp_path / "empty"), str(tmp_path / "lr" / "X{scale}")).records(4)
    _write(tmp_path / "hr" / "0001.png", _noise(8, 8))
    (tmp_path / "lr").mkdir()
    with pytest.raises(
        FileNotFoundError, match=r"0001\.png: no x2 LR image in .*lr; expected one of 0001x2\.png"
    ):
        PairedSource(str(tmp_path / "hr"), str(tmp_path / "lr")).records(2)
    with pytest.raises(FileNotFoundError, match="benchmark root not found"):
        BenchmarksSource(str(tmp_path / "nowhere")).expand()


def test_unknown_kinds_keys_and_duplicate_names(tmp_path: Path) -> None:
    with pytest.raises(
        ValueError, match=r"kind='nope'; expected one of benchmark, benchmarks, div2k, folder"
    ):
        build_sources([{"kind": "nope"}])
    with pytest.raises(ValueError, match=r"unknown key\(s\) pth; accepted: limit, name, path"):
        build_sources([{"kind": "folder", "pth": "x"}])
    with pytest.raises(
        ValueError, match=r"^source spec of kind 'paired': missing key\(s\) lr_dir; accepted: "
    ):
        build_sources([{"kind": "paired", "hr_dir": "x"}])
    with pytest.raises(ValueError, match=r"share the name\(s\) a"):
        build_sources(
            [{"kind": "folder", "path": "p", "name": "a"}, {"kind": "folder", "path": "q", "name": "a"}]
        )
    with pytest.raises(ValueError, match="split='test'"):
        SkimageSource("test").records(2)
    with pytest.raises(ValueError, match="split='val'; expected 'train' or 'valid'"):
        DIV2KSource(str(tmp_path), split="val").records(2)
    with pytest.raises(ValueError, match="cache='disk'"):
        PairStore(2, "disk")  # type: ignore[arg-type]
