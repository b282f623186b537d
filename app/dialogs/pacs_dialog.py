"""File > Open from PACS… and File > Send to PACS…: thin dialogs over `core.io.pacs`.

Open from PACS: server, user and password (empty fields fall back to GEMINI_CMR_PACS_* and the config
file, `core.io.pacs.server_settings`), a query by patient ID, name and date, the matching studies, the
chosen study's series with the short-axis cine preselected; Open retrieves the series on a worker thread
(progress, Cancel) into a temporary folder that the window then opens like any folder (removed when the
app exits). Send to PACS writes the result's DICOM outputs (`core.outputs.write_dicom`) into a temporary
folder and stores them. Every failure is the `PacsError`'s one line, shown in the dialog.
"""

from __future__ import annotations

import atexit
import shutil
import tempfile
from pathlib import Path

from PySide6.QtCore import Signal
from PySide6.QtGui import QFont
from PySide6.QtWidgets import (
    QAbstractItemView,
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QProgressBar,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from gemini_cmr.app.workers import Task
from gemini_cmr.core.errors import GeminiError
from gemini_cmr.core.io import pacs

STUDY_COLUMNS = ("Patient ID", "Name", "Date", "Description", "Modalities", "Series")
SERIES_COLUMNS = ("", "Description", "Modality", "Images", "Slices x phases", "Note")


def _temporary_root() -> Path:
    root = Path(tempfile.mkdtemp(prefix="gemini-cmr-pacs-"))
    atexit.register(shutil.rmtree, root, True)
    return root


class ServerBox(QGroupBox):
    """Server address, user and password; empty fields use the environment and the config file."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__("Server", parent)
        defaults = _defaults()
        self.url = QLineEdit(defaults.url if defaults else "")
        self.url.setPlaceholderText("https://pacs.example.org/dicom-web  or  dimse://AE@host:port")
        self.user = QLineEdit(defaults.username or "" if defaults else "")
        self.password = QLineEdit()
        self.password.setEchoMode(QLineEdit.EchoMode.Password)
        self.password.setPlaceholderText("from GEMINI_CMR_PACS_PASSWORD or the config file when empty")
        form = QFormLayout(self)
        form.addRow("Address", self.url)
        form.addRow("User", self.user)
        form.addRow("Password", self.password)

    def server(self) -> pacs.PacsServer:
        return pacs.server_settings(url=self.url.text().strip() or None, username=self.user.text().strip() or None,
                                    password=self.password.text() or None)


def _defaults() -> pacs.PacsServer | None:
    try:
        return pacs.server_settings()
    except GeminiError:
        return None


def _table(columns: tuple[str, ...]) -> QTableWidget:
    t = QTableWidget(0, len(columns))
    t.setHorizontalHeaderLabels(list(columns))
    t.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
    t.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
    t.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
    t.verticalHeader().setVisible(False)
    t.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
    t.horizontalHeader().setStretchLastSection(True)
    return t


class OpenFromPacsDialog(QDialog):
    """Find a study, pick its short-axis cine, retrieve it; `folder` holds it once accepted."""

    studiesFound = Signal(int)
    seriesListed = Signal(int)
    failed = Signal(str)

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setWindowTitle("Open from PACS")
        self.resize(900, 620)
        self.folder: Path | None = None
        self.task: Task | None = None
        self.studies: list[pacs.StudyInfo] = []
        self.series: list[pacs.SeriesInfo] = []
        self._server: pacs.PacsServer | None = None
        self.server_box = ServerBox(self)
        query = QGroupBox("Query")
        self.patient_id = QLineEdit()
        self.patient_name = QLineEdit()
        self.patient_name.setPlaceholderText("DOE^JANE, wildcards allowed: DOE*")
        self.date = QLineEdit()
        self.date.setPlaceholderText("YYYYMMDD or YYYYMMDD-YYYYMMDD")
        self.search_button = QPushButton("Search")
        self.search_button.setDefault(True)
        row = QHBoxLayout(query)
        for label, w in (("Patient ID", self.patient_id), ("Name", self.patient_name), ("Date", self.date)):
            row.addWidget(QLabel(label))
            row.addWidget(w, 1)
        row.addWidget(self.search_button)
        self.study_table = _table(STUDY_COLUMNS)
        self.series_table = _table(SERIES_COLUMNS)
        self.status = QLabel("Search by patient ID, name or date (all empty: every study)")
        self.status.setWordWrap(True)
        self.progress = QProgressBar()
        self.progress.setRange(0, 1000)
        self.progress.setVisible(False)
        self.buttons = QDialogButtonBox()
        self.open_button = self.buttons.addButton("Open", QDialogButtonBox.ButtonRole.AcceptRole)
        self.open_button.setEnabled(False)
        self.cancel_button = self.buttons.addButton(QDialogButtonBox.StandardButton.Cancel)
        layout = QVBoxLayout(self)
        layout.addWidget(self.server_box)
        layout.addWidget(query)
        layout.addWidget(QLabel("Studies"))
        layout.addWidget(self.study_table, 3)
        layout.addWidget(QLabel("Series (the short-axis cine is marked ★ and selected)"))
        layout.addWidget(self.series_table, 3)
        layout.addWidget(self.status)
        layout.addWidget(self.progress)
        layout.addWidget(self.buttons)
        self.search_button.clicked.connect(self.search)
        self.study_table.itemSelectionChanged.connect(self._study_chosen)
        self.series_table.itemSelectionChanged.connect(self._set_enabled)
        self.open_button.clicked.connect(self.retrieve)
        self.cancel_button.clicked.connect(self.cancel)

    # --- running core calls --------------------------------------------------------------------------
    def _run(self, fn, message: str, on_done) -> Task | None:
        if self.task is not None and self.task.is_running():
            return None
        self.status.setText(message)
        self.progress.setVisible(True)
        self.progress.setRange(0, 0)
        task = Task(fn, "pacs", self)
        task.progress.connect(self._on_progress)
        task.finished.connect(on_done)
        task.failed.connect(lambda msg, details: self._fail(msg))
        task.cancelled.connect(lambda: self.status.setText("Cancelled"))
        task.done.connect(self._task_done)
        self.task = task
        self._set_enabled()
        task.start()
        return task

    def _on_progress(self, fraction: float, message: str) -> None:
        if fraction > 0:
            self.progress.setRange(0, 1000)
            self.progress.setValue(int(min(max(fraction, 0.0), 1.0) * 1000))
        if message:
            self.status.setText(message)

    def _task_done(self) -> None:
        self.progress.setVisible(False)
        self._set_enabled()

    def _fail(self, message: str) -> None:
        self.status.setText(f"Error: {message}")
        self.failed.emit(message)

    def _set_enabled(self) -> None:
        busy = self.task is not None and self.task.is_running()
        self.search_button.setEnabled(not busy)
        self.open_button.setEnabled(not busy and self._chosen_series() is not None)

    def _server_or_fail(self) -> pacs.PacsServer | None:
        try:
            self._server = self.server_box.server()
        except GeminiError as exc:
            self._fail(str(exc))
            return None
        return self._server

    # --- steps -----------------------------------------------------------------------------------------
    def search(self) -> Task | None:
        server = self._server_or_fail()
        if server is None:
            return None
        pid, name, date = self.patient_id.text().strip(), self.patient_name.text().strip(), self.date.text().strip()
        self.study_table.setRowCount(0)
        self.series_table.setRowCount(0)
        return self._run(lambda progress, cancel: pacs.find(server, pid, name, date), f"Searching {server.display}…",
                         self._show_studies)

    def _show_studies(self, studies) -> None:
        self.studies = list(studies)
        t = self.study_table
        t.setRowCount(len(self.studies))
        for r, s in enumerate(self.studies):
            for c, v in enumerate((s.patient_id, s.patient_name, s.study_date, s.description, s.modalities,
                                   "" if s.n_series is None else str(s.n_series))):
                t.setItem(r, c, QTableWidgetItem(v))
        self.status.setText(f"{len(self.studies)} studies found" if self.studies else "No studies found")
        self.studiesFound.emit(len(self.studies))

    def _study_chosen(self) -> None:
        rows = self.study_table.selectionModel().selectedRows()
        if not rows or self._server is None:
            return
        study = self.studies[rows[0].row()]
        server = self._server
        self.series_table.setRowCount(0)
        self._run(lambda progress, cancel: pacs.list_series(server, study.study_uid),
                  f"Listing the series of {study.patient_name or study.study_uid}…", self._show_series)

    def _show_series(self, series) -> None:
        self.series = list(series)
        try:
            chosen = pacs.choose_cine_series(self.series, self.series[0].study_uid, "").series_uid
        except GeminiError as exc:
            chosen = None
            self.status.setText(str(exc))
        t = self.series_table
        t.setRowCount(len(self.series))
        bold = QFont()
        bold.setBold(True)
        for r, s in enumerate(self.series):
            shape = f"{s.n_positions} x {s.n_phases}" if s.n_positions else ""
            values = ("★" if s.series_uid == chosen else "", s.description, s.modality,
                      "" if s.n_instances is None else str(s.n_instances), shape,
                      "short-axis cine" if s.series_uid == chosen else (s.problem or ""))
            for c, v in enumerate(values):
                item = QTableWidgetItem(v)
                if s.series_uid == chosen:
                    item.setFont(bold)
                t.setItem(r, c, item)
        if chosen is not None:
            t.selectRow(next(r for r, s in enumerate(self.series) if s.series_uid == chosen))
            self.status.setText("Short-axis cine selected: Open retrieves it")
        self.seriesListed.emit(len(self.series))
        self._set_enabled()

    def _chosen_series(self) -> pacs.SeriesInfo | None:
        rows = self.series_table.selectionModel().selectedRows()
        return self.series[rows[0].row()] if rows and rows[0].row() < len(self.series) else None

    def retrieve(self) -> Task | None:
        s = self._chosen_series()
        if s is None or self._server is None:
            return None
        server = self._server
        dest = _temporary_root() / "study"

        def run(progress, cancel):
            return pacs.pull(server, s.study_uid, s.series_uid, dest, progress, cancel)[0]

        return self._run(run, f"Retrieving {s.label}…", self._retrieved)

    def _retrieved(self, folder) -> None:
        self.folder = Path(folder)
        self.accept()

    def cancel(self) -> None:
        if self.task is not None and self.task.is_running():
            self.task.cancel()
            self.status.setText("Cancelling…")
            return
        self.reject()

    def done(self, r: int) -> None:
        if self.task is not None and self.task.is_running():
            self.task.cancel()
            self.task.wait(10000)
        super().done(r)


class SendToPacsDialog(QDialog):
    """Where to send the result's DICOM outputs."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setWindowTitle("Send to PACS")
        self.server_box = ServerBox(self)
        note = QLabel("Sends the SR series and the segmentations (DICOM SEG) of the SR labels and of the labels on "
                      "the acquired slices, in the input's study.")
        note.setWordWrap(True)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        buttons.button(QDialogButtonBox.StandardButton.Ok).setText("Send")
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(self.server_box)
        layout.addWidget(note)
        layout.addWidget(buttons)


def open_from_pacs(win) -> OpenFromPacsDialog:
    """File > Open from PACS…: the window opens the retrieved folder."""
    dlg = OpenFromPacsDialog(win)
    dlg.accepted.connect(lambda: dlg.folder is not None and win.open_path(dlg.folder))
    if win.interactive:
        dlg.open()
    return dlg


def send_to_pacs(win, server: pacs.PacsServer | None = None) -> Task | None:
    """File > Send to PACS…: the DICOM outputs of the current result, written to a temporary folder and
    stored on the server (asked for unless `server` is given)."""
    if win.state.result is None or not win._can_start():
        return None
    if server is None:
        dlg = SendToPacsDialog(win)
        if not dlg.exec():
            return None
        try:
            server = dlg.server_box.server()
        except GeminiError as exc:
            win._report_error(str(exc), "")
            return None
    result = win.state.result

    def run(progress, cancel):
        from gemini_cmr.core.outputs import write_dicom

        root = Path(tempfile.mkdtemp(prefix="gemini-cmr-send-"))
        try:
            progress(0.0, "Writing the DICOM outputs…")
            write_dicom(result, root, cancel=cancel)
            return pacs.push(server, [root], lambda f, m: progress(0.2 + 0.8 * f, m), cancel)
        finally:
            shutil.rmtree(root, ignore_errors=True)

    task = win._start_task(Task(run, "send"), f"Sending to {server.display}…")
    task.finished.connect(lambda report: win.status_label.setText(
        f"Sent {len(report.stored)} DICOM files to {server.display}"))
    return task


__all__ = ["OpenFromPacsDialog", "SendToPacsDialog", "open_from_pacs", "send_to_pacs"]
