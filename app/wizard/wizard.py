"""Tools > Train a model…: a QWizard that trains Gemini-GAN or a V-AMA adapter with `gemini-cmr train`.

Pages: what to train -> data (checked subject by subject with core's own checks) -> settings -> run (a
separate `gemini-cmr train … --progress-json` process: live curves, metrics, ETA, log, Cancel, Resume)
-> finish (final metrics, "Use this model now"). Nothing here trains or checks data itself: the data
checks are `core.train.data.check_subjects` / `core.train.vama.check_vama_data` and the training is the CLI.
"""

from __future__ import annotations

import json
import logging
import os
import re
import time
from pathlib import Path

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QColor
from PySide6.QtWidgets import (
    QApplication,
    QButtonGroup,
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QMessageBox,
    QPlainTextEdit,
    QProgressBar,
    QPushButton,
    QRadioButton,
    QSpinBox,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
    QWizard,
    QWizardPage,
)

from gemini_cmr.app.settings import Settings
from gemini_cmr.app.wizard.plot import CurvePlot
from gemini_cmr.app.wizard.process import CliProcess
from gemini_cmr.app.workers import Task

log = logging.getLogger(__name__)

GEMINI, VAMA = "gemini", "vama"
PAGE_KIND, PAGE_DATA, PAGE_SETTINGS, PAGE_RUN, PAGE_FINISH = range(5)
OK_COLOUR, BAD_COLOUR, NOTE_COLOUR = "#28cd50", "#ff6b6b", "#f0b050"
DICE_KEYS = (("lv_cavity", "LV"), ("lv_myocardium", "Myo"), ("rv_cavity", "RV"))


def _muted(text: str = "") -> QLabel:
    lab = QLabel(text)
    lab.setObjectName("muted")
    lab.setWordWrap(True)
    return lab


def _fmt_time(seconds: float | None) -> str:
    if seconds is None:
        return "--:--"
    s = int(round(seconds))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60:02d}:{s % 60:02d}"


def detect_devices() -> list[tuple[str, str]]:
    """[(label, value)]: "auto", every CUDA GPU torch sees ("cuda:N"), then "cpu" (`core.device`)."""
    try:
        from gemini_cmr.core.device import available_devices
    except (ImportError, ValueError, OSError, AttributeError) as exc:  # torch cannot load: CPU only
        log.info("GPU detection failed: %s", exc)
        return [("auto (GPU if available)", "auto"), ("CPU", "cpu")]
    return available_devices()


def run_state(kind: str, out: Path) -> str:
    """What `out` holds: "none", "run" (a checkpoint to resume), or "finished" (a finished model too)."""
    if kind == GEMINI:
        state = out / "last" / "state.json"
        if state.exists():
            try:
                meta = json.loads(state.read_text(encoding="utf-8"))
                return "finished" if int(meta["step"]) >= int(meta["total_steps"]) else "run"
            except (OSError, ValueError, KeyError, TypeError):
                return "finished"  # unreadable: never offer to resume it, never overwrite it
    elif (out / "checkpoints" / "last.json").exists():
        return "finished" if (out / "adapter.safetensors").exists() else "run"
    return "none"


def writable_problem(out: Path) -> str:
    """'' when `out` can be created/written, else why not."""
    if not str(out).strip():
        return "choose an output folder"
    p = out
    while not p.exists():
        if p.parent == p:
            return "no existing parent folder"
        p = p.parent
    if not p.is_dir():
        return f"{p} is a file, not a folder"
    if not os.access(p, os.W_OK | os.X_OK):
        return f"{p} is not writable"
    return ""


def new_run_name(out: Path) -> Path:
    base = re.sub(r"-\d+$", "", out.name) or "run"
    for i in range(2, 1000):
        cand = out.with_name(f"{base}-{i}")
        if not cand.exists():
            return cand
    return out.with_name(f"{base}-{int(time.time())}")


