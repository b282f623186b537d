"""End-to-end GUI tests (pytest-qt under Xvfb): open, super-resolve, look, compare ED/ES, cancel, export."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
from PySide6.QtGui import QImage

from gemini_cmr.app.dialogs.export_dialog import ExportDialog
from gemini_cmr.core.study import LABEL_COLOURS

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
    assert window.phase_slider.maximum() == 7
    rgb = _rgb(window.lr_view.grab().toImage())
    assert rgb.std() > 20  # an image, not a uniform background
    assert not window.sr_view.has_image()
    assert settings.recent_files()[0].endswith("phantom.nii.gz")
    # Keyboard: arrows step slices, PgDown/PgUp phases, Space plays the cine.
    from PySide6.QtCore import Qt

    window.activateWindow()
    qtbot.waitUntil(window.isActiveWindow, timeout=5000)
    k = window.slice_slider.value()
    qtbot.keyClick(window, Qt.Key.Key_Up)
    assert window.slice_slider.value() == k + 1
    qtbot.keyClick(window, Qt.Key.Key_PageDown)
    assert window.phase == 1
    qtbot.keyClick(window, Qt.Key.Key_Space)
    qtbot.waitUntil(lambda: window.phase >= 3, timeout=5000)
    qtbot.keyClick(window, Qt.Key.Key_Space)
    assert not window._play_timer.isActive()


def test_dropping_a_file_opens_it(qtbot, window, phantom_path):
    from PySide6.QtCore import QMimeData, QPointF, Qt, QUrl
    from PySide6.QtGui import QDropEvent

    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(phantom_path))])
    event = QDropEvent(QPointF(50, 50), Qt.DropAction.CopyAction, mime, Qt.MouseButton.NoButton,
                       Qt.KeyboardModifier.NoModifier)
    with qtbot.waitSignal(window.studyLoaded, timeout=30000):
        window.dropEvent(event)
    assert window.study.meta.source_path.endswith("phantom.nii.gz")


def test_warm_up_imports_in_the_background(tmp_path, monkeypatch):
    """`prewarm` imports the given modules on a (non-daemon) thread once per process; nothing when they
    are already imported; the window starts the study readers' warm-up."""
    import gemini_cmr.app.warmup as warm

    (tmp_path / "gemini_warm_probe.py").write_text("import time\ntime.sleep(0.2)\nLOADED = True\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(warm, "_WARM", {})
    monkeypatch.delitem(sys.modules, "gemini_warm_probe", raising=False)
    th = warm.prewarm(("gemini_warm_probe",))
    assert th is not None and not th.daemon
    assert warm.prewarm(("gemini_warm_probe",)) is None  # once per process
    th.join(10)
    assert sys.modules["gemini_warm_probe"].LOADED
    monkeypatch.setattr(warm, "_WARM", {})
    assert warm.prewarm(("gemini_warm_probe",)) is None  # already imported
    assert "gemini_cmr.core.io.loader" in warm.STUDY_MODULES and "gemini_cmr.core.predict" in warm.ENGINE_MODULES


def test_window_start_warms_up_the_study_readers(qtbot, settings, monkeypatch):
    import gemini_cmr.app.main_window as mw
    import gemini_cmr.app.warmup as warm
    from gemini_cmr.app.main import make_app

    calls = []
    monkeypatch.setattr(warm, "prewarm", lambda modules: calls.append(modules))
    make_app()
    win = mw.MainWindow(settings, interactive=False, with_3d=False)
    qtbot.addWidget(win)
    assert calls == [warm.STUDY_MODULES]


def test_opening_a_study_starts_the_engine_warm_up(qtbot, window, phantom_path, monkeypatch):
    import gemini_cmr.app.warmup as warm

    calls = []
    monkeypatch.setattr(warm, "prewarm_engine", lambda: calls.append(1))
    _open(qtbot, window, phantom_path)
    assert calls == [1]


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
    # the cine bar's fixed-width labels show their texts whole, also a 20-phase cine's at ED
    assert window.phase_label.text().endswith("ES")
    for label, text in ((window.phase_label, window.phase_label.text()), (window.slice_label, window.slice_label.text()),
                        (window.phase_label, "phase 20/20  999 ms  ED"), (window.slice_label, "slice 120/120 (SR)")):
        assert label.fontMetrics().horizontalAdvance(text) <= label.width(), text


def test_cancel_stops_the_worker(qtbot, window, phantom_path, oracle_engine):
    _open(qtbot, window, phantom_path)
    with qtbot.waitSignal(window.taskCancelled, timeout=60000):
        task = window.super_resolve()
        window.cancel_task()
    assert not task.is_running()
    assert window.result is None
    assert window.sr_action.isEnabled()


def test_closing_the_window_during_a_run_stops_it_cleanly(qtbot, window, phantom_path, oracle_engine):
    _open(qtbot, window, phantom_path)
    task = window.super_resolve()
    window.close()  # cancels and waits for the worker
    assert not task.is_running() and task.cancel_requested


def test_cuda_without_a_gpu_is_a_clear_error(qtbot, window, phantom_path):
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    _open(qtbot, window, phantom_path)
    window.device_box.setCurrentIndex(window.device_box.findData("cuda"))
    with qtbot.waitSignal(window.taskFailed, timeout=60000) as sig:
        window.super_resolve()
    assert "CUDA" in sig.args[0]
    assert window.sr_action.isEnabled()


def test_export_writes_files_and_never_overwrites_silently(qtbot, window, phantom_path, oracle_engine, tmp_path):
    _open(qtbot, window, phantom_path)
    _super_resolve(qtbot, window)
    out = tmp_path / "export"
    dlg = ExportDialog(window, has_result=True, default_dir=str(out))
    dlg.format_checks["vtp"].setChecked(True)
    dlg.shot_checks["3d"].setChecked(True)
    opts = dlg.options()
    assert opts.folder == out and opts.mesh_formats == ("stl", "vtp") and opts.screenshots == ("window", "3d")
    with qtbot.waitSignal(window.exportDone, timeout=60000) as sig:
        window.export(opts, confirm=False)
    written = {p.relative_to(out).as_posix() for p in sig.args[0]}
    for name in ("sr_image.nii.gz", "sr_labels.nii.gz", "lr_labels.nii.gz", "phenotypes.csv", "qc.png",
                 "meshes/ed_lv_cavity.stl", "meshes/es_rv_cavity.vtp", "screenshot_window.png", "screenshot_3d.png"):
        assert name in written and (out / name).stat().st_size > 0, name
    before = (out / "phenotypes.csv").stat().st_mtime_ns
    with qtbot.waitSignal(window.taskFailed, timeout=10000) as sig:
        assert window.export(opts, confirm=False) is None
    assert "already exist" in sig.args[0]
    assert (out / "phenotypes.csv").stat().st_mtime_ns == before


def test_the_gui_thread_collects_the_garbage_of_every_thread(qtbot):
    """While the window is up, reference cycles made on the GUI thread are collected on the GUI thread, however
    much a worker thread allocates (Qt and VTK objects must not be destroyed off their thread); afterwards
    automatic collection is back on."""
    import gc
    import threading

    from gemini_cmr.app.main import collect_on_gui_thread, make_app

    app = make_app()
    finalised_on = []

    class Cycle:
        def __init__(self):
            self.me = self

        def __del__(self):
            finalised_on.append(threading.current_thread())

    kept = []

    def allocate():  # containers kept alive, past the collector's threshold many times over
        kept.extend([i] for i in range(20 * gc.get_threshold()[0]))

    restore = collect_on_gui_thread(app)
    try:
        assert not gc.isenabled()
        Cycle()
        worker = threading.Thread(target=allocate)
        worker.start()
        worker.join()
        assert finalised_on == []  # the worker did not collect it
        qtbot.waitUntil(lambda: bool(finalised_on), timeout=5000)
        assert finalised_on == [threading.main_thread()]
    finally:
        restore()
        kept.clear()
    assert gc.isenabled()


def test_cli_view_scripted_screenshot(tmp_path, phantom_path):
    shot = tmp_path / "shot.png"
    env_cmd = [sys.executable, "-m", "gemini_cmr.cli.main", "view", str(phantom_path), "--screenshot", str(shot), "--quit",
               "--size", "1280x800"]
    out = subprocess.run(env_cmd, capture_output=True, text=True, timeout=120,
                         env={**os.environ, "GEMINI_CMR_SETTINGS": str(tmp_path / "s.ini")})
    assert out.returncode == 0, f"exit status {out.returncode}\nstdout: {out.stdout[-1000:]}\nstderr: {out.stderr[-4000:]}"
    assert "Fatal Python error" not in out.stderr, out.stderr[-4000:]
    image = QImage(str(shot))
    assert image.width() >= 1200 and _rgb(image).std() > 10


def _mouse(widget, kind, pos, button, buttons, mods=None):
    from PySide6.QtCore import QEvent, QPointF, Qt
    from PySide6.QtGui import QMouseEvent
    from PySide6.QtWidgets import QApplication

    types = {"press": QEvent.Type.MouseButtonPress, "move": QEvent.Type.MouseMove,
             "release": QEvent.Type.MouseButtonRelease}
    p = QPointF(*pos)
    ev = QMouseEvent(types[kind], p, widget.mapToGlobal(p), button, buttons,
                     mods or Qt.KeyboardModifier.NoModifier)
    QApplication.sendEvent(widget, ev)


def test_mouse_window_level_zoom_crosshair_and_oblique_line(qtbot, window, phantom_path):
    from PySide6.QtCore import QPoint, QPointF, Qt
    from PySide6.QtGui import QWheelEvent
    from PySide6.QtWidgets import QApplication

    _open(qtbot, window, phantom_path)
    vp = window.lr_view.viewport()
    cx, cy = vp.width() / 2, vp.height() / 2
    # Right-drag: window/level, shared by LR, SR and the reformats; double right-click resets.
    wl0 = window.lr_view.window_level()
    R, NB = Qt.MouseButton.RightButton, Qt.MouseButton.NoButton
    _mouse(vp, "press", (cx, cy), R, R)
    _mouse(vp, "move", (cx + 60, cy - 30), NB, R)
    _mouse(vp, "release", (cx + 60, cy - 30), R, NB)
    assert window.lr_view.window_level() != wl0
    assert window.sr_view.window_level() == window.lr_view.window_level()
    window.reset_window_level()
    assert window.lr_view.window_level() == wl0
    # Left click: crosshair at a new world position, linked to the cursor.
    L = Qt.MouseButton.LeftButton
    before = window.cursor.copy()
    _mouse(vp, "press", (cx + 40, cy + 25), L, L)
    _mouse(vp, "release", (cx + 40, cy + 25), L, NB)
    assert np.linalg.norm(window.cursor - before) > 5
    # Ctrl+left drag: the oblique plane follows the line.
    ctrl = Qt.KeyboardModifier.ControlModifier
    _mouse(vp, "press", (cx - 80, cy - 80), L, L, ctrl)
    _mouse(vp, "move", (cx + 80, cy + 80), NB, L, ctrl)
    _mouse(vp, "release", (cx + 80, cy + 80), L, NB, ctrl)
    plane = window.reformat_view.current_plane()
    assert window.reformat_view.plane_name == "oblique"
    assert abs(np.dot(plane.u, window.study.grid.directions[:, 0])) < 0.9  # diagonal, not the default row
    # Wheel: zoom, mirrored by the SR view.
    z0 = window.lr_view.zoom()
    ev = QWheelEvent(QPointF(cx, cy), vp.mapToGlobal(QPointF(cx, cy)), QPoint(0, 0), QPoint(0, 240), NB,
                     Qt.KeyboardModifier.NoModifier, Qt.ScrollPhase.NoScrollPhase, False)
    QApplication.sendEvent(vp, ev)
    assert window.lr_view.zoom() > 1.2 * z0
    assert window.sr_view.zoom() == pytest.approx(window.lr_view.zoom())
    # A click on the long-axis reformat moves the cursor to that point of the plane (and the SAX slice).
    pane = window.reformat_view.lr_pane.viewport()
    k0 = window.slice_slider.value()
    _mouse(pane, "press", (pane.width() / 2, pane.height() * 0.3), L, L)
    _mouse(pane, "release", (pane.width() / 2, pane.height() * 0.3), L, NB)
    plane = window.reformat_view.current_plane()
    assert abs(np.dot(window.cursor - plane.origin, plane.normal)) < 1e-6
    assert window.slice_slider.value() != k0


@pytest.mark.slow
def test_cli_view_super_resolves_the_demo_study_with_the_bundled_model(tmp_path):
    from gemini_cmr.core.resources import demo_study_path

    if not demo_study_path().exists():
        pytest.skip("no demo study")
    shot = tmp_path / "demo.png"
    out = subprocess.run(
        [sys.executable, "-m", "gemini_cmr.cli.main", "view", str(demo_study_path()), "--super-resolve", "--screenshot",
         str(shot), "--quit", "--device", "cpu"], capture_output=True, text=True, timeout=600,
        env={**os.environ, "GEMINI_CMR_SETTINGS": str(tmp_path / "s.ini")})
    assert out.returncode == 0, out.stderr[-2000:]
    rgb = _rgb(QImage(str(shot)))
    assert sum(_count_colour(rgb, c, tol=60) for c in LABEL_COLOURS.values()) > 100


def test_cli_view_with_a_broken_model_exits_2_with_the_reason(tmp_path, phantom_path):
    bad = tmp_path / "not_a_model"
    bad.mkdir()
    out = subprocess.run(
        [sys.executable, "-m", "gemini_cmr.cli.main", "view", str(phantom_path), "--super-resolve", "--model", str(bad),
         "--quit"], capture_output=True, text=True, timeout=120,
        env={**os.environ, "GEMINI_CMR_SETTINGS": str(tmp_path / "s.ini")})
    assert out.returncode == 2, out.stderr[-2000:]
    assert "not_a_model" in out.stderr


def test_settings_open_recent_and_frame_rate_survive_a_restart(qtbot, settings, phantom_path):
    """Device, recent files (File > Open Recent re-opens them) and the window layout are remembered."""
    from gemini_cmr.app.main import make_app
    from gemini_cmr.app.main_window import MainWindow

    make_app()
    first = MainWindow(settings, interactive=False, with_3d=False)
    qtbot.addWidget(first)
    first.resize(1100, 700)
    first.show()
    qtbot.waitExposed(first)
    first.device_box.setCurrentIndex(first.device_box.findData("cpu"))
    _open(qtbot, first, phantom_path)
    # Cine playback follows the frame-rate box.
    first.fps_spin.setValue(25)
    first.set_playing(True)
    assert first._play_timer.isActive() and first._play_timer.interval() == 40
    first.fps_spin.setValue(10)
    assert first._play_timer.interval() == 100
    first.set_playing(False)
    first.phen_dock.hide()  # the layout: a dock closed by the user stays closed
    first.close()

    second = MainWindow(settings, interactive=False, with_3d=False)
    qtbot.addWidget(second)
    assert second.device == "cpu"
    assert settings.geometry() is not None
    second.show()
    qtbot.waitExposed(second)
    assert not second.phen_dock.isVisible() and second.study_dock.isVisible()
    recent = [a for a in second.recent_menu.actions() if str(phantom_path.name) in a.text()]
    assert len(recent) == 1 and second.recent_menu.isEnabled()
    with qtbot.waitSignal(second.studyLoaded, timeout=30000):
        recent[0].trigger()
    assert second.study.meta.source_path.endswith("phantom.nii.gz")
    second.close()


def test_tta_toggle_reaches_the_engine_and_is_remembered(qtbot, window, phantom_path, oracle_engine, settings):
    """Tools > Test-Time Augmentation at ED/ES: off by default; on, the next run predicts ED and ES again
    with it and the result says so. The choice is kept in the settings."""
    _open(qtbot, window, phantom_path)
    assert not window.tta_action.isChecked() and settings.tta is False
    _super_resolve(qtbot, window)
    assert window.result.tta == "off"
    window.tta_action.setChecked(True)
    assert settings.tta is True
    _super_resolve(qtbot, window)
    assert window.result.tta == "ed_es"
    assert next(iter(window._engine_cache.values())).predictor.tta is True


def test_motion_correction_toggle_reaches_the_engine_and_is_remembered(qtbot, window, phantom_path, oracle_engine,
                                                                        settings):
    """Tools > Correct Slice Motion: off, the next run has no motion estimate (the Display toggle is disabled
    and says so); on again, the result carries one. The choice is kept in the settings."""
    _open(qtbot, window, phantom_path)
    assert window.motion_action.isChecked() and settings.motion_correction
    window.motion_action.setChecked(False)
    assert settings.motion_correction is False
    _super_resolve(qtbot, window)
    assert window.result.motion is None and not window.motion_check.isEnabled()
    assert "off" in window.motion_label.text()
    window.motion_action.setChecked(True)
    _super_resolve(qtbot, window)
    assert window.result.motion is not None and settings.motion_correction


def test_the_phase_on_screen_is_shown_before_the_result(qtbot, window, phantom_path, oracle_engine):
    """The phase the user looks at is super-resolved first and its SR slices shown (a preview) while the
    other phases are still computed; the result then replaces the preview."""
    _open(qtbot, window, phantom_path)
    window.set_phase(3)
    events: list[tuple] = []
    window.previewShown.connect(lambda done: events.append(("preview", list(done), window.sr_view.has_image())))
    window.resultReady.connect(lambda r: events.append(("result",)))
    _super_resolve(qtbot, window)
    previews = [e for e in events if e[0] == "preview"]
    assert previews and events.index(previews[0]) < events.index(("result",))
    assert previews[0][1] == [3] and previews[0][2]  # phase 3 alone done, and on screen
    assert previews[-1][1] == sorted(int(p) for p in window.result.phases)  # then every phase, as each came
    assert window.sr_view.image is window.result.sr_image  # the result, not the preview
    window.set_phase(0)
    assert window.sr_view.has_image()


def test_a_preview_of_a_cancelled_run_is_taken_back(qtbot, window, phantom_path, oracle_engine):
    _open(qtbot, window, phantom_path)
    shown = []
    window.previewShown.connect(lambda done: (shown.append(done), window.cancel_task()))
    with qtbot.waitSignal(window.taskCancelled, timeout=60000):
        window.super_resolve()
    assert shown  # a preview was on screen when the run was cancelled
    assert window.result is None and window.sr_view.image is None  # nothing half-done left on screen
    assert window.reformat_view.sr.image is None


def test_warnings_dialog_says_when_a_quality_check_failed(window):
    from types import SimpleNamespace

    window.interactive = True
    failed = SimpleNamespace(warnings=["quality check: phase 0: no LV cavity on slice 3"],
                             phenotypes={"plausible": True}, qc={"passed": False, "failed": ["x"]})
    window._report_warnings(failed)
    assert "failed an automatic quality check" in window.warnings_box.text()
    assert "no LV cavity on slice 3" in window.warnings_box.informativeText()
    window.warnings_box.close()
    window._report_warnings(SimpleNamespace(warnings=["a note"], phenotypes={"plausible": True},
                                            qc={"passed": True, "failed": []}))
    assert window.warnings_box.text() == "The run finished with warnings."
    window.warnings_box.close()
    window.interactive = False


def test_about_the_model_shows_the_card_of_the_model_a_run_would_use(qtbot, window, tmp_path, monkeypatch):
    """Help > About the Model: with the automatic choice and no study, the research model's card (id,
    held-out accuracy, licence); with the demo (phantom) study open, the phantom model's; a broken chosen model is a
    warning naming its file, not a crash."""
    from gemini_cmr.app.menus import set_combo_path, show_model_card
    from gemini_cmr.core.models.store import file_sha256
    from gemini_cmr.core.resources import acdc_model_path, bundled_model_path, demo_study_path

    assert window.model_card_action.text() == "About the Model…"
    window.model_card_action.trigger()
    dialog = window.model_card_dialog
    qtbot.waitExposed(dialog)
    acdc_id = file_sha256(acdc_model_path() / "model.safetensors")[:12]
    assert f"Model {acdc_id}" in dialog.view.toPlainText() and "non-commercial" in dialog.view.toPlainText()
    assert "real studies" in dialog.note.text()
    dialog.close()
    _open(qtbot, window, demo_study_path())
    dialog = show_model_card(window)
    assert f"Model {file_sha256(bundled_model_path() / 'model.safetensors')[:12]}" in dialog.text
    assert "phantom study" in dialog.note.text()
    dialog.close()
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "model.safetensors").write_bytes(b"x")
    (broken / "config.json").write_text("{not json")
    set_combo_path(window.model_box, str(broken))
    shown = []
    monkeypatch.setattr("gemini_cmr.app.menus.QMessageBox.warning", lambda parent, title, text: shown.append(text))
    assert show_model_card(window) is None
    assert len(shown) == 1 and "config.json" in shown[0] and "\n" not in shown[0]
