"""`app.viewer_state.ViewerState`: what the main window shows, without Qt. A phantom heart sampled in
memory on a tilted LR grid and on its SR grid stands in for a loaded study and an engine result."""

from __future__ import annotations

import subprocess
import sys
from types import SimpleNamespace

import numpy as np
import pytest

from gemini_cmr.app.viewer_state import (
    NO_VALUE,
    STUDY_FIELDS,
    EngineChoice,
    ViewerState,
    default_window_level,
    short_id,
)
from gemini_cmr.core.geometry import sr_grid
from gemini_cmr.core.reformat import Plane
from gemini_cmr.core.study import Study, StudyMeta
from tests.app.phantom import N_PHASES, image_at, labels_at, lr_grid


def _sample(grid, phases):
    nz, ny, nx = grid.shape
    zz, yy, xx = np.meshgrid(np.arange(nz), np.arange(ny), np.arange(nx), indexing="ij")
    pts = grid.index_to_world(np.stack([xx, yy, zz], axis=-1))
    labels = np.stack([labels_at(pts, t, lr_grid()) for t in phases])
    images = np.stack([image_at(pts, t, lr_grid(), lab) for t, lab in zip(phases, labels)])
    return images, labels


@pytest.fixture(scope="module")
def lr_data():
    return _sample(lr_grid(), range(N_PHASES))


def _study(lr_data, labels=False, **meta) -> Study:
    images, labs = lr_data
    meta = {"source_path": "/data/phantom.nii.gz", "format": "nifti", "ed_phase": 0, "es_phase": 4} | meta
    return Study(images, lr_grid().affine, phase_times_ms=np.arange(N_PHASES) * 40.0,
                 labels=labs if labels else None, meta=StudyMeta(**meta))


def _result(phases=(0, 4), ed=0, es=4, **kw):
    g = sr_grid(lr_grid())
    images, labels = _sample(g, phases)
    fields = dict(sr_grid=g, phases=list(phases), sr_image=images, sr_labels=labels, ed_phase=ed, es_phase=es,
                  model_id="0123456789abcdef0123", adapter_id=None, device="cpu", model_choice="",
                  warnings=[], timings={"predict": 1.5, "meshes": 0.5}, meshes={})
    return SimpleNamespace(**(fields | kw))


