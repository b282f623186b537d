"""Remembered settings (QSettings): recent files, model, adapter, device, window layout, 3D mode.

`GEMINI_CMR_SETTINGS` names an INI file to use instead of the user's settings (tests, kiosks).
"""

from __future__ import annotations

import os
from pathlib import Path

from PySide6.QtCore import QByteArray, QSettings

MAX_RECENT = 10


class Settings:
    def __init__(self, path: str | None = None):
        path = path or os.environ.get("GEMINI_CMR_SETTINGS")
        if path:
            self._qs = QSettings(str(path), QSettings.Format.IniFormat)
        else:
            self._qs = QSettings("GeminiCMR", "Gemini CMR")

    # --- recent files ---------------------------------------------------------------------------
    def recent_files(self) -> list[str]:
        value = self._qs.value("recent_files", [])
        if isinstance(value, str):
            value = [value]
        return [str(v) for v in (value or []) if v]

    def add_recent(self, path: str | Path) -> list[str]:
        path = str(Path(path).resolve())
        items = [p for p in self.recent_files() if p != path]
        items.insert(0, path)
        items = items[:MAX_RECENT]
        self._qs.setValue("recent_files", items)
        return items

    def clear_recent(self) -> None:
        self._qs.setValue("recent_files", [])

    # --- engine choices -------------------------------------------------------------------------
    def _str(self, key: str, default: str = "") -> str:
        v = self._qs.value(key, default)
        return default if v is None else str(v)

    @property
    def model(self) -> str:
        """'' = the bundled model, else a path."""
        return self._str("engine/model")

    @model.setter
    def model(self, value: str) -> None:
        self._qs.setValue("engine/model", value or "")

    @property
    def adapter(self) -> str:
        """'' = no adapter, else a path."""
        return self._str("engine/adapter")

    @adapter.setter
    def adapter(self, value: str) -> None:
        self._qs.setValue("engine/adapter", value or "")

    @property
    def device(self) -> str:
        return self._str("engine/device", "auto")

    @device.setter
    def device(self, value: str) -> None:
        self._qs.setValue("engine/device", value or "auto")

    @property
    def last_dir(self) -> str:
        return self._str("paths/last_dir", str(Path.home()))

    @last_dir.setter
    def last_dir(self, value: str) -> None:
        self._qs.setValue("paths/last_dir", str(value))

    @property
    def surface_mode(self) -> str:
        """The 3D view's mode (app.theme.SURFACE_MODES key)."""
        return self._str("view/surface_mode", "cine")

    @surface_mode.setter
    def surface_mode(self, value: str) -> None:
        self._qs.setValue("view/surface_mode", value or "cine")

    @property
    def motion_correction(self) -> bool:
        """Estimate and undo the per-slice breath-hold shifts before super-resolving (the engine's default)."""
        return self._str("engine/motion_correction", "true").lower() not in ("false", "0", "no")

    @motion_correction.setter
    def motion_correction(self, value: bool) -> None:
        self._qs.setValue("engine/motion_correction", "true" if value else "false")

    @property
    def tta(self) -> bool:
        """Test-time augmentation of the ED and ES labels (off by default: about 1.4x the network time)."""
        return self._str("engine/tta", "false").lower() in ("true", "1", "yes")

    @tta.setter
    def tta(self, value: bool) -> None:
        self._qs.setValue("engine/tta", "true" if value else "false")

    # --- window layout --------------------------------------------------------------------------
    def geometry(self) -> QByteArray | None:
        v = self._qs.value("window/geometry")
        return v if isinstance(v, QByteArray) else None

    def window_state(self) -> QByteArray | None:
        v = self._qs.value("window/state")
        return v if isinstance(v, QByteArray) else None

    def save_layout(self, geometry: QByteArray, state: QByteArray) -> None:
        self._qs.setValue("window/geometry", geometry)
        self._qs.setValue("window/state", state)

    def sync(self) -> None:
        self._qs.sync()
