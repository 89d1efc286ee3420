"""Map-style SR datasets: random aligned patches for training, whole images for evaluation.

Both read ``(LR, HR)`` pairs through a :class:`PairStore`, which has each record
(:class:`~esrt_lit.data.sources.Record`) read itself once and makes its LR once: HR is modcropped to
a multiple of the scale, and the LR is the stored LR when the record has one (its size checked
against the HR), else MATLAB ``imresize(HR, 1/s)`` rounded to
``uint8`` (ESRT, Lu et al., arXiv 2108.11084, Sec. 4.1: "bicubic degradation"). Another degradation
(:mod:`esrt_lit.data.degradations`: ``bd``, ``dn``) always makes the LR from the HR, stored LR files
being bicubic; its noise is seeded per image (:func:`~esrt_lit.data.degradations.image_seed`) for
evaluation, and drawn afresh for every training patch. The store keeps pairs in memory
(``cache="memory"``), or as ``uint8`` ``.npy`` files in a cache folder keyed by the record's keys (for
a file: its path, mtime and size), the degradation and the scale (``cache="npy"``, memory-mapped on
read, so a second run and worker processes never decode or resize again), or nowhere (``cache="none"``).
The store touches no file but its cache: paths, decoding and keys are the records' business.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch.utils.data import Dataset

from esrt_lit.data.degradations import Bicubic, Degradation, image_seed
from esrt_lit.data.imresize import check_factor
from esrt_lit.data.io import file_key, image_to_tensor, modcrop
from esrt_lit.data.sources import Record
from esrt_lit.data.transforms import PairedD4, check_patch_fits, paired_random_crop, to_three_channels
from esrt_lit.files import atomic_output
from esrt_lit.metrics.functional.ssim import WINDOW_SIZE, min_scored_side

__all__ = [
    "CACHE_MODES",
    "PairStore",
    "SREvalDataset",
    "SRTrainDataset",
    "check_scorable",
    "default_cache_dir",
]

log = logging.getLogger(__name__)

CacheMode = Literal["memory", "npy", "none"]
CACHE_MODES: tuple[str, ...] = ("memory", "npy", "none")


def default_cache_dir() -> Path:
    """``$ESRT_CACHE``, else ``$XDG_CACHE_HOME/esrt_lit``, else ``~/.cache/esrt_lit``."""
    if os.environ.get("ESRT_CACHE"):
        return Path(os.environ["ESRT_CACHE"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "esrt_lit"


#: The key of a file in the ``npy`` cache (:meth:`~esrt_lit.data.sources.ImageRecord.hr_key`).
_file_key = file_key
#: Characters a record's name may hold that a cache file's name may not.
_UNSAFE = re.compile(r"[/\\\x00]")


def _digest(text: str) -> str:
    return hashlib.sha1(text.encode()).hexdigest()[:16]


def _save_npy(path: Path, array: np.ndarray) -> None:
    """Write ``array`` to ``path`` atomically (:func:`~esrt_lit.files.atomic_output`)."""
    with atomic_output(path) as tmp, tmp.open("wb") as f:
        np.save(f, np.ascontiguousarray(array))


class PairStore:
    """Decoded ``(LR, HR)`` ``uint8`` HWC pairs for one scale, made once and cached.

    Args:
        scale: SR factor ``s``.
        cache: ``memory`` (arrays kept in this process; forked DataLoader workers inherit what the
            main process loaded), ``npy`` (``uint8`` ``.npy`` files in ``cache_dir``, memory-mapped),
            or ``none`` (decode on every access).
        cache_dir: folder of the ``npy`` cache (default :func:`default_cache_dir`).
        degradation: how an LR is made from its HR (default :class:`~esrt_lit.data.degradations.Bicubic`);
            any other ignores stored LR files.
        noise: add the degradation's noise, seeded by the image's name and the scale; False leaves it
            to :class:`SRTrainDataset`, which draws it afresh for every patch.
    """

    def __init__(
        self,
        scale: int,
        cache: CacheMode = "memory",
        cache_dir: str | Path | None = None,
        degradation: Degradation | None = None,
        noise: bool = True,
    ) -> None:
        if cache not in CACHE_MODES:
            raise ValueError(f"cache={cache!r}; expected one of {', '.join(CACHE_MODES)}")
        self.scale = check_factor(scale)
        self.cache = cache
        self.cache_dir = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
        self.degradation = degradation if degradation is not None else Bicubic()
        self.noise = noise
        # stored LR files are bicubic: another degradation makes its LR from the HR
        self.stored_lr = isinstance(self.degradation, Bicubic)
        if cache == "npy":
            self.cache_dir.mkdir(parents=True, exist_ok=True)
        self._pairs: dict[Record, tuple[np.ndarray, np.ndarray]] = {}

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        if self.cache == "npy":  # memory maps are reopened, not pickled as copies, in spawned workers
            state["_pairs"] = {}
        return state

    def get(self, record: Record) -> tuple[np.ndarray, np.ndarray]:
        """``(lr (h, w, C), hr (h*s, w*s, C))`` for ``record``, HR modcropped to a multiple of ``s``."""
        pair = self._pairs.get(record)
        if pair is None:
            pair = self._load_npy(record) if self.cache == "npy" else self._decode(record)
            if self.cache != "none":
                self._pairs[record] = pair
        return pair

    def hr(self, record: Record) -> np.ndarray:
        """The modcropped HR of ``record`` alone, decoded (not cached); a stored LR is read and checked
        against it, a missing one is not made."""
        hr = self._hr(record.location, record.read_hr())
        if self.stored_lr and (lr := record.read_lr()) is not None:
            self._check_lr(record, lr, hr)
        return hr

    def _decode(self, record: Record) -> tuple[np.ndarray, np.ndarray]:
        hr = self._hr(record.location, record.read_hr())
        return self._lr_for(record, hr), hr

    def _hr(self, path: str, image: np.ndarray) -> np.ndarray:
        """``image`` (read from ``path``) modcropped to a multiple of the scale, at least one LR pixel."""
        s = self.scale
        h, w = image.shape[:2]
        if h < s or w < s:
            raise ValueError(
                f"{path}: image of {w}x{h} pixels is too small for x{s}; expected at least {s}x{s} (one LR pixel)"
            )
        return modcrop(image, s)

    def _lr_for(self, record: Record, hr: np.ndarray) -> np.ndarray:
        lr = record.read_lr() if self.stored_lr else None
        if lr is None:
            seed = image_seed(record.name, self.scale) if self.noise else None
            return self.degradation(hr, self.scale, seed, noise=self.noise)
        self._check_lr(record, lr, hr)
        return lr

    def _check_lr(self, record: Record, lr: np.ndarray, hr: np.ndarray) -> None:
        """Raise unless a stored LR is the HR's size divided by the scale, with the HR's channels."""
        s = self.scale
        (h, w), (big_h, big_w) = lr.shape[:2], hr.shape[:2]
        if (h * s, w * s) != (big_h, big_w):
            raise ValueError(
                f"LR/HR sizes do not match x{s}: LR {record.lr_location} is {w}x{h}, HR {record.location} is "
                f"{big_w}x{big_h} after modcrop; expected LR {big_w // s}x{big_h // s} (or HR {w * s}x{h * s})"
            )
        if lr.shape[2] != hr.shape[2]:
            raise ValueError(
                f"LR {record.lr_location} has {lr.shape[2]} channel(s), HR {record.location} has {hr.shape[2]}; "
                "expected the same"
            )

    def _load_npy(self, record: Record) -> tuple[np.ndarray, np.ndarray]:
        hr_key = record.hr_key()
        degradation = self.degradation.clean_key
        if self.noise and self.degradation.noise_sigma:  # the noise is seeded by the image's name
            degradation = f"{self.degradation.cache_key}|{record.name}"
        stored_key = record.lr_key() if self.stored_lr else None
        lr_key = f"{hr_key}|{stored_key if stored_key is not None else degradation}|x{self.scale}"
        stem = _UNSAFE.sub("_", record.name)
        hr_path = self.cache_dir / f"{stem}-{_digest(hr_key)}.hr.npy"
        lr_path = self.cache_dir / f"{stem}-{_digest(lr_key)}.lr_x{self.scale}.npy"
        if hr_path.is_file():
            hr = self._hr(record.location, np.load(hr_path, mmap_mode="r"))
        else:
            full = record.read_hr()
            hr = self._hr(record.location, full)
            _save_npy(hr_path, full)
        if lr_path.is_file():
            lr = np.load(lr_path, mmap_mode="r")
        else:
            lr = self._lr_for(record, hr)
            _save_npy(lr_path, lr)
            log.debug("cached %s", lr_path)
        return lr, hr


class _PairDataset(Dataset):
    def __init__(self, records: Sequence[Record], store: PairStore, name: str) -> None:
        if not records:
            raise ValueError(f"dataset {name!r}: no images")
        self.records = list(records)
        self.store = store
        self.scale = store.scale
        self.name = name

    def warm(self, threads: int = 1) -> None:
        """Decode (and cache) every image now, so that a bad file fails before training, naming it, and
        DataLoader workers forked later inherit the arrays; with ``cache="none"`` each image is decoded
        once to check it, then dropped."""
        with ThreadPoolExecutor(max_workers=max(1, threads)) as pool:
            list(pool.map(self._load, self.records))

    def _load(self, record: Record) -> tuple[np.ndarray, np.ndarray]:
        return self.store.get(record)


class SRTrainDataset(_PairDataset):
    """Random aligned ``(LR, HR)`` patches with D4 augmentation.

    Item ``i`` comes from image ``i % n_images``; the dataset is ``repeat`` times the image list (or
    exactly ``length`` items) so that an epoch of a small set is long enough.

    Args:
        records: the images.
        store: the pair store (decides the scale and the cache).
        patch_size: LR patch side ``p`` (HR patch ``p * s``).
        augment: apply a random element of D4 (flips, 90° rotations, transposes) to both patches.
        repeat: passes over the image list per epoch.
        length: number of items per epoch instead of ``repeat``.
        name: the dataset's name (for messages).

    The crop and D4 draws of an item come from the global torch RNG, which the training loader seeds
    per sample (:mod:`esrt_lit.data.sampling`).

    Returns (per item):
        ``{"lr": float32 (3, p, p), "hr": float32 (3, p*s, p*s)}`` in [0, 1]; grey images are repeated
        to three channels.
    """

    def __init__(
        self,
        records: Sequence[Record],
        store: PairStore,
        patch_size: int = 48,
        augment: bool = True,
        repeat: int = 1,
        length: int | None = None,
        name: str = "train",
    ) -> None:
        super().__init__(records, store, name)
        if patch_size < 1:
            raise ValueError(f"patch_size={patch_size}; expected a positive LR patch side")
        if repeat < 1:
            raise ValueError(f"repeat={repeat}; expected a positive integer")
        if length is not None and length < 1:
            raise ValueError(f"length={length}; expected a positive number of items or None")
        self.patch_size = patch_size
        self.augment = augment
        self.repeat = repeat
        self.length = length
        self._d4 = PairedD4()

    def __len__(self) -> int:
        return self.length if self.length is not None else len(self.records) * self.repeat

    def _load(self, record: Record) -> tuple[np.ndarray, np.ndarray]:
        """The pair, checked to hold one patch (so :meth:`warm` checks every image's size too)."""
        lr, hr = self.store.get(record)
        check_patch_fits(lr, self.patch_size, self.scale, record.location)
        return lr, hr

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} items")
        record = self.records[index % len(self.records)]
        lr, hr = self._load(record)
        seed = int(torch.randint(0, 2**62, (1,)))
        lr_patch, hr_patch, _ = paired_random_crop(
            lr, hr, self.patch_size, self.scale, np.random.default_rng(seed)
        )
        lr_patch, hr_patch = np.ascontiguousarray(lr_patch), np.ascontiguousarray(hr_patch)
        if not self.store.noise:
            lr_patch = self.store.degradation.add_noise(lr_patch, seed)
        if self.augment:
            lr_patch, hr_patch = self._d4(lr_patch, hr_patch, seed)
        return {
            "lr": image_to_tensor(to_three_channels(lr_patch)),
            "hr": image_to_tensor(to_three_channels(hr_patch)),
        }


