"""Fixtures for the GUI tests: Xvfb (pytest-xvfb) with the xcb platform, a phantom study, settings in a
temporary INI file, and an oracle predictor behind the real engine (deterministic, fast)."""

from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "xcb")
os.environ.setdefault("QT_API", "pyside6")

import pytest  # noqa: E402

from tests.app.phantom import OraclePredictor, make_study  # noqa: E402


@pytest.fixture(scope="session")
def phantom_path(tmp_path_factory):
    return make_study(tmp_path_factory.mktemp("phantom"))


@pytest.fixture
def settings(tmp_path, monkeypatch):
    ini = tmp_path / "settings.ini"
    monkeypatch.setenv("GEMINI_CMR_SETTINGS", str(ini))
    from gemini_cmr.app.settings import Settings

    return Settings(str(ini))


@pytest.fixture
def oracle_engine(monkeypatch):
    """The real `core.engine.SuperResolver`, with the phantom's oracle in place of the network."""
    import gemini_cmr.core.engine as engine

    real = engine.SuperResolver

    def factory(model=None, adapter=None, device="auto", **kw):
        return real(model=OraclePredictor(), adapter=None, device=device)

    monkeypatch.setattr(engine, "SuperResolver", factory)
    return factory


@pytest.fixture
def window(qtbot, settings):
    from gemini_cmr.app.main import collect_on_gui_thread, make_app
    from gemini_cmr.app.main_window import MainWindow

    app = make_app()
    restore_gc = collect_on_gui_thread(app)  # as `gemini-cmr view` runs the window
    win = MainWindow(settings, interactive=False)
    qtbot.addWidget(win)
    win.resize(1400, 900)
    with qtbot.waitSignal(win.surfaceReady, timeout=60000):
        win.show()
    qtbot.waitExposed(win)
    yield win
    if win.task is not None and win.task.is_running():
        win.task.cancel()
        win.task.wait(10000)
    win.close()
    restore_gc()


@pytest.fixture(scope="session", autouse=True)
def _destroy_widgets_while_the_display_is_up():
    """Destroy every window (and the 3D view's native window) before pytest-xvfb stops Xvfb at exit:
    Qt exits with status 1 if it finds its X connection broken while tearing windows down."""
    yield
    from PySide6.QtCore import QEvent
    from PySide6.QtWidgets import QApplication

    app = QApplication.instance()
    if app is None:
        return
    for w in app.topLevelWidgets():
        w.close()
        w.deleteLater()
    QApplication.sendPostedEvents(None, QEvent.Type.DeferredDelete)
    app.processEvents()
    import shiboken6

    shiboken6.delete(app)  # Qt's X connection is closed here, not after Xvfb is gone


@pytest.fixture
def wizard(qtbot, settings, tmp_path):
    """The training wizard, shown, with its worker processes stopped at the end."""
    from gemini_cmr.app.main import make_app
    from gemini_cmr.app.wizard import TrainWizard

    make_app()
    settings.last_dir = str(tmp_path)
    wiz = TrainWizard(settings=settings)
    qtbot.addWidget(wiz)
    wiz.show()
    qtbot.waitExposed(wiz)
    yield wiz
    wiz.stop_all(wait_ms=30000)
