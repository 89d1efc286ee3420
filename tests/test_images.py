"""Images are decoded in full or refused (issue 22): truncated data, decompression bombs, EXIF
orientation and multi-frame files, in :func:`esrt_lit.data.io.read_image` and through the upscale CLI."""

from __future__ import annotations

import io
import logging
import struct
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageFile

from esrt_lit.data.io import MAX_PIXELS, image_to_tensor, read_image
from train_helpers import run_command

TRACEBACK = "Traceback (most recent call last)"
#: The Adam7 passes as (x0, y0, dx, dy), from the PNG specification.
ADAM7 = ((0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2))


def _chunk(kind: bytes, data: bytes) -> bytes:
    return (
        struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    )


def _png(path: Path, w: int, h: int, idat: bytes) -> Path:
    """An 8-bit RGB PNG declaring ``w``x``h`` with ``idat`` as its (valid-CRC) pixel data."""
    header = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + _chunk(b"IDAT", idat) + _chunk(b"IEND", b"")
    )
    return path


def _rows(h: int, w: int) -> bytes:
    """The filtered scanlines (filter 0) of an ``h``x``w`` RGB noise image."""
    pixels = np.random.default_rng(0).integers(0, 256, (h, w, 3), dtype=np.uint8)
    return b"".join(b"\x00" + pixels[y].tobytes() for y in range(h))


def _noise(h: int, w: int, seed: int = 0) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8))


