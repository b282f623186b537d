"""The acquired long-axis cines beside the short-axis views: one long-axis image (2-, 3- or 4-chamber, a
chooser when the study has several) at the phase matched to the short-axis phase, the lines where the
acquired short-axis slices cross its plane (the slice through the cursor highlighted), and after a run
the SR labels cut along the plane. Geometry (lines, phase matching, the cut) comes from `core.longaxis`
through the window's `ViewerState`; this widget only draws.

The scene is the long-axis image's pixel grid scaled to mm: pixel (i, j) centre at (i * sx, j * sy).
Mouse as on the short-axis views; a left click on (or near) a slice line selects that short-axis slice.
"""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import QPointF, QRectF, Qt, Signal
from PySide6.QtGui import QColor, QPainter, QPen, QTransform
from PySide6.QtWidgets import QComboBox, QHBoxLayout, QLabel, QVBoxLayout, QWidget

from gemini_cmr.app.theme import CROSSHAIR
from gemini_cmr.app.views.slice_view import ImagePane

#: The colour of each long-axis view: its trace on the short-axis views and its title.
VIEW_COLOURS = {"4ch": QColor(90, 220, 255), "2ch": QColor(255, 110, 130), "3ch": QColor(190, 150, 255),
                "la": QColor(235, 235, 235)}
VIEW_NAMES = {"4ch": "4-chamber", "2ch": "2-chamber", "3ch": "3-chamber", "la": "long axis"}
SLICE_LINE = QColor(255, 255, 255, 110)
PICK_PX = 8.0  # a click this close (screen pixels) to a slice line selects that slice


def view_colour(view: str) -> QColor:
    return VIEW_COLOURS.get(view, VIEW_COLOURS["la"])


def _distance_to_segment(p: np.ndarray, a: np.ndarray, b: np.ndarray) -> float:
    ab = b - a
    t = float(np.clip(np.dot(p - a, ab) / max(float(np.dot(ab, ab)), 1e-12), 0.0, 1.0))
    return float(np.linalg.norm(p - (a + t * ab)))


