"""The Settings dialog: model, device, sampling, look and autosave; returns a new AppSettings."""

from __future__ import annotations

from dataclasses import replace

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
    QLineEdit,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

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


class SettingsDialog(QDialog):
    def __init__(self, settings: AppSettings, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("settingsDialog")
        self.setWindowTitle("Settings")
        self._original = settings
        layout = QVBoxLayout(self)

        model_box = QGroupBox("Model")
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
            recent_files=list(self._original.recent_files),
        )
