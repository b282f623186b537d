"""Wizard page 2: the training data, checked subject by subject with the training code's own checks
(`core.train.data.check_subjects`, `core.vama.domains.check_vama_data`) on a worker thread; phantoms can be
generated with `gemini-cmr synth`."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtCore import Signal
from PySide6.QtGui import QColor
from PySide6.QtWidgets import (
    QFileDialog,
    QFormLayout,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPushButton,
    QSpinBox,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWizardPage,
)

from gemini_cmr.app.wizard.common import BAD_COLOUR, GEMINI, OK_COLOUR, VAMA, FolderEdit, muted
from gemini_cmr.app.wizard.folders import new_run_name
from gemini_cmr.app.wizard.process import CliProcess
from gemini_cmr.app.workers import Task
from gemini_cmr.core.vama import MIN_SLICES

if TYPE_CHECKING:
    from gemini_cmr.app.wizard.wizard import TrainWizard


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
        g.addWidget(muted("ACDC-style folders (patientNNN with frames and _gt labels) hold no high-resolution "
                           "truth: train on them with \"Real studies with labels\" (Back, previous page); they can "
                           "also be the source or target of a V-AMA adapter."), 2, 0, 1, 6)
        g.setColumnStretch(1, 1)
        lay.addWidget(self.gemini_box)

        # V-AMA: source and target domains
        self.vama_box = QGroupBox("Source and target studies")
        f = QFormLayout(self.vama_box)
        self.source_edit = FolderEdit("studies of the new scanner (labels optional)")
        self.target_edit = FolderEdit("studies of the Gemini-GAN training domain, e.g. acdc:/path/to/training")
        f.addRow("Source (new scanner)", self.source_edit)
        f.addRow("Target (training domain)", self.target_edit)
        f.addRow(muted(f"Each: what Super-resolve opens: a folder of studies (each DICOM series folder or zip, "
                       f"NIfTI file or subject folder is one study), a paired dataset folder (manifest.json, "
                       f"split 'train'), or a cohort typed as acdc:PATH, mnms:PATH, ukbb:PATH or "
                       f"pairs:MANIFEST.json. Any slice orientation. Each needs at least {MIN_SLICES} 2D slices "
                       f"(slices x phases; one 20-phase cine of 10 slices is 200): a few long cines are enough."))
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
                from gemini_cmr.core.io.manifest import SPLITS, read_manifest
                from gemini_cmr.core.train.data import check_subjects

                manifest = read_manifest(folders["data"])
                splits = {s: sum(1 for e in manifest["subjects"] if e["split"] == s) for s in SPLITS}
                return check_subjects(folders["data"], splits=("train", "val")), splits
        else:
            def check(progress, cancel):
                from gemini_cmr.core.train.vama import cohort_studies
                from gemini_cmr.core.vama.domains import check_vama_data

                return check_vama_data(folders["source"], folders["target"], cohort=cohort_studies), {}
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
                hint += (" ACDC-style data have no HR truth: choose \"Real studies with labels\" on the previous "
                         "page, or use them for a V-AMA adapter.")
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
