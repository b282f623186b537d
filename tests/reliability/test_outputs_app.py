"""The app under signals and with flagged results: SIGTERM/SIGINT close it cleanly, and its phenotype panel
never shows flagged values as clean numbers.

Python signal handlers do not run inside Qt's event loop on their own, so without the app's handling `kill`,
SIGINT or a desktop logout would do nothing; a single-phase study must not show "LV EF 0.0 %" in large type."""

from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "xcb")
os.environ.setdefault("QT_API", "pyside6")

import signal  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from tests.reliability.conftest import DEMO, REPO, child_env  # noqa: E402

pytestmark = pytest.mark.gui


# --- signals, real processes ------------------------------------------------------------------------------------
def _start_view(tmp_path, *args: str) -> subprocess.Popen:
    env = {**child_env(), "GEMINI_CMR_SETTINGS": str(tmp_path / "settings.ini")}
    return subprocess.Popen([sys.executable, "-m", "gemini_cmr.cli.main", "-v", "view", *args], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_line(proc: subprocess.Popen, text: str, timeout: float) -> list[str]:
    seen: list[str] = []
    end = time.monotonic() + timeout
    found = threading.Event()

    def reader():
        for line in proc.stderr:
            seen.append(line)
            if text in line:
                found.set()
                return

    t = threading.Thread(target=reader, daemon=True)
    t.start()
    if not found.wait(max(0.0, end - time.monotonic())):
        proc.kill()
        proc.wait()
        pytest.fail(f"{text!r} never came: {''.join(seen)[-2000:]}")
    return seen


@pytest.mark.parametrize("sig,status", [(signal.SIGTERM, 143), (signal.SIGINT, 130)], ids=["SIGTERM", "SIGINT"])
def test_idle_app_closes_on_signal(sig, status, tmp_path):
    proc = _start_view(tmp_path)
    try:
        _wait_line(proc, "window shown", 120)
        time.sleep(0.5)
        t0 = time.monotonic()
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=30)
        seconds = time.monotonic() - t0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == status, (proc.returncode, err[-2000:])
    assert seconds < 10 and "Traceback" not in err
    assert (tmp_path / "settings.ini").is_file()  # closed like the close button: the layout was saved


@pytest.mark.slow
def test_scripted_run_exits_promptly_on_sigterm(tmp_path):
    """`view STUDY --super-resolve --quit` killed while the model runs: exits 143 within seconds, no
    screenshot written, no traceback."""
    shot = tmp_path / "shot.png"
    proc = _start_view(tmp_path, str(DEMO), "--super-resolve", "--screenshot", str(shot), "--quit", "--device",
                       "cpu")
    try:
        _wait_line(proc, "window shown", 120)
        time.sleep(3.0)  # opening the study and starting the model
        assert proc.poll() is None, "the run ended before the signal"
        t0 = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
        seconds = time.monotonic() - t0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 143, (proc.returncode, err[-2000:])
    assert seconds < 30 and "Traceback" not in err and not shot.exists()


# --- signals, in-process: the question while a task runs -----------------------------------------------------------
@pytest.fixture
def window(qtbot, tmp_path):
    from gemini_cmr.app.main import make_app
    from gemini_cmr.app.main_window import MainWindow
    from gemini_cmr.app.settings import Settings

    make_app()
    win = MainWindow(Settings(str(tmp_path / "s.ini")), interactive=True, with_3d=False)
    qtbot.addWidget(win)
    win.show()
    qtbot.waitExposed(win)
    yield win
    if win.task is not None and win.task.is_running():
        win.task.cancel()
        win.task.wait(10000)
    win.interactive = False
    win.close()


def _long_task(win):
    from gemini_cmr.app.workers import Task

    def run(progress, cancel):
        for _ in range(600):
            if cancel():
                return None
            time.sleep(0.05)
        return None

    return win._start_task(Task(run, "super-resolve"), "Super-resolving…")


@pytest.mark.parametrize("answer", ["No", "Yes"])
def test_signal_during_a_task_asks_before_cancelling(answer, qtbot, window, monkeypatch):
    from PySide6.QtWidgets import QApplication, QMessageBox

    import gemini_cmr.app.main_window as mw
    from gemini_cmr.app.main import install_signal_handlers

    asked: list[str] = []

    def question(parent, title, text, *a, **k):
        asked.append(text)
        return getattr(QMessageBox.StandardButton, answer)

    monkeypatch.setattr(mw.QMessageBox, "question", staticmethod(question))
    exits: list[int] = []
    app = QApplication.instance()
    monkeypatch.setattr(app, "exit", lambda code=0: exits.append(code))
    restore = install_signal_handlers(app, window)
    try:
        task = _long_task(window)
        signal.raise_signal(signal.SIGTERM)
        qtbot.waitUntil(lambda: bool(asked), timeout=5000)
        if answer == "No":
            qtbot.wait(300)
            assert task.is_running() and not task.cancel_requested and window.isVisible()
            assert exits == [] and "kept running" in window.status_label.text()
        else:
            qtbot.waitUntil(lambda: exits == [143], timeout=10000)
            assert task.cancel_requested and not task.is_running() and not window.isVisible()
    finally:
        restore()
    assert "Cancel it and quit?" in asked[0]


