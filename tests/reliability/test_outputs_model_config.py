"""A model config is validated whole when it is loaded.

Unknown top-level keys, `normalisation.percentile` 1000 or "abc", `normalisation: "zscore"` or
`inference.roi_mm: "big"` must not load and then end in tracebacks during the run (in the app a "task failed"
with the traceback): one line naming config.json and the key, exit 2, before any compute. A hypothesis fuzz sets random types and values at every key of the bundled model's
config: the config is either accepted, and then usable by everything that reads it at run time, or refused
with a one-line `ModelError`; nothing else. The shipped models and the recipes' exports still load."""

from __future__ import annotations

import copy
import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gemini_cmr.core.errors import ModelError
from gemini_cmr.core.models import store
from gemini_cmr.core.models.store import BUNDLED_MODEL_DIR
from tests.reliability.conftest import DEMO, assert_one_line_error, run_cli

BASE = json.loads((BUNDLED_MODEL_DIR / "config.json").read_text())
ACDC = BUNDLED_MODEL_DIR.parent / "gemini-acdc"


def _set(cfg: dict, path: str, value) -> dict:
    cfg = copy.deepcopy(cfg)
    node = cfg
    *parents, last = path.split(".")
    for key in parents:
        if not isinstance(node.get(key), dict):
            node[key] = {}
        node = node[key]
    node[last] = value
    return cfg


def _model_with(tmp_path: Path, cfg: dict | str) -> Path:
    model = tmp_path / "model"
    model.mkdir(exist_ok=True)
    weights = model / "model.safetensors"
    if not weights.exists():
        weights.symlink_to(BUNDLED_MODEL_DIR / "model.safetensors")
    (model / "config.json").write_text(cfg if isinstance(cfg, str) else json.dumps(cfg))
    return model


CLI_CASES = {
    "percentile-1000": ("normalisation.percentile", 1000, "normalisation.percentile"),
    "percentile-text": ("normalisation.percentile", "abc", "normalisation.percentile"),
    "percentile-nan": ("normalisation.percentile", float("nan"), "normalisation.percentile"),
    "normalisation-string": ("normalisation", "zscore", "'normalisation'"),
    "normalisation-method": ("normalisation.method", "zscore", "normalisation.method"),
    "normalisation-extra-key": ("normalisation.scale", 2, "'normalisation'"),
    "roi-text": ("inference.roi_mm", "big", "inference.roi_mm"),
    "roi-negative": ("inference.roi_mm", -5, "inference.roi_mm"),
    "component-by": ("inference.heart_component_by", "colour", "inference.heart_component_by"),
    "keep-largest-string": ("inference.keep_largest_heart_component", "yes", "keep_largest_heart_component"),
    "unknown-top-level": ("colour", "red", "'colour'"),
    "weights-dtype": ("weights_dtype", "int8", "weights_dtype"),
    "training-list": ("training", [1, 2], "'training'"),
    "licence-number": ("licence", 3, "'licence'"),
    "depth-float": ("model.depth", 64.5, "model.depth"),
    "depth-huge": ("model.depth", 10 ** 12, "model.depth"),
    "widths-huge": ("model.widths", [100000, 100000], "model.widths"),
    "mix-kernel-text": ("model.mix_kernel", "3", "model.mix_kernel"),
    "residual-text": ("model.residual_image", "yes", "model.residual_image"),
    "version-bool": ("version", True, "version"),
}


@pytest.mark.parametrize("case", sorted(CLI_CASES))
def test_bad_config_values_are_one_line_errors_before_the_compute(case, tmp_path, capsys):
    key, value, expect = CLI_CASES[case]
    model = _model_with(tmp_path, _set(BASE, key, value))
    out = tmp_path / "out"
    rc, _, err, seconds = run_cli(["super-resolve", DEMO, "--out", out, "--model", model, "--device", "cpu",
                                   "--quiet"], capsys)
    assert_one_line_error(rc, err, ("config.json", expect), seconds)
    assert not out.exists()


