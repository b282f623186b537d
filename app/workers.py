"""Run a `core` call on a QThread: progress forwarded as signals, Cancel that really stops it.

`Task(fn)` calls `fn(progress, cancel)` on a worker thread, where `progress(fraction, message)` may be
called from any thread and `cancel()` returns True once the user asked to stop (the engine then raises
`core.errors.Cancelled`). `fn` may also return a generator (the superqt/napari pattern): each yielded
`(fraction, message)` is forwarded as progress, cancellation is checked between yields, and the
generator's return value is the result.

Exactly one of `finished(result)`, `failed(message, details)` or `cancelled()` is emitted, then `done()`.
"""

from __future__ import annotations

import inspect
import logging
import threading
import traceback
from collections.abc import Callable
from typing import Any

from PySide6.QtCore import QObject, QThread, Signal, Slot

from gemini_cmr.core.errors import Cancelled, GeminiError

log = logging.getLogger(__name__)


class _Runner(QObject):
    progress = Signal(float, str)
    result = Signal(str, object)  # kind ("finished" | "failed" | "cancelled"), payload

    def __init__(self, fn: Callable[..., Any], stop: threading.Event):
        super().__init__()
        self._fn = fn
        self._stop = stop

    def _progress(self, fraction: float, message: str = "") -> None:
        self.progress.emit(float(fraction), str(message))

    def _cancelled(self) -> bool:
        return self._stop.is_set()

    @Slot()
    def run(self) -> None:
        try:
            self._run()
        finally:
            # End the thread's event loop from inside, so `Task.wait()` works even while the UI thread
            # is blocked (closing the window during a run).
            self.thread().quit()

    def _run(self) -> None:
        try:
            out = self._fn(self._progress, self._cancelled)
            if inspect.isgenerator(out):
                out = self._drain(out)
            if self._stop.is_set():
                self.result.emit("cancelled", None)
            else:
                self.result.emit("finished", out)
        except Cancelled:
            self.result.emit("cancelled", None)
        except GeminiError as exc:
            self.result.emit("failed", (str(exc), traceback.format_exc()))
        except MemoryError:
            self.result.emit("failed", ("out of memory", traceback.format_exc()))
        except Exception as exc:  # a bug or an unexpected library error: show it, never crash the UI
            log.exception("task failed")
            self.result.emit("failed", (f"{type(exc).__name__}: {exc}".splitlines()[0], traceback.format_exc()))

    def _drain(self, gen):
        while True:
            if self._stop.is_set():
                gen.close()
                raise Cancelled("cancelled")
            try:
                item = next(gen)
            except StopIteration as stop:
                return stop.value
            if isinstance(item, tuple) and len(item) == 2:
                self._progress(*item)
            elif hasattr(item, "fraction"):
                self._progress(item.fraction, getattr(item, "message", ""))


class Task(QObject):
    """One background call. Keep a reference until `done` is emitted."""

    progress = Signal(float, str)
    finished = Signal(object)
    failed = Signal(str, str)
    cancelled = Signal()
    done = Signal()

    def __init__(self, fn: Callable[..., Any], name: str = "task", parent: QObject | None = None):
        super().__init__(parent)
        self.name = name
        self._stop = threading.Event()
        self._thread = QThread()
        self._thread.setObjectName(f"gemini-{name}")
        self._runner = _Runner(fn, self._stop)
        self._runner.moveToThread(self._thread)
        self._thread.started.connect(self._runner.run)
        self._runner.progress.connect(self.progress)
        self._runner.result.connect(self._on_result)
        self._running = False

    def start(self) -> Task:
        self._running = True
        self._thread.start()
        return self

    def cancel(self) -> None:
        """Ask the call to stop; it stops at its next cancel check."""
        self._stop.set()

    @property
    def cancel_requested(self) -> bool:
        return self._stop.is_set()

    def is_running(self) -> bool:
        """From `start` until the result has been delivered (`done`). The worker thread ends before its
        queued result reaches this thread, so the thread's own state would say "stopped" while the result
        is still on its way, and a second call could start and then be overwritten by the first."""
        return self._running

    def wait(self, msecs: int = 30000) -> bool:
        """Block until the thread ends (used when the window closes); a task waited for is no longer
        running, whether or not its result is delivered afterwards."""
        stopped = self._thread.wait(msecs)
        if stopped:
            self._running = False
        return stopped

    @Slot(str, object)
    def _on_result(self, kind: str, payload: object) -> None:
        self._thread.quit()
        self._thread.wait()
        self._running = False
        if kind == "finished":
            self.finished.emit(payload)
        elif kind == "cancelled":
            self.cancelled.emit()
        else:
            message, details = payload
            self.failed.emit(message, details)
        self.done.emit()
