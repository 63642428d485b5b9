# The README's two commands: `make demo` (set up + the main job) and `make test` (set up + the suite).
# Both create .venv, install torch and the project (its C++ extension built ahead of time), then run.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
TORCH_SPEC ?= torch==2.13.0
EXTRAS ?= dev,train,onnx,triton,plot,hub,openvino
comma := ,
STAMP := $(VENV)/.installed-$(subst $(comma),-,$(EXTRAS))

.PHONY: install serve-env test test-slow test-all demo bench lint clean gpu-check

# The serving environment (pdgan-serve, tests/serve/test_serve.py, benchmarks/bench_serve.py): the nvidia-pytriton wheel
# (NVIDIA's tritonserver with its Python backend) pins numpy<2, so it gets a venv of its own, made from the same
# Python as .venv, which must have a shared libpython (docs/deployment.md says why). The project is installed editable
# without rebuilding the C++ extension: it uses the one `install` built in the source tree (same interpreter).
SERVE_VENV ?= .venv-serve
SERVE_BIN := $(SERVE_VENV)/bin
SERVE_STAMP := $(SERVE_VENV)/.installed-serve

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip "setuptools>=64" wheel

$(STAMP): pyproject.toml setup.py | $(BIN)/python
	$(BIN)/python -m pip install -q "$(TORCH_SPEC)" numpy
	$(BIN)/python -m pip install -q --no-build-isolation -e ".[$(EXTRAS)]"
	@touch $@

install: $(STAMP)

$(SERVE_STAMP): pyproject.toml setup.py $(STAMP)
	$(PY) -m venv $(SERVE_VENV)
	$(SERVE_BIN)/python -m pip install -q --upgrade pip "setuptools>=64" wheel
	$(SERVE_BIN)/python -m pip install -q "$(TORCH_SPEC)" "numpy<2"
	PDGAN_SKIP_EXT=1 $(SERVE_BIN)/python -m pip install -q --no-build-isolation -e ".[serve]"
	@touch $@

serve-env: $(SERVE_STAMP)  ## .venv-serve: pdgan-serve on NVIDIA Triton Inference Server (CPU or GPU)

test: install serve-env  ## the default suite (slow tests excluded, serving tests included), < 10 minutes on 2 cores
	$(BIN)/python -m pytest -q

test-slow: install  ## only the slow tests
	$(BIN)/python -m pytest -q -m slow

test-all: install serve-env
	$(BIN)/python -m pytest -q -m "slow or not slow"

demo: install  ## 100 images from the bundled model with the fastest backend, a PNG grid, a timing table
	$(BIN)/python -m pdgan_train.demo

bench: install  ## pytest-benchmark suites (kernels, end to end)
	$(BIN)/python -m pytest benchmarks -q

# On a GPU machine (no network, no pip install: the Python that has torch + CUDA): build the extension, then the
# GPU checks and timings in a default plan of at most 5 minutes; results in $OUT (when set, else benchmarks/results)
# as gpu-check.json / gpu-check.md, rewritten after every step. Without a GPU it prints the plan and exits 0.
# More: make gpu-check GPU_CHECK_ARGS="--only engine,train" (python benchmarks/gpu_check.py --help).
GPU_PY ?= $(if $(wildcard $(BIN)/python),$(BIN)/python,python3)
GPU_CHECK_ARGS ?=
gpu-check:
	$(GPU_PY) benchmarks/gpu_check.py $(GPU_CHECK_ARGS)

lint: install
	$(BIN)/python -m ruff check .

clean:
	rm -rf $(VENV) $(SERVE_VENV) build *.egg-info pdgan_infer/_C*.so
