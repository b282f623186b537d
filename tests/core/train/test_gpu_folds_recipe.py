"""recipes/gemini-acdc/gpu_folds.py: the configs it trains on a lent GPU are the CPU recipe's, and it packs what
`train cv` needs to evaluate the folds here."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.core.train.conftest import load_script

ROOT = Path(__file__).resolve().parents[3]


def _script():
    return load_script(ROOT / "recipes" / "gemini-acdc" / "gpu_folds.py")


def test_stage_configs_are_the_recipe_with_stage_two_continuing_stage_one(tmp_path):
    g = _script()
    one, two = g.stage_configs("scratch/s1", "/tmp/c", None)
    cpu = json.loads((ROOT / "recipes/gemini-acdc/cpu.json").read_text())
    dropped = json.loads((ROOT / "recipes/gemini-acdc/cpu_dropped.json").read_text())
    assert {k: v for k, v in one.items() if k != "cache_dir"} == {k: v for k, v in cpu.items() if k != "cache_dir"}
    assert two["init"] == "scratch/s1/{fold}/model" and dropped["init"] == "runs/cv-e1/{fold}/model"
    assert one["cache_dir"] == two["cache_dir"] == "/tmp/c"
    assert {k: v for k, v in two.items() if k not in ("init", "cache_dir")} == \
        {k: v for k, v in dropped.items() if k not in ("init", "cache_dir")}
    assert g.stage_configs("s", "c", 2)[1]["max_steps"] == 2
    # the candidate recipe: stage 1 from an ablation config, stage 2 continuing it as before
    ds = ROOT / "recipes/gemini-acdc/ablations/deep_supervision.json"
    one, two = g.stage_configs("runs/ds-cv-e1", "/tmp/c", None, ds)
    assert one["deep_supervision"] == 2 and "deep_supervision" not in cpu
    assert two["init"] == "runs/ds-cv-e1/{fold}/model" and "deep_supervision" not in two
    # the shipped recipe: both stages from its own configs, stage 2 continuing stage 1's folds
    s1 = ROOT / "recipes/gemini-acdc/ablations/steps2400_robust.json"
    s2 = ROOT / "recipes/gemini-acdc/ablations/steps2400_robust_dropped.json"
    one, two = g.stage_configs("runs/abl-steps2400-robust", "/tmp/c", None, s1, s2)
    robust = json.loads(s2.read_text())
    assert robust["init"] == "runs/abl-steps2400-robust/{fold}/model" == two["init"]
    assert two["augment"] == robust["augment"] and two["drop_slices"] == robust["drop_slices"]
    assert one["max_steps"] == json.loads(s1.read_text())["max_steps"] == 2400
    bad = tmp_path / "no_init.json"
    bad.write_text(json.dumps({**robust, "init": ""}))
    with pytest.raises(SystemExit, match="does not continue"):
        g.stage_configs("s", "c", None, s1, bad)


def test_fold_files_names_what_train_cv_reads_and_refuses_an_unfinished_fold(tmp_path):
    g = _script()
    run = tmp_path / "fold3"
    (run / "last").mkdir(parents=True)
    (run / "model").mkdir()
    for f in ("config.json", "last/state.json", "model/config.json", "model/model.safetensors"):
        (run / f).write_text("{}")
    assert [p.relative_to(run).as_posix() for p in g.fold_files(run)] == \
        ["config.json", "last/state.json", "model/config.json", "model/model.safetensors"]
    (run / "last" / "state.json").unlink()
    with pytest.raises(SystemExit, match="state.json"):
        g.fold_files(run)
    with pytest.raises(SystemExit, match="folds of 5"):
        g.main(["--data", "x", "--folds", "7", "--archive", str(tmp_path / "a.tar.gz")])