def test_adapter_unknown_normalisation_names_the_file(tmp_path, capsys):
    """Before: "unknown normalisation 'zscore' in the V-AMA config", without the file."""
    from gemini_cmr.core.models import vama

    tiny = {"base_channels": 4, "depth": 2, "latent_channels": 4, "disc_channels": 4}
    folder = vama.save_adapter(tmp_path / "adapter", vama.VAMA(tiny),
                               {"gemini_model_id": "0" * 64, "normalisation": {"target_scale": 300.0}})
    cfg = json.loads((folder / "config.json").read_text())
    cases = {"norm": ("model", {**cfg["model"], "norm": "zscore"}, "unknown normalisation"),
             "top": ("colour", "red", "'colour'"),
             "scale": ("normalisation", {"target_scale": "big"}, "target_scale"),
             "percentile": ("normalisation", {"target_scale": 300.0, "percentile": 1000}, "percentile"),
             "huge": ("model", {**cfg["model"], "base_channels": 1024, "depth": 8}, "implausibly large")}
    for key, value, expect in cases.values():
        (folder / "config.json").write_text(json.dumps({**cfg, key: value}))
        with pytest.raises(ModelError) as info:
            vama.Adapter.load(folder)
        msg = str(info.value)
        assert "\n" not in msg and str(folder / "config.json") in msg and expect in msg, msg
    (folder / "config.json").write_text(json.dumps({**cfg, "model": {**cfg["model"], "norm": "zscore"}}))
    rc, _, err, seconds = run_cli(["super-resolve", DEMO, "--out", tmp_path / "out", "--adapter", folder,
                                   "--device", "cpu", "--quiet"], capsys)
    assert_one_line_error(rc, err, ("config.json", "unknown normalisation"), seconds)


def test_shipped_models_and_recipe_exports_load(tmp_path):
    from gemini_cmr.core.models.store import load_model, save_model

    for cfg_path in sorted((BUNDLED_MODEL_DIR.parent).glob("*/config.json")):
        store.read_config(cfg_path)
    # What recipes/gemini-acdc/train.sh and core.train.cv._export write: the loaded config without the
    # identity keys, a command, a licence and an inference section.
    m = load_model(ACDC)
    cfg = {k: v for k, v in m.config.items() if k not in ("kind", "version", "model", "weights_dtype")}
    cfg["training"]["command"] = "recipes/gemini-acdc/train.sh --gpu ACDC runs/x"
    cfg["training"]["checkpoint"] = "last (fixed step count; nothing chosen on the held-out fold)"
    cfg["licence"] = "research only"
    cfg["inference"] = {"roi_mm": 176, "keep_largest_heart_component": True, "heart_component_by": "myocardium"}
    save_model(tmp_path / "export", m.generator, cfg, half=True)
    assert load_model(tmp_path / "export").config["inference"]["roi_mm"] == 176
    # What training checkpoints write (core.train.gemini GeminiTrainer._model_config).
    save_model(tmp_path / "ckpt", m.generator, {"training": {"seed": 0, "step": 3, "config": {}},
                                                 "normalisation": {"method": "lr_percentile", "percentile": 99.5}})
    load_model(tmp_path / "ckpt")


# --- fuzz -----------------------------------------------------------------------------------------------------
def _leaf_paths(d: dict, prefix: str = "") -> list[str]:
    out = []
    for k, v in d.items():
        out.append(prefix + k)
        if isinstance(v, dict) and k in ("model", "normalisation", "inference"):
            out += _leaf_paths(v, prefix + k + ".")
    return out


KEYS = sorted(set(_leaf_paths(BASE)) | {"inference", "inference.roi_mm", "inference.keep_largest_heart_component",
                                        "inference.heart_component_by", "licence", "evaluation", "colour",
                                        "normalisation.scale", "model.tp_knots", "model.colour"})
