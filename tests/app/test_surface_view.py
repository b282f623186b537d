"""The 3D view: ED | ES side by side with one camera, ES + ED wireframe, standard views, and the fast
phase step (pre-built actors shown/hidden, decimated display meshes, FXAA only on still frames)."""

from __future__ import annotations

import numpy as np
import pytest

from gemini_cmr.core.study import LABEL_COLOURS

pytestmark = pytest.mark.gui


def _count_colour(rgb: np.ndarray, colour, tol=60) -> int:
    return int(np.all(np.abs(rgb[..., :3].astype(int) - np.array(colour)) <= tol, axis=-1).sum())


@pytest.fixture
def surfaces(qtbot, window, phantom_path, oracle_engine):
    with qtbot.waitSignal(window.studyLoaded, timeout=30000):
        window.open_path(phantom_path)
    with qtbot.waitSignal(window.resultReady, timeout=120000):
        window.super_resolve()
    sv = window.surface_view
    assert sv.wait_display_ready(60)
    return window, sv


def test_side_by_side_overlay_and_standard_views(qtbot, surfaces):
    window, sv = surfaces
    result = window.result
    ed, es = result.ed_phase, result.es_phase
    # Side by side: ED on the left renderer, ES on the right one, one shared camera.
    sv.set_mode("side")
    assert window.settings.surface_mode == "side"  # remembered for the next session
    assert sv.right.GetDraw() and sv.left.GetViewport()[2] == pytest.approx(0.5)
    assert sv.displayed_phase() == ed
    assert set(sv.shown_right) == {"lv_cavity", "lv_myocardium", "rv_cavity"}
    assert all(a.GetVisibility() for a in sv.right_actors.values())
    assert sv.shown_right["lv_cavity"].volume < 0.8 * sv.shown["lv_cavity"].volume
    assert sv.left.GetActiveCamera() is sv.right.GetActiveCamera()
    rgb = sv.screenshot()
    half = rgb.shape[1] // 2
    for label in (1, 3):  # LV and RV cavity drawn in both halves, in the 2D colours (opaque surfaces)
        colour = LABEL_COLOURS[label]
        assert _count_colour(rgb[:, :half], colour) > 50 and _count_colour(rgb[:, half:], colour) > 50
    # Phase steps do not change the comparison.
    window.set_phase((ed + 1) % window.n_phases)
    assert sv.displayed_phase() == ed and sv.info.text().startswith("ED")
    # Overlay: ES solid with the ED wireframe, single renderer.
    sv.set_mode("compare")
    assert not sv.right.GetDraw() and sv.left.GetViewport()[2] == pytest.approx(1.0)
    assert sv.displayed_phase() == es
    assert all(a.GetVisibility() for a in sv.wire_actors.values())
    assert all(a.GetProperty().GetRepresentation() == 1 for a in sv.wire_actors.values())  # VTK_WIREFRAME
    # Standard views look along the LV long axis (base: towards the apex; apex: towards the base),
    # across it from the RV side (septal), or from the front (anterior).
    axis = sv.axis
    assert axis is not None
    sv.standard_view("base")
    assert np.dot(sv.view_direction(), axis.direction) > 0.99
    sv.standard_view("apex")
    assert np.dot(sv.view_direction(), axis.direction) < -0.99
    sv.standard_view("septal")
    to_rv = axis.rv_centre - axis.centre
    assert abs(np.dot(sv.view_direction(), axis.direction)) < 1e-6
    assert np.dot(sv.view_direction(), to_rv) < 0  # the camera is on the RV side, looking at the septum
    sv.standard_view("anterior")
    assert np.dot(sv.view_direction(), [0.0, 1.0, 0.0]) < -0.5
    sv.standard_view("reset")
    assert sv.view == "reset"
    # The window's View menu offers the same modes.
    texts = [a.text() for a in window.findChildren(type(window.open_action)) if a.text()]
    assert "ED | ES side by side" in texts and "Apex" in texts


