# The README's commands. A fresh machine needs Python 3.11 and the package registries, nothing else.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
# torch==2.13.0 is pinned here (not in pyproject.toml) so that CPU machines take the local CPU
# build instead of several GB of CUDA wheels; GPU machines bring their own torch and use
# `make install-gpu`. torchvision 0.28.0 is the build that matches torch 2.13.0.
TORCH_CPU := torch==2.13.0 torchvision==0.28.0

.PHONY: install install-dev test demo clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

install: $(PY)
	$(PY) -m pip install --quiet $(TORCH_CPU)
	$(PY) -m pip install --quiet -e .

install-dev: $(PY)
	$(PY) -m pip install --quiet $(TORCH_CPU)
	$(PY) -m pip install --quiet -e ".[dev]"

# Train a small SimCLR run on the bundled shapes data and show its neighbours.
demo: install
	$(VENV)/bin/ssl-explorer train --method simclr --dataset shapes --backbone convnet --epochs 2 --device cpu

test: install-dev
	bash .ci/pytest.sh

clean:
	rm -rf $(VENV) runs .pytest_cache
