"""Image files in and out, with errors that name the file and what was expected.

Images are numpy ``uint8`` arrays in HWC order: ``(H, W, 3)`` for colour and ``(H, W, 1)`` for
greyscale (Set14 ``bridge``). An alpha channel is dropped on reading; callers that must keep it
(the upscale CLI) read with ``keep_alpha=True``.

:func:`read_image` decodes an image in full or refuses it, naming the file:

* truncated data is refused, whatever PIL's global ``ImageFile.LOAD_TRUNCATED_IMAGES`` says (PIL
  would fill the missing rows with black), and so is a PNG whose compressed pixel data ends early;
* an image over :data:`MAX_PIXELS` pixels is refused from its header, before anything is decoded;
  the environment variable ``ESRT_MAX_PIXELS`` raises (or lowers) the limit for every command;
* an EXIF orientation (phone photos) is applied, said once per file at INFO;
* of an animated or multi-page image (GIF, APNG, TIFF) the first frame is read, said once per file
  at WARNING.

:func:`image_to_tensor` and :func:`tensor_to_image` are the one conversion between these arrays and
torch's channels-first tensors; :func:`file_key` is what caches key a file by.
"""

from __future__ import annotations

import logging
import os
import struct
import threading
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import ExifTags, Image, ImageFile, ImageOps, UnidentifiedImageError

from esrt_lit.files import atomic_output

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")

#: The largest image :func:`read_image` decodes, in pixels (8192x8192: an 8K frame is 33 MP, a 64 MP
#: phone photo 64.1 MP); ``ESRT_MAX_PIXELS`` overrides it.
MAX_PIXELS = 8192 * 8192
MAX_PIXELS_VARIABLE = "ESRT_MAX_PIXELS"

#: What :func:`ImageOps.exif_transpose` does for each EXIF orientation.
_ORIENTATIONS = {
    2: "mirrored left-right",
    3: "rotated 180 degrees",
    4: "mirrored top-bottom",
    5: "mirrored along the main diagonal",
    6: "rotated 90 degrees clockwise",
    7: "mirrored along the anti-diagonal",
    8: "rotated 90 degrees counter-clockwise",
}

#: PNG colour type -> samples per pixel; the Adam7 passes as (x0, y0, dx, dy).
_PNG_SAMPLES = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}
_ADAM7 = ((0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2))


def max_pixels() -> int:
    """The pixel limit of :func:`read_image`: ``$ESRT_MAX_PIXELS``, else :data:`MAX_PIXELS`.

    Raises:
        ValueError: ``ESRT_MAX_PIXELS`` is not a positive whole number.
    """
    value = os.environ.get(MAX_PIXELS_VARIABLE, "").strip()
    if not value:
        return MAX_PIXELS
    if not value.isdigit() or int(value) <= 0:
        raise ValueError(
            f"{MAX_PIXELS_VARIABLE}={value}: expected a positive whole number of pixels (e.g. 100000000)"
        )
    return int(value)


