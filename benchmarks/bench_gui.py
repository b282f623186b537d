"""GUI latency: window up, slice step and phase step (2D + reformat + 3D with precomputed meshes).

    xvfb-run -a -s "-screen 0 1600x1000x24" env QT_QPA_PLATFORM=xcb .venv/bin/python benchmarks/bench_gui.py \
        [STUDY] [--model M | --oracle] [--device D] [--steps N]

STUDY defaults to the demo study (resources/demo/demo_study.nii.gz), else the test phantom. `--oracle`
replaces the network by the test phantom's exact answer (only with the phantom; measures the GUI alone).
Each step is timed from the call to the end of the repaint (events processed, 3D rendered). The click on
Super-resolve is timed to the preview of the phase on screen (`previewShown`) and to the whole result.
Targets: window up < 3 s, a slice or phase step < 30 ms. `GEMINI_CMR_3D_WIDGET=qt` measures
pyvistaqt's QOpenGLWidget instead of the native 3D window (the default on X11).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

T_START = time.perf_counter()
os.environ.setdefault("QT_API", "pyside6")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import gemini_cmr.cli.main  # noqa: E402, F401  (the OpenMP wait policy `gemini-cmr view` runs the app with)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("study", nargs="?")
    ap.add_argument("--model")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--oracle", action="store_true")
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--idle", type=float, default=0.0,
                    help="seconds between the window shown and opening the study (a user picks a file; the "
                         "study readers' warm-up runs meanwhile). Default 0: open at once")
    ap.add_argument("--think", type=float, default=0.0,
                    help="seconds between the study shown and the click on Super-resolve (a user looks at "
                         "the study first; the engine warm-up runs meanwhile). Default 0: click at once")
    args = ap.parse_args()
    os.environ.setdefault("GEMINI_CMR_SETTINGS", str(Path(tempfile.mkdtemp()) / "bench.ini"))

    from gemini_cmr.app.main import make_app
    from gemini_cmr.app.main_window import MainWindow

    app = make_app()
    win = MainWindow(interactive=False, model=args.model, device=args.device)
    win.resize(1600, 1000)
    win.show()
    app.processEvents()
    t_up = time.perf_counter() - T_START
    print(f"window up (interpreter start -> shown): {t_up:.2f} s  [target < 3 s]")

    from gemini_cmr.core.resources import demo_study_path

    study = args.study or (str(demo_study_path()) if demo_study_path().exists() and not args.oracle else None)
    if study is None or args.oracle:
        from tests.app.phantom import OraclePredictor, make_study

        if study is None:
            study = str(make_study(Path(tempfile.mkdtemp())))
        if args.oracle:
            import gemini_cmr.core.engine as engine

            real = engine.SuperResolver
            engine.SuperResolver = lambda model=None, adapter=None, device="auto", **kw: real(model=OraclePredictor())

    def wait_for(signal_owner_attr: str, start) -> None:
        done = []
        getattr(win, signal_owner_attr).connect(lambda *a: done.append(a))
        win.taskFailed.connect(lambda m, d: done.append(("failed", m)))
        start()
        while not done:
            app.processEvents()
            time.sleep(0.005)
        if done[0] and done[0][0] == "failed":
            raise SystemExit(f"failed: {done[0][1]}")

    end = time.perf_counter() + args.idle
    while time.perf_counter() < end:
        app.processEvents()
        time.sleep(0.005)
    t = time.perf_counter()
    wait_for("studyLoaded", lambda: win.open_path(study))
    print(f"open study {Path(study).name}: {time.perf_counter() - t:.2f} s (worker thread)")
    if args.think > 0:
        end = time.perf_counter() + args.think
        while time.perf_counter() < end:
            app.processEvents()
            time.sleep(0.005)
    first_shown: list[float] = []
    win.previewShown.connect(lambda done: first_shown.append(time.perf_counter()) if not first_shown else None)
    t = time.perf_counter()
    wait_for("resultReady", win.super_resolve)
    r = win.result
    if first_shown:
        print(f"super-resolve: {first_shown[0] - t:.2f} s from the click to the SR slices of the phase on screen "
              f"shown (preview; the other phases, labels on the input grid, meshes and numbers follow)")
    print(f"super-resolve ({r.model_id}, {len(r.phases)} phases, meshes for {len(r.meshes)}): "
          f"{time.perf_counter() - t:.2f} s from the click to the result shown (worker thread"
          f"{f', clicked {args.think:g} s after the study was shown' if args.think > 0 else ''})")
    app.processEvents()
    sv = win.surface_view
    if sv is not None:
        kind = {True: "native X11 child window", False: "pyvistaqt QOpenGLWidget"}.get(getattr(sv, "native", False))
        print(f"3D widget: {kind}")
    if sv is not None and hasattr(sv, "wait_display_ready"):
        t = time.perf_counter()
        sv.wait_display_ready()
        print(f"3D display meshes ({len(sv.phase_actors)} surfaces, keep {sv.display_keep:.0%} of the triangles): "
              f"{time.perf_counter() - t:.2f} s (background thread, after the result is shown)")

    def timed(step) -> tuple[list[float], list[float]]:
        wall, cpu = [], []
        for _ in range(args.steps):
            t0, c0 = time.perf_counter(), time.process_time()
            step()
            app.processEvents()
            wall.append((time.perf_counter() - t0) * 1000)
            cpu.append((time.process_time() - c0) * 1000)
        return wall, cpu

    def report(name: str, ms: tuple[list[float], list[float]]) -> None:
        wall, cpu = ms
        print(f"{name:<40} wall median {statistics.median(wall):6.1f} ms (max {max(wall):6.1f})   "
              f"CPU median {statistics.median(cpu):6.1f} ms  [target < 30 ms]")

    n_slices = r.sr_grid.shape[0]
    direction = [1]

    def slice_step():
        if not 0 < win.slice_slider.value() + direction[0] < n_slices - 1:
            direction[0] *= -1
        win.step_slice(direction[0])

    report("slice step (LR + SR views)", timed(slice_step))
    win.surface_view.set_mode("cine")
    report("phase step (2D + reformat + 3D + curve)", timed(win.next_phase))
    phase = [win.phase]

    def surface_step():
        phase[0] = (phase[0] + 1) % win.n_phases
        win.surface_view.set_phase(phase[0])

    report("phase step, 3D view alone", timed(surface_step))
    win.surface_view.set_mode("compare")
    report("phase step, 3D in ES+ED compare mode", timed(win.next_phase))
    win.surface_view.set_mode("cine")
    win.surface_view.hide()
    report("phase step, 3D hidden", timed(win.next_phase))
    # The same 2D views in a window without the 3D widget: a QOpenGLWidget anywhere in a window makes Qt
    # composite the whole window with OpenGL on every repaint, which is costly with software GL.
    study_obj, result = win.study, win.result
    win.close()
    win = MainWindow(interactive=False, with_3d=False)
    win.resize(1600, 1000)
    win.show()
    win.set_study(study_obj)
    win.set_result(result)
    app.processEvents()
    report("slice step, window without 3D", timed(slice_step))
    report("phase step, window without 3D", timed(win.next_phase))
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"(load average {load:.1f} on {os.cpu_count()} CPUs; 3D is software OpenGL under Xvfb here; "
          "CPU = this process, all threads, including the GL rasteriser)")
    win.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
