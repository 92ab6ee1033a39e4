"""`ssl-explorer app`: serve the Streamlit dashboard (app/) over the runs folder, answering only to
this machine's names (`ssl-explorer demo`, ssl_core/cli/demo.py, first copies in the bundled runs).
The app folder ships in the wheel (see `shipped`).

The server runs in this process, which imports what the pages need of the library before it
starts, so that no page waits for torch."""

from __future__ import annotations

import argparse
import importlib.util
import os
import socket
from pathlib import Path
from typing import Sequence

from streamlit.web import cli as streamlit_cli

# The server runs in this process, so what its pages need of the library is imported here, before
# it starts, and its first page finds it loaded: each run's role (floor, self-supervised,
# supervised) comes from the methods' registry, whose import brings torch and every method (1.5 s
# on 2 cores; bench/results/demo_start_cpu.md). Imported in a thread beside the server's start
# instead, the Overview was on screen 5% sooner (4.4 s against 4.7 s from the command, 6 rounds on
# a busy 2-core machine): not worth a second thread importing beside the pages.
import ssl_core.analyses.standings  # noqa: F401
import ssl_core.steps.browsing  # noqa: F401
from ssl_core.cli.console import log
from ssl_core.store.run_store import RunStore

REPOSITORY = Path(__file__).resolve().parents[2]


def shipped(folder: str, package: str) -> Path:
    """Where a folder that the wheel ships beside ssl_core lives: `folder` at the top of the
    clone this ssl_core runs from (a clone, or an editable install of it), else the installed
    package the wheel maps it to (pyproject.toml: app/ is `ssl_explorer_app`, pretrained/ is
    `ssl_explorer_demo`)."""
    beside = REPOSITORY / folder
    if beside.is_dir():
        return beside
    spec = importlib.util.find_spec(package)  # finds the folder; runs none of its code
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"the {folder}/ folder is neither beside ssl_core ({beside}) nor "
                                f"installed as {package}: reinstall ssl-explorer (`pip install "
                                "ssl-explorer`, or `pip install -e .` in a clone)")
    return Path(next(iter(spec.submodule_search_locations)))


LOCAL_HOSTS = ("localhost", "127.0.0.1", "::1")
ALL_INTERFACES = ("0.0.0.0", "::", "")


def allowed_hosts(address: str, extra: Sequence[str] = ()) -> list[str]:
    """The names the app answers to, as Streamlit's server.allowedHosts (ports ignored): this
    machine's loopback names, the address it listens on (this machine's name when that is every
    interface) and `extra` ('*': any). A request with another Host header gets no session: a page
    of another site whose name was re-pointed at this machine (DNS rebinding) cannot drive it."""
    hosts = [*LOCAL_HOSTS, socket.gethostname() if address in ALL_INTERFACES else address, *extra]
    return list(dict.fromkeys(host.strip().lower() for host in hosts if host.strip()))


def cmd_app(args: argparse.Namespace, store: RunStore) -> int:
    """Serve the dashboard (streamlit) over the runs folder; blocks until stopped."""
    app_script = shipped("app", "ssl_explorer_app") / "streamlit_app.py"
    if not app_script.exists():
        raise FileNotFoundError(f"the app is not at {app_script}: reinstall ssl-explorer")
    # toolbarMode viewer: no Deploy button nor developer menu on a dashboard people present.
    options = ["--server.address", args.address, "--server.port", str(args.port),
               "--server.headless", "true", "--server.maxUploadSize", "10",
               "--browser.gatherUsageStats", "false", "--client.toolbarMode", "viewer"]
    hosts = allowed_hosts(args.address, args.allowed_host)
    for host in hosts:
        options += ["--server.allowedHosts", host]
    log(f"ssl-explorer app on http://{args.address}:{args.port} (runs: {store.root}; answers to "
        f"{', '.join(hosts)}: add a name with --allowed-host)")
    os.environ["SSL_EXPLORER_RUNS"] = str(store.root.resolve())
    # The server runs in this process (same pid: a signal that stops `ssl-explorer app` stops the
    # app), so that its pages find the library imported: `streamlit run`'s own command line, called
    # in-process, which exits the process when the server stops.
    streamlit_cli.main(["run", str(app_script), *options], prog_name="streamlit")
    return 0