class LongAxisPane(ImagePane):
    """One long-axis image with the short-axis slice lines drawn over it."""

    slicePicked = Signal(int, QPointF)  # short-axis slice, scene position
    pointPicked = Signal(QPointF)  # scene position away from any slice line

    def __init__(self, parent=None):
        super().__init__("Long axis", parent)
        self.spacing = (1.0, 1.0)
        self.lines: list[tuple[int, QPointF, QPointF]] = []  # (slice, scene p0, p1)
        self.current_slice: int | None = None
        self.marker: QPointF | None = None
        self._thin = QPen(SLICE_LINE, 1)
        self._thin.setCosmetic(True)
        self._bold = QPen(CROSSHAIR, 2)
        self._bold.setCosmetic(True)
        self._marker_pen = QPen(CROSSHAIR, 1.5)
        self._marker_pen.setCosmetic(True)
        self.leftPressed.connect(self._on_left)

    def set_geometry(self, shape: tuple[int, int], spacing: tuple[float, float]) -> None:
        """The image's (rows, columns) and pixel size (mm): the scene and where pixels lie in it."""
        sx, sy = (float(v) for v in spacing)
        self.spacing = (sx, sy)
        ny, nx = shape
        self.set_pixel_transform(QTransform(sx, 0.0, 0.0, sy, -0.5 * sx, -0.5 * sy))
        self._user_zoomed = False
        self.set_scene_extent(QRectF(-0.5 * sx, -0.5 * sy, nx * sx, ny * sy))

    def to_scene(self, ij) -> QPointF:
        return QPointF(float(ij[0]) * self.spacing[0], float(ij[1]) * self.spacing[1])

    def to_pixel(self, p: QPointF) -> np.ndarray:
        return np.array([p.x() / self.spacing[0], p.y() / self.spacing[1]])

    def set_lines(self, lines: list[tuple[int, np.ndarray]]) -> None:
        """(short-axis slice, (2, 2) end points (i, j) on the long-axis image) per line."""
        self.lines = [(int(k), self.to_scene(ij[0]), self.to_scene(ij[1])) for k, ij in lines]
        self.viewport().update()

    def set_current_slice(self, k: int | None, marker_ij=None) -> None:
        self.current_slice = k
        self.marker = None if marker_ij is None else self.to_scene(marker_ij)
        self.viewport().update()

    def line_at(self, p: QPointF) -> int | None:
        """The slice whose line passes within `PICK_PX` screen pixels of scene point `p`, nearest first."""
        best, best_d = None, PICK_PX
        q = np.array([p.x(), p.y()]) * self.zoom()
        for k, a, b in self.lines:
            d = _distance_to_segment(q, np.array([a.x(), a.y()]) * self.zoom(), np.array([b.x(), b.y()]) * self.zoom())
            if d <= best_d:
                best, best_d = k, d
        return best

    def _on_left(self, p: QPointF) -> None:
        k = self.line_at(p)
        if k is None:
            self.pointPicked.emit(p)
        else:
            self.slicePicked.emit(k, p)

    def draw_scene_lines(self, painter: QPainter) -> None:
        current = None
        for k, a, b in self.lines:
            if k == self.current_slice:
                current = (a, b)
                continue
            painter.setPen(self._thin)
            painter.drawLine(a, b)
        if current is not None:
            painter.setPen(self._bold)
            painter.drawLine(*current)
        if self.marker is not None and self._cross_visible:
            r = 3.0 / max(self.zoom(), 1e-6) * 2
            painter.setPen(self._marker_pen)
            m = self.marker
            painter.drawLine(QPointF(m.x() - r, m.y()), QPointF(m.x() + r, m.y()))
            painter.drawLine(QPointF(m.x(), m.y() - r), QPointF(m.x(), m.y() + r))


