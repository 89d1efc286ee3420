"""Download and unpack DIV2K, Sun80 and the standard SR benchmarks (standard library only).

Usage::

    python -m esrt_lit.data.prepare DIV2K Set5 Set14 [--root DIR] [--base-url URL] [--keep-archives]
    python -m esrt_lit.data.prepare Sun80 --from PATH   # a local copy: a folder, a zip or a tar archive
    python -m esrt_lit.data.prepare --list

``--root`` defaults to ``data/`` in the project checkout, where the configs look (``paths.data_dir``).
Layout under it (what :class:`~esrt_lit.data.sources.DIV2KSource`,
:class:`~esrt_lit.data.sources.FolderSource` and :class:`~esrt_lit.data.sources.BenchmarksSource`
read)::

    DIV2K/DIV2K_train_HR/0001.png            DIV2K/DIV2K_train_LR_bicubic/X4/0001x4.png
    DIV2K/DIV2K_valid_HR/0801.png            benchmark/Set5/HR/baby.png  (LR made with imresize)
    train/Sun80/abbey_sun_asztnlqhlrvirneh.jpg

Each archive is downloaded to ``root/.downloads/<file>.part`` (an interrupted download resumes with an
HTTP ``Range`` request), checked against its SHA-256, unpacked into a hidden temporary sibling of its
destination, marked complete (``.esrt_complete``) and renamed into place in one step, so an interrupted
run never leaves a folder that looks complete. A destination that already carries the marker is
skipped without any network access. Where no public checksum is known, the SHA-256 of the first
download is recorded in ``root/.downloads/manifest.json`` and later downloads must match it (trust on
first use; the CLI says so). A dataset with per-file checksums (Sun80, whose 80 SHA-256 values ship in
:mod:`esrt_lit.data.file_checksums`) is installed file by file: every listed file must be present
and match, or nothing is installed and the error names the files; other files are left out. Such a
dataset is also installed from a local copy (``--from``), since Sun80 has no stable public archive.

Benchmarks are fetched as HR images only: the evaluation protocol makes the LR with MATLAB's
``imresize`` from the modcropped HR, which the datasets do themselves.
"""

from __future__ import annotations

import argparse
import gzip
import json
import logging
import os
import shutil
import tarfile
import urllib.error
import urllib.request
import zipfile
import zlib
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from esrt_lit.data.file_checksums import SUN80_SHA256
from esrt_lit.files import atomic_output, sha256
from esrt_lit.paths import PROJECT_ROOT

__all__ = [
    "DEFAULT_ROOT",
    "REGISTRY",
    "Archive",
    "ChecksumError",
    "DatasetEntry",
    "main",
    "prepare",
    "prepare_hint",
]

log = logging.getLogger(__name__)

MARKER = ".esrt_complete"
#: Where the configs look for prepared data (``paths.data_dir``): ``data/`` in the project checkout.
DEFAULT_ROOT = PROJECT_ROOT / "data"
_CHUNK = 1 << 20


@dataclass(frozen=True)
class Archive:
    """One archive of a dataset.

    Attributes:
        filename: the file name, appended to the dataset's base URL; also the local file name.
        dest: the folder under ``--root`` that receives the archive's content (a chain of single
            top-level folders inside the archive, e.g. ``DIV2K_train_LR_bicubic/X4/``, is stripped).
        sha256: the expected SHA-256, or None when no public checksum is known.
        files: the SHA-256 of every file the content must hold, by name (the dataset is then installed
            file by file, also from a local copy); None: the content is taken as unpacked.
    """

    filename: str
    dest: str
    sha256: str | None = None
    files: Mapping[str, str] | None = None


@dataclass(frozen=True)
class DatasetEntry:
    """A downloadable dataset: a default base URL (None: the user must give ``--base-url``, or ``--from``
    where every archive lists its files), archives, a note and the documentation section about it."""

    base_url: str | None
    archives: tuple[Archive, ...]
    note: str = ""
    docs: str = "docs/training.md#data"

    @property
    def local(self) -> bool:
        """Whether a local copy can be installed (``--from``): one archive whose files are listed."""
        return len(self.archives) == 1 and self.archives[0].files is not None


_HF = "https://huggingface.co/datasets/eugenesiow/{}/resolve/main/data"

