"""3D surfaces (pyvistaqt): LV cavity, LV myocardium (semi-transparent), RV cavity from the engine's
precomputed meshes, in the label colours of the 2D views.

Speed: every (phase, structure) surface gets its own VTK actor, built once (normals for smooth shading
computed once, on first use or in idle time after the result arrives) and then only shown or hidden, so
a phase step changes a few visibility flags and repaints once: no re-meshing, no new actors, no vertex
buffers rebuilt. While the phase is stepping (cine playback, PgUp/PgDn) the frames are drawn without the
FXAA pass; one anti-aliased frame follows when the stepping stops.

Modes: follow the cine phase, ED, ES, ED | ES side by side (two renderers, one shared camera), and ES
solid with the ED surfaces as wireframe. Standard camera views (long axis, anterior, septal, base, apex)
use the LV long axis from `core.reformat`. On X11 the plotter lives in a native child window
(`app.views.native_interactor`); elsewhere in pyvistaqt's `QtInteractor`.
"""

from __future__ import annotations

import queue
import threading

import numpy as np
import pyvista as pv
from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtWidgets import (
    QComboBox,
    QHBoxLayout,
    QLabel,
    QMenu,
    QPushButton,
    QToolButton,
    QVBoxLayout,
    QWidget,
)
from pyvista import _vtk
from pyvistaqt import QtInteractor

from gemini_cmr.app.theme import SURFACE_MODES, SURFACE_VIEWS, structure_colour
from gemini_cmr.app.views.native_interactor import NativeInteractor, use_native
from gemini_cmr.core.reformat import LongAxis
from gemini_cmr.core.study import STRUCTURE_NAMES

STRUCTURES = ("lv_cavity", "lv_myocardium", "rv_cavity")
OPACITY = {"lv_cavity": 1.0, "lv_myocardium": 0.35, "rv_cavity": 1.0}
WIRE_OPACITY = 0.3
MODES = SURFACE_MODES
VIEWS = SURFACE_VIEWS
STILL_DELAY_MS = 250  # the anti-aliased frame follows this long after the last phase step
BACKGROUND = "#1d2025"  # flat: a gradient costs a full-window shader pass per frame with software OpenGL
# Marching-cubes surfaces on the 1.25 mm SR grid are far finer than the screen needs: the displayed copy
# keeps this fraction of the triangles (quadric decimation, made on a background thread). Exports and
# volumes always use the engine's full meshes.
DISPLAY_KEEP = 0.25


def display_mesh(mesh: pv.PolyData, keep: float = 1.0) -> pv.PolyData:
    """A copy of `mesh` for display: decimated to about `keep` of its triangles (1 = all), with point
    normals for smooth shading. Reads `mesh` only, so it may run on any thread."""
    out = mesh.copy(deep=True)
    if keep < 1.0 and out.n_cells > 2000:
        out = out.triangulate().decimate(1.0 - keep)
    return out.compute_normals(cell_normals=False, split_vertices=False, consistent_normals=False)


def _nonempty(meshes: dict[int, dict[str, pv.PolyData]]) -> dict[int, dict[str, pv.PolyData]]:
    return {int(t): {s: m for s, m in ms.items() if m is not None and m.n_points > 0} for t, ms in meshes.items()}


def _surface_actor(mesh: pv.PolyData, structure: str, wireframe: bool = False) -> _vtk.vtkActor:
    mapper = _vtk.vtkPolyDataMapper()
    mapper.SetInputData(mesh)
    mapper.ScalarVisibilityOff()
    mapper.StaticOn()  # the data never change: no pipeline update check on each render
    actor = _vtk.vtkActor()
    actor.SetMapper(mapper)
    actor.PickableOff()
    prop = actor.GetProperty()
    prop.SetColor(*structure_colour(structure))
    if wireframe:
        prop.SetRepresentationToWireframe()
        prop.SetOpacity(WIRE_OPACITY)
        prop.SetLineWidth(1.0)
        prop.LightingOff()
    else:
        prop.SetOpacity(OPACITY[structure])
        if OPACITY[structure] < 1.0:
            # Only the outer (front) faces of the translucent shell: one clean layer over the cavity, no
            # speckle where the endocardium meets the cavity surface, and half the translucent fragments.
            prop.BackfaceCullingOn()
        prop.SetInterpolationToPhong()
        prop.SetSpecular(0.3)
        prop.SetSpecularPower(30.0)
    actor.SetVisibility(False)
    return actor


