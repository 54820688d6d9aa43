"""The Settings dialog: where the model runs, model, device, sampling, look and autosave; returns a new AppSettings.

The API key of a remote server is not part of the settings: :meth:`SettingsDialog.api_key_entered` hands it to the
window, which keeps it in the system keyring (``core.api_keys``). The server's model list is fetched on a short-lived
thread with a timeout, so a slow server never freezes the dialog.
"""

from __future__ import annotations

import contextlib
import threading
from dataclasses import replace

from PySide6.QtCore import QObject, Qt, Signal, Slot
from PySide6.QtGui import QFont
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QDoubleSpinBox,
    QFileDialog,
    QFontComboBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from assistant.core.api_keys import NO_KEYRING, KeyStore, default_key_store
from assistant.core.errors import PenwrightError
from assistant.core.settings import QUANTIZE_CHOICES, THEMES, AppSettings, SamplerSettings
from assistant.gui.util import named

MODEL_KINDS = ("Bundled (SmolLM2-135M-Instruct)", "Model folder", "GGUF file", "Cached model id")
DEVICES = ("auto", "cpu", "cuda", "mps")
DTYPES = ("auto", "float32", "bfloat16", "float16")
QUANTIZE_LABELS = {
    "auto": "Automatic (4-bit for 4-bit GGUF models, else 8-bit)",
    "none": "Full precision (slowest on the CPU)",
    "int8": "8-bit",
    "int4": "4-bit (fastest)",
}
BACKEND_LABELS = {"local": "On this computer", "remote": "On a server (OpenAI-compatible API)"}


class _ModelListRelay(QObject):
    """Carries a fetched model list from its thread to the dialog (a queued signal).

    Signals:
        done(fetch_id, names, error): the server's model ids, or "" names and a sentence saying what failed.
    """

    done = Signal(int, object, str)


