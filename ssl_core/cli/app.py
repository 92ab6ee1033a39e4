"""`ssl-explorer app` and `ssl-explorer demo`: serve the Streamlit dashboard (app/) over the runs
folder, answering only to this machine's names; `demo` first copies in the bundled, already
trained runs of pretrained/. Both folders ship in the wheel (see `shipped`)."""

from __future__ import annotations

import argparse
import importlib.util
import os
import shutil
import socket
import sys
from pathlib import Path
from typing import Sequence

from ssl_core.cli.console import log
from ssl_core.steps.index import index_run
from ssl_core.store import files
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
    if args.command == "demo":
        added = install_demo_runs(store, shipped("pretrained", "ssl_explorer_demo"))
        log(f"demo runs in {store.root}: {', '.join(added) if added else 'already there'}")
    # toolbarMode viewer: no Deploy button nor developer menu on a dashboard people present.
    command = [sys.executable, "-m", "streamlit", "run", str(app_script),
               "--server.address", args.address, "--server.port", str(args.port),
               "--server.headless", "true", "--server.maxUploadSize", "10",
               "--browser.gatherUsageStats", "false", "--client.toolbarMode", "viewer"]
    hosts = allowed_hosts(args.address, args.allowed_host)
    for host in hosts:
        command += ["--server.allowedHosts", host]
    log(f"ssl-explorer app on http://{args.address}:{args.port} (runs: {store.root}; answers to "
        f"{', '.join(hosts)}: add a name with --allowed-host)")
    env = {**os.environ, "SSL_EXPLORER_RUNS": str(store.root.resolve())}
    sys.stdout.flush()
    sys.stderr.flush()
    # Become the server (same pid), so a signal that stops `ssl-explorer app` stops the app.
    os.execve(sys.executable, command, env)


def install_demo_runs(store: RunStore, bundled: Path) -> list[str]:
    """Copy the bundled, already-trained runs (pretrained/) into the runs folder (once), and build
    the search index of each that lacks one: the bundle leaves out what takes a second to
    recompute (a flat FAISS index is a copy of the embeddings)."""
    added = []
    for source in sorted(p for p in bundled.iterdir() if (p / files.CONFIG).exists()):
        target = store.root / source.name
        if not target.exists():
            shutil.copytree(source, target)
            added.append(source.name)
        run = store.get(source.name)
        if not run.index_path.exists():
            log(f"{source.name}: building its search index")
            index_run(run)
    return added
