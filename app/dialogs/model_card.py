"""Help > About the Model: the card of the model the next Super-resolve would use (`core.evaluation.card`):
its id, architecture, training, accuracy on patients it never saw and licence, as `gemini-cmr info --model`
prints it."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtGui import QFontDatabase
from PySide6.QtWidgets import QDialog, QDialogButtonBox, QLabel, QPlainTextEdit, QVBoxLayout, QWidget

from gemini_cmr.core.evaluation.card import format_card, model_card
from gemini_cmr.core.resources import acdc_model_path, default_model_for


def model_for_card(chosen: str | None, study) -> tuple[Path, str]:
    """(model path, why this one): the chosen model, else the automatic choice for the open study, else the
    model real studies get."""
    if chosen:
        return Path(chosen), "the model chosen in the toolbar"
    if study is not None:
        path, reason = default_model_for(study)
        return path, f"automatic for the open study: {reason}"
    return acdc_model_path(), "automatic: the model real studies get (phantom studies get the phantom model)"


class ModelCardDialog(QDialog):
    """The card's text, read-only, in a fixed-width font (its tables line up)."""

    def __init__(self, path: Path, why: str, parent: QWidget | None = None):
        super().__init__(parent)
        self.setWindowTitle("About the Model")
        self.text = format_card(model_card(path))  # ModelError: the caller shows it
        layout = QVBoxLayout(self)
        self.note = QLabel(why)
        self.note.setWordWrap(True)
        layout.addWidget(self.note)
        self.view = QPlainTextEdit(self.text)
        self.view.setReadOnly(True)
        self.view.setLineWrapMode(QPlainTextEdit.LineWrapMode.WidgetWidth)
        self.view.setFont(QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont))
        layout.addWidget(self.view)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.reject)
        layout.addWidget(buttons)
        self.resize(900, 640)
