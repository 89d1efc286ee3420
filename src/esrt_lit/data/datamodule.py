"""The Lightning data module: training patches from any sources, one validation loader per benchmark.

Training follows ESRT's recipe (Lu et al., arXiv 2108.11084, Sec. 4.1): random 48x48 LR patches,
batch 16, flips and rotations. Validation and test score whole images, batch 1, one DataLoader per
benchmark, in the order of :attr:`SRDataModule.val_names` / :attr:`SRDataModule.test_names`, so the
LightningModule can log ``val/<name>/psnr`` from ``dataloader_idx``.

Distributed evaluation: each evaluation loader carries an :class:`EvalDistributedSampler` when a
process group is up. It splits the images across ranks without repeating any (a plain
``DistributedSampler`` repeats images to even out the ranks, which would score them twice), and
because it is a ``DistributedSampler`` Lightning's ``use_distributed_sampler`` leaves it in place.
Ranks may then run different numbers of batches, so the LightningModule must not sync per step:
it accumulates per-image sums in torchmetrics states reduced with ``"sum"`` and computes at epoch
end. Under DDP an epoch of training holds at least one full batch per process, whatever the data.
"""

from __future__ import annotations

import logging
import os
import random
from collections.abc import Iterator
from typing import Any

import torch
import torch.distributed as dist
from lightning.pytorch import LightningDataModule
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from esrt_lit.data.datasets import CacheMode, PairStore, SREvalDataset, SRTrainDataset
from esrt_lit.data.degradations import build_degradation
from esrt_lit.data.imresize import check_factor
from esrt_lit.data.sampling import ResumableDataLoader
from esrt_lit.data.sources import Record, SkimageSource, Source, build_sources

__all__ = ["EvalDistributedSampler", "SRDataModule"]

log = logging.getLogger(__name__)

#: ``num_workers`` / ``pin_memory`` value resolved from the trainer's device.
AUTO = "auto"


class EvalDistributedSampler(DistributedSampler):
    """Rank ``r`` of ``n`` gets images ``r, r + n, r + 2n, ...``: every image exactly once, no padding,
    except that a rank with no image of a loader (Set5 on 8 GPUs, 3 images on 4 processes) gets one
    padding item, index ``len(dataset) + r``, which :class:`~esrt_lit.data.datasets.SREvalDataset`
    marks ``pad`` and the LightningModule does not score: every rank then runs the evaluation loop
    and its epoch-end collectives, and the metric sums stay exact.
    """

    def __init__(self, dataset: Dataset, num_replicas: int | None = None, rank: int | None = None) -> None:
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=False, drop_last=False)
        self.total_size = len(dataset)  # type: ignore[arg-type]
        self.num_samples = max(1, len(range(self.rank, self.total_size, self.num_replicas)))

    def __iter__(self) -> Iterator[int]:
        own = range(self.rank, self.total_size, self.num_replicas)
        return iter(own if len(own) else [self.total_size + self.rank])


