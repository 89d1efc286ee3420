"""Read a Weights & Biases offline run (``wandb/offline-run-*/run-*.wandb``) without network.

wandb >= 0.19 writes an offline run's config, history and summary only into its binary
transaction log (W&B datastore: a 7-byte header, then LevelDB-log style 32 KiB blocks of
CRC-framed records, each a ``wandb_internal_pb2.Record``). This reader lets tests, the ablation
report and users inspect a run before ``wandb sync`` uploads it.
"""

from __future__ import annotations

import json
import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from wandb.proto import wandb_internal_pb2 as pb

_HEADER = struct.Struct("<4sHB")  # ":W&B", magic 0xBEE1, version
_RECORD = struct.Struct("<IHB")  # crc32, length, type
_BLOCK = 32768
_FULL, _FIRST, _MIDDLE, _LAST = 1, 2, 3, 4


@dataclass
class OfflineRun:
    """What an offline run holds: resolved config, metric history rows and final summary."""

    path: Path
    run_id: str = ""
    name: str = ""
    group: str = ""
    config: dict[str, Any] = field(default_factory=dict)
    summary: dict[str, Any] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)


def iter_records(path: str | Path) -> Iterator[pb.Record]:
    """Yield the protobuf records of a ``.wandb`` transaction log.

    Raises:
        ValueError: the file is not a W&B datastore file.
    """
    raw = Path(path).read_bytes()
    ident, magic, _version = _HEADER.unpack_from(raw, 0)
    if ident != b":W&B" or magic != 0xBEE1:
        raise ValueError(f"{path}: not a W&B transaction log (bad header {raw[:7]!r})")
    pos, pending = _HEADER.size, b""
    while pos + _RECORD.size <= len(raw):
        room = _BLOCK - pos % _BLOCK
        if room < _RECORD.size:  # block trailer padding
            pos += room
            continue
        crc, length, kind = _RECORD.unpack_from(raw, pos)
        if length == 0 and kind == 0:  # zero padding at the end of a block or file
            pos += room
            continue
        data = raw[pos + _RECORD.size : pos + _RECORD.size + length]
        pos += _RECORD.size + length
        if len(data) < length or zlib.crc32(bytes([kind]) + data) & 0xFFFFFFFF != crc:
            break  # a torn tail (the run was killed mid-write): what came before is intact
        if kind in (_FULL, _FIRST):
            pending = data
        else:
            pending += data
        if kind in (_FULL, _LAST):
            record = pb.Record()
            record.ParseFromString(pending)
            yield record


def _items(items: Any) -> Iterator[tuple[str, Any]]:
    for item in items:
        key = "/".join(item.nested_key) if item.nested_key else item.key
        yield key, json.loads(item.value_json)


def read_offline_run(run_dir: str | Path) -> OfflineRun:
    """Parse ``run_dir`` (an ``offline-run-*`` folder, or its ``.wandb`` file).

    Raises:
        FileNotFoundError: no ``run-*.wandb`` file in ``run_dir``.
    """
    run_dir = Path(run_dir)
    files = [run_dir] if run_dir.is_file() else sorted(run_dir.glob("run-*.wandb"))
    if not files:
        raise FileNotFoundError(f"{run_dir}: no run-*.wandb file; expected a W&B offline run directory")
    run = OfflineRun(path=run_dir)
    for record in iter_records(files[0]):
        kind = record.WhichOneof("record_type")
        if kind == "run":
            run.run_id, run.name, run.group = record.run.run_id, record.run.display_name, record.run.run_group
            run.config.update(_items(record.run.config.update))
            run.summary.update(_items(record.run.summary.update))
        elif kind == "config":
            run.config.update(_items(record.config.update))
        elif kind == "history":
            run.history.append(dict(_items(record.history.item)))
        elif kind == "summary":
            run.summary.update(_items(record.summary.update))
    run.config = {
        k: v.get("value", v) if isinstance(v, dict) and "value" in v else v for k, v in run.config.items()
    }
    return run
