"""What the main window shows, kept apart from Qt: the study and its super-resolution result, the cursor
(world mm) and the cardiac phase, the long axis, the default window/level and the engine choice (model,
adapter, device), with the logic that needs no widget: which slice the cursor is on, phase wrap-around,
ED/ES, the oblique plane's trace, the texts of the slider labels, the status bar and the study panel.

`MainWindow` owns one `ViewerState`, writes it from its slots and pushes it to the views.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from gemini_cmr.core.reformat import LongAxis, Plane, long_axis, plane_slice_line
from gemini_cmr.core.study import Grid, Study

if TYPE_CHECKING:
    from gemini_cmr.core.engine import Result

DEVICES = ("auto", "cpu", "cuda")

# (key, title) of the study panel's rows, in order
STUDY_FIELDS = (
    ("name", "Study"), ("format", "Format"), ("patient", "Patient"), ("vendor", "Vendor"), ("series", "Series"),
    ("size", "Matrix"), ("spacing", "Spacing"), ("phases", "Phases"), ("edes", "ED / ES"), ("labels", "Labels"),
    ("sr", "SR matrix"), ("sr_spacing", "SR spacing"), ("model", "Model"),
)
NO_VALUE = "–"


def short_id(text: str, n: int = 16) -> str:
    """`text` cut to `n` characters with an ellipsis (model and adapter ids in narrow places)."""
    text = str(text)
    return text if len(text) <= n else text[:n] + "…"


def default_window_level(image: np.ndarray) -> tuple[float, float]:
    """(window, level) spanning the 0.5-99.5 percentiles of a sample of `image`'s voxels."""
    sample = image[:: max(1, image.shape[0] // 4)].ravel()[::7]
    lo, hi = (float(v) for v in np.percentile(sample, [0.5, 99.5]))
    if hi <= lo:
        hi = lo + 1.0
    return hi - lo, (hi + lo) / 2


def long_axis_or_none(labels: np.ndarray, grid: Grid) -> LongAxis | None:
    """The LV long axis of a label volume, or None when the labels do not define one."""
    try:
        return long_axis(labels, grid)
    except ValueError:
        return None


@dataclass
class EngineChoice:
    """The model, adapter and device Super-resolve uses: None = the automatic model / no adapter."""

    model: str | None = None
    adapter: str | None = None
    device: str = "auto"

    def key(self) -> tuple[str | None, str | None, str]:
        return self.model, self.adapter, self.device


@dataclass
class ViewerState:
    study: Study | None = None
    result: Any = None  # the `core.engine.Result` for `study`, or None (LR only)
    axis: LongAxis | None = None  # the LV long axis (from the labels), for the long-axis planes and 3D
    phase: int = 0
    cursor: np.ndarray = field(default_factory=lambda: np.zeros(3))  # world (RAS) mm
    window_level_default: tuple[float, float] = (1.0, 0.5)
    engine: EngineChoice = field(default_factory=EngineChoice)

    # --- study and result ---------------------------------------------------------------------------------
    def show_study(self, study: Study) -> None:
        """A newly loaded study, LR only: any result is dropped; the cursor at the volume's centre, the
        phase at ED when known, the long axis from the labels when there are any."""
        self.study = study
        self.result = None
        grid = study.grid
        self.cursor = grid.centre()
        ed = study.meta.ed_phase
        self.phase = int(ed) if ed is not None and 0 <= ed < study.n_phases else 0
        self.axis = None
        if study.has_labels:
            ed = study.meta.ed_phase if study.meta.ed_phase in study.labelled_phases else study.labelled_phases[0]
            self.axis = long_axis_or_none(study.labels[ed], grid)
        self.window_level_default = default_window_level(study.image)

    def show_result(self, result: Result) -> list[int]:
        """The study's super-resolution result; the long axis is re-estimated from its SR labels (at ED
        when that phase was super-resolved), the previous one kept when that fails. Returns the result's
        phases."""
        self.result = result
        phases = [int(p) for p in result.phases]
        ed = int(result.ed_phase)
        axis_phase = ed if ed in phases else phases[0]
        self.axis = long_axis_or_none(result.sr_labels[phases.index(axis_phase)], result.sr_grid) or self.axis
        return phases

    def full_phase_labels(self, labels: np.ndarray, phases: list[int]) -> np.ndarray:
        """Labels for the result's `phases` -> one (T, Z, Y, X) array aligned with the study's phases
        (zero where a phase was not super-resolved)."""
        n = self.study.n_phases
        if labels.shape[0] == n and phases == list(range(n)):
            return labels
        full = np.zeros((n, *labels.shape[1:]), dtype=np.uint8)
        for i, p in enumerate(phases):
            full[p] = labels[i]
        return full

    # --- slices and cursor --------------------------------------------------------------------------------
    @property
    def n_phases(self) -> int:
        return 0 if self.study is None else self.study.n_phases

    def fine_grid(self) -> Grid | None:
        """The finest grid shown (SR when available): the slice slider steps through its slices."""
        if self.result is not None:
            return self.result.sr_grid
        return None if self.study is None else self.study.grid

    def slice_of(self, world: np.ndarray | None = None) -> int:
        """The fine grid's slice nearest to `world` (default: the cursor), clipped to the grid."""
        g = self.fine_grid()
        world = self.cursor if world is None else world
        return int(np.clip(np.floor(g.world_to_index(world)[2] + 0.5), 0, g.shape[0] - 1))

    def set_cursor(self, world: np.ndarray) -> None:
        self.cursor = np.asarray(world, dtype=np.float64)

    def move_to_slice(self, k: int) -> bool:
        """Move the cursor to slice `k` of the fine grid, keeping its in-plane position; False without a study."""
        g = self.fine_grid()
        if g is None:
            return False
        i, j, _ = g.world_to_index(self.cursor)
        self.cursor = g.index_to_world(np.array([i, j, float(k)]))
        return True

    def plane_trace(self, plane: Plane | None) -> tuple[np.ndarray, np.ndarray] | None:
        """Where `plane` cuts the short-axis (LR) slice through the cursor: two world points, or None."""
        if plane is None or self.study is None:
            return None
        g = self.study.grid
        return plane_slice_line(plane, g, float(g.world_to_index(self.cursor)[2]))

    # --- phases -------------------------------------------------------------------------------------------
    def set_phase(self, phase: int) -> bool:
        """Go to `phase`, wrapped around the cine; False (nothing changes) without a study."""
        if self.study is None:
            return False
        self.phase = int(phase) % self.study.n_phases
        return True

    def next_phase(self) -> int:
        return (self.phase + 1) % max(self.n_phases, 1)

    def previous_phase(self) -> int:
        return (self.phase - 1) % max(self.n_phases, 1)

    @property
    def ed_phase(self) -> int | None:
        """The end-diastolic phase: the result's when there is one, else the study's (None: unknown)."""
        if self.result is not None:
            return self.result.ed_phase
        return None if self.study is None else self.study.meta.ed_phase

    @property
    def es_phase(self) -> int | None:
        """The end-systolic phase: the result's when there is one, else the study's (None: unknown)."""
        if self.result is not None:
            return self.result.es_phase
        return None if self.study is None else self.study.meta.es_phase

    def ed_es(self, which: str) -> int | None:
        """`ed_phase` for "ed", `es_phase` for "es"."""
        return {"ed": self.ed_phase, "es": self.es_phase}[which]

    def can_play(self) -> bool:
        return self.study is not None and self.study.n_phases > 1

    # --- texts ----------------------------------------------------------------------------------------------
    def slice_text(self) -> str:
        g = self.fine_grid()
        return f"slice {self.slice_of() + 1}/{g.shape[0]}" + (" (SR)" if self.result is not None else "")

    def phase_text(self) -> str:
        """"phase 3/20  120 ms  ED": the phase, its time when known, and ED/ES."""
        tag = ""
        if self.phase == self.ed_phase:
            tag = "  ED"
        elif self.phase == self.es_phase:
            tag = "  ES"
        times = self.study.phase_times_ms
        t_ms = f"  {times[self.phase]:.0f} ms" if times is not None and self.phase < len(times) else ""
        return f"phase {self.phase + 1}/{self.study.n_phases}{t_ms}{tag}"

    def position_text(self) -> str:
        x, y, z = self.cursor
        return f"RAS ({x:.1f}, {y:.1f}, {z:.1f}) mm"

    def opened_text(self) -> str:
        s = self.study
        return (f"Opened {s.name}: {s.n_phases} phases × {s.n_slices} slices"
                + (f" — {len(s.meta.warnings)} warning(s)" if s.meta.warnings else ""))

    def result_text(self) -> str:
        r = self.result
        total = r.timings.get("total") or sum(r.timings.values())
        return (f"Super-resolved {len(r.phases)} phase(s) in {total:.1f} s with model {short_id(r.model_id)} "
                f"on {r.device}"
                + (f" ({r.model_choice})" if r.model_choice else "")
                + "".join(f" — {w}" for w in r.warnings))

    def study_panel(self) -> dict[str, str]:
        """The study panel's values by `STUDY_FIELDS` key ("–" where unknown or not computed)."""
        s = self.study
        if s is None:
            return {key: NO_VALUE for key, _ in STUDY_FIELDS}
        m = s.meta
        sx, sy, sz = s.spacing
        thick = f", thickness {m.slice_thickness_mm:.1f}" if m.slice_thickness_mm else ""
        times = s.phase_times_ms
        rr = f" over {times[-1]:.0f} ms" if times is not None and len(times) > 1 else ""
        ed = NO_VALUE if m.ed_phase is None else str(m.ed_phase + 1)
        es = NO_VALUE if m.es_phase is None else str(m.es_phase + 1)
        panel = {
            "name": s.name,
            "format": m.format or NO_VALUE,
            "patient": m.patient_id or NO_VALUE,
            "vendor": m.vendor or NO_VALUE,
            "series": m.series_description or NO_VALUE,
            "size": f"{s.image.shape[3]} × {s.image.shape[2]} × {s.n_slices} slices",
            "spacing": f"{sx:.2f} × {sy:.2f} × {sz:.2f} mm{thick}",
            "phases": f"{s.n_phases}{rr}",
            "edes": f"{ed} / {es}",
            "labels": f"phases {', '.join(str(p + 1) for p in s.labelled_phases)}" if s.has_labels else "none",
            "sr": NO_VALUE, "sr_spacing": NO_VALUE, "model": NO_VALUE,
        }
        if self.result is not None:
            g = self.result.sr_grid
            gx, gy, gz = g.spacing
            adapter = self.result.adapter_id
            panel["sr"] = f"{g.shape[2]} × {g.shape[1]} × {g.shape[0]} slices"
            panel["sr_spacing"] = f"{gx:.2f} × {gy:.2f} × {gz:.2f} mm"
            panel["model"] = short_id(self.result.model_id) + (f" + {short_id(adapter)}" if adapter else "")
        return panel

    def model_tooltip(self) -> str:
        """The full model and adapter ids of the result, and why that model ('' without a result)."""
        r = self.result
        if r is None:
            return ""
        return (f"model {r.model_id}" + (f"\nadapter {r.adapter_id}" if r.adapter_id else "")
                + (f"\n{r.model_choice}" if r.model_choice else ""))

    def motion_text(self) -> str:
        """The result's slice misalignment correction in one short text (empty without a result)."""
        motion = getattr(self.result, "motion", None)
        if self.result is None:
            return ""
        if motion is None:
            return "Slice motion correction: off"
        if not motion.applied:
            return f"Slice motion correction: not applied ({motion.note})"
        shifts = ", ".join(f"{k + 1}: {np.hypot(*s):.1f}" for k, s in enumerate(motion.shifts_mm) if motion.estimated[k])
        return f"Slice shifts (mm, by slice): {shifts}; largest {float(motion.magnitude_mm.max()):.1f} mm"

    def corrected_input(self) -> tuple[np.ndarray, np.ndarray | None] | None:
        """(image, labels) of the input stack corrected for slice motion (the labels shown on the corrected
        slices), or None when the result applied no correction."""
        motion = getattr(self.result, "motion", None)
        if self.study is None or motion is None or not motion.applied:
            return None
        from gemini_cmr.core.motion import apply_shifts, shift_labels_to_acquired

        grid = self.study.grid
        labels = self.full_phase_labels(self.result.lr_labels, [int(p) for p in self.result.phases])
        return (apply_shifts(self.study.image, grid, motion.shifts_mm),
                shift_labels_to_acquired(labels, grid, -motion.shifts_mm))

    def warnings_text(self) -> str:
        """The study's warnings, then the result's, one per line; the phenotype flags (listed in full in the
        phenotype panel) as one line saying how many values are flagged."""
        if self.study is None:
            return ""
        lines = list(self.study.meta.warnings)
        r = self.result
        if r is not None:
            from gemini_cmr.core.phenotypes import flag_messages

            flags = set(flag_messages(r.phenotypes or {}))
            lines += [w for w in r.warnings if w not in flags]
            n = len((r.phenotypes or {}).get("flags") or {})
            if n:
                what = "implausible or not available" if not r.phenotypes.get("plausible", True) else "not available"
                lines.append(f"{n} phenotype value(s) {what}: see the Phenotypes panel")
        return "\n".join(f"⚠ {w}" for w in lines)
