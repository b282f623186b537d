from __future__ import annotations

import json

import pytest
import torch

from gemini_cmr.core.errors import ModelError
from gemini_cmr.core.models.gemini import GeminiConfig, GeminiGenerator
from gemini_cmr.core.models.store import file_sha256, load_model, model_files, save_model


def _model():
    torch.manual_seed(1)
    g = GeminiGenerator(GeminiConfig(depth=4, widths=(4, 8)))
    # non-trivial BN statistics
    g.train()
    g(torch.randn(3, 4, 16, 16))
    return g.eval()


def test_round_trip_identical_outputs(tmp_path):
    g = _model()
    weights = save_model(tmp_path / "m", g, {"training": {"seed": 3}})
    loaded = load_model(tmp_path / "m")
    assert loaded.model_id == file_sha256(weights)
    assert loaded.config["kind"] == "gemini-gan" and loaded.config["training"]["seed"] == 3
    x = torch.randn(2, 4, 16, 16)
    with torch.no_grad():
        a, b = g(x), loaded.generator(x)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])


def test_fp16_storage_and_file_pair(tmp_path):
    g = _model()
    save_model(tmp_path / "net.safetensors", g, half=True)
    assert (tmp_path / "net.json").exists()
    loaded = load_model(tmp_path / "net.safetensors")
    assert loaded.config["weights_dtype"] == "float16"
    x = torch.randn(1, 4, 16, 16)
    with torch.no_grad():
        assert torch.allclose(g(x)[0], loaded.generator(x)[0], atol=2e-2)


def test_refuses_pickle_files(tmp_path):
    for name in ("model.pt", "model.pth", "model.pkl"):
        (tmp_path / name).write_bytes(b"\x80\x04")
        with pytest.raises(ModelError, match="pickle"):
            load_model(tmp_path / name)


def test_validation_errors(tmp_path):
    g = _model()
    save_model(tmp_path / "m", g)
    cfg_path = tmp_path / "m" / "config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["kind"] = "vama"
    cfg_path.write_text(json.dumps(cfg))
    with pytest.raises(ModelError, match="unknown model kind"):
        load_model(tmp_path / "m")
    cfg["kind"] = "gemini-gan"
    cfg["model"]["colour"] = 1
    cfg_path.write_text(json.dumps(cfg))
    with pytest.raises(ModelError, match="unknown model config keys"):
        load_model(tmp_path / "m")
    del cfg["model"]["colour"]
    cfg["model"]["widths"] = [4, 16]
    cfg_path.write_text(json.dumps(cfg))
    with pytest.raises(ModelError, match="shape mismatch"):
        load_model(tmp_path / "m")
    cfg["model"]["widths"] = [4, 8, 16]
    cfg_path.write_text(json.dumps(cfg))
    with pytest.raises(ModelError, match="missing"):
        load_model(tmp_path / "m")
    (tmp_path / "m" / "model.safetensors").write_bytes(b"garbage")
    cfg["model"]["widths"] = [4, 8]
    cfg_path.write_text(json.dumps(cfg))
    with pytest.raises(ModelError, match="cannot read safetensors"):
        load_model(tmp_path / "m")
    with pytest.raises(ModelError, match="not found"):
        model_files(tmp_path / "nothing.safetensors")
