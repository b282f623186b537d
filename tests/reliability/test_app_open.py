"""The app's open action (`MainWindow.open_path`: load on a worker thread, error dialog on failure) with
every bad input of the table: one critical dialog naming the file, no crash, no study half-shown, and the
window still opens a good study afterwards. QMessageBox is replaced so no modal dialog blocks."""

from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "xcb")
os.environ.setdefault("QT_API", "pyside6")

import pytest  # noqa: E402

from tests.reliability import cases  # noqa: E402
from tests.reliability.cases import CASES, Case  # noqa: E402

pytestmark = pytest.mark.gui


class FakeBox:
    """Stands in for QMessageBox in app.main_window: records what would have been shown."""

    shown: list[FakeBox] = []
    Icon = None
    StandardButton = None

    def __init__(self, icon, title, text, buttons=None, parent=None):
        self.icon, self.title, self.text, self.details = icon, title, text, ""

    def setDetailedText(self, text):  # noqa: N802
        self.details = text

    def exec(self):
        FakeBox.shown.append(self)
        return 0


@pytest.fixture(scope="module")
def window(tmp_path_factory):
    from gemini_cmr.app.main import make_app
    from gemini_cmr.app.main_window import MainWindow
    from gemini_cmr.app.settings import Settings

    make_app()
    ini = tmp_path_factory.mktemp("settings") / "settings.ini"
    win = MainWindow(Settings(str(ini)), interactive=True, with_3d=False)
    yield win
    if win.task is not None and win.task.is_running():
        win.task.cancel()
        win.task.wait(10000)
    win.close()


@pytest.fixture
def boxes(monkeypatch):
    from PySide6.QtWidgets import QMessageBox

    import gemini_cmr.app.main_window as mw

    FakeBox.Icon, FakeBox.StandardButton = QMessageBox.Icon, QMessageBox.StandardButton
    FakeBox.shown = []
    monkeypatch.setattr(mw, "QMessageBox", FakeBox)
    return FakeBox.shown


def _open_expecting_error(qtbot, window, path) -> str:
    with qtbot.waitSignal(window.taskFailed, timeout=30000) as sig:
        assert window.open_path(path) is not None
    qtbot.waitUntil(lambda: not window.task.is_running(), timeout=10000)
    return sig.args[0]


@pytest.mark.parametrize("case", CASES, ids=str)
def test_open_shows_one_error_dialog(case: Case, qtbot, window, boxes, tmp_path):
    window.study = None
    path = case.make(tmp_path)
    message = _open_expecting_error(qtbot, window, path)
    assert len(boxes) == 1
    box = boxes[0]
    assert box.icon == FakeBox.Icon.Critical and box.text == message
    assert "\n" not in message and "Traceback" not in message
    for word in case.expect:
        assert word.lower() in message.lower(), (word, message)
    assert window.study is None
    assert window.status_label.text().startswith("Error:")


def test_permission_denied_dialog_then_good_study(qtbot, window, boxes, tmp_path, monkeypatch, demo_study):
    import builtins

    locked = cases.write_nifti(tmp_path / "locked.nii.gz", cases.cine_array())
    real_open = builtins.open

    def guarded(file, mode="r", *a, **kw):
        if str(file) == str(locked):
            raise PermissionError(13, "Permission denied", str(file))
        return real_open(file, mode, *a, **kw)

    monkeypatch.setattr(builtins, "open", guarded)
    message = _open_expecting_error(qtbot, window, locked)
    assert "locked.nii.gz" in message and "permission denied" in message.lower()
    monkeypatch.setattr(builtins, "open", real_open)
    with qtbot.waitSignal(window.studyLoaded, timeout=30000):
        window.open_path(demo_study)
    assert window.study is not None and window.study.n_phases == 20
    assert len(boxes) == 1