class SurfaceView(QWidget):
    modeChanged = Signal(str)

    def __init__(self, parent=None):
        super().__init__(parent)
        # Two renderers sharing one camera: the left one shows every mode, the right one only the ES
        # surfaces of the side-by-side mode (it is not drawn otherwise).
        if use_native():
            self.plotter = NativeInteractor(self, shape=(1, 2), border=False)
        else:
            self.plotter = QtInteractor(self, shape=(1, 2), border=False, auto_update=False)
        self.native = isinstance(self.plotter, NativeInteractor)
        self.left, self.right = self.plotter.renderers[0], self.plotter.renderers[1]
        self.plotter.link_views()
        # Keys go to the window's shortcuts (slices, phases, play) unless the user clicks into the 3D view.
        self.plotter.interactor.setFocusPolicy(Qt.FocusPolicy.ClickFocus)
        self.plotter.set_background(BACKGROUND)
        self.plotter.enable_anti_aliasing("fxaa")
        for r in (self.left, self.right):
            # One translucent layer (culled shell, see `_surface_actor`) needs no order-independent
            # transparency pass, which costs several full-window passes with software OpenGL.
            r.SetUseOIT(False)
        self.plotter.subplot(0, 1)
        self.right_caption = self.plotter.add_text("ES", position="upper_left", font_size=9, color="#d8dadf",
                                                   name="caption_right")
        self.plotter.subplot(0, 0)
        self.left_caption = self.plotter.add_text("ED", position="upper_left", font_size=9, color="#d8dadf",
                                                  name="caption_left")
        self.hint = self.plotter.add_text("No surfaces yet: Super-resolve", position=(10, 10), font_size=7,
                                          color="#8a93a0", name="hint")
        self.legend = self.plotter.add_legend(
            [[STRUCTURE_NAMES[s], structure_colour(s)] for s in STRUCTURES], bcolor=None, border=False,
            size=(0.3, 0.15), loc="lower left", face="rectangle",
        )
        self.legend.SetVisibility(False)

        self.mode_box = QComboBox()
        for key, text in MODES:
            self.mode_box.addItem(text, key)
        self.mode_box.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.mode_box.setToolTip("What the 3D view shows: the cine phase, ED, ES, ED and ES side by side "
                                 "(one camera), or ES with the ED surfaces as wireframe")
        bar = QHBoxLayout()
        bar.setContentsMargins(4, 2, 4, 2)
        title = QLabel("3D")
        title.setObjectName("viewTitle")
        bar.addWidget(title)
        bar.addWidget(self.mode_box)
        reset = QPushButton("Reset")
        reset.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        reset.setToolTip("Reset the camera (isometric, whole heart)")
        reset.clicked.connect(lambda: self.standard_view("reset"))
        bar.addWidget(reset)
        camera = QToolButton()
        camera.setText("View ▾")
        camera.setToolTip("Standard views from the LV long axis")
        camera.setPopupMode(QToolButton.ToolButtonPopupMode.InstantPopup)
        camera.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        menu = QMenu(camera)
        for key, text in VIEWS:
            menu.addAction(text).triggered.connect(lambda _=False, k=key: self.standard_view(k))
        camera.setMenu(menu)
        bar.addWidget(camera)
        bar.addStretch(1)
        self.info = QLabel("")
        self.info.setObjectName("muted")
        self.info.setMinimumWidth(90)  # changing text must not re-layout the bar on every step
        self.info.setAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        bar.addWidget(self.info)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.setSpacing(0)
        lay.addLayout(bar)
        lay.addWidget(self.plotter.interactor, 1)
        self.mode_box.currentIndexChanged.connect(self._on_mode)

        self.meshes: dict[int, dict[str, pv.PolyData]] = {}
        self.ed = self.es = 0
        self.phase = 0
        self.mode = "cine"
        self.view = "reset"
        self.axis: LongAxis | None = None
        self.phase_actors: dict[tuple[int, str], _vtk.vtkActor] = {}  # left renderer, hidden until shown
        self.right_actors: dict[str, _vtk.vtkActor] = {}  # ES, right renderer (side by side)
        self.wire_actors: dict[str, _vtk.vtkActor] = {}  # ED wireframe, left renderer
        self.actors: dict[str, _vtk.vtkActor] = {}  # the surface actors shown now (left renderer)
        self.shown: dict[str, pv.PolyData] = {}  # the meshes shown now (left renderer)
        self.shown_right: dict[str, pv.PolyData] = {}
        self._display: dict[tuple[int, str], pv.PolyData] = {}
        self._visible: set[tuple[int, str]] = set()
        self._applied: tuple | None = None
        self.display_keep = DISPLAY_KEEP
        self.display_ready = False  # all display meshes made (decimated, with normals)
        self.more_coming = False  # the other phases' meshes are still being made (`add_meshes` follows)
        self._workers = 0  # display-mesh threads of this generation not finished yet
        self._threads: list[threading.Thread] = []  # every display-mesh thread started (joined on close)
        self._generation = 0
        self._stop = threading.Event()
        self._ready: queue.SimpleQueue = queue.SimpleQueue()
        self._poll_timer = QTimer(self)
        self._poll_timer.setInterval(30)
        self._poll_timer.timeout.connect(self._take_display_meshes)
        self._still_timer = QTimer(self)
        self._still_timer.setSingleShot(True)
        self._still_timer.setInterval(STILL_DELAY_MS)
        self._still_timer.timeout.connect(self._still_render)
        self._layout("single")

    # --- data -----------------------------------------------------------------------------------
    def _reset_scene(self) -> None:
        """Remove the surface actors (captions, legend, hint and lights stay)."""
        self._stop.set()
        self._stop = threading.Event()
        self._generation += 1
        self._poll_timer.stop()
        self.display_ready = False
        self.more_coming = False
        self._workers = 0
        for actor in self.phase_actors.values():
            self.left.RemoveActor(actor)
        for actor in self.wire_actors.values():
            self.left.RemoveActor(actor)
        for actor in self.right_actors.values():
            self.right.RemoveActor(actor)
        self.phase_actors.clear()
        self.right_actors.clear()
        self.wire_actors.clear()
        self.actors.clear()
        self.shown.clear()
        self.shown_right.clear()
        self._display.clear()
        self._visible.clear()
        self._applied = None

    def clear(self) -> None:
        self._reset_scene()
        self.meshes = {}
        self.info.setText("")
        self.hint.SetVisibility(True)
        self.legend.SetVisibility(False)
        self._layout("single")
        self.plotter.render()

    def set_meshes(self, meshes: dict[int, dict[str, pv.PolyData]], ed: int, es: int,
                   axis: LongAxis | None = None, more_coming: bool = False) -> None:
        """`meshes[phase][structure]` in world mm (from the engine's Result). `more_coming`: the other
        phases' meshes follow through `add_meshes` (or `no_more_meshes`); until then a phase without
        meshes shows the nearest one that has them, and `display_ready` stays False."""
        self._reset_scene()
        self.meshes = _nonempty(meshes)
        self.more_coming = bool(more_coming)
        self.ed, self.es, self.axis = int(ed), int(es), axis
        has = bool(self.meshes) and any(self.meshes.values())
        self.hint.SetVisibility(not has)
        self.legend.SetVisibility(has)
        if not has:
            self.meshes = {}
            self._layout("single")
            self.plotter.render()
            return
        ed_t, es_t = self._nearest(self.ed), self._nearest(self.es)
        for s in STRUCTURES:
            mesh = self.meshes[ed_t].get(s)
            if mesh is not None:
                self.wire_actors[s] = _surface_actor(mesh, s, wireframe=True)
                self.left.AddActor(self.wire_actors[s])
            if s in self.meshes[es_t]:
                src = self._phase_actor(es_t, s)
                actor = _vtk.vtkActor()  # the same mapper (vertex buffers) and property, in the right renderer
                actor.SetMapper(src.GetMapper())
                actor.SetProperty(src.GetProperty())
                actor.PickableOff()
                actor.SetVisibility(False)
                self.right.AddActor(actor)
                self.right_actors[s] = actor
        self._apply(render=False)
        self.standard_view("4ch" if axis is not None else "reset")
        self._start_display_meshes(ed_t, es_t)

    def add_meshes(self, meshes: dict[int, dict[str, pv.PolyData]]) -> None:
        """The meshes of further phases (same result as `set_meshes`): their display meshes are made in the
        background, and the cine mode shows each phase's own surfaces from now on."""
        new = {t: ms for t, ms in _nonempty(meshes).items() if t not in self.meshes}
        self.more_coming = False
        if not self.meshes or not new:
            self._check_display_ready()
            return
        self.meshes.update(new)
        self._start_display_meshes(None, None, phases=sorted(new))
        self._applied = None  # the nearest phase with meshes may have changed
        self._apply()

    def no_more_meshes(self) -> None:
        """The other phases' meshes will not come (cancelled or failed): stop waiting for them."""
        self.more_coming = False
        self._check_display_ready()

    def _check_display_ready(self) -> None:
        if self._workers == 0 and not self.more_coming:
            self._poll_timer.stop()
            self.display_ready = True

    def _nearest(self, target: int) -> int:
        """The phase with meshes nearest in time to `target` (meshes may exist for ED/ES only)."""
        if target in self.meshes:
            return target
        return min(self.meshes, key=lambda t: abs(t - target))

    def _display_mesh(self, phase: int, structure: str) -> pv.PolyData:
        key = (phase, structure)
        if key not in self._display:
            self._display[key] = display_mesh(self.meshes[phase][structure], keep=1.0)
        return self._display[key]

    def _phase_actor(self, phase: int, structure: str) -> _vtk.vtkActor:
        key = (phase, structure)
        actor = self.phase_actors.get(key)
        if actor is None:
            actor = _surface_actor(self._display_mesh(phase, structure), structure)
            self.left.AddActor(actor)
            self.phase_actors[key] = actor
        return actor

    def _start_display_meshes(self, ed_t: int | None, es_t: int | None, phases: list[int] | None = None) -> None:
        """Make the display meshes of every phase (or of `phases`) on a background thread (ED and ES
        first); the UI thread puts each one into its actor as it arrives (`_take_display_meshes`). Until
        then a phase shows the full mesh."""
        if phases is None:
            phases = [ed_t, es_t] + [t for t in sorted(self.meshes) if t not in (ed_t, es_t)]
        order = [(t, s) for t in dict.fromkeys(phases) for s in STRUCTURES if s in self.meshes[t]]
        meshes, keep, out, gen = dict(self.meshes), self.display_keep, self._ready, self._generation
        stop = self._stop  # one event per generation: `_reset_scene` stops every thread of it
        self._workers += 1
        self.display_ready = False

        def work() -> None:
            try:
                for t, s in order:
                    if stop.is_set():
                        return
                    out.put((gen, (t, s), display_mesh(meshes[t][s], keep)))
            finally:
                out.put((gen, None, None))

        th = threading.Thread(target=work, name="gemini-3d-display", daemon=True)
        self._threads = [t for t in self._threads if t.is_alive()] + [th]
        th.start()
        self._poll_timer.start()

    def _take_display_meshes(self) -> None:
        visible_changed = False
        ed_t = self._nearest(self.ed) if self.meshes else None
        while True:
            try:
                gen, key, mesh = self._ready.get_nowait()
            except queue.Empty:
                break
            if gen != self._generation:
                continue
            if key is None:
                self._workers -= 1
                self._check_display_ready()
                continue
            self._display[key] = mesh
            actor = self.phase_actors.get(key)
            if actor is None:
                self._phase_actor(*key)
                continue
            actor.GetMapper().SetInputData(mesh)  # the ES actor of the right renderer shares this mapper
            if key[0] == ed_t and key[1] in self.wire_actors:
                self.wire_actors[key[1]].GetMapper().SetInputData(mesh)
            visible_changed = visible_changed or bool(actor.GetVisibility())
        if visible_changed:
            self.request_render()

    def wait_display_ready(self, timeout_s: float = 60.0) -> bool:
        """Process events until every display mesh is made (tests, benchmarks, scripted screenshots)."""
        import time

        from PySide6.QtWidgets import QApplication

        end = time.monotonic() + timeout_s
        while self.meshes and not self.display_ready and time.monotonic() < end:
            QApplication.processEvents()
            time.sleep(0.005)
        return self.display_ready or not self.meshes

    # --- modes and phases -----------------------------------------------------------------------
    def set_phase(self, phase: int) -> None:
        self.phase = int(phase)
        if self.mode == "cine" and self.meshes and (self._applied is None or self._nearest(self.phase) != self._applied[0]):
            self._apply(stepping=True)

    def set_mode(self, mode: str) -> None:
        idx = [k for k, _ in MODES].index(mode)
        if idx == self.mode_box.currentIndex():
            self._on_mode(idx)
        else:
            self.mode_box.setCurrentIndex(idx)

    def _on_mode(self, idx: int) -> None:
        self.mode = MODES[idx][0]
        self._apply()
        self.modeChanged.emit(self.mode)

    def displayed_phase(self) -> int | None:
        """The phase shown in the (left) renderer."""
        if not self.meshes:
            return None
        target = {"cine": self.phase, "ed": self.ed, "es": self.es, "compare": self.es, "side": self.ed}[self.mode]
        return self._nearest(target)

    def _layout(self, layout: str) -> None:
        side = layout == "side"
        self.left.SetViewport(0.0, 0.0, 0.5 if side else 1.0, 1.0)
        self.right.SetDraw(side)
        self.right.SetInteractive(side)
        self.left_caption.SetVisibility(side)
        self.right_caption.SetVisibility(side)
        self.legend.SetPosition2(0.6 if side else 0.3, 0.15)  # relative to the renderer's viewport

    def _apply(self, stepping: bool = False, render: bool = True) -> None:
        t = self.displayed_phase()
        if t is None:
            return
        self._applied = (t, self.mode)
        want = {(t, s) for s in STRUCTURES if s in self.meshes[t]}
        for key in self._visible - want:
            self.phase_actors[key].SetVisibility(False)
        self.actors.clear()
        self.shown.clear()
        for key in sorted(want):
            actor = self._phase_actor(*key)
            actor.SetVisibility(True)
            self.actors[key[1]] = actor
            self.shown[key[1]] = self.meshes[t][key[1]]
        self._visible = want
        compare, side = self.mode == "compare", self.mode == "side"
        for actor in self.wire_actors.values():
            actor.SetVisibility(compare)
        es_t = self._nearest(self.es)
        for actor in self.right_actors.values():
            actor.SetVisibility(side)
        self.shown_right = {s: self.meshes[es_t][s] for s in self.right_actors} if side else {}
        self._layout("side" if side else "single")
        if side:
            self.left_caption.SetText(2, f"ED (phase {t + 1})")
            self.right_caption.SetText(2, f"ES (phase {es_t + 1})")
            self.info.setText(f"ED {t + 1} | ES {es_t + 1}")
        elif self.mode == "compare":
            self.info.setText(f"ES {t + 1} + ED {self._nearest(self.ed) + 1}")
        else:
            tag = "ED" if t == self.ed else "ES" if t == self.es else ""
            self.info.setText(f"phase {t + 1}" + (f" {tag}" if tag else ""))
        if render:
            self.request_render(stepping=stepping)

    # --- rendering ------------------------------------------------------------------------------
    def request_render(self, stepping: bool = False) -> None:
        """Schedule one repaint (several requests in one event-loop pass render once). While stepping,
        frames skip the FXAA pass; an anti-aliased frame follows once the stepping stops."""
        if stepping:
            self._set_fxaa(False)
            self._still_timer.start()
        elif not self._still_timer.isActive():
            self._set_fxaa(True)
        self.plotter.interactor.update()

    def _set_fxaa(self, on: bool) -> None:
        for r in (self.left, self.right):
            if bool(r.GetUseFXAA()) != on:
                r.SetUseFXAA(on)

    def _still_render(self) -> None:
        self._set_fxaa(True)
        self.plotter.interactor.update()

    # --- camera ---------------------------------------------------------------------------------
    def _frame(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Centre, base-to-apex direction, septal direction (LV towards RV) and anterior direction, all
        unit and perpendicular to the long axis (world axes when there is no long axis)."""
        if self.axis is not None:
            c, d = np.asarray(self.axis.centre, float), np.asarray(self.axis.direction, float)
            side = (np.asarray(self.axis.rv_centre, float) - c if self.axis.rv_centre is not None
                    else np.array([-1.0, 0.0, 0.0]))  # RAS: the RV lies to the patient's right
        else:
            bounds = np.array(self.left.ComputeVisiblePropBounds()).reshape(3, 2)
            c = bounds.mean(axis=1) if np.all(np.isfinite(bounds)) and bounds[0, 0] <= bounds[0, 1] else np.zeros(3)
            d, side = np.array([0.0, 0.0, -1.0]), np.array([-1.0, 0.0, 0.0])
        side = side - np.dot(side, d) * d
        if np.linalg.norm(side) < 1e-6:
            side = np.cross(d, [0.0, 1.0, 0.0])
        side /= np.linalg.norm(side)
        ant = np.array([0.0, 1.0, 0.0]) - np.dot([0.0, 1.0, 0.0], d) * d
        if np.linalg.norm(ant) < 1e-6:
            ant = np.cross(side, d)
        ant /= np.linalg.norm(ant)
        return c, d, side, ant

    def standard_view(self, key: str) -> None:
        """Camera presets (the camera is shared by both renderers): "4ch" (long axis, apex up, RV on the
        left, as the 2D 4-chamber reformat), "anterior", "septal" (from the RV side onto the septum),
        "base" (short axis seen from the base), "apex" (from the apex), "reset" (isometric)."""
        self.view = key
        if not self.meshes or key == "reset":
            self.plotter.view_isometric()
            self.plotter.reset_camera()
        else:
            c, d, side, ant = self._frame()
            dist = 400.0
            normal4 = np.cross(side, d)
            pos, up = {
                "4ch": (c - dist * normal4, d),
                "anterior": (c + dist * ant, -d),
                "septal": (c + dist * side, -d),
                "base": (c - dist * d, ant),
                "apex": (c + dist * d, ant),
            }[key]
            self.plotter.camera_position = [tuple(pos), tuple(c), tuple(up)]
            self.plotter.reset_camera()
        for r in (self.left, self.right):
            r.ResetCameraClippingRange()
        self.request_render()

    def view_direction(self) -> np.ndarray:
        """Unit vector from the camera to its focal point (for tests and scripts)."""
        cam = self.left.GetActiveCamera()
        v = np.array(cam.GetFocalPoint()) - np.array(cam.GetPosition())
        return v / np.linalg.norm(v)

    def screenshot(self) -> np.ndarray:
        """The rendered 3D view (both renderers) as an (H, W, 3) uint8 array, anti-aliased."""
        self._still_timer.stop()
        self._set_fxaa(True)
        self.plotter.render()
        return self.plotter.screenshot(return_img=True)

    def close_plotter(self, wait_s: float = 10.0) -> None:
        """Stop the display-mesh threads, wait for the one mesh each may be making (VTK must not be running
        on another thread while the window and the interpreter are torn down), then close the plotter."""
        from gemini_cmr.app.warmup import join_threads

        self._stop.set()
        self._poll_timer.stop()
        self._still_timer.stop()
        join_threads(self._threads, wait_s)
        self._threads = [t for t in self._threads if t.is_alive()]
        self.plotter.close()