# ==========================================================================================================
# page 1: what to train
# ==========================================================================================================
class KindPage(QWizardPage):
    def __init__(self, wizard: TrainWizard):
        super().__init__()
        self.wiz = wizard
        self.setTitle("What do you want to train?")
        self.setSubTitle("Both run the same training code as the command line (gemini-cmr train).")
        lay = QVBoxLayout(self)
        self.gemini_radio = QRadioButton("Gemini-GAN: super-resolution + 3D segmentation, from paired LR/HR data")
        self.vama_radio = QRadioButton("V-AMA adapter: make studies from a new scanner/domain work with a "
                                       "Gemini-GAN model")
        self.group = QButtonGroup(self)
        self.group.addButton(self.gemini_radio)
        self.group.addButton(self.vama_radio)
        self.gemini_radio.setChecked(True)
        lay.addWidget(self.gemini_radio)
        lay.addWidget(_muted("Needs subjects with a low-resolution (LR) cine stack and its high-resolution (HR) "
                             "image and labels, listed in a manifest.json (the paired layout written by "
                             "gemini-cmr synth). You can generate phantoms on the next page."))
        lay.addSpacing(12)
        lay.addWidget(self.vama_radio)
        lay.addWidget(_muted("Needs LR studies of the new scanner (source, labels optional) and LR studies of "
                             "the domain Gemini-GAN was trained on (target): a paired dataset folder, a folder of "
                             "NIfTI studies or ACDC-style subject folders, at least 4 studies each."))
        lay.addStretch(1)
        self.gemini_radio.toggled.connect(lambda _: self.wiz.kind_changed())

    @property
    def kind(self) -> str:
        return GEMINI if self.gemini_radio.isChecked() else VAMA


# ==========================================================================================================
# page 2: data
# ==========================================================================================================
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


