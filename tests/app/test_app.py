"""End-to-end GUI tests (pytest-qt under Xvfb): open, super-resolve, look, compare ED/ES, cancel, export."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from PySide6.QtGui import QImage

from app.dialogs.export_dialog import ExportOptions
from app.theme import LABEL_COLOURS

pytestmark = pytest.mark.gui


def _rgb(image: QImage) -> np.ndarray:
    image = image.convertToFormat(QImage.Format.Format_RGB888)
    w, h, bpl = image.width(), image.height(), image.bytesPerLine()
    return np.frombuffer(image.constBits(), np.uint8, count=h * bpl).reshape(h, bpl)[:, : 3 * w].reshape(h, w, 3).copy()


def _count_colour(rgb: np.ndarray, colour, tol=12) -> int:
    return int(np.all(np.abs(rgb.astype(int) - np.array(colour)) <= tol, axis=-1).sum())


def _open(qtbot, window, path):
    with qtbot.waitSignal(window.studyLoaded, timeout=30000):
        window.open_path(path)


def _super_resolve(qtbot, window):
    with qtbot.waitSignal(window.resultReady, timeout=120000):
        assert window.super_resolve() is not None


def test_window_opens_on_study_and_shows_lr_pixels(qtbot, window, phantom_path, settings):
    _open(qtbot, window, phantom_path)
    assert window.study.n_phases == 8
    assert window.study_fields["size"].text().startswith("80 × 80")
    rgb = _rgb(window.lr_view.grab().toImage())
    assert rgb.std() > 20  # an image, not a uniform background
    assert not window.sr_view.has_image()
    assert settings.recent_files()[0].endswith("phantom.nii.gz")
    # Keyboard-free navigation through the same slots the shortcuts use.
    k = window.slice_slider.value()
    window.step_slice(+1)
    assert window.slice_slider.value() == k + 1
    window.next_phase()
    assert window.phase == 1


def test_bad_file_gives_a_clear_error(qtbot, window, tmp_path):
    bad = tmp_path / "broken.nii.gz"
    bad.write_bytes(b"not a nifti")
    with qtbot.waitSignal(window.taskFailed, timeout=30000) as sig:
        window.open_path(bad)
    assert "broken.nii.gz" in sig.args[0]
    assert window.study is None


def test_super_resolve_shows_labels_surfaces_and_ed_es(qtbot, window, phantom_path, oracle_engine):
    _open(qtbot, window, phantom_path)
    _super_resolve(qtbot, window)
    # Label overlay in the label colours, opaque so the colours are exact.
    window.opacity_slider.setValue(100)
    for view in (window.sr_view, window.lr_view):
        rgb = _rgb(view.grab().toImage())
        for label, colour in LABEL_COLOURS.items():
            assert _count_colour(rgb, colour) > 30, (view.title, label)
    window.overlay_check.setChecked(False)
    rgb = _rgb(window.sr_view.grab().toImage())
    assert _count_colour(rgb, LABEL_COLOURS[1]) == 0
    # 3D: the three surfaces; ED vs ES changes the displayed LV cavity.
    sv = window.surface_view
    assert set(sv.actors) == {"lv_cavity", "lv_myocardium", "rv_cavity"}
    assert all(m.n_points > 0 for m in sv.shown.values())
    sv.set_mode("ed")
    v_ed = sv.shown["lv_cavity"].volume
    sv.set_mode("es")
    v_es = sv.shown["lv_cavity"].volume
    assert v_es < 0.8 * v_ed
    sv.set_mode("compare")
    assert all(a.GetVisibility() for a in sv.wire_actors.values())
    # Phenotypes from core, and long-axis reformats from the segmentation.
    assert window.phenotypes_panel.table.rowCount() >= 9
    assert window.phenotypes_panel.phenotypes["lv_ef_pct"] > 20
    window.reformat_view.select_plane("4ch")
    assert window.reformat_view.sr_pane.has_image() and window.reformat_view.lr_pane.has_image()
    # Phase stepping reaches the SR view.
    window.set_phase(window.result.es_phase)
    assert window.sr_view.phase == window.result.es_phase


def test_cancel_stops_the_worker(qtbot, window, phantom_path, oracle_engine):
    _open(qtbot, window, phantom_path)
    with qtbot.waitSignal(window.taskCancelled, timeout=60000):
        task = window.super_resolve()
        window.cancel_task()
    assert not task.is_running()
    assert window.result is None
    assert window.sr_action.isEnabled()


def test_export_writes_files_and_never_overwrites_silently(qtbot, window, phantom_path, oracle_engine, tmp_path):
    _open(qtbot, window, phantom_path)
    _super_resolve(qtbot, window)
    out = tmp_path / "export"
    opts = ExportOptions(folder=out, mesh_formats=("stl", "vtp"), screenshots=("window", "3d"))
    with qtbot.waitSignal(window.exportDone, timeout=60000) as sig:
        window.export(opts, confirm=False)
    written = {p.relative_to(out).as_posix() for p in sig.args[0]}
    for name in ("sr_image.nii.gz", "sr_labels.nii.gz", "lr_labels.nii.gz", "phenotypes.csv",
                 "meshes/ed_lv_cavity.stl", "meshes/es_rv_cavity.vtp", "screenshot_window.png", "screenshot_3d.png"):
        assert name in written and (out / name).stat().st_size > 0, name
    before = (out / "phenotypes.csv").stat().st_mtime_ns
    with qtbot.waitSignal(window.taskFailed, timeout=10000) as sig:
        assert window.export(opts, confirm=False) is None
    assert "already exist" in sig.args[0]
    assert (out / "phenotypes.csv").stat().st_mtime_ns == before


def test_cli_view_scripted_screenshot(tmp_path, phantom_path):
    shot = tmp_path / "shot.png"
    env_cmd = [sys.executable, "-m", "core.cli.main", "view", str(phantom_path), "--screenshot", str(shot), "--quit",
               "--size", "1280x800"]
    out = subprocess.run(env_cmd, capture_output=True, text=True, timeout=120,
                         env={**__import__("os").environ, "GEMINI_CMR_SETTINGS": str(tmp_path / "s.ini")})
    assert out.returncode == 0, out.stderr[-2000:]
    image = QImage(str(shot))
    assert image.width() >= 1200 and _rgb(image).std() > 10
