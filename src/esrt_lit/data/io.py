"""Image files in and out, with errors that name the file and what was expected.

Images are numpy ``uint8`` arrays in HWC order: ``(H, W, 3)`` for colour and ``(H, W, 1)`` for
greyscale (Set14 ``bridge``). An alpha channel is dropped on reading; callers that must keep it
(the upscale CLI) read with ``keep_alpha=True``.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")


def read_image(path: str | Path, keep_alpha: bool = False) -> np.ndarray:
    """Decode ``path`` to ``uint8`` HWC (1, 3, or 4 channels when ``keep_alpha``).

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: the file is not a decodable image, is truncated, or is not 8-bit.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"image file not found: {path}")
    try:
        with Image.open(path) as img:
            if (bits := _bits_per_sample(img)) > 8:  # PIL would quietly reduce a 16-bit RGB PNG to 8 bits
                raise ValueError(
                    f"{path}: {bits}-bit image (mode {img.mode}); expected an 8-bit image "
                    "(the protocol and the networks work on 8-bit images; convert it first)"
                )
            img.load()
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
    except (UnidentifiedImageError, OSError, SyntaxError) as err:
        raise ValueError(
            f"{path}: unreadable or truncated image ({err}); expected a valid image file"
        ) from err
    if arr.ndim == 2:
        arr = arr[:, :, None]
    return np.ascontiguousarray(arr)


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
    """Encode a ``uint8`` HWC image (1, 3 or 4 channels), atomically (a temporary sibling, then a rename);
    refuses to replace a file unless ``overwrite``."""
    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} exists; pass overwrite=True to replace it")
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] not in (1, 3, 4):
        raise ValueError(
            f"{path}: expected a uint8 HWC image with 1, 3 or 4 channels, got {image.dtype} {image.shape}"
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.partial{path.suffix}")  # an interrupted write leaves no half file
    try:
        Image.fromarray(image[:, :, 0] if image.shape[2] == 1 else image).save(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def list_images(folder: str | Path) -> list[Path]:
    """Image files directly inside ``folder``, sorted by name.

    Raises:
        FileNotFoundError: the folder does not exist.
        ValueError: the folder holds no image file.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"image folder not found: {folder}")
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise ValueError(f"{folder}: no image files (expected one of {', '.join(IMAGE_SUFFIXES)})")
    return files


def modcrop(image: np.ndarray, scale: int) -> np.ndarray:
    """Crop the bottom/right of an HWC image so that height and width are multiples of ``scale``."""
    h, w = image.shape[:2]
    return image[: h - h % scale, : w - w % scale]
