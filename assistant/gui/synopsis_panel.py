"""The synopsis side panel: a document's parts in order, each heading a link to the part, each with its summary.

Three pieces, each small enough to test alone:

- :class:`SynopsisReader` turns the synopsis job's streamed Markdown back into :class:`PartSummary` objects. The
  worker sends text only, so the pane splits the document itself (``core.document_parts``, the same pure function
  the engine uses, on the same text) and reads each ``## <title>`` block the engine renders
  (``core.synopsis.render_part``) as the next part's summary. Each part's offset therefore comes from the split,
  never from the model's text.
- :func:`locate_part` finds where a part starts in the document as it is now: the same place when nothing changed,
  else the same occurrence of its heading line, else nowhere (the synopsis is out of date; we never guess).
- :class:`SynopsisPanel` shows it: the headings (click one to go there), the summaries (quoted ones and empty ones
  marked), the whole, progress "Part N of M", a Copy (Markdown) and a Close button.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QFont, QGuiApplication
from PySide6.QtWidgets import (
    QFrame,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QScrollArea,
    QSizePolicy,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from assistant.core.document_parts import Part
from assistant.core.synopsis import EXTRACTIVE_NOTE, PartSummary, Synopsis, render_overall, render_part
from assistant.gui.util import named

OVERALL_HEADER = render_overall("").split("\n", 1)[0] + "\n\n"
""""## The whole" and its blank line: where the engine's overall summary begins."""

EMPTY_BODY = render_part(PartSummary(0, "", 0, 0, "", "empty")).split("\n\n", 1)[1].strip()
"""What the engine writes under a heading with no text (so the reader can tell it from a summary)."""

STOP_LINE = "\n(stopped after "

EMPTY_PANEL_HINT = "Summarize the document with nothing selected (Ctrl+Shift+M) to list its parts here."

_PART_STAGE = re.compile(r"part (\d+) of (\d+)(?::\s*(.*))?$", re.IGNORECASE)


def stage_label(stage: str) -> str:
    """The engine's progress line as the panel shows it: "Summarizing part 2 of 9: Oslo" -> "Part 2 of 9: Oslo"."""
    match = _PART_STAGE.search(stage)
    if match and stage.lower().startswith("summarizing part"):
        title = f": {match.group(3)}" if match.group(3) else ""
        return f"Part {match.group(1)} of {match.group(2)}{title}"
    if stage == "Combining the summaries":
        return "Writing the summary of the whole…"
    return stage


class SynopsisReader:
    """Reads the synopsis form's stream (``## <title>`` blocks, then ``## The whole``) into a :class:`Synopsis`.

    ``parts`` must be ``split_document`` of the very text that was summarized: the engine summarizes those parts in
    that order, so each block is matched to the next expected title and takes that part's offsets. The worker sends
    whole pieces (a block never arrives cut in two), but the reader also copes with a block split across batches:
    a block is read once the next block's heading follows it, or the text ends with the block's blank line.
    """

    def __init__(self, parts: Sequence[Part]) -> None:
        self.parts = list(parts)
        self.synopsis = Synopsis(total_parts=len(self.parts))
        self.text = ""
        """Everything the job wrote (for a fallback when the blocks cannot be read)."""
        self._buffer = ""

    def feed(self, text: str) -> list[PartSummary]:
        """Take more streamed text; returns the parts it completed (possibly none)."""
        self.text += text
        self._buffer += text
        return self._read(final=False)

    def finish(self) -> list[PartSummary]:
        """The stream ended: read what is left."""
        return self._read(final=True)

    def _read(self, final: bool) -> list[PartSummary]:
        done: list[PartSummary] = []
        while not self.synopsis.overall:
            index = len(self.synopsis.parts)
            header = f"## {self.parts[index].title}\n\n" if index < len(self.parts) else OVERALL_HEADER
            buffer = self._buffer.lstrip("\n")
            if not buffer.startswith(header):
                break
            rest = buffer[len(header) :]
            end = self._block_end(rest, index)
            if end is None:
                complete_piece = rest.endswith("\n\n") or (index >= len(self.parts) and rest.endswith("\n"))
                if not (final or complete_piece):
                    break
                end = len(rest)
            body, self._buffer = rest[:end].strip(), rest[end:]
            if index < len(self.parts):
                part = self._part_summary(index, body)
                self.synopsis.parts.append(part)
                done.append(part)
            else:
                self.synopsis.overall = body
                self.synopsis.overall_source = "model"
                self.synopsis.complete = True
        return done

    def _block_end(self, rest: str, index: int) -> int | None:
        """Where the block after ``index``'s heading ends: at the next heading or the stop line, if either is there."""
        following = f"\n## {self.parts[index + 1].title}\n\n" if index + 1 < len(self.parts) else "\n" + OVERALL_HEADER
        ends = [found for marker in (following, STOP_LINE) if (found := rest.find(marker)) >= 0]
        return min(ends) if index < len(self.parts) and ends else None

    def _part_summary(self, index: int, body: str) -> PartSummary:
        part = self.parts[index]
        if part.is_empty or body == EMPTY_BODY:
            summary, source = "", "empty"
        elif body.endswith(EXTRACTIVE_NOTE):
            summary, source = body[: -len(EXTRACTIVE_NOTE)].strip(), "extractive"
        else:
            summary, source = body, "model"
        return PartSummary(index + 1, part.title, part.start, part.end, summary, source)


