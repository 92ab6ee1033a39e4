"""What a hostile folder can hold: a FIFO (or socket) among the images, 16-bit greyscale PNGs, and a
tiny PNG that declares a huge size."""

from __future__ import annotations

import io
import json
import os
import socket
import struct
import subprocess
import sys
import threading
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ssl_core.core.config import DataConfig
from ssl_core.data import load_dataset
from ssl_core.data.decode import MAX_PIXELS, decode_image


class ReaderWatch:
    """Tries, every 50 ms, to open a FIFO for writing without blocking: that succeeds only while
    someone has it open for reading. Records whether anyone ever did, and by doing so releases a
    reader that would otherwise wait forever, so a regression fails the test instead of hanging it."""

    def __init__(self, fifo: Path):
        self.fifo, self.opened, self.done = fifo, False, threading.Event()
        self.thread = threading.Thread(target=self._watch, daemon=True)

    def _watch(self) -> None:
        while not self.done.wait(0.05):
            try:
                os.close(os.open(self.fifo, os.O_WRONLY | os.O_NONBLOCK))
                self.opened = True
            except OSError:  # ENXIO: no reader has it open
                pass

    def __enter__(self) -> "ReaderWatch":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.done.set()
        self.thread.join()


@pytest.mark.timeout(60)
@pytest.mark.parametrize("load", ["memory", "stream"])
def test_fifos_and_sockets_are_skipped_by_name_without_being_opened(tmp_path, load):
    for label in ("cat", "dog"):
        (tmp_path / label).mkdir()
        for i in range(4):
            Image.new("RGB", (20, 20), (60 * i, 100 if label == "cat" else 0, 0)).save(tmp_path / label / f"{i}.png")
    fifo = tmp_path / "cat" / "pipe.png"
    os.mkfifo(fifo)
    os.mkfifo(tmp_path / "loose.fifo")  # at the top of a class-folder layout: skipped by name as ever
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(str(tmp_path / "dog" / "sock.png"))
    try:
        with ReaderWatch(fifo) as watch, warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            data = load_dataset(DataConfig(dataset=str(tmp_path), resolution=16, load=load))
    finally:
        listener.close()
    assert not watch.opened, "the FIFO was opened"
    messages = [str(w.message) for w in caught]
    assert any("pipe.png" in m and "FIFO" in m and "not a regular file" in m for m in messages), messages
    assert any("sock.png" in m and "socket" in m for m in messages), messages
    assert sorted(data.ids) == sorted(f"{c}/{i}.png" for c in ("cat", "dog") for i in range(4))


@pytest.mark.parametrize("fmt, mode", [("PNG", "I;16"), ("TIFF", "I;16"), ("TIFF", "I")])
def test_sixteen_bit_greyscale_keeps_its_grey_levels(fmt, mode):
    # Grey level v stored as v * 257 (0 -> 0, 255 -> 65535): the decoded image must be v again,
    # not clipped at 255 (which made every pixel above 255 of 65535 white).
    levels = np.arange(256).reshape(16, 16)
    values = (levels * 257).astype(np.uint16 if mode == "I;16" else np.int32)
    buffer = io.BytesIO()
    Image.fromarray(values, mode=mode if mode == "I" else None).save(buffer, format=fmt)
    buffer.seek(0)
    assert Image.open(buffer).mode.startswith("I")
    buffer.seek(0)
    decoded = decode_image(buffer, 16)
    assert isinstance(decoded, np.ndarray), decoded
    assert (decoded == levels[..., None]).all()


def _blank_png(width: int, height: int) -> bytes:
    """A greyscale PNG of zeros, compressed row by row: a few KB, whatever its size."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    packer, row = zlib.compressobj(9), b"\0" * (width + 1)
    pixels = b"".join(packer.compress(row) for _ in range(height)) + packer.flush()
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")


MEASURE = """
import json, resource, sys
from ssl_core.data.decode import decode_image
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
result = decode_image(sys.argv[1], 32)
grown = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
print(json.dumps({"grown_mb": grown, "result": result if isinstance(result, str) else list(result.shape)}))
"""


@pytest.mark.timeout(120)
def test_a_tiny_png_of_huge_size_is_refused_or_decoded_in_bounded_memory(tmp_path):
    side = int(MAX_PIXELS**0.5)  # 8000: the largest square the limit admits
    (tmp_path / "admitted.png").write_bytes(_blank_png(side, side))
    (tmp_path / "refused.png").write_bytes(_blank_png(side + 1, side + 1))
    assert (tmp_path / "admitted.png").stat().st_size < 100_000
    found = {}
    for name in ("admitted", "refused"):
        done = subprocess.run([sys.executable, "-c", MEASURE, str(tmp_path / f"{name}.png")],
                              capture_output=True, text=True, timeout=100)
        assert done.returncode == 0, done.stderr
        found[name] = json.loads(done.stdout.splitlines()[-1])
    # 64 MB of greyscale pixels, decoded once; the RGB, cropped and upright copies it used to make
    # at full size cost 550 MB.
    assert found["admitted"]["result"] == [32, 32, 3]
    assert found["admitted"]["grown_mb"] < 150, found
    # Refused from the header alone, before any pixel is decoded.
    assert "pixel limit" in found["refused"]["result"]
    assert found["refused"]["grown_mb"] < 10, found
