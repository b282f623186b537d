"""The paper's comparison methods: networks, training through the shared trainer, tables, CLI."""

from __future__ import annotations

import csv
import io
import json
import math

import numpy as np
import pytest
import torch

from gemini_cmr.cli.main import main
from gemini_cmr.core.baselines.interpolation import interpolate_image, interpolate_labels
from gemini_cmr.core.baselines.models import ARCHS, BaselineConfig, BaselineGenerator
from gemini_cmr.core.baselines.registry import METHODS, Settings, load_method, train_method
from gemini_cmr.core.baselines.table2 import format_csv, format_markdown, run_table2
from gemini_cmr.core.baselines.translation import METHODS as TRANSLATORS
from gemini_cmr.core.baselines.translation import (
    TranslationTrainer,
    TranslatorAdapter,
    build,
    save_translator,
)
from gemini_cmr.core.errors import DataError, ModelError
from gemini_cmr.core.geometry import sr_grid
from gemini_cmr.core.study import Grid
from tests.toy_data import write_toy_dataset

TINY = Settings(max_steps=6, epochs=5, quick=True, depth=24, num_threads=1, amp="off")


@pytest.mark.parametrize("method", sorted(ARCHS))
def test_baseline_forward_shapes(method):
    cfg = BaselineConfig(method=method, depth=8, widths=(4, 8, 16), width=8, blocks=2)
    net = BaselineGenerator(cfg).eval()
    x = torch.rand(2, 8, 32, 32)
    img, seg = net(x)
    assert img.shape == (2, 8, 32, 32) and seg.shape == (2, 4, 8, 32, 32)
    if "image" not in cfg.tasks:
        assert torch.equal(img, x)  # seg-only: no super-resolution, the input back
    if "seg" not in cfg.tasks:
        assert not seg.any()  # image-only: everything background
    with pytest.raises(ValueError):
        net(torch.rand(1, 7, 32, 32))


def test_baseline_config_errors():
    with pytest.raises(ModelError):
        BaselineConfig(method="nope")
    with pytest.raises(ModelError):
        BaselineConfig.from_dict({"method": "unet-seg", "bogus": 1})


@pytest.mark.parametrize("method", [m for m, spec in METHODS.items() if spec.kind != "interp"])
def test_learned_method_trains_and_reloads(method, toy_data, tmp_path):
    events = []
    summary = train_method(method, toy_data, tmp_path / method, TINY, callback=events.append)
    assert summary["status"] == "done" and summary["step"] == 6
    losses = [e["loss"] for e in events if e["event"] == "step"]
    assert losses[-1] < losses[0], losses  # a few steps reduce the loss
    cfg = json.loads((tmp_path / method / "best" / "config.json").read_text())
    assert cfg["kind"] == ("gemini-gan" if METHODS[method].kind == "gemini" else "gemini-cmr-baseline")
    assert not list((tmp_path / method).rglob("*.pt"))
    lm = load_method(method, tmp_path / method / "best")
    x = torch.rand(1, 24, 32, 32)
    img, seg = lm.model(x)
    assert img.shape == x.shape and seg.shape == (1, 4, 24, 32, 32)
    if method != "gemini-gan":  # a baseline file is refused under another method's name
        other = "unet-img" if method != "unet-img" else "unet-seg"
        with pytest.raises(ModelError):
            load_method(other, tmp_path / method / "best")


def test_interpolation_labels_follow_image():
    rng = np.random.default_rng(0)
    aff = np.diag([2.0, 2.0, 8.0, 1.0])
    lr = Grid((5, 24, 24), aff)
    sr = sr_grid(lr)
    lab = np.zeros((5, 24, 24), np.uint8)
    lab[:, 6:18, 6:18] = 1
    lab[:, 10:14, 10:14] = 3
    img = lab.astype(np.float32) + rng.normal(0, 0.01, lab.shape).astype(np.float32)
    for order in (0, 1, 3):
        out = interpolate_labels(lab, lr, sr, order)
        assert out.shape == sr.shape and out.dtype == np.uint8
        assert set(np.unique(out)) == {0, 1, 3}
        # the label block is constant through-plane: every SR slice matches the nearest-neighbour one
        ref = interpolate_labels(lab, lr, sr, 0)
        assert np.mean(out == ref) > 0.97
        im = interpolate_image(img, lr, sr, order)
        assert im.shape == sr.shape and abs(float(im.mean()) - float(img.mean())) < 0.05


def test_table_writer_formats_mean_sd():
    rows = [{"subject": f"s{i}", "phase": ph, "dice3d_lv_cavity": v, "dice2d_lv_cavity": v,
             "psnr": 20.0 + i, "ssim": math.nan,
             **{f"dice{k}_{s}": math.nan for k in ("3d", "2d") for s in ("lv_myocardium", "rv_cavity")}}
            for i, v in enumerate((0.7, 0.9)) for ph in ("ED", "ES")]
    res = [{"method": "x", "label": "Method X", "rows": rows, "time_s": [0.1, 0.3], "params": 1234,
            "train": {"steps": 10, "seconds": 120.0}}]
    md = format_markdown(res)
    line = next(ln for ln in md.splitlines() if ln.startswith("| Method X | 2 |"))
    assert line.split(" | ")[2] == "0.80 (0.14)"  # mean 0.8, sample sd 0.1414
    assert "n/a" in line  # structures without values
    cost = [ln for ln in md.splitlines() if ln.startswith("| Method X | 20.50")][0]
    assert "20.50 (0.71)" in cost and "1,234" in cost and "0.200 (0.141)" in cost and "10 steps, 2.0 min" in cost
    table = list(csv.DictReader(io.StringIO(format_csv(res))))
    assert table[0]["dice3d_lv_cavity_ED_mean"] == "0.8" and table[0]["ssim_ED_mean"] == ""
    assert float(table[0]["dice3d_lv_cavity_ED_sd"]) == pytest.approx(0.141421, abs=1e-5)


