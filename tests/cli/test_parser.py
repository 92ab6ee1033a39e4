"""The parser names each command's function as a string ("ssl_core.cli.training:cmd_train"),
which `main` imports only when that command runs: every name must resolve, and a command that
reads only run folders must start without the library's heavy imports."""

from __future__ import annotations

import argparse
import importlib
import subprocess
import sys

from ssl_core.cli.parser import build_parser


def commands() -> dict[str, argparse.ArgumentParser]:
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return dict(sub.choices)


def test_every_command_names_a_function_that_exists():
    for name, parser in commands().items():
        module, _, function = parser.get_default("handler").partition(":")
        assert module.startswith("ssl_core.cli.") and function, (name, module, function)
        assert callable(getattr(importlib.import_module(module), function, None)), f"`{name}`: no {module}:{function}"


def test_listing_runs_imports_no_torch(tmp_path):
    code = ("import sys; from ssl_core.cli import main; "
            f"assert main(['runs', '--runs-dir', {str(tmp_path)!r}]) == 0; "
            "heavy = sorted(m for m in ('torch', 'umap', 'faiss', 'sklearn') if m in sys.modules); "
            "assert not heavy, heavy")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
