"""Where images come from: sources as small classes that Hydra builds from a ``_target_`` mapping.

A source (:class:`Source`: a ``label`` and ``records(scale)``) turns into a list of records for a
given scale, each an image that reads itself (:class:`Record`: its HR array, its stored LR array or
None, and the keys the caches use); :class:`ImageRecord` is the one for image files, an HR file and,
when the layout stores one, its LR file. Configs write sources like every other object, with
``_target_``; Python code may pass the source objects themselves, e.g.::

    train:
      - {_target_: esrt_lit.data.sources.DIV2KSource, root: /data/DIV2K, split: train}
      - {_target_: esrt_lit.data.sources.FolderSource, name: Sun80, path: /data/Sun80}
    val:
      - {_target_: esrt_lit.data.sources.BenchmarksSource, root: /data/benchmark, names: [Set5, Set14]}

A ``kind`` key is the short form of this module's sources (:data:`KINDS`: the class name without
``Source``, lower-cased), handy on a command line: ``data.val=[{kind:benchmarks,names:[Set5]}]``.

A new storage (an LMDB, a tar shard, an ``.npz``) is one source class whose records implement
:class:`Record`, written in a YAML with its ``_target_``; the datasets, the caches and the data module
take it as it is.

Without any configuration the data module falls back to :class:`SkimageSource`: photographs that ship
inside the scikit-image wheel (``skimage/data``), so a fresh clone trains and validates offline.
"""

from __future__ import annotations

import inspect
import logging
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from omegaconf import DictConfig, ListConfig, OmegaConf, SCMode

from esrt_lit.data.io import IMAGE_SUFFIXES, file_key, list_images, read_image
from esrt_lit.metrics.tables import paper_order
from esrt_lit.paths import benchmark_root

if TYPE_CHECKING:
    import numpy as np

__all__ = [
    "KINDS",
    "SKIMAGE_TRAIN",
    "SKIMAGE_VAL",
    "SOURCES",
    "BenchmarkSource",
    "BenchmarksSource",
    "DIV2KSource",
    "FolderSource",
    "ImageRecord",
    "PairedSource",
    "Record",
    "SkimageSource",
    "Source",
    "build_sources",
]

log = logging.getLogger(__name__)

#: Colour photographs bundled in the scikit-image wheel (``skimage/data``), used for training.
SKIMAGE_TRAIN: tuple[str, ...] = (
    "astronaut.png",
    "coffee.png",
    "hubble_deep_field.jpg",
    "ihc.png",
    "motorcycle_left.png",
    "motorcycle_right.png",
    "retina.jpg",
    "rocket.jpg",
)
#: Disjoint bundled images for validation: small (LR at most 128x128 at x4), one colour, two grey.
SKIMAGE_VAL: tuple[str, ...] = ("chelsea.png", "camera.png", "coins.png")


@runtime_checkable
class Record(Protocol):
    """One image of a source, which reads itself: all that a
    :class:`~esrt_lit.data.datasets.PairStore` needs. Records are hashable (the store's memory cache is
    keyed by them: a frozen dataclass is) and picklable (DataLoader workers may be spawned).

    ``lr_location``, ``read_lr()`` and ``lr_key()`` are None together: no stored LR, the LR is made from
    the HR by the degradation.
    """

    @property
    def name(self) -> str:
        """The image's name, used in logs, per-image results and the cache's file names."""
        ...

    @property
    def location(self) -> str:
        """Where the HR is, as messages name it (a file path; ``shard.npz[key]``)."""
        ...

    @property
    def lr_location(self) -> str | None:
        """Where the stored LR is, as messages name it, or None."""
        ...

    def read_hr(self) -> np.ndarray:
        """The HR image, ``uint8`` HWC (1 or 3 channels); errors name :attr:`location`."""
        ...

    def read_lr(self) -> np.ndarray | None:
        """The stored LR image for the source's scale, ``uint8`` HWC, or None."""
        ...

    def hr_key(self) -> str:
        """What the ``npy`` cache keys the HR by: it changes whenever the HR may have."""
        ...

    def lr_key(self) -> str | None:
        """What the ``npy`` cache keys a stored LR by, or None."""
        ...


