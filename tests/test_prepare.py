"""``python -m esrt_lit.data.prepare`` against a local HTTP server with Range support."""

from __future__ import annotations

import hashlib
import io
import re
import shutil
import tarfile
import threading
import zipfile
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest

from esrt_lit.data.io import read_image
from esrt_lit.data.prepare import MARKER, REGISTRY, Archive, ChecksumError, DatasetEntry, main, prepare
from esrt_lit.data.sources import BenchmarksSource


class _Server(ThreadingHTTPServer):
    files: dict[str, bytes]
    requests: list[tuple[str, str | None]]


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_GET(self) -> None:
        range_header = self.headers.get("Range")
        self.server.requests.append((self.path, range_header))
        data = self.server.files.get(self.path)
        if data is None:
            self.send_error(404)
            return
        start = 0
        if range_header:
            match = re.fullmatch(r"bytes=(\d+)-", range_header)
            assert match, range_header
            start = int(match.group(1))
            if start >= len(data):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(data)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        body = data[start:]
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[_Server]:
    srv = _Server(("127.0.0.1", 0), _Handler)
    srv.files, srv.requests = {}, []
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()


def _url(srv: _Server) -> str:
    return f"http://127.0.0.1:{srv.server_address[1]}/data"


def _png(seed: int) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (12, 10, 3), dtype=np.uint8)).save(
        buf, "PNG"
    )
    return buf.getvalue()


