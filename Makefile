# drsn_tvl front end. On a fresh clone:  `make run` (main job)  and  `make test` (the test suite).
# Both create .venv and install the pinned stack on first use; later runs reuse it.
SHELL := /bin/bash
VENV  ?= .venv
PY    := $(VENV)/bin/python
OUT   ?= out
PYTHON ?= python3
STAMP := $(VENV)/.installed-stamp
DOCS  ?= _docs
DOCS_PORT ?= 4200
PORT  ?= 8888

.PHONY: setup run test test-nb test-py clean-nbs export check-sync bench help docs serve-docs lab

help:
	@echo "make run    - set up .venv and run the experiment (quick preset) on the embedded synthetic data (report in $(OUT)/)"
	@echo "make test   - set up .venv, run nbdev-test on every notebook, then pytest"
	@echo "make bench  - benchmarks (use ../shared/data when present)"
	@echo "make docs   - build the documentation site into $(DOCS)/ (nbdev-docs with Quarto, else nbdev + smalldocs)"
	@echo "make serve-docs - build it, then serve it at http://127.0.0.1:$(DOCS_PORT)/"
	@echo "make lab    - JupyterLab on nbs/ with the .venv's python3 kernel, at http://127.0.0.1:$(PORT)/lab (PORT=... to change; the URL with its token is printed)"

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -e '.[dev]'
	# torchattacks 3.5.1 pins requests~=2.25.1, which would drag jupyterlab back to 3.5: install it without deps
	$(PY) -m pip install -q --no-deps torchattacks==3.5.1
	$(PY) -m ipykernel install --sys-prefix --name python3 >/dev/null
	touch $(STAMP)

setup: $(STAMP)

run: setup
	$(VENV)/bin/drsn-tvl run --preset quick --out $(OUT)

test: setup
	# two notebooks run in parallel on a 2-core machine: one BLAS/torch thread each avoids thrashing
	OMP_NUM_THREADS=1 $(VENV)/bin/nbdev-test
	$(PY) -m pytest -q

export: setup
	$(VENV)/bin/nbdev-export

# nbdev-export on a clean checkout must change nothing
check-sync: setup
	$(VENV)/bin/nbdev-export && git diff --exit-code -- drsn_tvl

clean-nbs: setup
	$(VENV)/bin/nbdev-clean

bench: setup
	for f in benchmarks/bench_*.py; do echo "== $$f"; $(PY) $$f || exit 1; done

# The documentation site, from the notebooks: `nbdev-docs` where `quarto` is on PATH, else nbdev's notebook
# processing + the pure-Python renderer smalldocs (tools/docs.py). Output: a static folder, $(DOCS)/.
docs: setup
	$(PY) tools/docs.py build --out $(DOCS)

serve-docs: docs
	$(PY) tools/docs.py serve --dir $(DOCS) --port $(DOCS_PORT)

# JupyterLab on the notebooks, with the kernel `setup` installs into .venv (`python3`, the .venv's interpreter).
# Loopback only, no browser; Jupyter prints the URL with its token (JUPYTER_TOKEN=... sets a known one).
# JUPYTER_PREFER_ENV_PATH=1: the .venv's kernelspecs win over a `python3` kernel in the user's own Jupyter folders.
# --allow-root only where make runs as root (containers, CI), which Jupyter otherwise refuses.
# tests/test_lab.py starts the server with this very target (on a free port, in temporary Jupyter folders).
lab: setup
	@echo "JupyterLab on $(CURDIR)/nbs at http://127.0.0.1:$(PORT)/lab (open the URL with ?token=... printed below; Ctrl-C twice stops it)"
	JUPYTER_PREFER_ENV_PATH=1 exec $(VENV)/bin/jupyter-lab --no-browser --ip=127.0.0.1 --port=$(PORT) \
	  --ServerApp.root_dir='$(CURDIR)/nbs' --MappingKernelManager.default_kernel_name=python3 \
	  $(if $(filter 0,$(shell id -u)),--allow-root)
