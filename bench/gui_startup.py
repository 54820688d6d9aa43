"""Time to window and time to a ready model for ``penwright gui``, measured from process launch.

Run: ``.venv/bin/python bench/gui_startup.py [--runs N]``; prints one JSON object. The app reports its milestones
with PENWRIGHT_TIMINGS=1 (one JSON line each on stderr); the window is captured and closed once the model is ready.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def one_run(profile: Path) -> dict[str, float]:
    shot = Path(tempfile.mkdtemp()) / "shot.png"
    env = dict(os.environ, PENWRIGHT_TIMINGS="1", QT_QPA_PLATFORM=os.environ.get("QT_QPA_PLATFORM", "offscreen"))
    launched = time.time()
    result = subprocess.run(
        [sys.executable, "-m", "assistant", "gui", "--screenshot", str(shot), "--profile", str(profile)],
        capture_output=True, text=True, env=env, check=True,
    )  # fmt: skip
    events = {}
    for line in result.stderr.splitlines():
        if line.startswith("{"):
            data = json.loads(line)
            events[data["event"]] = data["time"] - launched
    return {"window_s": events["window_shown"], "model_ready_s": events["model_ready"]}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--profile", type=Path, default=None, help="a profile whose GGUF conversion is cached")
    args = parser.parse_args()
    profile = args.profile or Path(tempfile.mkdtemp())
    one_run(profile)  # the first run converts the GGUF into the profile's cache
    runs = [one_run(profile) for _ in range(args.runs)]
    print(
        json.dumps(
            {
                "time_to_window_s": round(statistics.median(run["window_s"] for run in runs), 3),
                "time_to_model_ready_s": round(statistics.median(run["model_ready_s"] for run in runs), 3),
                "runs": runs,
            }
        )
    )


if __name__ == "__main__":
    main()
