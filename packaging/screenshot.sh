#!/usr/bin/env bash
# Takes docs/screenshot.png of the real window on a virtual X screen (Xvfb, Qt's xcb platform), with a sample
# story open, once the bundled model is loaded. Needs Debian's xvfb and Qt's xcb libraries:
#   apt-get install xvfb libxcb-cursor0 libxcb-icccm4 libxcb-keysyms1 libxcb-image0 libxcb-render-util0 \
#                   libxcb-xkb1 libxkbcommon-x11-0 libxcb-shape0 libxcb-randr0
set -euo pipefail
cd "$(dirname "$0")/.."
make setup >/dev/null
profile="${PENWRIGHT_SCREENSHOT_PROFILE:-$(mktemp -d)}"
output="${1:-docs/screenshot.png}"
QT_QPA_PLATFORM=xcb xvfb-run -a -s "-screen 0 1280x860x24" \
    .venv/bin/penwright gui packaging/screenshot-story.md --screenshot "$output" --profile "$profile"
echo "saved $output"
