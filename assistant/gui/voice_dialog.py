"""Learn my voice: pick your texts, watch the voice being learnt, compare a paragraph without and with it.

The dialog is non-modal: the editor stays usable while the model learns (it writes nothing meanwhile; the worker
refuses requests with a sentence). Three pages:

* **Setup**: a name, the texts (files, folders, the open documents with their unsaved edits), the words counted live
  on a short-lived thread (``load_texts`` reads and cleans them, so a large folder never freezes the window), a time
  budget. Start is enabled only for at least 2,000 words and a valid name that is unused, or a ticked "replace".
* **Training**: the stage, a loss chart (drawn with QPainter: PySide6-Essentials has no QtCharts), the held-out
  perplexity, tokens/s, time left, and Stop (which keeps the best voice so far).
* **Result**: held-out perplexity before and after, minutes, and the same held-out paragraph continued without and
  with the voice, side by side; "Use this voice" asks the window to switch to it.
"""

from __future__ import annotations

import contextlib
import math
import threading
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path

from PySide6.QtCore import QObject, QPointF, QRectF, Qt, QTimer, Signal, Slot
from PySide6.QtGui import QColor, QPainter, QPainterPath, QPaintEvent, QPalette, QPen, QShowEvent
from PySide6.QtWidgets import (
    QCheckBox,
    QDialog,
    QFileDialog,
    QFormLayout,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QPlainTextEdit,
    QPushButton,
    QSpinBox,
    QStackedWidget,
    QVBoxLayout,
    QWidget,
)

from assistant.core.errors import InputError, PenwrightError
from assistant.core.voice_texts import MIN_WORDS, TEXT_SUFFIXES, VoiceTexts, load_texts
from assistant.engine.remote import RemoteModelInfo
from assistant.engine.voices import TrainingOptions, TrainingProgress, VoiceReport, check_name, voice_folder
from assistant.gui.util import named
from assistant.gui.worker import AiClient, VoiceTraining

COUNT_DELAY_MS = 250
"""The words are counted again this long after the last change of the texts (typing a name does not recount)."""

DocumentsProvider = Callable[[], Sequence[tuple[str, str]]]
"""The open documents as (name, text), unsaved edits included; a name ending in .md is read as Markdown."""

_PATH_ROLE = Qt.ItemDataRole.UserRole
_DOCUMENT_ROLE = Qt.ItemDataRole.UserRole + 1


def _minutes(seconds: float) -> str:
    if seconds < 60:
        return "less than a minute"
    minutes = round(seconds / 60)
    return "about 1 minute" if minutes == 1 else f"about {minutes} minutes"


def improvement_sentence(before: float, after: float) -> str:
    """ "18.4 → 13.4 (27% lower)" or, when it did not fall, what that means."""
    if before > 0 and after < before:
        return f"{before:.1f} → {after:.1f} ({(1 - after / before) * 100:.0f}% lower)"
    return f"{before:.1f} → {after:.1f} (no lower: give it more of your writing or more time)"


