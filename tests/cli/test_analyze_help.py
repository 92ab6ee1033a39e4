"""`ssl-explorer analyze --help` names every analysis the runner knows (the parser spells them
out, since importing the runner would load torch into `--help`)."""

from __future__ import annotations

import argparse

from ssl_core.analyses.runner import ANALYSES
from ssl_core.cli.parser import build_parser


def test_the_only_option_lists_every_analysis():
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    only = next(a for a in sub.choices["analyze"]._actions if a.dest == "only")
    assert only.help.rsplit(": ", 1)[1].split(",") == list(ANALYSES)
