"""The layers of ssl_core hold: imports point down only and no two modules of a package import
each other, as pyproject.toml's import-linter contracts say (imports inside functions count)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_imports_point_down_the_layers_and_never_in_a_cycle():
    lint = Path(sys.executable).parent / "lint-imports"
    result = subprocess.run([str(lint), "--no-cache"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert "2 kept, 0 broken" in result.stdout, result.stdout[-2000:]


def test_the_run_folder_table_in_the_docs_is_the_one_the_code_names():
    from ssl_core.store.files import markdown_table

    text = (ROOT / "docs" / "architecture.md").read_text()
    start = text.index("<!-- run-files: generated from ssl_core/store/files.py -->\n")
    block = text[text.index("\n", start) + 1:text.index("\n<!-- end run-files -->")]
    assert block == markdown_table(), "docs/architecture.md's run-folder table drifted; regenerate it"
