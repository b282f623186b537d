"""Run a `gemini-cmr` command in a separate process (QProcess) and read its `--progress-json` stream.

A separate process keeps the UI responsive, makes Cancel immediate and means a crash in training cannot
take the app down; the wizard and the CLI share one code path. Cancel sends SIGINT (the trainer then stops
after the current step and writes its last checkpoint, as with Ctrl-C), and kills the process if it has
not ended after `kill_after_ms`.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sys

from PySide6.QtCore import QObject, QProcess, QProcessEnvironment, QTimer, Signal

log = logging.getLogger(__name__)
TERMINAL_EVENTS = ("done", "interrupted", "stopped")


def cli_command(args: list[str]) -> tuple[str, list[str]]:
    """(program, arguments) that run `gemini-cmr ARGS` with this interpreter."""
    if getattr(sys, "frozen", False):  # PyInstaller bundle: the executable is `gemini-cmr` itself
        return sys.executable, [str(a) for a in args]
    return sys.executable, ["-m", "gemini_cmr.cli.main", *[str(a) for a in args]]


class CliProcess(QObject):
    """One `gemini-cmr` run. Signals: `event(dict)` per JSON line on stdout, `log(str)` per other line
    (stderr and non-JSON stdout), `finished(status, exit_code)` once, with status one of
    "done", "interrupted" (stopped with a checkpoint), "cancelled", "failed"."""

    event = Signal(object)  # dict
    log = Signal(str)
    finished = Signal(str, int)

    def __init__(self, args: list[str], env: dict[str, str] | None = None, kill_after_ms: int = 60000,
                 parent: QObject | None = None):
        super().__init__(parent)
        self.args = [str(a) for a in args]
        self.kill_after_ms = kill_after_ms
        self.cancel_requested = False
        self.last_event: dict | None = None
        self.terminal_event: dict | None = None  # the last of TERMINAL_EVENTS
        self.error_line = ""
        self._out = b""
        self._err = b""
        self.proc = QProcess(self)
        penv = QProcessEnvironment.systemEnvironment()  # the same interpreter: gemini_cmr is importable
        penv.insert("PYTHONUNBUFFERED", "1")
        for k, v in (env or {}).items():
            penv.insert(k, str(v))
        self.proc.setProcessEnvironment(penv)
        self.proc.readyReadStandardOutput.connect(self._read_out)
        self.proc.readyReadStandardError.connect(self._read_err)
        self.proc.finished.connect(self._on_finished)
        self.proc.errorOccurred.connect(self._on_error)
        self._kill_timer = QTimer(self)
        self._kill_timer.setSingleShot(True)
        self._kill_timer.timeout.connect(self._kill)
        self._finished_emitted = False

    @property
    def command_line(self) -> str:
        return "gemini-cmr " + " ".join(self.args)

    def start(self) -> None:
        program, arguments = cli_command(self.args)
        self.log.emit(f"$ {self.command_line}")
        self.proc.start(program, arguments)

    def is_running(self) -> bool:
        return self.proc.state() != QProcess.ProcessState.NotRunning

    def cancel(self) -> None:
        """Ask the process to stop gracefully (SIGINT = Ctrl-C: checkpoint, then exit); kill it later."""
        if not self.is_running():
            return
        self.cancel_requested = True
        pid = self.proc.processId()
        if os.name == "posix" and pid:
            try:
                os.kill(pid, signal.SIGINT)
            except OSError:
                self.proc.terminate()
        else:  # Windows: no SIGINT for a child without a console; terminate (checkpoint may be skipped)
            self.proc.terminate()
        self._kill_timer.start(self.kill_after_ms)

    def _kill(self) -> None:
        if self.is_running():
            self.log.emit(f"the process did not stop within {self.kill_after_ms / 1000:.0f} s: killing it")
            self.proc.kill()

    def wait(self, msecs: int = 30000) -> bool:
        return self.proc.waitForFinished(msecs) or not self.is_running()

    # --- streams -----------------------------------------------------------------------------------------
    def _lines(self, buf: bytes, data: bytes, final: bool = False) -> tuple[bytes, list[str]]:
        buf += data
        parts = buf.replace(b"\r", b"\n").split(b"\n")
        rest = b"" if final else parts.pop()
        return rest, [p.decode("utf-8", "replace") for p in parts if p.strip()]

    def _read_out(self, final: bool = False) -> None:
        self._out, lines = self._lines(self._out, bytes(self.proc.readAllStandardOutput()), final)
        for line in lines:
            try:
                e = json.loads(line)
            except ValueError:
                self.log.emit(line)
                continue
            if isinstance(e, dict) and "event" in e:
                self.last_event = e
                if e["event"] in TERMINAL_EVENTS:
                    self.terminal_event = e
                self.event.emit(e)
            else:
                self.log.emit(line)

    def _read_err(self, final: bool = False) -> None:
        self._err, lines = self._lines(self._err, bytes(self.proc.readAllStandardError()), final)
        for line in lines:
            if line.startswith("gemini-cmr: "):
                self.error_line = line[len("gemini-cmr: "):]
            self.log.emit(line)

    # --- end ---------------------------------------------------------------------------------------------
    def _on_error(self, error: QProcess.ProcessError) -> None:
        if error == QProcess.ProcessError.FailedToStart:
            self.error_line = f"could not start {sys.executable}: {self.proc.errorString()}"
            self.log.emit(self.error_line)
            self._emit_finished("failed", -1)

    def _on_finished(self, code: int, status: QProcess.ExitStatus) -> None:
        self._kill_timer.stop()
        self._read_out(final=True)
        self._read_err(final=True)
        # the training's own end (a fine-tuning run compares models after it: "compare", "compared")
        last = (self.terminal_event or self.last_event or {}).get("event")
        if code == 0 and last in ("done", None) and status == QProcess.ExitStatus.NormalExit:
            result = "done"
        elif last in ("interrupted", "stopped") or (code == 130 and self.cancel_requested):
            result = "interrupted"
        elif self.cancel_requested:
            result = "cancelled"
        else:
            result = "failed"
            if not self.error_line:
                self.error_line = (f"the process ended with exit status {code}" if status ==
                                   QProcess.ExitStatus.NormalExit else "the process crashed")
        self.log.emit(f"[exit status {code}: {result}]")
        self._emit_finished(result, code)

    def _emit_finished(self, result: str, code: int) -> None:
        if not self._finished_emitted:
            self._finished_emitted = True
            self.finished.emit(result, int(code))
