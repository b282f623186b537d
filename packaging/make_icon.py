"""Render resources/icons/gemini-cmr.svg to gemini-cmr.png (256 x 256) with Qt's SVG renderer.

`QT_QPA_PLATFORM=offscreen .venv/bin/python packaging/make_icon.py`. PyInstaller converts the PNG to
.ico (Windows) and .icns (macOS) with Pillow when it builds there.
"""

from __future__ import annotations

import sys
from pathlib import Path

from PySide6.QtCore import Qt
from PySide6.QtGui import QGuiApplication, QImage, QPainter
from PySide6.QtSvg import QSvgRenderer

ICONS = Path(__file__).resolve().parents[1] / "resources" / "icons"


def main(size: int = 256) -> int:
    app = QGuiApplication.instance() or QGuiApplication(sys.argv[:1])  # noqa: F841 (keeps Qt alive)
    renderer = QSvgRenderer(str(ICONS / "gemini-cmr.svg"))
    if not renderer.isValid():
        print("make_icon: gemini-cmr.svg is not a valid SVG", file=sys.stderr)
        return 1
    img = QImage(size, size, QImage.Format.Format_ARGB32)
    img.fill(Qt.GlobalColor.transparent)
    painter = QPainter(img)
    painter.setRenderHint(QPainter.RenderHint.Antialiasing)
    renderer.render(painter)
    painter.end()
    out = ICONS / "gemini-cmr.png"
    if not img.save(str(out)):
        print(f"make_icon: could not write {out}", file=sys.stderr)
        return 1
    print(f"make_icon: wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
