"""`core.vama.appearance`: the intensity-level check of an adapter (used by the V-AMA benchmark)."""

from __future__ import annotations

import numpy as np
import torch

from gemini_cmr.core.train.vama import TrainSettings, train_vama
from gemini_cmr.core.vama.appearance import compare, main, table
from gemini_cmr.core.vama.domains import read_domain

SMALL = {"base_channels": 4, "depth": 2, "latent_channels": 4, "disc_channels": 8}


def test_compare_and_command(domains, tmp_path, capsys):
    torch.set_num_threads(1)
    run = train_vama(*domains, tmp_path / "run", model_cfg=SMALL,
                     settings=TrainSettings(epochs=1, max_steps=2, steps_per_epoch=2, batch_size=4, crop=24))
    from gemini_cmr.core.models.vama import Adapter

    res = compare(Adapter.load(run), read_domain(domains[0], "s"), read_domain(domains[1], "t"))
    for row in ("target", "source, no adaptation", "source, V-AMA"):
        assert np.isfinite(res[row]["w1_to_target"]) and res[row]["lv_cavity"] > res[row]["lv_myocardium"]
    assert res["target"]["w1_to_target"] < res["source, no adaptation"]["w1_to_target"]
    assert table(res).count("\n") == 4
    assert main(["--adapter", str(run), "--source", str(domains[0]), "--target", str(domains[1]),
                 "--split", "train"]) == 0
    assert "| source, V-AMA |" in capsys.readouterr().out
    assert main(["--adapter", str(tmp_path / "none"), "--source", str(domains[0]), "--target",
                 str(domains[1])]) == 2