def test_phase_step_only_toggles_prebuilt_actors(qtbot, surfaces):
    window, sv = surfaces
    sv.set_mode("cine")
    n_actors = sv.left.GetActors().GetNumberOfItems()
    # Every (phase, structure) has its actor; the display copy is decimated, the measured one is not.
    assert len(sv.phase_actors) == 3 * len(window.result.meshes)
    for (t, s), actor in sv.phase_actors.items():
        shown = actor.GetMapper().GetInput()
        full = window.result.meshes[t][s]
        assert shown.GetNumberOfCells() < 0.5 * full.n_cells
        assert shown.GetPointData().GetNormals() is not None
    volumes = set()
    for _ in range(window.n_phases):
        k = (window.phase + 1) % window.n_phases
        window.set_phase(k)
        visible = [key for key, a in sv.phase_actors.items() if a.GetVisibility()]
        assert sorted(visible) == [(k, "lv_cavity"), (k, "lv_myocardium"), (k, "rv_cavity")]
        assert not sv.left.GetUseFXAA()  # stepping: frames without the FXAA pass
        volumes.add(round(sv.shown["lv_cavity"].volume))
    assert len(volumes) >= 4  # the LV cavity really changes with the phase
    assert sv.left.GetActors().GetNumberOfItems() == n_actors  # nothing added or rebuilt
    qtbot.waitUntil(lambda: bool(sv.left.GetUseFXAA()), timeout=5000)  # the still frame is anti-aliased


def test_mouse_drag_rotates_the_shared_camera(qtbot, surfaces):
    from PySide6.QtCore import QEvent, QPointF, Qt
    from PySide6.QtGui import QMouseEvent
    from PySide6.QtWidgets import QApplication

    _, sv = surfaces
    sv.set_mode("side")
    widget = sv.plotter.interactor
    before = np.array(sv.right.GetActiveCamera().GetPosition())
    L, NB = Qt.MouseButton.LeftButton, Qt.MouseButton.NoButton
    x, y = widget.width() * 0.25, widget.height() * 0.5  # on the left (ED) renderer
    for kind, pos, button, buttons in ((QEvent.Type.MouseButtonPress, (x, y), L, L),
                                       (QEvent.Type.MouseMove, (x + 60, y + 20), NB, L),
                                       (QEvent.Type.MouseButtonRelease, (x + 60, y + 20), L, NB)):
        p = QPointF(*pos)
        QApplication.sendEvent(widget, QMouseEvent(kind, p, widget.mapToGlobal(p), button, buttons,
                                                   Qt.KeyboardModifier.NoModifier))
    after = np.array(sv.right.GetActiveCamera().GetPosition())
    assert np.linalg.norm(after - before) > 1.0  # the ES renderer's camera moved with the ED one


def test_the_3d_mode_is_restored_from_the_settings(qtbot, settings):
    from gemini_cmr.app.main import make_app
    from gemini_cmr.app.main_window import MainWindow

    settings.surface_mode = "side"
    make_app()
    win = MainWindow(settings, interactive=False)
    qtbot.addWidget(win)
    with qtbot.waitSignal(win.surfaceReady, timeout=60000):
        win.show()
    assert win.surface_view.mode == "side" and win.surface_view.mode_box.currentData() == "side"
    win.close()


@pytest.mark.parametrize("widget", ["native", "qt"])
def test_both_3d_widgets_draw_every_mode(qtbot, monkeypatch, widget):
    """The native X11 window (default on xcb) and pyvistaqt's QOpenGLWidget (elsewhere) behave the same."""
    import pyvista as pv

    from gemini_cmr.app.main import make_app
    from gemini_cmr.app.views.surface_view import SurfaceView

    monkeypatch.setenv("GEMINI_CMR_3D_WIDGET", widget)
    make_app()
    sv = SurfaceView()
    qtbot.addWidget(sv)
    sv.resize(500, 300)
    sv.show()
    qtbot.waitExposed(sv)
    assert sv.native == (widget == "native")

    def heart(r):
        return {"lv_cavity": pv.Sphere(radius=r, center=(0, 0, 0)),
                "lv_myocardium": pv.Sphere(radius=r + 4, center=(0, 0, 0)),
                "rv_cavity": pv.Sphere(radius=r, center=(-2.2 * r, 0, 0))}

    sv.set_meshes({0: heart(20.0), 1: heart(14.0)}, ed=0, es=1)
    assert sv.wait_display_ready(30)
    for mode in ("cine", "ed", "es", "side", "compare"):
        sv.set_mode(mode)
        rgb = sv.screenshot()
        assert _count_colour(rgb, LABEL_COLOURS[3]) > 100, mode  # the RV, blue as in 2D
    sv.set_mode("side")
    half = rgb.shape[1] // 2
    assert _count_colour(sv.screenshot()[:, half:], LABEL_COLOURS[3]) > 50
    sv.clear()
    assert not sv.phase_actors and sv.hint.GetVisibility()
    sv.close_plotter()


