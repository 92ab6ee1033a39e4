# The README's commands. A fresh machine needs Python 3.11 and the package registries, nothing else.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
# torch==2.13.0 is pinned here (not in pyproject.toml) so that CPU machines take the local CPU
# build instead of several GB of CUDA wheels; GPU machines bring their own torch and use
# `make install-gpu`. torchvision 0.28.0 is the build that matches torch 2.13.0.
TORCH_CPU := torch==2.13.0 torchvision==0.28.0

.PHONY: install install-dev install-gpu test demo clean

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

# Train a small SimCLR run on the bundled shapes data, then list, score and search it.
demo: install
	@id=$$($(VENV)/bin/ssl-explorer train --method simclr --dataset shapes --backbone convnet \
	        --epochs 2 --device cpu | tail -n 1) && \
	$(VENV)/bin/ssl-explorer runs && \
	$(VENV)/bin/ssl-explorer eval $$id && \
	$(VENV)/bin/ssl-explorer neighbors $$id --index 17 -k 8

test: install-dev
	bash .ci/pytest.sh

clean:
	rm -rf $(VENV) runs .pytest_cache
