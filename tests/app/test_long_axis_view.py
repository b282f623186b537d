"""The long-axis view (pytest-qt under Xvfb): long-axis cines found beside the short-axis study or added from
File > Add Long-Axis Cine, their short-axis slice lines, the planes' traces on the short-axis views, the SR
labels cut along each plane after a run, and a bad long-axis file."""

from __future__ import annotations

import numpy as np
import pytest
from PySide6.QtCore import QPoint, Qt
from PySide6.QtGui import QImage

from gemini_cmr.app.viewer_state import ViewerState
from gemini_cmr.app.views.long_axis_view import view_colour
from gemini_cmr.core.io.nifti import save_nifti
from gemini_cmr.core.longaxis import intersection_lines
from tests.app.phantom import la_grid, lr_grid, make_long_axis, make_study

pytestmark = pytest.mark.gui


@pytest.fixture(scope="module")
def la_study(tmp_path_factory):
    """The app phantom with 4ch and 2ch cines beside it (UK Biobank names)."""
    folder = tmp_path_factory.mktemp("phantom_la")
    path = make_study(folder)
    make_long_axis(folder)
    return path


def _rgba(image: QImage) -> np.ndarray:
    image = image.convertToFormat(QImage.Format.Format_RGBA8888)
    w, h, bpl = image.width(), image.height(), image.bytesPerLine()
    return np.frombuffer(image.constBits(), np.uint8, count=h * bpl).reshape(h, bpl)[:, : 4 * w].reshape(h, w, 4).copy()


def _count_colour(rgba: np.ndarray, colour, tol=40) -> int:
    return int(np.all(np.abs(rgba[..., :3].astype(int) - np.array(colour)) <= tol, axis=-1).sum())


def _open(qtbot, window, path):
    with qtbot.waitSignal(window.studyLoaded, timeout=30000):
        window.open_path(path)


def test_state_helpers_without_qt(la_study):
    from gemini_cmr.app.viewer_state import long_axis_beside
    from gemini_cmr.core.io.loader import load_study

    study = load_study(la_study)
    cines, notes = long_axis_beside(la_study, study)
    assert sorted(c.view for c in cines) == ["2ch", "4ch"] and notes == []
    state = ViewerState()
    state.show_study(study)
    assert state.add_long_axis(cines) == cines and state.add_long_axis(cines) == []  # not twice
    assert state.la_text() == "2 long-axis cines (2ch, 4ch)"
    assert len(state.la_lines(0)) == study.n_slices  # every slice crosses the plane through the LV axis
    assert [state.la_phase(0, p) for p in range(study.n_phases)] == list(range(study.n_phases))
    traces = state.la_traces()
    assert [t[0] for t in traces] == ["2ch", "4ch"]
    for (_, p0, p1), cine in zip(traces, cines):  # on the cursor's short-axis plane and on the long-axis plane
        g = study.grid
        assert np.allclose(g.world_to_index(np.stack([p0, p1]))[:, 2], g.world_to_index(state.cursor)[2])
        assert np.allclose((np.stack([p0, p1]) - cine.grid.centre()) @ cine.grid.normal, 0.0, atol=1e-6)
    assert state.la_cut(0) == (None, "")  # no run yet


def test_long_axis_series_read_with_a_dicom_study_are_used(la_study, monkeypatch):
    from gemini_cmr.app.viewer_state import long_axis_beside
    from gemini_cmr.core import longaxis
    from gemini_cmr.core.io.loader import load_study

    study = load_study(la_study)
    (cine,) = longaxis.load_long_axis(la_study.parent / "la_4ch.nii.gz")
    parallel = longaxis.LongAxisCine("la", np.zeros((1, 80, 80), np.float32), lr_grid().affine,
                                     source_path="study.zip (series 'sax 5')")
    ignored = longaxis.LongAxisInput("study.zip (series 'LVOT')", reason="study.zip (series 'LVOT'): another study")
    monkeypatch.setattr(longaxis, "find_long_axis_files", lambda path: [])
    monkeypatch.setattr(longaxis, "long_axis_in_study", lambda s: [cine, parallel, ignored])
    study.meta.long_axis_series = ["stand-in"]
    cines, notes = long_axis_beside(la_study, study)
    assert cines == [cine]
    assert len(notes) == 2 and "series 'sax 5'" in notes[0] and "parallel" in notes[0] and "another study" in notes[1]


def test_an_unusable_file_beside_the_study_is_a_warning(tmp_path):
    from gemini_cmr.app.viewer_state import long_axis_beside
    from gemini_cmr.core.io.loader import load_study

    path = make_study(tmp_path)
    make_long_axis(tmp_path, views=("4ch",))
    (tmp_path / "la_3ch.nii.gz").write_bytes(b"not a nifti")
    study = load_study(path)
    cines, notes = long_axis_beside(path, study)
    assert [c.view for c in cines] == ["4ch"]
    assert len(notes) == 1 and "la_3ch.nii.gz" in notes[0] and "\n" not in notes[0]
    state = ViewerState()
    state.show_study(study)
    state.add_long_axis(cines)
    state.la_notes = notes
    assert state.opened_text().endswith("1 long-axis cine (4ch) — 1 long-axis file(s) not usable")
    assert "la_3ch.nii.gz" in state.warnings_text()


