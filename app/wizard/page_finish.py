"""Wizard page 5: the final metrics and "Use this model now" (selects the trained model or adapter).
Real studies with labels: the starting and the new model side by side on the held-out subjects
(`RUN/finetune.json`), the model folder with its card; "Use this model now" is offered with the figures."""

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

from gemini_cmr.app.wizard.common import GEMINI, REAL, VAMA, muted
from gemini_cmr.app.wizard.events import fmt_time
from gemini_cmr.core.train.runs import MODEL_CARD, comparison_path, history_path, trained_model_path

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
        self.figures: dict | None = None
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

    def nextId(self) -> int:  # noqa: N802  (the last page, whatever the page ids after it)
        return -1

    def initializePage(self) -> None:  # noqa: N802
        kind, out = self.wiz.kind, self.wiz.settings_page.out_path
        rows: list[tuple[str, str]] = []
        self.model_path = str(trained_model_path(self.wiz.run_kind, out))
        self._set_columns(["Metric", "Value"])
        self.use_button.setEnabled(True)
        if kind == REAL:
            self._show_comparison(out)
            return
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

    def _set_columns(self, names: list[str]) -> None:
        self.table.setColumnCount(len(names))
        self.table.setHorizontalHeaderLabels(names)
        hh = self.table.horizontalHeader()
        hh.setSectionResizeMode(0, QHeaderView.ResizeMode.ResizeToContents)
        for i in range(1, len(names)):
            hh.setSectionResizeMode(i, QHeaderView.ResizeMode.Stretch)

    def _show_comparison(self, out) -> None:
        """Before / after on the held-out subjects; "Use this model now" only with the figures shown."""
        from gemini_cmr.app.wizard.real import comparison_rows

        self.figures = None
        try:
            self.figures = json.loads(comparison_path(out).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            pass
        self.used_label.setText("")
        if self.figures is None:
            self.summary.setText(f"The before/after comparison is missing ({comparison_path(out)}): the run did not "
                                 "finish it. Run the command again with --resume to compare and write the model.")
            self.table.setRowCount(0)
            self.use_button.setEnabled(False)
            return
        models = self.figures["models"]
        before, after = models["before"], models["after"]
        self._set_columns(["Held-out subjects", f"{before['name']} ({before['model_id']})",
                           f"{after['name']} ({after['model_id']})", "Change"])
        rows = comparison_rows(self.figures)
        events = self.wiz.run_page.events
        done = [e for e in events if e.get("event") == "done"]
        extra = [("Held-out subjects", ", ".join(self.figures["held_out"]), "", "")]
        if done and "elapsed_s" in done[-1]:
            extra.append(("Training time", fmt_time(done[-1]["elapsed_s"]), "", ""))
        extra.append(("Comparison time", fmt_time(self.figures.get("eval_seconds")), "", ""))
        rows += extra
        self.table.setRowCount(len(rows))
        for i, row in enumerate(rows):
            for j, v in enumerate(row):
                self.table.setItem(i, j, QTableWidgetItem(v))
        self.model_path = after["path"]
        n = len(self.figures["held_out"])
        self.summary.setText(
            f"The starting model and the new one on your {n} held-out subject{'s' * (n != 1)} (never used to "
            f"choose the checkpoint), through the whole pipeline; each structure only where it is annotated.\n"
            f"The new model is in {self.model_path} with {MODEL_CARD} (recipe, data, these figures). "
            f"Use it now, later with --model {self.model_path}, or with Tools > Choose Model…. "
            + ("Few held-out subjects: the figures are uncertain." if n < 5 else ""))

    def use_model(self) -> None:
        kind = "vama" if self.wiz.kind == VAMA else "gemini-gan"
        if kind == "gemini-gan":
            self.wiz.settings.model = self.model_path
        else:
            self.wiz.settings.adapter = self.model_path
        self.wiz.settings.sync()
        self.wiz.modelChosen.emit(kind, self.model_path)
        self.used_label.setText("Selected in the main window.")