class LongAxisView(QWidget):
    """The long-axis pane under a bar: title, view chooser (several cines), and a note (e.g. "SR labels at
    ED/ES only"). The window pushes what to show; the view emits what the user picked."""

    cineChosen = Signal(int)  # index into the window's long-axis cines
    slicePicked = Signal(int, object)  # short-axis slice, world point clicked
    cursorMoved = Signal(object)  # world point clicked away from the slice lines

    def __init__(self, parent=None):
        super().__init__(parent)
        self.pane = LongAxisPane()
        self.pane.placeholder = "No long-axis cine (File > Add Long-Axis Cine…)"
        self.title = QLabel("Long axis")
        self.title.setObjectName("viewTitle")
        self.chooser = QComboBox()
        self.chooser.setFocusPolicy(Qt.FocusPolicy.ClickFocus)
        self.chooser.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToContents)
        self.chooser.setToolTip("Which long-axis cine to show")
        self.note = ""  # about the labels shown: "SR labels ED", "SR labels at ED/ES only", ...
        bar = QHBoxLayout()
        bar.setContentsMargins(4, 2, 4, 2)
        bar.addWidget(self.title)
        bar.addWidget(self.chooser)
        bar.addStretch(1)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.setSpacing(0)
        lay.addLayout(bar)
        lay.addWidget(self.pane, 1)
        self.grid = None  # the shown cine's single-slice `Grid`
        self.image: np.ndarray | None = None
        self.default_window_level = (1.0, 0.5)
        self.chooser.currentIndexChanged.connect(self._on_chosen)
        self.pane.windowLevelDragged.connect(self.pane.set_window_level)
        self.pane.windowLevelReset.connect(self.reset_window_level)
        self.pane.slicePicked.connect(lambda k, p: self.slicePicked.emit(k, self._world(p)))
        self.pane.pointPicked.connect(lambda p: self.cursorMoved.emit(self._world(p)))

    # --- inputs from the window ------------------------------------------------------------------------
    def set_cines(self, names: list[tuple[str, str]], current: int = 0) -> None:
        """The chooser's entries: (view, file name) per cine; the chooser shows only with several."""
        self.chooser.blockSignals(True)
        self.chooser.clear()
        views = [view for view, _ in names]
        for view, name in names:
            text = VIEW_NAMES.get(view, view)
            self.chooser.addItem(text if views.count(view) == 1 else f"{text} ({name})", view)
            self.chooser.setItemData(self.chooser.count() - 1, name, Qt.ItemDataRole.ToolTipRole)
        if names:
            self.chooser.setCurrentIndex(min(max(current, 0), len(names) - 1))
        self.chooser.blockSignals(False)
        self.chooser.setVisible(len(names) > 1)
        if not names:
            self.set_cine(None, None, [], "")

    def current_index(self) -> int:
        return max(self.chooser.currentIndex(), 0)

    def select(self, index: int) -> None:
        self.chooser.setCurrentIndex(index)

    def set_cine(self, image: np.ndarray | None, grid, lines: list, view: str, window_level=None) -> None:
        """Show a cine: `image` (T, Y, X) on the single-slice `grid`, its short-axis slice `lines`
        (`core.longaxis.IntersectionLine`), its `view` name; `window_level` its own default."""
        self.image, self.grid = image, grid
        if image is None or grid is None:
            self.pane.set_lines([])
            self.pane.show_array(None)
            self.title.setText("Long axis")
            self.pane.corner = {"tl": "", "tr": "", "bl": "", "br": ""}
            return
        sx, sy, _ = grid.spacing
        self.pane.set_geometry(image.shape[1:], (sx, sy))
        self.pane.set_lines([(ln.slice, ln.la_ij) for ln in lines])
        colour = view_colour(view)
        name = "" if self.chooser.isVisibleTo(self) else f": {VIEW_NAMES.get(view, view)}"
        self.title.setText(f'<span style="color:{colour.name()}">■</span> Long axis{name}')
        self.pane.corner["tl"] = f"{view}  {sx:.2f} × {sy:.2f} mm, {len(lines)} SA slice lines"
        if window_level is not None:
            self.default_window_level = window_level
            self.pane.set_window_level(*window_level)

    def set_frame(self, la_phase: int, labels: np.ndarray | None, note: str, phase_text: str) -> None:
        """The long-axis phase shown, the SR labels' cut on it (or None) and the note about them."""
        if self.image is None:
            return
        self.pane.show_array(self.image[la_phase], labels)  # one small image: cheaper than tracking changes
        self.pane.corner["bl"] = phase_text
        self.pane.corner["br"] = self.note = note
        self.pane.viewport().update()

    def set_current_slice(self, k: int | None, cursor_world: np.ndarray | None = None) -> None:
        """Highlight short-axis slice `k`'s line; mark the cursor's projection on the plane."""
        ij = None
        if cursor_world is not None and self.grid is not None:
            ij = self.grid.world_to_index(np.asarray(cursor_world, np.float64))[:2]
        self.pane.set_current_slice(k, ij)

    def set_overlay(self, visible: bool, opacity: float) -> None:
        self.pane.set_overlay(visible, opacity)

    def set_crosshair_visible(self, visible: bool) -> None:
        self.pane.set_crosshair_visible(visible)

    def reset_window_level(self) -> None:
        self.pane.set_window_level(*self.default_window_level)

    def fit(self) -> None:
        self.pane.fit()

    def set_note_tooltip(self, text: str) -> None:
        """More about the labels shown (why a cine was not used, its estimated offset), on the image."""
        self.pane.setToolTip(text)

    # --- internals --------------------------------------------------------------------------------------
    def _on_chosen(self, index: int) -> None:
        if index >= 0:
            self.cineChosen.emit(index)

    def _world(self, p: QPointF) -> np.ndarray:
        i, j = self.pane.to_pixel(p)
        return self.grid.index_to_world(np.array([i, j, 0.0]))