class _StrictDecoding:
    """PIL's globals set for :func:`read_image` while any thread decodes: truncated data raises
    (``LOAD_TRUNCATED_IMAGES`` off) and PIL's own bomb check is off (:func:`max_pixels` replaces it).
    Reference-counted, so that concurrent readers never restore the values under one another."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._users = 0
        self._saved: tuple[bool, int | None] = (False, None)

    @contextmanager
    def __call__(self) -> Iterator[None]:
        with self._lock:
            if self._users == 0:
                self._saved = (ImageFile.LOAD_TRUNCATED_IMAGES, Image.MAX_IMAGE_PIXELS)
            self._users += 1
            ImageFile.LOAD_TRUNCATED_IMAGES, Image.MAX_IMAGE_PIXELS = False, None
        try:
            yield
        finally:
            with self._lock:
                self._users -= 1
                if self._users == 0:
                    ImageFile.LOAD_TRUNCATED_IMAGES, Image.MAX_IMAGE_PIXELS = self._saved


_strict_decoding = _StrictDecoding()
_said: set[tuple[Path, str]] = set()  # (file, what): each note once per file and process


def _say_once(level: int, path: Path, what: str, message: str, *args: object) -> None:
    """Log ``message % (path, *args)`` at ``level`` the first time this process notes ``what`` of ``path``
    (the upscale CLI reads each input twice; training without a cache, every epoch)."""
    if (path, what) not in _said:
        _said.add((path, what))
        log.log(level, message, path, *args)


def read_image(path: str | Path, keep_alpha: bool = False) -> np.ndarray:
    """Decode ``path`` to ``uint8`` HWC (1, 3, or 4 channels when ``keep_alpha``), upright (EXIF
    orientation applied); of an animated or multi-page image, its first frame.

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: the file is not a decodable image, is truncated, is over :func:`max_pixels`, or is
            not 8-bit.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"image file not found: {path}")
    limit = max_pixels()
    try:
        with _strict_decoding(), Image.open(path) as img:
            w, h = img.size
            if w * h > limit:  # from the header: nothing is decoded yet
                raise ValueError(
                    f"{path}: image of {w}x{h} pixels ({w * h / 1e6:.1f} MP) is over the limit of {limit} "
                    f"pixels; expected a smaller image, or raise the limit: {MAX_PIXELS_VARIABLE}={w * h}"
                )
            if (bits := _bits_per_sample(img)) > 8:  # PIL would quietly reduce a 16-bit RGB PNG to 8 bits
                raise ValueError(
                    f"{path}: {bits}-bit image (mode {img.mode}); expected an 8-bit image "
                    "(the protocol and the networks work on 8-bit images; convert it first)"
                )
            if (frames := getattr(img, "n_frames", 1)) > 1:
                _say_once(
                    logging.WARNING,
                    path,
                    "frames",
                    "%s: %d frames (animated or multi-page); only the first is read",
                    frames,
                )
            img.load()
            if img.format == "PNG":
                _check_png_data(path)
            orientation = img.getexif().get(ExifTags.Base.Orientation, 1)
            if orientation in _ORIENTATIONS:
                img = ImageOps.exif_transpose(img)
                _say_once(
                    logging.INFO,
                    path,
                    "orientation",
                    "%s: EXIF orientation %d applied (%s)",
                    orientation,
                    _ORIENTATIONS[orientation],
                )
            mode = img.mode
            if mode in ("L", "1", "P"):
                if mode == "P":
                    img = img.convert("RGBA" if keep_alpha and "transparency" in img.info else "RGB")
                else:
                    img = img.convert("L")
            elif mode == "LA":
                img = img.convert("RGBA" if keep_alpha else "L")
            elif mode == "RGBA" or (mode != "RGB" and "A" in mode):
                img = img.convert("RGBA" if keep_alpha else "RGB")
            elif mode != "RGB":
                img = img.convert("RGB")
            arr = np.asarray(img, dtype=np.uint8)
    except (UnidentifiedImageError, OSError, SyntaxError, zlib.error) as err:
        if str(err).startswith("image file is truncated"):  # PIL's words, and _check_png_data's
            raise ValueError(f"{path}: truncated image data ({err}); expected a complete image file") from err
        raise ValueError(
            f"{path}: unreadable or truncated image ({err}); expected a valid image file"
        ) from err
    if arr.ndim == 2:
        arr = arr[:, :, None]
    return np.ascontiguousarray(arr)


