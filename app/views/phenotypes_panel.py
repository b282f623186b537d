"""Clinical numbers from `Result.phenotypes` (computed by `core.phenotypes`, never here) and the
volume-time curve with ED/ES marked (QPainter; QtCharts is not part of PySide6-Essentials).

Values `core.phenotypes` flags are never shown as clean numbers: an implausible one is orange with "⚠"
and its reason as a tooltip and in the list under the table; one that cannot be computed reads "n/a"
(a single phase: no EF, SV or curve) with the reason."""

from __future__ import annotations

import math
from typing import Any

from PySide6.QtCore import QPointF, QRectF, Qt, Signal
from PySide6.QtGui import QBrush, QColor, QFont, QPainter, QPainterPath, QPen
from PySide6.QtWidgets import (
    QAbstractItemView,
    QHeaderView,
    QLabel,
    QSizePolicy,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from gemini_cmr.core import phenotypes as phenolib
from gemini_cmr.core.study import LABEL_COLOURS

FLAG_COLOUR = QColor(240, 176, 80)

ROWS = (
    ("LV EDV", "lv_edv_ml", "mL"),
    ("LV ESV", "lv_esv_ml", "mL"),
    ("LV SV", "lv_sv_ml", "mL"),
    ("LV EF", "lv_ef_pct", "%"),
    ("LV mass", "lv_mass_g", "g"),
    ("RV EDV", "rv_edv_ml", "mL"),
    ("RV ESV", "rv_esv_ml", "mL"),
    ("RV SV", "rv_sv_ml", "mL"),
    ("RV EF", "rv_ef_pct", "%"),
)
CURVES = (("lv_cavity", "LV"), ("rv_cavity", "RV"))


def _fmt(v: Any, digits: int = 1) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "–"
    return f"{float(v):.{digits}f}"


def _cell(ph: dict[str, Any], key: str, value: Any) -> tuple[str, str, str]:
    """(text, status, flag) of an SR value: "n/a" when not available, "⚠" after an implausible one."""
    status = (ph.get("value_status") or {}).get(key, phenolib.OK)
    flag = (ph.get("flags") or {}).get(key, "")
    if status == phenolib.NOT_AVAILABLE or value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a", phenolib.NOT_AVAILABLE, flag
    return _fmt(value) + (" ⚠" if status == phenolib.IMPLAUSIBLE else ""), status, flag


class VolumeCurve(QWidget):
    """LV and RV cavity volume over the cardiac cycle, ED/ES marked, current phase shown."""

    phaseClicked = Signal(int)

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setMinimumHeight(170)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.phases: list[int] = []
        self.curves: dict[str, list[float]] = {}
        self.ed = self.es = None
        self.current = 0
        self.note = ""  # shown instead of the curve when it is not available (one phase)

    def set_data(self, phases: list[int], curves: dict[str, list[float]], ed: int | None, es: int | None,
                 note: str = ""):
        self.phases, self.curves, self.ed, self.es = list(phases), dict(curves), ed, es
        self.note = note
        self.update()

    def set_current(self, phase: int) -> None:
        if phase != self.current:
            self.current = phase
            self.update()

    def _plot_rect(self) -> QRectF:
        return QRectF(self.rect()).adjusted(44, 26, -10, -30)

    def _x(self, phase: float, r: QRectF) -> float:
        lo, hi = min(self.phases), max(self.phases)
        return r.left() + (phase - lo) / max(hi - lo, 1) * r.width()

    def mousePressEvent(self, event):  # noqa: N802
        if not self.phases:
            return
        r = self._plot_rect()
        x = event.position().x()
        self.phaseClicked.emit(min(self.phases, key=lambda p: abs(self._x(p, r) - x)))

    def paintEvent(self, event):  # noqa: N802
        p = QPainter(self)
        p.setRenderHint(QPainter.RenderHint.Antialiasing)
        p.fillRect(self.rect(), QColor(27, 29, 33))
        r = self._plot_rect()
        font = QFont(self.font())
        font.setPointSizeF(8)
        p.setFont(font)
        if self.note:
            p.setPen(FLAG_COLOUR)
            p.drawText(self.rect().adjusted(8, 8, -8, -8), Qt.AlignmentFlag.AlignCenter | Qt.TextFlag.TextWordWrap,
                       self.note)
            return
        if not self.phases or not self.curves:
            p.setPen(QColor(140, 146, 155))
            p.drawText(self.rect(), Qt.AlignmentFlag.AlignCenter, "The volume-time curve appears here")
            return
        values = [v for name, _ in CURVES for v in self.curves.get(name, [])]
        vmax = max(values) if values else 1.0
        vmax = max(10.0, math.ceil(vmax / 20.0) * 20.0)
        grid_pen = QPen(QColor(55, 59, 66), 1)
        p.setPen(grid_pen)
        for i in range(5):
            y = r.bottom() - i / 4 * r.height()
            p.drawLine(QPointF(r.left(), y), QPointF(r.right(), y))
            p.setPen(QColor(140, 146, 155))
            p.drawText(QRectF(0, y - 8, r.left() - 6, 16), Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter,
                       f"{vmax * i / 4:.0f}")
            p.setPen(grid_pen)
        p.setPen(QColor(140, 146, 155))
        p.drawText(QRectF(r.left(), r.bottom() + 14, r.width(), 12), Qt.AlignmentFlag.AlignRight, "phase")
        p.drawText(QRectF(4, r.top() - 20, 60, 12), Qt.AlignmentFlag.AlignLeft, "mL")
        for phase, tag, colour in ((self.ed, "ED", QColor(230, 120, 60)), (self.es, "ES", QColor(200, 90, 220))):
            if phase is None or phase not in self.phases:
                continue
            x = self._x(phase, r)
            pen = QPen(colour, 1, Qt.PenStyle.DashLine)
            p.setPen(pen)
            p.drawLine(QPointF(x, r.top()), QPointF(x, r.bottom()))
            p.drawText(QRectF(x - 20, r.bottom() + 2, 40, 12), Qt.AlignmentFlag.AlignCenter, tag)
        x = self._x(min(max(self.current, min(self.phases)), max(self.phases)), r)
        p.setPen(QPen(QColor(255, 255, 255, 90), 2))
        p.drawLine(QPointF(x, r.top()), QPointF(x, r.bottom()))
        order = sorted(range(len(self.phases)), key=lambda i: self.phases[i])
        for name, _tag in CURVES:
            vals = self.curves.get(name)
            if not vals:
                continue
            label = {"lv_cavity": 1, "rv_cavity": 3}[name]
            colour = QColor(*LABEL_COLOURS[label])
            path = QPainterPath()
            for n, i in enumerate(order):
                pt = QPointF(self._x(self.phases[i], r), r.bottom() - vals[i] / vmax * r.height())
                path.moveTo(pt) if n == 0 else path.lineTo(pt)
            p.setPen(QPen(colour, 2))
            p.drawPath(path)
            p.setBrush(colour)
            for i in order:
                p.drawEllipse(QPointF(self._x(self.phases[i], r), r.bottom() - vals[i] / vmax * r.height()), 2.2, 2.2)
            p.setBrush(Qt.BrushStyle.NoBrush)
        # legend, above the plot so it never hides data
        lx = r.right() - 190
        y = r.top() - 14
        for n, (name, tag) in enumerate(CURVES):
            label = {"lv_cavity": 1, "rv_cavity": 3}[name]
            x = lx + n * 95
            p.setPen(QPen(QColor(*LABEL_COLOURS[label]), 2))
            p.drawLine(QPointF(x, y), QPointF(x + 16, y))
            p.setPen(QColor(216, 218, 223))
            p.drawText(QPointF(x + 20, y + 4), f"{tag} cavity")
        p.end()


class PhenotypesPanel(QWidget):
    phaseClicked = Signal(int)

    def __init__(self, parent=None):
        super().__init__(parent)
        self.headline = QLabel("–")
        self.headline.setObjectName("bigNumber")
        self.sub = QLabel("Run Super-resolve to measure volumes and function")
        self.sub.setObjectName("muted")
        self.sub.setWordWrap(True)
        self.table = QTableWidget(0, 4)
        self.table.setHorizontalHeaderLabels(["", "SR", "indexed", "LR labels"])
        self.table.verticalHeader().setVisible(False)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.NoSelection)
        self.table.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Stretch)
        self.table.verticalHeader().setDefaultSectionSize(20)
        self.curve = VolumeCurve()
        self.curve.phaseClicked.connect(self.phaseClicked)
        self.flags = QLabel("")
        self.flags.setWordWrap(True)
        self.flags.setStyleSheet(f"color: {FLAG_COLOUR.name()};")
        lay = QVBoxLayout(self)
        lay.setContentsMargins(6, 6, 6, 6)
        lay.addWidget(self.headline)
        lay.addWidget(self.sub)
        self.table.setVerticalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.table.setFixedHeight(24 + 20 * len(ROWS))
        self.curve_title = QLabel("Volume-time curve")
        self.curve_title.setObjectName("viewTitle")
        lay.addWidget(self.table)
        lay.addWidget(self.flags)
        lay.addWidget(self.curve_title)
        lay.addWidget(self.curve, 1)
        self.phenotypes: dict[str, Any] | None = None
        self.clear()

    def clear(self) -> None:
        self.phenotypes = None
        self.headline.setText("No measurements yet")
        self.sub.setText("Super-resolve the study to measure LV and RV volumes, ejection fraction and LV mass "
                         "from the SR segmentation.")
        self.headline.setStyleSheet("")
        self.table.setRowCount(0)
        self.table.setVisible(False)
        self.flags.setText("")
        self.flags.setVisible(False)
        self.curve_title.setVisible(False)
        self.curve.set_data([], {}, None, None)

    def set_phenotypes(self, ph: dict[str, Any] | None, quality: dict[str, Any] | None = None) -> None:
        """Show phenotypes; `quality`: the run's automatic quality checks (`core.qc`), whose failures are listed
        under the table with the implausible values."""
        if not ph:
            self.clear()
            return
        self.phenotypes = ph
        ef_text, ef_status, ef_flag = _cell(ph, "lv_ef_pct", ph.get("lv_ef_pct"))
        if ef_status == phenolib.NOT_AVAILABLE:
            self.headline.setText("LV EF not available")
        else:
            self.headline.setText(f"LV EF {ef_text.replace(' ⚠', '')} %"
                                  + ("  ⚠ implausible" if ef_status == phenolib.IMPLAUSIBLE else ""))
        self.headline.setStyleSheet(f"color: {FLAG_COLOUR.name()};" if ef_status != phenolib.OK else "")
        self.headline.setToolTip(ef_flag)
        ed, es = ph.get("ed_phase"), ph.get("es_phase")
        bsa = ph.get("bsa_m2")
        self.sub.setText(
            f"ED phase {ed + 1 if ed is not None else '–'} ({ph.get('ed_phase_source', '')}), "
            f"ES phase {es + 1 if es is not None else '–'} ({ph.get('es_phase_source', '')})"
            + (f", BSA {bsa:.2f} m²" if bsa else ", BSA unknown (no height/weight)")
            + (f"\nLV EF {ef_flag}" if ef_status == phenolib.NOT_AVAILABLE and ef_flag else "")
        )
        indexed = ph.get("indexed") or {}
        lr = ph.get("lr") or {}
        self.table.setRowCount(len(ROWS))
        for row, (name, key, unit) in enumerate(ROWS):
            idx_key = f"{key}_per_m2"
            text, status, flag = _cell(ph, key, ph.get(key))
            idx_text = _cell(ph, key, indexed.get(idx_key))[0] if idx_key in indexed else ""
            cells = [
                f"{name} ({unit})",
                text,
                idx_text,
                _fmt(lr.get(key)) if lr else "",
            ]
            for col, cell_text in enumerate(cells):
                item = QTableWidgetItem(cell_text)
                if col:
                    item.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
                if status != phenolib.OK and col in (0, 1, 2):
                    item.setToolTip(flag)
                    if col:
                        item.setForeground(QBrush(FLAG_COLOUR))
                self.table.setItem(row, col, item)
        self.table.setVisible(True)
        self.curve_title.setVisible(True)
        self.table.setColumnHidden(2, not indexed)
        self.table.setColumnHidden(3, not lr)
        messages = phenolib.flag_messages(ph) + [f"quality check: {m}" for m in (quality or {}).get("failed", [])]
        self.flags.setText("\n".join(f"⚠ {m}" for m in messages))
        self.flags.setVisible(bool(messages))
        curve_flag = (ph.get("flags") or {}).get("volume_curves_ml", "")
        note = f"Volume-time curve {curve_flag}" if curve_flag else ""
        self.curve.set_data(ph.get("phases", []), ph.get("volume_curves_ml", {}), ed, es, note)

    def set_phase(self, phase: int) -> None:
        self.curve.set_current(phase)
