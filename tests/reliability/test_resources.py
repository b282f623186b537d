"""Resource limits: memory is estimated before a run (refuse or shrink the batch), and CUDA out-of-memory
makes the predictor retry with smaller batches, then fall back to the CPU with a warning. CUDA OOM is
injected by monkeypatching the model call (these machines have no GPU)."""

from __future__ import annotations

import logging
import subprocess
import sys

import numpy as np
import pytest
import torch

import gemini_cmr.core.predict as predict_mod
from gemini_cmr.core.errors import GeminiError
from gemini_cmr.core.io import load_study
from gemini_cmr.core.memory import GIB, estimate_memory, plan_batch
from gemini_cmr.core.predict import Predictor
from tests.reliability.conftest import DEMO, REPO, child_env


@pytest.fixture(scope="module")
def demo():
    return load_study(DEMO)


@pytest.fixture(scope="module")
def predictor():
    return Predictor.load(None, device="cpu", batch_size=4)


def test_estimate_grows_with_batch_and_phases(demo, predictor):
    cfg = predictor.config
    assert estimate_memory(demo, cfg, 1) < estimate_memory(demo, cfg, 2) < estimate_memory(demo, cfg, 4)
    assert estimate_memory(demo, cfg, 1, n_phases=2) < estimate_memory(demo, cfg, 1, n_phases=20)


@pytest.mark.slow
def test_estimate_covers_the_measured_peak():
    """The estimate is not below the peak RSS growth measured in a fresh process (batch 1 and 4)."""
    code = """
import resource, sys
import torch
torch.set_num_threads(1)
from gemini_cmr.core.io import load_study
from gemini_cmr.core.predict import Predictor
from gemini_cmr.core.memory import estimate_memory
s = load_study(sys.argv[1])
b = int(sys.argv[2])
p = Predictor.load(None, device="cpu", batch_size=b)
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
p.predict(s, phases=list(range(b)))
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
print(peak - base, estimate_memory(s, p.config, b, n_phases=b) - s.image.nbytes)
"""
    for b in (1, 4):
        out = subprocess.run([sys.executable, "-c", code, str(DEMO), str(b)], cwd=REPO, env=child_env(),
                             capture_output=True, text=True, timeout=120, check=True).stdout
        measured, estimated = map(int, out.split())
        assert estimated >= measured, (b, measured, estimated)
        assert estimated < 1024**3, (b, measured, estimated)  # and not absurdly high for a 100x100x12 cine


def test_plan_batch_shrinks_then_refuses(demo, predictor):
    cfg = predictor.config
    fixed = estimate_memory(demo, cfg, 1, n_phases=20) - (estimate_memory(demo, cfg, 2, n_phases=20)
                                                          - estimate_memory(demo, cfg, 1, n_phases=20))
    per = estimate_memory(demo, cfg, 2, n_phases=20) - estimate_memory(demo, cfg, 1, n_phases=20)
    assert plan_batch(demo, cfg, 20, 4, available=64 * GIB, gpu_free=None) == 4
    assert plan_batch(demo, cfg, 20, 4, available=int((fixed + 2.5 * per) / 0.8), gpu_free=None) == 2
    with pytest.raises(GeminiError, match="not enough memory") as info:
        plan_batch(demo, cfg, 20, 4, available=int(fixed / 2), gpu_free=None)
    assert "demo_study" in str(info.value) and "\n" not in str(info.value)
    # On a GPU the batch is planned on the GPU's free memory.
    assert plan_batch(demo, cfg, 20, 4, available=64 * GIB, gpu_free=int(1.5 * per / 0.8)) == 1


def test_predict_refuses_before_allocating(demo, predictor, monkeypatch, tmp_path, capsys):
    import gemini_cmr.core.memory as rc

    monkeypatch.setattr(rc, "available_memory", lambda: 64 * 1024**2)
    with pytest.raises(GeminiError, match="not enough memory"):
        predictor.predict(demo)
    # and through the CLI: exit 2, one line, nothing written
    from tests.reliability.conftest import assert_one_line_error, run_cli

    rc_, _, err, _ = run_cli(["super-resolve", DEMO, "--out", tmp_path / "o", "--quiet", "--device", "cpu"], capsys)
    assert_one_line_error(rc_, err, ("demo_study", "memory"))
    assert not (tmp_path / "o").exists()


