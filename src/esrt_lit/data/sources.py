"""Where images come from: folder layouts as small dataclasses that a Hydra YAML list can build.

A source turns into a list of :class:`ImageRecord` (an HR file and, when the layout stores one, its
LR file) for a given scale. Configs write sources as mappings with a ``kind`` key (see :data:`KINDS`);
Python code may pass the source objects themselves, e.g.::

    train:
      - {kind: div2k, root: /data/DIV2K, split: train}
      - {kind: folder, name: Sun80, path: /data/Sun80}
    val:
      - {kind: benchmarks, root: /data/benchmark, names: [Set5, Set14]}

Without any configuration the data module falls back to :class:`SkimageSource`: photographs that ship
inside the scikit-image wheel (``skimage/data``), so a fresh clone trains and validates offline.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, ClassVar, Protocol

from omegaconf import DictConfig, ListConfig, OmegaConf, SCMode

from esrt_lit.data.io import IMAGE_SUFFIXES, list_images
from esrt_lit.paths import benchmark_root

__all__ = [
    "KINDS",
    "PAPER_ORDER",
    "SKIMAGE_TRAIN",
    "SKIMAGE_VAL",
    "BenchmarkSource",
    "BenchmarksSource",
    "DIV2KSource",
    "FolderSource",
    "ImageRecord",
    "PairedSource",
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
#: Column order of the paper's tables; other benchmarks follow alphabetically.
PAPER_ORDER: tuple[str, ...] = ("Set5", "Set14", "B100", "BSD100", "Urban100", "Manga109")


def paper_order(name: str) -> tuple[int, str]:
    """Sort key: the paper's benchmarks in its column order, then the others by name."""
    return (PAPER_ORDER.index(name) if name in PAPER_ORDER else len(PAPER_ORDER), name)


@dataclass(frozen=True)
class ImageRecord:
    """One image of a source.

    Attributes:
        name: the image's name (file stem), used in logs and per-image results.
        hr: the HR file.
        lr: the stored LR file for the requested scale, or None to degrade ``hr`` with ``imresize``.
    """

    name: str
    hr: Path
    lr: Path | None = None


class Source(Protocol):
    """What the datasets need from a source."""

    @property
    def label(self) -> str:
        """The source's name (``val/<label>/psnr``)."""
        ...

    def records(self, scale: int) -> list[ImageRecord]:
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
    kind: ClassVar[str] = "folder"

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
    kind: ClassVar[str] = "paired"

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
    kind: ClassVar[str] = "div2k"

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
    kind: ClassVar[str] = "benchmark"

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
    kind: ClassVar[str] = "benchmarks"

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
    kind: ClassVar[str] = "skimage"

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


#: ``kind`` values of plain-mapping specs.
KINDS: dict[str, type] = {
    cls.kind: cls
    for cls in (FolderSource, PairedSource, DIV2KSource, BenchmarkSource, BenchmarksSource, SkimageSource)
}


def _from_mapping(spec: Mapping[str, Any]) -> Any:
    spec = dict(spec)
    if "_target_" in spec:
        raise ValueError(
            f"source spec {spec}: sources are written with kind: ({', '.join(sorted(KINDS))}), not _target_"
        )
    kind = spec.pop("kind", None)
    if kind not in KINDS:
        raise ValueError(
            f"source spec {dict(spec, kind=kind)}: kind={kind!r}; expected one of {', '.join(sorted(KINDS))}"
        )
    cls = KINDS[kind]
    accepted = {f.name for f in fields(cls)}
    unknown = sorted(set(spec) - accepted)
    if unknown:
        raise ValueError(
            f"source spec of kind {kind!r}: unknown key(s) {', '.join(unknown)}; accepted: {', '.join(sorted(accepted))}"
        )
    return cls(**spec)


def build_sources(specs: Any, unique_names: bool = True, allow_empty: bool = False) -> list[Source]:
    """Turn a list of specs (source objects or mappings with ``kind``) into sources.

    ``benchmarks`` specs are expanded to one source per benchmark; a single spec is accepted too.

    Args:
        specs: one spec or a list of specs (lists/dicts from Hydra are accepted as they come).
        unique_names: require distinct names (validation/test sources are logged by name).
        allow_empty: accept an empty list (no validation, say) instead of raising.

    Raises:
        ValueError: an unknown kind or key, a spec of the wrong type, no spec (unless ``allow_empty``),
            or (with ``unique_names``) two sources with one name.
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
        if isinstance(source, BenchmarksSource):
            sources.extend(source.expand())
        elif hasattr(source, "records") and hasattr(source, "label"):
            sources.append(source)
        else:
            raise ValueError(
                f"source spec {spec!r}: expected a mapping with 'kind' ({', '.join(sorted(KINDS))}) or a source object"
            )
    if not sources and not allow_empty:
        raise ValueError("no data source given; expected at least one source spec")
    labels = [s.label for s in sources]
    duplicates = sorted({n for n in labels if labels.count(n) > 1})
    if unique_names and duplicates:
        raise ValueError(f"two sources share the name(s) {', '.join(duplicates)}; give each a distinct name")
    return sources