def check_scorable(path: str | Path, hr: np.ndarray, scale: int) -> None:
    """Raise unless a (modcropped) HR image can be scored by the protocol at ``scale``, naming the file.

    Raises:
        ValueError: a side below SSIM's window once the ``scale``-pixel border is cropped.
    """
    least = min_scored_side(scale)
    h, w = hr.shape[:2]
    if h < least or w < least:
        raise ValueError(
            f"{path}: image of {w}x{h} pixels is too small to score at x{scale}: SSIM needs {WINDOW_SIZE}x"
            f"{WINDOW_SIZE} pixels once the {scale}-pixel border is cropped; expected at least {least}x{least}"
        )


class SREvalDataset(_PairDataset):
    """Whole images for validation and test (batch size 1).

    Returns (per item):
        ``{"lr": float32 (3, h, w), "hr": float32 (C, h*s, w*s), "name": str, "path": str, "pad": bool}``
        in [0, 1]. The HR keeps its channels (``C = 1`` for a grey image, scored as is); the LR of a grey
        image is repeated to three channels for the network. An index past the end is a padding item
        (``pad`` true; see :class:`~esrt_lit.data.datamodule.EvalDistributedSampler`), not to be scored.
    """

    def __len__(self) -> int:
        return len(self.records)

    def _load(self, record: Record) -> tuple[np.ndarray, np.ndarray]:
        """The pair, checked to be large enough to score (so :meth:`warm` checks every image's size too)."""
        lr, hr = self.store.get(record)
        check_scorable(record.location, hr, self.scale)
        return lr, hr

    def __getitem__(self, index: int) -> dict[str, Any]:
        pad = index >= len(self.records)
        record = self.records[index % len(self.records)]
        lr, hr = self.store.get(record)
        return {
            "lr": image_to_tensor(to_three_channels(lr)),
            "hr": image_to_tensor(hr),
            "name": record.name,
            "path": record.location,
            "pad": pad,
        }
