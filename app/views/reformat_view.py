"""Long-axis reformats, LR and SR side by side: a 4-chamber-like and a 2-chamber-like plane through the
LV long axis (estimated by `core.reformat.long_axis` from the segmentation) and an oblique plane drawn
on the short-axis view. The LR reformat keeps each slice's slab (the staircase of the stack); the SR
reformat shows the super-resolved volume on the same plane. All sampling is done by `core.reformat`.
"""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import QPointF, QRectF, Qt, Signal
from PySide6.QtGui import QTransform
from PySide6.QtWidgets import QButtonGroup, QHBoxLayout, QLabel, QPushButton, QSplitter, QVBoxLayout, QWidget

from gemini_cmr.app.views.slice_view import ImagePane
from gemini_cmr.core.reformat import LongAxis, Plane, plane_through_line, sample_plane, standard_planes
from gemini_cmr.core.study import Grid

PLANES = (("4ch", "4-chamber"), ("2ch", "2-chamber"), ("oblique", "Oblique"))
SAMPLING_MM = 1.25


class _Source:
    def __init__(self, image=None, grid=None, labels=None, phases=None, nearest_slices=False):
        self.image, self.grid, self.labels = image, grid, labels
        n = 0 if image is None else image.shape[0]
        self.index = {int(t): i for i, t in enumerate(phases if phases is not None else range(n))}
        self.nearest_slices = nearest_slices


