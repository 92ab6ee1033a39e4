"""Peak memory of decoding a small PNG of huge size, the project's decoder against the naive one.

    python bench/decode_memory.py

A grey 8000 x 8000 PNG compresses to about 60 KB, but decoding it at full size and then shrinking
it (what `decode_image` did before it shrank large images while decoding) holds 64 MB of pixels
and several full-size copies. Each decoder runs in a fresh process, so each peak (ru_maxrss) is
its own; the table gives both and their ratio.
"""

from __future__ import annotations

import io
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

from PIL import Image, ImageOps

SIZE = 8000
RESOLUTION = 32


def naive(path: Path) -> tuple[int, ...]:
    """Decode at full size, upright and RGB, centre-crop and resize: every step a full-size copy."""
    with Image.open(path) as image:
        image = ImageOps.exif_transpose(image).convert("RGB")
        side = min(image.size)
        left, top = (image.width - side) // 2, (image.height - side) // 2
        image = image.crop((left, top, left + side, top + side)).resize((RESOLUTION, RESOLUTION))
        return image.size


def ours(path: Path) -> tuple[int, ...]:
    from ssl_core.data.decode import decode_image

    result = decode_image(path, RESOLUTION)
    return result.shape if hasattr(result, "shape") else (result,)


def measure(which: str, path: Path) -> None:
    Image.MAX_IMAGE_PIXELS = None  # the naive decoder has no limit of its own
    import numpy  # noqa: F401  (both: imports are not the decoding's memory)

    import ssl_core.data.decode  # noqa: F401
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    shape = {"naive": naive, "ours": ours}[which](path)
    grown = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    print(f"{grown:.0f} {shape}")


def main() -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "huge.png"
        buffer = io.BytesIO()
        Image.MAX_IMAGE_PIXELS = None
        Image.new("L", (SIZE, SIZE), 128).save(buffer, format="PNG", optimize=True)
        path.write_bytes(buffer.getvalue())
        peaks = {}
        for which in ("naive", "ours"):
            out = subprocess.run([sys.executable, __file__, which, str(path)], capture_output=True, text=True,
                                 check=True).stdout.split(maxsplit=1)
            peaks[which] = (float(out[0]), out[1].strip())
    print(f"{SIZE} x {SIZE} grey PNG of {len(buffer.getvalue()):,} bytes, decoded to {RESOLUTION} px\n")
    print("| decoder | peak memory growth | result |\n|---|---|---|")
    for which, (mb, shape) in peaks.items():
        print(f"| {which} | {mb:.0f} MB | {shape} |")
    print(f"\nours / naive: {peaks['ours'][0] / peaks['naive'][0]:.2f}")


if __name__ == "__main__":
    if len(sys.argv) == 3:
        measure(sys.argv[1], Path(sys.argv[2]))
    else:
        main()
