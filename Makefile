# The two commands of the README:
#   make train   set up .venv if needed, get MNIST, train the NumPy VAE (default settings), write runs/NAME/
#   make test    set up .venv if needed, install chromium and chromedriver if absent (.ci/setup-system.sh,
#                for the browser test), run the whole test suite
# and for the notebooks (notebooks/README.md): make notebooks (JupyterLab on 127.0.0.1), make exercises
# Each does its own set-up; nothing else needs to be installed first but Python >= 3.10.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# A CUDA build of PyTorch: it runs on the CPU where there is no GPU.
TORCH ?= torch==2.14.1 torchvision==0.29.1
PYTEST_ARGS ?=

.PHONY: train test bench exercises notebooks clean-venv system-packages

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet $(TORCH)
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $@

train: $(VENV)/.installed
	$(VENV)/bin/vae train

# apt-get when absent, sudo when not root, one line saying what to do where neither works
system-packages:
	.ci/setup-system.sh

test: $(VENV)/.installed system-packages
	$(PY) -m pytest $(PYTEST_ARGS)

bench: $(VENV)/.installed
	$(VENV)/bin/vae bench --quick

# notebooks/exercises/NN_*.py from the worked notebooks/NN_*.py (solution cells become stubs)
exercises: $(VENV)/.installed
	$(PY) notebooks/make_exercises.py

# JupyterLab on loopback over notebooks/: each .py is turned into an .ipynb once (never overwriting one you
# have worked in; delete it to start again), the worked ones executed so that their figures show on opening.
notebooks: $(VENV)/.notebooks
	$(PY) notebooks/make_exercises.py --ipynb
	$(VENV)/bin/jupyter lab --ip=127.0.0.1 --notebook-dir=notebooks $(if $(filter 0,$(shell id -u)),--allow-root)

$(VENV)/.notebooks: $(VENV)/.installed
	$(PY) -m pip install --quiet -e '.[dev,notebooks]'
	touch $@

clean-venv:
	rm -rf $(VENV)
