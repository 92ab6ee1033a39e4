"""The dashboard as users start it (`ssl-explorer app`), served on a free port for a test."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Sequence
from pathlib import Path

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--use-angle=swiftshader", "--enable-unsafe-swiftshader"]  # WebGL maps without a GPU


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def served_app(runs_dir: Path, command: str = "app", timeout: float = 120,
               cli: Sequence[str] = (sys.executable, "-m", "ssl_core.cli"), cwd: Path | None = None,
               env: dict[str, str] | None = None) -> Iterator[int]:
    """`ssl-explorer app` (or `demo`) over `runs_dir`, answering on 127.0.0.1; yields its port.
    `cli` is the command that runs ssl-explorer (by default this environment's)."""
    port = free_port()
    process = subprocess.Popen(
        [*cli, command, "--port", str(port), "--runs-dir", str(runs_dir)], cwd=cwd,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env={**(os.environ if env is None else env), "PYTHONUNBUFFERED": "1"})
    try:
        deadline = time.time() + timeout
        while True:
            if process.poll() is not None:
                raise AssertionError(f"the app exited with {process.returncode}: {process.stdout.read()}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2):
                    break
            except OSError:
                if time.time() > deadline:
                    raise AssertionError(f"the app did not answer within {timeout} s") from None
                time.sleep(0.2)
        yield port
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()


MAP_FRAME = "iframe[src*='scatter_map']"  # the Explore map (app/widgets/scatter_map), in its own frame


def drawn_map(page, timeout: float = 120_000):
    """(iframe element, its frame) of the Explore map once its points are drawn."""
    iframe = page.wait_for_selector(MAP_FRAME, timeout=timeout)
    frame = iframe.content_frame()
    frame.wait_for_selector("#frame[data-points]", timeout=timeout)
    return iframe, frame