@dataclass(frozen=True)
class ImageRecord:
    """One image file of a source (:class:`Record`), keyed by its path, mtime and size.

    Attributes:
        name: the image's name (file stem), used in logs and per-image results.
        hr: the HR file.
        lr: the stored LR file for the requested scale, or None to degrade ``hr`` with ``imresize``.
    """

    name: str
    hr: Path
    lr: Path | None = None

    @property
    def location(self) -> str:
        return str(self.hr)

    @property
    def lr_location(self) -> str | None:
        return None if self.lr is None else str(self.lr)

    def read_hr(self) -> np.ndarray:
        return read_image(self.hr)

    def read_lr(self) -> np.ndarray | None:
        return None if self.lr is None else read_image(self.lr)

    def hr_key(self) -> str:
        return file_key(self.hr)

    def lr_key(self) -> str | None:
        return None if self.lr is None else file_key(self.lr)


class Source(Protocol):
    """What the datasets need from a source."""

    @property
    def label(self) -> str:
        """The source's name (``val/<label>/psnr``)."""
        ...

    def records(self, scale: int) -> Sequence[Record]:
        """The source's images for ``scale``, sorted by name."""
        ...


def _path(value: str | Path) -> Path:
    return Path(value).expanduser()


def _limited(paths: list[Path], limit: int | None) -> list[Path]:
    if limit is not None and limit < 1:
        raise ValueError(f"limit={limit}; expected a positive number of images or None")
    return paths if limit is None else paths[:limit]


def _find_lr(lr_dir: Path, stems: Iterable[str], hr_file: Path, scale: int) -> Path:
    """The LR file for ``hr_file`` in ``lr_dir``: the first of ``stems`` with an image suffix."""
    stems = list(stems)
    for stem in stems:
        for suffix in (hr_file.suffix, *IMAGE_SUFFIXES):
            candidate = lr_dir / f"{stem}{suffix}"
            if candidate.is_file():
                return candidate
    raise FileNotFoundError(
        f"{hr_file}: no x{scale} LR image in {lr_dir}; expected one of "
        f"{', '.join(f'{s}{hr_file.suffix}' for s in stems)}"
    )


@dataclass
class FolderSource:
    """HR images directly inside a folder; the LR is made on the fly with MATLAB ``imresize``.

    Args:
        path: the folder.
        name: the source's name (default: the folder's name).
        limit: keep only the first ``limit`` images (sorted by name).
    """

    path: str
    name: str | None = None
    limit: int | None = None

    @property
    def label(self) -> str:
        return self.name or _path(self.path).name

    def records(self, scale: int) -> list[ImageRecord]:
        return [ImageRecord(p.stem, p) for p in _limited(list_images(_path(self.path)), self.limit)]


@dataclass
class PairedSource:
    """HR folder plus a folder of stored LR images (DIV2K layout: ``0001.png`` <-> ``0001x4.png``).

    Args:
        hr_dir: the HR folder.
        lr_dir: the LR folder; ``{scale}`` is replaced by the scale (``.../X{scale}``).
        name: the source's name (default: the HR folder's name).
        lr_name: the LR file stem; ``{stem}`` and ``{scale}`` are replaced (default ``{stem}x{scale}``).
        limit: keep only the first ``limit`` images.
    """

    hr_dir: str
    lr_dir: str
    name: str | None = None
    lr_name: str = "{stem}x{scale}"
    limit: int | None = None

    @property
    def label(self) -> str:
        return self.name or _path(self.hr_dir).name

    def records(self, scale: int) -> list[ImageRecord]:
        lr_dir = _path(self.lr_dir.format(scale=scale))
        if not lr_dir.is_dir():
            raise FileNotFoundError(f"LR folder not found: {lr_dir} (x{scale} LR images for {self.hr_dir})")
        hr_files = _limited(list_images(_path(self.hr_dir)), self.limit)
        return [
            ImageRecord(
                p.stem, p, _find_lr(lr_dir, [self.lr_name.format(stem=p.stem, scale=scale)], p, scale)
            )
            for p in hr_files
        ]


