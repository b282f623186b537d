"""Tools > Train a model…: a QWizard that trains Gemini-GAN or a V-AMA adapter with `gemini-cmr train`.

Pages (one module each): what to train (`page_kind`) -> data, checked subject by subject with core's own
checks (`page_data`; real studies with labels: `page_real_data`, with the held-out split) -> settings (`page_settings`) -> run, a separate `gemini-cmr train … --progress-json`
process: live curves, metrics, ETA, log, Cancel, Resume (`page_run`) -> finish: final metrics, "Use this
model now" (`page_finish`; real studies: the starting and the new model side by side on the held-out
subjects). Nothing here trains or checks data itself: the data checks are `core.train.data.check_subjects`
/ `core.train.lr_data.check_subject` / `core.vama.domains.check_vama_data`, the run-folder layout is
`core.train.runs` and the training (and the before / after comparison) is the CLI.
"""

from __future__ import annotations

from PySide6.QtCore import Signal
from PySide6.QtWidgets import QApplication, QMessageBox, QWizard

from gemini_cmr.app.settings import Settings
from gemini_cmr.app.wizard.common import run_kind
from gemini_cmr.app.wizard.page_data import DataPage
from gemini_cmr.app.wizard.page_finish import FinishPage
from gemini_cmr.app.wizard.page_kind import KindPage
from gemini_cmr.app.wizard.page_real_data import RealDataPage
from gemini_cmr.app.wizard.page_run import RunPage
from gemini_cmr.app.wizard.page_settings import SettingsPage

PAGE_KIND, PAGE_DATA, PAGE_SETTINGS, PAGE_RUN, PAGE_FINISH, PAGE_REAL_DATA = range(6)


class TrainWizard(QWizard):
    """Tools > Train a model…. `modelChosen(kind, path)` ("gemini-gan" | "vama") on "Use this model now"
    (a model trained on real studies is a "gemini-gan" model)."""

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
        self.real_data_page = RealDataPage(self)
        self.settings_page = SettingsPage(self)
        self.run_page = RunPage(self)
        self.finish_page = FinishPage(self)
        for pid, page in ((PAGE_KIND, self.kind_page), (PAGE_DATA, self.data_page),
                          (PAGE_SETTINGS, self.settings_page), (PAGE_RUN, self.run_page),
                          (PAGE_FINISH, self.finish_page), (PAGE_REAL_DATA, self.real_data_page)):
            self.setPage(pid, page)
        self.setButtonText(QWizard.WizardButton.FinishButton, "Close")
        app = QApplication.instance()
        if app is not None:  # quitting the app stops a run gracefully (its last checkpoint is written)
            app.aboutToQuit.connect(self.stop_all)
        self.resize(1100, 820)

    @property
    def kind(self) -> str:
        return self.kind_page.kind

    @property
    def run_kind(self) -> str:
        """The run-folder kind of the chosen training (`core.train.runs`)."""
        return run_kind(self.kind)

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
        for task in (self.data_page.task, self.real_data_page.task, self.settings_page.estimate_task):
            if task is not None and task.is_running():
                task.cancel()
                task.wait(30000)

    def closeEvent(self, event):  # noqa: N802  (the window's X: QDialog calls reject(), which asks)
        super().closeEvent(event)
        if not self.isVisible():
            self.stop_all()