def test_the_module_needs_no_qt():
    code = ("import importlib.abc, sys\n"
            "class Block(importlib.abc.MetaPathFinder):\n"
            "    def find_spec(self, name, path=None, target=None):\n"
            "        if name.split('.')[0] in ('PySide6', 'shiboken6', 'pyvista', 'vtkmodules', 'torch'):\n"
            "            raise ImportError('viewer_state must not import ' + name)\n"
            "sys.meta_path.insert(0, Block())\n"
            "import gemini_cmr.app.viewer_state\n"
            "print('ok')\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-2000:]


def test_an_empty_state_shows_nothing_and_ignores_navigation():
    s = ViewerState()
    assert s.n_phases == 0 and s.fine_grid() is None and s.ed_phase is None and s.es_phase is None
    assert not s.set_phase(3) and s.phase == 0
    assert not s.move_to_slice(2) and np.array_equal(s.cursor, np.zeros(3))
    assert not s.can_play() and s.next_phase() == 0 and s.previous_phase() == 0
    assert s.plane_trace(None) is None
    assert s.study_panel() == {key: NO_VALUE for key, _ in STUDY_FIELDS}
    assert s.model_tooltip() == "" and s.warnings_text() == ""


def test_a_new_study_starts_at_the_centre_and_at_ed(lr_data):
    s = ViewerState()
    s.result = _result()
    s.cursor = np.array([1.0, 2.0, 3.0])
    study = _study(lr_data, ed_phase=3)
    s.show_study(study)
    assert s.study is study and s.result is None
    assert np.allclose(s.cursor, study.grid.centre())
    assert s.phase == 3 and s.n_phases == N_PHASES and s.can_play()
    for ed in (None, N_PHASES, -1):  # unknown or out of range: the first phase
        s.show_study(_study(lr_data, ed_phase=ed))
        assert s.phase == 0


def test_default_window_level_spans_the_intensities(lr_data):
    s = ViewerState()
    s.show_study(_study(lr_data))
    window, level = s.window_level_default
    lo, hi = level - window / 2, level + window / 2
    images = lr_data[0]
    assert images.min() - 1e-3 <= lo < 20 and 200 < hi <= images.max() + 1e-3  # background 6, blood 230
    assert default_window_level(np.full((2, 3, 4, 4), 7.0)) == (1.0, 7.5)  # flat image: a window of 1


def test_the_long_axis_comes_from_the_labels_when_there_are_any(lr_data):
    s = ViewerState()
    s.show_study(_study(lr_data))
    assert s.axis is None
    s.show_study(_study(lr_data, labels=True))
    g = s.study.grid
    tilt = np.degrees(np.arccos(abs(np.dot(s.axis.direction, g.normal))))
    assert 5 < tilt < 20  # the phantom's LV axis is tilted 12 degrees from the slice normal


def test_slice_of_the_cursor_and_moving_between_slices(lr_data):
    s = ViewerState()
    s.show_study(_study(lr_data))
    g = s.study.grid
    assert s.slice_of() == 5  # the centre of 10 slices (index 4.5) rounds up
    i, j, _ = g.world_to_index(s.cursor)
    assert s.move_to_slice(2) and s.slice_of() == 2
    i2, j2, k2 = g.world_to_index(s.cursor)
    assert np.allclose([i2, j2, k2], [i, j, 2.0])  # in-plane position kept
    assert s.slice_of(g.index_to_world(np.array([0.0, 0.0, -7.0]))) == 0  # clipped to the stack
    assert s.slice_of(g.index_to_world(np.array([0.0, 0.0, 40.0]))) == 9
    s.set_cursor([1, 2, 3])
    assert s.cursor.dtype == np.float64 and list(s.cursor) == [1.0, 2.0, 3.0]


def test_phases_wrap_around_the_cine(lr_data):
    s = ViewerState()
    s.show_study(_study(lr_data))
    assert s.set_phase(N_PHASES + 1) and s.phase == 1
    assert s.set_phase(-1) and s.phase == N_PHASES - 1
    assert s.next_phase() == 0 and s.previous_phase() == N_PHASES - 2
    assert s.ed_es("ed") == 0 and s.ed_es("es") == 4
    with pytest.raises(KeyError):
        s.ed_es("mid")


def test_a_result_brings_the_sr_grid_its_ed_es_and_a_new_axis(lr_data):
    s = ViewerState()
    s.show_study(_study(lr_data, ed_phase=None, es_phase=None))
    assert s.ed_phase is None and s.axis is None
    result = _result(phases=(1, 5), ed=1, es=5)
    assert s.show_result(result) == [1, 5]
    assert s.fine_grid() is result.sr_grid and s.ed_phase == 1 and s.es_phase == 5
    assert s.axis is not None  # from the SR labels at ED
    assert s.slice_text() == f"slice {s.slice_of() + 1}/{result.sr_grid.shape[0]} (SR)"
    assert result.sr_grid.shape[0] > s.study.n_slices
    # labels without an LV: the previous axis is kept
    axis = s.axis
    s.show_result(_result(phases=(1, 5), ed=1, es=5, sr_labels=np.zeros_like(result.sr_labels)))
    assert s.axis is axis


def test_full_phase_labels_put_each_result_phase_in_its_place(lr_data):
    s = ViewerState()
    s.show_study(_study(lr_data))
    labels = np.stack([np.full((2, 3, 3), 1, np.uint8), np.full((2, 3, 3), 2, np.uint8)])
    full = s.full_phase_labels(labels, [2, 6])
    assert full.shape == (N_PHASES, 2, 3, 3) and full.dtype == np.uint8
    assert (full[2] == 1).all() and (full[6] == 2).all()
    assert not full[[0, 1, 3, 4, 5, 7]].any()
    every = np.zeros((N_PHASES, 2, 3, 3), np.uint8)
    assert s.full_phase_labels(every, list(range(N_PHASES))) is every


def test_slider_and_status_texts(lr_data):
    s = ViewerState()
    s.show_study(_study(lr_data, warnings=["odd spacing", "no phase times"]))
    assert s.slice_text() == "slice 6/10"
    assert s.phase_text() == "phase 1/8  0 ms  ED"
    s.set_phase(3)
    assert s.phase_text() == "phase 4/8  120 ms"
    s.set_phase(4)
    assert s.phase_text() == "phase 5/8  160 ms  ES"
    s.set_cursor([1.25, -2.0, 30.04])
    assert s.position_text() == "RAS (1.2, -2.0, 30.0) mm"
    assert s.opened_text() == "Opened phantom.nii.gz: 8 phases × 10 slices — 2 warning(s)"
    assert s.warnings_text() == "⚠ odd spacing\n⚠ no phase times"
    s.study.phase_times_ms = None
    assert s.phase_text() == "phase 5/8  ES"


def test_result_status_text(lr_data):
    s = ViewerState()
    s.show_study(_study(lr_data))
    s.show_result(_result())
    assert s.result_text() == "Super-resolved 2 phase(s) in 2.0 s with model 0123456789abcdef… on cpu"
    s.show_result(_result(timings={"predict": 1.5, "total": 4.25}, model_choice="phantom study",
                          warnings=["slow CPU"]))
    assert s.result_text() == ("Super-resolved 2 phase(s) in 4.2 s with model 0123456789abcdef… on cpu "
                               "(phantom study) — slow CPU")


def test_study_panel(lr_data):
    s = ViewerState()
    s.show_study(_study(lr_data, labels=True, patient_id="P-7", slice_thickness_mm=7.5))
    panel = s.study_panel()
    assert list(panel) == [key for key, _ in STUDY_FIELDS]
    assert panel["name"] == "P-7" and panel["patient"] == "P-7" and panel["vendor"] == NO_VALUE
    assert panel["size"] == "80 × 80 × 10 slices"
    assert panel["spacing"] == "1.80 × 1.80 × 8.00 mm, thickness 7.5"
    assert panel["phases"] == "8 over 280 ms" and panel["edes"] == "1 / 5"
    assert panel["labels"] == "phases " + ", ".join(str(p + 1) for p in s.study.labelled_phases)
    assert panel["sr"] == panel["sr_spacing"] == panel["model"] == NO_VALUE
    result = _result(adapter_id="feedfacefeedfacefeed", model_choice="bundled")
    s.show_result(result)
    panel = s.study_panel()
    nz, ny, nx = result.sr_grid.shape
    assert panel["sr"] == f"{nx} × {ny} × {nz} slices"
    gx, gy, gz = result.sr_grid.spacing
    assert panel["sr_spacing"] == f"{gx:.2f} × {gy:.2f} × {gz:.2f} mm"
    assert panel["model"] == "0123456789abcdef… + feedfacefeedface…"
    assert s.model_tooltip() == "model 0123456789abcdef0123\nadapter feedfacefeedfacefeed\nbundled"
    assert panel["edes"] == "1 / 5"  # the study's own
    # a study that does not say which phases are ED and ES: "–" until a result has computed them
    s = ViewerState()
    s.show_study(_study(lr_data, ed_phase=None, es_phase=None))
    assert s.study_panel()["edes"] == f"{NO_VALUE} / {NO_VALUE}"
    s.show_result(_result(phases=(2, 6), ed=6, es=2))
    assert s.study_panel()["edes"] == "7 / 3 (computed)"


def test_the_oblique_plane_trace_on_the_cursor_slice(lr_data):
    s = ViewerState()
    s.show_study(_study(lr_data))
    g = s.study.grid
    u, n = g.directions[:, 0], g.normal
    across = Plane(origin=s.cursor.copy(), u=u, v=n, half_width=50.0, half_height=40.0)
    p0, p1 = s.plane_trace(across)
    assert np.linalg.norm(p1 - p0) == pytest.approx(100.0)
    k = g.world_to_index(s.cursor)[2]
    for p in (p0, p1):  # both ends on the plane and on the cursor's slice
        assert abs(np.dot(p - s.cursor, across.normal)) < 1e-6
        assert g.world_to_index(p)[2] == pytest.approx(k)
    parallel = Plane(origin=s.cursor.copy(), u=u, v=g.directions[:, 1], half_width=50.0, half_height=40.0)
    assert s.plane_trace(parallel) is None and s.plane_trace(None) is None


def test_engine_choice_and_short_ids():
    assert EngineChoice().key() == (None, None, "auto")
    assert EngineChoice("/m", "/a", "cuda").key() == ("/m", "/a", "cuda")
    assert short_id("abc") == "abc" and short_id("x" * 20) == "x" * 16 + "…" and short_id(12345, 3) == "123…"
