"""recipes/gemini-acdc/gpu_runs.py: the jobs it trains side by side on a lent GPU are the named configs' folds,
and it reads each run's progress from its last checkpoint."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.core.train.conftest import load_script

ROOT = Path(__file__).resolve().parents[3]
CPU = ROOT / "recipes" / "gemini-acdc" / "cpu.json"


def _script():
    return load_script(ROOT / "recipes" / "gemini-acdc" / "gpu_runs.py")


def test_a_job_is_a_config_a_run_folder_and_a_fold():
    g = _script()
    config, run, k = g.parse_job(f"{CPU}:runs/gpu-cpu:4")
    assert (config, run, k) == (CPU, Path("runs/gpu-cpu/fold4"), 4)
    for bad in (f"{CPU}:runs/x:5", f"{CPU}:runs/x", "missing.json:runs/x:1", f"{CPU}:runs/x:one"):
        with pytest.raises(SystemExit, match="--job"):
            g.parse_job(bad)
    with pytest.raises(SystemExit, match="no --job"):
        g.main(["--data", "x", "--archive", "a.tar.gz"])


def test_job_config_is_the_recipe_with_the_machines_cache_and_optional_steps():
    g = _script()
    cpu = json.loads(CPU.read_text())
    got = g.job_config(CPU, "/tmp/c")
    assert got == {**cpu, "cache_dir": "/tmp/c"}
    assert g.job_config(CPU, "/tmp/c", 3)["max_steps"] == 3


def test_progress_is_read_from_the_last_checkpoint(tmp_path):
    g = _script()
    assert g.progress(tmp_path) == (0, 0)
    (tmp_path / "last").mkdir()
    (tmp_path / "last" / "state.json").write_text(json.dumps({"step": 150, "total_steps": 1200}))
    assert g.progress(tmp_path) == (150, 1200)
    (tmp_path / "last" / "state.json").write_text("{")
    assert g.progress(tmp_path) == (0, 0)
