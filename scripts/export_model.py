"""Export a training run's checkpoint as a float16 model folder (safetensors + config.json), recording the
command that made it, e.g. the bundled models:

    .venv/bin/python scripts/export_model.py runs/phantom-a2d-stage3/best resources/models/gemini-phantom \
        --command recipes/gemini-phantom/train.sh
    .venv/bin/python scripts/export_model.py runs/gemini-phantom-stage5/best resources/models/gemini-phantom-sac \
        --command recipes/gemini-phantom-sac/train.sh
"""

from __future__ import annotations

import argparse

from gemini_cmr.core.models.store import load_model, save_model  # noqa: E402

if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("checkpoint", help="a run's checkpoint folder, e.g. RUN/best")
    ap.add_argument("dest", help="model folder to write")
    ap.add_argument("--command", required=True, help="the command that trained it (recorded in config.json)")
    args = ap.parse_args()
    m = load_model(args.checkpoint)
    cfg = {k: v for k, v in m.config.items() if k not in ("kind", "version", "model", "weights_dtype")}
    cfg["training"]["command"] = args.command
    save_model(args.dest, m.generator, cfg, half=True)
    print("exported", args.dest)
