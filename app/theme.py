"""Look and feel: a dark theme (like 3D Slicer / ITK-SNAP) and the label colours shared by 2D and 3D."""

from __future__ import annotations

import numpy as np
from PySide6.QtGui import QColor, QPalette
from PySide6.QtWidgets import QApplication

from gemini_cmr.core.study import LABEL_COLOURS
from gemini_cmr.core.study import LABEL_OF as STRUCTURE_LABELS

ACCENT = "#3d8ee6"
SURFACE_MODES = (("cine", "Cine phase"), ("ed", "ED"), ("es", "ES"), ("side", "ED | ES side by side"),
                 ("compare", "ES + ED wireframe"))
SURFACE_VIEWS = (("4ch", "Long axis (4-chamber)"), ("anterior", "Anterior"), ("septal", "Septal"),
                 ("base", "Base (short axis)"), ("apex", "Apex"), ("reset", "Reset"))
CROSSHAIR = QColor(255, 140, 40, 200)


def label_lut() -> np.ndarray:
    """(256, 4) uint8 RGBA lookup table: label -> colour (alpha 255 for structures, 0 otherwise)."""
    lut = np.zeros((256, 4), dtype=np.uint8)
    for label, rgb in LABEL_COLOURS.items():
        lut[label] = (*rgb, 255)
    return lut


def structure_colour(structure: str) -> tuple[float, float, float]:
    r, g, b = LABEL_COLOURS[STRUCTURE_LABELS[structure]]
    return r / 255, g / 255, b / 255


STYLESHEET = f"""
QMainWindow, QDialog {{ background: #202226; }}
QWidget {{ color: #d8dadf; font-size: 10pt; }}
QToolBar {{ background: #2a2d33; border: none; spacing: 6px; padding: 3px; }}
QToolBar QToolButton {{ padding: 4px 8px; border-radius: 3px; }}
QToolBar QToolButton:hover {{ background: #3a3e46; }}
QToolButton::menu-indicator {{ image: none; width: 0px; }}
QToolButton#superResolve {{ background: {ACCENT}; color: white; font-weight: bold; padding: 5px 14px; }}
QToolButton#superResolve:hover {{ background: #5aa2f0; }}
QToolButton#superResolve:disabled {{ background: #3a4452; color: #8a93a0; }}
QDockWidget {{ titlebar-close-icon: none; }}
QDockWidget::title {{ background: #2a2d33; padding: 4px 8px; font-weight: bold; }}
QGroupBox {{ border: 1px solid #3a3e46; border-radius: 4px; margin-top: 14px; padding-top: 6px; }}
QGroupBox::title {{ subcontrol-origin: margin; left: 8px; padding: 0 4px; color: #9fb4cc; }}
QTableWidget {{ background: #1b1d21; gridline-color: #33363d; border: none; }}
QHeaderView::section {{ background: #2a2d33; border: none; padding: 3px 6px; color: #9fb4cc; }}
QStatusBar {{ background: #2a2d33; }}
QProgressBar {{ border: 1px solid #3a3e46; border-radius: 3px; background: #1b1d21; text-align: center;
  max-height: 14px; }}
QProgressBar::chunk {{ background: {ACCENT}; }}
QSlider::groove:horizontal {{ height: 4px; background: #3a3e46; border-radius: 2px; }}
QSlider::handle:horizontal {{ background: {ACCENT}; width: 12px; margin: -5px 0; border-radius: 6px; }}
QSlider::sub-page:horizontal {{ background: #2f6fb5; border-radius: 2px; }}
QLabel#viewTitle {{ color: #9fb4cc; font-weight: bold; padding: 2px 4px; }}
QLabel#bigNumber {{ font-size: 15pt; font-weight: bold; color: #ffffff; }}
QLabel#muted {{ color: #8a93a0; }}
QComboBox, QSpinBox, QDoubleSpinBox, QLineEdit {{ background: #1b1d21; border: 1px solid #3a3e46;
  border-radius: 3px; padding: 2px 6px; }}
QPushButton {{ background: #33373f; border: 1px solid #44484f; border-radius: 3px; padding: 4px 12px; }}
QPushButton:hover {{ background: #3d424b; }}
QSplitter::handle {{ background: #2a2d33; }}
QTabBar::tab {{ background: #2a2d33; padding: 4px 12px; border: none; }}
QTabBar::tab:selected {{ background: #3a3e46; color: white; }}
"""


def apply_dark_theme(app: QApplication) -> None:
    app.setStyle("Fusion")
    pal = QPalette()
    base, window, text = QColor(27, 29, 33), QColor(32, 34, 38), QColor(216, 218, 223)
    pal.setColor(QPalette.ColorRole.Window, window)
    pal.setColor(QPalette.ColorRole.WindowText, text)
    pal.setColor(QPalette.ColorRole.Base, base)
    pal.setColor(QPalette.ColorRole.AlternateBase, QColor(38, 41, 46))
    pal.setColor(QPalette.ColorRole.ToolTipBase, QColor(45, 48, 54))
    pal.setColor(QPalette.ColorRole.ToolTipText, text)
    pal.setColor(QPalette.ColorRole.Text, text)
    pal.setColor(QPalette.ColorRole.Button, QColor(45, 48, 54))
    pal.setColor(QPalette.ColorRole.ButtonText, text)
    pal.setColor(QPalette.ColorRole.Highlight, QColor(ACCENT))
    pal.setColor(QPalette.ColorRole.HighlightedText, QColor(255, 255, 255))
    pal.setColor(QPalette.ColorRole.Link, QColor(ACCENT))
    for role in (QPalette.ColorRole.Text, QPalette.ColorRole.ButtonText, QPalette.ColorRole.WindowText):
        pal.setColor(QPalette.ColorGroup.Disabled, role, QColor(120, 124, 130))
    app.setPalette(pal)
    app.setStyleSheet(STYLESHEET)