def _check_png_data(path: Path) -> None:
    """PIL fills the rows of a PNG whose compressed pixel data ends before the last row with black,
    without a word (whatever ``LOAD_TRUNCATED_IMAGES`` says): inflate the IDAT chunks and count the
    bytes against what the header declares.

    Raises:
        OSError: the pixel data is short ("image file is truncated: ...").
    """
    data = path.read_bytes()
    width, height, depth, colour, interlace = struct.unpack(">IIBBxxB", data[16:29])
    bits = depth * _PNG_SAMPLES.get(colour, 1)
    passes = _ADAM7 if interlace else ((0, 0, 1, 1),)
    expected = 0
    for x0, y0, dx, dy in passes:
        cols, rows = -(-(width - x0) // dx), -(-(height - y0) // dy)
        if cols > 0 and rows > 0:
            expected += rows * (1 + (cols * bits + 7) // 8)  # a filter byte, then the samples
    inflate, got, pos = zlib.decompressobj(), 0, 8
    while pos + 8 <= len(data) and not inflate.eof:
        length, kind = struct.unpack(">I4s", data[pos : pos + 8])
        if kind == b"IDAT":
            chunk = data[pos + 8 : pos + 8 + length]
            while chunk and not inflate.eof:  # in bounded pieces: only the count is kept
                got += len(inflate.decompress(chunk, 1 << 20))
                chunk = inflate.unconsumed_tail
        pos += 12 + length
    if got < expected:
        raise OSError(f"image file is truncated: its pixel data holds {got} of {expected} bytes")


def _bits_per_sample(img: Image.Image) -> int:
    """Bits per sample of an opened, not yet decoded image: from its mode, or its decoder's raw mode
    (a 16-bit RGB PNG opens as mode ``RGB`` with raw mode ``RGB;16B``)."""
    if img.mode in ("I", "F"):
        return 32
    if img.mode.startswith("I;16"):
        return 16
    for tile in img.tile or []:
        args = tile[3] if len(tile) > 3 else None
        if isinstance(args, tuple) and args:
            args = args[0]
        raw = args if isinstance(args, str) else ""
        if ";16" in raw:
            return 16
        if ";32" in raw:
            return 32
    return 8


def write_image(path: str | Path, image: np.ndarray, overwrite: bool = False) -> Path:
    """Encode a ``uint8`` HWC image (1, 3 or 4 channels), atomically (:func:`esrt_lit.files.atomic_output`);
    refuses to replace a file unless ``overwrite``."""
    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} exists; pass overwrite=True to replace it")
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] not in (1, 3, 4):
        raise ValueError(
            f"{path}: expected a uint8 HWC image with 1, 3 or 4 channels, got {image.dtype} {image.shape}"
        )
    with atomic_output(path) as tmp:  # an interrupted write leaves no half file
        Image.fromarray(image[:, :, 0] if image.shape[2] == 1 else image).save(tmp)
    return path


def list_images(folder: str | Path) -> list[Path]:
    """Image files directly inside ``folder``, sorted by name.

    Raises:
        FileNotFoundError: the folder does not exist (for a dataset that ``python -m esrt_lit.data.prepare``
            provides, the message says how to prepare it).
        ValueError: the folder holds no image file.
    """
    folder = Path(folder)
    if not folder.is_dir():
        from esrt_lit.data.prepare import prepare_hint  # the datasets that `data.prepare` provides

        raise FileNotFoundError(f"image folder not found: {folder}{prepare_hint(folder)}")
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise ValueError(f"{folder}: no image files (expected one of {', '.join(IMAGE_SUFFIXES)})")
    return files


def modcrop(image: np.ndarray, scale: int) -> np.ndarray:
    """Crop the bottom/right of an HWC image so that height and width are multiples of ``scale``."""
    h, w = image.shape[:2]
    return image[: h - h % scale, : w - w % scale]


def file_key(path: str | Path) -> str:
    """What a cache keys a file by: its resolved path, modification time (ns) and size."""
    path = Path(path)
    stat = path.stat()
    return f"{path.resolve()}|{stat.st_mtime_ns}|{stat.st_size}"


def image_to_tensor(
    image: np.ndarray, scale_to_unit: bool = True, batch: bool = False, packed: bool = False
) -> torch.Tensor:
    """``uint8`` HWC -> CHW tensor (``[1, C, H, W]`` with ``batch``): ``float32`` in [0, 1] (levels / 255)
    with ``scale_to_unit``, else the ``uint8`` levels.

    The tensor views the image's memory, channels last in memory (its strides), copied first only when
    the array is not C-contiguous and writable (a memory map, a crop); ``packed`` gives a packed CHW
    tensor instead, in one copy. The layout matters: a network on the CPU may round differently for each.
    """
    import torch

    if image.ndim != 3:
        raise ValueError(f"image of shape {image.shape}; expected (H, W, C)")
    if packed:
        array = np.ascontiguousarray(image.transpose(2, 0, 1))
        chw = torch.from_numpy(array if array.flags.writeable else array.copy())  # memory maps are read-only
    else:
        chw = torch.from_numpy(np.require(image, requirements=["C", "W"])).permute(2, 0, 1)
    if scale_to_unit:
        chw = chw.float() / 255
    return chw[None] if batch else chw


def tensor_to_image(tensor: torch.Tensor) -> np.ndarray:
    """A float CHW tensor in [0, 1] -> ``uint8`` HWC array (clamped, scaled by 255, rounded half to even)."""
    import torch

    return (tensor.clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).cpu().numpy()
