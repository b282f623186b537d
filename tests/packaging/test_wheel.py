"""The wheel installs one top-level package, `gemini_cmr`, with the engine, command line, app and bundled
resources under it (and nothing named `core`, `app` or `resources` at the top of site-packages)."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_wheel_has_one_namespace(tmp_path):
    out = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                          str(tmp_path), str(REPO)], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    (wheel,) = tmp_path.glob("gemini_cmr-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/")[0] for n in names}
    assert tops == {"gemini_cmr", wheel.name.split("-py3")[0] + ".dist-info"}, tops
    assert {"/".join(n.split("/")[:2]) for n in names if n.startswith("gemini_cmr/")} == {
        "gemini_cmr/core", "gemini_cmr/cli", "gemini_cmr/app", "gemini_cmr/resources"}
    # every subpackage of the source tree is in the wheel, and the bundled files are
    for folder in ("core", "cli", "app"):
        for init in (REPO / folder).rglob("__init__.py"):
            rel = init.relative_to(REPO).as_posix()
            assert f"gemini_cmr/{rel}" in names, rel
    for f in ("models/gemini-phantom/model.safetensors", "models/gemini-acdc/config.json", "demo/demo_study.nii.gz",
              "icons/gemini-cmr.png"):
        assert f"gemini_cmr/resources/{f}" in names, f
    entry = zipfile.ZipFile(wheel).read(next(n for n in names if n.endswith("entry_points.txt"))).decode()
    assert "gemini-cmr = gemini_cmr.cli.main:main" in entry
