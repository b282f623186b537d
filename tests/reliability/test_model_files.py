"""Model files are safetensors + JSON only: pickle files are refused and a pickle with an executable
payload is never executed, whichever door it is offered through (Predictor.load, the model store,
Adapter.load, `super-resolve --model/--adapter`). Configs are validated into one-line ModelErrors."""

from __future__ import annotations

import json
import os
import pickle
import shutil
from pathlib import Path

import pytest
import torch

from gemini_cmr.core.errors import ModelError
from gemini_cmr.core.models.store import BUNDLED_MODEL_DIR
from tests.reliability.conftest import assert_one_line_error, run_cli


class Payload:
    """Unpickling this creates the folder `marker`: proof that code ran."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.mkdir, (self.marker,))


def _evil_files(tmp: Path) -> dict[str, Path]:
    """The same executable payload in every shape a user might hand over as a model."""
    marker = tmp / "PWNED"
    payload = {"weights": Payload(marker)}
    out: dict[str, Path] = {}
    for suffix in (".pt", ".pth", ".pkl", ".ckpt", ".bin"):
        p = tmp / f"evil{suffix}"
        torch.save(payload, p) if suffix in (".pt", ".pth", ".ckpt") else p.write_bytes(pickle.dumps(payload))
        out[suffix] = p
    # A pickle disguised as safetensors, with a valid config beside it.
    disguised = tmp / "disguised"
    disguised.mkdir()
    torch.save(payload, disguised / "model.safetensors")
    shutil.copy(BUNDLED_MODEL_DIR / "config.json", disguised / "config.json")
    out["disguised-folder"] = disguised
    shutil.copy(disguised / "model.safetensors", tmp / "solo.safetensors")
    shutil.copy(BUNDLED_MODEL_DIR / "config.json", tmp / "solo.json")
    out["disguised-file"] = tmp / "solo.safetensors"
    # A V-AMA adapter folder with a pickled adapter.safetensors.
    adapter = tmp / "adapter"
    adapter.mkdir()
    torch.save(payload, adapter / "adapter.safetensors")
    (adapter / "config.json").write_text(json.dumps({"kind": "vama", "version": 1,
                                                     "normalisation": {"target_scale": 1.0}, "model": {}}))
    out["disguised-adapter"] = adapter
    return out


@pytest.fixture
def evil(tmp_path, monkeypatch):
    """The payload files, with every unpickling entry point booby-trapped (a call fails the test)."""
    files = _evil_files(tmp_path)
    # Sanity: the payload really executes when unpickled (else the test could not fail).
    with open(files[".pkl"], "rb") as f:
        pickle.load(f)
    assert (tmp_path / "PWNED").is_dir()
    os.rmdir(tmp_path / "PWNED")
    calls = []

    def trap(name):
        def f(*a, **kw):
            calls.append(name)
            raise AssertionError(f"{name} called while loading a model")
        return f

    monkeypatch.setattr(torch, "load", trap("torch.load"))
    monkeypatch.setattr(pickle, "load", trap("pickle.load"))
    monkeypatch.setattr(pickle, "loads", trap("pickle.loads"))
    yield files, tmp_path / "PWNED", calls
    assert calls == []
    assert not (tmp_path / "PWNED").exists(), "the pickle payload was executed"


MODEL_KEYS = [".pt", ".pth", ".pkl", ".ckpt", ".bin", "disguised-folder", "disguised-file"]


@pytest.mark.parametrize("key", MODEL_KEYS)
def test_predictor_and_store_never_unpickle(key, evil):
    from gemini_cmr.core.models.store import load_model, load_tensors
    from gemini_cmr.core.predict import Predictor

    files, marker, _ = evil
    with pytest.raises(ModelError) as info:
        Predictor.load(files[key], device="cpu")
    msg = str(info.value)
    assert "\n" not in msg and str(files[key].name) in msg
    if key.startswith("."):
        assert "pickle" in msg
    with pytest.raises(ModelError):
        load_model(files[key])
    target = files[key] / "model.safetensors" if files[key].is_dir() else files[key]
    with pytest.raises(ModelError):
        load_tensors(target)


@pytest.mark.parametrize("key", [".pt", ".pkl", "disguised-adapter"])
def test_adapter_load_never_unpickles(key, evil):
    from gemini_cmr.core.models.vama import Adapter

    files, _, _ = evil
    with pytest.raises(ModelError) as info:
        Adapter.load(files[key])
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("key", [".pt", ".ckpt", "disguised-folder", "disguised-file"])
def test_super_resolve_model_option_never_unpickles(key, evil, demo_study, tmp_path, capsys):
    files, _, _ = evil
    out = tmp_path / "out"
    rc, _, err, dt = run_cli(["super-resolve", demo_study, "--out", out, "--model", files[key], "--quiet",
                              "--device", "cpu"], capsys)
    assert_one_line_error(rc, err, (files[key].name,), dt)
    assert not out.exists()


@pytest.mark.parametrize("key", [".pt", "disguised-adapter"])
def test_super_resolve_adapter_option_never_unpickles(key, evil, demo_study, tmp_path, capsys):
    files, _, _ = evil
    out = tmp_path / "out"
    rc, _, err, dt = run_cli(["super-resolve", demo_study, "--out", out, "--adapter", files[key], "--quiet",
                              "--device", "cpu"], capsys)
    assert_one_line_error(rc, err, (files[key].name,), dt)
    assert not out.exists()


# --- config validation -----------------------------------------------------------------------------------
def _edit(cfg: dict, what: str) -> dict | str:
    cfg = json.loads(json.dumps(cfg))
    if what == "unknown-model-key":
        cfg["model"]["colour"] = "red"
    elif what == "shape-mismatch":
        cfg["model"]["widths"] = [8, 16, 32, 64, 64]
    elif what == "wrong-kind":
        cfg["kind"] = "vama"
    elif what == "no-kind":
        del cfg["kind"]
    elif what == "future-version":
        cfg["version"] = 99
    elif what == "no-model-section":
        del cfg["model"]
    elif what == "model-not-object":
        cfg["model"] = [1, 2]
    elif what == "bad-encoder":
        cfg["model"]["encoder"] = "transformer"
    elif what == "negative-depth":
        cfg["model"]["depth"] = -1
    elif what == "wrong-type":
        cfg["model"]["widths"] = "wide"
    elif what == "not-json":
        return "{not json"
    elif what == "json-list":
        return "[]"
    return cfg


CONFIG_CASES = ["unknown-model-key", "shape-mismatch", "wrong-kind", "no-kind", "future-version",
                "no-model-section", "model-not-object", "bad-encoder", "negative-depth", "wrong-type",
                "not-json", "json-list"]


@pytest.mark.parametrize("what", CONFIG_CASES)
def test_config_validation(what, tmp_path):
    from gemini_cmr.core.predict import Predictor

    model = tmp_path / "model"
    shutil.copytree(BUNDLED_MODEL_DIR, model)
    cfg = json.loads((model / "config.json").read_text())
    edited = _edit(cfg, what)
    (model / "config.json").write_text(edited if isinstance(edited, str) else json.dumps(edited))
    with pytest.raises(ModelError) as info:
        Predictor.load(model, device="cpu")
    msg = str(info.value)
    assert "\n" not in msg and "model" in msg


def test_weights_missing_tensor(tmp_path):
    from safetensors.torch import load_file, save_file

    from gemini_cmr.core.predict import Predictor

    model = tmp_path / "model"
    shutil.copytree(BUNDLED_MODEL_DIR, model)
    tensors = load_file(str(model / "model.safetensors"))
    tensors.pop(sorted(tensors)[0])
    tensors["extra.weight"] = torch.zeros(3)
    save_file(tensors, str(model / "model.safetensors"))
    with pytest.raises(ModelError, match="missing 1 tensors.*unexpected 1"):
        Predictor.load(model, device="cpu")


@pytest.mark.parametrize("cut", [0, 7, 1000])
def test_truncated_safetensors(cut, tmp_path):
    from gemini_cmr.core.predict import Predictor

    model = tmp_path / "model"
    shutil.copytree(BUNDLED_MODEL_DIR, model)
    data = (model / "model.safetensors").read_bytes()
    (model / "model.safetensors").write_bytes(data[:cut])
    with pytest.raises(ModelError):
        Predictor.load(model, device="cpu")
