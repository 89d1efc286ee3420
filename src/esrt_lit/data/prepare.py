"""Download and unpack DIV2K and the standard SR benchmarks (standard library only).

Usage::

    python -m esrt_lit.data.prepare DIV2K Set5 Set14 --root /data/sr [--base-url URL] [--keep-archives]
    python -m esrt_lit.data.prepare --list

Layout under ``--root`` (what :class:`~esrt_lit.data.sources.DIV2KSource` and
:class:`~esrt_lit.data.sources.BenchmarksSource` read)::

    DIV2K/DIV2K_train_HR/0001.png            DIV2K/DIV2K_train_LR_bicubic/X4/0001x4.png
    DIV2K/DIV2K_valid_HR/0801.png            benchmark/Set5/HR/baby.png  (LR made with imresize)

Each archive is downloaded to ``root/.downloads/<file>.part`` (an interrupted download resumes with an
HTTP ``Range`` request), checked against its SHA-256, unpacked into a hidden temporary sibling of its
destination, marked complete (``.esrt_complete``) and renamed into place in one step, so an interrupted
run never leaves a folder that looks complete. A destination that already carries the marker is
skipped without any network access. Where no public checksum is known, the SHA-256 of the first
download is recorded in ``root/.downloads/manifest.json`` and later downloads must match it (trust on
first use; the CLI says so).

Benchmarks are fetched as HR images only: the evaluation protocol makes the LR with MATLAB's
``imresize`` from the modcropped HR, which the datasets do themselves.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import logging
import os
import shutil
import tarfile
import urllib.error
import urllib.request
import zipfile
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from esrt_lit.files import atomic_output

__all__ = ["REGISTRY", "Archive", "ChecksumError", "DatasetEntry", "main", "prepare"]

log = logging.getLogger(__name__)

MARKER = ".esrt_complete"
_CHUNK = 1 << 20


@dataclass(frozen=True)
class Archive:
    """One archive of a dataset.

    Attributes:
        filename: the file name, appended to the dataset's base URL; also the local file name.
        dest: the folder under ``--root`` that receives the archive's content (a chain of single
            top-level folders inside the archive, e.g. ``DIV2K_train_LR_bicubic/X4/``, is stripped).
        sha256: the expected SHA-256, or None when no public checksum is known.
    """

    filename: str
    dest: str
    sha256: str | None = None


@dataclass(frozen=True)
class DatasetEntry:
    """A downloadable dataset: a default base URL (None: the user must give ``--base-url``) and archives."""

    base_url: str | None
    archives: tuple[Archive, ...]
    note: str = ""


_HF = "https://huggingface.co/datasets/eugenesiow/{}/resolve/main/data"

#: Known datasets. DIV2K from its official site (ETH Zurich; no published checksums); the benchmark
#: HR sets from the public Hugging Face mirror of super-image (eugenesiow), which uses the name
#: BSD100 for B100. Manga109 is distributed by its authors on request only, so it has no default URL.
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
}


class ChecksumError(RuntimeError):
    """A downloaded archive does not have the expected SHA-256."""


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


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


def _unpack(archive: Path, dest: Path, info: Mapping[str, str]) -> None:
    """Unpack into a hidden sibling of ``dest``, write the marker, then rename into place atomically."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    for stale in dest.parent.glob(f".{dest.name}.partial-*"):
        log.info("removing %s left by an interrupted run", stale)
        shutil.rmtree(stale)
    work = dest.parent / f".{dest.name}.partial-{os.getpid()}"
    try:
        _safe_extract(archive, work / "x")
        content = _content_root(work / "x")
        if not any(content.iterdir()):
            raise ValueError(f"{archive}: empty archive; expected image files")
        (content / MARKER).write_text(json.dumps(dict(info), indent=2, sort_keys=True) + "\n")
        os.rename(content, dest)
    finally:
        shutil.rmtree(work, ignore_errors=True)


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
    if (dest / MARKER).is_file():
        return "present"
    if dest.exists():
        raise FileExistsError(
            f"{dest} exists but has no {MARKER} marker (not unpacked by prepare, or unpacking was interrupted "
            "by an older version); remove or rename it to unpack again"
        )
    downloads = root / ".downloads"
    downloads.mkdir(parents=True, exist_ok=True)
    url = f"{base_url.rstrip('/')}/{archive.filename}"
    local = downloads / archive.filename
    part = downloads / f"{archive.filename}.part"
    if not local.is_file():
        _download(url, part, timeout)
        os.replace(part, local)
    digest = _sha256(local)
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
        _unpack(local, dest, {"url": url, "sha256": digest, "archive": archive.filename})
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
    root: str | Path,
    base_url: str | None = None,
    keep_archives: bool = False,
    registry: Mapping[str, DatasetEntry] = REGISTRY,
    timeout: float = 60.0,
) -> list[tuple[str, Path, str]]:
    """Download, verify and unpack dataset ``name`` under ``root``; a no-op when already complete.

    Args:
        name: a key of ``registry`` (``DIV2K``, ``Set5``, ``Set14``, ``B100``, ``Urban100``, ``Manga109``).
        root: the data folder.
        base_url: overrides the registry's base URL (a mirror).
        keep_archives: keep the downloaded archives after unpacking.
        registry: the datasets known.
        timeout: seconds to wait on the network.

    Returns:
        ``(archive file, destination, status)`` per archive, status ``present``, ``downloaded`` or
        ``downloaded (sha256 recorded)``.

    Raises:
        KeyError: unknown ``name`` (the message lists the known ones).
        ValueError: no base URL (Manga109 without ``base_url``), or a bad archive.
        ChecksumError: an archive does not match its SHA-256 (it is deleted; nothing is marked complete).
        FileExistsError: a destination exists without the completion marker.
        RuntimeError: a network error.
    """
    if name not in registry:
        raise KeyError(f"unknown dataset {name!r}; known: {', '.join(registry)}")
    entry = registry[name]
    url = base_url or entry.base_url
    if url is None:
        raise ValueError(f"{name}: no default download URL ({entry.note}); pass base_url / --base-url")
    root = Path(root).expanduser()
    if root.exists() and not root.is_dir():
        raise NotADirectoryError(f"root={root} is a file; expected the data folder (created if missing)")
    root.mkdir(parents=True, exist_ok=True)
    manifest_path = root / ".downloads" / "manifest.json"
    results = []
    for archive in entry.archives:
        status = _fetch_archive(archive, url, root, manifest_path, keep_archives, timeout)
        results.append((archive.filename, root / archive.dest, status))
    return results


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point (``python -m esrt_lit.data.prepare``)."""
    parser = argparse.ArgumentParser(
        prog="python -m esrt_lit.data.prepare", description=__doc__.splitlines()[0]
    )
    parser.add_argument("names", nargs="*", metavar="NAME", help=f"datasets: {', '.join(REGISTRY)}")
    parser.add_argument("--root", type=Path, help="data folder (created if missing)")
    parser.add_argument("--base-url", default=None, help="mirror base URL, replacing the registry's")
    parser.add_argument("--keep-archives", action="store_true", help="keep the archives after unpacking")
    parser.add_argument("--list", action="store_true", help="list the known datasets and exit")
    args = parser.parse_args(argv)
    if args.list:
        for name, entry in REGISTRY.items():
            print(f"{name:10s} {entry.base_url or '(needs --base-url)'}  {entry.note}")  # noqa: T201
        return 0
    if not args.names:
        parser.error(f"give at least one dataset name; known: {', '.join(REGISTRY)}")
    unknown = [n for n in args.names if n not in REGISTRY]
    if unknown:
        parser.error(f"unknown dataset(s) {', '.join(unknown)}; known: {', '.join(REGISTRY)}")
    if args.root is None:
        parser.error("--root is required")
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    rows = []
    try:
        for name in args.names:
            rows += [(name, *row) for row in prepare(name, args.root, args.base_url, args.keep_archives)]
    except Exception as err:  # every failure ends as one line
        from esrt_lit.utils.task import report_error

        return report_error(err)
    for name, filename, dest, status in rows:
        print(f"{name:10s} {filename:34s} {status:28s} {dest}")  # noqa: T201
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
