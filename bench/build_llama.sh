#!/usr/bin/env bash
# Builds llama.cpp (llama-cpp-python, compiled from its sdist) for one CPU class and installs it into a folder of its
# own, so bench/peers.py can run each class's build in the same benchmark run (PYTHONPATH=<folder>, or
# `bench/peers.py --cpu-class <class>`, which finds the folder itself).
#
#   bash bench/build_llama.sh native   # -> .venv/llama-native: -march=native, for the machine it runs on
#   bash bench/build_llama.sh avx2     # -> .venv/llama-avx2: AVX2/FMA/F16C/BMI2 only, no AVX-512: any AVX2 CPU
#
# The wheel is cached under .venv/llama-wheels/<class>-<key>/ (the key covers the version, the build flags, the
# compiler and, for native, this CPU's feature flags), so a second run installs it without compiling, offline.
# Variables: VENV (default .venv), LLAMA_CPP_SPEC (default llama-cpp-python==0.3.36).
set -euo pipefail

class=${1:-}
VENV=${VENV:-.venv}
PY=$VENV/bin/python
SPEC=${LLAMA_CPP_SPEC:-llama-cpp-python==0.3.36}

flags=" $(grep -m1 -E '^(flags|Features)' /proc/cpuinfo 2>/dev/null | cut -d: -f2 || true) "
has() { [[ $flags == *" $1 "* ]]; }

# Only the library: no llava/mtmd (bench/peers.py does not use it), tests, examples or tools.
common="-DLLAVA_BUILD=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_TOOLS=OFF"
common+=" -DLLAMA_BUILD_SERVER=OFF"
cflags=""
case $class in
    native)
        cmake="-DGGML_NATIVE=ON"
        if [[ $flags == *amx* ]]; then
            # llama.cpp's native build crashes on CPUs with AMX unless AMX is off. -march=native turns the AMX
            # instructions on whatever GGML_AMX_* say, so the compiler is told too (-mno-amx-* wins over -march).
            cmake+=" -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF"
            cflags="-mno-amx-tile -mno-amx-int8 -mno-amx-bf16"
        fi
        ;;
    avx2)
        if ! has avx2; then
            echo "build_llama.sh: this CPU has no AVX2, so an AVX2 build of llama.cpp would not run here" >&2
            exit 1
        fi
        # ggml's own "haswell" variant: the AVX2 class, with nothing from AVX-512, AVX-VNNI or AMX.
        cmake="-DGGML_NATIVE=OFF -DGGML_SSE42=ON -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON"
        cmake+=" -DGGML_BMI2=ON -DGGML_AVX_VNNI=OFF -DGGML_AVX512=OFF -DGGML_AVX512_VBMI=OFF"
        cmake+=" -DGGML_AVX512_VNNI=OFF -DGGML_AVX512_BF16=OFF -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF"
        cmake+=" -DGGML_AMX_BF16=OFF"
        ;;
    *)
        echo "usage: bash bench/build_llama.sh native|avx2" >&2
        exit 2
        ;;
esac

cpu_key=""
[[ $class == native ]] && cpu_key=$flags
compiler=$(${CC:-cc} --version 2>/dev/null | head -1 || true)
key=$(printf '%s\n' "$SPEC" "$cmake $common" "$cflags" "$cpu_key" "$compiler" "$(uname -m)" | sha256sum | cut -c1-12)
wheels=$VENV/llama-wheels/$class-$key
target=$VENV/llama-$class

if ! compgen -G "$wheels/llama_cpp_python-*.whl" >/dev/null; then
    echo "build_llama.sh: compiling $SPEC for the $class class (minutes; cached in $wheels)" >&2
    echo "  CMAKE_ARGS=$cmake $common${cflags:+  CFLAGS/CXXFLAGS=$cflags}" >&2
    rm -rf "$wheels.tmp"
    mkdir -p "$wheels.tmp"
    # The sdist is downloaded once for every class.
    sdists=$VENV/llama-wheels/sdist
    "$PY" -m pip download --quiet --no-deps --no-binary :all: -d "$sdists" "$SPEC"
    sdist=$(ls -t "$sdists"/llama_cpp_python-*.tar.gz | head -1)
    started=$SECONDS
    # --no-cache-dir: pip's wheel cache ignores CMAKE_ARGS, so it would hand one class's build to the other.
    CMAKE_ARGS="$cmake $common" CFLAGS="${CFLAGS:-} $cflags" CXXFLAGS="${CXXFLAGS:-} $cflags" \
        CMAKE_BUILD_PARALLEL_LEVEL=${CMAKE_BUILD_PARALLEL_LEVEL:-$(nproc)} \
        "$PY" -m pip wheel --quiet --no-cache-dir --no-deps -w "$wheels.tmp" "$sdist"
    build_seconds=$((SECONDS - started))
    # Its one dependency that the venv lacks; numpy, jinja2 and typing-extensions come from the venv.
    "$PY" -m pip download --quiet --no-deps "diskcache>=5.6.1" -d "$wheels.tmp"
    "$PY" - "$wheels.tmp/build.json" "$class" "$SPEC" "$cmake $common" "$cflags" "$build_seconds" <<'EOF'
import json, platform, sys, time
path, cls, spec, cmake, cflags, seconds = sys.argv[1:]
cpu = platform.processor() or platform.machine()
try:
    cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
except (OSError, StopIteration):
    pass
info = {"class": cls, "spec": spec, "cmake_args": cmake, "cflags": cflags, "build_seconds": int(seconds),
        "cpu": cpu, "date": time.strftime("%Y-%m-%d %H:%M")}
open(path, "w").write(json.dumps(info, indent=2) + "\n")
EOF
    rm -rf "$wheels"
    mv "$wheels.tmp" "$wheels"
    echo "build_llama.sh: $class build took ${build_seconds} s" >&2
fi

if [[ "$(cat "$target/.penwright-build" 2>/dev/null || true)" != "$key" ]]; then
    rm -rf "$target" "$target.tmp"
    "$PY" -m pip install --quiet --no-index --no-deps --target "$target.tmp" "$wheels"/*.whl
    cp "$wheels/build.json" "$target.tmp/penwright-build.json"
    echo "$key" >"$target.tmp/.penwright-build"
    mv "$target.tmp" "$target"
fi

# Proves the build loads on this CPU and was compiled for its class (bench/peers.py checks the same each run).
PYTHONPATH="$target${PYTHONPATH:+:$PYTHONPATH}" "$PY" - "$class" <<'EOF'
import sys

import llama_cpp

sys.path.insert(0, "bench")
import cpu_class

info = llama_cpp.llama_print_system_info().decode()
print(f"llama.cpp {llama_cpp.__version__} ({sys.argv[1]} build): {info}")
level, expected = cpu_class.llama_level(cpu_class.llama_features(info)), cpu_class.expected_llama_level(sys.argv[1])
if expected and level != expected:
    sys.exit(f"build_llama.sh: the {sys.argv[1]} build reports {level}, not {expected}: remove .venv/llama-wheels")
EOF