class SRDataModule(LightningDataModule):
    """SR data for training, validation and test.

    Every argument is a plain value, so Hydra can build it from YAML (``_target_:
    esrt_lit.data.SRDataModule``). The data config sets ``_recursive_: false``: the source specs
    (``_target_`` mappings) reach the module as plain mappings, are saved so in its hyper-parameters
    (a checkpoint holds no pickled object), and are built by :func:`~esrt_lit.data.sources.build_sources`
    when needed, whose errors are one line naming the spec.

    Args:
        scale: SR factor (2, 3 or 4).
        train: training source specs (source objects, or mappings with ``_target_`` or its short form
            ``kind``; see :mod:`esrt_lit.data.sources`); None = the embedded scikit-image training photos.
        val: validation source specs, one loader per source (a ``BenchmarksSource`` expands to one per
            benchmark); None = the embedded scikit-image validation images; ``[]`` = no validation.
        test: test source specs; None = the same as ``val``.
        patch_size: LR patch side (HR patch ``patch_size * scale``).
        batch_size: training batch size (evaluation always uses 1).
        repeat: passes over the training images per epoch.
        iters_per_epoch: if set, an epoch is exactly this many training batches
            (``iters_per_epoch * batch_size`` samples, cycling over the images; under DDP the batches
            are split across ranks) and ``repeat`` is ignored. ESRT's code counts epochs of 1000 batches.
        augment: D4 augmentation (flips, 90° rotations) of training patches.
        num_workers: training DataLoader worker processes, or ``auto``: on a CUDA device up to 8 per
            training process (the cores of the node shared between its processes, one left for each
            process itself), so that loading keeps up with a compiled step; on a CPU 0 (workers would
            compete with the training threads for the cores).
        val_num_workers: evaluation DataLoader workers (default 0: the images are decoded once in the
            main process and stay cached).
        cache: ``memory``, ``npy`` (uint8 files in ``cache_dir``, reused across runs and workers) or
            ``none``; see :class:`~esrt_lit.data.datasets.PairStore`. With ``memory`` the training set
            is decoded in the main process at ``setup`` (DIV2K takes ~8 GB); use ``npy`` to keep RAM low.
        cache_dir: folder of the ``npy`` cache (default ``$ESRT_CACHE`` or ``~/.cache/esrt_lit``).
        pin_memory: pin batches for asynchronous host-to-GPU copies, or ``auto`` (on a CUDA device).
        persistent_workers: keep worker processes between epochs (only when there are workers).
        seed: seeds the training order and every sample's crop and D4 draws (see
            :mod:`esrt_lit.data.sampling`: each a function of the seed, the epoch and the position, so
            that a resumed run sees the data an uninterrupted one would, with or without workers); None
            takes Lightning's global seed (``$PL_GLOBAL_SEED``, set by ``seed_everything``), else a random one.
            It is stored in checkpoints, so a resumed run keeps it.
        degradation: how LR images are made from HR ones (the ``degradation`` group; see
            :mod:`esrt_lit.data.degradations`): None or ``bicubic`` (stored LR files used when a source
            has them), ``bd`` or ``dn`` (always from the HR). A noisy degradation's noise is seeded per
            image in validation and test, and drawn afresh for every training patch.
    """

    def __init__(
        self,
        scale: int = 4,
        train: Any = None,
        val: Any = None,
        test: Any = None,
        patch_size: int = 48,
        batch_size: int = 16,
        repeat: int = 1,
        iters_per_epoch: int | None = None,
        augment: bool = True,
        num_workers: int | str = "auto",
        val_num_workers: int = 0,
        cache: CacheMode = "memory",
        cache_dir: str | None = None,
        pin_memory: bool | str = "auto",
        persistent_workers: bool = True,
        seed: int | None = None,
        degradation: Any = None,
    ) -> None:
        super().__init__()
        self.save_hyperparameters(logger=False)  # stored in checkpoints (scale, sources) for evaluation
        check_factor(scale)
        if batch_size < 1:
            raise ValueError(f"batch_size={batch_size}; expected a positive integer")
        if iters_per_epoch is not None and iters_per_epoch < 1:
            raise ValueError(f"iters_per_epoch={iters_per_epoch}; expected a positive integer or None")
        if num_workers != AUTO and (
            isinstance(num_workers, bool) or not isinstance(num_workers, int) or num_workers < 0
        ):
            raise ValueError(f"num_workers={num_workers!r}; expected auto or an integer >= 0")
        if val_num_workers < 0:
            raise ValueError(f"val_num_workers={val_num_workers}; expected >= 0")
        if pin_memory != AUTO and not isinstance(pin_memory, bool):
            raise ValueError(f"pin_memory={pin_memory!r}; expected auto, true or false")
        self.scale = int(scale)
        self.train_specs = train if train is not None else [SkimageSource("train")]
        self.val_specs = val if val is not None else [SkimageSource("val")]
        self.test_specs = test if test is not None else self.val_specs
        self.patch_size = patch_size
        self.batch_size = batch_size
        self.repeat = repeat
        self.iters_per_epoch = iters_per_epoch
        self.augment = augment
        self.num_workers = num_workers
        self.val_num_workers = val_num_workers
        self.pin_memory = pin_memory
        self.persistent_workers = persistent_workers
        if seed is None:
            env = os.environ.get("PL_GLOBAL_SEED")
            seed = int(env) if env is not None else random.randrange(2**31)
        self.seed = int(seed)
        self.degradation = build_degradation(degradation)
        self.store = PairStore(self.scale, cache, cache_dir, self.degradation)
        # training patches get fresh noise (SRTrainDataset); the store keeps the noise-free LR
        self.train_store = (
            PairStore(self.scale, cache, cache_dir, self.degradation, noise=False)
            if self.degradation.noise_sigma
            else self.store
        )
        self._val_sources: list[Source] | None = None
        self._test_sources: list[Source] | None = None
        self.train_set: SRTrainDataset | None = None
        self.val_sets: list[SREvalDataset] | None = None
        self.test_sets: list[SREvalDataset] | None = None

    # -- loader settings -------------------------------------------------------------------------------
    def _on_cuda(self) -> bool:
        trainer = self.trainer
        return trainer is not None and trainer.strategy.root_device.type == "cuda"

    @property
    def loader_workers(self) -> int:
        """The training loader's worker processes (``num_workers``, ``auto`` resolved)."""
        if self.num_workers != AUTO:
            return int(self.num_workers)
        if not self._on_cuda():
            return 0
        processes = max(1, self.trainer.num_devices)  # training processes on this node
        return max(1, min(8, (os.cpu_count() or 1) // processes - 1))

    @property
    def loader_pin_memory(self) -> bool:
        """Whether loaders pin their batches (``pin_memory``, ``auto`` resolved)."""
        return self._on_cuda() if self.pin_memory == AUTO else bool(self.pin_memory)

    # -- names ---------------------------------------------------------------------------------------
    def _val_sources_resolved(self) -> list[Source]:
        if self._val_sources is None:
            self._val_sources = build_sources(self.val_specs, allow_empty=True)
        return self._val_sources

    def _test_sources_resolved(self) -> list[Source]:
        if self._test_sources is None:
            self._test_sources = build_sources(self.test_specs, allow_empty=True)
        return self._test_sources

    @property
    def val_names(self) -> list[str]:
        """Names of the validation loaders, in ``val_dataloader()`` order (no image is decoded)."""
        return [s.label for s in self._val_sources_resolved()]

    @property
    def test_names(self) -> list[str]:
        """Names of the test loaders, in ``test_dataloader()`` order (no image is decoded)."""
        return [s.label for s in self._test_sources_resolved()]

    def check(self, train: bool = True) -> None:
        """Resolve every source now, no image decoded: a missing folder or file, a bad spec or a
        set without images fails before training, naming it (the images are decoded and checked when
        the datasets are set up, before the first step).

        Raises:
            FileNotFoundError: a folder or a stored LR file is missing.
            ValueError: a spec is invalid, or a source has no image.
        """
        if train:
            self._train_records()
        for source in [*self._val_sources_resolved(), *self._test_sources_resolved()]:
            source.records(self.scale)

    def _train_records(self) -> tuple[list[Source], list[Record]]:
        sources = build_sources(self.train_specs, unique_names=False)
        return sources, [r for s in sources for r in s.records(self.scale)]

    # -- datasets ------------------------------------------------------------------------------------
    def _eval_sets(self, sources: list[Source]) -> list[SREvalDataset]:
        sets = [SREvalDataset(s.records(self.scale), self.store, s.label) for s in sources]
        for ds in sets:
            ds.warm()
        return sets

    def _build_train(self) -> SRTrainDataset:
        sources, records = self._train_records()
        length = self.iters_per_epoch * self.batch_size if self.iters_per_epoch is not None else None
        world = self.trainer.world_size if self.trainer is not None else 1
        least = world * self.batch_size  # one full batch per process: an epoch never rounds to nothing
        ds = SRTrainDataset(
            records,
            self.train_store,
            patch_size=self.patch_size,
            augment=self.augment,
            repeat=self.repeat,
            length=length,
            name="+".join(s.label for s in sources),
        )
        if len(ds) < least:
            log.info(
                "training epoch lengthened to %d items: one batch of %d for each of %d process(es)",
                least,
                self.batch_size,
                world,
            )
            ds.length = least
        ds.warm(threads=max(1, self.loader_workers))
        log.info(
            "training set %s: %d images, %d items per epoch, x%d, %s degradation",
            ds.name,
            len(records),
            len(ds),
            self.scale,
            self.degradation.name,
        )
        return ds

    def setup(self, stage: str | None = None) -> None:
        """Build (once) the datasets that ``stage`` needs and load their images into the cache."""
        if stage in (None, "fit") and self.train_set is None:
            self.train_set = self._build_train()
        if stage in (None, "fit", "validate") and self.val_sets is None:
            self.val_sets = self._eval_sets(self._val_sources_resolved())
        if stage in (None, "test") and self.test_sets is None:
            self.test_sets = self._eval_sets(self._test_sources_resolved())

    # -- loaders -------------------------------------------------------------------------------------
    def train_dataloader(self) -> DataLoader:
        """Shuffled batches of random patches that resume exactly (:class:`~esrt_lit.data.sampling.ResumableDataLoader`)."""
        if self.train_set is None:
            self.setup("fit")
        assert self.train_set is not None
        return ResumableDataLoader(
            self.train_set,
            batch_size=self.batch_size,
            shuffle=True,
            seed=self.seed,
            drop_last=True,  # static batch shapes (a compiled step never recompiles); every process has one
            num_workers=self.loader_workers,
            pin_memory=self.loader_pin_memory,
            persistent_workers=self.persistent_workers and self.loader_workers > 0,
        )

    def _eval_loader(self, ds: SREvalDataset) -> DataLoader:
        sampler = None
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            sampler = EvalDistributedSampler(ds)
        workers = min(self.val_num_workers, len(ds))
        return DataLoader(
            ds,
            batch_size=1,
            shuffle=False,
            sampler=sampler,
            num_workers=workers,
            pin_memory=self.loader_pin_memory,
            persistent_workers=self.persistent_workers and workers > 0,
        )

    def val_dataloader(self) -> list[DataLoader]:
        """One loader per validation source (batch 1, in :attr:`val_names` order)."""
        if self.val_sets is None:
            self.setup("validate")
        return [self._eval_loader(ds) for ds in self.val_sets or []]

    def test_dataloader(self) -> list[DataLoader]:
        """One loader per test source (batch 1, in :attr:`test_names` order)."""
        if self.test_sets is None:
            self.setup("test")
        return [self._eval_loader(ds) for ds in self.test_sets or []]

    def on_before_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        """An evaluation batch's ``pad`` flag (collated to a tensor) becomes a host bool before the batch
        moves to the device: read there, it would make every image wait for the previous one's work."""
        if isinstance(batch, dict) and isinstance(batch.get("pad"), torch.Tensor):
            batch["pad"] = bool(batch["pad"].any())
        return batch
