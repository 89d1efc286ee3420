"""Writing a user's files safely: the project's one atomic write and its output-is-not-an-input check;
a file's SHA-256 (:func:`sha256`, for shipped weights, exports and downloaded datasets).

Every command that writes a file the user keeps (checkpoints, images, ONNX models, ``metrics.json``,
LR caches, manifests) writes it through :func:`atomic_output`: the content goes to a hidden sibling,
is flushed to disk and renamed over the destination, so an interrupted write (an exception, SIGKILL,
a full disk) leaves the previous file intact and no half-written one; the temporary file is removed
whatever happens. :func:`refuse_overwriting_input` stops a command from replacing its own input, even
with ``overwrite=true``.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["atomic_output", "refuse_overwriting_input", "same_file", "sha256"]

_CHUNK = 1 << 20


@contextmanager
def atomic_output(path: str | Path) -> Iterator[Path]:
    """Yield a temporary sibling of ``path`` to write; on success it replaces ``path`` atomically.

    The temporary name keeps the suffix (writers that pick a format by suffix, such as PIL, still
    work) and carries the process id (two processes never share one). The parent folder is created.
    On an exception the temporary file is removed and ``path`` is untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.partial{path.suffix}")
    try:
        yield tmp
        with tmp.open("rb+") as f:  # on disk before the rename, so a crash never leaves an empty file
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def same_file(a: str | Path, b: str | Path) -> bool:
    """Whether two paths name one file (links and relative spellings included); False if either is missing."""
    try:
        return os.path.samefile(a, b)
    except OSError:
        return Path(a).expanduser().resolve() == Path(b).expanduser().resolve()


def refuse_overwriting_input(output: str | Path, inputs: Iterable[str | Path], key: str = "output") -> None:
    """Raise ``ValueError`` when ``output`` is one of ``inputs`` (whatever ``overwrite`` says).

    Raises:
        ValueError: naming ``key``, the output and the input it would replace.
    """
    for source in inputs:
        if same_file(output, source):
            raise ValueError(
                f"{key}={output} is the input {source}; a command never replaces its own input "
                "(even with overwrite=true): choose another output path"
            )


def sha256(path: str | Path) -> str:
    """The hex SHA-256 of the file at ``path``, read in 1 MiB chunks (archives may not fit in memory)."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()
