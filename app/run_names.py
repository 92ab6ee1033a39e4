"""Display names of runs: a short text a person gives a run ("baseline, lr 1e-3").

Stored in the run folder as label.txt (written atomically) so that every browser session sees
the same name and the name travels with the folder. Run ids stay the keys everywhere; the name
is only shown. If the CLI ever shows names too, this belongs beside RunStore in ssl_core/runs.py.
"""

from __future__ import annotations

from ssl_core.runs import Run, atomic_write_bytes

NAME_FILE = "label.txt"
MAX_NAME_LENGTH = 80


def get_display_name(run: Run) -> str | None:
    try:
        name = (run.path / NAME_FILE).read_text(encoding="utf-8").strip()
    except (FileNotFoundError, UnicodeDecodeError):
        return None
    return name[:MAX_NAME_LENGTH] or None


def set_display_name(run: Run, name: str) -> str | None:
    """Store `name` (one line, trimmed to MAX_NAME_LENGTH); an empty name removes it. Returns
    the name as stored."""
    name = " ".join(name.split())[:MAX_NAME_LENGTH]
    path = run.path / NAME_FILE
    if not name:
        path.unlink(missing_ok=True)
        return None
    atomic_write_bytes(path, (name + "\n").encode("utf-8"))
    return name
