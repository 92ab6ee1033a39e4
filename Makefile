# The README's commands. A fresh machine needs Python 3.11 and the package registries, nothing else.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
# torch==2.13.0 is pinned here (not in pyproject.toml) so that CPU machines take the local CPU
# build instead of several GB of CUDA wheels; GPU machines bring their own torch and use
# `make install-gpu`. torchvision 0.28.0 is the build that matches torch 2.13.0.
TORCH_CPU := torch==2.13.0 torchvision==0.28.0

.PHONY: install install-dev install-gpu chromium test demo app clean

$(PY):
	$(PYTHON) -m venv $(VENV)

install: $(PY)
	$(PY) -m pip install --quiet $(TORCH_CPU)
	$(PY) -m pip install --quiet -e .

install-dev: $(PY)
	$(PY) -m pip install --quiet $(TORCH_CPU)
	$(PY) -m pip install --quiet -e ".[dev]"

# With a CUDA torch already in the environment: everything else, torch left as it is.
install-gpu: $(PY)
	$(PY) -m pip install --quiet -e ".[gpu]"
	# faiss-cpu (a core dependency) and faiss-gpu-cu12 write the same files: keep the GPU build's.
	$(PY) -m pip uninstall --quiet -y faiss-cpu
	$(PY) -m pip install --quiet --force-reinstall --no-deps faiss-gpu-cu12

# Open the dashboard on the bundled, already-trained runs (http://127.0.0.1:8501).
demo: install
	$(VENV)/bin/ssl-explorer demo

# Open the dashboard on your runs only.
app: install
	$(VENV)/bin/ssl-explorer app

# The browser test drives Debian's Chromium through Playwright (Playwright's own browser
# download is not used). Installed with apt-get when missing and we are root.
chromium:
	@command -v chromium >/dev/null 2>&1 || { \
	    if [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq chromium >/dev/null; \
	    else echo "install Debian's chromium (sudo apt-get install chromium) for the browser test" >&2; fi; }

test: install-dev chromium
	bash .ci/pytest.sh

clean:
	rm -rf $(VENV) runs .pytest_cache
