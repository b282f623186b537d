"""Exceptions that carry a one-line, user-facing message.

The CLI turns any `GeminiError` into `gemini-cmr: <message>` on stderr and exit status 2;
the app shows the same message in a dialog. Everything else is a bug and gets a traceback.
"""

from __future__ import annotations


class GeminiError(Exception):
    """A user-facing error: bad input, missing file, wrong model. `str(e)` is one line."""

    def __init__(self, message: str, path: str | None = None):
        self.path = None if path is None else str(path)
        msg = " ".join(str(message).split())
        super().__init__(f"{self.path}: {msg}" if self.path else msg)


class StudyError(GeminiError):
    """A study cannot be read or is inconsistent."""


class ModelError(GeminiError):
    """A model file is missing, of the wrong kind, or does not match its config."""


class DataError(GeminiError):
    """A training/evaluation dataset is malformed."""


class Cancelled(GeminiError):
    """The user cancelled a long operation."""


class DeviceError(GeminiError):
    """The requested device (or precision) is not available on this machine."""


class PacsError(GeminiError):
    """A PACS cannot be reached, refuses the credentials, lacks the study, or rejects an upload."""
