"""One image file (or upload) -> one uint8 RGB square: the single decoder of every folder, upload
and import, so that in-memory and streamed folders hold the same pixels."""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image, ImageOps

# Refuse images above 64 megapixels (8k x 8k): a small file can declare a huge size and
# exhaust memory when decoded (a "decompression bomb"). Pillow's own limit only warns below 2x.
# The header says the size before any pixel is decoded; 64 MP still admits every camera's photos.
MAX_PIXELS = 64_000_000
# Above this many pixels an image is shrunk in its own mode right after decoding, before any
# full-size copy (turning upright, RGB, cropping): an 8000x8000 greyscale PNG of 8 KB then peaks
# near its 64 MB of pixels instead of 550 MB (measured with ru_maxrss; tests/data/test_decode_faults.py).
# Smaller images keep the plain path, so the pixels of existing folders do not change.
SHRINK_ABOVE_PIXELS = 4_000_000
# A shrunk image keeps at least this many times the target size, so the final bilinear resize
# still averages enough pixels (Pillow's `reducing_gap`: 3 reads the same as a full resize).
REDUCING_GAP = 3


def not_regular(path: Path | str) -> str | None:
    """Why `path` is no regular file (a FIFO, socket or device, which an open() could block on or
    disturb), or None; asked of the file system (stat), never by opening it."""
    try:
        mode = os.stat(path).st_mode
    except OSError as err:
        return f"cannot be read ({err.strerror or err})"
    if stat.S_ISREG(mode):
        return None
    kind = ("a FIFO (named pipe)" if stat.S_ISFIFO(mode) else "a socket" if stat.S_ISSOCK(mode)
            else "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode)
            else "a folder" if stat.S_ISDIR(mode) else "a special file")
    return f"{kind}, not a regular file (not opened)"


def decode_image(source: Path | BinaryIO, resolution: int) -> np.ndarray | str:
    """A file path or binary stream -> uint8 (resolution, resolution, 3), or the reason it
    cannot be used. Never raises for bad data: folders skip such files, uploads refuse them. A
    path that is no regular file (a FIFO would block the open forever) is refused unopened."""
    if isinstance(source, (str, os.PathLike)) and (why := not_regular(source)):
        return why
    try:
        with Image.open(source) as opened:  # reads the header only
            if opened.width * opened.height > MAX_PIXELS:
                return f"{opened.width}x{opened.height} is over the {MAX_PIXELS:,}-pixel limit"
            # Let JPEG decode at a reduced scale that still covers the target size: much faster.
            opened.draft("RGB", (resolution, resolution))
            image = _shrink(opened, resolution) if opened.width * opened.height > SHRINK_ABOVE_PIXELS else opened
            image = ImageOps.exif_transpose(image)
            image = _to_rgb(image)
            side = min(image.size)
            left, top = (image.width - side) // 2, (image.height - side) // 2
            # Crop before resizing: resize(box=...) would blend in pixels from outside the square.
            image = image.crop((left, top, left + side, top + side))
            image = image.resize((resolution, resolution), Image.Resampling.BILINEAR)
            return np.asarray(image, dtype=np.uint8)
    except Image.DecompressionBombError as err:
        return f"over Pillow's size limit ({err})"
    except Image.UnidentifiedImageError:
        return "not an image Pillow can read"
    except (OSError, ValueError, SyntaxError, EOFError) as err:  # truncated or corrupt data
        return f"corrupt or truncated ({err})"
    except Exception as err:  # noqa: BLE001  Pillow's decoders raise others on hostile data (struct.error ...)
        return f"corrupt ({type(err).__name__}: {err})"


def _shrink(image: Image.Image, resolution: int) -> Image.Image:
    """A large image's centre square, box-averaged in the image's own mode straight after
    decoding to REDUCING_GAP times the target size: no full-size copy is ever made."""
    image = _eight_bit(image) if image.mode in _SIXTEEN_BIT else image
    if image.mode in ("1", "P"):  # reduce() takes neither: the palette or bit decides the colours
        image = _to_rgb(image) if image.mode == "P" else image.convert("L")
    side = min(image.size)
    left, top = (image.width - side) // 2, (image.height - side) // 2
    factor = max(1, side // (REDUCING_GAP * resolution))
    return image.reduce(factor, box=(left, top, left + side, top + side))


# Greyscale of more than 8 bits: PNG's 16-bit grey opens as I;16 (older Pillow: I), 16-bit TIFFs
# as I;16 / I;16B. convert("RGB") clips such values at 255, so nearly every pixel came out white.
_SIXTEEN_BIT = ("I;16", "I;16L", "I;16B", "I;16N", "I")


def _eight_bit(image: Image.Image) -> Image.Image:
    """16-bit greyscale -> 8-bit: the high byte, as Pillow itself reads 16-bit RGB PNGs (65535
    -> 255, 257 v -> v). Mode I (32-bit) is read as 16-bit, clipped to 0..65535."""
    values = np.asarray(image)
    if image.mode == "I":
        values = np.clip(values, 0, 65535)
    eight = Image.fromarray((values >> 8).astype(np.uint8))  # 2-D uint8: mode L
    eight.info = dict(image.info)  # its EXIF orientation, still to be applied
    return eight


def _to_rgb(image: Image.Image) -> Image.Image:
    # Transparent pixels often hold arbitrary colours: lay the image on white instead of
    # simply dropping the alpha channel.
    if image.mode in _SIXTEEN_BIT:
        image = _eight_bit(image)
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        image = image.convert("RGBA")
        return Image.alpha_composite(Image.new("RGBA", image.size, "white"), image).convert("RGB")
    return image.convert("RGB")