class DataPage(QWizardPage):
    checked = Signal()  # a check finished (rows in the table)

    def __init__(self, wizard: TrainWizard):
        super().__init__()
        self.wiz = wizard
        self.rows: list[tuple[str, bool, str]] = []
        self.splits: dict[str, int] = {}
        self.problem = ""
        self.task: Task | None = None
        self.synth: CliProcess | None = None
        self._pending = False
        self.setTitle("Training data")
        lay = QVBoxLayout(self)

        # Gemini-GAN: one paired dataset, or phantoms
        self.gemini_box = QGroupBox("Paired LR/HR dataset")
        g = QGridLayout(self.gemini_box)
        self.data_edit = FolderEdit("folder with manifest.json (paired layout)")
        g.addWidget(QLabel("Dataset"), 0, 0)
        g.addWidget(self.data_edit, 0, 1, 1, 5)
        self.n_subjects = QSpinBox()
        self.n_subjects.setRange(1, 500)
        self.n_subjects.setValue(10)
        self.n_subjects.setToolTip("Number of phantom subjects (about 70% train, 15% validation, 15% test)")
        self.n_phases = QSpinBox()
        self.n_phases.setRange(2, 50)
        self.n_phases.setValue(20)
        self.n_phases.setToolTip("Cardiac phases per phantom cine")
        self.synth_button = QPushButton("Generate phantoms…")
        self.synth_button.setToolTip("Write a paired phantom dataset with gemini-cmr synth and use it")
        synth_row = QHBoxLayout()
        synth_row.setContentsMargins(0, 0, 0, 0)
        for w in (self.synth_button, QLabel("  subjects"), self.n_subjects, QLabel("  phases"), self.n_phases):
            synth_row.addWidget(w)
        synth_row.addStretch(1)
        g.addWidget(QLabel("or"), 1, 0)
        g.addLayout(synth_row, 1, 1, 1, 5)
        g.addWidget(_muted("ACDC-style folders (patientNNN with frames and _gt labels) hold no high-resolution "
                           "truth, so Gemini-GAN cannot be trained on them; they can be the source or target of "
                           "a V-AMA adapter."), 2, 0, 1, 6)
        g.setColumnStretch(1, 1)
        lay.addWidget(self.gemini_box)

        # V-AMA: source and target domains
        self.vama_box = QGroupBox("Source and target studies")
        f = QFormLayout(self.vama_box)
        self.source_edit = FolderEdit("LR studies of the new scanner (labels optional)")
        self.target_edit = FolderEdit("LR studies of the Gemini-GAN training domain")
        f.addRow("Source (new scanner)", self.source_edit)
        f.addRow("Target (training domain)", self.target_edit)
        f.addRow(_muted("Each: a paired dataset folder (manifest.json, split 'train'), a folder of NIfTI "
                        "studies (labels as NAME_labels.nii.gz / _gt / _seg) or subject folders (ACDC-style)."))
        lay.addWidget(self.vama_box)

        self.status = QLabel("")
        self.status.setWordWrap(True)
        lay.addWidget(self.status)
        self.table = QTableWidget(0, 3)
        self.table.setHorizontalHeaderLabels(["Subject", "Check", "Problem"])
        self.table.verticalHeader().setVisible(False)
        self.table.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        self.table.setSelectionBehavior(QTableWidget.SelectionBehavior.SelectRows)
        hh = self.table.horizontalHeader()
        hh.setSectionResizeMode(0, QHeaderView.ResizeMode.ResizeToContents)
        hh.setSectionResizeMode(1, QHeaderView.ResizeMode.ResizeToContents)
        hh.setSectionResizeMode(2, QHeaderView.ResizeMode.Stretch)
        lay.addWidget(self.table, 1)
        self.split_label = QLabel("")
        lay.addWidget(self.split_label)

        self.data_edit.changed.connect(lambda _: self.run_check())
        self.source_edit.changed.connect(lambda _: self.run_check())
        self.target_edit.changed.connect(lambda _: self.run_check())
        self.synth_button.clicked.connect(self._ask_synth)

    # --- state -----------------------------------------------------------------------------------------
    def initializePage(self) -> None:  # noqa: N802
        kind = self.wiz.kind
        self.gemini_box.setVisible(kind == GEMINI)
        self.vama_box.setVisible(kind == VAMA)
        self.setSubTitle("Every subject is checked with the training code's own checks before anything starts; "
                         "fix or remove the subjects marked as problems.")
        self.run_check()

    def busy(self) -> bool:
        return (self.task is not None and self.task.is_running()) or (self.synth is not None and
                                                                       self.synth.is_running())

    def isComplete(self) -> bool:  # noqa: N802
        return (not self.busy() and bool(self.rows) and not self.problem
                and all(ok for _, ok, _ in self.rows))

    def folders(self) -> dict[str, str]:
        if self.wiz.kind == GEMINI:
            return {"data": self.data_edit.text()}
        return {"source": self.source_edit.text(), "target": self.target_edit.text()}

    # --- checking -------------------------------------------------------------------------------------
    def run_check(self) -> None:
        """Check the chosen folder(s) on a worker thread; the table shows one row per subject."""
        if self.busy():
            self._pending = True
            return
        self.rows, self.splits, self.problem = [], {}, ""
        self.table.setRowCount(0)
        self.split_label.setText("")
        kind, folders = self.wiz.kind, self.folders()
        if not all(folders.values()):
            self._set_status("Choose the data folder(s).", "")
            self.completeChanged.emit()
            return
        self._set_status("Checking every subject…", "")
        if kind == GEMINI:
            def check(progress, cancel):
                from gemini_cmr.core.train.data import SPLITS, check_subjects, read_manifest

                manifest = read_manifest(folders["data"])
                splits = {s: sum(1 for e in manifest["subjects"] if e["split"] == s) for s in SPLITS}
                return check_subjects(folders["data"], splits=("train", "val")), splits
        else:
            def check(progress, cancel):
                from gemini_cmr.core.train.vama import check_vama_data

                return check_vama_data(folders["source"], folders["target"]), {}
        self.task = Task(check, "check-data", self)
        self.task.finished.connect(self._on_checked)
        self.task.failed.connect(self._on_check_failed)
        self.task.done.connect(self._after_task)
        self.task.start()
        self.completeChanged.emit()

    def _after_task(self) -> None:
        self.completeChanged.emit()
        if self._pending:
            self._pending = False
            self.run_check()
        else:
            self.checked.emit()

    def _on_checked(self, result) -> None:
        rows, splits = result
        self.rows, self.splits = list(rows), dict(splits)
        self._fill_table(self.rows)
        bad = [r for r in self.rows if not r[1]]
        if self.wiz.kind == GEMINI:
            n_train, n_val = splits.get("train", 0), splits.get("val", 0)
            text = (f"Split (from manifest.json): {n_train} training, {n_val} validation, "
                    f"{splits.get('test', 0)} test subject(s) (test subjects are not used for training).")
            if n_train == 0:
                self.problem = "the manifest has no subjects with split 'train'"
            elif n_val == 0:
                text += "  No validation subjects: no validation metrics; the final weights are the model."
            self.split_label.setText(text)
        else:
            src = sum(1 for r in self.rows if r[0].startswith("source/"))
            tgt = sum(1 for r in self.rows if r[0].startswith("target/"))
            self.split_label.setText(f"{src} source and {tgt} target studies (split 'train' of manifests); "
                                     "V-AMA has no validation split: it reports its training losses.")
        if self.problem:
            self._set_status(f"Cannot train: {self.problem}.", BAD_COLOUR)
        elif bad:
            self._set_status(f"{len(bad)} problem(s) found: training cannot start until they are fixed.",
                             BAD_COLOUR)
        else:
            self._set_status(f"All {len(self.rows)} checked: ready.", OK_COLOUR)

    def _on_check_failed(self, message: str, details: str) -> None:
        self.rows = [("(dataset)", False, message)]
        self._fill_table(self.rows)
        hint = ""
        folder = Path(self.folders().get("data", ""))
        if self.wiz.kind == GEMINI and folder.is_dir() and not (folder / "manifest.json").exists():
            hint = " This is not a paired dataset (no manifest.json)."
            if any(p.name.startswith("patient") for p in folder.iterdir()):
                hint += " ACDC-style data cannot train Gemini-GAN (no HR truth); use it for a V-AMA adapter."
        self._set_status(f"Cannot use this folder: {message}.{hint}", BAD_COLOUR)

    def _fill_table(self, rows) -> None:
        self.table.setRowCount(len(rows))
        for i, (name, ok, problem) in enumerate(rows):
            items = (QTableWidgetItem(name), QTableWidgetItem("ok" if ok else "problem"), QTableWidgetItem(problem))
            items[1].setForeground(QColor(OK_COLOUR if ok else BAD_COLOUR))
            items[2].setToolTip(problem)
            for j, it in enumerate(items):
                self.table.setItem(i, j, it)

    def _set_status(self, text: str, colour: str) -> None:
        self.status.setText(text)
        self.status.setStyleSheet(f"color: {colour};" if colour else "")

    # --- phantoms ----------------------------------------------------------------------------------------
    def _ask_synth(self) -> None:
        start = str(Path(self.wiz.settings.last_dir) / "gemini-phantoms")
        path = QFileDialog.getExistingDirectory(self, "Folder for the phantom dataset (created inside it)",
                                                str(Path(start).parent))
        if path:
            self.generate_phantoms(Path(path) / "gemini-phantoms")

    def generate_phantoms(self, out: str | Path, subjects: int | None = None, phases: int | None = None) -> CliProcess:
        """Write a phantom dataset with `gemini-cmr synth` (separate process), then check and use it."""
        out = Path(out)
        if subjects is not None:
            self.n_subjects.setValue(subjects)
        if phases is not None:
            self.n_phases.setValue(phases)
        if (out / "manifest.json").exists():
            out = new_run_name(out)
        self.synth = CliProcess(["synth", out, "--subjects", self.n_subjects.value(), "--phases",
                                 self.n_phases.value()], parent=self)
        self.synth.log.connect(lambda line: self._set_status(line.replace("synth: ", "Generating phantoms: "), ""))
        self.synth.finished.connect(lambda status, code: self._synth_done(out, status))
        self.synth_button.setEnabled(False)
        self._set_status(f"Generating {self.n_subjects.value()} phantom subjects in {out}…", "")
        self.synth.start()
        self.completeChanged.emit()
        return self.synth

    def _synth_done(self, out: Path, status: str) -> None:
        self.synth_button.setEnabled(True)
        if status == "done":
            self.data_edit.set_text(str(out))
        else:
            self._set_status(f"Generating phantoms failed: {self.synth.error_line}", BAD_COLOUR)
            self.checked.emit()
        self.completeChanged.emit()


