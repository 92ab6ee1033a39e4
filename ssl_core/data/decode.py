"""One image file (or upload) -> one uint8 RGB square: the single decoder of every folder, upload
and import, so that in-memory and streamed folders hold the same pixels."""

from __future__ import annotations

from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image, ImageOps

# Refuse images above 64 megapixels (8k x 8k): a small file can declare a huge size and
# exhaust memory when decoded (a "decompression bomb"). Pillow's own limit only warns below 2x.
MAX_PIXELS = 64_000_000


def decode_image(source: Path | BinaryIO, resolution: int) -> np.ndarray | str:
    """A file path or binary stream -> uint8 (resolution, resolution, 3), or the reason it
    cannot be used. Never raises for bad data: folders skip such files, uploads refuse them."""
    try:
        with Image.open(source) as image:
            if image.width * image.height > MAX_PIXELS:
                return f"{image.width}x{image.height} is over the {MAX_PIXELS:,}-pixel limit"
            # Let JPEG decode at a reduced scale that still covers the target size: much faster.
            image.draft("RGB", (resolution, resolution))
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


def _to_rgb(image: Image.Image) -> Image.Image:
    # Transparent pixels often hold arbitrary colours: lay the image on white instead of
    # simply dropping the alpha channel.
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        image = image.convert("RGBA")
        return Image.alpha_composite(Image.new("RGBA", image.size, "white"), image).convert("RGB")
    return image.convert("RGB")
