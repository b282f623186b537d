"""2D views: `ImagePane` (QGraphicsView showing one grey image + label overlay, window/level, zoom/pan)
and `SliceView` (a short-axis slice of an LR or SR volume, positioned by world coordinates so LR and SR
views link voxel-exactly through `core.study.Grid`).

Mouse: left = crosshair, right-drag = window/level (double right-click resets), wheel = zoom,
middle-drag or Shift+left-drag = pan, Ctrl+left-drag = draw the oblique reformat line.
"""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import QPointF, QRectF, Qt, Signal
from PySide6.QtGui import QBrush, QColor, QFont, QImage, QPainter, QPen, QPixmap, QTransform
from PySide6.QtWidgets import QGraphicsScene, QGraphicsView

from gemini_cmr.app.theme import CROSSHAIR, label_lut
from gemini_cmr.core.study import Grid

_LUT = label_lut()


def grey_image(a: np.ndarray, window: float, level: float) -> QImage:
    """float (H, W) -> 8-bit grey QImage with the given window/level (a deep copy)."""
    w = max(float(window), 1e-6)
    lo = level - w / 2
    u8 = np.clip((a - lo) * (255.0 / w), 0, 255).astype(np.uint8)
    u8 = np.ascontiguousarray(u8)
    h, wd = u8.shape
    return QImage(u8.data, wd, h, wd, QImage.Format.Format_Grayscale8).copy()


def label_image(labels: np.ndarray) -> QImage:
    """uint8 (H, W) labels -> RGBA QImage with the label colours (background transparent)."""
    rgba = np.ascontiguousarray(_LUT[np.asarray(labels, dtype=np.uint8)])
    h, w = labels.shape
    return QImage(rgba.data, w, h, 4 * w, QImage.Format.Format_RGBA8888).copy()


