"""What the wizard's pages share: the training kinds, the status colours, a muted label, a folder field."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Signal
from PySide6.QtWidgets import QFileDialog, QHBoxLayout, QLabel, QLineEdit, QPushButton, QWidget

from gemini_cmr.core.train.runs import GEMINI, VAMA

__all__ = ["BAD_COLOUR", "GEMINI", "NOTE_COLOUR", "OK_COLOUR", "VAMA", "FolderEdit", "muted"]

OK_COLOUR, BAD_COLOUR, NOTE_COLOUR = "#28cd50", "#ff6b6b", "#f0b050"


def muted(text: str = "") -> QLabel:
    """A word-wrapped label in the theme's muted style (explanations under a choice)."""
    lab = QLabel(text)
    lab.setObjectName("muted")
    lab.setWordWrap(True)
    return lab


class FolderEdit(QWidget):
    """A line edit with a Browse… button; `changed` when editing finished or a folder was chosen."""

    changed = Signal(str)

    def __init__(self, placeholder: str, parent=None):
        super().__init__(parent)
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

    def _browse(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "Choose a folder", self.text() or str(Path.home()))
        if path:
            self.set_text(path)
