"""The main window: lays out the four views and the docks, wires signals, runs the worker tasks; holds no
science. What it shows lives in `ViewerState` (app/viewer_state.py, no Qt); the toolbar and menus are
built by app/menus.py, the cine bar and docks by app/panels.py, the warm-ups are app/warmup.py.

Data flow: a path -> `core.io.loader.load_study` (worker thread) -> `Study` shown as LR, with the long-axis
cines found beside it (`core.longaxis`) in the long-axis view; Super-resolve -> `core.engine.SuperResolver.run`
(worker thread, with those cines) -> `Result` shown as SR slices, long-axis reformats, the SR labels cut along
each long-axis cine, 3D surfaces and phenotypes. Geometry (world <-> voxel, long axis, plane sampling,
intersection lines) comes from `core`.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any

import numpy as np
from PySide6.QtCore import QPoint, Qt, QTimer, Signal
from PySide6.QtGui import QImage, QPainter
from PySide6.QtWidgets import (
    QApplication,
    QComboBox,
    QFileDialog,
    QLabel,
    QMainWindow,
    QMessageBox,
    QSplitter,
    QVBoxLayout,
    QWidget,
)

from gemini_cmr.app import warmup
from gemini_cmr.app.menus import (
    BROWSE,
    build_menus,
    build_status_bar,
    build_toolbar,
    combo_path,
    rebuild_recent_menu,
    set_combo_path,
)
from gemini_cmr.app.panels import build_cine_bar, build_docks
from gemini_cmr.app.settings import Settings
from gemini_cmr.app.theme import SURFACE_MODES
from gemini_cmr.app.viewer_state import (
    ViewerState,
    default_window_level,
    load_long_axis_for,
    long_axis_beside,
)
from gemini_cmr.app.views.long_axis_view import LongAxisView, view_colour
from gemini_cmr.app.views.reformat_view import ReformatView
from gemini_cmr.app.views.slice_view import SliceView
from gemini_cmr.app.workers import Task
from gemini_cmr.core.reformat import LongAxis
from gemini_cmr.core.study import Study

log = logging.getLogger(__name__)

STUDY_FILTER = "Cine studies (*.nii *.nii.gz *.zip *.dcm);;All files (*)"
LONG_AXIS_FILTER = "Long-axis cines (*.nii *.nii.gz *.zip *.dcm);;All files (*)"


class MainWindow(QMainWindow):
    studyLoaded = Signal(object)
    longAxisAdded = Signal(object)  # the long-axis cines added to the open study
    resultReady = Signal(object)
    previewReady = Signal(object)  # (run token, core.engine.Preview) from the worker; shown by `show_preview`
    previewShown = Signal(object)  # the phases whose SR slices a preview put on screen
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
        self.state = ViewerState()
        self.task: Task | None = None
        self._mesh_tasks: list[Task] = []  # the other phases' surfaces, after a result is shown (kept until done)
        self._engine_cache: dict[tuple, Any] = {}
        self._preview_token: object | None = None  # the running super-resolution whose previews are shown
        self._previewing = False  # the SR views show a preview, not `state.result`
        self.previewReady.connect(self.show_preview)
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
        self.la_view = LongAxisView()  # the acquired long-axis cines; shown when the study has any
        self.la_view.hide()
        top = QSplitter(Qt.Orientation.Horizontal)
        self.top_split = top
        top.addWidget(self.lr_view)
        top.addWidget(self.sr_view)
        top.addWidget(self.la_view)
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
        lay.addWidget(build_cine_bar(self))
        self.setCentralWidget(central)

        build_docks(self)
        build_toolbar(self, model, adapter, device)
        build_menus(self)
        build_status_bar(self)
        self._connect_views()
        self._play_timer = QTimer(self)
        self._play_timer.timeout.connect(self.next_phase)
        self._set_enabled_state()
        geometry = self.settings.geometry()
        if geometry is not None:
            self.restoreGeometry(geometry)
        else:
            self.resize(1600, 1000)
        layout = self.settings.window_state()
        if layout is not None:
            self.restoreState(layout)
        if with_3d:
            self._import_3d = threading.Thread(target=warmup.import_surface_modules, name="gemini-import-3d",
                                               daemon=True)
            self._import_3d.start()
            self._poll_3d = QTimer(self)
            self._poll_3d.timeout.connect(self._create_surface_view)
            self._poll_3d.start(30)
        warmup.prewarm(warmup.STUDY_MODULES)  # the first Open does not wait for nibabel, pydicom and scipy.ndimage

    # --- the state, as the window's attributes ---------------------------------------------------------------
    @property
    def study(self) -> Study | None:
        return self.state.study

    @study.setter
    def study(self, study: Study | None) -> None:
        self.state.study = study

    @property
    def result(self) -> Any:
        return self.state.result

    @property
    def axis(self) -> LongAxis | None:
        return self.state.axis

    @property
    def phase(self) -> int:
        return self.state.phase

    @property
    def cursor(self) -> np.ndarray:
        return self.state.cursor

    @property
    def n_phases(self) -> int:
        return self.state.n_phases

    # --- the 3D view -------------------------------------------------------------------------------------------
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
        result = self.state.result
        if result is not None:
            sv.set_meshes(result.meshes or {}, int(result.ed_phase), int(result.es_phase), self.state.axis)
            sv.set_phase(self.state.phase)
        self.surfaceReady.emit()

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
        self.la_view.cineChosen.connect(self._show_la_cine)
        self.la_view.slicePicked.connect(self._on_la_slice_picked)
        self.la_view.cursorMoved.connect(self.set_cursor)

    # ============================================================================================
    # engine choices and settings
    # ============================================================================================
    def sync_engine_choice(self, *_) -> None:
        """The toolbar's model/adapter/device choosers -> `state.engine`."""
        engine = self.state.engine
        engine.model = combo_path(self.model_box)
        engine.adapter = combo_path(self.adapter_box)
        engine.device = self.device_box.currentData() or "auto"
        self.show_adapter_summary()

    def show_adapter_summary(self) -> None:
        """The Adapter chooser explains itself: its tooltip says when an adapter helps and, for the chosen
        one, what it was trained for and its measured effect (`core.vama.summary`), also shown in the status
        bar when an adapter is chosen."""
        from gemini_cmr.core.errors import GeminiError
        from gemini_cmr.core.vama.summary import WHEN, adapter_summary

        path = self.state.engine.adapter
        if not path:
            self.adapter_box.setToolTip(WHEN)
            return
        try:
            text = adapter_summary(path)
        except GeminiError as exc:
            text = str(exc)
        self.adapter_box.setToolTip(f"{text}\n\n{WHEN}")
        self.statusBar().showMessage(" | ".join(text.splitlines()), 15000)

    def engine_box_activated(self, box: QComboBox, what: str) -> None:
        if box.currentData() == BROWSE:
            self.browse_engine_path(box, what)
        self.remember_engine_choice()

    def browse_engine_path(self, box: QComboBox, what: str) -> None:
        path = ""
        if self.interactive:
            path = QFileDialog.getExistingDirectory(self, f"Choose a {what} folder", self.settings.last_dir)
        set_combo_path(box, path or "")
        self.remember_engine_choice()

    def remember_engine_choice(self, *_) -> None:
        self.settings.model = self.model_path or ""
        self.settings.adapter = self.adapter_path or ""
        self.settings.device = self.device

    @property
    def model_path(self) -> str | None:
        return self.state.engine.model

    @property
    def adapter_path(self) -> str | None:
        return self.state.engine.adapter

    @property
    def device(self) -> str:
        return self.state.engine.device

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
            study = load_study(path)
            progress(0.9, "Looking for long-axis cines…")
            return (study, *long_axis_beside(path, study))

        task = self._start_task(Task(load, "load"), f"Opening {Path(path).name}…")
        task.finished.connect(lambda loaded: self._on_study_loaded(loaded, path))
        return task

    def _on_study_loaded(self, loaded: tuple, path: str) -> None:
        study, la_cines, la_notes = loaded
        self.settings.add_recent(path)
        self.settings.last_dir = str(Path(path).parent)
        rebuild_recent_menu(self)
        self.set_study(study, la_cines, la_notes)
        for note in la_notes:
            log.warning("%s", note)
        warmup.prewarm_engine()  # the user looks at the study first: import torch meanwhile
        self.studyLoaded.emit(study)

    def set_study(self, study: Study, la_cines=(), la_notes=()) -> None:
        """Show a loaded study (LR only; any SR result is dropped) with its long-axis cines
        (`core.longaxis.LongAxisCine`) and the notes about long-axis files that could not be used."""
        self.set_playing(False)
        self._stop_more_meshes()
        state = self.state
        state.show_study(study)
        state.add_long_axis(list(la_cines))
        state.la_notes = list(la_notes)
        views = [c.view for c in state.la_cines]
        self._show_long_axis(select=views.index("4ch") if "4ch" in views else 0)  # 4-chamber first: both ventricles
        grid = study.grid
        for v in (self.lr_view, self.sr_view):
            v.set_reference(grid)
        labels = study.labels if study.has_labels else None
        self.lr_view.set_volume(study.image, grid, labels)
        self.sr_view.set_volume(None, None)
        self._preview_token, self._previewing = None, False
        self.reformat_view.set_sr(None, None)
        self.reformat_view.set_lr(study.image, grid, labels)
        self.reformat_view.set_axis(state.axis)
        if self.surface_view is not None:
            self.surface_view.clear()
        self.phenotypes_panel.clear()
        self._show_motion()
        self.reset_window_level()
        self.phase_slider.blockSignals(True)
        self.phase_slider.setRange(0, study.n_phases - 1)
        self.phase_slider.setValue(state.phase)
        self.phase_slider.blockSignals(False)
        self._configure_slice_slider()
        self._fill_study_panel()
        self.setWindowTitle(f"Gemini CMR — {study.name}")
        self.fit_views()
        self._set_enabled_state()
        self._update_views()
        self.status_label.setText(state.opened_text())

    def _fill_study_panel(self) -> None:
        for key, text in self.state.study_panel().items():
            self.study_fields[key].setText(text)
        if self.state.study is None:
            return
        if self.state.result is not None:
            self.study_fields["model"].setToolTip(self.state.model_tooltip())
        self.warnings_label.setText(self.state.warnings_text())

    # ============================================================================================
    # long-axis cines
    # ============================================================================================
    def add_long_axis_dialog(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Add long-axis cine", self.settings.last_dir, LONG_AXIS_FILTER)
        if path:
            self.add_long_axis_path(path)

    def add_long_axis_path(self, path: str | Path) -> Task | None:
        """Read long-axis cine(s) at `path` on a worker thread and check them against the open study; a file
        that cannot be read or used gives a one-line error naming it (the study stays as it is)."""
        path = str(path)
        study = self.state.study
        if study is None or not self._can_start():
            return None

        def load(progress, cancel):
            from gemini_cmr.core.errors import DataError

            progress(0.0, f"Reading long-axis {Path(path).name}…")
            cines = load_long_axis_for(path, study)
            if not cines:
                raise DataError("no long-axis cine found", path)
            return cines

        task = self._start_task(Task(load, "long-axis"), f"Adding long-axis {Path(path).name}…")
        task.finished.connect(lambda cines: self._on_long_axis_loaded(cines, study))
        return task

    def _on_long_axis_loaded(self, cines: list, study: Study) -> None:
        if study is not self.state.study:
            return
        added = self.state.add_long_axis(cines)
        self._show_long_axis(select=len(self.state.la_cines) - 1 if added else None)
        self._update_views()
        what = ", ".join(c.view for c in added) or "nothing new"
        self.status_label.setText(f"Added long-axis {what}: {self.state.la_text()}"
                                  + (" — Super-resolve again to cut the SR labels on it" if added and self.state.result
                                     else ""))
        self.longAxisAdded.emit(added)

    def _show_long_axis(self, select: int | None = None) -> None:
        """The long-axis view from the state's cines (hidden without any); `select` a cine by index."""
        cines = self.state.la_cines
        was_hidden = self.la_view.isHidden()
        current = self.la_view.current_index() if select is None else select
        self.la_view.set_cines([(c.view, Path(c.source_path).name if c.source_path else c.view) for c in cines],
                               current)
        self.la_view.setVisible(bool(cines))
        if cines:
            if was_hidden:
                total = sum(self.top_split.sizes()) or self.top_split.width()
                self.top_split.setSizes([total // 3, total // 3, total - 2 * (total // 3)])
            self._show_la_cine(self.la_view.current_index())

    def _show_la_cine(self, index: int) -> None:
        state = self.state
        if not 0 <= index < len(state.la_cines):
            return
        cine = state.la_cines[index]
        self.la_view.set_cine(cine.image, cine.grid, state.la_lines(index), cine.view,
                              default_window_level(cine.image))
        self.la_view.fit()
        self._update_long_axis()

    def _update_long_axis(self) -> None:
        """The long-axis view at the current phase and slice, and the planes' traces on the short-axis views."""
        state = self.state
        traces = [(view, view_colour(view), p0, p1) for view, p0, p1 in state.la_traces()]
        for v in (self.lr_view, self.sr_view):
            v.set_la_traces(traces)
        if not state.la_cines or self.la_view.isHidden():
            return
        i = self.la_view.current_index()
        cine = state.la_cines[i]
        t = state.la_phase(i)
        labels, note = state.la_cut(i)
        self.la_view.set_frame(t, labels, note, f"LA phase {t + 1}/{cine.n_phases}   SA phase {state.phase + 1}")
        item = state.la_input(i)
        tip = ""
        if item is not None and not item.used:
            tip = item.reason
        elif item is not None and item.offset_mm is not None:
            tip = (f"estimated in-plane offset of this acquisition: {np.hypot(*item.offset_mm):.1f} mm "
                   "(the SR labels' cut is displaced by it)")
        self.la_view.set_note_tooltip(tip)
        self.la_view.set_current_slice(state.sa_slice(), state.cursor)

    def _on_la_slice_picked(self, k: int, world: np.ndarray) -> None:
        """A click on a short-axis slice's line in the long-axis view: the cursor goes to that slice, at
        the clicked point."""
        g = self.state.study.grid
        i, j, _ = g.world_to_index(np.asarray(world, np.float64))
        self.set_cursor(g.index_to_world(np.array([i, j, float(k)])))

    # ============================================================================================
    # super-resolution
    # ============================================================================================
    def super_resolve(self, phases: str = "all") -> Task | None:
        if self.state.study is None or not self._can_start():
            return None
        engine = warmup.engine_module()
        if engine is None:
            self._report_error("The super-resolution engine (core.engine) is not available in this build.", "")
            return None
        key = self.state.engine.key()
        study = self.state.study
        cache = self._engine_cache
        motion = None if self.settings.motion_correction else False  # None: the engine's default for the study
        extra = {"long_axis": list(self.state.la_cines)} if self.state.la_cines else {}
        if self.settings.tta:
            extra["tta"] = "ed_es"

        # The phase on screen first, then the rest: its SR slices are shown as soon as they exist
        # (`show_preview`), before the other phases, the labels on the input grid, meshes and numbers.
        first = [int(self.state.phase)]
        token = self._preview_token = object()

        def preview(part) -> None:
            self.previewReady.emit((token, part))

        def run(progress, cancel):
            resolver = cache.get(key)
            if resolver is None:
                progress(0.0, "Loading model…")
                resolver = engine.SuperResolver(model=key[0], adapter=key[1], device=key[2])
                cache.clear()
                cache[key] = resolver
            # ED/ES surfaces only: the result is shown sooner, the other phases' follow (`_start_more_meshes`)
            return resolver.run(study, phases=phases, meshes="ed_es", progress=progress, cancel=cancel,
                                motion_correction=motion, first=first, preview=preview, **extra)

        task = self._start_task(Task(run, "super-resolve"), "Super-resolving…")
        task.finished.connect(self.set_result)
        return task

    def _show_motion(self) -> None:
        """The motion-correction toggle and shifts text for the current result (off and disabled without)."""
        self.motion_check.blockSignals(True)
        self.motion_check.setChecked(False)
        self.motion_check.blockSignals(False)
        self.motion_check.setEnabled(self.state.corrected_input() is not None if self.state.result else False)
        self.motion_label.setText(self.state.motion_text())

    def apply_motion_view(self, *_args) -> None:
        """The input stack as acquired, or corrected for slice motion (the toggle), in the LR and reformat views."""
        state = self.state
        if state.study is None or state.result is None:
            return
        corrected = state.corrected_input() if self.motion_check.isChecked() else None
        if corrected is None:
            image = state.study.image
            labels = state.full_phase_labels(state.result.lr_labels, [int(p) for p in state.result.phases])
        else:
            image, labels = corrected
        self.lr_view.set_volume(image, state.study.grid, labels)
        self.reformat_view.set_lr(image, state.study.grid, labels)
        self._update_views()

    def show_preview(self, payload) -> None:
        """The SR slices and labels of the phases a running super-resolution has finished (`Preview`), in
        the SR and reformat views; the other phases stay blank there until the result arrives."""
        token, part = payload
        if token is not self._preview_token or self.state.study is None or not part.done:
            return
        done = set(part.done)
        phases = [int(t) if int(t) in done else -1 - i for i, t in enumerate(part.phases)]  # < 0: not shown
        self.sr_view.set_volume(part.sr_image, part.sr_grid, part.sr_labels, phases)
        self.reformat_view.set_sr(part.sr_image, part.sr_grid, part.sr_labels, phases)
        self._previewing = True
        self._update_views()
        self.previewShown.emit(sorted(done))

    def _drop_preview(self) -> None:
        """After a cancelled or failed run: the SR views show the last result again (or nothing)."""
        self._preview_token = None
        if not self._previewing:
            return
        self._previewing = False
        result = self.state.result
        if result is None:
            self.sr_view.set_volume(None, None)
            self.reformat_view.set_sr(None, None)
        else:
            phases = [int(p) for p in result.phases]
            self.sr_view.set_volume(result.sr_image, result.sr_grid, result.sr_labels, phases)
            self.reformat_view.set_sr(result.sr_image, result.sr_grid, result.sr_labels, phases)
        self._update_views()

    def set_result(self, result) -> None:
        """Show an engine `Result`: SR slices, LR labels, reformats, 3D surfaces, phenotypes."""
        self._preview_token, self._previewing = None, False
        state = self.state
        if state.study is None or result is None:
            return
        study = state.study
        phases = state.show_result(result)
        self.sr_view.set_volume(result.sr_image, result.sr_grid, result.sr_labels, phases)
        full_lr_labels = state.full_phase_labels(result.lr_labels, phases)
        self.lr_view.set_volume(study.image, study.grid, full_lr_labels)
        ed, es = int(result.ed_phase), int(result.es_phase)
        self.reformat_view.set_lr(study.image, study.grid, full_lr_labels)
        self.reformat_view.set_sr(result.sr_image, result.sr_grid, result.sr_labels, phases)
        self.reformat_view.set_axis(state.axis)
        self._stop_more_meshes()
        more = [p for p in phases if p not in (result.meshes or {})]
        if self.surface_view is not None:
            self.surface_view.set_meshes(result.meshes or {}, ed, es, state.axis,
                                         more_coming=bool(more and result.meshes))
        self.phenotypes_panel.set_phenotypes(result.phenotypes, getattr(result, "qc", None))
        self._show_motion()
        self._configure_slice_slider()
        self._fill_study_panel()
        self._set_enabled_state()
        self.set_phase(ed)
        self._update_views()
        self.status_label.setText(state.result_text())
        if more and result.meshes:
            self._start_more_meshes(result, more)
        self._report_warnings(result)
        self.resultReady.emit(result)

    def _report_warnings(self, result) -> None:
        """The result's warnings (implausible or unavailable phenotypes, ...) on stderr (the log) and, when
        interactive, in a dialog that does not block the window; the study panel lists them too."""
        for w in result.warnings:
            log.warning("%s", w)
        if not (self.interactive and result.warnings):
            return
        implausible = not (result.phenotypes or {}).get("plausible", True)
        qc_failed = not (getattr(result, "qc", None) or {}).get("passed", True)
        box = QMessageBox(QMessageBox.Icon.Warning, "Gemini CMR",
                          "Check these results: some values are implausible or not available."
                          if implausible else "Check this segmentation: it failed an automatic quality check."
                          if qc_failed else "The run finished with warnings.",
                          QMessageBox.StandardButton.Ok, self)
        box.setInformativeText("\n".join(f"• {w}" for w in result.warnings[:12]))
        box.setModal(False)
        box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        self.warnings_box = box
        box.show()

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
        if result is not self.state.result:
            return
        result.meshes.update(meshes)
        if self.surface_view is not None:
            self.surface_view.add_meshes(meshes)
        self.meshesReady.emit()

    def _no_more_meshes(self, result, message: str) -> None:
        if message:
            log.warning("surfaces of the other phases not made: %s", message)
        if result is self.state.result and self.surface_view is not None:
            self.surface_view.no_more_meshes()

    def _stop_more_meshes(self, wait_ms: int = 0) -> None:
        for task in list(self._mesh_tasks):
            if task.is_running():
                task.cancel()
                if wait_ms and not task.wait(wait_ms):
                    log.warning("the surface task did not stop in time")

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
        self._drop_preview()
        self._report_error(message, details)

    def _on_task_cancelled(self) -> None:
        self._drop_preview()
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
        has_study = self.state.study is not None
        self.sr_action.setEnabled(has_study and not busy)
        self.cancel_action.setEnabled(busy)
        self.open_action.setEnabled(not busy)
        self.export_action.setEnabled(has_study and not busy)
        self.add_la_action.setEnabled(has_study and not busy)
        self.pacs_open_action.setEnabled(not busy)
        self.pacs_send_action.setEnabled(self.state.result is not None and not busy)
        for w in (self.slice_slider, self.phase_slider, self.play_button):
            w.setEnabled(has_study)

    # ============================================================================================
    # navigation: cursor (world), slice, phase, cine
    # ============================================================================================
    def _configure_slice_slider(self) -> None:
        g = self.state.fine_grid()
        if g is None:
            return
        self.slice_slider.blockSignals(True)
        self.slice_slider.setRange(0, g.shape[0] - 1)
        self.slice_slider.setValue(self.state.slice_of())
        self.slice_slider.blockSignals(False)

    def go_to_slice(self, k: int) -> None:
        """The slice slider moved: the cursor goes to slice `k` of the finest grid shown."""
        if self.state.move_to_slice(k):
            self._update_views()

    def step_slice(self, step: int) -> None:
        if self.state.study is not None:
            self.slice_slider.setValue(self.slice_slider.value() + step)

    def set_cursor(self, world: np.ndarray) -> None:
        self.state.set_cursor(world)
        self.slice_slider.blockSignals(True)
        self.slice_slider.setValue(self.state.slice_of())
        self.slice_slider.blockSignals(False)
        self._update_views()

    def set_phase(self, phase: int) -> None:
        if not self.state.set_phase(phase):
            return
        phase = self.state.phase
        if self.phase_slider.value() != phase:
            self.phase_slider.blockSignals(True)
            self.phase_slider.setValue(phase)
            self.phase_slider.blockSignals(False)
        self._update_views()

    def next_phase(self) -> None:
        if self.state.study is not None:
            self.set_phase(self.state.next_phase())

    def goto_ed_es(self, which: str) -> None:
        phase = self.state.ed_es(which)
        if phase is not None:
            self.set_phase(int(phase))

    def set_playing(self, playing: bool) -> None:
        playing = bool(playing) and self.state.can_play()
        if self.play_button.isChecked() != playing:
            self.play_button.blockSignals(True)
            self.play_button.setChecked(playing)
            self.play_button.blockSignals(False)
        self.play_button.setText("❚❚" if playing else "▶")
        if playing:
            self._play_timer.start(int(1000 / self.fps_spin.value()))
        else:
            self._play_timer.stop()

    def set_fps(self, fps: int) -> None:
        if self._play_timer.isActive():
            self._play_timer.start(int(1000 / fps))

    def _update_views(self) -> None:
        """Push the cursor and phase to every view (the per-step hot path: keep it cheap)."""
        state = self.state
        if state.study is None:
            return
        cursor, phase = state.cursor, state.phase
        for v in (self.lr_view, self.sr_view):
            v.set_position(cursor, phase)
        self.reformat_view.set_phase(phase)
        self.reformat_view.set_cursor(cursor)
        if self.surface_view is not None:
            self.surface_view.set_phase(phase)
        self.phenotypes_panel.set_phase(phase)
        self._update_plane_trace()
        self._update_long_axis()
        self.slice_label.setText(state.slice_text())
        self.phase_label.setText(state.phase_text())
        self.position_label.setText(state.position_text())

    def set_line_mode(self, on: bool) -> None:
        for v in (self.lr_view, self.sr_view):
            v.line_mode = bool(on)
        self.status_label.setText("Left drag on a short-axis view draws the oblique plane" if on else "Ready")

    def _on_oblique_line(self, p0, p1, final: bool) -> None:
        self.reformat_view.set_oblique(p0, p1)
        self._update_plane_trace()

    def _update_plane_trace(self) -> None:
        line = self.state.plane_trace(self.reformat_view.current_plane())
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
        self.set_window_level(*self.state.window_level_default)
        self.la_view.reset_window_level()  # the long-axis cine keeps its own window/level

    def fit_views(self) -> None:
        for v in (self.lr_view, self.sr_view, self.reformat_view.lr_pane, self.reformat_view.sr_pane, self.la_view.pane):
            v.fit()

    def apply_overlay(self, *_):
        visible = self.overlay_check.isChecked()
        opacity = self.opacity_slider.value() / 100.0
        for v in (self.lr_view, self.sr_view):
            v.set_overlay(visible, opacity)
        self.reformat_view.set_overlay(visible, opacity)
        self.la_view.set_overlay(visible, opacity)

    def apply_crosshair(self, visible: bool) -> None:
        for v in (self.lr_view, self.sr_view):
            v.set_crosshair_visible(visible)
        self.reformat_view.set_crosshair_visible(visible)
        self.la_view.set_crosshair_visible(visible)

    # ============================================================================================
    # screenshots and export
    # ============================================================================================
    def grab_image(self, which: str = "window") -> QImage:
        """A screenshot of the whole window or one view ("lr", "sr", "la", "reformat", "3d"), with the 3D
        rendering composited in (a native VTK window is not captured by QWidget.grab)."""
        QApplication.processEvents()
        if which == "3d":
            return self._surface_qimage() or QImage()
        widget = {"window": self, "lr": self.lr_view, "sr": self.sr_view, "la": self.la_view,
                  "reformat": self.reformat_view}[which]
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

        dlg = ExportDialog(self, has_result=self.state.result is not None,
                           default_dir=str(Path(self.settings.last_dir) / f"{self.state.study.name}_gemini"),
                           dicom_input=self.state.study.meta.dicom is not None)
        if dlg.exec():
            self.export(dlg.options(), confirm=True)

    def export(self, options, confirm: bool = True) -> Task | None:
        """Write the chosen outputs on a worker thread; existing files are never overwritten silently:
        with `confirm` the user is asked, otherwise `options.overwrite` decides."""
        from gemini_cmr.app.dialogs.export_dialog import export_plan

        if self.state.study is None or not self._can_start():
            return None
        from gemini_cmr.core.errors import GeminiError
        from gemini_cmr.core.outputs import check_output_folder

        try:  # before anything is written: writable, no folder named like a file, not inside the study
            check_output_folder(options.folder, self.state.study.meta.source_path)
        except GeminiError as exc:
            self._report_error(str(exc), "")
            return None
        shots = {w: self.grab_image(w) for w in options.screenshots}
        plan = export_plan(options, self.state.study, self.state.result, shots)
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
    # training and lifecycle
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
        set_combo_path(self.adapter_box if kind == "vama" else self.model_box, path)
        self.remember_engine_choice()

    def confirm_close(self) -> bool:
        """May the window close now? With a task running in interactive use, the user is asked whether to
        cancel it (what is saved stays saved); scripted windows never ask."""
        if self.task is None or not self.task.is_running() or not self.interactive:
            return True
        answer = QMessageBox.question(
            self, "Quit Gemini CMR?",
            f"A task is running ({self.task.name}). Cancel it and quit?\n"
            "Files already written are kept; the running task's results are not saved.",
            QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No, QMessageBox.StandardButton.No)
        return answer == QMessageBox.StandardButton.Yes

    def closeEvent(self, event):  # noqa: N802
        if not self.confirm_close():
            event.ignore()
            return
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
