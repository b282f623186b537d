"""Train several one-stage cross-validation fold runs side by side on a lent GPU; evaluate them here.

For the ablation rows (`ablations/*.json`, one change against `cpu.json`): a run of this recipe's models
keeps a GPU busy a fraction of the time (the stacks are augmented on the CPU), so N runs share the GPU and
the machine's cores in N processes. Each job is one config, one output folder and one fold, trained as
`gemini-cmr train cv --only K` trains it and exported the same way; the jobs start in the order given, at
most `--parallel` at a time, and a job starts only while the measured pace says it ends before
`--deadline-s`. At the deadline the running jobs are interrupted (each writes its last checkpoint) and
everything goes into one archive: a finished fold as `gpu_folds.fold_files` packs it (evaluated here by
`train cv --only K`), an unfinished one whole (the same command resumes it here). The archive's
`runs/gpu_runs.json` (also beside the archive) lists each job's status, steps and seconds, the GPU and torch version.

Preparation here, the command there and the evaluation here are `gpu_folds.py`'s (its docstring), with:

    python3 recipes/gemini-acdc/gpu_runs.py --data gpu-in/acdc --archive $OUT/runs.tar.gz --parallel 8 \\
        --deadline-s 450 --job recipes/gemini-acdc/cpu.json:runs/gpu-cpu:1 \\
        --job recipes/gemini-acdc/ablations/deep_supervision.json:runs/gpu-deep_supervision:1 ...

A job's control (the same fold of `cpu.json`) belongs in the same archive: the rows compare runs trained
with the same arithmetic.
"""

from __future__ import annotations

import argparse
import json
import signal
import subprocess
import sys
import tarfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from gpu_folds import fold_files  # noqa: E402


def parse_job(text: str) -> tuple[Path, Path, int]:
    """CONFIG:OUT:FOLD -> (config, run folder of the fold, fold)."""
    try:
        config, out, fold = text.rsplit(":", 2)
        k = int(fold)
    except ValueError:
        raise SystemExit(f"--job {text!r}: CONFIG:OUT:FOLD, e.g. recipes/gemini-acdc/cpu.json:runs/gpu-cpu:1") from None
    if not 0 <= k < 5 or not Path(config).is_file():
        raise SystemExit(f"--job {text!r}: fold of 5 and an existing config")
    return Path(config), Path(out) / f"fold{k}", k


def job_config(config: Path, cache_dir: str, steps: int | None = None) -> dict:
    cfg = json.loads(config.read_text(encoding="utf-8"))
    cfg["cache_dir"] = cache_dir
    if steps:
        cfg["max_steps"] = int(steps)
    return cfg


def train_one(config: Path, run: Path, k: int, data: str, device: str, cache_dir: str,
              steps: int | None = None) -> None:
    """One job in this process: `train cv --only K`'s training and export of one fold."""
    from gemini_cmr.core.train.cv import DEFAULT_INFERENCE, _export, _train_fold

    cfg = job_config(config, cache_dir, steps)
    run.mkdir(parents=True, exist_ok=True)
    _train_fold(cfg, f"acdc:{data}", run, k, 5, device, lambda msg: print(f"{run}: {msg}", flush=True))
    _export(run, {**DEFAULT_INFERENCE, "roi_mm": float(cfg.get("roi_mm") or DEFAULT_INFERENCE["roi_mm"])})


def _warm_one(data: str, cache_dir: str, roi_mm: float, sids: list[str]) -> int:
    from gemini_cmr.core.train.lr_data import load_lr_split

    return len(load_lr_split("acdc", data, "val", cache_dir=cache_dir, roi_mm=roi_mm, holdout=sids))


def warm_cache(data: str, cache_dir: str, roi_mms: set[float], workers: int) -> None:
    """Fill the training cache once, in `workers` processes (the jobs then only read it)."""
    from gemini_cmr.core.train.lr_data import lr_subjects

    sids = [s.sid for s in lr_subjects("acdc", data)]
    chunks = [sids[i::workers] for i in range(workers)]
    with ProcessPoolExecutor(workers) as pool:
        list(pool.map(_warm_one, *zip(*[(data, cache_dir, r, c) for r in roi_mms for c in chunks if c])))