@dataclass
class DIV2KSource:
    """DIV2K as unpacked by ``python -m esrt_lit.data.prepare DIV2K``.

    ``root/DIV2K_{split}_HR/0001.png`` with ``root/DIV2K_{split}_LR_bicubic/X{s}/0001x{s}.png`` when
    that folder exists; otherwise (e.g. the validation split, whose LR is not downloaded) the LR is
    made with ``imresize``.

    Args:
        root: the folder holding ``DIV2K_train_HR`` etc.
        split: ``train`` (0001-0800) or ``valid`` (0801-0900).
        name: the source's name.
        limit: keep only the first ``limit`` images.
    """

    root: str
    split: str = "train"
    name: str = "DIV2K"
    limit: int | None = None

    @property
    def label(self) -> str:
        return self.name

    def records(self, scale: int) -> list[ImageRecord]:
        if self.split not in ("train", "valid"):
            raise ValueError(f"DIV2K split={self.split!r}; expected 'train' or 'valid'")
        root = _path(self.root)
        hr_dir = root / f"DIV2K_{self.split}_HR"
        lr_dir = root / f"DIV2K_{self.split}_LR_bicubic" / f"X{scale}"
        if lr_dir.is_dir():
            return PairedSource(str(hr_dir), str(lr_dir), self.name, limit=self.limit).records(scale)
        log.info("%s: no %s, the x%d LR is made with imresize", self.name, lr_dir, scale)
        return FolderSource(str(hr_dir), self.name, self.limit).records(scale)


@dataclass
class BenchmarkSource:
    """One benchmark folder: HR images directly inside it (``Set5/baby.png``), or a pack with
    ``HR/baby.png`` and optionally ``LR_bicubic/X{s}/babyx{s}.png`` (or ``baby.png``).

    Without a stored LR the LR is ``imresize(modcrop(HR), 1/s)``, the protocol of the published tables.

    Args:
        root: the benchmark folder.
        name: the source's name (default: the folder's name, e.g. ``Set5``).
        limit: keep only the first ``limit`` images.
        lr_dir: a folder of stored LR images to use instead of the pack's (``{scale}`` is replaced).
    """

    root: str
    name: str | None = None
    limit: int | None = None
    lr_dir: str | None = None

    @property
    def label(self) -> str:
        return self.name or _path(self.root).name

    @property
    def hr_dir(self) -> Path:
        """The folder of the HR images (``root/HR`` for a pack)."""
        root = _path(self.root)
        return root / "HR" if (root / "HR").is_dir() else root

    @property
    def lr_dirs(self) -> dict[int, Path]:
        """A pack's stored LR folders by scale (``LR_bicubic/X{s}``)."""
        lr_root = _path(self.root) / "LR_bicubic"
        if not lr_root.is_dir():
            return {}
        return {
            int(sub.name[1:]): sub
            for sub in sorted(lr_root.iterdir())
            if sub.is_dir() and sub.name[:1] in "xX" and sub.name[1:].isdigit()
        }

    def records(self, scale: int) -> list[ImageRecord]:
        hr_files = _limited(list_images(self.hr_dir), self.limit)
        lr_dir = (
            _path(self.lr_dir.format(scale=scale)) if self.lr_dir is not None else self.lr_dirs.get(scale)
        )
        if lr_dir is None:
            return [ImageRecord(p.stem, p) for p in hr_files]
        if not lr_dir.is_dir():
            raise FileNotFoundError(f"LR folder not found: {lr_dir} (x{scale} LR images for {self.hr_dir})")
        return [
            ImageRecord(p.stem, p, _find_lr(lr_dir, [f"{p.stem}x{scale}", p.stem], p, scale))
            for p in hr_files
        ]


def _has_images(folder: Path) -> bool:
    return folder.is_dir() and any(
        p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES for p in folder.iterdir()
    )


def _is_benchmark_dir(folder: Path) -> bool:
    """A folder with images, or with an ``HR/`` folder of images (a pack)."""
    return _has_images(folder / "HR") or _has_images(folder)


