# The README's two commands: `make demo` (set up + the main job) and `make test` (set up + the suite).
# Both create .venv, install torch and the project (its C++ extension built ahead of time), then run.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
TORCH_SPEC ?= torch==2.13.0
EXTRAS ?= dev,train,onnx,triton,plot,hub
comma := ,
STAMP := $(VENV)/.installed-$(subst $(comma),-,$(EXTRAS))

.PHONY: install test test-slow test-all demo bench lint clean gpu-check

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip "setuptools>=64" wheel

$(STAMP): pyproject.toml setup.py | $(BIN)/python
	$(BIN)/python -m pip install -q "$(TORCH_SPEC)" numpy
	$(BIN)/python -m pip install -q --no-build-isolation -e ".[$(EXTRAS)]"
	@touch $@

install: $(STAMP)

test: install  ## the default suite (slow tests excluded), < 10 minutes on 2 cores
	$(BIN)/python -m pytest -q

test-slow: install  ## only the slow tests
	$(BIN)/python -m pytest -q -m slow

test-all: install
	$(BIN)/python -m pytest -q -m "slow or not slow"

demo: install  ## 100 images from the bundled model with the fastest backend, a PNG grid, a timing table
	$(BIN)/python -m pdgan_train.demo

bench: install  ## pytest-benchmark suites (kernels, end to end)
	$(BIN)/python -m pytest benchmarks -q

# On a GPU machine (no network, no pip install: the Python that has torch + CUDA): build the extension, the GPU
# checks and timings in under 8 minutes, results in benchmarks/results/gpu-<date>.{json,md}. Without a GPU it
# prints what it would run and exits 0.
GPU_PY ?= $(if $(wildcard $(BIN)/python),$(BIN)/python,python3)
gpu-check:
	$(GPU_PY) benchmarks/gpu_check.py

lint: install
	$(BIN)/python -m ruff check .

clean:
	rm -rf $(VENV) build *.egg-info pdgan_infer/_C*.so