class ImagePane(QGraphicsView):
    """A grey image with a label overlay in a scene measured in mm; emits interaction signals."""

    windowLevelDragged = Signal(float, float)  # window, level
    windowLevelReset = Signal()
    viewChanged = Signal(float, QPointF)  # zoom (scale), scene centre
    leftPressed = Signal(QPointF)  # scene position
    leftDragged = Signal(QPointF)
    lineDrawn = Signal(QPointF, QPointF, bool)  # scene p0, p1, final

    def __init__(self, title: str = "", parent=None):
        super().__init__(parent)
        self.setScene(QGraphicsScene(self))
        self.setBackgroundBrush(QBrush(QColor(8, 9, 11)))
        self.setFrameShape(QGraphicsView.Shape.NoFrame)
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.setVerticalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.setTransformationAnchor(QGraphicsView.ViewportAnchor.AnchorUnderMouse)
        self.setResizeAnchor(QGraphicsView.ViewportAnchor.AnchorViewCenter)
        self.setViewportUpdateMode(QGraphicsView.ViewportUpdateMode.FullViewportUpdate)
        self.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.setMinimumSize(160, 140)
        # Painted directly (no scene items): a step changes nothing in the scene, so it costs exactly one
        # viewport repaint, merged with the other views' into one window flush.
        self._pixmap = QPixmap()
        self._overlay = QPixmap()
        self._opacity = 0.45
        self._pix_tf = QTransform()
        self._line: tuple[QPointF, QPointF] | None = None
        self._line_pen = QPen(QColor(255, 90, 200), 2)
        self._line_pen.setCosmetic(True)
        self._cross_pen = QPen(CROSSHAIR, 1)
        self._cross_pen.setCosmetic(True)
        self._cross_pen.setStyle(Qt.PenStyle.DashLine)
        self._cross: QPointF | None = None
        self._cross_visible = True
        self.title = title
        self.corner = {"tl": title, "tr": "", "bl": "", "br": ""}
        self.placeholder = ""
        self._window, self._level = 1.0, 0.5
        self._array: np.ndarray | None = None
        self._labels: np.ndarray | None = None
        self._overlay_visible = True
        self._user_zoomed = False
        self.fit_target: QRectF | None = None
        self._drag: str | None = None
        self._drag_origin = QPointF()
        self._drag_wl = (1.0, 0.5)
        self._line_start: QPointF | None = None
        self.line_mode = False

    # --- content --------------------------------------------------------------------------------
    def set_pixel_transform(self, transform: QTransform) -> None:
        """Where pixel (column, row) edges lie in the scene (mm)."""
        self._pix_tf = QTransform(
            *(0.0 if abs(v) < 1e-9 else v for v in (transform.m11(), transform.m12(), transform.m21(),
                                                    transform.m22(), transform.dx(), transform.dy()))
        )  # exact zeros keep Qt on its fast scaled-blit path
        self.viewport().update()

    def set_scene_extent(self, rect: QRectF) -> None:
        self.scene().setSceneRect(rect)
        if not self._user_zoomed:
            self.fit()

    def show_array(self, array: np.ndarray | None, labels: np.ndarray | None = None) -> None:
        self._array = array
        self._labels = labels
        self._render_image()
        self._render_overlay()

    def has_image(self) -> bool:
        return self._array is not None

    def _render_image(self) -> None:
        if self._array is None:
            self._pixmap = QPixmap()
        else:
            self._pixmap = QPixmap.fromImage(grey_image(self._array, self._window, self._level))
        self.viewport().update()

    def _render_overlay(self) -> None:
        if self._labels is None or not self._overlay_visible:
            self._overlay = QPixmap()
        else:
            self._overlay = QPixmap.fromImage(label_image(self._labels))
        self.viewport().update()

    def set_window_level(self, window: float, level: float) -> None:
        if (window, level) == (self._window, self._level):
            return
        self._window, self._level = float(window), float(level)
        self._render_image()

    def window_level(self) -> tuple[float, float]:
        return self._window, self._level

    def set_overlay(self, visible: bool, opacity: float) -> None:
        changed = visible != self._overlay_visible
        self._overlay_visible = bool(visible)
        self._opacity = float(opacity)
        self.viewport().update()
        if changed:
            self._render_overlay()

    def set_line(self, p0: QPointF | None, p1: QPointF | None) -> None:
        self._line = None if p0 is None or p1 is None else (QPointF(p0), QPointF(p1))
        self.viewport().update()

    def drawBackground(self, painter: QPainter, rect):  # noqa: N802
        painter.fillRect(rect, self.backgroundBrush())
        if self._pixmap.isNull():
            return
        painter.save()
        painter.setTransform(self._pix_tf, True)
        painter.drawPixmap(0, 0, self._pixmap)
        if not self._overlay.isNull() and self._opacity > 0:
            painter.setOpacity(self._opacity)
            painter.drawPixmap(0, 0, self._overlay)
        painter.restore()

    def set_cross(self, p: QPointF | None) -> None:
        """The crosshair centre in scene coordinates (None hides it)."""
        self._cross = None if p is None else QPointF(p)
        self.viewport().update()

    def set_crosshair_visible(self, visible: bool) -> None:
        self._cross_visible = bool(visible)
        self.viewport().update()

    def draw_scene_lines(self, painter: QPainter) -> None:
        """Crosshair and plane line in scene coordinates, drawn over the image."""
        if self._cross is not None and self._cross_visible:
            r = self.scene().sceneRect()
            p = self._cross
            painter.setPen(self._cross_pen)
            painter.drawLine(QPointF(r.left(), p.y()), QPointF(r.right(), p.y()))
            painter.drawLine(QPointF(p.x(), r.top()), QPointF(p.x(), r.bottom()))
        if self._line is not None:
            painter.setPen(self._line_pen)
            painter.drawLine(*self._line)

    # --- view (zoom/pan) ------------------------------------------------------------------------
    def fit(self) -> None:
        """Fit the scene, or `fit_target` (a region of interest in scene coordinates) when set."""
        rect = self.scene().sceneRect()
        if self.fit_target is not None and not self.fit_target.isEmpty():
            rect = self.fit_target
        if rect.isEmpty():
            return
        self.fitInView(rect, Qt.AspectRatioMode.KeepAspectRatio)
        self._user_zoomed = False

    def zoom(self) -> float:
        return self.transform().m11()

    def apply_view(self, zoom: float, centre: QPointF) -> None:
        """Follow a linked view's zoom and centre."""
        self.setTransform(QTransform.fromScale(zoom, zoom))
        self.centerOn(centre)
        self._user_zoomed = True

    def _emit_view(self) -> None:
        self._user_zoomed = True
        self.viewChanged.emit(self.zoom(), self.mapToScene(self.viewport().rect().center()))

    def resizeEvent(self, event):  # noqa: N802
        super().resizeEvent(event)
        if not self._user_zoomed:
            self.fit()

    def wheelEvent(self, event):  # noqa: N802
        factor = 1.15 ** (event.angleDelta().y() / 120.0)
        z = self.zoom() * factor
        if 0.05 < z < 200:
            self.scale(factor, factor)
            self._emit_view()

    # --- mouse ----------------------------------------------------------------------------------
    def mousePressEvent(self, event):  # noqa: N802
        pos = event.position()
        mods = event.modifiers()
        self._drag_origin = pos
        if event.button() == Qt.MouseButton.RightButton:
            self._drag = "wl"
            self._drag_wl = (self._window, self._level)
        elif event.button() == Qt.MouseButton.MiddleButton or (
            event.button() == Qt.MouseButton.LeftButton and mods & Qt.KeyboardModifier.ShiftModifier
        ):
            self._drag = "pan"
        elif event.button() == Qt.MouseButton.LeftButton and (
            self.line_mode or mods & Qt.KeyboardModifier.ControlModifier
        ):
            self._drag = "line"
            self._line_start = self.mapToScene(pos.toPoint())
        elif event.button() == Qt.MouseButton.LeftButton:
            self._drag = "cursor"
            self.leftPressed.emit(self.mapToScene(pos.toPoint()))
        event.accept()

    def mouseMoveEvent(self, event):  # noqa: N802
        pos = event.position()
        if self._drag == "wl":
            d = pos - self._drag_origin
            w0, l0 = self._drag_wl
            scale = max(w0, 1e-3) / 200.0
            window = max(w0 + d.x() * scale, 1e-3)
            level = l0 - d.y() * scale
            self.windowLevelDragged.emit(window, level)
        elif self._drag == "pan":
            d = pos - self._drag_origin
            self._drag_origin = pos
            centre = self.mapToScene(self.viewport().rect().center())
            z = self.zoom()
            self.centerOn(centre - QPointF(d.x() / z, d.y() / z))
            self._emit_view()
        elif self._drag == "line" and self._line_start is not None:
            self.lineDrawn.emit(self._line_start, self.mapToScene(pos.toPoint()), False)
        elif self._drag == "cursor":
            self.leftDragged.emit(self.mapToScene(pos.toPoint()))
        event.accept()

    def mouseReleaseEvent(self, event):  # noqa: N802
        if self._drag == "line" and self._line_start is not None:
            end = self.mapToScene(event.position().toPoint())
            if (end - self._line_start).manhattanLength() > 2:
                self.lineDrawn.emit(self._line_start, end, True)
        self._drag = None
        self._line_start = None
        event.accept()

    def mouseDoubleClickEvent(self, event):  # noqa: N802
        if event.button() == Qt.MouseButton.RightButton:
            self.windowLevelReset.emit()
        elif event.button() == Qt.MouseButton.MiddleButton:
            self.fit()
        event.accept()

    # --- annotations ----------------------------------------------------------------------------
    def drawForeground(self, painter: QPainter, rect):  # noqa: N802
        painter.save()
        if self._array is not None:
            self.draw_scene_lines(painter)
        painter.resetTransform()
        vp = self.viewport().rect()
        font = QFont(self.font())
        font.setPointSizeF(9)
        painter.setFont(font)
        pad = 6
        if self._array is None and self.placeholder:
            painter.setPen(QColor(140, 146, 155))
            painter.drawText(vp, Qt.AlignmentFlag.AlignCenter | Qt.TextFlag.TextWordWrap, self.placeholder)
        for key, flags in (
            ("tl", Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignTop),
            ("tr", Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignTop),
            ("bl", Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignBottom),
            ("br", Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignBottom),
        ):
            text = self.corner.get(key, "")
            if not text:
                continue
            box = vp.adjusted(pad, pad, -pad, -pad)
            painter.setPen(QColor(0, 0, 0, 200))
            painter.drawText(box.translated(1, 1), int(flags), text)
            painter.setPen(QColor(150, 200, 255) if key == "tl" else QColor(225, 228, 232))
            painter.drawText(box, int(flags), text)
        painter.restore()