@pytest.fixture(params=[False, True], ids=["flag-off", "flag-on"])
def load_truncated(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> bool:
    """PIL's global ``LOAD_TRUNCATED_IMAGES`` as a dependency or a user might have set it."""
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", request.param)
    return request.param


# --- truncated data ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "detail"),
    [
        # a complete zlib stream of the first 16 of 32 rows: PIL fills the rest with black, flag or not
        ("short-stream", "image file is truncated: its pixel data holds 784 of 1568 bytes"),
        # the zlib stream cut in the middle (the chunk's CRC still valid)
        ("cut-stream", "image file is truncated (0 bytes not processed)"),
    ],
)
def test_png_with_short_pixel_data_is_refused(
    kind: str, detail: str, load_truncated: bool, tmp_path: Path
) -> None:
    rows = _rows(32, 16)
    idat = zlib.compress(rows[: len(rows) // 2]) if kind == "short-stream" else zlib.compress(rows)[:300]
    path = _png(tmp_path / f"{kind}.png", 16, 32, idat)
    with pytest.raises(ValueError) as err:
        read_image(path)
    assert str(err.value) == f"{path}: truncated image data ({detail}); expected a complete image file"
    assert ImageFile.LOAD_TRUNCATED_IMAGES is load_truncated  # the global is restored


def test_complete_png_passes_the_pixel_data_check(tmp_path: Path) -> None:
    """All the rows, plain and Adam7-interlaced (its seven passes, some empty on a 5x3 image), read as
    they are; the interlaced one short of its last pass is refused."""
    pixels = np.random.default_rng(0).integers(0, 256, (32, 16, 3), dtype=np.uint8)
    assert (read_image(_png(tmp_path / "whole.png", 16, 32, zlib.compress(_rows(32, 16)))) == pixels).all()
    for h, w in ((13, 11), (3, 5)):
        small = pixels[:h, :w]
        passes = [small[y0::dy, x0::dx] for x0, y0, dx, dy in ADAM7]
        data = b"".join(b"\x00" + row.tobytes() for p in passes if p.size for row in p)
        header = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 1)
        path = tmp_path / f"interlaced{h}x{w}.png"
        for name, idat in (("whole", data), ("short", data[: -(1 + 3 * passes[-1].shape[1])])):
            path.write_bytes(
                b"\x89PNG\r\n\x1a\n"
                + _chunk(b"IHDR", header)
                + _chunk(b"IDAT", zlib.compress(idat))
                + _chunk(b"IEND", b"")
            )
            if name == "whole":
                assert (read_image(path) == small).all()
            else:
                with pytest.raises(
                    ValueError, match=rf"{path.name}: truncated image data .*{len(idat)} of {len(data)}"
                ):
                    read_image(path)


def test_jpeg_cut_mid_scan_is_refused(load_truncated: bool, tmp_path: Path) -> None:
    buf = io.BytesIO()
    _noise(64, 64).save(buf, "JPEG", quality=90)
    path = tmp_path / "cut.jpg"
    path.write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    with pytest.raises(ValueError, match=r"truncated image data \(image file is truncated") as err:
        read_image(path)
    message = str(err.value)
    assert message.startswith(f"{path}: truncated image data (") and message.endswith(
        "); expected a complete image file"
    )
    assert "\n" not in message
    assert ImageFile.LOAD_TRUNCATED_IMAGES is load_truncated


# --- decompression bombs -------------------------------------------------------------------------------


def _bomb(path: Path, w: int = 10000, h: int = 8000) -> Path:
    """A ~100-byte PNG declaring ``w``x``h`` (one compressed row of zeros)."""
    return _png(path, w, h, zlib.compress(b"\x00" * (1 + 3 * w)))


def test_image_over_the_pixel_limit_is_refused_from_its_header(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = _bomb(tmp_path / "bomb.png")
    assert path.stat().st_size < 200

    def no_decoding(self: ImageFile.ImageFile) -> None:
        raise AssertionError("decoded")

    monkeypatch.setattr(ImageFile.ImageFile, "load", no_decoding)
    monkeypatch.delenv("ESRT_MAX_PIXELS", raising=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nor PIL's DecompressionBombWarning
        with pytest.raises(ValueError) as err:
            read_image(path, keep_alpha=True)
    assert MAX_PIXELS == 8192 * 8192
    assert str(err.value) == (
        f"{path}: image of 10000x8000 pixels (80.0 MP) is over the limit of 67108864 pixels; "
        "expected a smaller image, or raise the limit: ESRT_MAX_PIXELS=80000000"
    )


def test_the_limit_is_the_environment_variable_and_pils_own_stays_out(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "a.png"
    _noise(10, 12).save(path)
    monkeypatch.setenv("ESRT_MAX_PIXELS", "119")
    with pytest.raises(
        ValueError, match=r"a\.png: image of 12x10 pixels .* limit of 119 pixels.*ESRT_MAX_PIXELS=120$"
    ):
        read_image(path)
    monkeypatch.setenv("ESRT_MAX_PIXELS", "120")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 50)  # PIL's own limit, below ours: neither warns nor errs
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert read_image(path).shape == (10, 12, 3)
    assert Image.MAX_IMAGE_PIXELS == 50  # restored
    monkeypatch.setenv("ESRT_MAX_PIXELS", "lots")
    with pytest.raises(ValueError) as err:
        read_image(path)
    assert (
        str(err.value) == "ESRT_MAX_PIXELS=lots: expected a positive whole number of pixels (e.g. 100000000)"
    )


# --- EXIF orientation and frames ------------------------------------------------------------------------


@pytest.mark.parametrize(("orientation", "turns"), [(6, -1), (8, 1), (3, 2)])
def test_exif_orientation_is_applied_and_said_once(
    orientation: int, turns: int, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A phone photo stored on its side (orientation 6: turn 90 degrees clockwise to view) comes out upright."""
    path = tmp_path / "phone.jpg"
    exif = Image.Exif()
    exif[0x0112] = orientation
    _noise(24, 40).save(path, quality=100, exif=exif)
    with Image.open(path) as img:
        stored = np.asarray(img.convert("RGB"))  # the pixels as stored, not rotated
    with caplog.at_level(logging.INFO, logger="esrt_lit.data.io"):
        first, again = read_image(path), read_image(path)
    assert (first == np.rot90(stored, turns)).all() and (again == first).all()
    assert first.shape == ((40, 24, 3) if orientation in (6, 8) else (24, 40, 3))
    said = [r for r in caplog.records if r.name == "esrt_lit.data.io"]
    assert len(said) == 1 and said[0].levelno == logging.INFO  # once per file, however often it is read
    assert said[0].getMessage().startswith(f"{path}: EXIF orientation {orientation} applied (rotated")


@pytest.mark.parametrize("suffix", [".gif", ".png", ".tif"])
def test_multi_frame_image_gives_its_first_frame_with_a_warning(
    suffix: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / f"anim{suffix}"
    frames = [_noise(8, 10, seed) for seed in range(3)]
    frames[0].save(path, save_all=True, append_images=frames[1:])
    with Image.open(path) as img:
        assert img.n_frames == 3
        expected = np.asarray(img.convert("RGB"))
    with caplog.at_level(logging.INFO, logger="esrt_lit.data.io"):
        first, again = read_image(path), read_image(path, keep_alpha=True)
    assert (first == expected).all() and (again[:, :, :3] == expected).all()
    said = [(r.levelno, r.getMessage()) for r in caplog.records if r.name == "esrt_lit.data.io"]
    assert said == [(logging.WARNING, f"{path}: 3 frames (animated or multi-page); only the first is read")]


def test_benchmark_images_read_as_before(benchmarks: Path, caplog: pytest.LogCaptureFixture) -> None:
    """The evaluation protocol is unchanged: Set5/Set14 hold no EXIF orientation nor frames, and decode
    to PIL's plain pixels."""
    files = sorted(p for name in ("Set5", "Set14") for p in (benchmarks / name).rglob("*.png"))
    assert len(files) >= 19
    with caplog.at_level(logging.INFO, logger="esrt_lit.data.io"):
        for path in files:
            with Image.open(path) as img:
                plain = np.asarray(img.convert("L" if img.mode in ("L", "1") else "RGB"))
            assert (read_image(path) == plain.reshape(read_image(path).shape)).all(), path
    assert not [r for r in caplog.records if r.name == "esrt_lit.data.io"]


# --- the upscale CLI ------------------------------------------------------------------------------------


@pytest.mark.parametrize("bad", ["bomb", "truncated"])
def test_upscale_refuses_with_one_line_and_writes_nothing(
    bad: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for variable in ("ESRT_DEBUG", "HYDRA_FULL_ERROR", "ESRT_MAX_PIXELS"):
        monkeypatch.delenv(variable, raising=False)
    folder = tmp_path / "in"
    folder.mkdir()
    _noise(12, 10).save(folder / "a_good.png")  # read first: nothing of it is written either
    if bad == "bomb":
        path, named = _bomb(folder / "b.png"), "image of 10000x8000 pixels (80.0 MP) is over the limit"
    else:
        rows = _rows(32, 16)
        path, named = (
            _png(folder / "b.png", 16, 32, zlib.compress(rows[: len(rows) // 2])),
            "truncated image data",
        )
    out = tmp_path / "out"
    code, output = run_command(
        "esrt_lit.upscale",
        [f"input={folder}", f"output={out}", "model=bicubic", f"hydra.run.dir={tmp_path / 'run'}"],
    )
    assert code == 1, output[-3000:]
    assert TRACEBACK not in output
    errors = [line for line in output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and errors[0].startswith(f"error: {path}: {named}"), output[-3000:]
    assert not out.exists() or not any(out.iterdir())


def test_image_to_tensor_views_or_packs_in_one_copy() -> None:
    """Channels-last view by default; ``packed``: a contiguous CHW copy, also from a read-only memory map
    (the caches') and a crop of one, with the same levels."""
    image = np.random.default_rng(0).integers(0, 256, (20, 30, 3), dtype=np.uint8)
    view = image_to_tensor(image, scale_to_unit=False)
    assert view.shape == (3, 20, 30) and not view.is_contiguous() and view.data_ptr() == image.ctypes.data
    read_only = image.copy()
    read_only.setflags(write=False)
    for source in (image, read_only, read_only[2:12, 5:25]):
        packed = image_to_tensor(source, scale_to_unit=False, batch=True, packed=True)
        assert packed.is_contiguous() and packed.dtype == torch.uint8 and packed.shape[:2] == (1, 3)
        np.testing.assert_array_equal(packed[0].permute(1, 2, 0).numpy(), source)
    unit = image_to_tensor(image, packed=True)
    assert unit.dtype == torch.float32 and torch.equal(unit, view.float() / 255)
