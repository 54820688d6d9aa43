"""The "Weights on the CPU" setting: in the dialog, saved, reloading the model, and in the status bar."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QApplication, QComboBox, QDialogButtonBox

from assistant.core.prompts import StoryRequest
from assistant.core.settings import QUANTIZE_CHOICES, AppSettings, SamplerSettings, load_settings, save_settings
from assistant.engine.session import ModelChoice, ModelInfo
from tests.gui.conftest import FakeSession
from tests.gui.test_documents import ScriptedPrompter

pytestmark = pytest.mark.gui


class DescribedSession(FakeSession):
    """A fake session that describes itself with the given ModelInfo."""

    def __init__(self, info: ModelInfo) -> None:
        super().__init__()
        self.info = info

    def describe(self) -> ModelInfo:
        return self.info


def model_info(weights: str, dtype: str, note: str = "", device: str = "cpu") -> ModelInfo:
    return ModelInfo(
        name="Fake model", device=device, dtype=dtype, context_length=2048, load_seconds=0.4, weights=weights, note=note
    )


@pytest.fixture
def recording_window(qtbot, app_settings):
    """A main window whose client records every ModelChoice it is asked to load."""
    from assistant.gui.main_window import MainWindow
    from assistant.gui.worker import AiClient

    choices: list[ModelChoice] = []

    def factory(choice: ModelChoice, _progress) -> FakeSession:
        """Describes the model the way EngineSession would for the bundled model."""
        choices.append(choice)
        if choice.device == "cuda":  # quantization is for the CPU; an explicit request gets a note
            note = f"{choice.quantize} weights speed up the CPU only." if choice.quantize in ("int8", "int4") else ""
            return DescribedSession(model_info("float16", "float16", note, device="cuda"))
        weights = {"int8": "int8", "none": "float32"}.get(choice.quantize, "int4")
        return DescribedSession(model_info(weights, "float32" if weights == "float32" else "bfloat16"))

    client = AiClient(factory)
    window = MainWindow(client, app_settings, prompter_factory=lambda _parent: ScriptedPrompter())
    qtbot.addWidget(window)
    with qtbot.waitSignal(client.modelLoaded, timeout=5000):
        client.load(window.model_choice())
    yield window, client, choices
    window._closing_confirmed = True
    window.close()
    client.shutdown()


# --- the dialog -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("saved", QUANTIZE_CHOICES)
def test_dialog_shows_the_saved_choice(qtbot, saved: str) -> None:
    from assistant.gui.dialogs.settings import SettingsDialog

    dialog = SettingsDialog(AppSettings(quantize=saved))
    qtbot.addWidget(dialog)
    combo = dialog.findChild(QComboBox, "settingsQuantize")
    assert combo is dialog.quantize
    assert [combo.itemData(index) for index in range(combo.count())] == list(QUANTIZE_CHOICES)
    assert combo.currentData() == saved
    assert dialog.result_settings().quantize == saved, "opening and accepting changes nothing"


def test_dialog_labels_say_what_each_choice_means(qtbot) -> None:
    from assistant.gui.dialogs.settings import SettingsDialog

    dialog = SettingsDialog(AppSettings())
    qtbot.addWidget(dialog)
    labels = {
        dialog.quantize.itemData(index): dialog.quantize.itemText(index) for index in range(dialog.quantize.count())
    }
    assert "8-bit" in labels["int8"] and "4-bit" in labels["int4"]
    assert "Automatic" in labels["auto"] and "Full precision" in labels["none"]


def test_choosing_int8_and_pressing_ok_returns_int8(qtbot) -> None:
    from assistant.gui.dialogs.settings import SettingsDialog

    original = AppSettings(device="cpu", dtype="bfloat16", quantize="auto")
    dialog = SettingsDialog(original)
    qtbot.addWidget(dialog)
    dialog.show()
    dialog.quantize.setCurrentIndex(dialog.quantize.findData("int8"))
    with qtbot.waitSignal(dialog.accepted, timeout=2000):
        dialog.findChild(QDialogButtonBox).button(QDialogButtonBox.StandardButton.Ok).click()
    result = dialog.result_settings()
    assert result.quantize == "int8"
    assert result.device == "cpu" and result.dtype == "bfloat16", "the other model settings are kept"


# --- saved settings -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("bad", ["int3", "q4_0", "", 8, None, ["int8"]])
def test_invalid_saved_choice_falls_back_to_auto(bad: object) -> None:
    settings = AppSettings.from_dict({"quantize": bad, "theme": "dark"})
    assert settings.quantize == "auto"
    assert settings.theme == "dark", "the rest of the file still counts"


def test_choice_survives_save_and_load(isolated_profile: Path) -> None:
    save_settings(AppSettings(quantize="int4"))
    assert load_settings().quantize == "int4"
    path = isolated_profile / "config" / "settings.json"
    data = json.loads(path.read_text(encoding="utf-8"))
    assert data["quantize"] == "int4"
    data["quantize"] = "int2"  # edited by hand
    path.write_text(json.dumps(data), encoding="utf-8")
    assert load_settings().quantize == "auto"


# --- the main window ----------------------------------------------------------------------------------------------


def test_changing_only_the_weights_reloads_the_model(qtbot, recording_window) -> None:
    window, client, choices = recording_window
    assert choices[-1].quantize == "auto"
    changed = AppSettings.from_dict(window.settings.to_dict())
    changed.quantize = "int8"
    with qtbot.waitSignal(client.modelLoaded, timeout=5000):
        window.change_settings(changed)
    assert len(choices) == 2 and choices[-1] == ModelChoice("", "auto", "auto", "int8")
    assert load_settings().quantize == "int8"
    assert "int8" in window.status_model.text()


def test_settings_without_a_model_change_do_not_reload(qtbot, recording_window) -> None:
    window, client, choices = recording_window
    changed = AppSettings.from_dict(window.settings.to_dict())
    changed.theme = "dark"
    window.change_settings(changed)
    # The worker runs requests in order: a reload asked for above would run before this job ends.
    job = client.start(StoryRequest("Once"), SamplerSettings(max_new_tokens=1))
    with qtbot.waitSignal(job.finished, timeout=5000):
        pass
    assert len(choices) == 1


def test_settings_dialog_from_the_window_switches_to_int4(qtbot, recording_window) -> None:
    """The user's path: open Settings, pick 4-bit, press OK; the model reloads with int4 weights."""
    window, client, choices = recording_window

    def operate_dialog() -> None:
        dialog = QApplication.activeModalWidget()
        assert dialog is not None and dialog.objectName() == "settingsDialog"
        combo = dialog.findChild(QComboBox, "settingsQuantize")
        combo.setCurrentIndex(combo.findData("int4"))
        dialog.findChild(QDialogButtonBox).button(QDialogButtonBox.StandardButton.Ok).click()

    QTimer.singleShot(100, operate_dialog)
    with qtbot.waitSignal(client.modelLoaded, timeout=5000):
        window.open_settings()
    assert window.settings.quantize == "int4"
    assert choices[-1].quantize == "int4"


def test_status_bar_shows_quantized_weights_and_the_activation_dtype(qtbot, recording_window) -> None:
    window, _client, _choices = recording_window
    assert window.status_model.text() == "Fake model · cpu · int4 · bfloat16"


def reload(qtbot, window, client, **changes: str) -> None:
    changed = AppSettings.from_dict(window.settings.to_dict())
    for name, value in changes.items():
        setattr(changed, name, value)
    with qtbot.waitSignal(client.modelLoaded, timeout=5000):
        window.change_settings(changed)


def test_status_bar_names_unquantized_weights_once(qtbot, recording_window) -> None:
    window, client, _choices = recording_window
    reload(qtbot, window, client, quantize="none")
    assert window.status_model.text() == "Fake model · cpu · float32"
    assert window.statusBar().currentMessage() == "Model ready (0.4 s)."


def test_status_bar_explains_why_weights_differ_from_the_setting(qtbot, recording_window) -> None:
    window, client, _choices = recording_window
    reload(qtbot, window, client, device="cuda", quantize="int8")
    assert window.status_model.text() == "Fake model · cuda · float16"
    assert window.statusBar().currentMessage() == "Model ready (0.4 s). int8 weights speed up the CPU only."
