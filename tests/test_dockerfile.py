"""The Dockerfile's steps, checked where no Docker engine runs: what it copies exists, what it
installs is declared in pyproject.toml, and the command it starts is one the CLI accepts."""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path

from ssl_core.cli.parser import build_parser

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = (ROOT / "Dockerfile").read_text()


def instructions(name: str) -> list[str]:
    joined = re.sub(r"\\\n\s*", " ", DOCKERFILE)  # continuation lines
    return [line.split(None, 1)[1] for line in joined.splitlines() if line.startswith(name + " ")]


def test_everything_it_copies_is_in_the_repository():
    for args in instructions("COPY"):
        if args.startswith("--from="):  # from the build stage, not from the repository
            continue
        *sources, _ = args.split()
        for source in sources:
            assert (ROOT / source).exists(), f"Dockerfile copies {source}, which does not exist"


def test_the_base_images_torch_satisfies_the_projects_range():
    base = instructions("FROM")[0]
    torch_version = re.search(r"pytorch:(\d+)\.(\d+)", base)
    assert torch_version, base
    major, minor = map(int, torch_version.groups())
    dependencies = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    torch_range = next(d for d in dependencies if d.startswith("torch"))
    assert torch_range == "torch>=2.4,<3" and major == 2 and minor >= 4, (base, torch_range)


def test_it_installs_the_built_wheel_not_the_source_tree():
    installs = instructions("RUN")
    assert any("pip wheel" in line for line in installs), "the first stage builds the wheel"
    assert any(re.search(r"pip install .*/dist/ssl_explorer-\*\.whl", line) for line in installs), installs
    assert not any(re.search(r"pip install .*(-e|--editable)\b", line) for line in installs), "no editable install"


def test_it_installs_declared_extras_and_serves_on_all_interfaces():
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    installs = " ".join(instructions("RUN"))
    for extra in re.findall(r'\[(\w+)\]', installs):
        assert extra in extras, f"Dockerfile installs the extra '{extra}', which pyproject.toml lacks"
    assert "faiss-gpu-cu12" in " ".join(extras["gpu"])
    command = json.loads(instructions("CMD")[0])
    assert command[0] == "ssl-explorer"
    args = build_parser().parse_args(command[1:])
    assert args.address == "0.0.0.0", "inside a container the app must listen beyond localhost"
