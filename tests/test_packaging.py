"""The wheel carries resources/ and the installed (non-editable) package finds them at run time."""

from __future__ import annotations

import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

from tests.conftest import REPO_ROOT


def test_installed_wheel_finds_its_prompt_templates(tmp_path: Path) -> None:
    wheels = tmp_path / "wheels"
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(wheels), "."],
        cwd=REPO_ROOT, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert build.returncode == 0, build.stderr
    (wheel,) = wheels.glob("penwright-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "assistant/resources/prompts/story.txt" in names
    assert "assistant/cli.py" in names
    for module in ("assistant/gui/panes/editor.py", "assistant/gui/dialogs/settings.py", "assistant/engine/models.py"):
        assert module in names, f"{module} is missing from the wheel"

    target = tmp_path / "installed"
    install = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target), str(wheel)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert install.returncode == 0, install.stderr
    # -S skips site-packages' .pth files, so the editable install of this checkout cannot answer instead.
    site_packages = sysconfig.get_paths()["purelib"]
    probe = (
        "import assistant, assistant.core.prompts as p; "
        "print(assistant.__file__); print(p.load_template('poem')['user'])"
    )
    run = subprocess.run(
        [sys.executable, "-S", "-c", probe],
        cwd=tmp_path, capture_output=True, text=True, check=False,
        env={"PYTHONPATH": f"{target}:{site_packages}", "PENWRIGHT_PROFILE": str(tmp_path / "profile")},
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    location, template = run.stdout.strip().splitlines()[:2]
    assert location.startswith(str(target))
    assert template.startswith("Write a {form} about {theme}.")