@dataclass
class BenchmarksSource:
    """A folder of benchmarks (``root/Set5``, ``root/Set14``, ...), expanded to one source each.

    Args:
        root: the folder (default: the shared ``data/benchmark`` folder, :func:`esrt_lit.paths.benchmark_root`).
        names: the benchmarks to use, in this order (default: every subfolder with images or with an
            ``HR/`` folder of images, in the paper's column order, see :data:`PAPER_ORDER`).
        limit: keep only the first ``limit`` images of each benchmark.
    """

    root: str | None = None
    names: list[str] | None = None
    limit: int | None = None

    def expand(self) -> list[BenchmarkSource]:
        """One :class:`BenchmarkSource` per benchmark folder."""
        if self.root is None:
            found = benchmark_root()
            if found is None:
                raise FileNotFoundError(
                    "benchmarks: no root given and no shared data/benchmark folder found "
                    "(set ESRT_SHARED or give root)"
                )
            root = found
        else:
            root = _path(self.root)
        if not root.is_dir():
            raise FileNotFoundError(f"benchmark root not found: {root}")
        available = sorted(
            (p.name for p in root.iterdir() if p.is_dir() and _is_benchmark_dir(p)), key=paper_order
        )
        if self.names is None:
            if not available:
                raise ValueError(
                    f"{root}: no benchmark folders (expected subfolders with images, or with HR/ holding images)"
                )
            names = available
        else:
            names = [str(n) for n in self.names]
            missing = [n for n in names if n not in available]
            if missing:
                raise FileNotFoundError(
                    f"{root}: benchmark(s) {', '.join(missing)} not found; available: {', '.join(available) or 'none'}"
                )
        return [BenchmarkSource(str(root / n), n, self.limit) for n in names]


@dataclass
class SkimageSource:
    """The embedded default: photographs bundled in the scikit-image wheel (no download).

    Only files that ship inside ``skimage/data`` are used (never the pooch-fetched ones), read directly
    from the installed package.

    Args:
        split: ``train`` (:data:`SKIMAGE_TRAIN`, colour) or ``val`` (:data:`SKIMAGE_VAL`, includes grey).
        name: the source's name.
    """

    split: str = "train"
    name: str = "skimage"

    @property
    def label(self) -> str:
        return self.name

    def records(self, scale: int) -> list[ImageRecord]:
        import skimage.data

        files = {"train": SKIMAGE_TRAIN, "val": SKIMAGE_VAL}.get(self.split)
        if files is None:
            raise ValueError(f"skimage split={self.split!r}; expected 'train' or 'val'")
        folder = Path(skimage.data.__file__).parent
        records = []
        for filename in files:
            path = folder / filename
            if not path.is_file():
                raise FileNotFoundError(
                    f"{path}: scikit-image sample image not found; expected it bundled in the skimage wheel"
                )
            records.append(ImageRecord(path.stem, path))
        return records


#: This module's sources, which a ``kind`` key names (:data:`KINDS`).
SOURCES: tuple[type, ...] = (
    FolderSource,
    PairedSource,
    DIV2KSource,
    BenchmarkSource,
    BenchmarksSource,
    SkimageSource,
)
#: ``kind`` short forms: each of :data:`SOURCES` by its class name without ``Source``, lower-cased
#: (``{kind: folder, path: p}`` is ``{_target_: esrt_lit.data.sources.FolderSource, path: p}``).
KINDS: dict[str, type] = {cls.__name__.removesuffix("Source").lower(): cls for cls in SOURCES}
#: The source class that messages give as an example of a ``_target_``.
_EXAMPLE = f"{FolderSource.__module__}.{FolderSource.__qualname__}"


def _is_source_class(obj: Any) -> bool:
    """A class whose objects are sources (``records``) or expand to sources (``expand``)."""
    return inspect.isclass(obj) and any(callable(getattr(obj, m, None)) for m in ("records", "expand"))


def _check_keys(cls: type, keys: Iterable[str], what: str) -> None:
    """Raise unless ``keys`` are parameters of ``cls`` and hold every required one (``what`` names the spec)."""
    parameters = inspect.signature(cls).parameters
    named = {n: p for n, p in parameters.items() if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)}
    accepted = ", ".join(sorted(named))
    keys = set(keys)
    unknown = sorted(keys - set(named))
    if unknown and not any(p.kind is p.VAR_KEYWORD for p in parameters.values()):
        raise ValueError(f"{what}: unknown key(s) {', '.join(unknown)}; accepted: {accepted}")
    missing = [n for n, p in named.items() if p.default is p.empty and n not in keys]
    if missing:
        raise ValueError(f"{what}: missing key(s) {', '.join(missing)}; accepted: {accepted}")