def test_table2_end_to_end_and_reuse(toy_data, tmp_path):
    settings = Settings(max_steps=2, epochs=1, quick=True, depth=24, num_threads=1, amp="off")
    out = tmp_path / "bench"
    messages = []
    rep = run_table2(toy_data, out, ["nearest", "bspline", "unet-seg", "srgan-img"], settings, split="val",
                     say=messages.append)
    for name in ("table2.md", "table2.csv", "table2.json"):
        assert (out / name).is_file()
    res = {r["method"]: r for r in rep["results"]}
    assert res["nearest"]["params"] == 0 and res["unet-seg"]["params"] > 0
    assert all(math.isfinite(r["dice3d_lv_cavity"]) for r in res["bspline"]["rows"])
    assert all(math.isnan(r["psnr"]) for r in res["unet-seg"]["rows"])
    assert all(math.isnan(r["dice3d_lv_cavity"]) and math.isfinite(r["psnr"]) for r in res["srgan-img"]["rows"])
    assert "| U-Net (seg only) | 1 |" in rep["markdown"]
    messages.clear()
    run_table2(toy_data, out, ["unet-seg"], settings, split="val", say=messages.append)
    assert any("reusing" in m for m in messages)
    with pytest.raises(DataError):  # same run folder, other budget
        run_table2(toy_data, out, ["unet-seg"], Settings(max_steps=3, epochs=1, quick=True, depth=24, amp="off"),
                   split="val")


@pytest.mark.parametrize("method", TRANSLATORS)
def test_translators_train_and_adapt(method, tmp_path):
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    src = rng.uniform(0, 1, (4, 1, 32, 32)).astype(np.float32)
    tgt = (src ** 2 * 0.8).astype(np.float32)  # a fixed contrast change
    mask = np.ones_like(src)
    tr = TranslationTrainer(method, ch=4, blocks=1, lr=2e-3)
    losses = [tr.step(src, tgt, tgt, mask)["loss"] for _ in range(8)]
    assert losses[-1] < losses[0], losses
    save_translator(tmp_path / method, method, tr.G, {"model": {"ch": 4, "blocks": 1},
                                                     "normalisation": {"percentile": 99.5}})
    ad = TranslatorAdapter(tmp_path / method)
    image = rng.uniform(0, 100, (2, 3, 30, 26)).astype(np.float32)
    out = ad.adapt_array(image)
    assert out.shape == image.shape and np.all(np.isfinite(out))
    with pytest.raises(ModelError):
        build("nope")


def test_table3_end_to_end(tmp_path):
    splits = ["train"] * 4 + ["test"]
    target = write_toy_dataset(tmp_path / "target", n_subjects=5, seed=0, n_phases=2, lr_shape=(6, 32, 32),
                               splits=splits)
    source = write_toy_dataset(tmp_path / "source", n_subjects=5, seed=1, n_phases=2, lr_shape=(6, 32, 32),
                               splits=splits)
    from gemini_cmr.core.baselines.table3 import run_table3

    settings = Settings(max_steps=2, epochs=1, quick=True, depth=24, num_threads=1, amp="off")
    rep = run_table3(source, target, tmp_path / "out", ["none", "cyclegan", "munit"], settings)
    assert (tmp_path / "out" / "table3.md").is_file()
    labels = [r["label"] for r in rep["results"]]
    assert labels == ["No adaptation", "CycleGAN", "MUNIT"]
    assert all(math.isfinite(r["dice3d_lv_cavity"]) for res in rep["results"] for r in res["rows"])


@pytest.mark.parametrize("argv", [
    ["benchmark", "table2", "--data", "{missing}", "--out", "{tmp}"],
    ["benchmark", "table2", "--data", "{data}", "--out", "{tmp}", "--max-steps", "0"],
    ["benchmark", "table3", "--source", "{missing}", "--target", "{data}", "--out", "{tmp}"],
])
def test_cli_bad_input_exit_2(argv, toy_data, tmp_path, capsys):
    sub = {"missing": str(tmp_path / "nope"), "tmp": str(tmp_path / "out"), "data": str(toy_data)}
    assert main([a.format(**sub) for a in argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("gemini-cmr:")


def test_a_run_recorded_before_new_config_fields_is_reused(tmp_path):
    """benchmark_train.json written before TrainConfig gained a field (e.g. dice_weight) still matches."""
    import json

    from gemini_cmr.core.baselines.registry import train_config
    from gemini_cmr.core.baselines.table2 import ensure_trained

    s = Settings(quick=True, max_steps=3)
    run = tmp_path / "run"
    (run / "best").mkdir(parents=True)
    old = train_config("unet-seg", s).to_dict()
    for key in ("dice_weight", "init"):
        old.pop(key)
    (run / "benchmark_train.json").write_text(json.dumps({"status": "done", "steps": 3, "config": old}))
    said = []
    rec = ensure_trained("unet-seg", tmp_path / "no-data", run, s, said.append)
    assert rec["status"] == "done" and "reusing" in said[0]
    old["lr"] = 0.5  # a real difference is still refused
    (run / "last").mkdir()
    (run / "benchmark_train.json").write_text(json.dumps({"status": "done", "steps": 3, "config": old}))
    with pytest.raises(DataError, match="other settings"):
        ensure_trained("unet-seg", tmp_path / "no-data", run, s, said.append)
