"""Packaging metadata: the wheel's package data, the PyInstaller spec, the entry script and
the desktop file agree with what the runtime needs. Fast: nothing is built here (the real builds are
`make wheel`, `make package` and `make package-smoke`, see docs/packaging.md)."""

from __future__ import annotations

import configparser
import importlib.util
import struct
import subprocess
import sys
import tomllib
import types
import zlib
from pathlib import Path

import pytest

from gemini_cmr.core import __version__, resources
from gemini_cmr.core.models import store

REPO = Path(__file__).resolve().parents[2]
PACKAGING = REPO / "packaging"
SPEC = PACKAGING / "gemini-cmr.spec"


def runtime_resource_files() -> list[Path]:
    """Every file under resources/ that the code loads at run time (found from the code, not listed)."""
    models = {resources.bundled_model_path(), *(REPO / "resources" / "models").iterdir()}
    if hasattr(resources, "acdc_model_path") and resources.acdc_model_path().is_dir():
        models.add(resources.acdc_model_path())
    files = [resources.demo_study_path(), resources.icon_path()]
    files += sorted(p for m in models if m.is_dir() for p in m.iterdir() if p.is_file())
    return files


def test_runtime_resources_exist_and_agree():
    files = runtime_resource_files()
    names = {p.name for p in files}
    assert {"model.safetensors", "config.json", "demo_study.nii.gz", "gemini-cmr.png"} <= names
    for p in files:
        assert p.is_file() and p.stat().st_size > 0, p
        assert p.resolve().is_relative_to((REPO / "resources").resolve()), p
    assert store.BUNDLED_MODEL_DIR.resolve() == resources.bundled_model_path().resolve()


def test_wheel_package_data_covers_runtime_resources():
    meta = tomllib.loads((REPO / "pyproject.toml").read_text())
    setuptools_cfg = meta["tool"]["setuptools"]
    assert (REPO / "resources" / "__init__.py").is_file(), "resources/ must stay a package to carry package data"
    globs = setuptools_cfg.get("package-data", {}).get("gemini_cmr.resources", [])
    covered = {p.resolve() for pat in globs for p in (REPO / "resources").glob(pat) if p.is_file()}
    missing = [str(p.relative_to(REPO)) for p in runtime_resource_files() if p.resolve() not in covered]
    assert not missing, f"pyproject package-data for 'gemini_cmr.resources' ({globs}) misses {missing}"
    assert meta["project"]["scripts"]["gemini-cmr"] == "gemini_cmr.cli.main:main"
    assert {"pyinstaller", "pyinstaller-hooks-contrib", "build"} <= {
        r.split(">")[0].split("=")[0].split("<")[0].strip().lower()
        for r in meta["project"]["optional-dependencies"]["package"]}


class _Recorder:
    """Stands in for PyInstaller's Analysis/PYZ/EXE/COLLECT/BUNDLE and records what the spec passes."""

    calls: dict[str, list] = {}

    def __init__(self, *args, **kwargs):
        self.args, self.kwargs = args, kwargs
        _Recorder.calls.setdefault(type(self).__name__, []).append(self)
        self.binaries = [("torch/lib/libtorch_cpu.so", "/x", "BINARY"), ("torch/lib/libcudnn.so.9", "/x", "BINARY"),
                         ("nvidia/cublas/lib/libcublas.so.12", "/x", "BINARY"),
                         ("PySide6/Qt/lib/libQt6Widgets.so.6", "/x", "BINARY"),
                         ("PySide6/Qt/lib/libQt6Quick.so.6", "/x", "BINARY")]
        self.datas = [(f"{dest}/{Path(src).name}", src, "DATA") for src, dest in kwargs.get("datas", [])]
        self.datas.append(("torch/include/ATen/ATen.h", "/x", "DATA"))
        self.pure = [("scipy.ndimage", "/x", "PYMODULE"), ("scipy.ndimage.tests.test_filters", "/x", "PYMODULE"),
                     ("numpy.testing", "/x", "PYMODULE"), ("gemini_cmr.cli.main", "/x", "PYMODULE")]
        self.scripts = []


def _exec_spec(monkeypatch, tmp_path) -> dict:
    hooks = types.ModuleType("PyInstaller.utils.hooks")
    hooks.collect_submodules = lambda name: [f"{name}.fake"]
    hooks.collect_data_files = lambda name: [(f"/site/{name}/data.json", name)]
    for mod in ("PyInstaller", "PyInstaller.utils"):
        monkeypatch.setitem(sys.modules, mod, types.ModuleType(mod))
    monkeypatch.setitem(sys.modules, "PyInstaller.utils.hooks", hooks)
    _Recorder.calls = {}
    ns = {"SPECPATH": str(PACKAGING), "__file__": str(SPEC), "workpath": str(tmp_path)}
    ns.update({n: type(n, (_Recorder,), {}) for n in ("Analysis", "PYZ", "EXE", "COLLECT", "BUNDLE")})
    exec(compile(SPEC.read_text(), str(SPEC), "exec"), ns)
    return ns