def progress(run: Path) -> tuple[int, int]:
    """(step, total) of a run's last checkpoint; (0, 0) before the first."""
    try:
        meta = json.loads((run / "last" / "state.json").read_text(encoding="utf-8"))
        return int(meta["step"]), int(meta["total_steps"])
    except (OSError, ValueError, KeyError, TypeError):
        return 0, 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True, help="ACDC training folder (the heart boxes of crop_acdc.py)")
    ap.add_argument("--job", action="append", default=[], help="CONFIG:OUT:FOLD (repeat; started in this order)")
    ap.add_argument("--archive", required=True, help="the .tar.gz to write (paths relative to the repository)")
    ap.add_argument("--parallel", type=int, default=6, help="jobs at a time (default 6)")
    ap.add_argument("--deadline-s", type=float, default=450.0, help="interrupt and pack after this (default 450)")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--cache-dir", default="/tmp/acdc-cache")
    ap.add_argument("--steps", type=int, default=None, help="steps per job instead of the config's (dry run)")
    ap.add_argument("--one", nargs=3, metavar=("CONFIG", "RUN", "FOLD"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.one:
        train_one(Path(args.one[0]), Path(args.one[1]), int(args.one[2]), args.data, args.device, args.cache_dir,
                  args.steps)
        return 0
    t0 = time.monotonic()
    jobs = [parse_job(j) for j in args.job]
    if not jobs:
        raise SystemExit("no --job")
    configs = {c: job_config(c, args.cache_dir, args.steps) for c, _, _ in jobs}
    warm_cache(args.data, args.cache_dir, {float(c.get("roi_mm") or 0) for c in configs.values()}, 16)
    print(f"cache ready in {time.monotonic() - t0:.0f} s", flush=True)
    queue = list(jobs)
    running: dict[Path, tuple[subprocess.Popen, float]] = {}  # run -> (process, start time)
    report: dict[str, dict] = {}

    def record(run: Path, status: str, started: float) -> None:
        step, total = progress(run)
        report[str(run)] = {"status": status, "step": step, "total_steps": total,
                            "seconds": round(time.monotonic() - started, 1)}

    while queue or running:
        now = time.monotonic()
        for run, (proc, started) in list(running.items()):
            if proc.poll() is not None:
                record(run, "finished" if proc.returncode == 0 else f"failed ({proc.returncode})", started)
                print(f"{run}: {report[str(run)]}", flush=True)
                del running[run]
        # seconds per step of the running jobs, measured at their checkpoints
        steps = {r: progress(r)[0] for r in running}
        rates = [(now - s) / steps[r] for r, (_, s) in running.items() if steps[r] >= 50]
        while queue and len(running) < args.parallel:
            config, run, k = queue[0]
            total = int(configs[config].get("max_steps") or 0)
            need = total * max(rates) if rates and total else 0.0
            if now - t0 + need > args.deadline_s:
                print(f"{run}: not started ({need:.0f} s needed, {args.deadline_s - (now - t0):.0f} s left)")
                report[str(run)] = {"status": "not started"}
                queue.pop(0)
                continue
            queue.pop(0)
            proc = subprocess.Popen([sys.executable, __file__, "--data", args.data, "--device", args.device,
                                     "--cache-dir", args.cache_dir, "--archive", args.archive,
                                     *(["--steps", str(args.steps)] if args.steps else []),
                                     "--one", str(config), str(run), str(k)])
            running[run] = (proc, time.monotonic())
        if now - t0 > args.deadline_s and running:
            for proc, _ in running.values():
                proc.send_signal(signal.SIGINT)
            for run, (proc, started) in running.items():
                try:
                    proc.wait(60)
                except subprocess.TimeoutExpired:
                    proc.kill()
                record(run, "interrupted", started)
            running.clear()
        time.sleep(2)
    files: list[Path] = []
    for _, run, _ in jobs:
        status = report.get(str(run), {}).get("status")
        if status == "finished":
            files += fold_files(run)
        elif status == "interrupted":
            files += [f for f in sorted(run.rglob("*")) if f.is_file()]
    try:
        import torch

        gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"
        versions = {"torch": torch.__version__, "gpu": gpu}
    except ImportError:
        versions = {}
    archive = Path(args.archive)
    archive.parent.mkdir(parents=True, exist_ok=True)
    summary = archive.with_name("gpu_runs.json")
    summary.write_text(json.dumps({"jobs": report, **versions, "parallel": args.parallel,
                                   "seconds": round(time.monotonic() - t0, 1)}, indent=1), encoding="utf-8")
    tmp = archive.with_name(archive.name + ".part")
    with tarfile.open(tmp, "w:gz") as tar:
        tar.add(summary, arcname="runs/gpu_runs.json")
        for f in files:
            tar.add(f, arcname=str(f))
    tmp.replace(archive)
    print(json.dumps(report, indent=1), flush=True)
    print(f"{archive}: {len(files)} files", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
