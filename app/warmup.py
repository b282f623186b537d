"""Slow imports, done ahead of need: background warm-ups of the study readers and the engine, the 3D
view's modules, and the engine module itself (imported only when Super-resolve needs it).

The window starts without torch, pyvista or VTK: the study readers are warmed up once the window is up,
the engine (torch) once a study is shown, the 3D view's modules on their own thread at start.
"""

from __future__ import annotations

import importlib
import logging
import os
import sys
import threading
from types import ModuleType

log = logging.getLogger(__name__)

_WARM: dict[tuple[str, ...], threading.Thread] = {}
ENGINE_MODULES = ("gemini_cmr.core.engine", "gemini_cmr.core.predict")  # core.predict imports torch
STUDY_MODULES = ("gemini_cmr.core.io.loader", "scipy.ndimage")  # reading a study (nibabel, pydicom), the reformats


def prewarm(modules: tuple[str, ...]) -> threading.Thread | None:
    """Import `modules` on a background thread, once per process, so that the first action that needs
    them does not wait: the study readers once the window is up, the engine (torch) once a study is shown
    (the window itself starts without them). Errors are left to the real call, which reports them.
    Returns the thread, or None when the modules are already imported or this warm-up already ran.
    GEMINI_CMR_PREWARM=0 turns warm-ups off."""
    if modules in _WARM or all(m in sys.modules for m in modules) or os.environ.get("GEMINI_CMR_PREWARM") == "0":
        return None

    def work() -> None:
        for name in modules:
            try:
                importlib.import_module(name)
            except Exception as exc:  # noqa: BLE001 - reported by the real call
                log.debug("warm-up: %s not imported (%s)", name, exc)
                return

    # not a daemon: interpreter shutdown waits for a running import instead of tearing it down
    th = _WARM[modules] = threading.Thread(target=work, name="gemini-cmr-warm-up")
    th.start()
    return th


def join_threads(threads, timeout_s: float) -> bool:
    """Wait for `threads`, `timeout_s` in all (not each). True when none is left running."""
    import time

    threads = list(threads)
    end = time.monotonic() + timeout_s
    for th in threads:
        th.join(max(0.0, end - time.monotonic()))
    return not any(th.is_alive() for th in threads)


def wait_warm_ups(timeout_s: float = 60.0) -> bool:
    """Wait for the running warm-up imports (a window closing: the rest of the teardown then runs with no
    import of native modules on another thread). True when none is left running."""
    return join_threads(_WARM.values(), timeout_s)


def prewarm_engine() -> threading.Thread | None:
    """`prewarm(ENGINE_MODULES)`: started when a study is shown, while the user looks at it."""
    return prewarm(ENGINE_MODULES)


def import_surface_modules() -> None:
    """Import the 3D view's modules (pyvista, pyvistaqt, VTK: the slowest imports); run on a thread."""
    import gemini_cmr.app.views.surface_view  # noqa: F401


def engine_module() -> ModuleType | None:
    """`core.engine` (imported lazily: it pulls in torch, which the window does not need to start), or
    None when this build has no engine."""
    try:
        import gemini_cmr.core.engine as engine
    except ModuleNotFoundError as exc:
        if exc.name == "gemini_cmr.core.engine":
            return None
        raise
    return engine