class ReformatView(QWidget):
    planeChanged = Signal(str)
    cursorMoved = Signal(object)  # world point picked on a reformat
    windowLevelDragged = Signal(float, float)
    windowLevelReset = Signal()

    def __init__(self, parent=None):
        super().__init__(parent)
        self.lr_pane = ImagePane("LR")
        self.sr_pane = ImagePane("SR")
        self.lr_pane.placeholder = "Open a study"
        self.sr_pane.placeholder = "Super-resolve to see the SR reformat"
        self._buttons = QButtonGroup(self)
        bar = QHBoxLayout()
        bar.setContentsMargins(4, 2, 4, 2)
        title = QLabel("Long axis")
        title.setObjectName("viewTitle")
        bar.addWidget(title)
        for i, (key, text) in enumerate(PLANES):
            b = QPushButton(text)
            b.setCheckable(True)
            b.setProperty("plane", key)
            b.setFocusPolicy(Qt.FocusPolicy.NoFocus)
            self._buttons.addButton(b, i)
            bar.addWidget(b)
        bar.addStretch(1)
        self._hint = QLabel("")
        self._hint.setObjectName("muted")
        bar.addWidget(self._hint)
        split = QSplitter(Qt.Orientation.Horizontal)
        split.addWidget(self.lr_pane)
        split.addWidget(self.sr_pane)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.setSpacing(0)
        lay.addLayout(bar)
        lay.addWidget(split, 1)
        self._buttons.idToggled.connect(self._on_button)
        for a, b in ((self.lr_pane, self.sr_pane), (self.sr_pane, self.lr_pane)):
            a.viewChanged.connect(lambda z, c, other=b: other.apply_view(z, c))
            a.leftPressed.connect(self._on_pick)
            a.leftDragged.connect(self._on_pick)
            a.windowLevelDragged.connect(self.windowLevelDragged)
            a.windowLevelReset.connect(self.windowLevelReset)
        self.cursor: np.ndarray | None = None
        self.lr = _Source(nearest_slices=True)
        self.sr = _Source()
        self.axis: LongAxis | None = None
        self.planes: dict[str, Plane] = {}
        self.plane_name = "oblique"
        self.phase = 0
        self._dirty = True
        self._cache: dict[tuple, tuple] = {}
        self._fitted: dict[int, int] = {}
        self._user_oblique = False
        self._buttons.button(2).setChecked(True)

    # --- inputs ---------------------------------------------------------------------------------
    def set_lr(self, image, grid: Grid | None, labels=None, phases=None) -> None:
        if self.lr.grid is None or grid is None or self.lr.grid != grid:
            self.planes.pop("oblique", None)  # a new study: start from the default oblique plane
            self._user_oblique = False
        self.lr = _Source(image, grid, labels, phases, nearest_slices=True)
        self._replan()

    def set_sr(self, image, grid: Grid | None, labels=None, phases=None) -> None:
        self.sr = _Source(image, grid, labels, phases)
        self._cache.clear()
        self._dirty = True
        self.refresh()

    def set_axis(self, axis: LongAxis | None) -> None:
        first = self.axis is None and axis is not None
        self.axis = axis
        self._replan()
        if first and self.plane_name == "oblique" and not self._user_oblique:
            self.select_plane("4ch")

    def set_oblique(self, p0: np.ndarray, p1: np.ndarray) -> None:
        if self.lr.grid is None:
            return
        try:
            self.planes["oblique"] = plane_through_line(p0, p1, self.lr.grid, self.axis)
        except ValueError:
            return
        self._cache.clear()
        self._user_oblique = True
        if self.plane_name != "oblique":
            self.select_plane("oblique")
        self._dirty = True
        self.refresh()

    def select_plane(self, name: str) -> None:
        for i, (key, _) in enumerate(PLANES):
            if key == name:
                self._buttons.button(i).setChecked(True)

    def set_phase(self, phase: int) -> None:
        if phase != self.phase:
            self.phase = int(phase)
            self._dirty = True
            self.refresh()

    def set_window_level(self, window: float, level: float) -> None:
        self.lr_pane.set_window_level(window, level)
        self.sr_pane.set_window_level(window, level)

    def set_overlay(self, visible: bool, opacity: float) -> None:
        self.lr_pane.set_overlay(visible, opacity)
        self.sr_pane.set_overlay(visible, opacity)

    def current_plane(self) -> Plane | None:
        return self.planes.get(self.plane_name)

    # --- internals ------------------------------------------------------------------------------
    def _replan(self) -> None:
        self._cache.clear()
        oblique = self.planes.get("oblique")
        self.planes = {}
        if self.axis is not None and self.lr.grid is not None:
            self.planes.update(standard_planes(self.axis, self.lr.grid))
        if oblique is not None:
            self.planes["oblique"] = oblique
        elif self.lr.grid is not None:
            g = self.lr.grid
            nz, ny, nx = g.shape
            mid = np.array([(nx - 1) / 2, (ny - 1) / 2, (nz - 1) / 2])
            p0 = g.index_to_world(mid - [nx / 3, 0, 0])
            p1 = g.index_to_world(mid + [nx / 3, 0, 0])
            self.planes["oblique"] = plane_through_line(p0, p1, g, self.axis)
        self._dirty = True
        self.refresh()

    def oblique_line(self) -> tuple[np.ndarray, np.ndarray] | None:
        """The oblique plane's trace as two world points (for drawing on the short-axis views)."""
        p = self.planes.get("oblique")
        if p is None:
            return None
        return p.to_world(np.array([-p.half_width, 0.0])), p.to_world(np.array([p.half_width, 0.0]))

    def _on_button(self, idx: int, checked: bool) -> None:
        if checked:
            self.plane_name = PLANES[idx][0]
            self._dirty = True
            self.lr_pane.fit()
            self.sr_pane.fit()
            self.refresh()
            self.planeChanged.emit(self.plane_name)

    def showEvent(self, event):  # noqa: N802
        super().showEvent(event)
        self.refresh()

    def refresh(self) -> None:
        """Resample the current plane (only when visible and something changed)."""
        if not self._dirty or not self.isVisible():
            return
        self._dirty = False
        plane = self.planes.get(self.plane_name)
        needs_axis = self.plane_name != "oblique" and self.axis is None
        self._hint.setText("needs a segmentation" if needs_axis else
                           ("Ctrl+drag on SAX" if self.plane_name == "oblique" else ""))
        self._hint.setToolTip("Ctrl+drag on a short-axis view to draw the oblique plane")
        for pane, src in ((self.lr_pane, self.lr), (self.sr_pane, self.sr)):
            if plane is None or src.image is None or self.phase not in src.index:
                pane.show_array(None)
                continue
            img, lab = self._sample(src, plane, self.phase)
            h, w = img.shape
            pane.set_pixel_transform(QTransform.fromScale(SAMPLING_MM, SAMPLING_MM).translate(0, 0))
            extent = QRectF(0, 0, w * SAMPLING_MM, h * SAMPLING_MM)
            # Standard planes open zoomed on the heart (a square around the LV centre, which is the
            # plane's centre); the oblique plane shows the whole field of view.
            target = None
            if self.plane_name != "oblique" and self.axis is not None:
                side = float(np.clip(1.8 * self.axis.length_mm, 100.0, 400.0))
                target = QRectF(extent.center().x() - side / 2, extent.center().y() - side / 2, side, side)
            refit = target != pane.fit_target or self._fitted.get(id(pane)) != id(plane)
            pane.fit_target = target
            if pane.scene().sceneRect() != extent:
                pane.set_scene_extent(extent)
            if refit:
                self._fitted[id(pane)] = id(plane)
                pane.fit()
            pane.show_array(img, lab)
            label = dict(PLANES)[self.plane_name]
            pane.corner["tl"] = f"{pane.title}  {label}"
            pane.corner["bl"] = f"phase {self.phase + 1}"
        self._update_cross()

    def _sample(self, src: _Source, plane: Plane, phase: int):
        """Image and labels of `src` on `plane` at `phase`, cached while the plane and data stay the same
        (so a cine loop resamples each phase once)."""
        key = (id(src), id(plane), phase)
        hit = self._cache.get(key)
        if hit is None:
            ti = src.index[phase]
            img = sample_plane(src.image[ti], src.grid, plane, SAMPLING_MM, order=1,
                               nearest_slices=src.nearest_slices)
            lab = None
            if src.labels is not None:
                lab = sample_plane(src.labels[ti], src.grid, plane, SAMPLING_MM, order=0,
                                   nearest_slices=src.nearest_slices)
            if len(self._cache) > 400:
                self._cache.clear()
            hit = self._cache[key] = (img, lab)
        return hit

    # --- crosshair: the cursor projected on the plane, and picking a world point --------------------
    def _plane_to_scene(self, plane: Plane, st: np.ndarray) -> QPointF:
        h, w = plane.shape(SAMPLING_MM)
        c = st[0] / SAMPLING_MM + (w - 1) / 2
        r = st[1] / SAMPLING_MM + (h - 1) / 2
        return QPointF((c + 0.5) * SAMPLING_MM, (r + 0.5) * SAMPLING_MM)

    def _scene_to_plane(self, plane: Plane, p: QPointF) -> np.ndarray:
        h, w = plane.shape(SAMPLING_MM)
        c = p.x() / SAMPLING_MM - 0.5
        r = p.y() / SAMPLING_MM - 0.5
        return np.array([(c - (w - 1) / 2) * SAMPLING_MM, (r - (h - 1) / 2) * SAMPLING_MM])

    def set_cursor(self, world: np.ndarray) -> None:
        self.cursor = np.asarray(world, dtype=np.float64)
        self._update_cross()

    def _update_cross(self) -> None:
        plane = self.planes.get(self.plane_name)
        for pane in (self.lr_pane, self.sr_pane):
            if plane is None or self.cursor is None:
                pane.set_cross(None)
            else:
                pane.set_cross(self._plane_to_scene(plane, plane.to_plane(self.cursor)))

    def _on_pick(self, p: QPointF) -> None:
        plane = self.planes.get(self.plane_name)
        if plane is not None:
            self.cursorMoved.emit(plane.to_world(self._scene_to_plane(plane, p)))

    def set_crosshair_visible(self, visible: bool) -> None:
        self.lr_pane.set_crosshair_visible(visible)
        self.sr_pane.set_crosshair_visible(visible)
