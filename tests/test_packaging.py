"""ssl-explorer as a Python user installs it: the wheel, outside a clone.

Builds the wheel from the repository's sources, installs it into a fresh virtual environment in
a temporary folder (its dependencies come from this environment, so nothing is downloaded), and
there, away from the clone: `ssl-explorer --version`, a one-epoch `train` on `shapes`, and
`ssl-explorer demo` until the app answers its health check and Explore draws a bundled run's map
in Chromium.
"""

from __future__ import annotations

import os
import shutil
import site
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

from app_server import CHROMIUM, CHROMIUM_ARGS, drawn_map, served_app
from ssl_core.cli import app as app_command

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
# What the build reads: the rest of a clone (tests, bench, docs) stays out of the wheel.
SOURCES = ("pyproject.toml", "README.md", "ssl_core", "app", "pretrained")
SCRATCH = shutil.ignore_patterns("__pycache__", "*.egg-info", ".build", ".refresh", "node_modules")


def test_every_package_of_ssl_core_and_the_app_is_listed_for_the_wheel():
    listed = set(PYPROJECT["tool"]["setuptools"]["packages"])
    mapped = {folder: name for name, folder in PYPROJECT["tool"]["setuptools"]["package-dir"].items()}
    on_disk = {".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "ssl_core").rglob("__init__.py")}
    # app/ is a folder of scripts: every folder of it that holds one; pretrained/ is data.
    on_disk |= {".".join((mapped["app"], *p.parent.relative_to(ROOT / "app").parts))
                for p in (ROOT / "app").rglob("*.py")}
    on_disk.add(mapped["pretrained"])
    assert on_disk <= listed, f"add to [tool.setuptools] packages in pyproject.toml: {sorted(on_disk - listed)}"


def test_without_a_clone_the_cli_serves_the_installed_folders_or_names_what_is_missing(monkeypatch, tmp_path):
    monkeypatch.setattr(app_command, "REPOSITORY", tmp_path)  # nothing beside ssl_core
    # This environment's editable install maps the package to the clone's folder, as a wheel maps
    # it to site-packages.
    assert app_command.shipped("app", "ssl_explorer_app") == ROOT / "app"
    with pytest.raises(FileNotFoundError, match="neither beside ssl_core .* nor installed as ssl_explorer_nowhere"):
        app_command.shipped("nowhere", "ssl_explorer_nowhere")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    source = tmp_path_factory.mktemp("source")
    for name in SOURCES:
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, source / name, ignore=SCRATCH)
        else:
            shutil.copy2(ROOT / name, source / name)
    out = tmp_path_factory.mktemp("dist")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-index",
                    "--no-build-isolation", "--wheel-dir", str(out), str(source)], check=True)
    (built,) = out.glob("ssl_explorer-*.whl")
    return built


def test_the_wheel_carries_the_library_the_app_and_the_bundled_runs(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    assert "ssl_core/cli/app.py" in names
    assert "ssl_explorer_app/streamlit_app.py" in names
    built = {f"ssl_explorer_app/widgets/scatter_map/frontend/build/{f.name}"
             for f in (ROOT / "app" / "widgets" / "scatter_map" / "frontend" / "build").iterdir()}
    assert built and built <= set(names), "the map component's built frontend ships with the app"
    assert not [n for n in names if "node_modules" in n or "/frontend/src/" in n]
    pages = {p.name for p in (ROOT / "app" / "app_pages").glob("*.py")}
    assert pages <= {Path(n).name for n in names if n.startswith("ssl_explorer_app/app_pages/")}
    for run in (p for p in (ROOT / "pretrained").iterdir() if (p / "config.json").exists()):
        # Lock files (.job.lock) are a run's scratch, not its results.
        expected = {str(f.relative_to(ROOT / "pretrained")) for f in run.rglob("*") if f.is_file() and f.name[0] != "."}
        shipped = {n.removeprefix("ssl_explorer_demo/") for n in names if n.startswith(f"ssl_explorer_demo/{run.name}/")}
        assert expected == shipped, f"{run.name}: missing {sorted(expected - shipped)}, extra {sorted(shipped - expected)}"
    assert not [n for n in names if n.startswith(("app/", "pretrained/", "tests/", "bench/"))]


@pytest.fixture(scope="module")
def installed(wheel, tmp_path_factory) -> tuple[Path, dict[str, str]]:
    """A fresh virtual environment holding the wheel; the dependencies are this environment's,
    seen through a .pth file after the venv's own site-packages (so ssl_core comes from the wheel,
    never from the clone's editable install). Returns its bin folder and the environment to run in."""
    venv = tmp_path_factory.mktemp("venv")
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    purelib = Path(subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                                  check=True, capture_output=True, text=True).stdout.strip())
    (purelib / "zz_dependencies.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "--quiet", "--no-deps",
                    "--no-index", str(wheel)], check=True)
    env = {key: value for key, value in os.environ.items() if key not in ("PYTHONPATH", "SSL_EXPLORER_RUNS")}
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    return venv / "bin", env


