# Two entry points: `make demo` and `make test`. Both create .venv with Python 3.10
# when it is missing and (re)install only when pyproject.toml changed.
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# Python 3.10: from PATH, else from pyenv's versions folder.
PYTHON310 ?= $(shell (python3.10 -c 'import sys' >/dev/null 2>&1 && command -v python3.10) || ls -d $${PYENV_ROOT:-$$HOME/.pyenv}/versions/3.10*/bin/python3.10 2>/dev/null | tail -n 1)
PYTEST_ARGS ?=

.PHONY: install system-deps data demo test test-fast bench clean

$(STAMP): pyproject.toml
	@if [ ! -x $(PY) ]; then \
	  if [ -z "$(PYTHON310)" ]; then echo "error: Python 3.10 not found (install it, e.g. 'pyenv install 3.10', or set PYTHON310=/path/to/python3.10)"; exit 1; fi; \
	  echo "creating $(VENV) with $(PYTHON310)"; $(PYTHON310) -m venv $(VENV); fi
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[dev]"
	@touch $(STAMP)

install: $(STAMP)

demo: install
	$(VENV)/bin/neuroprune demo

# Headless Chromium renders the HTML report in a test; install Debian's package when missing.
system-deps:
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing chromium (apt-get)"; \
	    apt-get install -y -q chromium >/dev/null 2>&1 || { apt-get update -q >/dev/null && apt-get install -y -q chromium >/dev/null; }; \
	  else echo "warning: chromium not found and cannot be installed here; the report-rendering test will fail"; fi; }

# Fashion-MNIST for the SPEAR benchmark: Debian's package puts the four IDX files under
# /usr/share/datasets/fashion-mnist; install it when missing and we are root.
FMNIST := /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz
data:
	@test -f $(FMNIST) || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing dataset-fashion-mnist (apt-get)"; \
	    apt-get install -y -q dataset-fashion-mnist >/dev/null 2>&1 || { apt-get update -q >/dev/null && apt-get install -y -q dataset-fashion-mnist >/dev/null; }; \
	  else echo "warning: Fashion-MNIST not found and cannot be installed here (run: apt-get install dataset-fashion-mnist as root); the SPEAR benchmark will stop"; fi; }

test: install system-deps
	$(PY) -m pytest -q $(PYTEST_ARGS)

test-fast: install
	$(PY) -m pytest -q -m "not slow" $(PYTEST_ARGS)

bench: install data
	@for b in benchmarks/bench_*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

clean:
	rm -rf $(VENV) build *.egg-info
