"""3D surfaces (pyvistaqt): LV cavity, LV myocardium (semi-transparent), RV cavity from the engine's
precomputed meshes. Changing phase swaps each actor's mesh (no re-meshing), so cine playback is cheap.
Modes: follow the cine phase, ED, ES, or ES solid with ED wireframe. Standard camera views use the LV
long axis from `core.reformat`.
"""

from __future__ import annotations

import numpy as np
import pyvista as pv
from PySide6.QtCore import Qt, Signal
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
from pyvistaqt import QtInteractor

from app.theme import STRUCTURE_NAMES, SURFACE_MODES, structure_colour
from core.reformat import LongAxis

STRUCTURES = ("lv_cavity", "lv_myocardium", "rv_cavity")
OPACITY = {"lv_cavity": 1.0, "lv_myocardium": 0.35, "rv_cavity": 1.0}
MODES = SURFACE_MODES


class SurfaceView(QWidget):
    modeChanged = Signal(str)

    def __init__(self, parent=None):
        super().__init__(parent)
        self.plotter = QtInteractor(self, auto_update=False)
        # Keys go to the window's shortcuts (slices, phases, play) unless the user clicks into the 3D view.
        self.plotter.interactor.setFocusPolicy(Qt.FocusPolicy.ClickFocus)
        self.plotter.set_background("#15171a", top="#2b3038")
        self.plotter.enable_anti_aliasing("fxaa")
        self.mode_box = QComboBox()
        for key, text in MODES:
            self.mode_box.addItem(text, key)
        self.mode_box.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        bar = QHBoxLayout()
        bar.setContentsMargins(4, 2, 4, 2)
        title = QLabel("3D")
        title.setObjectName("viewTitle")
        bar.addWidget(title)
        bar.addWidget(self.mode_box)
        reset = QPushButton("Reset")
        reset.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        reset.clicked.connect(lambda: self.standard_view("reset"))
        bar.addWidget(reset)
        camera = QToolButton()
        camera.setText("View ▾")
        camera.setPopupMode(QToolButton.ToolButtonPopupMode.InstantPopup)
        camera.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        menu = QMenu(camera)
        for key, text in (("4ch", "Long axis (4-chamber)"), ("sax", "Short axis (from the base)"),
                          ("ant", "Anterior"), ("reset", "Reset")):
            menu.addAction(text).triggered.connect(lambda _=False, k=key: self.standard_view(k))
        camera.setMenu(menu)
        bar.addWidget(camera)
        bar.addStretch(1)
        self.info = QLabel("")
        self.info.setObjectName("muted")
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
        self.axis: LongAxis | None = None
        self.actors: dict[str, object] = {}
        self.wire_actors: dict[str, object] = {}
        self.shown: dict[str, pv.PolyData] = {}
        self._render_meshes: dict[tuple[int, str], pv.PolyData] = {}
        self._applied: int | None = None
        self._hint()

    # --- data -----------------------------------------------------------------------------------
    def _reset_scene(self) -> None:
        """Remove every actor and cached render mesh (lights stay: clear_actors, not clear)."""
        self.plotter.clear_actors()
        self.actors.clear()
        self.wire_actors.clear()
        self.shown.clear()
        self._render_meshes.clear()
        self._applied = None

    def clear(self) -> None:
        self._reset_scene()
        self.meshes = {}
        self.info.setText("")
        self._hint()
        self.plotter.render()

    def _hint(self) -> None:
        self.plotter.add_text("No surfaces yet: Super-resolve", position=(10, 10), font_size=7,
                              color="#8a93a0", name="hint")

    def set_meshes(self, meshes: dict[int, dict[str, pv.PolyData]], ed: int, es: int,
                   axis: LongAxis | None = None) -> None:
        """`meshes[phase][structure]` in world mm (from the engine's Result)."""
        self._reset_scene()
        self.meshes = {int(t): m for t, m in meshes.items()}
        self.ed, self.es, self.axis = int(ed), int(es), axis
        if not self.meshes:
            self._hint()
            self.plotter.render()
            return
        first = self.meshes.get(self.ed) or next(iter(self.meshes.values()))
        for s in STRUCTURES:
            mesh = first.get(s)
            if mesh is None or mesh.n_points == 0:
                continue
            self.actors[s] = self.plotter.add_mesh(
                self._render_mesh(self.ed if self.ed in self.meshes else next(iter(self.meshes)), s),
                color=structure_colour(s), opacity=OPACITY[s], specular=0.3, smooth_shading=True, name=s,
                reset_camera=False,
            )
            self.wire_actors[s] = self.plotter.add_mesh(
                mesh, color=structure_colour(s), style="wireframe", opacity=0.25,
                line_width=1, name=f"{s}_ed_wire", reset_camera=False,
            )
            self.wire_actors[s].SetVisibility(False)
        # (Re)added each time: clear_actors() may have removed the previous legend actor.
        self.plotter.add_legend(
            [[STRUCTURE_NAMES[s], structure_colour(s)] for s in STRUCTURES], bcolor=None, border=False,
            size=(0.3, 0.15), loc="lower left", face="rectangle",
        )
        self._apply()
        self.standard_view("4ch" if axis is not None else "reset")

    def set_phase(self, phase: int) -> None:
        self.phase = int(phase)
        if self.mode == "cine" and self.displayed_phase() != self._applied:
            self._apply()

    def set_mode(self, mode: str) -> None:
        idx = [k for k, _ in MODES].index(mode)
        self.mode_box.setCurrentIndex(idx)

    def _on_mode(self, idx: int) -> None:
        self.mode = MODES[idx][0]
        self._apply()
        self.modeChanged.emit(self.mode)

    def displayed_phase(self) -> int | None:
        if not self.meshes:
            return None
        target = {"cine": self.phase, "ed": self.ed, "es": self.es, "compare": self.es}[self.mode]
        if target in self.meshes:
            return target
        # Meshes only for some phases (e.g. ED/ES): show the nearest one in time.
        return min(self.meshes, key=lambda t: abs(t - target))

    def _render_mesh(self, phase: int, structure: str) -> pv.PolyData:
        """The mesh with point normals for smooth shading (made once per phase, on first display)."""
        key = (phase, structure)
        if key not in self._render_meshes:
            mesh = self.meshes[phase][structure]
            self._render_meshes[key] = mesh.compute_normals(cell_normals=False, split_vertices=False,
                                                            consistent_normals=False)
        return self._render_meshes[key]

    def _apply(self) -> None:
        t = self.displayed_phase()
        if t is None:
            return
        self._applied = t if self.mode == "cine" else None
        for s, actor in self.actors.items():
            mesh = self.meshes[t].get(s)
            if mesh is None:
                actor.SetVisibility(False)
                continue
            actor.SetVisibility(True)
            actor.mapper.SetInputData(self._render_mesh(t, s))
            self.shown[s] = mesh
        compare = self.mode == "compare"
        for s, actor in self.wire_actors.items():
            mesh = self.meshes.get(self.ed, {}).get(s)
            actor.SetVisibility(compare and mesh is not None)
            if compare and mesh is not None:
                actor.mapper.SetInputData(mesh)
        label = {"ed": "ED", "es": "ES", "compare": "ES + ED"}.get(self.mode, "")
        tag = f"phase {t + 1}" + (f" {label}" if label else " ED" if t == self.ed else " ES" if t == self.es else "")
        self.info.setText(tag)
        self.request_render()

    def request_render(self) -> None:
        """Schedule one repaint (several requests in one event-loop pass render once)."""
        self.plotter.interactor.update()

    # --- camera ---------------------------------------------------------------------------------
    def standard_view(self, key: str) -> None:
        if not self.actors:
            self.plotter.reset_camera()
            self.plotter.render()
            return
        if key == "reset" or self.axis is None:
            self.plotter.view_isometric()
            self.plotter.reset_camera()
        else:
            a = self.axis
            c = a.centre
            side = a.rv_centre - c if a.rv_centre is not None else np.cross(a.direction, [0, 0, 1.0])
            side = side - np.dot(side, a.direction) * a.direction
            side /= max(np.linalg.norm(side), 1e-9)
            normal4 = np.cross(side, a.direction)
            d = 300.0
            if key == "4ch":  # as the 2D 4-chamber reformat: apex up, RV on the left
                pos, up = c - d * normal4, a.direction
            elif key == "sax":
                pos, up = c - d * a.direction, -side
            else:  # anterior: looking from the front (+A in RAS) towards the heart
                pos, up = c + d * np.array([0.0, 1.0, 0.0]), np.array([0.0, 0.0, 1.0])
            self.plotter.camera_position = [tuple(pos), tuple(c), tuple(up)]
            self.plotter.reset_camera()
        self.plotter.render()

    def screenshot(self) -> np.ndarray:
        """The rendered 3D view as an (H, W, 3) uint8 array."""
        self.plotter.render()
        return self.plotter.screenshot(return_img=True)

    def close_plotter(self) -> None:
        self.plotter.close()