class SliceView(ImagePane):
    """A short-axis slice of a (T, Z, Y, X) volume on `grid`, in the scene frame of a reference grid.

    The scene is the reference (LR) grid's in-plane index space scaled to mm, so views of different
    grids with the same orientation (LR and its SR grid) overlay exactly; everything links by world
    position: `set_position(world, phase)` picks the slice containing `world`.
    """

    cursorMoved = Signal(object)  # world point (3,)
    obliqueLineChanged = Signal(object, object, bool)  # world p0, p1, final

    def __init__(self, title: str = "", parent=None):
        super().__init__(title, parent)
        self.ref: Grid | None = None
        self.grid: Grid | None = None
        self.image: np.ndarray | None = None
        self.labels: np.ndarray | None = None
        self.phase_index: dict[int, int] = {}
        self.slice_index = 0
        self.phase = 0
        self._cursor = np.zeros(3)
        self._shown: tuple | None = None
        self.leftPressed.connect(self._on_left)
        self.leftDragged.connect(self._on_left)
        self.lineDrawn.connect(self._on_line)
        self._oblique: tuple[np.ndarray, np.ndarray] | None = None
        self.la_traces: list[tuple[str, QColor, np.ndarray, np.ndarray]] = []  # (name, colour, world p0, p1)

    # --- geometry via core.study.Grid -----------------------------------------------------------
    def set_reference(self, ref: Grid) -> None:
        self.ref = ref
        sx, sy, _ = ref.spacing
        nz, ny, nx = ref.shape
        self.set_scene_extent(QRectF(-0.5 * sx, -0.5 * sy, nx * sx, ny * sy))
        self._update_crosshair()

    def world_to_scene(self, world: np.ndarray) -> QPointF:
        i, j, _ = self.ref.world_to_index(world)
        sx, sy, _ = self.ref.spacing
        return QPointF(i * sx, j * sy)

    def scene_to_world(self, p: QPointF) -> np.ndarray:
        sx, sy, _ = self.ref.spacing
        k = self.ref.world_to_index(self._cursor)[2]
        return self.ref.index_to_world(np.array([p.x() / sx, p.y() / sy, k]))

    def set_volume(self, image: np.ndarray | None, grid: Grid | None, labels: np.ndarray | None = None,
                   phases: list[int] | None = None) -> None:
        """`image`/`labels` (T', Z, Y, X) on `grid`; `phases[n]` is the cine phase of entry n."""
        self.image, self.grid, self.labels = image, grid, labels
        n = 0 if image is None else image.shape[0]
        self.phase_index = {int(t): i for i, t in enumerate(phases if phases is not None else range(n))}
        self._shown = None
        self.corner["tl"] = self.title
        if grid is not None:
            sx, sy, sz = grid.spacing
            self.corner["tl"] = f"{self.title}   {sx:.2f} × {sy:.2f} × {sz:.2f} mm"
        if grid is not None and self.ref is not None:
            self.set_pixel_transform(self._pixel_transform(grid))
        self._refresh()

    def set_labels(self, labels: np.ndarray | None) -> None:
        self.labels = labels
        self._shown = None
        self._refresh()

    def _pixel_transform(self, grid: Grid) -> QTransform:
        k = 0.0
        w = grid.index_to_world(np.array([[0.0, 0.0, k], [1.0, 0.0, k], [0.0, 1.0, k]]))
        p0, pi, pj = (self.world_to_scene(x) for x in w)
        ai, aj = pi - p0, pj - p0
        origin = p0 - (ai + aj) * 0.5  # pixel (0, 0)'s outer corner
        return QTransform(ai.x(), ai.y(), aj.x(), aj.y(), origin.x(), origin.y())

    def set_position(self, world: np.ndarray, phase: int) -> None:
        self._cursor = np.asarray(world, dtype=np.float64)
        self.phase = int(phase)
        self._refresh()
        self._update_crosshair()

    def _refresh(self) -> None:
        if self.image is None or self.grid is None or self.phase not in self.phase_index:
            if self._shown is not None or self.has_image():
                self.show_array(None)
            self._shown = None
            self.corner["bl"] = ""
            self.viewport().update()
            return
        k = int(np.clip(np.floor(self.grid.world_to_index(self._cursor)[2] + 0.5), 0, self.grid.shape[0] - 1))
        ti = self.phase_index[self.phase]
        key = (ti, k, id(self.image), id(self.labels))
        self.slice_index = k
        if key != self._shown:
            labels = None if self.labels is None else self.labels[ti, k]
            self.show_array(self.image[ti, k], labels)
            self._shown = key
        self.corner["bl"] = f"slice {k + 1}/{self.grid.shape[0]}   phase {self.phase + 1}"
        self.viewport().update()

    def _update_crosshair(self) -> None:
        if self.ref is None:
            return
        self.set_cross(self.world_to_scene(self._cursor))
        if self._oblique is not None:
            self.set_line(self.world_to_scene(self._oblique[0]), self.world_to_scene(self._oblique[1]))

    def set_oblique_line(self, p0: np.ndarray | None, p1: np.ndarray | None) -> None:
        self._oblique = None if p0 is None else (np.asarray(p0), np.asarray(p1))
        if self._oblique is None or self.ref is None:
            self.set_line(None, None)
        else:
            self.set_line(self.world_to_scene(self._oblique[0]), self.world_to_scene(self._oblique[1]))

    def set_la_traces(self, traces: list[tuple[str, QColor, np.ndarray, np.ndarray]]) -> None:
        """The long-axis planes' traces on the shown slice: (name, colour, world p0, world p1) each, drawn
        as a thin line labelled with its name."""
        self.la_traces = list(traces)
        self.viewport().update()

    def draw_scene_lines(self, painter: QPainter) -> None:
        super().draw_scene_lines(painter)
        if not self.la_traces or self.ref is None:
            return
        ends = []
        for name, colour, p0, p1 in self.la_traces:
            pen = QPen(colour, 1)
            pen.setCosmetic(True)
            painter.setPen(pen)
            a, b = self.world_to_scene(p0), self.world_to_scene(p1)
            painter.drawLine(a, b)
            ends.append((name, colour, a, b))
        painter.save()
        painter.resetTransform()
        font = QFont(self.font())
        font.setPointSizeF(8.5)
        font.setBold(True)
        painter.setFont(font)
        vp = QRectF(self.viewport().rect().adjusted(6, 20, -36, -30))  # clear of the corner texts
        for name, colour, a, b in ends:
            pa, pb = QPointF(self.mapFromScene(a)), QPointF(self.mapFromScene(b))
            # the label beside the last on-screen point of the line, going from b towards a
            p = next((pb + (pa - pb) * t for t in np.linspace(0.0, 1.0, 41) if vp.contains(pb + (pa - pb) * t)), None)
            if p is None:
                continue
            painter.setPen(QColor(0, 0, 0, 200))
            painter.drawText(p + QPointF(5, 13), name)
            painter.setPen(colour)
            painter.drawText(p + QPointF(4, 12), name)
        painter.restore()

    def _on_left(self, p: QPointF) -> None:
        if self.ref is not None:
            self.cursorMoved.emit(self.scene_to_world(p))

    def _on_line(self, p0: QPointF, p1: QPointF, final: bool) -> None:
        if self.ref is not None:
            self.obliqueLineChanged.emit(self.scene_to_world(p0), self.scene_to_world(p1), final)
