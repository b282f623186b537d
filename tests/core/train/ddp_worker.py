"""Run by tests/core/train/test_ddp.py under torchrun: train a tiny model, write this rank's weight digest."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from gemini_cmr.core.train.gemini import GeminiTrainer, TrainConfig

if __name__ == "__main__":
    data, out, cfg_json = sys.argv[1], Path(sys.argv[2]), sys.argv[3]
    cfg = TrainConfig.from_dict(json.loads(cfg_json))
    summary = GeminiTrainer(cfg, data, out, "cpu").run()
    (out / f"rank{os.environ['RANK']}.json").write_text(json.dumps(summary))
