"""The main window's controls around the views: the cine bar (slice and phase sliders, play, frame rate),
the Study dock (study information, display controls) and the Phenotypes dock.

Each `build_*` function creates its widgets as attributes of the window (`win.slice_slider`,
`win.study_fields`, `win.overlay_check`, `win.phenotypes_panel`, …) and connects them to the window's slots.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QCheckBox,
    QDockWidget,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSlider,
    QSpinBox,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from gemini_cmr.app.viewer_state import NO_VALUE, STUDY_FIELDS
from gemini_cmr.app.views.phenotypes_panel import PhenotypesPanel

if TYPE_CHECKING:
    from gemini_cmr.app.main_window import MainWindow

LEGEND = (
    '<span style="color:#28cd50">■</span> LV cavity<br><span style="color:#fad71e">■</span> LV myocardium'
    '<br><span style="color:#3282ff">■</span> RV cavity'
)
MOUSE_HINT = ("Left: crosshair · Right-drag: window/level · Wheel: zoom · Middle/Shift-drag: pan · "
              "Ctrl-drag: oblique plane")


def label_width(label: QLabel, longest: str) -> int:
    """Pixels `label` needs to show `longest` whole in its font (plus its margins)."""
    return label.fontMetrics().horizontalAdvance(longest) + 2 * label.margin() + 8


def build_cine_bar(win: MainWindow) -> QWidget:
    """The bar under the views: slice slider, play/pause, phase slider and frame rate."""
    bar = QWidget()
    bar.setObjectName("cineBar")
    bar.setStyleSheet("#cineBar { background: #2a2d33; }")
    h = QHBoxLayout(bar)
    h.setContentsMargins(8, 4, 8, 4)
    win.play_button = QToolButton()
    win.play_button.setText("▶")
    win.play_button.setToolTip("Play / pause the cine (Space)")
    win.play_button.setCheckable(True)
    win.play_button.setFocusPolicy(Qt.FocusPolicy.NoFocus)
    win.play_button.toggled.connect(win.set_playing)
    win.fps_spin = QSpinBox()
    win.fps_spin.setRange(1, 60)
    win.fps_spin.setValue(15)
    win.fps_spin.setSuffix(" fps")
    win.fps_spin.setFocusPolicy(Qt.FocusPolicy.ClickFocus)
    win.fps_spin.valueChanged.connect(win.set_fps)
    win.slice_slider = QSlider(Qt.Orientation.Horizontal)
    win.phase_slider = QSlider(Qt.Orientation.Horizontal)
    for s in (win.slice_slider, win.phase_slider):
        s.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        s.setMinimumWidth(80)
    win.slice_label = QLabel("slice –")
    win.phase_label = QLabel("phase –")
    # fixed widths, wide enough for the longest text (`ViewerState.slice_text` / `phase_text`): changing text
    # must not re-layout the window on every step, nor be cut off
    for lab, longest in ((win.slice_label, "slice 888/888 (SR)"), (win.phase_label, "phase 888/888  8888 ms  ED")):
        lab.setFixedWidth(label_width(lab, longest))
    win.slice_slider.valueChanged.connect(win.go_to_slice)
    win.phase_slider.valueChanged.connect(win.set_phase)
    h.addWidget(QLabel("Slice"))
    h.addWidget(win.slice_slider, 2)
    h.addWidget(win.slice_label)
    h.addSpacing(12)
    h.addWidget(win.play_button)
    h.addWidget(QLabel("Phase"))
    h.addWidget(win.phase_slider, 2)
    h.addWidget(win.phase_label)
    h.addWidget(win.fps_spin)
    return bar


def _study_panel(win: MainWindow) -> QWidget:
    """One read-only row per `STUDY_FIELDS` entry, then the study's warnings."""
    study_w = QWidget()
    form = QFormLayout(study_w)
    form.setContentsMargins(8, 8, 8, 8)
    form.setLabelAlignment(Qt.AlignmentFlag.AlignRight)
    win.study_fields = {}
    for key, text in STUDY_FIELDS:
        lab = QLabel(NO_VALUE)
        lab.setTextFormat(Qt.TextFormat.PlainText)
        lab.setWordWrap(True)
        lab.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        win.study_fields[key] = lab
        form.addRow(text, lab)
    win.warnings_label = QLabel("")
    win.warnings_label.setWordWrap(True)
    win.warnings_label.setStyleSheet("color: #f0b050;")
    form.addRow(win.warnings_label)
    return study_w


