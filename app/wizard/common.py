"""What the wizard's pages share: the training kinds, the status colours, a muted label, a folder field."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Signal
from PySide6.QtWidgets import QFileDialog, QHBoxLayout, QLabel, QLineEdit, QPushButton, QWidget

from gemini_cmr.core.train.runs import GEMINI, VAMA

__all__ = ["BAD_COLOUR", "GEMINI", "NOTE_COLOUR", "OK_COLOUR", "REAL", "VAMA", "FolderEdit", "muted", "run_kind"]

REAL = "real"  # the wizard's "Real studies with labels" kind: an LR-label Gemini-GAN run (fine-tuning)


def run_kind(kind: str) -> str:
    """The run-folder kind (`core.train.runs`) of a wizard kind: V-AMA's, else Gemini-GAN's."""
    return VAMA if kind == VAMA else GEMINI

OK_COLOUR, BAD_COLOUR, NOTE_COLOUR = "#28cd50", "#ff6b6b", "#f0b050"


def muted(text: str = "") -> QLabel:
    """A word-wrapped label in the theme's muted style (explanations under a choice)."""
    lab = QLabel(text)
    lab.setObjectName("muted")
    lab.setWordWrap(True)
    return lab


class FolderEdit(QWidget):
    """A line edit with a Browse… button; `changed` when editing finished or a folder (or, in "file" mode,
    a file) was chosen."""

    changed = Signal(str)

    def __init__(self, placeholder: str, parent=None):
        super().__init__(parent)
        self.mode, self.file_filter = "folder", ""
        h = QHBoxLayout(self)
        h.setContentsMargins(0, 0, 0, 0)
        self.edit = QLineEdit()
        self.edit.setPlaceholderText(placeholder)
        self.button = QPushButton("Browse…")
        h.addWidget(self.edit, 1)
        h.addWidget(self.button)
        self.button.clicked.connect(self._browse)
        self.edit.editingFinished.connect(lambda: self.changed.emit(self.text()))

    def text(self) -> str:
        return self.edit.text().strip()

    def set_text(self, text: str, emit: bool = True) -> None:
        self.edit.setText(str(text))
        if emit:
            self.changed.emit(self.text())

    def set_mode(self, mode: str, file_filter: str = "") -> None:
        """"folder" (Browse… chooses a folder) or "file" (a file matching `file_filter`)."""
        self.mode, self.file_filter = mode, file_filter

    def _browse(self) -> None:
        if self.mode == "file":
            path, _ = QFileDialog.getOpenFileName(self, "Choose a file", self.text() or str(Path.home()),
                                                  self.file_filter)
        else:
            path = QFileDialog.getExistingDirectory(self, "Choose a folder", self.text() or str(Path.home()))
        if path:
            self.set_text(path)
