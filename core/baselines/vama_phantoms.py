"""The V-AMA evidence on shifted-domain phantoms: no adaptation vs V-AMA vs in-domain.

`python -m gemini_cmr.core.baselines.vama_phantoms --work DIR [--domain sg-like] [--subjects 40] [--phases 20]
 [--epochs N | --max-steps N] [--model MODEL] [--device auto] [--seed S]`

1. writes two phantom datasets with `core.synth` (skipped when already there): the training domain
   `ukdhp-like` (WORK/target) and the shifted domain (WORK/source);
2. trains a V-AMA adapter source -> target on their `train` splits (WORK/run; resumed if interrupted);
3. evaluates the frozen Gemini-GAN model (`--model`, default the bundled one) on the `test` splits with
   `core.evaluation.paired` (as `gemini-cmr evaluate`): target domain (in-domain reference), source without adaptation, source
   with the adapter; and runs the intensity check of `core.vama.appearance`;
4. writes WORK/vama_benchmark.md (tables) and WORK/vama_benchmark.json (everything).

The numbers mean something only with a trained Gemini-GAN model (the bundled model's config says whether
it is a placeholder; the report repeats its `training` note).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
import time
from pathlib import Path

from gemini_cmr.core.study import STRUCTURE_SHORT as SHORT

log = logging.getLogger(__name__)

ROWS = ("in-domain (ukdhp-like)", "no adaptation", "V-AMA")


def _dataset(folder: Path, n: int, seed: int, domain: str, phases: int) -> Path:
    from gemini_cmr.core.synth.dataset import write_dataset

    if (folder / "manifest.json").is_file():
        log.info("using the existing dataset %s", folder)
        return folder
    write_dataset(folder, n, seed, domain, n_phases=phases,
                  command=f"python -m gemini_cmr.core.baselines.vama_phantoms (domain {domain}, seed {seed})")
    return folder


def _cell(entry: dict, digits: int = 2) -> str:
    m, s = entry.get("mean"), entry.get("sd")
    if m is None or not math.isfinite(m):
        return "n/a"
    return f"{m:.{digits}f} ({s:.{digits}f})"


def results_table(evals: dict[str, dict]) -> str:
    cols = [f"{SHORT[st]} {t}" for st in SHORT for t in ("ED", "ES")] + ["PSNR ED", "PSNR ES", "SSIM ED", "SSIM ES"]
    lines = ["| method | n | " + " | ".join(cols) + " |", "|" + "---|" * (len(cols) + 2)]
    for row, res in evals.items():
        s = res["summary"]
        cells = [_cell(s["dice_3d"][st][t]) for st in SHORT for t in ("ED", "ES")]
        cells += [_cell(s["psnr"][t]) for t in ("ED", "ES")] + [_cell(s["ssim"][t]) for t in ("ED", "ES")]
        lines.append(f"| {row} | {res['n']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m gemini_cmr.core.baselines.vama_phantoms", description=__doc__.splitlines()[0])
    p.add_argument("--work", type=Path, required=True, help="working folder (datasets, run, report)")
    p.add_argument("--domain", default="sg-like", help="the shifted phantom domain (default sg-like)")
    p.add_argument("--subjects", type=int, default=40, help="subjects per domain (default 40)")
    p.add_argument("--phases", type=int, default=20)
    p.add_argument("--epochs", type=int, default=20, help="V-AMA epochs per stage")
    p.add_argument("--max-steps", type=int, default=None, help="V-AMA steps per stage cap")
    p.add_argument("--model", default=None, help="Gemini-GAN model (default: bundled)")
    p.add_argument("--device", default="auto")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--limit", type=int, default=None, help="evaluate at most this many test subjects")
    args = p.parse_args(argv)

    from gemini_cmr.core.engine import SuperResolver
    from gemini_cmr.core.errors import GeminiError
    from gemini_cmr.core.evaluation.paired import evaluate_dataset
    from gemini_cmr.core.io.jsonio import jsonable
    from gemini_cmr.core.log import setup_logging
    from gemini_cmr.core.models import store
    from gemini_cmr.core.models.vama import Adapter
    from gemini_cmr.core.train.vama import TrainSettings, read_domain, train_vama
    from gemini_cmr.core.vama.appearance import compare, table

    setup_logging(1)
    work = args.work
    try:
        t0 = time.perf_counter()
        target = _dataset(work / "target", args.subjects, 1000 + args.seed, "ukdhp-like", args.phases)
        source = _dataset(work / "source", args.subjects, 2000 + args.seed, args.domain, args.phases)
        run = work / "run"
        if not (run / "adapter.safetensors").is_file():
            train_vama(source, target, run, gemini=args.model, resume=(run / "checkpoints" / "last.json").is_file(),
                       settings=TrainSettings(epochs=args.epochs, max_steps=args.max_steps, seed=args.seed,
                                              device=args.device, measure=False))  # evaluated below
        t_train = time.perf_counter() - t0
        plain = SuperResolver(model=args.model, device=args.device)
        adapted = SuperResolver(model=args.model, adapter=str(run), device=args.device)
        evals = {
            ROWS[0]: evaluate_dataset(target, plain, "test", args.limit),
            ROWS[1]: evaluate_dataset(source, plain, "test", args.limit),
            ROWS[2]: evaluate_dataset(source, adapted, "test", args.limit),
        }
        appearance = compare(Adapter.load(run), read_domain(source, "source", "test"),
                             read_domain(target, "target", "test"))
    except GeminiError as exc:
        print(f"benchmark: {exc}", file=sys.stderr)
        return 2
    weights, cfg_path = store.model_files(args.model or store.BUNDLED_MODEL_DIR)
    model_note = json.loads(Path(cfg_path).read_text()).get("training", {}).get("note", "")
    lv = {row: evals[row]["summary"]["dice_3d"]["lv_cavity"] for row in ROWS}
    gap = {t: lv[ROWS[0]][t]["mean"] - lv[ROWS[2]][t]["mean"] for t in ("ED", "ES")}
    report = [
        f"# V-AMA on shifted-domain phantoms ({args.domain} -> ukdhp-like)", "",
        f"Command: `python -m gemini_cmr.core.baselines.vama_phantoms {' '.join(argv if argv is not None else sys.argv[1:])}`",
        f"Gemini-GAN model {store.file_sha256(weights)[:12]}" + (f" ({model_note})" if model_note else ""),
        f"adapter {Adapter.load(run).adapter_id[:12]}; test subjects per domain: {evals[ROWS[0]]['n']}; "
        f"datasets + training {t_train / 60:.1f} min", "",
        "Dice (3D volumetric), PSNR (dB) and SSIM of the SR image at ED and ES; mean (sd).", "",
        results_table(evals), "",
        f"LV cavity 3D Dice gap, in-domain minus V-AMA: ED {gap['ED']:+.3f}, ES {gap['ES']:+.3f} "
        f"(target: within 0.05).", "",
        "LR intensities as Gemini-GAN sees them (each study / its 99.5th percentile), test split:", "",
        table(appearance), "",
    ]
    text = "\n".join(report)
    from gemini_cmr.core.io.atomic import atomic_write_text

    atomic_write_text(work / "vama_benchmark.md", text)
    atomic_write_text(work / "vama_benchmark.json", json.dumps(
        jsonable({"evaluations": evals, "appearance": appearance, "lv_gap": gap, "model_note": model_note}), indent=1))
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
