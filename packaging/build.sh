#!/usr/bin/env bash
# Builds the one-folder desktop bundle dist/penwright/ with PyInstaller and smoke-tests it with --selftest.
set -euo pipefail
cd "$(dirname "$0")"
PY=../.venv/bin/python
$PY -m pip install --quiet "pyinstaller>=6.10"
started=$(date +%s)
$PY -m PyInstaller --noconfirm --clean --distpath ../dist --workpath ../build/pyinstaller penwright.spec
echo "build took $(( $(date +%s) - started )) s; bundle size: $(du -sh ../dist/penwright | cut -f1)"
profile=$(mktemp -d)
PENWRIGHT_PROFILE="$profile" HF_HUB_OFFLINE=1 ../dist/penwright/penwright --selftest
rm -rf "$profile"
echo "bundle ready: dist/penwright/penwright"