def test_spec_entry_resources_and_filters(monkeypatch, tmp_path):
    ns = _exec_spec(monkeypatch, tmp_path)
    (analysis,) = _Recorder.calls["Analysis"]
    (entry,) = analysis.args[0]
    assert Path(entry) == PACKAGING / "gemini_cmr_entry.py"
    kw = analysis.kwargs
    # our lazily imported packages are listed; resources keep their layout relative to the code
    assert {"gemini_cmr.core.fake", "gemini_cmr.app.fake"} <= set(kw["hiddenimports"])
    bundled = {(Path(src).resolve(), dest) for src, dest in kw["datas"]}
    for p in runtime_resource_files():
        dest = str(Path("gemini_cmr") / p.parent.relative_to(REPO))
        assert (p.resolve(), dest) in bundled, f"{p} is not collected by the spec"
    assert {"tkinter", "PyQt5", "PyQt6", "PySide2", "pytest"} <= set(kw["excludes"])
    # VTK: the modules pyvista loads lazily by name (SurfaceNets for the meshes, OpenGL for the 3D view)
    # are listed, and the all-of-VTK shim is kept out
    import pyvista._vtk as pv_vtk

    for cls in ("vtkSurfaceNets3D", "vtkOpenGLRenderer", "vtkPolyData"):
        assert f"vtkmodules.{pv_vtk._VTK_CLASS_TO_MODULE[cls]}" in kw["hiddenimports"], cls
    assert {"vtk", "vtkmodules.all"} <= set(kw["excludes"])
    # the post-analysis filters drop CUDA, test programs/packages and unused Qt, keep what runs
    binaries = {d for d, _, _ in analysis.binaries}
    assert "torch/lib/libtorch_cpu.so" in binaries and "PySide6/Qt/lib/libQt6Widgets.so.6" in binaries
    assert not binaries & {"torch/lib/libcudnn.so.9", "nvidia/cublas/lib/libcublas.so.12",
                           "PySide6/Qt/lib/libQt6Quick.so.6"}
    datas = {d for d, _, _ in analysis.datas}
    assert "gemini_cmr/resources/models/gemini-phantom/model.safetensors" in datas
    assert "torch/include/ATen/ATen.h" not in datas
    assert {m for m, _, _ in analysis.pure} == {"scipy.ndimage", "numpy.testing", "gemini_cmr.cli.main"}
    (exe,) = _Recorder.calls["EXE"]
    assert exe.kwargs["name"] == "gemini-cmr"
    assert exe.kwargs["console"] is (sys.platform not in ("win32", "darwin"))
    (coll,) = _Recorder.calls["COLLECT"]
    assert coll.kwargs["name"] == "gemini-cmr"
    assert ns["VERSION"] == __version__


def _load_entry():
    spec = importlib.util.spec_from_file_location("gemini_cmr_entry", PACKAGING / "gemini_cmr_entry.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_entry_script_dispatches_to_the_cli(monkeypatch, capsys):
    entry = _load_entry()
    monkeypatch.setattr(sys, "argv", ["gemini-cmr", "--version"])
    with pytest.raises(SystemExit) as exc:
        entry.main()
    assert exc.value.code == 0
    assert capsys.readouterr().out.strip() == f"gemini-cmr {__version__}"
    monkeypatch.setattr(sys, "argv", ["gemini-cmr"])
    assert entry._argv() == []  # a terminal: print the help
    monkeypatch.setattr(sys, "stdout", None)  # a windowed build started from the desktop: open the app
    assert entry._argv() == ["view"]


def test_desktop_file_and_icon():
    cp = configparser.ConfigParser(interpolation=None)
    cp.optionxform = str
    cp.read(PACKAGING / "gemini-cmr.desktop")
    d = cp["Desktop Entry"]
    assert d["Type"] == "Application" and d["Terminal"] == "false"
    assert d["Exec"].split()[:2] == ["gemini-cmr", "view"]
    assert d["Icon"] == "gemini-cmr" and d["Name"]
    assert d["Categories"].endswith(";")
    png = resources.icon_path().read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", png[16:24])
    assert width == height >= 128
    assert (REPO / "resources" / "icons" / "gemini-cmr.svg").read_text().lstrip().startswith("<?xml")


def _png(path: Path, width: int, height: int, pixel) -> Path:
    raw = b"".join(b"\x00" + b"".join(bytes(pixel(x, y)) for x in range(width)) for y in range(height))

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw))
                     + chunk(b"IEND", b""))
    return path


def test_check_png_tells_blank_from_content(tmp_path):
    check = [sys.executable, str(PACKAGING / "check_png.py"), "--min-size", "64x48"]
    blank = _png(tmp_path / "blank.png", 80, 60, lambda x, y: (40, 40, 40))
    busy = _png(tmp_path / "busy.png", 80, 60, lambda x, y: ((x * 3) % 256, (y * 4) % 256, (x * y) % 256))
    assert subprocess.run([*check, str(blank)], capture_output=True).returncode == 1
    assert subprocess.run([*check, str(busy)], capture_output=True).returncode == 0
    assert subprocess.run([*check, str(busy), "--min-size", "200x200"], capture_output=True).returncode == 1


def test_wizard_runs_the_bundle_itself_when_frozen(monkeypatch):
    from gemini_cmr.app.wizard.process import cli_command

    assert cli_command(["train", "--help"]) == (sys.executable, ["-m", "gemini_cmr.cli.main", "train", "--help"])
    monkeypatch.setattr(sys, "frozen", True, raising=False)
    assert cli_command(["train", "--help"]) == (sys.executable, ["train", "--help"])


def test_scripts_are_valid_shell():
    for name in ("build.sh", "smoke_test.sh", "install_desktop_entry.sh"):
        subprocess.run(["bash", "-n", str(PACKAGING / name)], check=True)