# ==========================================================================================================
# page 3: settings
# ==========================================================================================================
class SettingsPage(QWizardPage):
    def __init__(self, wizard: TrainWizard):
        super().__init__()
        self.wiz = wizard
        self.state = "none"
        self.resume = False
        self._devices: list[tuple[str, str]] | None = None
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
        self.config_edit = QLineEdit()
        self.config_edit.setPlaceholderText("optional: training config JSON (keys of core.train.gemini.TrainConfig)")
        self.config_edit.setToolTip("Advanced: a JSON file of Gemini-GAN training settings; the values above "
                                    "override it")
        for w in (self.epochs, self.max_steps, self.batch, self.lr, self.width_box, self.crop):
            w.setMaximumWidth(260)
        self.device.setMaximumWidth(480)
        form.addRow("Epochs", self.epochs)
        form.addRow("Max steps", self.max_steps)
        form.addRow("Batch size", self.batch)
        form.addRow("Learning rate", self.lr)
        form.addRow("Model width", self.width_box)
        form.addRow("Crop", self.crop)
        form.addRow("Device", self.device)
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

    def initializePage(self) -> None:  # noqa: N802
        kind = self.wiz.kind
        if self._devices is None:
            self._devices = detect_devices()
            for label, value in self._devices:
                self.device.addItem(label, value)
        if kind != self._kind:  # defaults per kind
            self._kind = kind
            self.epochs.setValue(100 if kind == GEMINI else 20)
            self.batch.setRange(1 if kind == GEMINI else 2, 256)
            self.batch.setValue(4 if kind == GEMINI else 8)
            self.crop.setValue(128 if kind == GEMINI else 64)
            base = Path(self.wiz.settings.last_dir) / ("gemini-run" if kind == GEMINI else "vama-run")
            self.out.set_text(str(base), emit=False)
            if not self.gemini_model.text():
                self.gemini_model.setText(self.wiz.settings.model)
        for w in (self.lr, self.width_box, self.config_edit):
            w.setEnabled(kind == GEMINI)
            self.form.labelForField(w).setEnabled(kind == GEMINI)
        self.gemini_model.setVisible(kind == VAMA)
        self.form.labelForField(self.gemini_model).setVisible(kind == VAMA)
        self.check_out()

    @property
    def out_path(self) -> Path:
        return Path(self.out.text()).expanduser()

    def check_out(self) -> None:
        self.resume = False
        out = self.out_path
        problem = writable_problem(out) if self.out.text() else "choose an output folder"
        self.state = "none"
        if not problem:
            self.state = run_state(self.wiz.kind, out)
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
        if self.wiz.kind == GEMINI and cfg and not Path(cfg).is_file():
            self._status(f"Advanced config: {cfg} not found.", BAD_COLOUR)
            return False
        if self.wiz.kind == GEMINI and self.crop.value() % 16:
            self._status("Crop must be a multiple of 16 for Gemini-GAN.", BAD_COLOUR)
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
        """Gemini-GAN: the advanced JSON (if any) overridden by the values on this page."""
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

    def command(self, resume: bool) -> tuple[list[str], dict[str, str]]:
        """`gemini-cmr` arguments and extra environment for this run (resume: continue RUN/last)."""
        kind, out, data = self.wiz.kind, self.out_path, self.wiz.data_page.folders()
        device, env = self.device_args()
        if kind == GEMINI:
            args = ["train", "gemini", "--data", data["data"], "--out", out, "--device", device, "--progress-json"]
            cfg_path = out / "wizard-config.json"
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