def _zip(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


def _targz(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


TOY_ZIP = _zip({"Toy_HR/": b"", "Toy_HR/a.png": _png(1), "Toy_HR/b.png": _png(2)})
TOY_TAR = _targz({"Lr/X4/a.png": _png(3)})


def _registry(zip_sha: str | None = _sha(TOY_ZIP)) -> dict[str, DatasetEntry]:
    return {
        "Toy": DatasetEntry(None, (Archive("toy.zip", "benchmark/Toy/HR", zip_sha),)),
        "ToyTar": DatasetEntry(None, (Archive("toy.tar.gz", "ToyTar/X4", None),)),
    }


def _no_partials(root: Path) -> None:
    assert not [p for p in root.rglob("*.partial-*")], "no temporary unpack folder may be left"


def test_good_archive_unpacks_atomically_and_rerun_is_noop(tmp_path: Path, server: _Server) -> None:
    server.files["/data/toy.zip"] = TOY_ZIP
    rows = prepare("Toy", tmp_path, _url(server), registry=_registry())
    dest = tmp_path / "benchmark" / "Toy" / "HR"
    assert rows == [("toy.zip", dest, "downloaded")]
    assert sorted(p.name for p in dest.iterdir()) == [MARKER, "a.png", "b.png"], "single top folder stripped"
    assert read_image(dest / "a.png").shape == (12, 10, 3)
    assert not (tmp_path / ".downloads" / "toy.zip").exists(), "the archive is removed after unpacking"
    _no_partials(tmp_path)
    (source,) = BenchmarksSource(str(tmp_path / "benchmark")).expand()
    assert source.label == "Toy" and [r.name for r in source.records(4)] == ["a", "b"]

    before = len(server.requests)
    assert prepare("Toy", tmp_path, _url(server), registry=_registry()) == [("toy.zip", dest, "present")]
    assert len(server.requests) == before, "a complete set is not downloaded again"


def test_tar_without_checksum_records_manifest_then_enforces_it(tmp_path: Path, server: _Server) -> None:
    server.files["/data/toy.tar.gz"] = TOY_TAR
    ((_, dest, status),) = prepare("ToyTar", tmp_path, _url(server), registry=_registry(), keep_archives=True)
    assert status == "downloaded (sha256 recorded)"
    assert (dest / "a.png").is_file() and (dest / MARKER).is_file()
    manifest = (tmp_path / ".downloads" / "manifest.json").read_text()
    assert _sha(TOY_TAR) in manifest
    assert (tmp_path / ".downloads" / "toy.tar.gz").is_file(), "keep_archives keeps it"
    # the upstream file changes: the recorded checksum catches it
    shutil.rmtree(dest)
    (tmp_path / ".downloads" / "toy.tar.gz").unlink()
    server.files["/data/toy.tar.gz"] = _targz({"Lr/X4/a.png": _png(4)})
    with pytest.raises(
        ChecksumError, match=r"toy\.tar\.gz: SHA-256 .* does not match .*manifest\.json \(first download\)"
    ):
        prepare("ToyTar", tmp_path, _url(server), registry=_registry())
    assert not dest.exists()


def test_corrupt_archive_fails_checksum_and_leaves_nothing_complete(tmp_path: Path, server: _Server) -> None:
    corrupt = bytearray(TOY_ZIP)
    corrupt[len(corrupt) // 2] ^= 0xFF
    server.files["/data/toy.zip"] = bytes(corrupt)
    with pytest.raises(
        ChecksumError, match=rf"toy\.zip: SHA-256 {_sha(bytes(corrupt))} does not match {_sha(TOY_ZIP)}"
    ):
        prepare("Toy", tmp_path, _url(server), registry=_registry())
    assert not (tmp_path / "benchmark" / "Toy" / "HR").exists()
    assert not list(tmp_path.rglob(MARKER))
    assert not list((tmp_path / ".downloads").glob("toy.zip*")), "the bad download is deleted"
    _no_partials(tmp_path)
    # fixed upstream: the next run succeeds
    server.files["/data/toy.zip"] = TOY_ZIP
    assert prepare("Toy", tmp_path, _url(server), registry=_registry())[0][2] == "downloaded"


def test_undecodable_archive_without_checksum_is_not_trusted(tmp_path: Path, server: _Server) -> None:
    server.files["/data/toy.tar.gz"] = TOY_TAR[: len(TOY_TAR) // 2]
    with pytest.raises(ValueError, match=r"cannot unpack toy\.tar\.gz"):
        prepare("ToyTar", tmp_path, _url(server), registry=_registry())
    assert not (tmp_path / "ToyTar" / "X4").exists()
    assert not (tmp_path / ".downloads" / "manifest.json").exists(), "a broken archive's hash is not recorded"
    _no_partials(tmp_path)


def test_partial_download_resumes_with_range(tmp_path: Path, server: _Server) -> None:
    server.files["/data/toy.zip"] = TOY_ZIP
    (tmp_path / ".downloads").mkdir()
    (tmp_path / ".downloads" / "toy.zip.part").write_bytes(TOY_ZIP[:100])
    prepare("Toy", tmp_path, _url(server), registry=_registry())
    assert server.requests == [("/data/toy.zip", "bytes=100-")]
    assert (tmp_path / "benchmark" / "Toy" / "HR" / "b.png").is_file()


def test_part_file_already_complete_gets_416_and_is_used(tmp_path: Path, server: _Server) -> None:
    server.files["/data/toy.zip"] = TOY_ZIP
    (tmp_path / ".downloads").mkdir()
    (tmp_path / ".downloads" / "toy.zip.part").write_bytes(TOY_ZIP)
    prepare("Toy", tmp_path, _url(server), registry=_registry())
    assert server.requests == [("/data/toy.zip", f"bytes={len(TOY_ZIP)}-")]
    assert (tmp_path / "benchmark" / "Toy" / "HR" / MARKER).is_file()


def test_interrupted_unpack_leftovers_and_foreign_folders(tmp_path: Path, server: _Server) -> None:
    server.files["/data/toy.zip"] = TOY_ZIP
    stale = tmp_path / "benchmark" / "Toy" / ".HR.partial-999"
    (stale / "x").mkdir(parents=True)
    (stale / "x" / "a.png").write_bytes(b"half")
    prepare("Toy", tmp_path, _url(server), registry=_registry())
    assert not stale.exists()
    # a folder that prepare did not complete is never overwritten
    other = tmp_path / "other"
    (other / "benchmark" / "Toy" / "HR").mkdir(parents=True)
    with pytest.raises(FileExistsError, match=r"HR exists but has no \.esrt_complete marker"):
        prepare("Toy", other, _url(server), registry=_registry())


def test_unsafe_member_is_refused(tmp_path: Path, server: _Server) -> None:
    server.files["/data/toy.zip"] = _zip({"../evil.png": _png(5)})
    with pytest.raises(ValueError, match=r"unsafe member path '\.\./evil\.png'"):
        prepare("Toy", tmp_path, _url(server), registry=_registry(zip_sha=None))
    assert not (tmp_path / "benchmark" / "evil.png").exists()


def test_http_error_names_the_url(tmp_path: Path, server: _Server) -> None:
    with pytest.raises(RuntimeError, match=r"/data/toy\.zip: HTTP 404"):
        prepare("Toy", tmp_path, _url(server), registry=_registry())


def test_unknown_name_and_missing_url(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(
        KeyError, match=r"unknown dataset 'Nope'; known: DIV2K, Set5, Set14, B100, Urban100, Manga109"
    ):
        prepare("Nope", tmp_path)
    with pytest.raises(SystemExit) as exit_info:
        main(["Nope", "--root", str(tmp_path)])
    assert exit_info.value.code == 2
    assert "unknown dataset(s) Nope; known: DIV2K, Set5" in capsys.readouterr().err
    with pytest.raises(ValueError, match=r"Manga109: no default download URL .*--base-url"):
        prepare("Manga109", tmp_path)
    assert REGISTRY["DIV2K"].base_url == "https://data.vision.ee.ethz.ch/cvl/DIV2K"
    assert [a.dest for a in REGISTRY["DIV2K"].archives][2:] == [
        f"DIV2K/DIV2K_train_LR_bicubic/X{s}" for s in (2, 3, 4)
    ]


def test_cli_prints_a_table(
    tmp_path: Path, server: _Server, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    server.files["/data/Set5_HR.tar.gz"] = _targz({"Set5_HR/baby.png": _png(6)})
    monkeypatch.setitem(
        REGISTRY, "Set5", DatasetEntry(None, (Archive("Set5_HR.tar.gz", "benchmark/Set5/HR"),))
    )
    assert main(["Set5", "--root", str(tmp_path), "--base-url", _url(server)]) == 0
    out = capsys.readouterr().out
    assert "Set5" in out and "downloaded (sha256 recorded)" in out
    assert (tmp_path / "benchmark" / "Set5" / "HR" / "baby.png").is_file()


# ----------------------------------------------------------------------------- Sun80: per-file checksums


def _toy_files() -> dict[str, bytes]:
    return {"a.png": _png(7), "b.png": _png(8), "c.png": _png(9)}


def _per_file_registry() -> dict[str, DatasetEntry]:
    files = {name: _sha(data) for name, data in _toy_files().items()}
    return {
        "Toy": DatasetEntry(None, (Archive("toy.zip", "train/Toy", files=files),), "a toy", "docs/x.md#toy")
    }


def test_sun80_registry_entry_lands_where_the_recipe_looks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from hydra import compose, initialize_config_dir

    from esrt_lit.configs import register_configs
    from esrt_lit.paths import CONF_DIR

    (archive,) = REGISTRY["Sun80"].archives
    assert len(archive.files or {}) == 80 and all(len(h) == 64 for h in (archive.files or {}).values())
    assert REGISTRY["Sun80"].local and not REGISTRY["DIV2K"].local
    monkeypatch.setenv("ESRT_SHARED", str(tmp_path / "no-shared"))  # a fresh clone: no ../shared
    register_configs()
    with initialize_config_dir(CONF_DIR, version_base="1.3"):
        for experiment in ("cpu_x2_sun80", "pretrained_x2", "pretrained_x4"):
            cfg = compose("train", overrides=[f"experiment={experiment}", f"paths.data_dir={tmp_path}"])
            assert cfg.data.train[0].path == str(tmp_path / archive.dest), experiment


def test_sun80_from_the_shared_copy_folder_and_archive(tmp_path: Path, shared: Path) -> None:
    from esrt_lit.data.sources import FolderSource

    copy = shared / "data" / "train" / "Sun80"
    if not copy.is_dir():
        pytest.skip("../shared/data/train/Sun80 not found")
    root = tmp_path / "data"
    rows = prepare("Sun80", root, source=copy)
    dest = root / "train" / "Sun80"
    assert rows == [("Sun80.zip", dest, "installed (80 files verified)")]
    assert sorted(p.name for p in dest.iterdir()) == sorted([*REGISTRY["Sun80"].archives[0].files, MARKER])
    assert len(FolderSource(str(dest)).records(2)) == 80
    _no_partials(root)
    assert prepare("Sun80", root, source=copy)[0][2] == "present"
    # a zip of the copy inside a top folder, with a stray file: installed, the stray file left out
    archive = tmp_path / "sun80.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for path in sorted(copy.iterdir()):
            zf.write(path, f"Sun80/{path.name}")
        zf.writestr("Sun80/Thumbs.db", b"x")
    other = tmp_path / "other"
    assert prepare("Sun80", other, source=archive)[0][2] == "installed (80 files verified)"
    assert not (other / "train" / "Sun80" / "Thumbs.db").exists()
    assert len(list((other / "train" / "Sun80").glob("*.jpg"))) == 80


def test_missing_or_corrupted_file_is_refused_by_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    copy = tmp_path / "copy"
    copy.mkdir()
    for name, data in _toy_files().items():
        (copy / name).write_bytes(data)
    (copy / "b.png").write_bytes(b"corrupted")
    (copy / "c.png").unlink()
    root = tmp_path / "data"
    with pytest.raises(
        ChecksumError, match=r"--from .*copy: missing c\.png; SHA-256 differs for b\.png; .*nothing"
    ):
        prepare("Toy", root, registry=_per_file_registry(), source=copy)
    assert not (root / "train" / "Toy").exists()
    _no_partials(root)
    # the CLI: one line naming the files, exit 1
    monkeypatch.setitem(REGISTRY, "Sun80", _per_file_registry()["Toy"])
    assert main(["Sun80", "--root", str(root), "--from", str(copy)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert (
        len(err) == 1
        and err[0].startswith("error: ")
        and "missing c.png; SHA-256 differs for b.png" in err[0]
    )
    # fixed: installed
    (copy / "b.png").write_bytes(_toy_files()["b.png"])
    (copy / "c.png").write_bytes(_toy_files()["c.png"])
    assert main(["Sun80", "--root", str(root), "--from", str(copy)]) == 0
    assert "installed (3 files verified)" in capsys.readouterr().out
    assert sorted(p.name for p in (root / "train" / "Toy").iterdir()) == [MARKER, "a.png", "b.png", "c.png"]


def test_from_is_refused_where_it_cannot_work(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(
        ValueError,
        match=r"Sun80: no default download URL; pass source / --from <a folder, zip or tar archive",
    ):
        prepare("Sun80", tmp_path)
    with pytest.raises(
        ValueError, match=r"DIV2K: --from installs only datasets checked file by file \(Sun80\)"
    ):
        prepare("DIV2K", tmp_path, source=tmp_path)
    with pytest.raises(FileNotFoundError, match=r"--from .*nowhere: no such folder or archive"):
        prepare("Sun80", tmp_path, source=tmp_path / "nowhere")
    (tmp_path / "not-an-archive.zip").write_bytes(b"nope")
    with pytest.raises(ValueError, match=r"not-an-archive\.zip: not a zip or tar archive"):
        prepare("Sun80", tmp_path / "data", source=tmp_path / "not-an-archive.zip")
    _no_partials(tmp_path)
    with pytest.raises(SystemExit):
        main(["Sun80", "Set5", "--from", str(tmp_path)])
    assert "--from installs one dataset; got 2" in capsys.readouterr().err


def test_missing_folder_error_says_how_to_prepare_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from esrt_lit.data import prepare as prepare_module
    from esrt_lit.data.io import list_images

    root = tmp_path / "data"
    sun80 = root / "train" / "Sun80"
    with pytest.raises(FileNotFoundError) as info:
        list_images(sun80)
    assert str(info.value) == (
        f"image folder not found: {sun80}; prepare it with "
        f"`python -m esrt_lit.data.prepare Sun80 --from <a copy> --root {root}` (docs/training.md#sun80)"
    )
    with pytest.raises(FileNotFoundError, match=r"prepare DIV2K --root .*data` \(docs/training\.md#data\)$"):
        list_images(root / "DIV2K" / "DIV2K_train_HR")
    with pytest.raises(FileNotFoundError, match=r"^image folder not found: \S+elsewhere$"):
        list_images(tmp_path / "elsewhere")
    monkeypatch.setattr(prepare_module, "DEFAULT_ROOT", root)  # the default root: no --root in the hint
    assert prepare_module.prepare_hint(sun80) == (
        "; prepare it with `python -m esrt_lit.data.prepare Sun80 --from <a copy>` (docs/training.md#sun80)"
    )


def test_training_on_a_fresh_clone_points_at_prepare(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from hydra import compose, initialize_config_dir
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import open_dict

    from esrt_lit.data import prepare as prepare_module
    from esrt_lit.errors import ConfigError
    from esrt_lit.paths import CONF_DIR
    from esrt_lit.train import train

    root = tmp_path / "data"
    monkeypatch.setenv("ESRT_SHARED", str(tmp_path / "no-shared"))
    monkeypatch.setattr(prepare_module, "DEFAULT_ROOT", root)
    with initialize_config_dir(CONF_DIR, version_base="1.3"):
        cfg = compose(
            "train",
            overrides=["experiment=cpu_x2_sun80", f"paths.data_dir={root}", "logger=none"],
            return_hydra_config=True,
        )
    HydraConfig().set_config(cfg)
    with open_dict(cfg):
        cfg.paths.output_dir = str(tmp_path / "run")
        del cfg["hydra"]
    expected = (
        f"image folder not found: {root / 'train' / 'Sun80'}; prepare it with "
        "`python -m esrt_lit.data.prepare Sun80 --from <a copy>` (docs/training.md#sun80)"
    )
    with pytest.raises((ConfigError, FileNotFoundError), match=re.escape(expected)):
        train(cfg)
