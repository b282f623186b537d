"""A pyvista plotter in a native child window (VTK's own `QVTKRenderWindowInteractor`, QWidget base).

pyvistaqt's `QtInteractor` is a `QOpenGLWidget`: VTK renders into a framebuffer object and Qt then
composites the *whole window* through OpenGL on every repaint, even when only a 2D slice view changed.
With software OpenGL (no GPU, remote desktops, Xvfb) that composition costs more than the drawing itself.
Here VTK renders straight into its own X11 child window and the rest of the window stays raster-painted.
Used on X11 (`xcb`) only; elsewhere (Wayland, macOS, Windows) the app keeps pyvistaqt's widget.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
from typing import Any

from pyvista.plotting.plotter import BasePlotter
from pyvista.plotting.render_window_interactor import RenderWindowInteractor
from pyvistaqt.plotting import _no_base_plotter_init
from vtkmodules.qt import QVTKRenderWindowInteractor as _qvtk
from vtkmodules.vtkRenderingCore import vtkRenderWindow

ENV = "GEMINI_CMR_3D_WIDGET"  # "native" or "qt" (pyvistaqt's QOpenGLWidget); default: native on xcb


def use_native() -> bool:
    choice = os.environ.get(ENV, "").strip().lower()
    if choice in ("qt", "fbo", "pyvistaqt"):
        return False
    if choice == "native":
        return True
    from PySide6.QtGui import QGuiApplication

    return QGuiApplication.platformName() == "xcb" and _qvtk.QVTKRWIBase == "QWidget"


class NativeInteractor(_qvtk.QVTKRenderWindowInteractor, BasePlotter):
    """The subset of pyvistaqt's `QtInteractor` this app uses (`interactor`, `render`, `close`, the
    `BasePlotter` API), on a native window."""

    def __init__(self, parent=None, **kwargs: Any):
        # VTK's X11 window would open its own display connection and, if it never rendered, leave it
        # open until exit; give it one that `close` closes, so nothing touches X after the window is gone.
        rw = vtkRenderWindow()
        self._x11, self._display = _open_display()
        if self._display:
            rw.SetDisplayId(f"_{self._display:016x}_p_void")
        with _no_base_plotter_init():
            _qvtk.QVTKRenderWindowInteractor.__init__(self, parent, rw=rw)
        BasePlotter.__init__(self, **kwargs)
        self.interactor = self
        self.ren_win = self.GetRenderWindow()
        self.ren_win.SetMultiSamples(0)
        for renderer in self.renderers:
            self.ren_win.AddRenderer(renderer)
        self._off_screen = False
        self.iren = RenderWindowInteractor(self, interactor=self.ren_win.GetInteractor())
        self.iren.interactor.RemoveObservers("MouseMoveEvent")
        self.iren.initialize()
        self.enable_trackball_style()
        self._first_time = False
        self._closed = False

    def render(self) -> None:
        if not self._closed:
            BasePlotter.render(self)

    # After `close` the render window is finalized: a late paint or resize (the widget being hidden or
    # destroyed) must not bring it back, or VTK re-opens an X connection that outlives the display.
    def paintEvent(self, ev) -> None:  # noqa: N802
        if not self._closed:
            super().paintEvent(ev)

    def resizeEvent(self, ev) -> None:  # noqa: N802
        if not self._closed:
            super().resizeEvent(ev)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        with contextlib.suppress(Exception):
            self.Finalize()
        with contextlib.suppress(Exception):
            BasePlotter.close(self)
        _qvtk.QVTKRenderWindowInteractor.close(self)
        if self._display:
            with contextlib.suppress(Exception):
                self._RenderWindow.Finalize()
            self._x11.XCloseDisplay(ctypes.c_void_p(self._display))
            self._display = None


def _open_display() -> tuple[Any, int | None]:
    name = ctypes.util.find_library("X11") or "libX11.so.6"
    try:
        x11 = ctypes.CDLL(name)
    except OSError:
        return None, None
    x11.XOpenDisplay.restype = ctypes.c_void_p
    x11.XOpenDisplay.argtypes = [ctypes.c_char_p]
    x11.XCloseDisplay.argtypes = [ctypes.c_void_p]
    return x11, x11.XOpenDisplay(None)
