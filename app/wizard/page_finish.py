"""Wizard page 5: the final metrics and "Use this model now" (selects the trained model or adapter)."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWizardPage,
)

from gemini_cmr.app.wizard.common import GEMINI, muted
from gemini_cmr.app.wizard.events import fmt_time
from gemini_cmr.core.train.runs import history_path, trained_model_path

if TYPE_CHECKING:
    from gemini_cmr.app.wizard.wizard import TrainWizard


class FinishPage(QWizardPage):
    def __init__(self, wizard: TrainWizard):
        super().__init__()
        self.wiz = wizard
        self.model_path = ""
        self.setTitle("Done")
        lay = QVBoxLayout(self)
        self.summary = QLabel("")
        self.summary.setWordWrap(True)
        self.summary.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        lay.addWidget(self.summary)
        self.table = QTableWidget(0, 2)
        self.table.setHorizontalHeaderLabels(["Metric", "Value"])
        self.table.verticalHeader().setVisible(False)
        self.table.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        self.table.horizontalHeader().setSectionResizeMode(0, QHeaderView.ResizeMode.ResizeToContents)
        self.table.horizontalHeader().setSectionResizeMode(1, QHeaderView.ResizeMode.Stretch)
        lay.addWidget(self.table, 1)
        row = QHBoxLayout()
        self.use_button = QPushButton("Use this model now")
        self.use_button.setToolTip("Select the trained model in the main window (and remember it)")
        self.used_label = muted("")
        row.addWidget(self.use_button)
        row.addWidget(self.used_label, 1)
        lay.addLayout(row)
        self.use_button.clicked.connect(self.use_model)

    def initializePage(self) -> None:  # noqa: N802
        kind, out = self.wiz.kind, self.wiz.settings_page.out_path
        rows: list[tuple[str, str]] = []
        self.model_path = str(trained_model_path(kind, out))
        if kind == GEMINI:
            history = []
            try:
                history = json.loads(history_path(out).read_text(encoding="utf-8"))
            except (OSError, ValueError):
                pass
            if history:
                top = max(history, key=lambda h: h.get("mean_dice", -1))
                last = history[-1]
                rows.append(("Best validation at step", f"{top['step']} (epoch {top['epoch']:.1f})"))
                for key, text in (("mean_dice", "Mean 3D Dice"), ("lv_cavity", "Dice LV cavity"),
                                  ("lv_myocardium", "Dice LV myocardium"), ("rv_cavity", "Dice RV cavity")):
                    rows.append((text, f"{top.get(key, float('nan')):.3f}"))
                rows.append(("PSNR", f"{top.get('psnr', float('nan')):.2f} dB"))
                rows.append(("SSIM", f"{top.get('ssim', float('nan')):.3f}"))
                rows.append(("Validation samples", str(top.get("n", ""))))
                if last is not top:
                    rows.append(("Mean 3D Dice at the last step", f"{last.get('mean_dice', float('nan')):.3f}"))
            else:
                rows.append(("Validation", "none (no validation subjects)"))
            what = "Gemini-GAN model"
        else:
            epochs = [e for e in self.wiz.run_page.events if e.get("event") == "epoch"]
            for e in epochs[-2:]:
                for k, v in e.get("losses", {}).items():
                    rows.append((f"{e.get('stage')} stage, epoch {e.get('epoch')}: {k}", f"{v:.4f}"))
            what = "V-AMA adapter"
        steps = [e for e in self.wiz.run_page.events if e.get("event") in ("done", "start")]
        if steps and "elapsed_s" in steps[-1]:
            rows.append(("Training time", fmt_time(steps[-1]["elapsed_s"])))
        rows.append(("Steps", str(self.wiz.run_page.step)))
        self.summary.setText(f"The {what} is in {self.model_path}.\nUse it now, or later with "
                             f"{'--model' if kind == GEMINI else '--adapter'} {self.model_path}.")
        self.table.setRowCount(len(rows))
        for i, (k, v) in enumerate(rows):
            self.table.setItem(i, 0, QTableWidgetItem(k))
            self.table.setItem(i, 1, QTableWidgetItem(v))
        self.used_label.setText("")

    def use_model(self) -> None:
        kind = "gemini-gan" if self.wiz.kind == GEMINI else "vama"
        if kind == "gemini-gan":
            self.wiz.settings.model = self.model_path
        else:
            self.wiz.settings.adapter = self.model_path
        self.wiz.settings.sync()
        self.wiz.modelChosen.emit(kind, self.model_path)
        self.used_label.setText("Selected in the main window.")