def _display_controls(win: MainWindow) -> QGroupBox:
    """Label overlay and its opacity, the colour legend, crosshair, window/level reset, fit."""
    disp = QGroupBox("Display")
    dl = QFormLayout(disp)
    win.overlay_check = QCheckBox("Label overlay")
    win.overlay_check.setChecked(True)
    win.opacity_slider = QSlider(Qt.Orientation.Horizontal)
    win.opacity_slider.setRange(0, 100)
    win.opacity_slider.setValue(45)
    win.crosshair_check = QCheckBox("Crosshair")
    win.crosshair_check.setChecked(True)
    wl_reset = QPushButton("Reset window/level")
    fit = QPushButton("Fit views")
    for w in (win.overlay_check, win.opacity_slider, win.crosshair_check, wl_reset, fit):
        w.setFocusPolicy(Qt.FocusPolicy.NoFocus)
    dl.addRow(win.overlay_check)
    dl.addRow("Opacity", win.opacity_slider)
    dl.addRow(QLabel(LEGEND))
    dl.addRow(win.crosshair_check)
    win.motion_check = QCheckBox("Input corrected for slice motion")
    win.motion_check.setToolTip("Show the input stack after the per-slice breath-hold shifts were undone "
                                "(as the network saw it); off: as acquired")
    win.motion_check.setEnabled(False)
    win.motion_check.setFocusPolicy(Qt.FocusPolicy.NoFocus)
    win.motion_label = QLabel("")
    win.motion_label.setObjectName("muted")
    win.motion_label.setWordWrap(True)
    dl.addRow(win.motion_check)
    dl.addRow(win.motion_label)
    win.motion_check.toggled.connect(win.apply_motion_view)
    row = QHBoxLayout()
    row.addWidget(wl_reset)
    row.addWidget(fit)
    dl.addRow(row)
    hint = QLabel(MOUSE_HINT)
    hint.setObjectName("muted")
    hint.setWordWrap(True)
    dl.addRow(hint)
    win.overlay_check.toggled.connect(win.apply_overlay)
    win.opacity_slider.valueChanged.connect(win.apply_overlay)
    win.crosshair_check.toggled.connect(win.apply_crosshair)
    wl_reset.clicked.connect(win.reset_window_level)
    fit.clicked.connect(win.fit_views)
    return disp


def build_docks(win: MainWindow) -> None:
    """The Study dock (left: study panel and display controls) and the Phenotypes dock (right)."""
    left = QWidget()
    ll = QVBoxLayout(left)
    ll.setContentsMargins(0, 0, 0, 0)
    ll.addWidget(_study_panel(win))
    ll.addWidget(_display_controls(win))
    ll.addStretch(1)
    win.study_dock = QDockWidget("Study", win)
    win.study_dock.setObjectName("studyDock")
    win.study_dock.setWidget(left)
    win.study_dock.setMinimumWidth(250)
    win.addDockWidget(Qt.DockWidgetArea.LeftDockWidgetArea, win.study_dock)

    win.phenotypes_panel = PhenotypesPanel()
    win.phenotypes_panel.phaseClicked.connect(win.set_phase)
    win.phen_dock = QDockWidget("Phenotypes", win)
    win.phen_dock.setObjectName("phenotypesDock")
    win.phen_dock.setWidget(win.phenotypes_panel)
    win.phen_dock.setMinimumWidth(300)
    win.addDockWidget(Qt.DockWidgetArea.RightDockWidgetArea, win.phen_dock)
    win.resizeDocks([win.study_dock, win.phen_dock], [270, 330], Qt.Orientation.Horizontal)