def test_closing_waits_for_the_display_mesh_threads(qtbot, monkeypatch):
    """Closing the 3D view stops its display-mesh threads and waits for the mesh each is making, so that no
    VTK call runs on another thread while the window and the interpreter are torn down."""
    import threading
    import time

    import pyvista as pv

    import gemini_cmr.app.views.surface_view as surface_view
    from gemini_cmr.app.main import make_app

    real = surface_view.display_mesh

    def slow(mesh, keep):
        time.sleep(0.3)
        return real(mesh, keep)

    monkeypatch.setattr(surface_view, "display_mesh", slow)
    make_app()
    sv = surface_view.SurfaceView()
    qtbot.addWidget(sv)
    sv.resize(400, 300)
    sv.show()
    qtbot.waitExposed(sv)
    heart = {"lv_cavity": pv.Sphere(radius=20.0), "rv_cavity": pv.Sphere(radius=15.0, center=(-40, 0, 0))}
    sv.set_meshes({0: heart, 1: heart}, ed=0, es=1)

    def display_threads():
        return [t for t in threading.enumerate() if t.name == "gemini-3d-display" and t.is_alive()]

    assert display_threads()  # four slow meshes: still at work
    t0 = time.monotonic()
    sv.close_plotter()
    assert not display_threads()
    assert time.monotonic() - t0 < 5  # stopped after the mesh in hand, not after all of them


def test_other_phases_surfaces_follow_the_result(qtbot, window, phantom_path, oracle_engine):
    """The result is shown with the ED and ES surfaces; the other phases' follow from a worker thread
    (`meshesReady`), the 3D cine mode then shows each phase's own surfaces; opening another study stops
    that worker."""
    with qtbot.waitSignal(window.studyLoaded, timeout=30000):
        window.open_path(phantom_path)
    at_result = []

    def hook(result):
        at_result.append(sorted(result.meshes))

    window.resultReady.connect(hook)
    with qtbot.waitSignals([window.resultReady, window.meshesReady], timeout=120000, order="strict"):
        window.super_resolve()
    r = window.result
    assert at_result == [sorted({r.ed_phase, r.es_phase})]
    assert sorted(r.meshes) == sorted(r.phases)
    sv = window.surface_view
    assert sv.wait_display_ready(60) and not sv.more_coming
    sv.set_mode("cine")
    other = next(p for p in r.phases if p not in (r.ed_phase, r.es_phase))
    window.set_phase(other)
    assert sv.displayed_phase() == other
    visible = sorted(key for key, a in sv.phase_actors.items() if a.GetVisibility())
    assert visible == [(other, "lv_cavity"), (other, "lv_myocardium"), (other, "rv_cavity")]
    # A new study while the surfaces may still be being made: the worker is cancelled (or done) and
    # forgotten, and nothing of the old result comes back.
    window.resultReady.disconnect(hook)
    with qtbot.waitSignal(window.resultReady, timeout=120000):
        window.super_resolve()
    with qtbot.waitSignal(window.studyLoaded, timeout=30000):
        window.open_path(phantom_path)
    qtbot.waitUntil(lambda: not window._mesh_tasks, timeout=30000)
    assert window.result is None and not window.surface_view.meshes