#: Known datasets. DIV2K from its official site (ETH Zurich; no published checksums); the benchmark
#: HR sets from the public Hugging Face mirror of super-image (eugenesiow), which uses the name
#: BSD100 for B100. Manga109 is distributed by its authors on request only, so it has no default URL.
#: Sun80 (Sun and Hays, ICCP 2012; project page http://cs.brown.edu/~lbsun/SRproj2012/SR_iccp2012.html)
#: has no archive at an address known to be stable and official, so it has no default URL either: a
#: local copy is installed with ``--from``, every file checked against the SHA-256 values shipped here.
REGISTRY: dict[str, DatasetEntry] = {
    "DIV2K": DatasetEntry(
        "https://data.vision.ee.ethz.ch/cvl/DIV2K",
        (
            Archive("DIV2K_train_HR.zip", "DIV2K/DIV2K_train_HR"),
            Archive("DIV2K_valid_HR.zip", "DIV2K/DIV2K_valid_HR"),
            Archive("DIV2K_train_LR_bicubic_X2.zip", "DIV2K/DIV2K_train_LR_bicubic/X2"),
            Archive("DIV2K_train_LR_bicubic_X3.zip", "DIV2K/DIV2K_train_LR_bicubic/X3"),
            Archive("DIV2K_train_LR_bicubic_X4.zip", "DIV2K/DIV2K_train_LR_bicubic/X4"),
        ),
        "800 train + 100 valid HR images and the official x2/x3/x4 bicubic LR of the train split",
    ),
    "Set5": DatasetEntry(_HF.format("Set5"), (Archive("Set5_HR.tar.gz", "benchmark/Set5/HR"),)),
    "Set14": DatasetEntry(_HF.format("Set14"), (Archive("Set14_HR.tar.gz", "benchmark/Set14/HR"),)),
    "B100": DatasetEntry(_HF.format("BSD100"), (Archive("BSD100_HR.tar.gz", "benchmark/B100/HR"),)),
    "Urban100": DatasetEntry(
        _HF.format("Urban100"), (Archive("Urban100_HR.tar.gz", "benchmark/Urban100/HR"),)
    ),
    "Manga109": DatasetEntry(
        None,
        (Archive("Manga109_HR.tar.gz", "benchmark/Manga109/HR"),),
        "no public mirror (request it at manga109.org); pass --base-url of a folder holding Manga109_HR.tar.gz",
    ),
    "Sun80": DatasetEntry(
        None,
        (Archive("Sun80.zip", "train/Sun80", files=SUN80_SHA256),),
        "80 photos of Sun & Hays (ICCP 2012), the CPU recipes' training set; no known stable archive: "
        "install a copy with --from <folder or archive>, each file's SHA-256 checked",
        "docs/training.md#sun80",
    ),
}


class ChecksumError(RuntimeError):
    """A downloaded archive does not have the expected SHA-256."""


def _load_manifest(path: Path) -> dict[str, dict[str, str]]:
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: not valid JSON ({err}); expected the download manifest") from err


def _save_manifest(path: Path, manifest: Mapping[str, object]) -> None:
    with atomic_output(path) as tmp:
        tmp.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")


def _download(url: str, part: Path, timeout: float) -> None:
    """Fetch ``url`` into ``part``, resuming from its current size with an HTTP Range request."""
    offset = part.stat().st_size if part.is_file() else 0
    request = urllib.request.Request(url, headers={"Range": f"bytes={offset}-"} if offset else {})
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as err:
        if err.code == 416 and offset:  # the part file already holds the whole file
            log.info("%s: already fully downloaded (%d bytes)", part.name, offset)
            return
        raise RuntimeError(f"{url}: HTTP {err.code} {err.reason}; expected the archive") from err
    except urllib.error.URLError as err:
        raise RuntimeError(f"{url}: cannot connect ({err.reason})") from err
    with response:
        resumed = offset > 0 and response.status == 206
        if offset and not resumed:
            log.info("%s: the server ignored the Range request, downloading from the start", url)
        total = response.headers.get("Content-Length")
        log.info(
            "downloading %s%s (%s bytes)", url, f" from byte {offset}" if resumed else "", total or "unknown"
        )
        with part.open("ab" if resumed else "wb") as f:
            shutil.copyfileobj(response, f, _CHUNK)


def _safe_extract(archive: Path, target: Path) -> None:
    """Unpack a zip or tar archive into ``target``, refusing members that would land outside it."""
    target.mkdir(parents=True)
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as zf:
            for member in zf.namelist():
                parts = Path(member).parts
                if Path(member).is_absolute() or ".." in parts:
                    raise ValueError(
                        f"{archive}: unsafe member path {member!r}; expected paths inside the archive"
                    )
            zf.extractall(target)
    elif tarfile.is_tarfile(archive):
        with tarfile.open(archive) as tf:
            tf.extractall(target, filter="data")
    else:
        raise ValueError(f"{archive}: not a zip or tar archive")