def test_long_axis_cines_beside_the_study_are_shown_with_the_slice_lines(qtbot, window, la_study):
    _open(qtbot, window, la_study)
    state = window.state
    assert [c.view for c in state.la_cines] == ["2ch", "4ch"]
    assert "2 long-axis cines (2ch, 4ch)" in window.status_label.text()
    assert window.la_view.isVisible() and window.la_view.chooser.isVisible()
    assert window.la_view.chooser.count() == 2
    assert window.la_view.chooser.currentText() == "4-chamber"  # shown first
    window.la_view.select(0)
    assert window.la_view.chooser.currentText() == "2-chamber"
    pane = window.la_view.pane
    n = len(intersection_lines(la_grid("2ch"), lr_grid()))
    assert n == 10 and len(pane.lines) == n
    assert pane.current_slice == state.sa_slice()
    assert pane.has_image()
    window.la_view.select(1)
    assert window.la_view.chooser.currentText() == "4-chamber" and len(pane.lines) == n
    assert view_colour("4ch").name() in window.la_view.title.text()
    # Both planes' traces on the short-axis views, in their colours.
    assert [t[0] for t in window.lr_view.la_traces] == ["2ch", "4ch"]
    qtbot.wait(50)
    rgba = _rgba(window.lr_view.grab().toImage())
    assert _count_colour(rgba, view_colour("4ch").getRgb()[:3], tol=30) > 30
    assert _count_colour(rgba, view_colour("2ch").getRgb()[:3], tol=30) > 30
    # A click on slice 2's line selects that short-axis slice.
    k = 2 if state.sa_slice() != 2 else 3
    _, a, b = next(line for line in pane.lines if line[0] == k)
    mid = pane.mapFromScene((a + b) / 2)
    qtbot.mouseClick(pane.viewport(), Qt.MouseButton.LeftButton, pos=QPoint(mid.x(), mid.y()))
    assert state.sa_slice() == k and pane.current_slice == k
    assert window.lr_view.slice_index == k
    # Phase follows the short axis (same phase count: the same index).
    window.set_phase(3)
    assert "LA phase 4/8" in pane.corner["bl"]


def test_a_bad_long_axis_file_is_an_error_and_the_study_stays(qtbot, window, phantom_path, tmp_path, oracle_engine):
    _open(qtbot, window, phantom_path)
    assert window.state.la_cines == [] and window.la_view.isHidden()
    bad = tmp_path / "la_bad.nii.gz"
    bad.write_bytes(b"not a nifti")
    with qtbot.waitSignal(window.taskFailed, timeout=30000) as sig:
        window.add_long_axis_path(bad)
    assert "la_bad.nii.gz" in sig.args[0] and "\n" not in sig.args[0]
    parallel = tmp_path / "la_parallel.nii.gz"  # one slice of the short-axis stack: not a long-axis view
    g = lr_grid()
    save_nifti(parallel, np.zeros((2, 1, *g.shape[1:]), np.float32), g.affine)
    with qtbot.waitSignal(window.taskFailed, timeout=30000) as sig:
        window.add_long_axis_path(parallel)
    assert "la_parallel.nii.gz" in sig.args[0] and "parallel" in sig.args[0]
    assert window.state.la_cines == [] and window.study is not None and window.la_view.isHidden()
    # A good one: shown and used by the run.
    (good,) = make_long_axis(tmp_path, views=("4ch",))
    with qtbot.waitSignal(window.longAxisAdded, timeout=30000):
        window.add_long_axis_path(good)
    assert [c.view for c in window.state.la_cines] == ["4ch"] and window.la_view.isVisible()
    assert not window.la_view.chooser.isVisible()  # one cine: no chooser, the view in the title
    assert "Long axis: 4-chamber" in window.la_view.title.text()
    with qtbot.waitSignal(window.resultReady, timeout=120000) as sig:
        window.super_resolve()
    assert [item.used for item in sig.args[0].long_axis] == [True]


def test_after_a_run_the_sr_labels_cut_is_overlaid(qtbot, window, la_study, oracle_engine):
    _open(qtbot, window, la_study)
    assert window.la_view.current_index() == 1  # 4ch: LV and RV
    with qtbot.waitSignal(window.resultReady, timeout=120000) as sig:
        window.super_resolve()
    result = sig.args[0]
    assert [item.used for item in result.long_axis] == [True, True]
    item = window.state.la_input(1)
    assert item.cine.view == "4ch" and item.cut_phases == [result.ed_phase, result.es_phase]
    pane = window.la_view.pane
    assert window.phase == result.ed_phase
    assert pane._labels is not None and np.array_equal(pane._labels, item.sr_labels[0])
    assert set(np.unique(pane._labels)) >= {1, 2, 3}
    # The overlay image: label colours where the cut has labels, transparent elsewhere.
    overlay = _rgba(pane._overlay.toImage())
    assert np.array_equal(overlay[..., 3] > 0, item.sr_labels[0] > 0)
    from gemini_cmr.core.study import LABEL_COLOURS

    lv = item.sr_labels[0] == 1
    assert np.all(overlay[lv][:, :3] == np.array(LABEL_COLOURS[1]))
    # ... aligned with the long-axis image: the blood pool (bright) under the LV cavity label.
    frame = item.cine.image[window.state.la_phase(1)]
    assert frame[lv].mean() > 180 and frame[item.sr_labels[0] == 2].mean() < 110
    assert window.la_view.note == "SR labels ED"
    window.opacity_slider.setValue(0)
    assert pane._opacity == 0.0
    window.goto_ed_es("es")
    assert np.array_equal(pane._labels, item.sr_labels[1]) and window.la_view.note == "SR labels ES"
    window.set_phase(result.ed_phase + 1)
    assert pane._labels is None and window.la_view.note == "SR labels at ED/ES only"
