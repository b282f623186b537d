"""Wizard page 2 for "Real studies with labels": the cohort (a layout, a folder convention or a table),
checked subject by subject on a worker thread (`core.train.lr_data.check_subject`: geometry, label values
and convention, which structures each subject annotates), and the held-out split the wizard chooses
(`core.train.lr_data.choose_holdout`: stratified by group when groups are known). Nothing is written."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtCore import Signal
from PySide6.QtGui import QColor
from PySide6.QtWidgets import (
    QComboBox,
    QFormLayout,
    QHeaderView,
    QLabel,
    QSpinBox,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWizardPage,
)

from gemini_cmr.app.wizard.common import BAD_COLOUR, NOTE_COLOUR, OK_COLOUR, FolderEdit, muted
from gemini_cmr.app.wizard.real import (
    CONVENTIONS,
    LAYOUTS,
    SOURCES,
    SUBJECTS_JSON,
    default_holdout,
    list_subjects,
    split_problem,
)
from gemini_cmr.app.workers import Task

if TYPE_CHECKING:
    from gemini_cmr.app.wizard.wizard import TrainWizard

COLUMNS = ("Subject", "Group", "Split", "Check", "Structures annotated", "Labelled", "Convention", "Geometry",
           "Problem")


class RealDataPage(QWizardPage):
    checked = Signal()  # a check finished (rows in the table)

    def __init__(self, wizard: TrainWizard):
        super().__init__()
        self.wiz = wizard
        self.rows: list[dict] = []
        self.subjects: list = []
        self.holdout: list[str] = []
        self.doc: dict | None = None  # the subject table of a folder convention (written when training starts)
        self.source_kind, self.root = "", Path()
        self.problem = ""
        self.task: Task | None = None
        self._pending = False
        self.setTitle("Real studies with labels")
        self.setSubTitle("Studies with manual labels on the acquired slices (all or some structures). Every "
                         "subject is checked before anything starts; held-out subjects are never used to "
                         "choose the checkpoint.")
        lay = QVBoxLayout(self)
        form = QFormLayout()
        self.source_box = QComboBox()
        for key, label, _ in SOURCES:
            self.source_box.addItem(label, key)
        self.path_edit = FolderEdit("the cohort's folder")
        self.convention_box = QComboBox()
        for key, label in CONVENTIONS:
            self.convention_box.addItem(f"{key}: {label}", key)
        self.convention_box.setToolTip("How the label files number the structures (NIfTI and DICOM folders; a "
                                       "table gives it per subject; the layouts have their own)")
        self.holdout_spin = QSpinBox()
        self.holdout_spin.setRange(1, 100000)
        self.holdout_spin.setToolTip("Subjects kept out of training: the curves and the before/after figures "
                                     "are measured on them; they never choose the checkpoint")
        form.addRow("Source", self.source_box)
        form.addRow("Folder", self.path_edit)
        form.addRow("Label convention", self.convention_box)
        form.addRow("Held-out subjects", self.holdout_spin)
        self.form = form
        lay.addLayout(form)
        lay.addWidget(muted("Partial labels are fine: a subject that annotates only some structures (e.g. LV "
                             "endocardium and epicardium, no RV), or only some slices (contours), trains only "
                             "on what is annotated; the table says what each subject has."))
        self.status = QLabel("")
        self.status.setWordWrap(True)
        lay.addWidget(self.status)
        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setHorizontalHeaderLabels(list(COLUMNS))
        self.table.verticalHeader().setVisible(False)
        self.table.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        self.table.setSelectionBehavior(QTableWidget.SelectionBehavior.SelectRows)
        hh = self.table.horizontalHeader()
        for i in range(len(COLUMNS) - 1):
            hh.setSectionResizeMode(i, QHeaderView.ResizeMode.ResizeToContents)
        hh.setSectionResizeMode(len(COLUMNS) - 1, QHeaderView.ResizeMode.Stretch)
        lay.addWidget(self.table, 1)
        self.split_label = QLabel("")
        self.split_label.setWordWrap(True)
        lay.addWidget(self.split_label)
        self.source_box.currentIndexChanged.connect(lambda _: self._source_changed())
        self.path_edit.changed.connect(lambda _: self.run_check())
        self.convention_box.currentIndexChanged.connect(lambda _: self.run_check())
        self.holdout_spin.valueChanged.connect(lambda _: self._resplit())
        self._source_changed(check=False)

    # --- state -----------------------------------------------------------------------------------------
    @property
    def source(self) -> str:
        return self.source_box.currentData()

    def nextId(self) -> int:  # noqa: N802
        from gemini_cmr.app.wizard.wizard import PAGE_SETTINGS

        return PAGE_SETTINGS

    def initializePage(self) -> None:  # noqa: N802
        if not self.rows:
            self.run_check()

    def busy(self) -> bool:
        return self.task is not None and self.task.is_running()

    def isComplete(self) -> bool:  # noqa: N802
        return (not self.busy() and bool(self.rows) and not self.problem and all(r["ok"] for r in self.rows))

    @property
    def data_arg(self) -> str:
        """The `--data` value: a layout, the user's table, or the table written into the run folder."""
        if self.doc is not None:
            return "pairs:" + str(self.wiz.settings_page.out_path / SUBJECTS_JSON)
        return f"{self.source_kind}:{self.root}"

    def train_items(self) -> int:
        """Training stacks: the labelled phases of the training subjects."""
        return sum(r["n_phases"] for r in self.rows if r["id"] not in self.holdout)

    def holdout_items(self) -> int:
        return sum(r["n_phases"] for r in self.rows if r["id"] in self.holdout)

    def _source_changed(self, check: bool = True) -> None:
        kind = next(k for k, _, what in SOURCES if k == self.source)
        what = next(w for k, _, w in SOURCES if k == kind)
        self.path_edit.set_mode("file" if what == "file" else "folder", "Subject table (*.json)")
        self.path_edit.edit.setPlaceholderText("subjects JSON (pairs manifest)" if what == "file"
                                               else "the cohort's folder")
        self.form.labelForField(self.path_edit).setText("Table" if what == "file" else "Folder")
        uses_convention = kind in ("nifti", "dicom")
        self.convention_box.setEnabled(uses_convention)
        self.form.labelForField(self.convention_box).setEnabled(uses_convention)
        if check:
            self.run_check()

    # --- checking -------------------------------------------------------------------------------------
    def run_check(self) -> None:
        """List and check the subjects on a worker thread; the table shows one row per subject."""
        if self.busy():
            self._pending = True
            return
        self.rows, self.subjects, self.holdout, self.problem, self.doc = [], [], [], "", None
        self.table.setRowCount(0)
        self.split_label.setText("")
        path = self.path_edit.text()
        if not path:
            self._set_status("Choose the cohort.", "")
            self.completeChanged.emit()
            return
        kind, convention = self.source, self.convention_box.currentData()
        wanted = self.holdout_spin.value() if self.holdout_spin.property("touched") else None

        def check(progress, cancel):
            from gemini_cmr.core.train.lr_data import check_subject, choose_holdout, subject_split

            src, root, subjects, doc, problems = list_subjects(kind, path, convention)
            n_hold = default_holdout(len(subjects)) if wanted is None else wanted
            holdout = choose_holdout(subjects, n=n_hold) if not split_problem(len(subjects), n_hold) else []
            splits = subject_split(src, subjects, holdout=holdout or None)
            default = src if src in LAYOUTS else ""
            rows = []
            for i, subj in enumerate(subjects):
                if cancel():
                    break
                progress(i / max(1, len(subjects)), f"checking {subj.sid}")
                row = check_subject(subj, splits[subj.sid], default)
                if holdout:
                    row["split"] = "held out" if subj.sid in holdout else "train"
                rows.append(row)
            return src, root, subjects, doc, problems + rows, holdout, n_hold

        self._set_status("Checking every subject…", "")
        self.task = Task(check, "check-cohort", self)
        self.task.progress.connect(lambda f, msg: self._set_status(f"Checking every subject… {msg}", ""))
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
        self.source_kind, self.root, self.subjects, self.doc, self.rows, self.holdout, n_hold = result
        self.holdout_spin.blockSignals(True)
        self.holdout_spin.setValue(max(1, n_hold))
        self.holdout_spin.blockSignals(False)
        self._show()

    def _resplit(self) -> None:
        """A new held-out count: a new split of the listed subjects (no new check)."""
        self.holdout_spin.setProperty("touched", True)
        if self.busy() or not self.subjects:
            return
        from gemini_cmr.core.train.lr_data import choose_holdout

        n = self.holdout_spin.value()
        self.holdout = choose_holdout(self.subjects, n=n) if not split_problem(len(self.subjects), n) else []
        for r in self.rows:
            if r["split"]:
                r["split"] = "held out" if r["id"] in self.holdout else "train"
        self._show()

    def _show(self) -> None:
        self._fill_table()
        n = len(self.subjects)
        self.problem = split_problem(n, self.holdout_spin.value())
        bad = [r for r in self.rows if not r["ok"]]
        groups = sorted({r["group"] for r in self.rows if r["group"]})
        partial = [r["id"] for r in self.rows if r["ok"] and r["missing"]]
        if not self.problem:
            how = f"stratified by group ({', '.join(groups)})" if len(groups) > 1 else "drawn at random (seed 0)"
            self.split_label.setText(
                f"{n - len(self.holdout)} training and {len(self.holdout)} held-out subject(s), {how}. The "
                "held-out subjects are validated for the curves and compared before/after at the end; they "
                "never choose the checkpoint (the model is the last step)."
                + (f" Partial labels: {len(partial)} subject(s) miss some structures; those structures are "
                   "not learned from them." if partial else ""))
        else:
            self.split_label.setText("")
        if self.problem:
            self._set_status(f"Cannot train: {self.problem}.", BAD_COLOUR)
        elif bad:
            self._set_status(f"{len(bad)} problem(s) found: training cannot start until they are fixed or "
                             "the subjects removed.", BAD_COLOUR)
        elif partial:
            self._set_status(f"All {len(self.rows)} checked: ready (partial labels noted).", NOTE_COLOUR)
        else:
            self._set_status(f"All {len(self.rows)} checked: ready.", OK_COLOUR)
        self.completeChanged.emit()

    def _on_check_failed(self, message: str, details: str) -> None:
        self.rows = [{"id": "(cohort)", "group": "", "split": "", "ok": False, "problem": message, "geometry": "",
                      "convention": "", "structures": "", "missing": [], "labelled": "", "n_phases": 0}]
        self.subjects = []
        self._fill_table()
        self._set_status(f"Cannot use this {'table' if self.source == 'table' else 'folder'}: {message}.",
                         BAD_COLOUR)

    def _fill_table(self) -> None:
        self.table.setRowCount(len(self.rows))
        for i, r in enumerate(self.rows):
            structures = r["structures"] + (f" (not annotated: {', '.join(r['missing'])})" if r["missing"] else "")
            values = (r["id"], r["group"], r["split"], "ok" if r["ok"] else "problem", structures, r["labelled"],
                      r["convention"], r["geometry"], r["problem"])
            for j, v in enumerate(values):
                it = QTableWidgetItem(str(v))
                it.setToolTip(str(v))
                if j == 3:
                    it.setForeground(QColor(OK_COLOUR if r["ok"] else BAD_COLOUR))
                self.table.setItem(i, j, it)

    def _set_status(self, text: str, colour: str) -> None:
        self.status.setText(text)
        self.status.setStyleSheet(f"color: {colour};" if colour else "")