def _content_root(folder: Path) -> Path:
    """Descend through single top-level folders (``DIV2K_train_LR_bicubic/X4/``) to the content."""
    while True:
        entries = [p for p in folder.iterdir() if p.name not in ("__MACOSX", ".DS_Store")]
        if len(entries) == 1 and entries[0].is_dir():
            folder = entries[0]
        else:
            return folder


@contextmanager
def _staging(dest: Path) -> Iterator[Path]:
    """A hidden sibling of ``dest`` to build it in (leftovers of interrupted runs are removed first); it is
    removed afterwards, whatever happens."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    for stale in dest.parent.glob(f".{dest.name}.partial-*"):
        log.info("removing %s left by an interrupted run", stale)
        shutil.rmtree(stale)
    work = dest.parent / f".{dest.name}.partial-{os.getpid()}"
    try:
        yield work
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _names(names: Sequence[str], limit: int = 5) -> str:
    shown = ", ".join(names[:limit])
    return shown if len(names) <= limit else f"{shown} and {len(names) - limit} more"


def _copy_verified(content: Path, target: Path, files: Mapping[str, str], origin: str) -> Path:
    """Copy the listed ``files`` from ``content`` into ``target``, each checked against its SHA-256.

    Raises:
        ChecksumError: naming every missing file and every file whose SHA-256 differs.
    """
    target.mkdir(parents=True)
    missing, differ = [], []
    for name, expected in sorted(files.items()):
        if not (content / name).is_file():
            missing.append(name)
            continue
        shutil.copyfile(content / name, target / name)
        if sha256(target / name) != expected:
            differ.append(name)
    if missing or differ:
        problems = [f"missing {_names(missing)}"] if missing else []
        problems += [f"SHA-256 differs for {_names(differ)}"] if differ else []
        raise ChecksumError(
            f"{origin}: {'; '.join(problems)}; expected the {len(files)} files whose SHA-256 ship with "
            "esrt-lit (esrt_lit.data.file_checksums); nothing was installed"
        )
    extra = sorted(p.name for p in content.iterdir() if p.name not in files and p.name != MARKER)
    if extra:
        log.info("%s: left out %d file(s) not in the dataset: %s", origin, len(extra), _names(extra))
    return target


def _complete(
    content: Path,
    dest: Path,
    work: Path,
    info: Mapping[str, str],
    files: Mapping[str, str] | None,
    origin: str,
) -> None:
    """Mark ``content`` complete and rename it to ``dest`` (with ``files``: only those files, verified)."""
    if files is not None:
        content = _copy_verified(content, work / "verified", files, origin)
    (content / MARKER).write_text(json.dumps(dict(info), indent=2, sort_keys=True) + "\n")
    os.rename(content, dest)


def _unpack(
    archive: Path, dest: Path, info: Mapping[str, str], files: Mapping[str, str] | None = None
) -> None:
    """Unpack into a hidden sibling of ``dest``, write the marker, then rename into place atomically."""
    with _staging(dest) as work:
        _safe_extract(archive, work / "x")
        content = _content_root(work / "x")
        if not any(content.iterdir()):
            raise ValueError(f"{archive}: empty archive; expected image files")
        _complete(content, dest, work, info, files, info["url"])


def _check_dest(dest: Path) -> bool:
    """Whether ``dest`` is complete; a folder there that prepare did not complete is an error."""
    if (dest / MARKER).is_file():
        return True
    if dest.exists():
        raise FileExistsError(
            f"{dest} exists but has no {MARKER} marker (not unpacked by prepare, or unpacking was interrupted "
            "by an older version); remove or rename it to unpack again"
        )
    return False


def _install_local(source: Path, dest: Path, files: Mapping[str, str]) -> str:
    """Install ``dest`` from a local copy (a folder, a zip or a tar archive), every one of ``files`` verified."""
    if _check_dest(dest):
        return "present"
    if not source.exists():
        raise FileNotFoundError(f"--from {source}: no such folder or archive; expected a copy of the dataset")
    with _staging(dest) as work:
        if source.is_dir():
            content = _content_root(source)
        else:
            try:
                _safe_extract(source, work / "x")
            except (tarfile.TarError, zipfile.BadZipFile, gzip.BadGzipFile, zlib.error, EOFError) as err:
                raise ValueError(
                    f"--from {source}: cannot unpack ({err}); expected a zip or tar archive"
                ) from err
            content = _content_root(work / "x")
        _complete(content, dest, work, {"source": str(source.resolve())}, files, f"--from {source}")
    return f"installed ({len(files)} files verified)"


def _fetch_archive(
    archive: Archive,
    base_url: str,
    root: Path,
    manifest_path: Path,
    keep_archives: bool,
    timeout: float,
) -> str:
    """Make ``root/archive.dest`` complete; return what was done."""
    dest = root / archive.dest
    if _check_dest(dest):
        return "present"
    downloads = root / ".downloads"
    downloads.mkdir(parents=True, exist_ok=True)
    url = f"{base_url.rstrip('/')}/{archive.filename}"
    local = downloads / archive.filename
    part = downloads / f"{archive.filename}.part"
    if not local.is_file():
        _download(url, part, timeout)
        os.replace(part, local)
    digest = sha256(local)
    manifest = _load_manifest(manifest_path)
    recorded = manifest.get(archive.filename, {}).get("sha256")
    expected = archive.sha256 or recorded
    if expected is not None and digest != expected:
        local.unlink()
        origin = "the registry" if archive.sha256 else f"{manifest_path} (first download)"
        raise ChecksumError(
            f"{url}: SHA-256 {digest} does not match {expected} from {origin}; the download was deleted "
            "(run again to retry; if the file changed upstream on purpose, remove its manifest entry)"
        )
    try:
        _unpack(local, dest, {"url": url, "sha256": digest, "archive": archive.filename}, archive.files)
    except ChecksumError:
        local.unlink()
        raise
    except (tarfile.TarError, zipfile.BadZipFile, gzip.BadGzipFile, zlib.error, EOFError, ValueError) as err:
        local.unlink()
        raise ValueError(
            f"{url}: cannot unpack {archive.filename} ({err}); the download was deleted"
        ) from err
    status = "downloaded"
    if expected is None:
        manifest[archive.filename] = {"sha256": digest, "url": url, "size": str(local.stat().st_size)}
        _save_manifest(manifest_path, manifest)
        log.warning(
            "%s: no published SHA-256; recorded %s in %s (trust on first use)", url, digest, manifest_path
        )
        status = "downloaded (sha256 recorded)"
    if not keep_archives:
        local.unlink()
    return status


def prepare(
    name: str,
    root: str | Path = DEFAULT_ROOT,
    base_url: str | None = None,
    keep_archives: bool = False,
    registry: Mapping[str, DatasetEntry] = REGISTRY,
    timeout: float = 60.0,
    source: str | Path | None = None,
) -> list[tuple[str, Path, str]]:
    """Download (or install from ``source``), verify and unpack dataset ``name`` under ``root``; a no-op
    when already complete.

    Args:
        name: a key of ``registry`` (``DIV2K``, ``Set5``, ``Set14``, ``B100``, ``Urban100``, ``Manga109``,
            ``Sun80``).
        root: the data folder (default: ``data/`` in the project checkout, where the configs look).
        base_url: overrides the registry's base URL (a mirror).
        keep_archives: keep the downloaded archives after unpacking.
        registry: the datasets known.
        timeout: seconds to wait on the network.
        source: a local copy (a folder, a zip or a tar archive) of a dataset whose files are listed with
            their SHA-256 (Sun80), installed instead of downloading.

    Returns:
        ``(archive file, destination, status)`` per archive, status ``present``, ``downloaded``,
        ``downloaded (sha256 recorded)`` or ``installed (N files verified)``.

    Raises:
        KeyError: unknown ``name`` (the message lists the known ones).
        ValueError: no base URL (Manga109 without ``base_url``, Sun80 without ``source`` or
            ``base_url``), ``source`` for a dataset without per-file checksums, or a bad archive.
        ChecksumError: an archive does not match its SHA-256 (it is deleted; nothing is marked
            complete), or files are missing or do not match theirs (named; nothing is installed).
        FileExistsError: a destination exists without the completion marker.
        FileNotFoundError: ``source`` does not exist.
        RuntimeError: a network error.
    """
    if name not in registry:
        raise KeyError(f"unknown dataset {name!r}; known: {', '.join(registry)}")
    entry = registry[name]
    files = entry.archives[0].files if entry.local else None
    if source is not None and files is None:
        per_file = ", ".join(n for n, e in registry.items() if e.local) or "none"
        raise ValueError(
            f"{name}: --from installs only datasets checked file by file ({per_file}); {name} is checked by "
            "archive: download it, or pass --base-url of a mirror"
        )
    url = base_url or entry.base_url
    if url is None and source is None and entry.local:
        raise ValueError(
            f"{name}: no default download URL; pass source / --from <a folder, zip or tar archive of its "
            f"files> (each file's SHA-256 is checked), or base_url / --base-url of a mirror serving "
            f"{entry.archives[0].filename} ({entry.docs})"
        )
    if url is None and source is None:
        raise ValueError(f"{name}: no default download URL ({entry.note}); pass base_url / --base-url")
    root = Path(root).expanduser()
    if root.exists() and not root.is_dir():
        raise NotADirectoryError(f"root={root} is a file; expected the data folder (created if missing)")
    root.mkdir(parents=True, exist_ok=True)
    if source is not None and files is not None:
        (archive,) = entry.archives
        dest = root / archive.dest
        return [(archive.filename, dest, _install_local(Path(source).expanduser(), dest, files))]
    manifest_path = root / ".downloads" / "manifest.json"
    results = []
    for archive in entry.archives:
        status = _fetch_archive(archive, url, root, manifest_path, keep_archives, timeout)
        results.append((archive.filename, root / archive.dest, status))
    return results


def prepare_hint(folder: str | Path, registry: Mapping[str, DatasetEntry] = REGISTRY) -> str:
    """How to make a missing image ``folder`` that a registered dataset provides, else ``""``.

    A folder ending with an archive's destination (``.../train/Sun80``) is that dataset's; the hint
    names the command (with ``--root`` when it is not :data:`DEFAULT_ROOT`) and the documentation, e.g.
    ``; prepare it with `python -m esrt_lit.data.prepare Sun80 --from <a copy>` (docs/training.md#sun80)``.
    """
    folder = Path(folder).expanduser()
    for name, entry in registry.items():
        for archive in entry.archives:
            parts = Path(archive.dest).parts
            if folder.parts[-len(parts) :] != parts:
                continue
            root = folder.parents[len(parts) - 1]
            command = f"python -m esrt_lit.data.prepare {name}"
            command += " --from <a copy>" if entry.local and entry.base_url is None else ""
            command += "" if root.resolve() == DEFAULT_ROOT.resolve() else f" --root {root}"
            return f"; prepare it with `{command}` ({entry.docs})"
    return ""


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point (``python -m esrt_lit.data.prepare``)."""
    parser = argparse.ArgumentParser(
        prog="python -m esrt_lit.data.prepare", description=__doc__.splitlines()[0]
    )
    parser.add_argument("names", nargs="*", metavar="NAME", help=f"datasets: {', '.join(REGISTRY)}")
    parser.add_argument(
        "--root",
        type=Path,
        default=DEFAULT_ROOT,
        help=f"data folder, created if missing (default: {DEFAULT_ROOT})",
    )
    parser.add_argument("--base-url", default=None, help="mirror base URL, replacing the registry's")
    parser.add_argument(
        "--from",
        dest="source",
        type=Path,
        default=None,
        metavar="PATH",
        help="install from a local copy (a folder, a zip or a tar archive); every file is checked against "
        f"the SHA-256 shipped for it ({', '.join(n for n, e in REGISTRY.items() if e.local)})",
    )
    parser.add_argument("--keep-archives", action="store_true", help="keep the archives after unpacking")
    parser.add_argument("--list", action="store_true", help="list the known datasets and exit")
    args = parser.parse_args(argv)
    if args.list:
        for name, entry in REGISTRY.items():
            where = entry.base_url or (
                "(needs --from or --base-url)" if entry.local else "(needs --base-url)"
            )
            print(f"{name:10s} {where}  {entry.note}")  # noqa: T201
        return 0
    if not args.names:
        parser.error(f"give at least one dataset name; known: {', '.join(REGISTRY)}")
    unknown = [n for n in args.names if n not in REGISTRY]
    if unknown:
        parser.error(f"unknown dataset(s) {', '.join(unknown)}; known: {', '.join(REGISTRY)}")
    if args.source is not None and len(args.names) != 1:
        parser.error(f"--from installs one dataset; got {len(args.names)}: {', '.join(args.names)}")
    from esrt_lit.cli import run_command

    def work() -> None:
        rows = [
            (name, *row)
            for name in args.names
            for row in prepare(name, args.root, args.base_url, args.keep_archives, source=args.source)
        ]
        for name, filename, dest, status in rows:
            print(f"{name:10s} {filename:34s} {status:28s} {dest}")  # noqa: T201

    return run_command(work, log_format="%(levelname)s %(message)s")


if __name__ == "__main__":
    raise SystemExit(main())