class LossChart(QWidget):
    """The training loss of every step (a line, left scale) and the held-out perplexity where it was measured (dots,
    right scale), from step 0 (the perplexity before training) to the planned last step."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.losses: list[tuple[int, float]] = []
        self.perplexities: list[tuple[int, float]] = []
        self.planned = 0
        self.setMinimumSize(380, 170)
        self.setToolTip("Line: training loss per step. Dots: held-out perplexity (lower is closer to your voice).")

    def clear(self) -> None:
        self.losses.clear()
        self.perplexities.clear()
        self.planned = 0
        self.update()

    def add(self, progress: TrainingProgress) -> None:
        if progress.stage == "measuring" and progress.held_out_perplexity is not None and not self.perplexities:
            self.perplexities.append((0, progress.held_out_perplexity))  # before training
        if progress.stage == "training":
            if math.isfinite(progress.loss):
                self.losses.append((progress.step, progress.loss))
            if not self.perplexities and progress.best_perplexity:
                self.perplexities.append((0, progress.best_perplexity))  # before training: the first best
            if progress.held_out_perplexity is not None and math.isfinite(progress.held_out_perplexity):
                self.perplexities.append((progress.step, progress.held_out_perplexity))
            self.planned = max(self.planned, progress.steps, progress.step)
        self.update()

    def paintEvent(self, _event: QPaintEvent) -> None:  # noqa: N802 (Qt's name)
        painter = QPainter(self)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        palette = self.palette()
        text_color = palette.color(QPalette.ColorRole.WindowText)
        painter.fillRect(self.rect(), palette.color(QPalette.ColorRole.Base))
        metrics = painter.fontMetrics()
        margin_left = metrics.horizontalAdvance("10.00") + 10
        margin_right = metrics.horizontalAdvance("1000.0") + 10
        margin_top, margin_bottom = metrics.height() + 6, metrics.height() + 8
        plot = QRectF(
            margin_left,
            margin_top,
            max(10.0, self.width() - margin_left - margin_right),
            max(10.0, self.height() - margin_top - margin_bottom),
        )
        painter.setPen(QPen(text_color, 1))
        painter.drawRect(plot)
        loss_color = QColor("#2f7fd6")
        perplexity_color = QColor("#d6602f")
        painter.setPen(loss_color)
        painter.drawText(QPointF(plot.left(), metrics.ascent() + 2), "training loss")
        label = "held-out perplexity"
        painter.setPen(perplexity_color)
        painter.drawText(QPointF(plot.right() - metrics.horizontalAdvance(label), metrics.ascent() + 2), label)
        if not self.losses and not self.perplexities:
            painter.setPen(text_color)
            painter.drawText(plot, Qt.AlignmentFlag.AlignCenter, "The chart fills as the model learns.")
            return
        last_step = max([self.planned, 1, *(step for step, _ in self.losses), *(step for step, _ in self.perplexities)])
        painter.setPen(text_color)
        painter.drawText(QPointF(plot.left(), plot.bottom() + metrics.ascent() + 4), "0")
        steps_label = f"step {last_step}"
        painter.drawText(
            QPointF(plot.right() - metrics.horizontalAdvance(steps_label), plot.bottom() + metrics.ascent() + 4),
            steps_label,
        )

        def x_of(step: int) -> float:
            return plot.left() + plot.width() * step / last_step

        def scale(values: list[float]) -> tuple[float, float]:
            low, high = min(values), max(values)
            if high - low < 1e-9:
                low, high = low - 0.5, high + 0.5
            return low, high

        if self.losses:
            low, high = scale([value for _, value in self.losses])
            path = QPainterPath()
            for index, (step, value) in enumerate(self.losses):
                point = QPointF(x_of(step), plot.bottom() - plot.height() * (value - low) / (high - low))
                if index == 0:
                    path.moveTo(point)
                else:
                    path.lineTo(point)
            painter.setPen(QPen(loss_color, 1.5))
            painter.drawPath(path)
            if len(self.losses) == 1:
                painter.drawEllipse(path.currentPosition(), 2.0, 2.0)
            painter.drawText(QPointF(2, plot.top() + metrics.ascent()), f"{high:.2f}")
            painter.drawText(QPointF(2, plot.bottom()), f"{low:.2f}")
        if self.perplexities:
            low, high = scale([value for _, value in self.perplexities])
            painter.setPen(QPen(perplexity_color, 1.5))
            painter.setBrush(perplexity_color)
            for step, value in self.perplexities:
                point = QPointF(x_of(step), plot.bottom() - plot.height() * (value - low) / (high - low))
                painter.drawEllipse(point, 3.5, 3.5)
            painter.drawText(QPointF(plot.right() + 4, plot.top() + metrics.ascent()), f"{high:.1f}")
            painter.drawText(QPointF(plot.right() + 4, plot.bottom()), f"{low:.1f}")


class _CountRelay(QObject):
    """Carries a word count from its thread to the dialog (a queued signal).

    Signals:
        done(count_id, texts, message): the texts read (or None) and "" or the sentence saying what is wrong.
    """

    done = Signal(int, object, str)


class VoiceDialog(QDialog):
    """Learn my voice (non-modal; closing it while the model learns lets learning go on).

    Signals:
        useVoice(name): the writer pressed "Use this voice" for the voice just learnt.
        trainingEnded(message): learning ended (a sentence for the status bar, in case the dialog is hidden).
    """

    useVoice = Signal(str)
    trainingEnded = Signal(str)

    def __init__(
        self, client: AiClient, documents: DocumentsProvider | None = None, parent: QWidget | None = None
    ) -> None:
        super().__init__(parent)
        self.setObjectName("voiceDialog")
        self.setWindowTitle("Learn my voice")
        self.setModal(False)
        self.client = client
        self._documents = documents or (lambda: [])
        self.base_options = TrainingOptions()
        """The training options; the dialog sets only the minutes (tests give small ones)."""
        self.training: VoiceTraining | None = None
        self.texts: VoiceTexts | None = None
        self._count_id = 0
        self._counting = False
        self._count_message = ""
        self._last_model_problem = ""
        self._before: float | None = None
        """The held-out perplexity before training (measured before the first step)."""
        self._latest: float | None = None
        self._result_name = ""
        self._relay = _CountRelay()
        self._relay.done.connect(self._counted)
        self._count_timer = QTimer(self)
        self._count_timer.setSingleShot(True)
        self._count_timer.setInterval(COUNT_DELAY_MS)
        self._count_timer.timeout.connect(self.count_now)

        self.pages = named(QStackedWidget(), "voicePages")
        self.pages.addWidget(self._build_setup())
        self.pages.addWidget(self._build_training())
        self.pages.addWidget(self._build_result())
        layout = QVBoxLayout(self)
        layout.addWidget(self.pages)
        client.modelLoaded.connect(lambda _info: self._update_start())
        client.stateChanged.connect(lambda _state: self._update_start())
        client.voiceChanged.connect(self._voice_changed)
        client.voiceFailed.connect(self._voice_failed)
        self.resize(720, 560)
        self._refresh_documents()
        self._update_start()

    # --- pages ---------------------------------------------------------------------------------------------

    def _build_setup(self) -> QWidget:
        page = QWidget()
        intro = QLabel(
            "Give Penwright your finished writing, and it learns your voice: continuations, rewrites and suggestions "
            "then sound more like you. Everything stays on this computer. The more of your prose, the better: "
            f"at least {MIN_WORDS:,} words, 20,000 or more learn it well."
        )
        intro.setWordWrap(True)
        self.name_input = named(QLineEdit(), "voiceName")
        self.name_input.setPlaceholderText("e.g. my novel")
        self.name_note = named(QLabel(""), "voiceNameNote")
        self.name_note.setWordWrap(True)
        self.replace_box = named(QCheckBox(""), "voiceReplace")
        self.replace_box.hide()
        self.sources = named(QListWidget(), "voiceSources")
        self.sources.setSelectionMode(QListWidget.SelectionMode.ExtendedSelection)
        self.sources.setToolTip("Ticked texts are learnt from; .txt and .md files, and the .txt and .md in folders.")
        add_files = named(QPushButton("Add files…"), "voiceAddFiles")
        add_files.clicked.connect(self._choose_files)
        add_folder = named(QPushButton("Add folder…"), "voiceAddFolder")
        add_folder.clicked.connect(self._choose_folder)
        remove = named(QPushButton("Remove"), "voiceRemove")
        remove.clicked.connect(self._remove_selected)
        buttons = QVBoxLayout()
        for button in (add_files, add_folder, remove):
            buttons.addWidget(button)
        buttons.addStretch(1)
        sources_row = QHBoxLayout()
        sources_row.addWidget(self.sources, 1)
        sources_row.addLayout(buttons)
        self.count_label = named(QLabel(""), "voiceCount")
        self.count_label.setWordWrap(True)
        self.minutes = named(QSpinBox(minimum=1, maximum=24 * 60, suffix=" min"), "voiceMinutes")
        self.minutes.setValue(int(TrainingOptions().minutes))
        self.minutes.setToolTip("Learning stops after this long and keeps the best voice so far.")
        self.message = named(QLabel(""), "voiceMessage")
        self.message.setWordWrap(True)
        self.start_button = named(QPushButton("Start learning"), "voiceStart")
        self.start_button.setDefault(True)
        self.start_button.clicked.connect(self.start)
        close = QPushButton("Close")
        close.clicked.connect(self.close)
        bottom = QHBoxLayout()
        bottom.addWidget(self.message, 1)
        bottom.addWidget(close)
        bottom.addWidget(self.start_button)

        form = QFormLayout()
        form.addRow("Name of the voice", self.name_input)
        form.addRow("", self.name_note)
        form.addRow("", self.replace_box)
        form.addRow("Your texts", sources_row)
        form.addRow("", self.count_label)
        form.addRow("Time to learn", self.minutes)
        layout = QVBoxLayout(page)
        layout.addWidget(intro)
        layout.addLayout(form, 1)
        layout.addLayout(bottom)
        self.name_input.textChanged.connect(self._update_start)
        self.replace_box.toggled.connect(self._update_start)
        self.sources.itemChanged.connect(lambda _item: self.count_soon())
        return page

    def _build_training(self) -> QWidget:
        page = QWidget()
        self.stage_label = named(QLabel(""), "voiceStage")
        self.stage_label.setWordWrap(True)
        self.chart = named(LossChart(), "voiceChart")
        self.stats_label = named(QLabel(""), "voiceStats")
        self.stats_label.setWordWrap(True)
        note = QLabel(
            "You can close this window and go on writing by hand; the model writes again when learning ends. "
            "Stop ends learning now and keeps the best voice so far."
        )
        note.setWordWrap(True)
        self.stop_button = named(QPushButton("Stop"), "voiceStop")
        self.stop_button.clicked.connect(self.stop)
        bottom = QHBoxLayout()
        bottom.addWidget(note, 1)
        bottom.addWidget(self.stop_button)
        layout = QVBoxLayout(page)
        layout.addWidget(self.stage_label)
        layout.addWidget(self.chart, 1)
        layout.addWidget(self.stats_label)
        layout.addLayout(bottom)
        return page

    def _build_result(self) -> QWidget:
        page = QWidget()
        self.summary_label = named(QLabel(""), "voiceSummary")
        self.summary_label.setWordWrap(True)
        self.prompt_view = self._sample_view("voicePrompt")
        self.prompt_view.setMaximumHeight(self.prompt_view.fontMetrics().lineSpacing() * 5 + 12)
        self.without_view = self._sample_view("voiceWithout")
        self.with_view = self._sample_view("voiceWith")
        samples = QGridLayout()
        samples.addWidget(QLabel("The start of a paragraph it did not learn from:"), 0, 0, 1, 2)
        samples.addWidget(self.prompt_view, 1, 0, 1, 2)
        samples.addWidget(QLabel("Continued without your voice:"), 2, 0)
        samples.addWidget(QLabel("Continued with your voice:"), 2, 1)
        samples.addWidget(self.without_view, 3, 0)
        samples.addWidget(self.with_view, 3, 1)
        samples.setRowStretch(3, 1)
        self.use_button = named(QPushButton("Use this voice"), "voiceUse")
        self.use_button.clicked.connect(self._use)
        again = named(QPushButton("Learn another…"), "voiceAgain")
        again.clicked.connect(self.show_setup)
        close = QPushButton("Close")
        close.clicked.connect(self.close)
        bottom = QHBoxLayout()
        bottom.addStretch(1)
        bottom.addWidget(again)
        bottom.addWidget(close)
        bottom.addWidget(self.use_button)
        layout = QVBoxLayout(page)
        layout.addWidget(self.summary_label)
        layout.addLayout(samples, 1)
        layout.addLayout(bottom)
        return page

    @staticmethod
    def _sample_view(name: str) -> QPlainTextEdit:
        view = named(QPlainTextEdit(), name)
        view.setReadOnly(True)
        return view

    # --- choosing the texts --------------------------------------------------------------------------------

    def showEvent(self, event: QShowEvent) -> None:  # noqa: N802 (Qt's name)
        super().showEvent(event)
        if self.pages.currentIndex() == 0:
            self._refresh_documents()
            self.count_soon()

    def _refresh_documents(self) -> None:
        """One item per open document, keeping whether it was ticked."""
        ticked = {}
        for row in reversed(range(self.sources.count())):
            item = self.sources.item(row)
            if item.data(_DOCUMENT_ROLE) is not None:
                ticked[item.data(_DOCUMENT_ROLE)] = item.checkState()
                self.sources.takeItem(row)
        self.sources.blockSignals(True)
        for index, (name, text) in enumerate(self._documents()):
            item = QListWidgetItem(f"Open document: {name} (as it is now, unsaved edits included)")
            item.setData(_DOCUMENT_ROLE, index)
            item.setFlags(item.flags() | Qt.ItemFlag.ItemIsUserCheckable)
            default = Qt.CheckState.Checked if text.strip() else Qt.CheckState.Unchecked
            item.setCheckState(ticked.get(index, default))
            self.sources.insertItem(index, item)
        self.sources.blockSignals(False)

    def documents_changed(self) -> None:
        """An open document was edited: count again (after a pause) when it is ticked and the words are shown."""
        if not self.isVisible() or self.pages.currentIndex() != 0:
            return
        for row in range(self.sources.count()):
            item = self.sources.item(row)
            if item.data(_DOCUMENT_ROLE) is not None and item.checkState() == Qt.CheckState.Checked:
                self.count_soon()
                return

    def add_paths(self, paths: Sequence[str | Path]) -> None:
        """Add files or folders to learn from (ticked); the words are counted again."""
        known = {self.sources.item(row).data(_PATH_ROLE) for row in range(self.sources.count())}
        for path in paths:
            text = str(Path(path))
            if text in known:
                continue
            folder = Path(path).is_dir()
            item = QListWidgetItem(f"{'Folder' if folder else 'File'}: {text}")
            item.setData(_PATH_ROLE, text)
            item.setFlags(item.flags() | Qt.ItemFlag.ItemIsUserCheckable)
            item.setCheckState(Qt.CheckState.Checked)
            self.sources.addItem(item)
            known.add(text)
        self.count_soon()

    def _choose_files(self) -> None:
        patterns = " ".join(f"*{suffix}" for suffix in TEXT_SUFFIXES)
        files, _ = QFileDialog.getOpenFileNames(self, "Your texts", "", f"Text and Markdown ({patterns})")
        if files:
            self.add_paths(files)

    def _choose_folder(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "A folder of your texts")
        if folder:
            self.add_paths([folder])

    def _remove_selected(self) -> None:
        for item in self.sources.selectedItems():
            if item.data(_PATH_ROLE) is not None:
                self.sources.takeItem(self.sources.row(item))
        self.count_soon()

    def set_document_ticked(self, index: int, ticked: bool) -> None:
        for row in range(self.sources.count()):
            item = self.sources.item(row)
            if item.data(_DOCUMENT_ROLE) == index:
                item.setCheckState(Qt.CheckState.Checked if ticked else Qt.CheckState.Unchecked)

    def _chosen(self) -> tuple[list[str], list[tuple[str, str]]]:
        paths: list[str] = []
        wanted: list[int] = []
        for row in range(self.sources.count()):
            item = self.sources.item(row)
            if item.checkState() != Qt.CheckState.Checked:
                continue
            if item.data(_PATH_ROLE) is not None:
                paths.append(item.data(_PATH_ROLE))
            elif item.data(_DOCUMENT_ROLE) is not None:
                wanted.append(item.data(_DOCUMENT_ROLE))
        documents = [document for index, document in enumerate(self._documents()) if index in wanted]
        named_documents = [(name if Path(name).suffix else f"{name}.txt", text) for name, text in documents]
        return paths, named_documents

    def count_soon(self) -> None:
        self.texts = None
        self._counting = True
        self._count_timer.start()
        self._update_start()

    @Slot()
    def count_now(self) -> None:
        """Read and count the chosen texts on a short-lived thread; the answer fills the count line."""
        self._count_timer.stop()
        self._count_id += 1
        count_id, relay = self._count_id, self._relay
        paths, documents = self._chosen()
        self.texts = None
        if not paths and not documents:
            self._counting = False
            self._count_message = "Choose your texts: add files or a folder, or tick an open document."
            self._update_start()
            return
        self._counting = True
        self._count_message = "Counting the words…"
        self._update_start()

        def count() -> None:
            try:
                texts, message = load_texts(paths, documents=documents), ""
            except PenwrightError as error:
                texts, message = None, str(error)
            except Exception as error:  # a bug or a library failure: still a sentence, never a hang
                texts, message = None, f"The texts could not be read: {error}"
            with contextlib.suppress(RuntimeError):  # the dialog (and its relay) is gone
                relay.done.emit(count_id, texts, message)

        threading.Thread(target=count, name="penwright-voice-count", daemon=True).start()

    @Slot(int, object, str)
    def _counted(self, count_id: int, texts: VoiceTexts | None, message: str) -> None:
        if count_id != self._count_id:
            return  # the texts changed since
        self._counting = False
        self.texts = texts
        if texts is not None:
            count = len(texts.files)
            message = (
                f"{texts.words:,} words in {count} text{'s' if count != 1 else ''}; "
                f"{texts.held_out_words:,} of them are kept aside to measure the voice."
            )
        self._count_message = message
        self._update_start()

    # --- the name and Start --------------------------------------------------------------------------------

    def _name_problem(self) -> tuple[str, bool]:
        """A sentence saying why the name cannot be used ("" when it can), and whether it names a saved voice."""
        name = self.name_input.text().strip()
        if not name:
            return "Give the voice a name.", False
        try:
            name = check_name(name)
        except InputError as error:
            return str(error), False
        exists = voice_folder(name).exists()
        if exists and not self.replace_box.isChecked():
            return f"A voice named '{name}' exists already: choose another name, or tick Replace.", True
        return "", exists

    def _model_problem(self) -> str:
        info = self.client.model_info
        if isinstance(info, RemoteModelInfo):
            return (
                "Voices are learnt on this computer's model, and the model runs on a server now. "
                "Choose 'On this computer' in Settings to learn a voice."
            )
        if info is None:
            return "The model is not loaded yet; learning can start once it is."
        if self.client.learning and self.training is None:
            return "A voice is being learnt already; wait for it to end."
        return ""

    def _update_start(self) -> None:
        name_problem, exists = self._name_problem()
        name = self.name_input.text().strip()
        self.replace_box.setVisible(exists)
        self.replace_box.setText(f"Replace the voice '{name}' learnt before")
        self.name_note.setText(name_problem if name_problem != "Give the voice a name." else "")
        words_ok = self.texts is not None and not self._counting
        self.count_label.setText(self._count_message)
        self.count_label.setStyleSheet("" if words_ok or self._counting else "color: #c0392b;")
        model_problem = self._model_problem()
        if model_problem:
            self.message.setText(model_problem)
        elif self.message.text() == self._last_model_problem:
            self.message.setText("")
        self._last_model_problem = model_problem
        self.start_button.setEnabled(words_ok and not name_problem and not model_problem and self.training is None)

    def start(self) -> VoiceTraining | None:
        """Start learning (what Start does); None when something is missing (the dialog says what)."""
        self._update_start()
        if not self.start_button.isEnabled() or self.texts is None:
            return None
        name = check_name(self.name_input.text())
        options = replace(self.base_options, minutes=float(self.minutes.value()))
        replace_voice = voice_folder(name).exists() and self.replace_box.isChecked()
        self.message.setText("")
        training = self.client.learn_voice(self.texts, name, options, replace=replace_voice)
        self.training = training
        self._before = self._latest = None
        self.chart.clear()
        self.stage_label.setText(f"Getting ready to learn the voice '{name}'…")
        self.stats_label.setText("")
        self.stop_button.setEnabled(True)
        self.stop_button.setText("Stop")
        training.loading.connect(self._on_loading)
        training.progressed.connect(self._on_progress)
        training.finished.connect(self._on_finished)
        training.failed.connect(self._on_failed)
        self.pages.setCurrentIndex(1)
        self._update_start()
        return training

    def stop(self) -> None:
        """Stop learning at the next step; the best voice so far is kept."""
        if self.training is None:
            return
        self.training.stop()
        self.stop_button.setEnabled(False)
        self.stop_button.setText("Stopping…")
        self.stage_label.setText("Stopping after this step; the best voice so far is kept.")

    # --- training ------------------------------------------------------------------------------------------

    def _on_loading(self, stage: str) -> None:
        if self.training is not None and not self.training.stopping:
            self.stage_label.setText(f"Preparing a full-precision copy of the model to learn on: {stage}")

    def _on_progress(self, steps: list[TrainingProgress]) -> None:
        for progress in steps:
            self.chart.add(progress)
            if progress.held_out_perplexity is not None:
                self._latest = progress.held_out_perplexity
            if self._before is None and progress.stage in ("measuring", "training") and progress.best_perplexity:
                self._before = progress.best_perplexity
        last = steps[-1]
        stopping = self.training is not None and self.training.stopping
        if last.stage == "measuring" and not stopping:
            self.stage_label.setText("Measuring how well the model knows your texts now…")
        elif last.stage == "saving":
            self.stage_label.setText("Saving the voice and writing a sample with it…")
        elif not stopping:
            self.stage_label.setText(f"Learning your voice: step {last.step} of about {last.steps}.")
        if last.stage != "training":
            return
        parts = []
        if self._before is not None:
            held_out = f"Held-out perplexity: {self._before:.1f} at the start"
            if self._latest is not None:
                held_out += f", {self._latest:.1f} at the last check"
            if last.best_perplexity is not None:
                held_out += f", best {last.best_perplexity:.1f}"
            parts.append(held_out + ".")
        parts.append(f"{last.tokens_per_s:,.0f} tokens/s.")
        parts.append(f"Time left: {_minutes(last.seconds_left)}.")
        self.stats_label.setText(" ".join(parts))

    def _on_finished(self, report: VoiceReport) -> None:
        self.training = None
        self.show_report(report)
        self.trainingEnded.emit(
            f"The voice '{report.name}' is learnt: held-out perplexity "
            f"{improvement_sentence(report.perplexity_before, report.perplexity_after)}."
        )

    def _on_failed(self, message: str) -> None:
        self.training = None
        self.pages.setCurrentIndex(0)
        self.message.setText(message)
        self._last_model_problem = ""
        self._update_start()
        self.trainingEnded.emit(message)

    def show_report(self, report: VoiceReport) -> None:
        """The result page: perplexity before and after, minutes, and the two continuations."""
        lines = [
            f"The voice '{report.name}' is saved.",
            f"Held-out perplexity {improvement_sentence(report.perplexity_before, report.perplexity_after)}: "
            "lower means the model finds paragraphs of yours it never saw less surprising.",
            f"Learnt from {report.words:,} words in {report.minutes:.1f} minutes ({report.steps} steps); "
            f"peak memory {report.peak_memory_mb / 1024:.1f} GB.",
        ]
        if report.stopped:
            lines.append("Stopped early: the best voice so far was kept.")
        self.summary_label.setText("\n".join(lines))
        samples = report.samples or {}
        self.prompt_view.setPlainText(samples.get("prompt", ""))
        self.without_view.setPlainText(samples.get("base", ""))
        self.with_view.setPlainText(samples.get("voice", ""))
        self._result_name = report.name
        self.use_button.setEnabled(True)
        self.use_button.setText("Use this voice")
        self.pages.setCurrentIndex(2)

    def _use(self) -> None:
        if self._result_name:
            self.use_button.setEnabled(False)
            self.use_button.setText("Switching to it…")
            self.useVoice.emit(self._result_name)

    def _voice_changed(self, info: object) -> None:
        if self._result_name and getattr(info, "voice", "") == self._result_name:
            self.use_button.setEnabled(False)
            self.use_button.setText("In use")
        elif not self.use_button.isEnabled():
            self.use_button.setEnabled(True)
            self.use_button.setText("Use this voice")

    def _voice_failed(self, message: str) -> None:
        if self.pages.currentIndex() == 2 and not self.use_button.isEnabled():
            self.use_button.setEnabled(True)
            self.use_button.setText("Use this voice")
            self.summary_label.setText(f"{self.summary_label.text()}\n{message}")

    def show_setup(self) -> None:
        """Back to choosing texts (after a result)."""
        self.pages.setCurrentIndex(0)
        self.name_input.clear()
        self._refresh_documents()
        self.count_soon()
