"""gemini_cmr.app.workers.Task: results, errors and cancellation arrive as signals on the UI thread."""

from __future__ import annotations

import threading

import pytest

from gemini_cmr.app.workers import Task
from gemini_cmr.core.errors import StudyError

pytestmark = pytest.mark.gui


def test_generator_task_reports_progress_and_stops_between_yields(qtbot):
    release = threading.Event()
    seen = []

    def work(progress, cancel):
        for i in range(1000):
            yield (i / 1000, f"step {i}")
            release.wait(5)  # hold the worker until the test has asked to cancel
        return "finished"

    task = Task(work)
    task.progress.connect(lambda f, m: seen.append(m))
    task.finished.connect(lambda r: seen.append(("finished", r)))
    with qtbot.waitSignal(task.cancelled, timeout=10000):
        task.start()
        task.cancel()
        release.set()
    assert not task.is_running()
    assert not any(isinstance(s, tuple) for s in seen)
    assert len(seen) < 1000


def test_task_errors_and_results(qtbot):
    def bad(progress, cancel):
        raise StudyError("cannot read", "/x/study.nii.gz")

    task = Task(bad)
    with qtbot.waitSignal(task.failed, timeout=10000) as sig:
        task.start()
    assert sig.args[0] == "/x/study.nii.gz: cannot read" and "Traceback" in sig.args[1]

    task = Task(lambda progress, cancel: (progress(0.5, "half"), 42)[1])
    got = []
    task.progress.connect(lambda f, m: got.append((f, m)))
    with qtbot.waitSignal(task.finished, timeout=10000) as sig:
        task.start()
    assert sig.args == [42] and got == [(0.5, "half")]


def test_a_task_runs_until_its_result_is_delivered(qtbot):
    """The worker thread ends before its queued result reaches the UI thread: until `done` the task is still
    running, so a caller that starts a new task only when none runs cannot be overtaken by a late result."""
    import time

    ended = threading.Event()
    task = Task(lambda progress, cancel: (ended.set(), 7)[1])
    task.start()
    assert ended.wait(10)
    time.sleep(0.2)  # the worker thread ends; no event is processed here, so nothing is delivered yet
    assert task.is_running()
    with qtbot.waitSignal(task.done, timeout=10000):
        pass
    assert not task.is_running()
