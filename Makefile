# One-command entry points. `make figures` and `make test` create .venv and install the project on first use.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install figures smoke paper test lab bench calibrate gpu-check clean

install: $(STAMP)

# torch and torchvision first, pinned: these builds install from the local wheel store, no download.
$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet torch==2.14.1 torchvision==0.29.1
	$(PY) -m pip install --quiet -e ".[all]"
	touch $(STAMP)

figures: $(STAMP)  ## regenerate every figure at the default profile (minutes on a laptop CPU)
	$(PY) -m madlib.figures build --profile default

smoke: $(STAMP)  ## every figure at the smoke profile, into build/smoke
	$(PY) -m madlib.figures build --profile smoke --out build/smoke

paper: $(STAMP)  ## paper-scale profile (meant for a GPU machine)
	$(PY) -m madlib.figures build --profile paper --out figures/paper

test: $(STAMP)  ## the test suite, as CI runs it
	$(PY) -m pytest -q

lab: $(STAMP)
	$(VENV)/bin/jupyter lab notebooks/

bench: $(STAMP)
	$(PY) benchmarks/bench_gaussian_loop.py

calibrate: $(STAMP)  ## generation-1 quality vs CPU time, DDPM vs EDM (docs/calibration.json; ~25 min on 2 cores)
	$(PY) benchmarks/calibrate_image_models.py --out docs/calibration.json

gpu-check: $(STAMP)  ## on a GPU machine: throughput + MAD-9 paper generation 1 -> figures/paper/gpu_check.json (~5 min)
	$(PY) benchmarks/gpu_check.py --out figures/paper/gpu_check.json

clean:
	rm -rf build .pytest_cache
