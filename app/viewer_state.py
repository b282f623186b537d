"""What the main window shows, kept apart from Qt: the study and its super-resolution result, the cursor
(world mm) and the cardiac phase, the long axis, the default window/level and the engine choice (model,
adapter, device), with the logic that needs no widget: which slice the cursor is on, phase wrap-around,
ED/ES, the oblique plane's trace, the texts of the slider labels, the status bar and the study panel.

The long-axis cines of the study (`core.longaxis.LongAxisCine`) live here too, with what their view needs:
the long-axis phase matched to the short-axis phase, the intersection lines of the short-axis slices with
each plane, each plane's trace on the short-axis slice through the cursor, and the SR labels' cut.

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
    from gemini_cmr.core.longaxis import IntersectionLine, LongAxisCine, LongAxisInput

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


def long_axis_beside(path, study: Study) -> tuple[list[LongAxisCine], list[str]]:
    """The long-axis cines of a short-axis input that can be read and fit the stack (`check_long_axis`): the
    files beside it (`core.longaxis.find_long_axis_files`) and the series read with a DICOM study
    (`long_axis_in_study`); one note (naming the file or series) per one that cannot be used."""
    from pathlib import Path

    from gemini_cmr.core import longaxis
    from gemini_cmr.core.errors import GeminiError

    cines, notes = [], []
    for f in longaxis.find_long_axis_files(path):
        if Path(f).resolve() == Path(path).resolve():
            continue
        try:
            cines += load_long_axis_for(f, study)
        except GeminiError as exc:
            notes.append(f"long-axis file not used: {exc}")
    for item in longaxis.long_axis_in_study(study) if study.meta.long_axis_series else []:
        if isinstance(item, longaxis.LongAxisInput):  # a series that could not be built
            notes.append(f"long-axis series not used: {item.reason}")
            continue
        try:
            longaxis.check_long_axis(item, study)
        except GeminiError as exc:
            notes.append(f"long-axis series not used: {exc}")
            continue
        cines.append(item)
    return cines, notes


def load_long_axis_for(path, study: Study) -> list[LongAxisCine]:
    """The long-axis cine(s) at `path` (`core.longaxis.load_long_axis`) checked against `study`
    (`check_long_axis`); `DataError` (one line naming the file) when none of them can be used."""
    from gemini_cmr.core.errors import DataError
    from gemini_cmr.core.longaxis import check_long_axis, load_long_axis

    usable, first_error = [], None
    for cine in load_long_axis(path):
        try:
            check_long_axis(cine, study)
        except DataError as exc:
            first_error = first_error or exc
            continue
        usable.append(cine)
    if not usable and first_error is not None:
        raise first_error
    return usable


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
    la_cines: list = field(default_factory=list)  # the study's long-axis cines (`core.longaxis.LongAxisCine`)
    la_notes: list = field(default_factory=list)  # long-axis files found beside the study but not usable
    _la_lines: dict = field(default_factory=dict, repr=False)

    # --- study and result ---------------------------------------------------------------------------------
    def show_study(self, study: Study) -> None:
        """A newly loaded study, LR only: any result is dropped; the cursor at the volume's centre, the
        phase at ED when known, the long axis from the labels when there are any."""
        self.study = study
        self.result = None
        self.la_cines, self.la_notes = [], []
        self._la_lines = {}
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

    # --- long-axis cines -----------------------------------------------------------------------------------
    def add_long_axis(self, cines: list[LongAxisCine]) -> list[LongAxisCine]:
        """Add long-axis cines of the study; one already there (same file and view) is not added twice.
        Returns those added."""
        have = {(c.source_path, c.view) for c in self.la_cines}
        added = [c for c in cines if (c.source_path, c.view) not in have]
        self.la_cines.extend(added)
        return added

    def la_lines(self, index: int) -> list[IntersectionLine]:
        """Where each acquired short-axis slice crosses long-axis cine `index` (`core.longaxis.intersection_lines`)."""
        from gemini_cmr.core.longaxis import intersection_lines

        cine = self.la_cines[index]
        key = id(cine)
        if key not in self._la_lines:
            self._la_lines[key] = intersection_lines(cine.grid, self.study.grid)
        return self._la_lines[key]

    def la_phase(self, index: int, phase: int | None = None) -> int:
        """The phase of long-axis cine `index` shown at short-axis `phase` (default: the current one),
        matched by `core.longaxis.match_phases`."""
        from gemini_cmr.core.longaxis import match_phases

        phase = self.phase if phase is None else int(phase)
        matched = match_phases(self.la_cines[index], self.study.n_phases, self.ed_phase, self.es_phase)
        return int(matched[phase])

    def sa_slice(self) -> int:
        """The acquired short-axis slice through the cursor."""
        g = self.study.grid
        return int(np.clip(np.floor(g.world_to_index(self.cursor)[2] + 0.5), 0, g.shape[0] - 1))

    def la_input(self, index: int) -> LongAxisInput | None:
        """What the run made of long-axis cine `index` (`Result.long_axis`), or None (no run, or the cine
        was added after it)."""
        cine = self.la_cines[index]
        for item in getattr(self.result, "long_axis", None) or []:
            if item.cine is cine:
                return item
        return None

    def la_cut(self, index: int, phase: int | None = None) -> tuple[np.ndarray | None, str]:
        """(SR labels cut along long-axis cine `index`'s plane at short-axis `phase` (default: the current
        one), or None; a short note: which phase the labels are of, or why there are none)."""
        if self.result is None:
            return None, ""
        item = self.la_input(index)
        if item is None:
            return None, "Super-resolve again for the SR labels on this plane"
        if not item.used:
            return None, "not used by the run: see the warnings"
        phase = self.phase if phase is None else int(phase)
        if item.sr_labels is None or phase not in item.cut_phases:
            return None, "SR labels at ED/ES only"
        tag = {self.result.ed_phase: "ED", self.result.es_phase: "ES"}.get(phase, f"phase {phase + 1}")
        return item.sr_labels[item.cut_phases.index(phase)], f"SR labels {tag}"

    def la_traces(self) -> list[tuple[str, np.ndarray, np.ndarray]]:
        """Each long-axis plane's trace on the short-axis plane through the cursor: (view, world p0, p1),
        clipped to both images; planes that miss the slice are left out."""
        from gemini_cmr.core.longaxis import intersection_line

        if self.study is None or not self.la_cines:
            return []
        g = self.study.grid
        k = float(g.world_to_index(self.cursor)[2])
        out = []
        for cine in self.la_cines:
            line = intersection_line(cine.grid, g, k)
            if line is not None:
                ends = line.world(np.array(line.t_range))
                out.append((cine.view, ends[0], ends[1]))
        return out

    def la_text(self) -> str:
        """"2 long-axis cines (4ch, 2ch)" ('' without any)."""
        n = len(self.la_cines)
        if not n:
            return ""
        return f"{n} long-axis cine{'s' if n > 1 else ''} ({', '.join(c.view for c in self.la_cines)})"

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
                + (f", {self.la_text()}" if self.la_cines else "")
                + (f" — {len(s.meta.warnings)} warning(s)" if s.meta.warnings else "")
                + (f" — {len(self.la_notes)} long-axis file(s) not usable" if self.la_notes else ""))

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
        computed = ""
        if self.result is not None and (m.ed_phase is None or m.es_phase is None):
            # where the study does not say: the phase the result took (from its LV volume curve)
            r = self.result
            ed = ed if m.ed_phase is not None or r.ed_phase is None else str(r.ed_phase + 1)
            es = es if m.es_phase is not None or r.es_phase is None else str(r.es_phase + 1)
            computed = " (computed)"
        panel = {
            "name": s.name,
            "format": m.format or NO_VALUE,
            "patient": m.patient_id or NO_VALUE,
            "vendor": m.vendor or NO_VALUE,
            "series": m.series_description or NO_VALUE,
            "size": f"{s.image.shape[3]} × {s.image.shape[2]} × {s.n_slices} slices",
            "spacing": f"{sx:.2f} × {sy:.2f} × {sz:.2f} mm{thick}",
            "phases": f"{s.n_phases}{rr}",
            "edes": f"{ed} / {es}{computed}",
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
        lines = list(self.study.meta.warnings) + list(self.la_notes)
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
