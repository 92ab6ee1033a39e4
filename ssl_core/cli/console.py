"""What the commands say while they work: progress and logs go to stderr, so that stdout holds
only the result (`train` prints the new run's id last, `eval` its scores)."""

from __future__ import annotations

import sys


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)
