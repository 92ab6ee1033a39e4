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


def test_no_import_hides_inside_a_function_without_saying_why():
    """ssl_core imports of ssl_core are at module level (a cycle is mended by moving the shared
    piece down a layer, never hidden in a function); a lazy import of a heavy or optional
    dependency says why in a comment on its line or the line above."""
    import ast

    hidden, unexplained = [], []
    for path in sorted((ROOT / "ssl_core").rglob("*.py")):
        source = path.read_text()
        lines = source.splitlines()
        functions = [n for n in ast.walk(ast.parse(source)) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]
        for node in (n for f in functions for n in ast.walk(f) if isinstance(n, (ast.Import, ast.ImportFrom))):
            module = node.module if isinstance(node, ast.ImportFrom) else node.names[0].name
            where = f"{path.relative_to(ROOT)}:{node.lineno} {module}"
            if (module or "").startswith("ssl_core"):
                hidden.append(where)
            elif "#" not in lines[node.lineno - 1] and not lines[node.lineno - 2].strip().startswith("#"):
                unexplained.append(where)
    assert not hidden, f"imports of ssl_core inside functions: {hidden}"
    assert not unexplained, f"lazy imports without a comment saying why: {unexplained}"