JSON_LEAF = (st.none() | st.booleans() | st.integers(min_value=-(10 ** 15), max_value=10 ** 15)
             | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=12)
             | st.sampled_from(["lr_percentile", "size", "myocardium", "float16", "acquired-2d", "bilinear"]))
JSON_VALUE = st.recursive(JSON_LEAF, lambda inner: st.lists(inner, max_size=4)
                          | st.dictionaries(st.text(max_size=6), inner, max_size=3), max_leaves=6)
SPECIAL = st.sampled_from([0, 1, 2, 3, 16, 64, 99.5, 100, 100.0001, 176, -1, 0.0, 1e300, [8, 16], [0, 16],
                           [16, 32, 64, 128, 128], {}, [], "", True, False])
EDITS = st.lists(st.tuples(st.sampled_from(KEYS), st.one_of(JSON_VALUE, SPECIAL) | st.just("<delete>")),
                 min_size=1, max_size=3)

FUZZ_OUTCOMES: dict[str, int] = {"accepted": 0, "refused": 0}


def _use_like_a_run(cfg: dict) -> None:
    """What reads the config during a run (core.predict, core.postprocess, core.memory), on small arrays."""
    from gemini_cmr.core.memory import estimate_memory  # noqa: F401  (imported as a run does)
    from gemini_cmr.core.models.gemini import GeminiConfig
    from gemini_cmr.core.models.preprocess import DEFAULT_PERCENTILE, intensity_scale
    from gemini_cmr.core.postprocess import heart_roi, postprocess_labels

    norm = cfg.get("normalisation", {})
    scale = intensity_scale(np.arange(1000, dtype=np.float32).reshape(10, 10, 10),
                            float(norm.get("percentile", DEFAULT_PERCENTILE)))
    assert math.isfinite(scale) and scale > 0
    roi_mm = float((cfg.get("inference") or {}).get("roi_mm") or 0)
    labels = np.zeros((1, 4, 16, 16), np.uint8)
    labels[0, 1:3, 4:9, 4:9] = 2
    if roi_mm > 0:
        heart_roi(labels[0], (1.25, 1.25), roi_mm)
    postprocess_labels(labels, cfg)
    GeminiConfig.from_dict(cfg["model"])


@settings(max_examples=300, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
@given(EDITS)
def test_fuzz_model_config(tmp_path_factory, edits):
    cfg = copy.deepcopy(BASE)
    for key, value in edits:
        if value == "<delete>":
            node = cfg
            *parents, last = key.split(".")
            for k in parents:
                node = node.get(k) if isinstance(node, dict) else None
            if isinstance(node, dict):
                node.pop(last, None)
        else:
            cfg = _set(cfg, key, value)
    path = tmp_path_factory.mktemp("cfg") / "config.json"
    path.write_text(json.dumps(cfg))
    try:
        accepted = store.read_config(path)
    except ModelError as exc:
        msg = str(exc)
        assert "\n" not in msg and msg.startswith(str(path)), msg
        FUZZ_OUTCOMES["refused"] += 1
        return
    FUZZ_OUTCOMES["accepted"] += 1
    _use_like_a_run(accepted)
    shutil.rmtree(path.parent, ignore_errors=True)


def test_fuzz_reached_both_outcomes():
    if not any(FUZZ_OUTCOMES.values()):
        pytest.skip("run together with test_fuzz_model_config")
    assert FUZZ_OUTCOMES["accepted"] > 10 and FUZZ_OUTCOMES["refused"] > 10, FUZZ_OUTCOMES


def test_accepted_edits_load_with_the_weights(tmp_path):
    """Values the schema accepts outside the architecture load with the bundled weights (Predictor.load)."""
    from gemini_cmr.core.predict import Predictor

    for key, value in (("normalisation.percentile", 99), ("inference.roi_mm", None), ("inference.roi_mm", 150.5),
                       ("inference.heart_component_by", "size"), ("licence", "x"), ("evaluation", {"a": [1]}),
                       ("weights_dtype", "float32")):
        Predictor.load(_model_with(tmp_path, _set(BASE, key, value)), device="cpu")
