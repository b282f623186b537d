"""Wizard page 4: the training run, a separate `gemini-cmr train … --progress-json` process: live
curves, metrics, ETA, log, Cancel and Resume."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QHBoxLayout,
    QLabel,
    QPlainTextEdit,
    QProgressBar,
    QPushButton,
    QVBoxLayout,
    QWizard,
    QWizardPage,
)

from gemini_cmr.app.wizard.common import BAD_COLOUR, GEMINI, NOTE_COLOUR, OK_COLOUR, REAL, VAMA, muted
from gemini_cmr.app.wizard.events import event_line, fmt_dice, fmt_time
from gemini_cmr.app.wizard.plot import CurvePlot
from gemini_cmr.app.wizard.process import CliProcess
from gemini_cmr.core.train.runs import run_state

if TYPE_CHECKING:
    from gemini_cmr.app.wizard.wizard import TrainWizard


DICE_KEYS = (("lv_cavity", "LV"), ("lv_myocardium", "Myo"), ("rv_cavity", "RV"))


class RunPage(QWizardPage):
    runFinished = Signal(str)  # "done" | "interrupted" | "cancelled" | "failed"
    eventReceived = Signal(object)  # every progress event (dict) of the current process

    def __init__(self, wizard: TrainWizard):
        super().__init__()
        self.wiz = wizard
        self.proc: CliProcess | None = None
        self.status = ""  # of the last process
        self.events: list[dict] = []
        self.val: list[dict] = []
        self.step = 0
        self.total = 0
        self._t_first: tuple[float, int] | None = None
        self.setTitle("Training")
        lay = QVBoxLayout(self)
        top = QHBoxLayout()
        self.state_label = QLabel("")
        self.state_label.setWordWrap(True)
        top.addWidget(self.state_label, 1)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setToolTip("Stop after the current step and write the last checkpoint")
        self.resume_button = QPushButton("Resume")
        self.resume_button.setToolTip("Continue the interrupted run from its last checkpoint")
        top.addWidget(self.cancel_button)
        top.addWidget(self.resume_button)
        lay.addLayout(top)
        prog = QHBoxLayout()
        self.progress = QProgressBar()
        self.progress.setRange(0, 1000)
        self.progress.setFormat("%p%")
        self.eta_label = QLabel("")
        self.eta_label.setMinimumWidth(250)
        self.eta_label.setAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        prog.addWidget(self.progress, 1)
        prog.addWidget(self.eta_label)
        lay.addLayout(prog)
        metrics = QHBoxLayout()
        self.metric_labels: dict[str, QLabel] = {}
        for key, text in (("loss", "Loss"), ("dice", "Val Dice LV / Myo / RV"), ("psnr", "Val PSNR"),
                          ("ssim", "Val SSIM")):
            box = QVBoxLayout()
            title = muted(text)
            title.setWordWrap(False)
            value = QLabel("–")
            value.setObjectName("bigNumber")
            box.addWidget(title)
            box.addWidget(value)
            self.metric_labels[key] = value
            self.metric_labels[key + "_title"] = title
            metrics.addLayout(box)
            metrics.addSpacing(18)
        metrics.addStretch(1)
        lay.addLayout(metrics)
        plots = QHBoxLayout()
        self.loss_plot = CurvePlot("Training loss")
        self.val_plot = CurvePlot("Validation", y_range=(0.0, 1.0))
        plots.addWidget(self.loss_plot, 1)
        plots.addWidget(self.val_plot, 1)
        lay.addLayout(plots, 3)
        self.log_view = QPlainTextEdit()
        self.log_view.setReadOnly(True)
        self.log_view.setMaximumBlockCount(3000)
        self.log_view.setPlaceholderText("log")
        self.log_view.setStyleSheet("font-family: monospace; font-size: 9pt;")
        lay.addWidget(self.log_view, 1)
        self.cancel_button.clicked.connect(self.cancel)
        self.resume_button.clicked.connect(lambda: self.start(resume=True))
        self._update_buttons()

    def initializePage(self) -> None:  # noqa: N802
        if self.proc is None or not self.proc.is_running():
            self.start(resume=self.wiz.settings_page.resume)

    def cleanupPage(self) -> None:  # noqa: N802  (Back: the output folder may now hold a run)
        self.wiz.settings_page.check_out()

    def isComplete(self) -> bool:  # noqa: N802
        return not self.running() and self.status == "done"

    def running(self) -> bool:
        return self.proc is not None and self.proc.is_running()

    # --- control ----------------------------------------------------------------------------------------
    def start(self, resume: bool = False) -> CliProcess | None:
        if self.running():
            return None
        args, env = self.wiz.settings_page.command(resume)
        kind = self.wiz.kind
        self.status = ""
        self.step, self.total, self._t_first = 0, 0, None
        if not resume:
            self.events, self.val = [], []
            self.loss_plot.clear()
            self.val_plot.clear()
            for k in ("loss", "dice", "psnr", "ssim"):
                self.metric_labels[k].setText("–")
        vama, real = kind == VAMA, kind == REAL
        self.val_plot.title = ("Training losses per epoch (V-AMA)" if vama else
                               "Held-out subjects: Dice per structure (they never choose the checkpoint)" if real
                               else "Validation (Dice per structure, SSIM)")
        self.val_plot.y_range = None if vama else (0.0, 1.0)
        self.metric_labels["dice_title"].setText("Held-out Dice LV / Myo / RV" if real else "Val Dice LV / Myo / RV")
        for k in ("dice", "psnr", "ssim"):
            shown = not vama and (k == "dice" or not real)
            self.metric_labels[k + "_title"].setVisible(shown)
            self.metric_labels[k].setVisible(shown)
        self.state_label.setStyleSheet("")
        self.proc = CliProcess(args, env, parent=self)
        self.proc.event.connect(self.on_event)
        self.proc.log.connect(self.log_view.appendPlainText)
        self.proc.finished.connect(self._on_finished)
        what = {GEMINI: "Gemini-GAN", REAL: "Gemini-GAN (real studies)", VAMA: "V-AMA adapter"}[kind]
        self.state_label.setText(f"{'Resuming' if resume else 'Starting'} {what} training in "
                                 f"{self.wiz.settings_page.out_path}…")
        self.progress.setValue(0)
        self.eta_label.setText("preparing data…")
        self.proc.start()
        self._update_buttons()
        self.completeChanged.emit()
        return self.proc

    def cancel(self) -> None:
        if self.running():
            self.proc.cancel()
            self.state_label.setText("Stopping after the current step and writing the last checkpoint…")
            self.cancel_button.setEnabled(False)

    def _update_buttons(self) -> None:
        running = self.running()
        self.cancel_button.setEnabled(running)
        self.cancel_button.setVisible(running)
        resumable = (not running and self.status in ("interrupted", "cancelled", "failed")
                     and run_state(self.wiz.run_kind, self.wiz.settings_page.out_path) != "none")
        self.resume_button.setEnabled(resumable)
        self.resume_button.setVisible(resumable)
        if self.wiz.button(QWizard.WizardButton.BackButton) is not None:
            self.wiz.button(QWizard.WizardButton.BackButton).setEnabled(not running)

    # --- events ------------------------------------------------------------------------------------------
    def on_event(self, e: dict) -> None:
        self.events.append(e)
        self._show_event(e)
        self.eventReceived.emit(e)

    def _show_event(self, e: dict) -> None:
        kind = e.get("event")
        line = event_line(e)
        if line:
            self.log_view.appendPlainText(line)
        if "total_steps" in e:
            self.total = int(e["total_steps"]) or self.total
        if kind == "start":
            resumed = e.get("resumed") or e.get("step", 0) > 0
            dev = e.get("device", "")
            self.state_label.setText(
                f"{'Resumed at step ' + str(e.get('step')) if resumed else 'Training'} on {dev}: "
                f"{self.total} steps" + (f", {e['n_train_items']} training items, {e['n_val']} validation samples"
                                         if "n_train_items" in e else ""))
            self.step = int(e.get("step", 0))
        elif kind == "resume":
            self.step = int(e.get("step", 0))
        elif kind == "align":  # V-AMA: landmark alignment of each source study before training
            self.eta_label.setText(f"aligning {e.get('source')} -> {e.get('target')} ({e.get('index')}/{e.get('total')})")
        elif kind == "step":
            self.step = int(e["step"])
            if self._t_first is None:
                self._t_first = (time.monotonic(), self.step)
            if "losses" in e:  # V-AMA: the total loss of each stage (the parts are in the epoch plot)
                losses = {f"{e.get('stage', '')} total".strip(): e["losses"].get("total", float("nan"))}
            else:
                losses = {k: e[k] for k in ("loss", "ce", "mse") if k in e}
            for k, v in losses.items():
                self.loss_plot.add_point(k, self.step, v)
            main = losses.get("loss", next(iter(losses.values()), None))
            if main is not None:
                self.metric_labels["loss"].setText(f"{main:.4f}")
            self._progress(e.get("eta_s"))
        elif kind == "val":
            self.val.append(e)
            for key, text in DICE_KEYS:
                self.val_plot.add_point(f"Dice {text}", e["step"], e.get(key))
            if self.wiz.kind != REAL:
                self.val_plot.add_point("SSIM", e["step"], e.get("ssim"))
            self.metric_labels["dice"].setText(" / ".join(fmt_dice(e.get(k)) for k, _ in DICE_KEYS))
            self.metric_labels["psnr"].setText(f"{e.get('psnr', float('nan')):.2f} dB")
            self.metric_labels["ssim"].setText(f"{e.get('ssim', float('nan')):.3f}")
        elif kind == "epoch":  # V-AMA: mean losses per epoch
            self.step = int(e["step"])
            for k, v in (e.get("losses") or {}).items():
                self.val_plot.add_point(f"{e.get('stage', '')} {k}".strip(), self.step, v)
            self._progress(None)
        elif kind in ("done", "interrupted", "stopped"):
            self.step = int(e.get("step", self.step))
            self._progress(0.0 if kind == "done" else None)
            if kind == "done" and self.wiz.kind == REAL:
                self.eta_label.setText("comparing the models on the held-out subjects…")
        elif kind == "compare":
            self.state_label.setText(
                f"Training finished. Comparing the {'starting' if e.get('model') == 'before' else 'new'} model on "
                f"held-out subject {e.get('subject')} ({e.get('index')}/{e.get('total')}) through the whole pipeline…")

    def _progress(self, eta: float | None) -> None:
        if self.total:
            self.progress.setValue(int(1000 * self.step / self.total))
        if eta is None and self._t_first is not None and self.step > self._t_first[1] and self.total:
            t0, s0 = self._t_first
            eta = (time.monotonic() - t0) / (self.step - s0) * max(0, self.total - self.step)
        self.eta_label.setText(f"step {self.step}/{self.total}   ETA {fmt_time(eta)}")

    def _on_finished(self, status: str, code: int) -> None:
        out = self.wiz.settings_page.out_path
        if status == "cancelled" and run_state(self.wiz.run_kind, out) != "none":
            status = "interrupted"  # V-AMA: cancelled after writing its checkpoint
        self.status = status
        if status == "done":
            self.state_label.setText("Training finished. Click Next for the final metrics and to use the model."
                                     if self.wiz.kind != REAL else "Training and the comparison finished. Click "
                                     "Next for the starting and the new model side by side.")
            self.state_label.setStyleSheet(f"color: {OK_COLOUR};")
        elif status == "interrupted":
            self.state_label.setText(f"Stopped at step {self.step}; the last checkpoint is in {out}. "
                                     "Resume continues from it.")
            self.state_label.setStyleSheet(f"color: {NOTE_COLOUR};")
        elif status == "cancelled":
            self.state_label.setText("Cancelled before the first checkpoint: nothing to resume.")
            self.state_label.setStyleSheet(f"color: {NOTE_COLOUR};")
        else:
            msg = self.proc.error_line if self.proc else ""
            extra = " The last checkpoint is kept: Resume continues from it." if run_state(
                self.wiz.run_kind, out) != "none" else ""
            self.state_label.setText(f"Training failed: {msg or 'see the log'}.{extra}")
            self.state_label.setStyleSheet(f"color: {BAD_COLOUR};")
        self._update_buttons()
        self.completeChanged.emit()
        self.runFinished.emit(status)