def run_installed(installed, *args: str, cwd: Path) -> str:
    _, env = installed
    done = subprocess.run([*args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"{' '.join(args)} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}"
    return done.stdout


def test_outside_a_clone_it_imports_from_the_wheel_and_prints_its_version(installed, tmp_path):
    bin_dir, _ = installed
    where = run_installed(installed, str(bin_dir / "python"), "-c", "import ssl_core; print(ssl_core.__file__)",
                          cwd=tmp_path)
    assert Path(where.strip()).is_relative_to(bin_dir.parent), f"ssl_core came from {where.strip()}, not the wheel"
    version = run_installed(installed, str(bin_dir / "ssl-explorer"), "--version", cwd=tmp_path)
    assert version.strip() == f"ssl-explorer {PYPROJECT['project']['version']}"


@pytest.mark.slow
def test_outside_a_clone_it_trains_one_epoch_on_shapes(installed, tmp_path):
    bin_dir, _ = installed
    run_installed(installed, str(bin_dir / "ssl-explorer"), "train", "--dataset", "shapes", "--epochs", "1",
                  "--train-size", "256", "--test-size", "128", "--batch-size", "64", "--device", "cpu",
                  "--skip", "project", "--no-progress", "--runs-dir", str(tmp_path / "runs"), cwd=tmp_path)
    (run,) = (tmp_path / "runs").iterdir()
    assert (run / "checkpoint.pt").exists() and (run / "eval.json").exists(), sorted(p.name for p in run.iterdir())


@pytest.mark.slow
def test_outside_a_clone_the_demo_serves_the_bundled_runs(installed, tmp_path, demo_runs):
    if not Path(CHROMIUM).exists() and not os.environ.get("CI"):
        pytest.skip(f"{CHROMIUM} is not installed (apt-get install chromium)")
    playwright = pytest.importorskip("playwright.sync_api")
    bin_dir, env = installed
    bundled = sorted(p.name for p in (ROOT / "pretrained").iterdir() if (p / "config.json").exists())
    # The runs that ship without embeddings are already installed (embedded as this session's
    # `demo_runs` fixture embedded them: tests/test_bundled_runs.py checks their scores); the
    # wheel's demo copies every other bundled run and builds its index.
    for name in bundled:
        if not (ROOT / "pretrained" / name / "embeddings").exists():
            shutil.copytree(demo_runs / name, tmp_path / "runs" / name)
    assert len(list((tmp_path / "runs").iterdir())) < len(bundled)
    with served_app(tmp_path / "runs", "demo", cli=[str(bin_dir / "ssl-explorer")], cwd=tmp_path, env=env) as port:
        assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == bundled
        with playwright.sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
            page = browser.new_page()
            page.goto(f"http://127.0.0.1:{port}/explore?run={bundled[0]}")
            drawn_map(page)  # the map component's bundle came with the wheel
            browser.close()