def _event_line(e: dict) -> str:
    """A readable log line for the events worth keeping in the log view (not every step)."""
    kind = e.get("event")
    if kind == "start":
        extra = (f", {e['n_train_items']} training items, {e['n_val']} validation samples, "
                 f"{e.get('generator_parameters', 0):,} generator parameters" if "n_train_items" in e else "")
        return (f"{'resumed at step ' + str(e.get('step')) if e.get('step') else 'started'}: "
                f"{e.get('total_steps')} steps on {e.get('device')}{extra}")
    if kind == "val":
        return (f"validation at step {e['step']}: Dice LV {e.get('lv_cavity', float('nan')):.3f}, "
                f"myo {e.get('lv_myocardium', float('nan')):.3f}, RV {e.get('rv_cavity', float('nan')):.3f}, "
                f"PSNR {e.get('psnr', float('nan')):.2f} dB, SSIM {e.get('ssim', float('nan')):.3f}"
                + ("  (best so far)" if e.get("best") else ""))
    if kind == "epoch":
        losses = ", ".join(f"{k} {v:.4f}" for k, v in (e.get("losses") or {}).items())
        return f"{e.get('stage', '')} stage epoch {e.get('epoch')} (step {e.get('step')}): {losses}"
    if kind in ("done", "interrupted", "stopped"):
        return f"{kind} at step {e.get('step')}/{e.get('total_steps')}" + (
            f" in {_fmt_time(e['elapsed_s'])}" if "elapsed_s" in e else "")
    if kind in ("data", "resume"):
        return ", ".join(f"{k} {v}" for k, v in e.items() if k not in ("event", "kind"))
    return ""