# --- finding a part again after edits -------------------------------------------------------------------------


def _first_line(text: str, start: int) -> str:
    end = text.find("\n", start)
    return text[start : end if end >= 0 else len(text)].strip()


def _occurrences(text: str, line: str) -> list[int]:
    """Offsets where ``line`` stands as the rest of a line, starting at a line's start or after a space."""
    found: list[int] = []
    position = text.find(line)
    while position >= 0:
        before_ok = position == 0 or text[position - 1].isspace()
        line_end = text.find("\n", position)
        after = text[position + len(line) : line_end if line_end >= 0 else len(text)]
        if before_ok and not after.strip():
            found.append(position)
        position = text.find(line, position + 1)
    return found


def locate_part(source: str, current: str, start: int) -> int | None:
    """Where the part that began at ``start`` in ``source`` begins in ``current``; None when it cannot be told.

    Unchanged text: ``start`` itself. Otherwise the part's first line (its heading) is looked for in ``current``;
    when the heading occurs as often as it did (edits elsewhere, or inside other parts), the part's heading is the
    same occurrence as before (the third "* * *" stays the third). When that heading line was removed, edited, or
    copied (one "Chapter 3" more or fewer), there is no way to tell which is meant, and a wrong jump is worse than
    none: None, so the pane can say the synopsis is out of date.
    """
    if current == source:
        return start
    line = _first_line(source, start)
    if not line:
        return None
    before = _occurrences(source, line)
    now = _occurrences(current, line)
    if start not in before or len(now) != len(before):
        return None
    return now[before.index(start)]


# --- the panel ------------------------------------------------------------------------------------------------


