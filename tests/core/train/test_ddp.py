from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from gemini_cmr.core.models.store import load_model
from tests.core.train.conftest import TINY

REPO = Path(__file__).resolve().parents[3]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_process_gloo_ranks_agree(toy_data, tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    cfg = json.dumps({**TINY, "max_steps": 4})
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO))
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nnodes", "1", "--nproc_per_node", "2",
         "--master_addr", "127.0.0.1", "--master_port", str(_free_port()),
         str(REPO / "tests" / "core" / "train" / "ddp_worker.py"), str(toy_data), str(out), cfg],
        capture_output=True, text=True, timeout=300, env=env, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-3000:]
    r0 = json.loads((out / "rank0.json").read_text())
    r1 = json.loads((out / "rank1.json").read_text())
    assert r0["step"] == r1["step"] == 4
    assert r0["weights_sha256"] == r1["weights_sha256"]
    saved = json.loads((out / "config.json").read_text())
    assert saved["world_size"] == 2
    load_model(out / "last")