class SettingsDialog(QDialog):
    def __init__(self, settings: AppSettings, parent: QWidget | None = None, key_store: KeyStore | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("settingsDialog")
        self.setWindowTitle("Settings")
        self._original = settings
        self._keys = key_store or default_key_store()
        self._fetch_id = 0
        self._relay = _ModelListRelay()
        self._relay.done.connect(self._models_fetched)
        layout = QVBoxLayout(self)

        backend_box = QGroupBox("Where the model runs")
        backend_form = QFormLayout(backend_box)
        self.backend = named(QComboBox(), "settingsBackend")
        for value, label in BACKEND_LABELS.items():
            self.backend.addItem(label, value)
        self.base_url = named(QLineEdit(), "settingsBaseUrl")
        self.base_url.setPlaceholderText(
            "http://localhost:8000/v1 (vLLM, llama.cpp, Ollama, LM Studio, penwright serve)"
        )
        self.remote_model = named(QComboBox(), "settingsRemoteModel")
        self.remote_model.setEditable(True)
        self.remote_model.setToolTip("Empty: the first model the server lists.")
        self.fetch_models = named(QPushButton("Fetch models"), "settingsFetchModels")
        self.fetch_models.clicked.connect(self.start_model_fetch)
        model_row = QHBoxLayout()
        model_row.addWidget(self.remote_model, 1)
        model_row.addWidget(self.fetch_models)
        self.api_key = named(QLineEdit(), "settingsApiKey")
        self.api_key.setEchoMode(QLineEdit.EchoMode.Password)
        self.remote_timeout = named(QSpinBox(minimum=1, maximum=3600, suffix=" s"), "settingsRemoteTimeout")
        self.remote_timeout.setToolTip("How long the server may stay silent before Penwright gives up and says so.")
        self.key_note = named(QLabel(""), "settingsKeyNote")
        self.key_note.setWordWrap(True)
        self.remote_status = named(QLabel(""), "settingsRemoteStatus")
        self.remote_status.setWordWrap(True)
        backend_form.addRow("Model runs", self.backend)
        backend_form.addRow("Server address", self.base_url)
        backend_form.addRow("Server model", model_row)
        backend_form.addRow("API key", self.api_key)
        backend_form.addRow("", self.key_note)
        backend_form.addRow("Give up after", self.remote_timeout)
        backend_form.addRow("", self.remote_status)
        self.backend.currentIndexChanged.connect(self._update_backend_fields)
        layout.addWidget(backend_box)

        model_box = QGroupBox("Model")
        self.model_box = model_box
        model_form = QFormLayout(model_box)
        self.model_kind = named(QComboBox(), "settingsModelKind")
        self.model_kind.addItems(MODEL_KINDS)
        self.model_path = named(QLineEdit(), "settingsModelPath")
        self.model_path.setPlaceholderText("a folder, a .gguf file, or an id such as HuggingFaceTB/SmolLM2-360M")
        browse = named(QPushButton("Browse…"), "settingsModelBrowse")
        browse.clicked.connect(self._browse)
        path_row = QHBoxLayout()
        path_row.addWidget(self.model_path, 1)
        path_row.addWidget(browse)
        self.device = named(QComboBox(), "settingsDevice")
        self.device.addItems(DEVICES)
        self.dtype = named(QComboBox(), "settingsDtype")
        self.dtype.addItems(DTYPES)
        model_form.addRow("Source", self.model_kind)
        model_form.addRow("Location", path_row)
        model_form.addRow("Device", self.device)
        model_form.addRow("Precision", self.dtype)
        self.quantize = named(QComboBox(), "settingsQuantize")
        for choice in QUANTIZE_CHOICES:
            self.quantize.addItem(QUANTIZE_LABELS[choice], choice)
        self.quantize.setToolTip("How the weights are stored on the CPU; fewer bits read less memory per word.")
        model_form.addRow("Weights on the CPU", self.quantize)
        self.model_kind.currentIndexChanged.connect(self._update_model_fields)
        layout.addWidget(model_box)

        voice_box = QGroupBox("Voice")
        voice_form = QFormLayout(voice_box)
        self.voice = named(QComboBox(), "settingsVoice")
        self.voice.setToolTip("A voice learnt from your texts (Assist > Learn my voice…); switching needs no reload.")
        self.voice_note = named(QLabel(""), "settingsVoiceNote")
        self.voice_note.setWordWrap(True)
        voice_form.addRow("Write in", self.voice)
        voice_form.addRow("", self.voice_note)
        layout.addWidget(voice_box)

        sampling_box = QGroupBox("Writing")
        sampling = QFormLayout(sampling_box)
        self.temperature = self._double("settingsTemperature", 0, 2, 0.05)
        self.top_p = self._double("settingsTopP", 0.01, 1, 0.01)
        self.top_k = named(QSpinBox(minimum=0, maximum=500), "settingsTopK")
        self.min_p = self._double("settingsMinP", 0, 0.99, 0.01)
        self.repetition_penalty = self._double("settingsRepetitionPenalty", 0.5, 2, 0.05)
        self.max_new_tokens = named(QSpinBox(minimum=1, maximum=32768), "settingsMaxTokens")
        self.fixed_seed = named(QCheckBox("Fixed seed"), "settingsFixedSeed")
        self.seed = named(QSpinBox(minimum=0, maximum=2**31 - 1), "settingsSeed")
        self.fixed_seed.toggled.connect(self.seed.setEnabled)
        seed_row = QHBoxLayout()
        seed_row.addWidget(self.fixed_seed)
        seed_row.addWidget(self.seed, 1)
        sampling.addRow("Temperature (0 = always the likeliest word)", self.temperature)
        sampling.addRow("Top-p", self.top_p)
        sampling.addRow("Top-k (0 = off)", self.top_k)
        sampling.addRow("Min-p", self.min_p)
        sampling.addRow("Repetition penalty", self.repetition_penalty)
        sampling.addRow("Maximum answer length (tokens)", self.max_new_tokens)
        sampling.addRow("Seed", seed_row)
        layout.addWidget(sampling_box)

        look_box = QGroupBox("Look and safety")
        look = QFormLayout(look_box)
        self.theme = named(QComboBox(), "settingsTheme")
        self.theme.addItems(THEMES)
        self.font_family = named(QFontComboBox(), "settingsFont")
        self.font_size = named(QSpinBox(minimum=6, maximum=72), "settingsFontSize")
        self.autosave = named(QSpinBox(minimum=1, maximum=3600, suffix=" s"), "settingsAutosave")
        look.addRow("Theme", self.theme)
        look.addRow("Editor font", self.font_family)
        look.addRow("Font size", self.font_size)
        look.addRow("Autosave every", self.autosave)
        self.suggest_in_editor = named(QCheckBox("In the editor"), "settingsSuggestEditor")
        self.suggest_in_code = named(QCheckBox("In the code pane"), "settingsSuggestCode")
        suggest_row = QHBoxLayout()
        suggest_row.addWidget(self.suggest_in_editor)
        suggest_row.addWidget(self.suggest_in_code)
        look.addRow("Inline suggestions", suggest_row)
        layout.addWidget(look_box)

        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        layout.addWidget(buttons)
        self._load(settings)

    @staticmethod
    def _double(name: str, low: float, high: float, step: float) -> QDoubleSpinBox:
        box = named(QDoubleSpinBox(minimum=low, maximum=high, singleStep=step), name)
        box.setDecimals(2)
        return box

    def _load(self, settings: AppSettings) -> None:
        model = settings.model.strip()
        if not model:
            kind = 0
        elif model.lower().endswith(".gguf"):
            kind = 2
        elif "/" in model and not model.startswith(("/", ".", "~")) and model.count("/") == 1:
            kind = 3
        else:
            kind = 1
        self.model_kind.setCurrentIndex(kind)
        self.model_path.setText(model)
        self.device.setCurrentText(settings.device)
        self.dtype.setCurrentText(settings.dtype)
        self.quantize.setCurrentIndex(max(0, self.quantize.findData(settings.quantize)))
        sampler = settings.sampler
        self.temperature.setValue(sampler.temperature)
        self.top_p.setValue(sampler.top_p)
        self.top_k.setValue(sampler.top_k)
        self.min_p.setValue(sampler.min_p)
        self.repetition_penalty.setValue(sampler.repetition_penalty)
        self.max_new_tokens.setValue(sampler.max_new_tokens)
        self.fixed_seed.setChecked(sampler.seed is not None)
        self.seed.setValue(sampler.seed or 0)
        self.seed.setEnabled(sampler.seed is not None)
        self.theme.setCurrentText(settings.theme)
        if settings.editor_font_family:
            self.font_family.setCurrentFont(QFont(settings.editor_font_family))
        self.font_size.setValue(settings.editor_font_size)
        self.autosave.setValue(settings.autosave_seconds)
        self.suggest_in_editor.setChecked(settings.suggest_in_editor)
        self.suggest_in_code.setChecked(settings.suggest_in_code)
        self._update_model_fields()
        self.backend.setCurrentIndex(max(0, self.backend.findData(settings.backend)))
        self.base_url.setText(settings.remote_base_url)
        if settings.remote_model:
            self.remote_model.addItem(settings.remote_model)
        self.remote_model.setCurrentText(settings.remote_model)
        self.remote_timeout.setValue(settings.remote_timeout_s)
        self._load_voices(settings.voice)
        self._show_key_state()
        self._update_backend_fields()
        if settings.backend == "remote" and settings.remote_base_url.strip():
            self.start_model_fetch()

    def _load_voices(self, current: str) -> None:
        """None, then every saved voice (its words and perplexity as the tooltip); a missing one is shown as such."""
        from assistant.engine.voices import list_voices

        self.voice.clear()
        self.voice.addItem("None (the model's own voice)", "")
        for voice in list_voices():
            self.voice.addItem(voice.name, voice.name)
            self.voice.setItemData(self.voice.count() - 1, voice.describe(), Qt.ItemDataRole.ToolTipRole)
        if current and self.voice.findData(current) < 0:
            self.voice.addItem(f"{current} (not found)", current)
            self.voice.setItemData(
                self.voice.count() - 1,
                f"There is no saved voice named '{current}'; the model writes without it.",
                Qt.ItemDataRole.ToolTipRole,
            )
        self.voice.setCurrentIndex(max(0, self.voice.findData(current)))

    def _server(self) -> str:
        """The base URL as the key store files keys under it (normalized when it can be)."""
        from assistant.engine.remote import normalize_base_url

        text = self.base_url.text().strip()
        try:
            return normalize_base_url(text)
        except PenwrightError:
            return text

    def _show_key_state(self) -> None:
        server = self._server()
        stored = bool(server) and self._keys.stored(server)
        self.api_key.setPlaceholderText(
            "(kept; type to replace)" if stored else "none (leave empty if the server needs none)"
        )
        self.key_note.setText(
            "Kept in the system keyring, never in the settings file." if self._keys.keyring_available else NO_KEYRING
        )

    def _update_backend_fields(self) -> None:
        remote = self.backend.currentData() == "remote"
        for widget in (self.base_url, self.remote_model, self.fetch_models, self.api_key, self.remote_timeout):
            widget.setEnabled(remote)
        self.model_box.setEnabled(not remote)
        self.voice.setEnabled(not remote)
        if remote:
            self.voice_note.setText(
                "Voices are learnt and used on this computer's model; a model on a server has none. "
                "Choose 'On this computer' above to write in a voice."
            )
        elif self.voice.count() == 1:
            self.voice_note.setText("No voices yet: Assist > Learn my voice… learns one from your texts.")
        else:
            self.voice_note.setText("")

    def start_model_fetch(self) -> None:
        """Ask the server for its models (GET /v1/models) on a short-lived thread; the answer fills the list."""
        from assistant.engine.remote import LIST_TIMEOUT_S, list_models

        server = self._server()
        if not server:
            self.remote_status.setText("Give the server's address first, such as http://localhost:8000/v1.")
            return
        key = self.api_key.text().strip() or self._keys.get(server)
        self._fetch_id += 1
        fetch_id, relay = self._fetch_id, self._relay
        self.remote_status.setText(f"Asking {server} for its models…")

        def fetch() -> None:
            try:
                names, error = list_models(server, key, LIST_TIMEOUT_S), ""
            except PenwrightError as failure:
                names, error = [], str(failure)
            except Exception as failure:  # a bug or a library failure: still a sentence, never a hang
                names, error = [], f"Could not ask {server} for its models: {failure}"
            with contextlib.suppress(RuntimeError):  # the dialog (and its relay) is gone
                relay.done.emit(fetch_id, names, error)

        threading.Thread(target=fetch, name="penwright-model-list", daemon=True).start()

    @Slot(int, object, str)
    def _models_fetched(self, fetch_id: int, names: list[str], error: str) -> None:
        if fetch_id != self._fetch_id:
            return  # an older request: the address changed since
        if error:
            self.remote_status.setText(error)
            return
        current = self.remote_model.currentText().strip()
        self.remote_model.clear()
        self.remote_model.addItems(names)
        self.remote_model.setCurrentText(current if current in names else names[0])
        count = f"{len(names)} models" if len(names) != 1 else "1 model"
        self.remote_status.setText(f"The server offers {count}.")

    def api_key_entered(self) -> str | None:
        """The API key the user typed (to keep in the key store), or None when the field was left alone."""
        key = self.api_key.text().strip()
        return key or None

    def _update_model_fields(self) -> None:
        bundled = self.model_kind.currentIndex() == 0
        self.model_path.setEnabled(not bundled)

    def _browse(self) -> None:
        if self.model_kind.currentIndex() == 2:
            path, _ = QFileDialog.getOpenFileName(self, "Choose a GGUF model", "", "GGUF models (*.gguf)")
        else:
            path = QFileDialog.getExistingDirectory(self, "Choose a model folder")
        if path:
            self.model_path.setText(path)

    def result_settings(self) -> AppSettings:
        """The settings as the dialog shows them now."""
        sampler = SamplerSettings(
            temperature=self.temperature.value(),
            top_p=self.top_p.value(),
            top_k=self.top_k.value(),
            min_p=self.min_p.value(),
            repetition_penalty=self.repetition_penalty.value(),
            max_new_tokens=self.max_new_tokens.value(),
            seed=self.seed.value() if self.fixed_seed.isChecked() else None,
        )
        return replace(
            self._original,
            model="" if self.model_kind.currentIndex() == 0 else self.model_path.text().strip(),
            device=self.device.currentText(),
            dtype=self.dtype.currentText(),
            quantize=str(self.quantize.currentData()),
            sampler=sampler,
            theme=self.theme.currentText(),
            editor_font_family=self.font_family.currentFont().family(),
            editor_font_size=self.font_size.value(),
            autosave_seconds=self.autosave.value(),
            suggest_in_editor=self.suggest_in_editor.isChecked(),
            suggest_in_code=self.suggest_in_code.isChecked(),
            backend=str(self.backend.currentData()),
            remote_base_url=self.base_url.text().strip(),
            remote_model=self.remote_model.currentText().strip(),
            remote_timeout_s=self.remote_timeout.value(),
            voice=str(self.voice.currentData() or ""),
            recent_files=list(self._original.recent_files),
        )
