"""The main window: menus, toolbar, docks and the four views; wires signals, holds no science.

Data flow: a path -> `core.io.loader.load_study` (worker thread) -> `Study` shown as LR; Super-resolve ->
`core.engine.SuperResolver.run` (worker thread) -> `Result` shown as SR slices, long-axis reformats, 3D
surfaces and phenotypes. Geometry (world <-> voxel, long axis, plane sampling) comes from `core`.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any

import numpy as np
from PySide6.QtCore import QPoint, Qt, QTimer, Signal
from PySide6.QtGui import QAction, QActionGroup, QImage, QKeySequence, QPainter
from PySide6.QtWidgets import (
    QApplication,
    QCheckBox,
    QComboBox,
    QDockWidget,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QMainWindow,
    QMessageBox,
    QProgressBar,
    QPushButton,
    QSizePolicy,
    QSlider,
    QSpinBox,
    QSplitter,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from gemini_cmr.app.settings import Settings
from gemini_cmr.app.theme import SURFACE_MODES, SURFACE_VIEWS
from gemini_cmr.app.views.phenotypes_panel import PhenotypesPanel
from gemini_cmr.app.views.reformat_view import ReformatView
from gemini_cmr.app.views.slice_view import SliceView
from gemini_cmr.app.workers import Task
from gemini_cmr.core import __version__
from gemini_cmr.core.reformat import LongAxis, long_axis, plane_slice_line
from gemini_cmr.core.study import Study

log = logging.getLogger(__name__)

DEVICES = ("auto", "cpu", "cuda")
STUDY_FILTER = "Cine studies (*.nii *.nii.gz *.zip *.dcm);;All files (*)"


def _short_id(text: str, n: int = 16) -> str:
    text = str(text)
    return text if len(text) <= n else text[:n] + "…"


def _import_surface_modules() -> None:
    import gemini_cmr.app.views.surface_view  # noqa: F401  (pyvista, pyvistaqt, VTK)


def _engine():
    """`core.engine` (imported lazily: it pulls in torch, which the window does not need to start)."""
    try:
        import gemini_cmr.core.engine as engine
    except ModuleNotFoundError as exc:
        if exc.name == "gemini_cmr.core.engine":
            return None
        raise
    return engine


_WARM: dict[tuple[str, ...], threading.Thread] = {}
ENGINE_MODULES = ("gemini_cmr.core.engine", "gemini_cmr.core.predict")  # core.predict imports torch: ~1.2 s on the 2-core CPU
STUDY_MODULES = ("gemini_cmr.core.io.loader", "scipy.ndimage")  # reading a study (nibabel, pydicom), the reformats


def prewarm(modules: tuple[str, ...]) -> threading.Thread | None:
    """Import `modules` on a background thread, once per process, so that the first action that needs
    them does not wait: the study readers once the window is up, the engine (torch) once a study is shown
    (the window itself starts without them). Errors are left to the real call, which reports them.
    Returns the thread, or None when the modules are already imported or this warm-up already ran.
    GEMINI_CMR_PREWARM=0 turns warm-ups off."""
    import importlib
    import os
    import sys

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


def prewarm_engine() -> threading.Thread | None:
    """`prewarm(ENGINE_MODULES)`: started when a study is shown, while the user looks at it."""
    return prewarm(ENGINE_MODULES)


class MainWindow(QMainWindow):
    studyLoaded = Signal(object)
    resultReady = Signal(object)
    taskFailed = Signal(str, str)
    taskCancelled = Signal()
    exportDone = Signal(object)
    surfaceReady = Signal()
    meshesReady = Signal()  # the other phases' surfaces, made after the result was shown

    def __init__(self, settings: Settings | None = None, model: str | None = None, adapter: str | None = None,
                 device: str | None = None, interactive: bool = True, with_3d: bool = True):
        super().__init__()
        self.settings = settings or Settings()
        self.interactive = interactive
        self.study: Study | None = None
        self.result: Any = None
        self.axis: LongAxis | None = None
        self.task: Task | None = None
        self._mesh_tasks: list[Task] = []  # the other phases' surfaces, after a result is shown (kept until done)
        self.phase = 0
        self.cursor = np.zeros(3)
        self._engine_cache: dict[tuple, Any] = {}
        self._wl_default = (1.0, 0.5)
        self.setWindowTitle("Gemini CMR")
        self.setAcceptDrops(True)
        self.setDockOptions(QMainWindow.DockOption.AnimatedDocks | QMainWindow.DockOption.AllowTabbedDocks)

        # --- views ------------------------------------------------------------------------------
        self.lr_view = SliceView("LR")
        self.sr_view = SliceView("SR")
        self.lr_view.placeholder = "Open a study (File > Open, or drop a file here)"
        self.sr_view.placeholder = "Click Super-resolve to compute the SR image and segmentation"
        self.reformat_view = ReformatView()
        # The 3D view (pyvista/VTK: the slowest imports) is created once the window is up: its modules are
        # imported on a background thread, then the widget is made on the UI thread (`surfaceReady`).
        self.surface_view = None
        self.with_3d = with_3d
        top = QSplitter(Qt.Orientation.Horizontal)
        top.addWidget(self.lr_view)
        top.addWidget(self.sr_view)
        bottom = QSplitter(Qt.Orientation.Horizontal)
        self.bottom_split = bottom
        bottom.addWidget(self.reformat_view)
        if with_3d:
            self._surface_placeholder = QLabel("Loading 3D view…")
            self._surface_placeholder.setAlignment(Qt.AlignmentFlag.AlignCenter)
            self._surface_placeholder.setObjectName("muted")
            bottom.addWidget(self._surface_placeholder)
            bottom.setStretchFactor(0, 3)
            bottom.setStretchFactor(1, 2)
        self.view_split = QSplitter(Qt.Orientation.Vertical)
        self.view_split.addWidget(top)
        self.view_split.addWidget(bottom)
        self.view_split.setSizes([560, 400])
        central = QWidget()
        lay = QVBoxLayout(central)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.setSpacing(0)
        lay.addWidget(self.view_split, 1)
        lay.addWidget(self._build_cine_bar())
        self.setCentralWidget(central)

        self._build_docks()
        self._build_toolbar(model, adapter, device)
        self._build_menus()
        self._build_status_bar()
        self._connect_views()
        self._play_timer = QTimer(self)
        self._play_timer.timeout.connect(self.next_phase)
        self._set_enabled_state()
        geometry = self.settings.geometry()
        if geometry is not None:
            self.restoreGeometry(geometry)
        else:
            self.resize(1600, 1000)
        state = self.settings.window_state()
        if state is not None:
            self.restoreState(state)
        if with_3d:
            self._import_3d = threading.Thread(target=_import_surface_modules, name="gemini-import-3d", daemon=True)
            self._import_3d.start()
            self._poll_3d = QTimer(self)
            self._poll_3d.timeout.connect(self._create_surface_view)
            self._poll_3d.start(30)
        prewarm(STUDY_MODULES)  # the first Open does not wait for nibabel, pydicom and scipy.ndimage

    def _remember_surface_mode(self, mode: str) -> None:
        self.settings.surface_mode = mode

    def _split_bottom(self) -> None:
        total = sum(self.bottom_split.sizes()) or self.bottom_split.width()
        self.bottom_split.setSizes([int(total * 0.58), total - int(total * 0.58)])

    def _create_surface_view(self) -> None:
        if self._import_3d.is_alive():
            return
        self._poll_3d.stop()
        try:
            from gemini_cmr.app.views.surface_view import SurfaceView

            sv = SurfaceView(self)  # in this window from the start: its native 3D window is never re-created
        except Exception as exc:  # no usable OpenGL, broken VTK: the 2D app still works
            log.exception("3D view unavailable")
            self.with_3d = False
            self._surface_placeholder.setText(f"3D view unavailable:\n{type(exc).__name__}: {exc}"[:300])
            self.surfaceReady.emit()
            return
        self.bottom_split.replaceWidget(1, sv)
        QTimer.singleShot(0, self._split_bottom)
        self._surface_placeholder.deleteLater()
        self.surface_view = sv
        if self.settings.surface_mode in {k for k, _ in SURFACE_MODES}:
            sv.set_mode(self.settings.surface_mode)
        sv.modeChanged.connect(self._remember_surface_mode)
        if self.result is not None:
            sv.set_meshes(self.result.meshes or {}, int(self.result.ed_phase), int(self.result.es_phase), self.axis)
            sv.set_phase(self.phase)
        self.surfaceReady.emit()

    # ============================================================================================
    # construction
    # ============================================================================================
    def _build_cine_bar(self) -> QWidget:
        bar = QWidget()
        bar.setObjectName("cineBar")
        bar.setStyleSheet("#cineBar { background: #2a2d33; }")
        h = QHBoxLayout(bar)
        h.setContentsMargins(8, 4, 8, 4)
        self.play_button = QToolButton()
        self.play_button.setText("▶")
        self.play_button.setToolTip("Play / pause the cine (Space)")
        self.play_button.setCheckable(True)
        self.play_button.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.play_button.toggled.connect(self.set_playing)
        self.fps_spin = QSpinBox()
        self.fps_spin.setRange(1, 60)
        self.fps_spin.setValue(15)
        self.fps_spin.setSuffix(" fps")
        self.fps_spin.setFocusPolicy(Qt.FocusPolicy.ClickFocus)
        self.fps_spin.valueChanged.connect(self._on_fps)
        self.slice_slider = QSlider(Qt.Orientation.Horizontal)
        self.phase_slider = QSlider(Qt.Orientation.Horizontal)
        for s in (self.slice_slider, self.phase_slider):
            s.setFocusPolicy(Qt.FocusPolicy.NoFocus)
            s.setMinimumWidth(80)
        self.slice_label = QLabel("slice –")
        self.phase_label = QLabel("phase –")
        for lab in (self.slice_label, self.phase_label):
            lab.setFixedWidth(150)  # fixed: changing text must not re-layout the window on every step
        self.slice_slider.valueChanged.connect(self._on_slice_slider)
        self.phase_slider.valueChanged.connect(self.set_phase)
        h.addWidget(QLabel("Slice"))
        h.addWidget(self.slice_slider, 2)
        h.addWidget(self.slice_label)
        h.addSpacing(12)
        h.addWidget(self.play_button)
        h.addWidget(QLabel("Phase"))
        h.addWidget(self.phase_slider, 2)
        h.addWidget(self.phase_label)
        h.addWidget(self.fps_spin)
        return bar

    def _build_docks(self) -> None:
        # Study panel
        study_w = QWidget()
        form = QFormLayout(study_w)
        form.setContentsMargins(8, 8, 8, 8)
        form.setLabelAlignment(Qt.AlignmentFlag.AlignRight)
        self.study_fields: dict[str, QLabel] = {}
        for key, text in (("name", "Study"), ("format", "Format"), ("patient", "Patient"), ("vendor", "Vendor"),
                          ("series", "Series"), ("size", "Matrix"), ("spacing", "Spacing"), ("phases", "Phases"),
                          ("edes", "ED / ES"), ("labels", "Labels"), ("sr", "SR matrix"), ("sr_spacing", "SR spacing"),
                          ("model", "Model")):
            lab = QLabel("–")
            lab.setTextFormat(Qt.TextFormat.PlainText)
            lab.setWordWrap(True)
            lab.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
            self.study_fields[key] = lab
            form.addRow(text, lab)
        self.warnings_label = QLabel("")
        self.warnings_label.setWordWrap(True)
        self.warnings_label.setStyleSheet("color: #f0b050;")
        form.addRow(self.warnings_label)

        # Display controls
        disp = QGroupBox("Display")
        dl = QFormLayout(disp)
        self.overlay_check = QCheckBox("Label overlay")
        self.overlay_check.setChecked(True)
        self.opacity_slider = QSlider(Qt.Orientation.Horizontal)
        self.opacity_slider.setRange(0, 100)
        self.opacity_slider.setValue(45)
        self.crosshair_check = QCheckBox("Crosshair")
        self.crosshair_check.setChecked(True)
        wl_reset = QPushButton("Reset window/level")
        fit = QPushButton("Fit views")
        for w in (self.overlay_check, self.opacity_slider, self.crosshair_check, wl_reset, fit):
            w.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        legend = QLabel(
            '<span style="color:#28cd50">■</span> LV cavity<br><span style="color:#fad71e">■</span> LV myocardium'
            '<br><span style="color:#3282ff">■</span> RV cavity'
        )
        dl.addRow(self.overlay_check)
        dl.addRow("Opacity", self.opacity_slider)
        dl.addRow(legend)
        dl.addRow(self.crosshair_check)
        row = QHBoxLayout()
        row.addWidget(wl_reset)
        row.addWidget(fit)
        dl.addRow(row)
        hint = QLabel("Left: crosshair · Right-drag: window/level · Wheel: zoom · Middle/Shift-drag: pan · "
                      "Ctrl-drag: oblique plane")
        hint.setObjectName("muted")
        hint.setWordWrap(True)
        dl.addRow(hint)
        self.overlay_check.toggled.connect(self._apply_overlay)
        self.opacity_slider.valueChanged.connect(self._apply_overlay)
        self.crosshair_check.toggled.connect(self._apply_crosshair)
        wl_reset.clicked.connect(self.reset_window_level)
        fit.clicked.connect(self.fit_views)

        left = QWidget()
        ll = QVBoxLayout(left)
        ll.setContentsMargins(0, 0, 0, 0)
        ll.addWidget(study_w)
        ll.addWidget(disp)
        ll.addStretch(1)
        self.study_dock = QDockWidget("Study", self)
        self.study_dock.setObjectName("studyDock")
        self.study_dock.setWidget(left)
        self.study_dock.setMinimumWidth(250)
        self.addDockWidget(Qt.DockWidgetArea.LeftDockWidgetArea, self.study_dock)

        self.phenotypes_panel = PhenotypesPanel()
        self.phenotypes_panel.phaseClicked.connect(self.set_phase)
        self.phen_dock = QDockWidget("Phenotypes", self)
        self.phen_dock.setObjectName("phenotypesDock")
        self.phen_dock.setWidget(self.phenotypes_panel)
        self.phen_dock.setMinimumWidth(300)
        self.addDockWidget(Qt.DockWidgetArea.RightDockWidgetArea, self.phen_dock)
        self.resizeDocks([self.study_dock, self.phen_dock], [270, 330], Qt.Orientation.Horizontal)

    def _build_toolbar(self, model: str | None, adapter: str | None, device: str | None) -> None:
        tb = self.addToolBar("Main")
        tb.setObjectName("mainToolbar")
        tb.setMovable(False)
        self.open_action = QAction("Open…", self)
        self.open_action.setShortcut(QKeySequence.StandardKey.Open)
        self.open_action.triggered.connect(self.open_dialog)
        tb.addAction(self.open_action)
        tb.addSeparator()
        self.sr_action = QAction("Super-resolve", self)
        self.sr_action.setShortcut(QKeySequence("Ctrl+R"))
        self.sr_action.setToolTip("Super-resolve and segment the study with the selected model (Ctrl+R)")
        self.sr_action.triggered.connect(self.super_resolve)
        tb.addAction(self.sr_action)
        tb.widgetForAction(self.sr_action).setObjectName("superResolve")
        self.cancel_action = QAction("Cancel", self)
        self.cancel_action.setShortcut(QKeySequence("Esc"))
        self.cancel_action.triggered.connect(self.cancel_task)
        tb.addAction(self.cancel_action)
        tb.addSeparator()
        tb.addWidget(QLabel(" Model "))
        self.model_box = QComboBox()
        self.model_box.setMinimumWidth(190)
        self.model_box.addItem("Automatic: phantom or ACDC model", "")  # core.resources.default_model_for
        self.adapter_box = QComboBox()
        self.adapter_box.setMinimumWidth(130)
        self.adapter_box.addItem("No adapter", "")
        self.device_box = QComboBox()
        for d in DEVICES:
            self.device_box.addItem(d, d)
        for box in (self.model_box, self.adapter_box, self.device_box):
            box.setFocusPolicy(Qt.FocusPolicy.ClickFocus)
        self._set_combo_path(self.model_box, model if model is not None else self.settings.model)
        self._set_combo_path(self.adapter_box, adapter if adapter is not None else self.settings.adapter)
        dev = device or self.settings.device
        if self.device_box.findData(dev) < 0:
            self.device_box.addItem(dev, dev)
        self.device_box.setCurrentIndex(self.device_box.findData(dev))
        self.model_box.addItem("Browse…", "__browse__")
        self.adapter_box.addItem("Browse…", "__browse__")
        self.model_box.activated.connect(lambda _: self._combo_activated(self.model_box, "model"))
        self.adapter_box.activated.connect(lambda _: self._combo_activated(self.adapter_box, "adapter"))
        self.device_box.currentIndexChanged.connect(self._remember_engine_choice)
        tb.addWidget(self.model_box)
        tb.addWidget(QLabel(" Adapter "))
        tb.addWidget(self.adapter_box)
        tb.addWidget(QLabel(" Device "))
        tb.addWidget(self.device_box)
        spacer = QWidget()
        spacer.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Preferred)
        tb.addWidget(spacer)
        self.export_action = QAction("Export…", self)
        self.export_action.setShortcut(QKeySequence("Ctrl+E"))
        self.export_action.triggered.connect(self.export_dialog)
        tb.addAction(self.export_action)

    def _build_menus(self) -> None:
        mb = self.menuBar()
        fm = mb.addMenu("&File")
        fm.addAction(self.open_action)
        open_folder = fm.addAction("Open Folder…")
        open_folder.triggered.connect(self.open_folder_dialog)
        self.recent_menu = fm.addMenu("Open &Recent")
        self._rebuild_recent_menu()
        fm.addSeparator()
        fm.addAction(self.export_action)
        shot = fm.addAction("Save Screenshot…")
        shot.setShortcut(QKeySequence("Ctrl+Shift+S"))
        shot.triggered.connect(self.screenshot_dialog)
        fm.addSeparator()
        quit_action = fm.addAction("&Quit")
        quit_action.setShortcut(QKeySequence.StandardKey.Quit)
        quit_action.triggered.connect(self.close)

        vm = mb.addMenu("&View")
        vm.addAction(self.study_dock.toggleViewAction())
        vm.addAction(self.phen_dock.toggleViewAction())
        vm.addSeparator()
        self.overlay_action = vm.addAction("Label Overlay")
        self.overlay_action.setCheckable(True)
        self.overlay_action.setChecked(True)
        self.overlay_action.setShortcut(QKeySequence("L"))
        self.overlay_action.toggled.connect(self.overlay_check.setChecked)
        self.overlay_check.toggled.connect(self.overlay_action.setChecked)
        wl = vm.addAction("Reset Window/Level")
        wl.setShortcut(QKeySequence("R"))
        wl.triggered.connect(self.reset_window_level)
        fit = vm.addAction("Fit Views")
        fit.setShortcut(QKeySequence("F"))
        fit.triggered.connect(self.fit_views)
        vm.addSeparator()
        self.play_action = vm.addAction("Play / Pause")
        self.play_action.setShortcut(QKeySequence(Qt.Key.Key_Space))
        self.play_action.triggered.connect(self.play_button.toggle)
        for text, keys, fn in (
            ("Next Slice", ("Up", "Right"), lambda: self.step_slice(+1)),
            ("Previous Slice", ("Down", "Left"), lambda: self.step_slice(-1)),
            ("Next Phase", ("PgDown",), self.next_phase),
            ("Previous Phase", ("PgUp",), lambda: self.set_phase((self.phase - 1) % max(self.n_phases, 1))),
            ("Go to ED", ("E",), lambda: self.goto_ed_es("ed")),
            ("Go to ES", ("S",), lambda: self.goto_ed_es("es")),
        ):
            a = vm.addAction(text)
            a.setShortcuts([QKeySequence(k) for k in keys])
            a.triggered.connect(fn)
        vm.addSeparator()
        planes = vm.addMenu("Long-axis Plane")
        group = QActionGroup(self)
        for key, text, sc in (("4ch", "4-chamber", "4"), ("2ch", "2-chamber", "2"), ("oblique", "Oblique", "3")):
            a = planes.addAction(text)
            a.setShortcut(QKeySequence(sc))
            group.addAction(a)
            a.triggered.connect(lambda _=False, k=key: self.reformat_view.select_plane(k))
        draw = planes.addAction("Draw Oblique Line with Left Drag")
        draw.setCheckable(True)
        draw.setShortcut(QKeySequence("O"))
        draw.setToolTip("Left drag on a short-axis view draws the oblique plane (as Ctrl + drag does)")
        draw.toggled.connect(self._set_line_mode)
        if self.with_3d:
            modes = vm.addMenu("3D Mode")
            for key, text in SURFACE_MODES:
                a = modes.addAction(text)
                a.triggered.connect(lambda _=False, k=key: self.surface_view and self.surface_view.set_mode(k))
            views = vm.addMenu("3D Camera")
            for key, text in SURFACE_VIEWS:
                a = views.addAction(text)
                a.triggered.connect(lambda _=False, k=key: self.surface_view and self.surface_view.standard_view(k))

        tm = mb.addMenu("&Tools")
        tm.addAction(self.sr_action)
        tm.addAction(self.cancel_action)
        tm.addSeparator()
        choose_model = tm.addAction("Choose Model…")
        choose_model.triggered.connect(lambda: self._browse(self.model_box, "model"))
        choose_adapter = tm.addAction("Choose Adapter…")
        choose_adapter.triggered.connect(lambda: self._browse(self.adapter_box, "adapter"))
        tm.addSeparator()
        self.train_action = tm.addAction("Train a Model…")
        self.train_action.triggered.connect(self.open_training_wizard)

        hm = mb.addMenu("&Help")
        keys = hm.addAction("Keyboard Shortcuts")
        keys.triggered.connect(self.show_shortcuts)
        about = hm.addAction("About Gemini CMR")
        about.triggered.connect(self.show_about)

    def _build_status_bar(self) -> None:
        sb = self.statusBar()
        self.status_label = QLabel("Ready")
        self.status_label.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)  # long text never widens
        self.progress_bar = QProgressBar()
        self.progress_bar.setRange(0, 1000)
        self.progress_bar.setMaximumWidth(280)
        self.progress_bar.setVisible(False)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setVisible(False)
        self.cancel_button.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.cancel_button.clicked.connect(self.cancel_task)
        self.position_label = QLabel("")
        self.position_label.setObjectName("muted")
        sb.addWidget(self.status_label, 1)
        sb.addPermanentWidget(self.position_label)
        sb.addPermanentWidget(self.progress_bar)
        sb.addPermanentWidget(self.cancel_button)

    def _connect_views(self) -> None:
        for v in (self.lr_view, self.sr_view):
            v.cursorMoved.connect(self.set_cursor)
            v.windowLevelDragged.connect(self.set_window_level)
            v.windowLevelReset.connect(self.reset_window_level)
            v.obliqueLineChanged.connect(self._on_oblique_line)
        self.lr_view.viewChanged.connect(lambda z, c: self.sr_view.apply_view(z, c))
        self.sr_view.viewChanged.connect(lambda z, c: self.lr_view.apply_view(z, c))
        self.reformat_view.planeChanged.connect(lambda _: self._update_plane_trace())
        self.reformat_view.cursorMoved.connect(self.set_cursor)
        self.reformat_view.windowLevelDragged.connect(self.set_window_level)
        self.reformat_view.windowLevelReset.connect(self.reset_window_level)

    # ============================================================================================
    # engine choices and settings
    # ============================================================================================
    def _set_combo_path(self, box: QComboBox, path: str) -> None:
        if not path:
            box.setCurrentIndex(0)
            return
        idx = box.findData(path)
        if idx < 0:
            box.insertItem(box.count() - (1 if box.findData("__browse__") >= 0 else 0), Path(path).name, path)
            idx = box.findData(path)
            box.setItemData(idx, path, Qt.ItemDataRole.ToolTipRole)
        box.setCurrentIndex(idx)

    def _combo_activated(self, box: QComboBox, what: str) -> None:
        if box.currentData() == "__browse__":
            self._browse(box, what)
        self._remember_engine_choice()

    def _browse(self, box: QComboBox, what: str) -> None:
        path = ""
        if self.interactive:
            path = QFileDialog.getExistingDirectory(self, f"Choose a {what} folder", self.settings.last_dir)
        self._set_combo_path(box, path or "")
        self._remember_engine_choice()

    def _remember_engine_choice(self) -> None:
        self.settings.model = self.model_path or ""
        self.settings.adapter = self.adapter_path or ""
        self.settings.device = self.device

    @property
    def model_path(self) -> str | None:
        v = self.model_box.currentData()
        return v if v and v != "__browse__" else None

    @property
    def adapter_path(self) -> str | None:
        v = self.adapter_box.currentData()
        return v if v and v != "__browse__" else None

    @property
    def device(self) -> str:
        return self.device_box.currentData() or "auto"

    # ============================================================================================
    # opening studies
    # ============================================================================================
    def open_dialog(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Open study", self.settings.last_dir, STUDY_FILTER)
        if path:
            self.open_path(path)

    def open_folder_dialog(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "Open study folder (DICOM, ACDC, ...)", self.settings.last_dir)
        if path:
            self.open_path(path)

    def _rebuild_recent_menu(self) -> None:
        self.recent_menu.clear()
        recent = self.settings.recent_files()
        for i, path in enumerate(recent):
            a = self.recent_menu.addAction(f"&{i + 1}  {path}")
            a.triggered.connect(lambda _=False, p=path: self.open_path(p))
        if recent:
            self.recent_menu.addSeparator()
            clear = self.recent_menu.addAction("Clear Recent")
            clear.triggered.connect(lambda: (self.settings.clear_recent(), self._rebuild_recent_menu()))
        self.recent_menu.setEnabled(bool(recent))

    def dragEnterEvent(self, event):  # noqa: N802
        if event.mimeData().hasUrls() and any(u.isLocalFile() for u in event.mimeData().urls()):
            event.acceptProposedAction()

    def dropEvent(self, event):  # noqa: N802
        paths = [u.toLocalFile() for u in event.mimeData().urls() if u.isLocalFile()]
        if paths:
            event.acceptProposedAction()
            self.open_path(paths[0])

    def open_path(self, path: str | Path) -> Task | None:
        """Load a study on a worker thread; `studyLoaded` or `taskFailed` follows."""
        path = str(path)
        if not self._can_start():
            return None

        def load(progress, cancel):
            from gemini_cmr.core.io.loader import load_study

            progress(0.0, f"Reading {Path(path).name}…")
            return load_study(path)

        task = self._start_task(Task(load, "load"), f"Opening {Path(path).name}…")
        task.finished.connect(lambda study: self._on_study_loaded(study, path))
        return task

    def _on_study_loaded(self, study: Study, path: str) -> None:
        self.settings.add_recent(path)
        self.settings.last_dir = str(Path(path).parent)
        self._rebuild_recent_menu()
        self.set_study(study)
        prewarm_engine()  # the user looks at the study first: import torch meanwhile
        self.studyLoaded.emit(study)

    def set_study(self, study: Study) -> None:
        """Show a loaded study (LR only; any SR result is dropped)."""
        self.set_playing(False)
        self._stop_more_meshes()
        self.study = study
        self.result = None
        grid = study.grid
        self.cursor = grid.centre()
        ed = study.meta.ed_phase
        self.phase = int(ed) if ed is not None and 0 <= ed < study.n_phases else 0
        for v in (self.lr_view, self.sr_view):
            v.set_reference(grid)
        labels = study.labels if study.has_labels else None
        self.lr_view.set_volume(study.image, grid, labels)
        self.sr_view.set_volume(None, None)
        self.axis = None
        if study.has_labels:
            ed = study.meta.ed_phase if study.meta.ed_phase in study.labelled_phases else study.labelled_phases[0]
            self.axis = self._long_axis(study.labels[ed], grid)
        self.reformat_view.set_sr(None, None)
        self.reformat_view.set_lr(study.image, grid, labels)
        self.reformat_view.set_axis(self.axis)
        if self.surface_view is not None:
            self.surface_view.clear()
        self.phenotypes_panel.clear()
        self._wl_default = self._default_window_level(study.image)
        self.reset_window_level()
        self.phase_slider.blockSignals(True)
        self.phase_slider.setRange(0, study.n_phases - 1)
        self.phase_slider.setValue(self.phase)
        self.phase_slider.blockSignals(False)
        self._configure_slice_slider()
        self._fill_study_panel()
        self.setWindowTitle(f"Gemini CMR — {study.name}")
        self.fit_views()
        self._set_enabled_state()
        self._update_views()
        self.status_label.setText(
            f"Opened {study.name}: {study.n_phases} phases × {study.n_slices} slices"
            + (f" — {len(study.meta.warnings)} warning(s)" if study.meta.warnings else "")
        )

    @staticmethod
    def _long_axis(labels: np.ndarray, grid) -> LongAxis | None:
        try:
            return long_axis(labels, grid)
        except ValueError:
            return None

    @staticmethod
    def _default_window_level(image: np.ndarray) -> tuple[float, float]:
        sample = image[:: max(1, image.shape[0] // 4)].ravel()[::7]
        lo, hi = (float(v) for v in np.percentile(sample, [0.5, 99.5]))
        if hi <= lo:
            hi = lo + 1.0
        return hi - lo, (hi + lo) / 2

    def _fill_study_panel(self) -> None:
        s = self.study
        f = self.study_fields
        if s is None:
            for lab in f.values():
                lab.setText("–")
            return
        m = s.meta
        sx, sy, sz = s.spacing
        f["name"].setText(s.name)
        f["format"].setText(m.format or "–")
        f["patient"].setText(m.patient_id or "–")
        f["vendor"].setText(m.vendor or "–")
        f["series"].setText(m.series_description or "–")
        f["size"].setText(f"{s.image.shape[3]} × {s.image.shape[2]} × {s.n_slices} slices")
        thick = f", thickness {m.slice_thickness_mm:.1f}" if m.slice_thickness_mm else ""
        f["spacing"].setText(f"{sx:.2f} × {sy:.2f} × {sz:.2f} mm{thick}")
        times = s.phase_times_ms
        rr = f" over {times[-1]:.0f} ms" if times is not None and len(times) > 1 else ""
        f["phases"].setText(f"{s.n_phases}{rr}")
        ed = "–" if m.ed_phase is None else str(m.ed_phase + 1)
        es = "–" if m.es_phase is None else str(m.es_phase + 1)
        f["edes"].setText(f"{ed} / {es}")
        f["labels"].setText(f"phases {', '.join(str(p + 1) for p in s.labelled_phases)}" if s.has_labels else "none")
        if self.result is None:
            f["sr"].setText("–")
            f["sr_spacing"].setText("–")
            f["model"].setText("–")
        else:
            g = self.result.sr_grid
            gx, gy, gz = g.spacing
            f["sr"].setText(f"{g.shape[2]} × {g.shape[1]} × {g.shape[0]} slices")
            f["sr_spacing"].setText(f"{gx:.2f} × {gy:.2f} × {gz:.2f} mm")
            adapter = getattr(self.result, "adapter_id", None)
            f["model"].setText(_short_id(self.result.model_id) + (f" + {_short_id(adapter)}" if adapter else ""))
            f["model"].setToolTip(f"model {self.result.model_id}" + (f"\nadapter {adapter}" if adapter else "")
                                  + (f"\n{self.result.model_choice}" if getattr(self.result, "model_choice", "") else ""))
        self.warnings_label.setText("\n".join(f"⚠ {w}" for w in m.warnings))

    # ============================================================================================
    # super-resolution
    # ============================================================================================
    def super_resolve(self, phases: str = "all") -> Task | None:
        if self.study is None or not self._can_start():
            return None
        engine = _engine()
        if engine is None:
            self._report_error("The super-resolution engine (core.engine) is not available in this build.", "")
            return None
        key = (self.model_path, self.adapter_path, self.device)
        study = self.study
        cache = self._engine_cache

        def run(progress, cancel):
            resolver = cache.get(key)
            if resolver is None:
                progress(0.0, "Loading model…")
                resolver = engine.SuperResolver(model=key[0], adapter=key[1], device=key[2])
                cache.clear()
                cache[key] = resolver
            # ED/ES surfaces only: the result is shown sooner, the other phases' follow (`_start_more_meshes`)
            return resolver.run(study, phases=phases, meshes="ed_es", progress=progress, cancel=cancel)

        task = self._start_task(Task(run, "super-resolve"), "Super-resolving…")
        task.finished.connect(self.set_result)
        return task

    def set_result(self, result) -> None:
        """Show an engine `Result`: SR slices, LR labels, reformats, 3D surfaces, phenotypes."""
        if self.study is None or result is None:
            return
        self.result = result
        study = self.study
        phases = [int(p) for p in result.phases]
        self.sr_view.set_volume(result.sr_image, result.sr_grid, result.sr_labels, phases)
        lr_labels = getattr(result, "lr_labels", None)
        if lr_labels is not None:
            self.lr_view.set_volume(study.image, study.grid, self._full_phase_labels(lr_labels, phases))
        ed, es = int(result.ed_phase), int(result.es_phase)
        axis_phase = ed if ed in phases else phases[0]
        self.axis = self._long_axis(result.sr_labels[phases.index(axis_phase)], result.sr_grid) or self.axis
        self.reformat_view.set_lr(study.image, study.grid,
                                  None if lr_labels is None else self._full_phase_labels(lr_labels, phases))
        self.reformat_view.set_sr(result.sr_image, result.sr_grid, result.sr_labels, phases)
        self.reformat_view.set_axis(self.axis)
        self._stop_more_meshes()
        more = [p for p in phases if p not in (result.meshes or {})]
        if self.surface_view is not None:
            self.surface_view.set_meshes(result.meshes or {}, ed, es, self.axis,
                                         more_coming=bool(more and result.meshes))
        self.phenotypes_panel.set_phenotypes(result.phenotypes)
        self._configure_slice_slider()
        self._fill_study_panel()
        self._set_enabled_state()
        self.set_phase(ed)
        self._update_views()
        total = sum(v for k, v in (result.timings or {}).items() if k == "total") or sum((result.timings or {}).values())
        self.status_label.setText(
            f"Super-resolved {len(phases)} phase(s) in {total:.1f} s with model {_short_id(result.model_id)} "
            f"on {getattr(result, 'device', '?')}"
            + (f" ({result.model_choice})" if getattr(result, "model_choice", "") else "")
            + "".join(f" — {w}" for w in getattr(result, "warnings", []) or [])
        )
        if more and result.meshes:
            self._start_more_meshes(result, more)
        self.resultReady.emit(result)

    def _start_more_meshes(self, result, phases: list[int]) -> None:
        """Make the surfaces of `phases` on a worker thread after the result is shown (the 3D cine mode
        and all-phase exports use them; `write_outputs` also makes any still missing on demand)."""
        from gemini_cmr.core.mesh import phase_surfaces

        labels, grid, all_phases = result.sr_labels, result.sr_grid, list(result.phases)

        def run(progress, cancel):
            return phase_surfaces(labels, grid, all_phases, select=phases, cancel=cancel)

        task = Task(run, "meshes")
        self._mesh_tasks.append(task)
        task.finished.connect(lambda meshes: self._on_more_meshes(result, meshes))
        task.failed.connect(lambda message, details: self._no_more_meshes(result, message))
        task.cancelled.connect(lambda: self._no_more_meshes(result, ""))
        task.done.connect(lambda: self._mesh_tasks.remove(task) if task in self._mesh_tasks else None)
        task.start()

    def _on_more_meshes(self, result, meshes: dict) -> None:
        if result is not self.result:
            return
        result.meshes.update(meshes)
        if self.surface_view is not None:
            self.surface_view.add_meshes(meshes)
        self.meshesReady.emit()

    def _no_more_meshes(self, result, message: str) -> None:
        if message:
            log.warning("surfaces of the other phases not made: %s", message)
        if result is self.result and self.surface_view is not None:
            self.surface_view.no_more_meshes()

    def _stop_more_meshes(self, wait_ms: int = 0) -> None:
        for task in list(self._mesh_tasks):
            if task.is_running():
                task.cancel()
                if wait_ms and not task.wait(wait_ms):
                    log.warning("the surface task did not stop in time")

    def _full_phase_labels(self, labels: np.ndarray, phases: list[int]) -> np.ndarray:
        """Labels for the result's phases -> one (T, Z, Y, X) array aligned with the study's phases."""
        n = self.study.n_phases
        if labels.shape[0] == n and phases == list(range(n)):
            return labels
        full = np.zeros((n, *labels.shape[1:]), dtype=np.uint8)
        for i, p in enumerate(phases):
            full[p] = labels[i]
        return full

    # ============================================================================================
    # tasks (worker threads)
    # ============================================================================================
    def _can_start(self) -> bool:
        if self.task is not None and self.task.is_running():
            self.status_label.setText("Busy: wait for the current task or cancel it")
            return False
        return True

    def _start_task(self, task: Task, message: str) -> Task:
        self.task = task
        task.progress.connect(self._on_progress)
        task.failed.connect(self._on_task_failed)
        task.cancelled.connect(self._on_task_cancelled)
        task.done.connect(self._on_task_done)
        self.status_label.setText(message)
        self.progress_bar.setRange(0, 0)  # busy until the first progress report
        self.progress_bar.setVisible(True)
        self.cancel_button.setVisible(True)
        task.start()
        self._set_enabled_state()
        return task

    def _on_progress(self, fraction: float, message: str) -> None:
        if fraction > 0 and self.progress_bar.maximum() == 0:
            self.progress_bar.setRange(0, 1000)
        self.progress_bar.setValue(int(max(0.0, min(1.0, fraction)) * 1000))
        if message:
            self.status_label.setText(message)

    def _on_task_failed(self, message: str, details: str) -> None:
        self._report_error(message, details)

    def _on_task_cancelled(self) -> None:
        self.status_label.setText("Cancelled")
        self.taskCancelled.emit()

    def _on_task_done(self) -> None:
        self.progress_bar.setVisible(False)
        self.cancel_button.setVisible(False)
        self._set_enabled_state()

    def cancel_task(self) -> None:
        if self.task is not None and self.task.is_running():
            self.task.cancel()
            self.status_label.setText("Cancelling…")

    def _report_error(self, message: str, details: str) -> None:
        log.info("error shown to the user: %s", message)
        self.status_label.setText(f"Error: {message}")
        self.taskFailed.emit(message, details)
        if self.interactive:
            box = QMessageBox(QMessageBox.Icon.Critical, "Gemini CMR", message, QMessageBox.StandardButton.Ok, self)
            if details:
                box.setDetailedText(details)
            box.exec()

    def _set_enabled_state(self) -> None:
        busy = self.task is not None and self.task.is_running()
        self.sr_action.setEnabled(self.study is not None and not busy)
        self.cancel_action.setEnabled(busy)
        self.open_action.setEnabled(not busy)
        self.export_action.setEnabled(self.study is not None and not busy)
        for w in (self.slice_slider, self.phase_slider, self.play_button):
            w.setEnabled(self.study is not None)

    # ============================================================================================
    # navigation: cursor (world), slice, phase, cine
    # ============================================================================================
    @property
    def n_phases(self) -> int:
        return 0 if self.study is None else self.study.n_phases

    def fine_grid(self):
        """The finest grid shown (SR when available): the slice slider steps through its slices."""
        if self.result is not None:
            return self.result.sr_grid
        return None if self.study is None else self.study.grid

    def _configure_slice_slider(self) -> None:
        g = self.fine_grid()
        if g is None:
            return
        self.slice_slider.blockSignals(True)
        self.slice_slider.setRange(0, g.shape[0] - 1)
        self.slice_slider.setValue(self._slice_of(self.cursor))
        self.slice_slider.blockSignals(False)

    def _slice_of(self, world: np.ndarray) -> int:
        g = self.fine_grid()
        return int(np.clip(np.floor(g.world_to_index(world)[2] + 0.5), 0, g.shape[0] - 1))

    def _on_slice_slider(self, k: int) -> None:
        g = self.fine_grid()
        if g is None:
            return
        i, j, _ = g.world_to_index(self.cursor)
        self.cursor = g.index_to_world(np.array([i, j, float(k)]))
        self._update_views()

    def step_slice(self, step: int) -> None:
        if self.study is not None:
            self.slice_slider.setValue(self.slice_slider.value() + step)

    def set_cursor(self, world: np.ndarray) -> None:
        self.cursor = np.asarray(world, dtype=np.float64)
        self.slice_slider.blockSignals(True)
        self.slice_slider.setValue(self._slice_of(self.cursor))
        self.slice_slider.blockSignals(False)
        self._update_views()

    def set_phase(self, phase: int) -> None:
        if self.study is None:
            return
        phase = int(phase) % self.study.n_phases
        self.phase = phase
        if self.phase_slider.value() != phase:
            self.phase_slider.blockSignals(True)
            self.phase_slider.setValue(phase)
            self.phase_slider.blockSignals(False)
        self._update_views()

    def next_phase(self) -> None:
        if self.study is not None:
            self.set_phase((self.phase + 1) % self.study.n_phases)

    def goto_ed_es(self, which: str) -> None:
        src = self.result if self.result is not None else None
        phase = getattr(src, f"{which}_phase", None) if src is not None else (
            getattr(self.study.meta, f"{which}_phase", None) if self.study is not None else None)
        if phase is not None:
            self.set_phase(int(phase))

    def set_playing(self, playing: bool) -> None:
        playing = bool(playing) and self.study is not None and self.study.n_phases > 1
        if self.play_button.isChecked() != playing:
            self.play_button.blockSignals(True)
            self.play_button.setChecked(playing)
            self.play_button.blockSignals(False)
        self.play_button.setText("❚❚" if playing else "▶")
        if playing:
            self._play_timer.start(int(1000 / self.fps_spin.value()))
        else:
            self._play_timer.stop()

    def _on_fps(self, fps: int) -> None:
        if self._play_timer.isActive():
            self._play_timer.start(int(1000 / fps))

    def _update_views(self) -> None:
        """Push the cursor and phase to every view (the per-step hot path: keep it cheap)."""
        if self.study is None:
            return
        for v in (self.lr_view, self.sr_view):
            v.set_position(self.cursor, self.phase)
        self.reformat_view.set_phase(self.phase)
        self.reformat_view.set_cursor(self.cursor)
        if self.surface_view is not None:
            self.surface_view.set_phase(self.phase)
        self.phenotypes_panel.set_phase(self.phase)
        self._update_plane_trace()
        g = self.fine_grid()
        k = self._slice_of(self.cursor)
        self.slice_label.setText(f"slice {k + 1}/{g.shape[0]}" + (" (SR)" if self.result is not None else ""))
        tag = ""
        ed = self.result.ed_phase if self.result is not None else self.study.meta.ed_phase
        es = self.result.es_phase if self.result is not None else self.study.meta.es_phase
        if self.phase == ed:
            tag = "  ED"
        elif self.phase == es:
            tag = "  ES"
        times = self.study.phase_times_ms
        t_ms = f"  {times[self.phase]:.0f} ms" if times is not None and self.phase < len(times) else ""
        self.phase_label.setText(f"phase {self.phase + 1}/{self.study.n_phases}{t_ms}{tag}")
        x, y, z = self.cursor
        self.position_label.setText(f"RAS ({x:.1f}, {y:.1f}, {z:.1f}) mm")

    def _set_line_mode(self, on: bool) -> None:
        for v in (self.lr_view, self.sr_view):
            v.line_mode = bool(on)
        self.status_label.setText("Left drag on a short-axis view draws the oblique plane" if on else "Ready")

    def _on_oblique_line(self, p0, p1, final: bool) -> None:
        self.reformat_view.set_oblique(p0, p1)
        self._update_plane_trace()

    def _update_plane_trace(self) -> None:
        plane = self.reformat_view.current_plane()
        if plane is None or self.study is None:
            for v in (self.lr_view, self.sr_view):
                v.set_oblique_line(None, None)
            return
        g = self.study.grid
        k = float(g.world_to_index(self.cursor)[2])
        line = plane_slice_line(plane, g, k)
        for v in (self.lr_view, self.sr_view):
            v.set_oblique_line(*(line if line is not None else (None, None)))

    # ============================================================================================
    # display
    # ============================================================================================
    def set_window_level(self, window: float, level: float) -> None:
        for v in (self.lr_view, self.sr_view):
            v.set_window_level(window, level)
        self.reformat_view.set_window_level(window, level)
        for v in (self.lr_view, self.sr_view):
            v.corner["br"] = f"W {window:.0f}  L {level:.0f}"
            v.viewport().update()

    def reset_window_level(self) -> None:
        self.set_window_level(*self._wl_default)

    def fit_views(self) -> None:
        for v in (self.lr_view, self.sr_view, self.reformat_view.lr_pane, self.reformat_view.sr_pane):
            v.fit()

    def _apply_overlay(self, *_):
        visible = self.overlay_check.isChecked()
        opacity = self.opacity_slider.value() / 100.0
        for v in (self.lr_view, self.sr_view):
            v.set_overlay(visible, opacity)
        self.reformat_view.set_overlay(visible, opacity)

    def _apply_crosshair(self, visible: bool) -> None:
        for v in (self.lr_view, self.sr_view):
            v.set_crosshair_visible(visible)
        self.reformat_view.set_crosshair_visible(visible)

    # ============================================================================================
    # screenshots and export
    # ============================================================================================
    def grab_image(self, which: str = "window") -> QImage:
        """A screenshot of the whole window or one view ("lr", "sr", "reformat", "3d"), with the 3D
        rendering composited in (a native VTK window is not captured by QWidget.grab)."""
        QApplication.processEvents()
        if which == "3d":
            return self._surface_qimage() or QImage()
        widget = {"window": self, "lr": self.lr_view, "sr": self.sr_view, "reformat": self.reformat_view}[which]
        image = widget.grab().toImage()
        if which == "window" and self.surface_view is not None and self.surface_view.isVisible():
            img3d = self._surface_qimage()
            if img3d is not None:
                inter = self.surface_view.plotter.interactor
                top_left = inter.mapTo(self, QPoint(0, 0))
                ratio = image.devicePixelRatio()
                painter = QPainter(image)
                painter.drawImage(top_left, img3d.scaled(int(inter.width() * ratio), int(inter.height() * ratio)))
                painter.end()
        return image

    def _surface_qimage(self) -> QImage | None:
        if self.surface_view is None:
            return None
        arr = np.ascontiguousarray(self.surface_view.screenshot()[..., :3])
        h, w, _ = arr.shape
        return QImage(arr.data, w, h, 3 * w, QImage.Format.Format_RGB888).copy()

    def save_screenshot(self, path: str | Path, which: str = "window") -> Path:
        from gemini_cmr.app.dialogs.export_dialog import save_image

        return save_image(self.grab_image(which), Path(path))

    def screenshot_dialog(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Save screenshot", str(Path(self.settings.last_dir) / "gemini.png"),
                                              "PNG images (*.png)")
        if path:
            try:
                self.save_screenshot(path)
            except OSError as exc:
                self._report_error(f"{path}: cannot save the screenshot ({exc})", "")
                return
            self.status_label.setText(f"Saved {path}")

    def export_dialog(self) -> None:
        from gemini_cmr.app.dialogs.export_dialog import ExportDialog

        dlg = ExportDialog(self, has_result=self.result is not None,
                           default_dir=str(Path(self.settings.last_dir) / f"{self.study.name}_gemini"))
        if dlg.exec():
            self.export(dlg.options(), confirm=True)

    def export(self, options, confirm: bool = True) -> Task | None:
        """Write the chosen outputs on a worker thread; existing files are never overwritten silently:
        with `confirm` the user is asked, otherwise `options.overwrite` decides."""
        from gemini_cmr.app.dialogs.export_dialog import export_plan

        if self.study is None or not self._can_start():
            return None
        shots = {w: self.grab_image(w) for w in options.screenshots}
        plan = export_plan(options, self.study, self.result, shots)
        existing = [item.path for item in plan if item.path.exists()]
        if existing and not options.overwrite:
            answer = QMessageBox.StandardButton.No
            if confirm and self.interactive:
                answer = QMessageBox.question(
                    self, "Overwrite files?",
                    f"{len(existing)} file(s) already exist in {options.folder}, e.g. {existing[0].name}.\n"
                    "Overwrite them?",
                )
            if answer != QMessageBox.StandardButton.Yes:
                self._report_error(f"export cancelled: {len(existing)} file(s) already exist in {options.folder}", "")
                return None

        def run(progress, cancel):
            written = []
            for n, item in enumerate(plan):
                if cancel():
                    break
                progress(n / max(len(plan), 1), f"Writing {item.path.name}")
                item.write()
                written.append(item.path)
            return written

        task = self._start_task(Task(run, "export"), f"Exporting to {options.folder}…")
        task.finished.connect(self._on_exported)
        return task

    def _on_exported(self, written) -> None:
        self.status_label.setText(f"Exported {len(written)} file(s)")
        self.exportDone.emit(written)

    # ============================================================================================
    # help and lifecycle
    # ============================================================================================
    def open_training_wizard(self):
        """Tools > Train a Model… (app/wizard): "Use this model now" selects the model or adapter here."""
        from gemini_cmr.app.wizard import TrainWizard

        wizard = TrainWizard(self, self.settings)
        wizard.modelChosen.connect(self.use_trained_model)
        self.training_wizard = wizard
        wizard.show()
        return wizard

    def use_trained_model(self, kind: str, path: str) -> None:
        self._set_combo_path(self.adapter_box if kind == "vama" else self.model_box, path)
        self._remember_engine_choice()

    def show_about(self) -> None:
        QMessageBox.about(
            self, "About Gemini CMR",
            f"<b>Gemini CMR</b> {__version__}<br>Joint super-resolution and 3D segmentation of cardiac cine "
            "MRI (Gemini-GAN, V-AMA).<br><br>Research software: not for clinical diagnosis.",
        )

    def show_shortcuts(self) -> None:
        QMessageBox.information(
            self, "Keyboard shortcuts",
            "Up/Right, Down/Left: next/previous slice\nPgDown/PgUp: next/previous phase\nSpace: play/pause\n"
            "E / S: go to ED / ES\nL: label overlay\nR: reset window/level\nF: fit views\n"
            "2 / 4 / 3: 2-chamber / 4-chamber / oblique plane\nO: left drag draws the oblique line\nCtrl+O: open\nCtrl+R: super-resolve\n"
            "Esc: cancel\nCtrl+E: export\nCtrl+Shift+S: screenshot\n\n"
            "Mouse: left = crosshair, right-drag = window/level (double right-click resets), wheel = zoom,\n"
            "middle or Shift+left drag = pan, Ctrl+left drag = oblique plane line.",
        )

    def closeEvent(self, event):  # noqa: N802
        self.set_playing(False)
        self._stop_more_meshes(wait_ms=15000)
        if self.task is not None and self.task.is_running():
            self.task.cancel()
            self.status_label.setText("Stopping…")
            if not self.task.wait(15000):
                log.warning("the background task did not stop in time")
        self.settings.save_layout(self.saveGeometry(), self.saveState())
        self.settings.sync()
        if self.with_3d and self.surface_view is None:
            self._poll_3d.stop()
            self._import_3d.join(30)
        if self.surface_view is not None:
            self.surface_view.close_plotter()
        super().closeEvent(event)
