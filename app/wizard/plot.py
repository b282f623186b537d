"""A small line plot drawn with QPainter (QtCharts is not part of PySide6-Essentials): several named series
against a shared x axis (training step), auto-ranged, with a legend."""

from __future__ import annotations

import math

from PySide6.QtCore import QPointF, QRectF, Qt
from PySide6.QtGui import QColor, QFont, QPainter, QPainterPath, QPen
from PySide6.QtWidgets import QSizePolicy, QWidget

PALETTE = ("#3d8ee6", "#f0b050", "#28cd50", "#e0607e", "#b58cf0", "#4fd1c5", "#fad71e")


def _nice(v: float) -> str:
    a = abs(v)
    if a == 0:
        return "0"
    if a >= 1000 or a < 0.01:
        return f"{v:.1e}"
    if a >= 100:
        return f"{v:.0f}"
    if a >= 10:
        return f"{v:.1f}"
    return f"{v:.3f}".rstrip("0").rstrip(".") if a < 1 else f"{v:.2f}"


class CurvePlot(QWidget):
    """`add_point(series, x, y)`; series keep the order they were first added in (colours follow it)."""

    def __init__(self, title: str = "", x_label: str = "step", y_range: tuple[float, float] | None = None,
                 parent=None):
        super().__init__(parent)
        self.title = title
        self.x_label = x_label
        self.y_range = y_range  # fixed range (e.g. 0..1 for Dice), else automatic
        self.series: dict[str, list[tuple[float, float]]] = {}
        self.colours: dict[str, QColor] = {}
        self.markers: set[str] = set()  # series drawn with dots (sparse points, e.g. validation)
        self.setMinimumSize(260, 170)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)

    def clear(self) -> None:
        self.series.clear()
        self.update()

    def set_style(self, name: str, colour: str | None = None, markers: bool = False) -> None:
        if colour:
            self.colours[name] = QColor(colour)
        if markers:
            self.markers.add(name)

    def add_point(self, name: str, x: float, y: float) -> None:
        if y is None or not math.isfinite(float(y)):
            return
        if name not in self.series:
            self.series[name] = []
            self.colours.setdefault(name, QColor(PALETTE[(len(self.series) - 1) % len(PALETTE)]))
        self.series[name].append((float(x), float(y)))
        self.update()

    def _ranges(self) -> tuple[float, float, float, float] | None:
        pts = [p for s in self.series.values() for p in s]
        if not pts:
            return None
        xs = [p[0] for p in pts]
        x0, x1 = min(0.0, min(xs)), max(xs)
        if x1 <= x0:
            x1 = x0 + 1
        if self.y_range is not None:
            y0, y1 = self.y_range
        else:
            ys = [p[1] for p in pts]
            y0, y1 = min(ys), max(ys)
            pad = (y1 - y0) * 0.08 or abs(y1) * 0.1 or 1.0
            y0, y1 = y0 - pad, y1 + pad
            if min(ys) >= 0 and y0 < 0:
                y0 = 0.0
        return x0, x1, y0, y1

    def paintEvent(self, event):  # noqa: N802
        p = QPainter(self)
        p.setRenderHint(QPainter.RenderHint.Antialiasing)
        p.fillRect(self.rect(), QColor("#1b1d21"))
        small = QFont(self.font())
        small.setPointSizeF(max(7.0, small.pointSizeF() * 0.85))
        p.setFont(small)
        fm = p.fontMetrics()
        r = QRectF(self.rect()).adjusted(52, 24, -12, -26)
        p.setPen(QColor("#9fb4cc"))
        title = f"{self.title}  (x: {self.x_label})" if self.x_label else self.title
        p.drawText(QRectF(8, 3, self.width() - 16, 18), Qt.AlignmentFlag.AlignLeft, title)
        p.setPen(QPen(QColor("#3a3e46"), 1))
        p.drawRect(r)
        rng = self._ranges()
        if rng is None:
            p.setPen(QColor("#8a93a0"))
            p.drawText(r, Qt.AlignmentFlag.AlignCenter, "waiting for data…")
            p.end()
            return
        x0, x1, y0, y1 = rng

        def to_px(x: float, y: float) -> QPointF:
            return QPointF(r.left() + (x - x0) / (x1 - x0) * r.width(),
                           r.bottom() - (min(max(y, y0), y1) - y0) / (y1 - y0) * r.height())

        # grid and tick labels
        for i in range(5):
            y = y0 + (y1 - y0) * i / 4
            py = to_px(x0, y).y()
            p.setPen(QPen(QColor("#2c2f36"), 1))
            p.drawLine(QPointF(r.left() + 1, py), QPointF(r.right() - 1, py))
            p.setPen(QColor("#8a93a0"))
            p.drawText(QRectF(0, py - 8, r.left() - 5, 16), Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter,
                       _nice(y))
        for i in range(5):
            x = x0 + (x1 - x0) * i / 4
            px = to_px(x, y0).x()
            p.setPen(QColor("#8a93a0"))
            text = f"{x:.0f}" if (x1 - x0) >= 8 else f"{x:.1f}"
            p.drawText(QRectF(px - 30, r.bottom() + 3, 60, 16), Qt.AlignmentFlag.AlignHCenter, text)

        # series
        for name, pts in self.series.items():
            colour = self.colours[name]
            p.setPen(QPen(colour, 1.6))
            if len(pts) > 1:
                path = QPainterPath(to_px(*pts[0]))
                for pt in pts[1:]:
                    path.lineTo(to_px(*pt))
                p.drawPath(path)
            if name in self.markers or len(pts) == 1:
                p.setBrush(colour)
                for pt in pts:
                    p.drawEllipse(to_px(*pt), 2.8, 2.8)
                p.setBrush(Qt.BrushStyle.NoBrush)

        # legend (top right, inside the frame)
        lx = r.right() - 8
        y = r.top() + 6
        for name in reversed(list(self.series)):
            w = fm.horizontalAdvance(name)
            lx -= w + 26
        lx = max(r.left() + 6, lx)
        for name in self.series:
            colour = self.colours[name]
            p.setPen(QPen(colour, 2.5))
            p.drawLine(QPointF(lx, y + 7), QPointF(lx + 12, y + 7))
            p.setPen(QColor("#d8dadf"))
            p.drawText(QPointF(lx + 16, y + 11), name)
            lx += fm.horizontalAdvance(name) + 26
        p.end()