def _fake_gpu(monkeypatch, fail_when):
    """run_stacks that raises CUDA OOM on the (pretend) GPU when `fail_when(batch)`; else runs on the CPU."""
    real = predict_mod.run_stacks
    calls = []

    def fake(model, placed, device, precision="float32", scale=1.0, out=None, flips=(), labels_only=False,
             context=None):
        calls.append((device.type, len(placed)))
        if device.type == "cuda" and fail_when(len(placed)):
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real(model, placed, torch.device("cpu"), precision, scale, out, flips, labels_only, context)

    monkeypatch.setattr(predict_mod, "run_stacks", fake)
    monkeypatch.setattr(predict_mod, "plan_batch", lambda study, cfg, n, bs, dev: bs)
    return calls


def _pretend_cuda(p: Predictor) -> Predictor:
    """A CUDA predictor on a machine without CUDA: its LR placement and output arrays as on the host (the
    GPU-only parts); what is under test is the out-of-memory recovery around `run_stacks`."""
    p.placement = "host"
    p.pinned_outputs = False
    return p


def test_cuda_oom_during_device_placement_places_on_the_host(demo, predictor, monkeypatch, caplog):
    """Out of GPU memory while placing the LR phases on the device: that chunk is placed on the host."""
    ref = Predictor(predictor.loaded, torch.device("cpu"), precision="float32").predict(demo, phases=[0, 1])
    p = Predictor(predictor.loaded, torch.device("cpu"), precision="float32")
    p.placement = "device"

    def oom(*a, **k):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 1.00 GiB")

    monkeypatch.setattr(predict_mod, "place_on_sr_grid_torch", oom)
    with caplog.at_level(logging.WARNING, logger="gemini_cmr.core.predict"):
        out = p.predict(demo, phases=[0, 1])
    assert any("placing on the host" in r.message for r in caplog.records)
    np.testing.assert_array_equal(out.sr_labels, ref.sr_labels)
    np.testing.assert_allclose(out.sr_image, ref.sr_image, atol=1e-5)


def test_cuda_oom_retries_with_smaller_batches(demo, predictor, monkeypatch, caplog):
    # float32 reference: the simulated CUDA predictor runs float32 ("auto" is bf16 only on CPUs)
    ref = Predictor(predictor.loaded, torch.device("cpu"), precision="float32").predict(demo, phases=[0, 1, 2, 3])
    p = _pretend_cuda(Predictor(predictor.loaded, torch.device("cuda"), batch_size=4))
    calls = _fake_gpu(monkeypatch, lambda b: b > 1)
    with caplog.at_level(logging.WARNING, logger="gemini_cmr.core.predict"):
        out = p.predict(demo, phases=[0, 1, 2, 3])
    assert calls[0] == ("cuda", 4) and ("cuda", 2) in calls and calls[-1] == ("cuda", 1)
    assert p.device.type == "cuda" and p.batch_size == 1
    assert any("out of memory" in r.message and "retrying" in r.message for r in caplog.records)
    np.testing.assert_allclose(out.sr_image, ref.sr_image, rtol=1e-5, atol=1e-4)
    assert (out.sr_labels == ref.sr_labels).mean() > 0.9999


def test_cuda_oom_falls_back_to_cpu(demo, predictor, monkeypatch, caplog):
    ref = Predictor(predictor.loaded, torch.device("cpu"), precision="float32").predict(demo, phases=[0, 5])
    p = _pretend_cuda(Predictor(predictor.loaded, torch.device("cuda"), batch_size=2))
    calls = _fake_gpu(monkeypatch, lambda b: True)
    with caplog.at_level(logging.WARNING, logger="gemini_cmr.core.predict"):
        out = p.predict(demo, phases=[0, 5])
    assert calls == [("cuda", 2), ("cuda", 1), ("cpu", 1), ("cpu", 1)]
    assert p.device.type == "cpu"
    assert any("falling back to the CPU" in r.message for r in caplog.records)
    np.testing.assert_allclose(out.sr_image, ref.sr_image, rtol=1e-5, atol=1e-4)


def test_cpu_oom_is_not_swallowed(demo, predictor, monkeypatch):
    p = Predictor(predictor.loaded, torch.device("cpu"), batch_size=2)

    def boom(*a, **k):
        raise torch.cuda.OutOfMemoryError("odd")

    monkeypatch.setattr(predict_mod, "run_stacks", boom)
    with pytest.raises(torch.cuda.OutOfMemoryError):
        p.predict(demo, phases=[0])
