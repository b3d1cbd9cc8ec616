# econas-hpc developer targets. Every target installs what it needs first (see `install`).
#   make install   venv + torch from the local wheels + `pip install -e .[dev]` (quick when done)
#   make test      the whole pytest suite (gpu/slurm tests skip themselves without a GPU/cluster)
#                  TESTS=expr runs only `-x -k expr`
#   make lint      ruff check, ruff format --check, mypy
#   make format    ruff format + ruff check --fix
#   make run       the demo: a small real search on real digits (bundled), then its status table
#   make bench     benchmarks: proxy training vs. the official pipeline, driver work per cycle
#   make check     lint + test (what CI should run)
#   make clean     caches and build output (keeps the venv; `rm -rf .venv` for a full reset)

VENV ?= .venv
PYTHON ?= python3
PY := $(VENV)/bin/python
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# torch/torchvision first, pinned to the releases that lie on this machine's disk: an unpinned
# `torch` would pull a multi-GB wheel from the registry.
TORCH_PINS ?= torch==2.14.1 torchvision==0.29.1
TESTS ?=
PYTEST_ARGS := -q $(if $(TESTS),-x -k "$(TESTS)")

.PHONY: install test lint format run bench gpu-check check clean

install: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet $(TORCH_PINS)
	$(PY) -m pip install --quiet -e '.[dev]'
	@touch $@

# Exit code 5 means pytest collected no tests; say so in a fixed line that .ci/run looks for.
test: install
	@rc=0; $(PY) -m pytest $(PYTEST_ARGS) || rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "make test: pytest collected no tests (exit 5)" >&2; fi; \
	exit $$rc

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy econas_hpc

format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

# The demo: a small real search on scikit-learn's bundled digits with the local executor (a few
# minutes on a 2-core CPU), ending with its status table. Rerunning resumes it (and finishes at once when done);
# delete state/demo.h5* and state/demo.d for a fresh demo.
run: install
	@if [ -e state/demo.h5 ]; then $(BIN)/econas-hpc resume state/demo.h5; \
	else $(BIN)/econas-hpc launch --demo; fi
	$(BIN)/econas-hpc report state/demo.h5 --out state/demo-report

# Benchmarks (never timed tests): proxy training, ours vs. the official-code pipeline on the same
# device in the same run, and the driver's own work per cycle. JSON lands in .bench/.
bench: install
	$(BIN)/econas-hpc bench --out .bench/bench-proxy.json
	$(BIN)/econas-hpc bench --mode driver --out .bench/bench-driver.json

# On a GPU machine: graph-vs-eager equivalence, zero host syncs per step, the bench on CUDA.
gpu-check: install
	bench/gpu_check.sh

check: lint test

clean:
	rm -rf build dist *.egg-info .pytest_cache .mypy_cache .ruff_cache
	find . -path ./$(VENV) -prune -o -name __pycache__ -type d -prune -exec rm -rf {} +

# The local single-node SLURM cluster for the tests marked `slurm` (needs root; see slurm/README.md).
.PHONY: slurm-up slurm-down test-slurm
slurm-up:
	slurm/local-cluster.sh up
slurm-down:
	slurm/local-cluster.sh down
test-slurm: install
	eval "$$(slurm/local-cluster.sh env)"; ECONAS_REQUIRE_SLURM=1 $(PY) -m pytest -q -m slurm