class SynopsisPanel(QFrame):
    """The synopsis of a document: its parts' headings as links, their summaries, then the whole.

    Object names (for tests and accessibility tools): ``synopsisPanel``, ``synopsisStatus``, ``synopsisStale``,
    ``synopsisCopy``, ``synopsisClose``, and per part (1-based) ``synopsisHeading<n>``, ``synopsisSummary<n>``,
    ``synopsisQuoted<n>``; the whole is ``synopsisOverall``.

    Signals:
        partClicked(index): the heading of ``synopsis.parts[index]`` was clicked (go there in the document).
        closeRequested(): the Close button was clicked.
    """

    partClicked = Signal(int)
    closeRequested = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("synopsisPanel")
        self.setFrameShape(QFrame.Shape.StyledPanel)
        self._synopsis = Synopsis()
        self._shown_parts = 0
        self._running = False

        title = QLabel("Synopsis")
        bold = title.font()
        bold.setBold(True)
        title.setFont(bold)
        self.copy_button = named(QPushButton("Copy"), "synopsisCopy", "Copy the synopsis as Markdown")
        self.close_button = named(QToolButton(), "synopsisClose", "Close the synopsis (Ctrl+Shift+Y reopens it)")
        self.close_button.setText("✕")
        self.close_button.setAutoRaise(True)
        header = QHBoxLayout()
        header.addWidget(title, 1)
        header.addWidget(self.copy_button)
        header.addWidget(self.close_button)

        self.status_label = named(QLabel(), "synopsisStatus")
        self.status_label.setWordWrap(True)
        self.stale_label = named(QLabel("The document changed since this synopsis was made."), "synopsisStale")
        self.stale_label.setWordWrap(True)
        self.stale_label.hide()

        self._entries = QWidget()
        self._entries_layout = QVBoxLayout(self._entries)
        self._entries_layout.setContentsMargins(0, 0, 0, 0)
        self._entries_layout.addStretch(1)
        self.scroll_area = named(QScrollArea(), "synopsisList")
        self.scroll_area.setWidgetResizable(True)
        self.scroll_area.setFrameShape(QFrame.Shape.NoFrame)
        self.scroll_area.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.scroll_area.setWidget(self._entries)

        layout = QVBoxLayout(self)
        layout.setContentsMargins(6, 6, 6, 6)
        layout.addLayout(header)
        layout.addWidget(self.status_label)
        layout.addWidget(self.stale_label)
        layout.addWidget(self.scroll_area, 1)

        self.copy_button.clicked.connect(self.copy_to_clipboard)
        self.close_button.clicked.connect(self.closeRequested)
        self.set_status(EMPTY_PANEL_HINT)
        self._update_buttons()
        self.hide()

    @property
    def synopsis(self) -> Synopsis:
        """What the panel shows (parts so far while running; ``complete`` once the whole is in)."""
        return self._synopsis

    @property
    def running(self) -> bool:
        return self._running

    def begin(self, total_parts: int) -> None:
        """Clear the panel for a synopsis of ``total_parts`` parts that is about to stream in."""
        self._clear_entries()
        self._synopsis = Synopsis(total_parts=total_parts)
        self._running = True
        self.set_stale(False)
        self.set_status(f"Part 1 of {total_parts}…")
        self._update_buttons()

    def show_synopsis(self, synopsis: Synopsis) -> None:
        """Show what ``synopsis`` holds that is not shown yet: new parts at the end, then the whole once written."""
        self._synopsis = synopsis
        for part in synopsis.parts[self._shown_parts :]:
            self._add_part(part)
        self._shown_parts = len(synopsis.parts)
        if synopsis.overall and self._entries.findChild(QLabel, "synopsisOverall") is None:
            self._add_overall(synopsis.overall)
        self._update_buttons()

    def finish(self, status: str) -> None:
        """The synopsis is complete, stopped or failed (``status`` says which); the parts done stay."""
        self._running = False
        self.set_status(status)
        self._update_buttons()

    def set_status(self, status: str) -> None:
        self.status_label.setText(status)
        self.status_label.setVisible(bool(status))

    def set_stale(self, stale: bool) -> None:
        """Say (or stop saying) that the document changed since the synopsis was made."""
        self.stale_label.setVisible(stale)

    @property
    def stale(self) -> bool:
        return not self.stale_label.isHidden()

    def markdown(self) -> str:
        """The synopsis as Markdown: each part's title as a heading and its summary, then the whole."""
        return self._synopsis.to_text("synopsis").strip() + "\n"

    def copy_to_clipboard(self) -> None:
        if self._synopsis.parts:
            QGuiApplication.clipboard().setText(self.markdown())
            self.set_status("Copied the synopsis to the clipboard as Markdown.")

    # --- entries -------------------------------------------------------------------------------------------

    def _add_part(self, part: PartSummary) -> None:
        number = part.index
        heading = named(QPushButton(part.title), f"synopsisHeading{number}", f"Go to “{part.title}” in the document")
        heading.setFlat(True)
        heading.setCursor(Qt.CursorShape.PointingHandCursor)
        heading.setStyleSheet("text-align: left; font-weight: bold; padding: 2px 0px; color: palette(link);")
        heading.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Fixed)  # a long title is cut, not wide
        heading.clicked.connect(lambda _checked=False, index=number - 1: self.partClicked.emit(index))
        summary = self._text_label(part.summary if part.source != "empty" else EMPTY_BODY, f"synopsisSummary{number}")
        widgets: list[QWidget] = [heading, summary]
        if part.source == "empty":
            summary.setFont(_italic(summary.font()))
        elif part.source == "extractive":
            quoted = self._text_label(
                "Quoted from the text: every summary the model wrote named something not in this part.",
                f"synopsisQuoted{number}",
            )
            quoted.setFont(_italic(quoted.font()))
            widgets.append(quoted)
        for widget in widgets:
            self._entries_layout.insertWidget(self._entries_layout.count() - 1, widget)

    def _add_overall(self, overall: str) -> None:
        title = QLabel("The whole")
        title.setFont(_bold(title.font()))
        self._entries_layout.insertWidget(self._entries_layout.count() - 1, title)
        self._entries_layout.insertWidget(
            self._entries_layout.count() - 1, self._text_label(overall, "synopsisOverall")
        )

    def _text_label(self, text: str, name: str) -> QLabel:
        label = named(QLabel(text), name)
        label.setTextFormat(Qt.TextFormat.PlainText)  # a summary is never markup
        label.setWordWrap(True)
        label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        label.setContentsMargins(0, 0, 0, 6)
        return label

    def _clear_entries(self) -> None:
        while self._entries_layout.count() > 1:
            item = self._entries_layout.takeAt(0)
            widget = item.widget() if item is not None else None
            if widget is not None:
                widget.setParent(None)
                widget.deleteLater()
        self._shown_parts = 0

    def _update_buttons(self) -> None:
        self.copy_button.setEnabled(bool(self._synopsis.parts))


def _bold(font: QFont) -> QFont:
    font.setBold(True)
    return font


def _italic(font: QFont) -> QFont:
    font.setItalic(True)
    return font
