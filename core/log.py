"""Logging set up once, for the CLI and the app. Library code only calls `logging.getLogger`."""

from __future__ import annotations

import logging
import sys

_CONFIGURED = False


def setup_logging(verbosity: int = 0) -> None:
    """0: warnings, 1 (-v): info, 2+ (-vv): debug. Idempotent."""
    global _CONFIGURED
    level = logging.WARNING if verbosity <= 0 else logging.INFO if verbosity == 1 else logging.DEBUG
    root = logging.getLogger()
    if not _CONFIGURED:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        root.addHandler(handler)
        _CONFIGURED = True
    root.setLevel(level)
    # Third-party chatter stays quiet unless debugging.
    for noisy in ("pydicom", "PIL", "matplotlib", "vtk"):
        logging.getLogger(noisy).setLevel(logging.DEBUG if verbosity >= 3 else logging.ERROR)
    # PACS clients: their failures become one-line `PacsError`s (core.io.pacs), so their own logs stay quiet.
    for client in ("pynetdicom", "retrying", "dicomweb_client"):
        logging.getLogger(client).setLevel(logging.DEBUG if verbosity >= 3 else logging.CRITICAL)
