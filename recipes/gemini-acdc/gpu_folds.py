"""Train cross-validation folds of the ACDC recipe's two stages on a lent GPU; evaluate them here.

The fold evaluation runs the whole pipeline on the full-field studies (112 MB of ED/ES frames, more than
travels to the GPU machine), so only the training runs there: for each fold, stage 1 (`cpu.json`) and then
stage 2 (`cpu_dropped.json`, its `init` that fold's stage-1 model), each exported as `gemini-cmr train cv`
exports it. What `train cv` needs to skip the training and evaluate here (`foldK/config.json`,
`foldK/last/state.json`, `foldK/model/`) goes into one archive. The training data on the GPU machine are
the 176 mm heart boxes of `crop_acdc.py` (34 MB): the recipe's `roi_mm` trains on those same boxes, so the
folds are the CPU recipe's (up to the GPU's arithmetic).

Here, once (gpu-in/ listed in .git/info/exclude; nibabel is the one package the GPU image lacks):

    .venv/bin/python recipes/gemini-acdc/crop_acdc.py ../shared/data/acdc/training gpu-in/acdc
    python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 -d gpu-in/whl nibabel==5.4.2

There (the device tool's `run`, carry ["gpu-in"]):

    pip install -q --no-index --no-deps --target /tmp/site gpu-in/whl/*.whl && mkdir -p /tmp/pkg && \\
    ln -s "$PWD" /tmp/pkg/gemini_cmr && PYTHONPATH=/tmp/site:/tmp/pkg PYTHONUNBUFFERED=1 \\
    python3 recipes/gemini-acdc/gpu_folds.py --data gpu-in/acdc --folds 3,4 --archive $OUT/folds.tar.gz

Here, after (FILES_AT: where the run tool put $OUT's files), then the CPU evaluation of every fold:

    tar -xzf FILES_AT/folds.tar.gz
    gemini-cmr train cv --data acdc:../shared/data/acdc/training --config recipes/gemini-acdc/cpu.json \\
        --out runs/cv-e1 --only 0,1,2,3,4
    gemini-cmr train cv --data acdc:../shared/data/acdc/training --config recipes/gemini-acdc/cpu_dropped.json \\
        --out runs/abl-continue600-dropped --only 0,1,2,3,4

`--steps N` trains N steps per stage instead of the recipe's (a dry run of the script on the CPU).
`--stage1-config FILE` trains stage 1 with another config (e.g. `ablations/deep_supervision.json`, the candidate
recipe to cross-validate; give it its own `--stage1-out` / `--stage2-out`, evaluated here with that config);
`--stage2-config FILE` stage 2 (its `init` "<run>/{fold}/model" is pointed at `--stage1-out`). The shipped
recipe's folds:

    python3 recipes/gemini-acdc/gpu_folds.py --data gpu-in/acdc --folds 1 \
        --stage1-config recipes/gemini-acdc/ablations/steps2400_robust.json --stage1-out runs/abl-steps2400-robust \
        --stage2-config recipes/gemini-acdc/ablations/steps2400_robust_dropped.json \
        --stage2-out runs/abl-steps2400-robust-dropped --archive $OUT/folds.tar.gz
"""

from __future__ import annotations

import argparse
import json
import sys
import tarfile
import time
from pathlib import Path

RECIPES = Path(__file__).resolve().parent
STAGE1, STAGE2 = RECIPES / "cpu.json", RECIPES / "cpu_dropped.json"


def stage_configs(stage1_out: str, cache_dir: str, steps: int | None, stage1: Path = STAGE1,
                  stage2: Path = STAGE2) -> tuple[dict, dict]:
    """The two stages' configs: the recipe's (stage 1 from `stage1`, e.g. an ablation of `cpu.json`; stage 2
    from `stage2`), with the cache on the machine, stage 2's `init` ("<run>/{fold}/model") in `stage1_out`,
    and `steps` (when given) as the step count."""
    one, two = (json.loads(Path(p).read_text(encoding="utf-8")) for p in (stage1, stage2))
    init = str(two.get("init", ""))
    if not init.endswith("/{fold}/model"):
        raise SystemExit(f"{stage2}: its init {init!r} does not continue a stage-1 run's {{fold}}/model")
    two["init"] = str(Path(stage1_out) / "{fold}" / "model")
    for cfg in (one, two):
        cfg["cache_dir"] = cache_dir
        if steps:
            cfg["max_steps"] = int(steps)
    return one, two


def fold_files(run: Path) -> list[Path]:
    """What `train cv` reads of a trained and exported fold to skip its training and evaluate it."""
    files = [run / "config.json", run / "last" / "state.json", *sorted((run / "model").iterdir())]
    missing = [str(f) for f in files if not f.is_file()]
    if missing:
        raise SystemExit(f"fold run {run} lacks {', '.join(missing)}")
    return files


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True, help="ACDC training folder (the heart boxes of crop_acdc.py)")
    ap.add_argument("--folds", default="3,4", help="comma-separated folds of 5 (default 3,4)")
    ap.add_argument("--stage1-out", default="runs/cv-e1", help="stage 1's run folder (default runs/cv-e1)")
    ap.add_argument("--stage2-out", default="runs/abl-continue600-dropped",
                    help="stage 2's run folder (default runs/abl-continue600-dropped)")
    ap.add_argument("--archive", required=True, help="the .tar.gz to write (paths relative to the repository)")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--cache-dir", default="/tmp/acdc-cache")
    ap.add_argument("--steps", type=int, default=None, help="steps per stage instead of the recipe's (dry run)")
    ap.add_argument("--stage1-config", type=Path, default=STAGE1,
                    help="stage 1's config (default cpu.json; e.g. ablations/deep_supervision.json)")
    ap.add_argument("--stage2-config", type=Path, default=STAGE2,
                    help="stage 2's config (default cpu_dropped.json; its init is pointed at --stage1-out)")
    args = ap.parse_args(argv)

    from gemini_cmr.core.train.cv import DEFAULT_INFERENCE, _export, _train_fold

    folds = [int(k) for k in args.folds.split(",") if k.strip()]
    if not folds or any(not 0 <= k < 5 for k in folds):
        raise SystemExit(f"--folds {args.folds!r}: folds of 5, e.g. 3,4")
    one, two = stage_configs(args.stage1_out, args.cache_dir, args.steps, args.stage1_config, args.stage2_config)
    data = f"acdc:{args.data}"
    files: list[Path] = []
    for k in folds:
        for cfg, out in ((one, args.stage1_out), (two, args.stage2_out)):
            run = Path(out) / f"fold{k}"
            run.mkdir(parents=True, exist_ok=True)
            t0 = time.perf_counter()
            _train_fold(cfg, data, run, k, 5, args.device, lambda msg: print(msg, flush=True))
            _export(run, {**DEFAULT_INFERENCE, "roi_mm": float(cfg.get("roi_mm") or DEFAULT_INFERENCE["roi_mm"])})
            print(f"{run}: trained and exported in {time.perf_counter() - t0:.0f} s", flush=True)
            files += fold_files(run)
    archive = Path(args.archive)
    archive.parent.mkdir(parents=True, exist_ok=True)
    tmp = archive.with_name(archive.name + ".part")
    with tarfile.open(tmp, "w:gz") as tar:
        for f in files:
            tar.add(f, arcname=str(f))
    tmp.replace(archive)
    print(f"{archive}: {len(files)} files of folds {args.folds}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