def test_signal_without_a_task_closes_without_asking(qtbot, window, monkeypatch):
    from PySide6.QtWidgets import QApplication

    import gemini_cmr.app.main_window as mw
    from gemini_cmr.app.main import install_signal_handlers

    monkeypatch.setattr(mw.QMessageBox, "question", staticmethod(lambda *a, **k: pytest.fail("asked")))
    exits: list[int] = []
    app = QApplication.instance()
    monkeypatch.setattr(app, "exit", lambda code=0: exits.append(code))
    restore = install_signal_handlers(app, window)
    try:
        signal.raise_signal(signal.SIGINT)
        qtbot.waitUntil(lambda: exits == [130], timeout=5000)
    finally:
        restore()
    assert not window.isVisible()
    assert signal.getsignal(signal.SIGINT) is not None


# --- the phenotype panel --------------------------------------------------------------------------------------------
def _phenotypes(lv_sizes, rv=True, phases=None):
    from gemini_cmr.core.phenotypes import compute_phenotypes
    from gemini_cmr.core.study import Grid

    g = Grid((100, 100, 100), np.eye(4))
    lab = np.zeros((len(lv_sizes), 100, 100, 100), np.uint8)
    for t, n in enumerate(lv_sizes):
        lab[t].reshape(-1)[: n * 1000] = 1
        if rv:
            lab[t, 98 + min(t, 1):] = 3  # RVEF 50 %
    lab[:, 90:92] = 2
    return compute_phenotypes(lab, g, phases=phases)


def test_panel_single_phase_shows_not_available(qtbot):
    from gemini_cmr.app.views.phenotypes_panel import PhenotypesPanel

    panel = PhenotypesPanel()
    qtbot.addWidget(panel)
    panel.show()
    panel.set_phenotypes(_phenotypes([100], phases=[3]))
    assert panel.headline.text() == "LV EF not available"
    assert "only one phase" in panel.sub.text()
    cells = {panel.table.item(r, 0).text(): panel.table.item(r, 1) for r in range(panel.table.rowCount())}
    assert cells["LV EF (%)"].text() == "n/a" and "only one phase" in cells["LV EF (%)"].toolTip()
    assert cells["LV ESV (mL)"].text() == "n/a" and cells["LV EDV (mL)"].text() == "100.0"
    assert "volume-time curve needs at least two phases" in panel.curve.note
    assert panel.flags.isVisible() and "LVEF" in panel.flags.text()
    img = panel.grab()  # paints without error, the note instead of a curve
    assert not img.isNull()


def test_panel_implausible_values_are_marked(qtbot):
    from gemini_cmr.app.views.phenotypes_panel import PhenotypesPanel

    panel = PhenotypesPanel()
    qtbot.addWidget(panel)
    panel.show()
    panel.set_phenotypes(_phenotypes([100, 0], rv=False))
    assert panel.headline.text() == "LV EF 100.0 %  ⚠ implausible"
    assert "color" in panel.headline.styleSheet()
    cells = {panel.table.item(r, 0).text(): panel.table.item(r, 1) for r in range(panel.table.rowCount())}
    assert cells["LV EF (%)"].text() == "100.0 ⚠" and "no LV cavity at ES" in cells["LV EF (%)"].toolTip()
    assert cells["RV EF (%)"].text() == "n/a" and cells["LV EDV (mL)"].text() == "100.0"
    assert "RV cavity empty" in panel.flags.text() and panel.curve.note == ""
    panel.set_phenotypes(_phenotypes([100, 50]))  # plausible: clean again
    assert panel.headline.text() == "LV EF 50.0 %" and panel.headline.styleSheet() == ""
    cells = {panel.table.item(r, 0).text(): panel.table.item(r, 1).text() for r in range(panel.table.rowCount())}
    assert not panel.flags.isVisible() and not any("⚠" in t or t == "n/a" for t in cells.values()), cells


def test_panel_lists_failed_quality_checks(qtbot):
    from gemini_cmr.app.views.phenotypes_panel import PhenotypesPanel

    panel = PhenotypesPanel()
    qtbot.addWidget(panel)
    panel.show()
    failed = {"passed": False, "failed": ["phase 2: no LV cavity on slice 4 between LV slices 2 and 6"]}
    panel.set_phenotypes(_phenotypes([100, 50]), failed)
    assert panel.flags.isVisible() and "quality check: phase 2: no LV cavity on slice 4" in panel.flags.text()
    panel.set_phenotypes(_phenotypes([100, 50]), {"passed": True, "failed": []})
    assert not panel.flags.isVisible()
