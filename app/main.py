"""Start the desktop app: `gemini-cmr view [STUDY] [--super-resolve] [--screenshot OUT.png] [--quit]`.

Scripted mode (documentation screenshots, tests): open the study, optionally run the pipeline, save a
screenshot of the whole window and, with `--quit`, exit (0 on success, 2 on a user-facing error).

SIGTERM (a desktop logout, `kill`) and SIGINT (Ctrl+C) close the window as the close button does: in
interactive use a running task is cancelled only if the user agrees (the window stays otherwise); scripted
runs cancel it and exit at once. The exit status is then 128 + the signal (143, 130). Python runs signal
handlers only when the interpreter gets control, which Qt's event loop never gives it, so a timer wakes it
every 200 ms (`install_signal_handlers`).

Python's cyclic garbage collector runs in whichever thread allocates past its threshold: a worker thread
(torch, VTK filters, an import) could destroy the window's Qt and VTK objects caught in reference cycles, off
the GUI thread, a crash that comes rarely and nowhere near its cause. While the window is up, automatic
collection is off and the GUI thread collects on a timer instead (`collect_on_gui_thread`).
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("QT_API", "pyside6")

from PySide6.QtCore import Qt, QTimer  # noqa: E402
from PySide6.QtGui import QIcon  # noqa: E402
from PySide6.QtWidgets import QApplication  # noqa: E402

from gemini_cmr.app.main_window import MainWindow  # noqa: E402
from gemini_cmr.app.settings import Settings  # noqa: E402
from gemini_cmr.app.theme import apply_dark_theme  # noqa: E402
from gemini_cmr.core.resources import icon_path  # noqa: E402


def make_app(argv: list[str] | None = None) -> QApplication:
    app = QApplication.instance()
    if app is None:
        QApplication.setHighDpiScaleFactorRoundingPolicy(Qt.HighDpiScaleFactorRoundingPolicy.PassThrough)
        app = QApplication(argv if argv is not None else sys.argv[:1])
        app.setApplicationName("Gemini CMR")
        app.setOrganizationName("GeminiCMR")
        apply_dark_theme(app)
        icon = icon_path()
        if icon.exists():
            app.setWindowIcon(QIcon(str(icon)))
    return app


class _Script:
    """Drives the window for `--super-resolve/--screenshot/--quit` without any dialog."""

    def __init__(self, app: QApplication, win: MainWindow, study: str | None, super_resolve: bool,
                 screenshot: str | None, quit_after: bool):
        self.app, self.win = app, win
        self.super_resolve, self.screenshot, self.quit_after = super_resolve, screenshot, quit_after
        self.rc = 0
        win.taskFailed.connect(self._failed)
        win.studyLoaded.connect(self._loaded)
        win.resultReady.connect(lambda _: self._finish())
        if study:
            QTimer.singleShot(0, lambda: win.open_path(study))
        else:
            QTimer.singleShot(0, self._finish)

    def _loaded(self, _study) -> None:
        if self.super_resolve:
            if self.win.super_resolve() is None:
                self._failed("super-resolution could not start", "")
        else:
            self._finish()

    def _failed(self, message: str, _details: str) -> None:
        print(f"gemini-cmr: {message}", file=sys.stderr)
        self.rc = 2
        if self.quit_after:
            self.app.exit(self.rc)

    def _finish(self) -> None:
        if self.win.with_3d and self.win.surface_view is None:
            self.win.surfaceReady.connect(self._finish)  # the 3D view is still being created
            return
        # Let layouts, the 3D render and deferred paints settle before grabbing.
        QTimer.singleShot(300, self._shoot)

    def _shoot(self) -> None:
        if self.screenshot:
            sv = self.win.surface_view
            if sv is not None:
                sv.wait_display_ready(60)  # the 3D view's display meshes (background thread)
            self.app.processEvents()
            path = self.win.save_screenshot(self.screenshot)
            print(f"screenshot: {path}")
        if self.quit_after:
            self.app.exit(self.rc)


def _check_display() -> None:
    """Fail with a one-line reason instead of Qt aborting when there is no display to open a window on."""
    if not sys.platform.startswith("linux") or QApplication.instance() is not None:
        return
    platform = os.environ.get("QT_QPA_PLATFORM", "")
    if platform and not platform.startswith(("xcb", "wayland")):
        return
    if not os.environ.get("DISPLAY") and not os.environ.get("WAYLAND_DISPLAY"):
        from gemini_cmr.core.errors import GeminiError

        raise GeminiError(
            "no display to open the window on: run it in a desktop session, or headless with "
            "xvfb-run -a -s '-screen 0 1600x1000x24' gemini-cmr view ... (QT_QPA_PLATFORM=xcb)"
        )


def _install_excepthook(quit_on_error: bool) -> None:
    """An exception escaping a Qt slot is a bug: log it; in scripted runs, also exit with status 1
    rather than waiting forever for a signal that will not come."""
    import logging
    import traceback

    def hook(exc_type, exc, tb):
        logging.getLogger("gemini_cmr.app").error("".join(traceback.format_exception(exc_type, exc, tb)))
        if quit_on_error and QApplication.instance() is not None:
            QApplication.instance().exit(1)

    sys.excepthook = hook


GC_POLL_MS = 500
GC_FULL_EVERY_S = 10.0


def collect_on_gui_thread(app: QApplication) -> Callable[[], None]:
    """Turn Python's automatic garbage collection off and collect on the GUI thread instead, generation by
    generation as the collector itself would (its thresholds, checked every `GC_POLL_MS`; full collections at
    most every `GC_FULL_EVERY_S`). Returns a function that collects once more and turns automatic collection
    back on."""
    import gc

    thresholds = gc.get_threshold()
    was_enabled = gc.isenabled()
    last_full = [time.monotonic()]

    def check() -> None:
        counts = gc.get_count()
        if counts[0] <= thresholds[0]:
            return
        generation = 1 if counts[1] > thresholds[1] else 0
        # A full collection walks every object (torch's too): at most one per GC_FULL_EVERY_S, as the
        # collector itself holds them back while few long-lived objects are new.
        if counts[2] > thresholds[2] and time.monotonic() - last_full[0] >= GC_FULL_EVERY_S:
            generation = 2
            last_full[0] = time.monotonic()
        gc.collect(generation)

    timer = QTimer(app)
    timer.timeout.connect(check)
    gc.disable()
    timer.start(GC_POLL_MS)

    def restore() -> None:
        timer.stop()
        gc.collect()
        if was_enabled:
            gc.enable()

    return restore


SIGNAL_POLL_MS = 200


def install_signal_handlers(app: QApplication, win: MainWindow) -> Callable[[], None]:
    """Close `win` on SIGTERM/SIGINT (see the module docstring), then end the event loop with status
    128 + signal. Returns a function that restores the previous handlers."""
    wake = QTimer(app)
    wake.timeout.connect(lambda: None)  # returning to Python lets it run the pending signal handlers
    wake.start(SIGNAL_POLL_MS)
    busy = {"closing": False}

    def close_for(signum: int) -> None:
        if busy["closing"]:
            return  # a question is already open, or the window is closing
        busy["closing"] = True
        try:
            name = signal.Signals(signum).name
            logging.getLogger("gemini_cmr.app").warning("%s received: closing the window", name)
            if win.close():  # MainWindow.closeEvent asks first when a task runs in interactive use
                app.exit(128 + signum)
            else:
                win.status_label.setText(f"{name} received: kept running (the task was not cancelled)")
        finally:
            busy["closing"] = False

    def handler(signum, frame) -> None:
        QTimer.singleShot(0, lambda: close_for(signum))

    previous = {}
    for sig in (signal.SIGTERM, signal.SIGINT):
        try:
            previous[sig] = signal.signal(sig, handler)
        except (ValueError, OSError):  # not the main thread
            pass

    def restore() -> None:
        wake.stop()
        for sig, old in previous.items():
            signal.signal(sig, old)

    return restore


def run_view(study: str | None = None, super_resolve: bool = False, screenshot: str | None = None,
             quit_after: bool = False, model: str | None = None, adapter: str | None = None,
             device: str | None = None, size: tuple[int, int] | None = None) -> int:
    t0 = time.perf_counter()
    _check_display()
    app = make_app()
    restore_gc = collect_on_gui_thread(app)  # before the window starts its first threads
    try:
        return _run_window(app, t0, study, super_resolve, screenshot, quit_after, model, adapter, device, size)
    finally:
        restore_gc()


def _run_window(app: QApplication, t0: float, study: str | None, super_resolve: bool, screenshot: str | None,
                quit_after: bool, model: str | None, adapter: str | None, device: str | None,
                size: tuple[int, int] | None) -> int:
    scripted = bool(screenshot or quit_after)
    _install_excepthook(quit_on_error=quit_after)
    settings = Settings()
    win = MainWindow(settings, model=model, adapter=adapter, device=device, interactive=not scripted)
    if size is not None or scripted:
        win.resize(*(size or (1600, 1000)))
    win.show()
    win.status_label.setText(f"Ready ({time.perf_counter() - t0:.1f} s)")
    script = _Script(app, win, str(Path(study).expanduser()) if study else None, super_resolve, screenshot,
                     quit_after) if (scripted or study or super_resolve) else None
    restore = install_signal_handlers(app, win)
    QTimer.singleShot(0, lambda: logging.getLogger("gemini_cmr.app").info("window shown"))
    try:
        rc = app.exec()
    finally:
        restore()
    win.close()
    if script is not None:
        rc = rc or script.rc
    _tear_down(app, win)
    return int(rc)


def _tear_down(app: QApplication, win: MainWindow) -> None:
    """Destroy the window while the application still exists and no import runs on another thread, so
    that Qt and VTK objects are not left to the interpreter's shutdown, in whatever order it takes."""
    from PySide6.QtCore import QCoreApplication, QEvent

    from gemini_cmr.app import warmup

    if not warmup.wait_warm_ups(60):
        logging.getLogger("gemini_cmr.app").warning("a background import did not finish before exit")
    win.deleteLater()
    QCoreApplication.sendPostedEvents(None, QEvent.Type.DeferredDelete)
    app.processEvents()