# ==========================================================================================================
# page 4: run
# ==========================================================================================================
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
            title = _muted(text)
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
        vama = kind == VAMA
        self.val_plot.title = "Training losses per epoch (V-AMA)" if vama else "Validation (Dice per structure, SSIM)"
        self.val_plot.y_range = None if vama else (0.0, 1.0)
        for k in ("dice", "psnr", "ssim"):
            self.metric_labels[k + "_title"].setVisible(not vama)
            self.metric_labels[k].setVisible(not vama)
        self.state_label.setStyleSheet("")
        self.proc = CliProcess(args, env, parent=self)
        self.proc.event.connect(self.on_event)
        self.proc.log.connect(self.log_view.appendPlainText)
        self.proc.finished.connect(self._on_finished)
        what = "Gemini-GAN" if kind == GEMINI else "V-AMA adapter"
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
                     and run_state(self.wiz.kind, self.wiz.settings_page.out_path) != "none")
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
        line = _event_line(e)
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
            self.val_plot.add_point("SSIM", e["step"], e.get("ssim"))
            self.metric_labels["dice"].setText(" / ".join(f"{e.get(k, float('nan')):.3f}" for k, _ in DICE_KEYS))
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

    def _progress(self, eta: float | None) -> None:
        if self.total:
            self.progress.setValue(int(1000 * self.step / self.total))
        if eta is None and self._t_first is not None and self.step > self._t_first[1] and self.total:
            t0, s0 = self._t_first
            eta = (time.monotonic() - t0) / (self.step - s0) * max(0, self.total - self.step)
        self.eta_label.setText(f"step {self.step}/{self.total}   ETA {_fmt_time(eta)}")

    def _on_finished(self, status: str, code: int) -> None:
        out = self.wiz.settings_page.out_path
        if status == "cancelled" and run_state(self.wiz.kind, out) != "none":
            status = "interrupted"  # V-AMA: cancelled after writing its checkpoint
        self.status = status
        if status == "done":
            self.state_label.setText("Training finished. Click Next for the final metrics and to use the model.")
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
                self.wiz.kind, out) != "none" else ""
            self.state_label.setText(f"Training failed: {msg or 'see the log'}.{extra}")
            self.state_label.setStyleSheet(f"color: {BAD_COLOUR};")
        self._update_buttons()
        self.completeChanged.emit()
        self.runFinished.emit(status)


