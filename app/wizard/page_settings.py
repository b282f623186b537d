"""Wizard page 3: training settings, device and output folder (resume an interrupted run there, or
a new name); builds the `gemini-cmr train` command line. Real studies with labels: the model to start
from (the shipped research weights by default), the real-data recipe scaled to the cohort
(`core.train.semi.finetune_config`) and a time estimate from a training step measured on the chosen
device."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtCore import QTimer
from PySide6.QtWidgets import (
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QSpinBox,
    QWidget,
    QWizardPage,
)

from gemini_cmr.app.wizard.common import (
    BAD_COLOUR,
    GEMINI,
    NOTE_COLOUR,
    OK_COLOUR,
    REAL,
    VAMA,
    FolderEdit,
    muted,
)
from gemini_cmr.app.wizard.events import fmt_time
from gemini_cmr.app.wizard.folders import new_run_name, writable_problem
from gemini_cmr.app.wizard.real import SUBJECTS_JSON
from gemini_cmr.app.workers import Task
from gemini_cmr.core.io.atomic import atomic_write_text
from gemini_cmr.core.train.runs import run_state

if TYPE_CHECKING:
    from gemini_cmr.app.wizard.wizard import TrainWizard


log = logging.getLogger(__name__)

WIZARD_CONFIG = "wizard-config.json"  # in the run folder: the Gemini-GAN training config this page wrote


def detect_devices() -> list[tuple[str, str]]:
    """[(label, value)]: "auto", every CUDA GPU torch sees ("cuda:N"), then "cpu" (`core.device`)."""
    try:
        from gemini_cmr.core.device import available_devices
    except (ImportError, ValueError, OSError, AttributeError) as exc:  # torch cannot load: CPU only
        log.info("GPU detection failed: %s", exc)
        return [("auto (GPU if available)", "auto"), ("CPU", "cpu")]
    return available_devices()


class SettingsPage(QWizardPage):
    def __init__(self, wizard: TrainWizard):
        super().__init__()
        self.wiz = wizard
        self.state = "none"
        self.resume = False
        self._devices: list[tuple[str, str]] | None = None
        self.estimate_task: Task | None = None
        self.step_seconds: dict[tuple, float] = {}  # measured step time per (device, model, batch, crop)
        self._real_defaults: tuple | None = None
        self.setTitle("Training settings")
        self.setSubTitle("The defaults suit a first run; hover over a setting for what it does.")
        form = QFormLayout(self)
        self.epochs = QSpinBox()
        self.epochs.setRange(1, 100000)
        self.epochs.setToolTip("Passes over the training subjects (V-AMA: per stage, target then source)")
        self.max_steps = QSpinBox()
        self.max_steps.setRange(0, 10_000_000)
        self.max_steps.setSpecialValueText("no limit")
        self.max_steps.setToolTip("Stop after this many optimiser steps in total (0 = no limit: the epochs decide)")
        self.batch = QSpinBox()
        self.batch.setRange(1, 256)
        self.batch.setToolTip("Training crops per optimiser step; lower it if the GPU runs out of memory")
        self.lr = QDoubleSpinBox()
        self.lr.setDecimals(6)
        self.lr.setRange(1e-6, 1.0)
        self.lr.setSingleStep(1e-4)
        self.lr.setValue(1e-4)
        self.lr.setToolTip("Adam learning rate (cosine decay to 5% over the run). Gemini-GAN only")
        self.width_box = QComboBox()
        for w, text in ((8, "8 (tiny, fastest)"), (16, "16 (default, CPU-friendly)"), (32, "32"),
                        (64, "64 (the paper's, GPU)")):
            self.width_box.addItem(text, w)
        self.width_box.setCurrentIndex(1)
        self.width_box.currentIndexChanged.connect(lambda _: self.width_box.setProperty("touched", True))
        self.width_box.setToolTip("Base width of the generator: widths w-2w-4w-8w-8w. Wider is more accurate "
                                  "and slower. Gemini-GAN only")
        self.crop = QSpinBox()
        self.crop.setRange(16, 512)
        self.crop.setSingleStep(16)
        self.crop.setToolTip("In-plane training crop in pixels (Gemini-GAN: SR pixels, a multiple of 16; "
                             "V-AMA: LR pixels)")
        self.device = QComboBox()
        self.device.setToolTip("Where training runs: a detected GPU, or the CPU")
        self.gemini_model = QLineEdit()
        self.gemini_model.setPlaceholderText("bundled gemini-phantom model")
        self.gemini_model.setToolTip("The Gemini-GAN model the adapter is for (empty = the bundled model); it also "
                                     "segments unlabelled studies for the alignment landmarks")
        self.out = FolderEdit("run folder for checkpoints and the trained model")
        self.out.edit.setToolTip("Checkpoints, logs and the trained model are written here")
        self.out_status = QLabel("")
        self.out_status.setWordWrap(True)
        self.resume_button = QPushButton("Resume that run")
        self.resume_button.setToolTip("Continue the interrupted run in this folder from its last checkpoint")
        self.rename_button = QPushButton("Use a new folder name")
        choice = QHBoxLayout()
        choice.addWidget(self.resume_button)
        choice.addWidget(self.rename_button)
        choice.addStretch(1)
        self.choice = QWidget()
        self.choice.setLayout(choice)
        choice.setContentsMargins(0, 0, 0, 0)
        self.init_box = QComboBox()
        self.init_box.addItem("the shipped research weights (gemini-acdc): fine-tune", "shipped")
        self.init_box.addItem("another model folder: fine-tune it", "other")
        self.init_box.addItem("nothing: train from scratch", "scratch")
        self.init_box.setToolTip("Fine-tuning starts from trained weights (fewer steps, a tenth of the learning "
                                 "rate); from scratch needs far more data and time")
        self.init_edit = FolderEdit("model folder to start from (model.safetensors + config.json)")
        self.estimate_label = muted("")
        self.config_edit = QLineEdit()
        self.config_edit.setPlaceholderText("optional: training config JSON (keys of core.train.gemini.TrainConfig)")
        self.config_edit.setToolTip("Advanced: a JSON file of Gemini-GAN training settings; the values above "
                                    "override it")
        for w in (self.epochs, self.max_steps, self.batch, self.lr, self.width_box, self.crop):
            w.setMaximumWidth(260)
        self.device.setMaximumWidth(480)
        form.addRow("Start from", self.init_box)
        form.addRow("Model to start from", self.init_edit)
        form.addRow("Epochs", self.epochs)
        form.addRow("Max steps", self.max_steps)
        form.addRow("Batch size", self.batch)
        form.addRow("Learning rate", self.lr)
        form.addRow("Model width", self.width_box)
        form.addRow("Crop", self.crop)
        form.addRow("Device", self.device)
        form.addRow("Estimated time", self.estimate_label)
        form.addRow("Gemini-GAN model", self.gemini_model)
        form.addRow("Output folder", self.out)
        form.addRow("", self.out_status)
        form.addRow("", self.choice)
        form.addRow("Advanced config", self.config_edit)
        self.form = form
        self.out.changed.connect(lambda _: self.check_out())
        self.out.edit.textChanged.connect(lambda _: self.check_out())
        self.resume_button.clicked.connect(self.choose_resume)
        self.rename_button.clicked.connect(self.choose_new_name)
        self._kind = None
        self._estimate_timer = QTimer(self)
        self._estimate_timer.setSingleShot(True)
        self._estimate_timer.setInterval(400)
        self._estimate_timer.timeout.connect(self.estimate_time)
        self.init_box.currentIndexChanged.connect(lambda _: self._init_changed())
        self.init_edit.changed.connect(lambda _: self._init_changed())
        for w in (self.max_steps, self.batch, self.crop, self.epochs):
            w.valueChanged.connect(lambda _: self._schedule_estimate())
        self.device.currentIndexChanged.connect(lambda _: self._schedule_estimate())

    def initializePage(self) -> None:  # noqa: N802
        kind = self.wiz.kind
        if self._devices is None:
            self._devices = detect_devices()
            for label, value in self._devices:
                self.device.addItem(label, value)
        if kind != self._kind:  # defaults per kind
            self._kind = kind
            self.epochs.setValue(100 if kind == GEMINI else 20)
            self.batch.setRange(2 if kind == VAMA else 1, 256)
            self.batch.setValue(8 if kind == VAMA else 4)
            self.crop.setValue(64 if kind == VAMA else 128)
            name = {GEMINI: "gemini-run", VAMA: "vama-run", REAL: "gemini-finetune"}[kind]
            self.out.set_text(str(Path(self.wiz.settings.last_dir) / name), emit=False)
            if not self.gemini_model.text():
                self.gemini_model.setText(self.wiz.settings.model)
            self._real_defaults = None
        for w in (self.lr, self.config_edit):
            w.setEnabled(kind != VAMA)
            self.form.labelForField(w).setEnabled(kind != VAMA)
        self.gemini_model.setVisible(kind == VAMA)
        self.form.labelForField(self.gemini_model).setVisible(kind == VAMA)
        for w in (self.init_box, self.estimate_label):
            w.setVisible(kind == REAL)
            self.form.labelForField(w).setVisible(kind == REAL)
        if kind == REAL:
            self._apply_real_defaults()
        self._show_init_widgets()
        self.check_out()

    # --- real studies with labels: the model to start from, the scaled recipe, the time --------------------
    def init_path(self) -> str | None:
        """The model a real-studies run starts from (None: from scratch)."""
        choice = self.init_box.currentData()
        if choice == "shipped":
            from gemini_cmr.core.resources import acdc_model_path

            return str(acdc_model_path())
        if choice == "other":
            return self.init_edit.text() or None
        return None

    def _show_init_widgets(self) -> None:
        real = self.wiz.kind == REAL
        other = real and self.init_box.currentData() == "other"
        self.init_edit.setVisible(other)
        self.form.labelForField(self.init_edit).setVisible(other)
        scratch = real and self.init_box.currentData() == "scratch"
        self.width_box.setEnabled(self.wiz.kind == GEMINI or scratch)
        self.form.labelForField(self.width_box).setEnabled(self.wiz.kind == GEMINI or scratch)

    def _init_changed(self) -> None:
        self._show_init_widgets()
        if self.wiz.kind == REAL:
            self._real_defaults = None
            self._apply_real_defaults()

    def recipe(self) -> dict:
        """`finetune_config` for the checked cohort and the chosen starting model (scratch: the width box)."""
        from gemini_cmr.core.train.semi import finetune_config

        data = self.wiz.real_data_page
        init = self.init_path()
        w = int(self.width_box.currentData())
        model = None if init else {"widths": [w, 2 * w, 4 * w, 8 * w, 8 * w]}
        return finetune_config(data.train_items(), init, list(data.holdout), model)

    def _apply_real_defaults(self) -> None:
        """The scaled recipe's settings into the fields, once per cohort and starting model."""
        data = self.wiz.real_data_page
        key = (data.data_arg, tuple(data.holdout), data.train_items(), self.init_box.currentData(),
               self.init_edit.text())
        if key == self._real_defaults:
            self._schedule_estimate()
            return
        try:
            cfg = self.recipe()
        except Exception as exc:  # noqa: BLE001  (a starting model that cannot be read: said on the page)
            self.estimate_label.setText(f"Cannot read the model to start from: {exc}")
            self.estimate_label.setStyleSheet(f"color: {BAD_COLOUR};")
            return
        self._real_defaults = key
        self.epochs.setValue(int(cfg["epochs"]))
        self.max_steps.setValue(int(cfg.get("max_steps") or 0))
        self.batch.setValue(int(cfg["batch_size"]))
        self.lr.setValue(float(cfg["lr"]))
        self.crop.setValue(int(cfg["crop"]))
        self._schedule_estimate()

    def _schedule_estimate(self) -> None:
        if self.wiz.kind == REAL:
            self._estimate_timer.start()

    def estimate_time(self) -> Task | None:
        """Measure one training step on the chosen device (worker thread) and show the run's time."""
        if self.wiz.kind != REAL:
            return None
        if self.estimate_task is not None and self.estimate_task.is_running():
            self._schedule_estimate()
            return None
        try:
            cfg_dict = self.training_config()
        except Exception as exc:  # noqa: BLE001
            self.estimate_label.setText(f"No estimate: {exc}")
            return None
        device, _ = self.device_args()
        dev_label = self.device.currentText()
        key = (self.device.currentData(), json.dumps(cfg_dict["model"], sort_keys=True), cfg_dict["batch_size"],
               cfg_dict["crop"], cfg_dict.get("amp", "auto"))
        data = self.wiz.real_data_page

        def show(step_s: float) -> None:
            from gemini_cmr.core.train.semi import SemiConfig, estimate_seconds

            self.step_seconds[key] = step_s
            cfg = SemiConfig.from_dict(cfg_dict)
            total = estimate_seconds(cfg, step_s, data.holdout_items(), len(data.holdout))
            steps = cfg.max_steps or cfg.epochs
            self.estimate_label.setText(
                f"about {fmt_time(total)} on {dev_label}: {steps} steps of {step_s:.1f} s (one step measured "
                "here), the held-out validations and the before/after comparison")
            self.estimate_label.setStyleSheet("")

        if key in self.step_seconds:
            show(self.step_seconds[key])
            return None
        self.estimate_label.setText(f"measuring a training step on {dev_label}…")

        def measure(progress, cancel):
            from gemini_cmr.core.train.semi import SemiConfig, measure_step_seconds

            return measure_step_seconds(SemiConfig.from_dict(cfg_dict), device)

        self.estimate_task = Task(measure, "estimate-time", self)
        self.estimate_task.finished.connect(show)
        self.estimate_task.failed.connect(lambda msg, _: self.estimate_label.setText(f"No estimate: {msg}"))
        self.estimate_task.start()
        return self.estimate_task

    @property
    def out_path(self) -> Path:
        return Path(self.out.text()).expanduser()

    def check_out(self) -> None:
        self.resume = False
        out = self.out_path
        problem = writable_problem(out) if self.out.text() else "choose an output folder"
        self.state = "none"
        if not problem:
            self.state = run_state(self.wiz.run_kind, out)
        self.choice.setVisible(not problem and self.state != "none")
        self.resume_button.setVisible(self.state == "run")
        if problem:
            self._status(f"Output folder: {problem}.", BAD_COLOUR)
        elif self.state == "run":
            self._status("This folder holds an interrupted run: resume it, or train from scratch in a new folder.",
                         NOTE_COLOUR)
        elif self.state == "finished":
            self._status("This folder already holds a finished run: choose a new folder name.", NOTE_COLOUR)
        else:
            self._status("", "")
        self.completeChanged.emit()

    def choose_resume(self) -> None:
        self.resume = True
        self._status("The run will continue from its last checkpoint (its saved settings are used).", OK_COLOUR)
        self.completeChanged.emit()

    def choose_new_name(self) -> None:
        self.out.set_text(str(new_run_name(self.out_path)))

    def _status(self, text: str, colour: str) -> None:
        self.out_status.setText(text)
        self.out_status.setStyleSheet(f"color: {colour};" if colour else "")
        self.out_status.setVisible(bool(text))

    def isComplete(self) -> bool:  # noqa: N802
        if writable_problem(self.out_path) or not self.out.text():
            return False
        return self.state == "none" or (self.state == "run" and self.resume)

    def validatePage(self) -> bool:  # noqa: N802
        cfg = self.config_edit.text().strip()
        if self.wiz.kind != VAMA and cfg and not Path(cfg).is_file():
            self._status(f"Advanced config: {cfg} not found.", BAD_COLOUR)
            return False
        if self.wiz.kind != VAMA and self.crop.value() % 16:
            self._status("Crop must be a multiple of 16 for Gemini-GAN.", BAD_COLOUR)
            return False
        if self.wiz.kind == REAL and self.init_box.currentData() != "scratch":
            from gemini_cmr.core.errors import GeminiError
            from gemini_cmr.core.train.semi import init_model_config

            if not self.init_path():
                self._status("Choose the model folder to start from.", BAD_COLOUR)
                return False
            try:
                init_model_config(self.init_path())
            except GeminiError as exc:
                self._status(f"Model to start from: {exc}", BAD_COLOUR)
                return False
        return True

    # --- the command ------------------------------------------------------------------------------------
    def device_args(self) -> tuple[str, dict[str, str]]:
        """(--device value, environment): a chosen GPU N runs as `cuda` with CUDA_VISIBLE_DEVICES=N."""
        value = self.device.currentData() or "auto"
        if value.startswith("cuda:"):
            return "cuda", {"CUDA_VISIBLE_DEVICES": value.split(":", 1)[1]}
        return value, {}

    def training_config(self) -> dict:
        """Gemini-GAN: the advanced JSON (if any) overridden by the values on this page. Real studies: the
        scaled recipe, then the advanced JSON, then this page's values."""
        if self.wiz.kind == REAL:
            return self._real_training_config()
        cfg: dict = {}
        path = self.config_edit.text().strip()
        if path:
            cfg = json.loads(Path(path).read_text(encoding="utf-8"))
        w = int(self.width_box.currentData())
        model = dict(cfg.get("model", {}))
        if "widths" not in model or self.width_box.property("touched"):
            model["widths"] = [w, 2 * w, 4 * w, 8 * w, 8 * w]
        cfg.update(model=model, epochs=self.epochs.value(), batch_size=self.batch.value(), lr=self.lr.value(),
                   crop=self.crop.value())
        if self.max_steps.value():
            cfg["max_steps"] = self.max_steps.value()
        return cfg

    def _real_training_config(self) -> dict:
        cfg = self.recipe()
        path = self.config_edit.text().strip()
        if path:
            cfg.update(json.loads(Path(path).read_text(encoding="utf-8")))
        if self.init_box.currentData() == "scratch" and self.width_box.property("touched"):
            w = int(self.width_box.currentData())
            cfg["model"] = {**cfg["model"], "widths": [w, 2 * w, 4 * w, 8 * w, 8 * w]}
        cfg.update(epochs=self.epochs.value(), batch_size=self.batch.value(), lr=self.lr.value(),
                   crop=self.crop.value(), holdout=list(self.wiz.real_data_page.holdout))
        cfg["max_steps"] = self.max_steps.value() or None
        return cfg

    def command(self, resume: bool) -> tuple[list[str], dict[str, str]]:
        """`gemini-cmr` arguments and extra environment for this run (resume: continue RUN/last)."""
        kind, out = self.wiz.kind, self.out_path
        device, env = self.device_args()
        if kind == REAL:
            page = self.wiz.real_data_page
            args = ["train", "gemini", "--data", page.data_arg, "--out", out, "--device", device, "--progress-json"]
            cfg_path = out / WIZARD_CONFIG
            if not resume:
                cfg = self.training_config()
                out.mkdir(parents=True, exist_ok=True)
                if page.doc is not None:
                    atomic_write_text(out / SUBJECTS_JSON, json.dumps(page.doc, indent=2) + "\n")
                atomic_write_text(cfg_path, json.dumps(cfg, indent=2) + "\n")
                if cfg.get("init"):
                    args += ["--init", cfg["init"]]
            if cfg_path.exists():
                args += ["--config", cfg_path]
            if resume:
                args.append("--resume")
            return [str(a) for a in args], env
        data = self.wiz.data_page.folders()
        if kind == GEMINI:
            args = ["train", "gemini", "--data", data["data"], "--out", out, "--device", device, "--progress-json"]
            cfg_path = out / WIZARD_CONFIG
            if resume and cfg_path.exists():
                args += ["--config", cfg_path]
            elif not resume:
                out.mkdir(parents=True, exist_ok=True)
                cfg_path.write_text(json.dumps(self.training_config(), indent=2) + "\n", encoding="utf-8")
                args += ["--config", cfg_path]
        else:
            args = ["train", "vama", "--source", data["source"], "--target", data["target"], "--out", out,
                    "--epochs", self.epochs.value(), "--batch-size", self.batch.value(), "--crop", self.crop.value(),
                    "--device", device, "--progress-json"]
            if self.max_steps.value():
                args += ["--max-steps", self.max_steps.value()]
            if self.gemini_model.text().strip():
                args += ["--gemini", self.gemini_model.text().strip()]
        if resume:
            args.append("--resume")
        return [str(a) for a in args], env
