"""recipes/gemini-acdc/run_fold.sh: which configs it trains, where its rows go, and that rows saved from another
training of a fold's stage 1 are kept (a stand-in interpreter records the commands; nothing is trained)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]

FAKE_PY = r"""#!/usr/bin/env bash
# Records each call; save_fold.py writes rows naming the model's id; `-c` runs the real interpreter.
echo "$*" >> calls.log
case "$1" in
  -c) exec "$REAL_PY" "$@" ;;
  recipes/gemini-acdc/save_fold.py)
    id=$(sha256sum "$2/fold$3/model/model.safetensors" | cut -c1-12)
    echo "{\"model_id\": \"$id\", \"rows\": []}" > "$4" ;;
  -m) if [ "$3" = evaluate ]; then echo '{"dropped": true}'; fi ;;
esac
"""


def _tree(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    (root / "recipes" / "gemini-acdc").mkdir(parents=True)
    shutil.copy(ROOT / "recipes" / "gemini-acdc" / "run_fold.sh", root / "recipes" / "gemini-acdc")
    for d in ("app", "cli", "core", "resources", "benchmarks/results"):
        (root / d).mkdir(parents=True)
    for run in ("abl-steps2400-robust", "abl-steps2400-robust-dropped", "abl-steps2400-robust-dropped-heads"):
        model = root / "runs" / run / "fold3" / "model"
        model.mkdir(parents=True)
        (model / "model.safetensors").write_bytes(run.encode())
    fake = root / "fake_py"
    fake.write_text(FAKE_PY)
    fake.chmod(0o755)
    return root


def _run(root: Path, stage2: str | None) -> subprocess.CompletedProcess:
    env = {**os.environ, "PY": str(root / "fake_py"), "REAL_PY": sys.executable}
    env.pop("STAGE2", None)
    if stage2 is not None:
        env["STAGE2"] = stage2
    return subprocess.run(["bash", str(root / "recipes" / "gemini-acdc" / "run_fold.sh"), "3", "DATA"], cwd=root,
                          env=env, capture_output=True, text=True, timeout=60)


@pytest.mark.skipif(shutil.which("sha256sum") is None, reason="needs coreutils' sha256sum")
def test_run_fold_trains_both_stages_and_saves_the_rows(tmp_path):
    root = _tree(tmp_path)
    out = _run(root, None)
    assert out.returncode == 0, out.stderr
    calls = (root / "calls.log").read_text().splitlines()
    train = [c for c in calls if c.startswith("-m gemini_cmr.cli.main train cv ")]
    assert len(train) == 2
    assert "ablations/steps2400_robust.json --out runs/abl-steps2400-robust --only 3" in train[0]
    assert "ablations/steps2400_robust_dropped.json --out runs/abl-steps2400-robust-dropped --only 3" in train[1]
    results = root / "benchmarks" / "results"
    s1 = hashlib.sha256(b"abl-steps2400-robust").hexdigest()[:12]
    assert json.loads((results / "cv_steps2400_robust_stage1_fold3.json").read_text())["model_id"] == s1
    assert (results / "cv_steps2400_robust_dropped_fold3.json").exists()
    assert json.loads((results / "dropped_robust_fold3.json").read_text()) == {"dropped": True}
    assert any("runs/abl-steps2400-robust-dropped/{fold}/model" in c for c in calls)
    assert (root / "runs" / "snapshot" / "gemini_cmr" / "core").is_dir()


@pytest.mark.skipif(shutil.which("sha256sum") is None, reason="needs coreutils' sha256sum")
def test_heads_stage2_and_a_retrained_stage1_keep_the_saved_rows(tmp_path):
    root = _tree(tmp_path)
    results = root / "benchmarks" / "results"
    saved = results / "cv_steps2400_robust_stage1_fold3.json"
    saved.write_text(json.dumps({"model_id": "0123456789ab", "rows": ["kept"]}))
    out = _run(root, "heads")
    assert out.returncode == 0, out.stderr
    calls = (root / "calls.log").read_text().splitlines()
    train = [c for c in calls if c.startswith("-m gemini_cmr.cli.main train cv ")]
    assert "steps2400_robust_dropped_heads.json --out runs/abl-steps2400-robust-dropped-heads --only 3" in train[1]
    assert json.loads(saved.read_text())["rows"] == ["kept"]  # another training's rows stay as they were
    s1 = hashlib.sha256(b"abl-steps2400-robust").hexdigest()[:12]
    assert json.loads((results / f"cv_steps2400_robust_stage1_fold3_{s1}.json").read_text())["model_id"] == s1
    assert f"stage-1 model {s1} differs" in out.stdout
    heads = results / "cv_steps2400_robust_dropped_heads_fold3.json"
    assert json.loads(heads.read_text())["model_id"] == hashlib.sha256(
        b"abl-steps2400-robust-dropped-heads").hexdigest()[:12]
    assert (results / "dropped_robust_heads_fold3.json").exists()
    assert not (results / "cv_steps2400_robust_dropped_fold3.json").exists()
    assert _run(root, "other").returncode == 2