# ==========================================================================================================
# page 5: finish
# ==========================================================================================================
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
        self.used_label = _muted("")
        row.addWidget(self.use_button)
        row.addWidget(self.used_label, 1)
        lay.addLayout(row)
        self.use_button.clicked.connect(self.use_model)

    def initializePage(self) -> None:  # noqa: N802
        kind, out = self.wiz.kind, self.wiz.settings_page.out_path
        rows: list[tuple[str, str]] = []
        if kind == GEMINI:
            best = out / "best"
            self.model_path = str(best if (best / "model.safetensors").exists() else out / "last")
            history = []
            try:
                history = json.loads((out / "history.json").read_text(encoding="utf-8"))
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
            self.model_path = str(out)
            epochs = [e for e in self.wiz.run_page.events if e.get("event") == "epoch"]
            for e in epochs[-2:]:
                for k, v in e.get("losses", {}).items():
                    rows.append((f"{e.get('stage')} stage, epoch {e.get('epoch')}: {k}", f"{v:.4f}"))
            what = "V-AMA adapter"
        steps = [e for e in self.wiz.run_page.events if e.get("event") in ("done", "start")]
        if steps and "elapsed_s" in steps[-1]:
            rows.append(("Training time", _fmt_time(steps[-1]["elapsed_s"])))
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


# ==========================================================================================================
class TrainWizard(QWizard):
    """Tools > Train a model…. `modelChosen(kind, path)` ("gemini-gan" | "vama") on "Use this model now"."""

    modelChosen = Signal(str, str)

    def __init__(self, parent=None, settings: Settings | None = None):
        super().__init__(parent)
        self.settings = settings or Settings()
        self.setWindowTitle("Train a model")
        self.setWizardStyle(QWizard.WizardStyle.ClassicStyle)
        self.setOption(QWizard.WizardOption.NoBackButtonOnLastPage, True)
        self.setOption(QWizard.WizardOption.NoCancelButtonOnLastPage, True)
        self.kind_page = KindPage(self)
        self.data_page = DataPage(self)
        self.settings_page = SettingsPage(self)
        self.run_page = RunPage(self)
        self.finish_page = FinishPage(self)
        for pid, page in ((PAGE_KIND, self.kind_page), (PAGE_DATA, self.data_page),
                          (PAGE_SETTINGS, self.settings_page), (PAGE_RUN, self.run_page),
                          (PAGE_FINISH, self.finish_page)):
            self.setPage(pid, page)
        self.setButtonText(QWizard.WizardButton.FinishButton, "Close")
        app = QApplication.instance()
        if app is not None:  # quitting the app stops a run gracefully (its last checkpoint is written)
            app.aboutToQuit.connect(self.stop_all)
        self.resize(1100, 820)

    @property
    def kind(self) -> str:
        return self.kind_page.kind

    def kind_changed(self) -> None:
        self.data_page.rows = []

    def reject(self) -> None:
        """Close/Cancel: a running training is stopped gracefully (last checkpoint written) first."""
        if self.run_page.running():
            if self.parent() is not None and QMessageBox.question(
                    self, "Stop training?", "Training is running. Stop it (the last checkpoint is written)?"
            ) != QMessageBox.StandardButton.Yes:
                return
            self.stop_all()
        super().reject()

    def stop_all(self, wait_ms: int = 60000) -> None:
        for proc in (self.run_page.proc, self.data_page.synth):
            if proc is not None and proc.is_running():
                proc.cancel()
                if not proc.wait(wait_ms):
                    proc.proc.kill()
                    proc.wait(5000)
        if self.data_page.task is not None and self.data_page.task.is_running():
            self.data_page.task.cancel()
            self.data_page.task.wait(30000)

    def closeEvent(self, event):  # noqa: N802  (the window's X: QDialog calls reject(), which asks)
        super().closeEvent(event)
        if not self.isVisible():
            self.stop_all()