def _instantiate(spec: dict[str, Any]) -> Any:
    """Build a ``_target_`` spec with Hydra, once its target is known to be a source class and its keys
    its parameters; every error is one line naming the spec."""
    from hydra._internal.utils import _locate
    from hydra.errors import InstantiationException
    from hydra.utils import instantiate

    target = spec["_target_"]
    try:
        cls = _locate(str(target))
    except Exception as err:  # ImportError, ValueError: several lines naming what was tried
        cause = str(err.__cause__ or err).strip().splitlines()[-1]
        module, _, name = str(target).rpartition(".")
        if module in sys.modules and not hasattr(sys.modules[module], name):
            cause = f"{module} has no {name}"
        raise ValueError(
            f"source spec {spec}: _target_ {target!r} cannot be imported ({cause}); expected a source class "
            f"such as {_EXAMPLE}"
        ) from None
    if not _is_source_class(cls):
        raise ValueError(
            f"source spec {spec}: _target_ {target!r} is not a source class (no records method); expected a "
            f"class with a label and records(scale), such as {_EXAMPLE}"
        )
    _check_keys(cls, (k for k in spec if k != "_target_"), f"source spec {spec}")
    try:
        return instantiate(spec, _convert_="all")
    except InstantiationException as err:
        cause = err.__cause__ or err
        kind = FileNotFoundError if isinstance(cause, FileNotFoundError) else ValueError
        raise kind(f"source spec {spec}: {cause}") from err


def _from_mapping(spec: Mapping[str, Any]) -> Any:
    spec = dict(spec)
    if "_target_" in spec:
        return _instantiate(spec)
    kind = spec.pop("kind", None)
    if kind not in KINDS:
        raise ValueError(
            f"source spec {dict(spec, kind=kind)}: kind={kind!r}; expected one of {', '.join(sorted(KINDS))}"
            " (or a _target_)"
        )
    cls = KINDS[kind]
    _check_keys(cls, spec, f"source spec of kind {kind!r}")
    return cls(**spec)


def build_sources(specs: Any, unique_names: bool = True, allow_empty: bool = False) -> list[Source]:
    """Turn a list of specs (source objects, mappings with ``_target_`` or ``kind``) into sources.

    A ``_target_`` mapping is built by Hydra once its target is known to be a source class and its keys
    the class's parameters; a ``kind`` one is its short form (:data:`KINDS`). A source with ``expand()``
    (:class:`BenchmarksSource`) is expanded to the sources it returns (one per benchmark); a single spec
    is accepted too.

    Args:
        specs: one spec or a list of specs (lists/dicts from Hydra are accepted as they come).
        unique_names: require distinct names (validation/test sources are logged by name).
        allow_empty: accept an empty list (no validation, say) instead of raising.

    Raises:
        ValueError: a ``_target_`` that is no source class, an unknown kind, an unknown or missing key, a
            spec of the wrong type, no spec (unless ``allow_empty``), or (with ``unique_names``) two
            sources with one name; one line naming the spec.
    """
    if isinstance(specs, (DictConfig, ListConfig)):  # structured configs become their dataclasses again
        specs = OmegaConf.to_container(specs, resolve=True, structured_config_mode=SCMode.INSTANTIATE)
    if isinstance(specs, Mapping) or not isinstance(specs, Iterable) or isinstance(specs, str):
        specs = [specs]
    sources: list[Source] = []
    for spec in specs:
        if isinstance(spec, DictConfig):
            spec = OmegaConf.to_container(spec, resolve=True, structured_config_mode=SCMode.INSTANTIATE)
        source = _from_mapping(spec) if isinstance(spec, Mapping) else spec
        if callable(getattr(source, "expand", None)):
            sources.extend(source.expand())
        elif hasattr(source, "records") and hasattr(source, "label"):
            sources.append(source)
        else:
            raise ValueError(
                f"source spec {spec!r}: expected a mapping with '_target_' (a source class, such as {_EXAMPLE}) "
                f"or 'kind' ({', '.join(sorted(KINDS))}), or a source object"
            )
    if not sources and not allow_empty:
        raise ValueError("no data source given; expected at least one source spec")
    labels = [s.label for s in sources]
    duplicates = sorted({n for n in labels if labels.count(n) > 1})
    if unique_names and duplicates:
        raise ValueError(f"two sources share the name(s) {', '.join(duplicates)}; give each a distinct name")
    return sources
