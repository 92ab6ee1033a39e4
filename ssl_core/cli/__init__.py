"""`ssl-explorer`: everything the app does, from the command line.

`main` parses the command line (`parser.py`), runs the one command it names and turns the
library's errors into a message and an exit status. Each group of commands is a module that
turns its arguments into one library call: `training` (train, also under torchrun), `runs`,
`steps` (eval, embed, project, index, neighbors), `analyses` (analyze, compare, attention,
export), `external` (import, encode), `app` (app), `demo` (demo: the bundled runs, then the app)
and `catalog` (methods, datasets).
"""

from __future__ import annotations

import importlib
import os
import sys
from typing import Callable, Sequence

from ssl_core.cli.parser import build_parser
from ssl_core.store.reading import os_error_message
from ssl_core.store.run_store import RunStore
from ssl_core.store.runs import default_runs_dir

__all__ = ["build_parser", "main"]


def _command(handler: str) -> Callable[..., int]:
    """The function a parser's `handler` names ("ssl_core.cli.training:cmd_train")."""
    module, _, function = handler.partition(":")
    # Imported here, and only this one module, for startup time: the command modules import the
    # library at their top (torch, UMAP, FAISS: a second or more), and `ssl-explorer runs` or
    # `--help` must not pay for commands it does not run.
    return getattr(importlib.import_module(module), function)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    store = RunStore(getattr(args, "runs_dir", None) or default_runs_dir())
    try:
        return _command(args.handler)(args, store)
    except BrokenPipeError:  # `ssl-explorer runs | head`: the reader has all it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit
        return 0
    except KeyError as e:  # unknown names: the message lists the valid ones
        print(f"error: {e.args[0]}", file=sys.stderr)
        return 2
    except OSError as e:
        # The library's own FileNotFoundErrors carry a sentence and no path; the OS's carry a path.
        message = os_error_message(e) if e.filename is not None else str(e)
        print(f"error: {message}", file=sys.stderr)
        return 2 if isinstance(e, FileNotFoundError) else 1
    except (ValueError, IndexError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # Ctrl-C outside training (embed, map, analyses): what was stored stays
        print("interrupted: stopped by Ctrl-C; files written before it are kept", file=sys.stderr)
        return 130
