"""`gemini-cmr batch INPUT_LIST --out DIR`: super-resolve a cohort, one output folder per study.

INPUT_LIST is a text file with one study path per line (blank lines and lines starting with '#' are
skipped; relative paths are taken from the current folder, else from the list file's folder) or a folder
whose entries (NIfTI files, zips, study folders) are the studies. Each study goes to DIR/<name>/ with the
files of `gemini-cmr super-resolve` (name = file name without .nii.gz/.nii/.zip; repeated names get -2,
-3, ... in list order).

- A study that fails (unreadable file, bad geometry, ...) is reported with a one-line reason and the run
  goes on. DIR/batch_summary.csv and .json list every study: ok / failed / skipped, reason, seconds.
- Resume: a study whose DIR/<name>/run.json is complete is skipped (outputs are written atomically, so a
  run.json exists only for a finished study). Run the same command again after an interruption.
- Sharding: with RANK and WORLD_SIZE in the environment (as `torchrun` sets them), process r takes every
  WORLD_SIZE-th study starting at r, and writes batch_summary.rank<r>.csv/.json; on CUDA each process
  uses the GPU of its LOCAL_RANK (`--nproc_per_node` = the node's GPUs). No process group is
  needed, e.g. `torchrun --nproc_per_node 2 -m gemini_cmr.cli.main batch list.txt --out DIR --device cpu`
  (on CPUs, also give each process its share of the cores with --threads).

Exit status 0 when no study failed, 1 when some did, 2 for a bad INPUT_LIST or option.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import re
import sys
import time
from pathlib import Path

from gemini_cmr.core.errors import GeminiError

STUDY_SUFFIXES = (".nii.gz", ".nii", ".zip")


def register(subparsers, summary: str) -> None:
    p = subparsers.add_parser(
        "batch", help=summary, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    p.add_argument(
        "input_list", type=Path, help="text file with one study path per line, or a folder of studies"
    )
    p.add_argument("--out", type=Path, required=True, help="output folder (one subfolder per study)")
    p.add_argument("--model", type=Path, default=None, help="Gemini-GAN model (default: bundled)")
    p.add_argument("--adapter", type=Path, default=None, help="V-AMA adapter")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    p.add_argument("--phases", default="all", help="'all' (default), 'ed,es' or a list such as '0,7'")
    p.add_argument("--mesh-format", default="stl", metavar="FORMATS", help="comma-separated, default stl")
    p.add_argument("--threads", type=int, default=None, help="torch threads per process")
    p.add_argument(
        "--redo", action="store_true", help="process studies that already have a complete run.json"
    )
    p.add_argument("--sr-dtype", choices=("float32", "int16"), default="float32",
                   help="SR image storage: float32 (default) or int16 (scaled 16-bit integers: half the file, values within half a step of range/65535)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


# --- pure helpers (tested without torch) ----------------------------------------------------------------
def read_input_list(path: Path) -> list[Path]:
    """Study paths from a list file or a folder, in order. Raises GeminiError when unusable."""
    path = Path(path).expanduser()
    if path.is_dir():
        items = sorted(p for p in path.iterdir() if not p.name.startswith("."))
        return [p for p in items if p.is_dir() or p.name.lower().endswith(STUDY_SUFFIXES)]
    if not path.is_file():
        raise GeminiError("input list not found", path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise GeminiError(f"cannot read the input list ({exc.__class__.__name__})", path) from None
    out = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        p = Path(line).expanduser()
        if not p.is_absolute() and not p.exists() and (path.parent / p).exists():
            p = path.parent / p
        out.append(p)
    return out


def output_names(studies: list[Path]) -> list[str]:
    """One folder name per study: the file name without its study suffix, made unique in list order."""
    names, seen = [], {}
    for p in studies:
        name = p.name
        for suf in STUDY_SUFFIXES:
            if name.lower().endswith(suf):
                name = name[: -len(suf)]
                break
        name = re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "study"
        seen[name] = seen.get(name, 0) + 1
        names.append(name if seen[name] == 1 else f"{name}-{seen[name]}")
    return names


def shard(items: list, rank: int, world_size: int) -> list:
    """Every world_size-th item starting at rank."""
    if world_size < 1 or not 0 <= rank < world_size:
        raise GeminiError(f"invalid RANK {rank} / WORLD_SIZE {world_size}")
    return items[rank::world_size]


def rank_and_world() -> tuple[int, int]:
    try:
        return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
    except ValueError:
        raise GeminiError("RANK and WORLD_SIZE must be integers") from None


def shard_device(device: str, rank: int, world_size: int) -> str:
    """The device of this shard: with several processes (torchrun) and CUDA, each process takes the GPU
    of its LOCAL_RANK (else its RANK) modulo the GPUs it can see, so a node's GPUs share the cohort
    instead of all processes piling onto the first; otherwise `device` unchanged."""
    if world_size <= 1 or device not in ("auto", "cuda"):
        return device
    import torch

    if not torch.cuda.is_available() or torch.cuda.device_count() < 1:
        return device
    try:
        local = int(os.environ.get("LOCAL_RANK", rank))
    except ValueError:
        raise GeminiError("LOCAL_RANK must be an integer") from None
    return f"cuda:{local % torch.cuda.device_count()}"


def is_complete(folder: Path) -> bool:
    """True when folder/run.json is a finished run's record (written last, atomically)."""
    try:
        info = json.loads((Path(folder) / "run.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(info, dict) and "outputs" in info and "phases" in info


def one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    msg = text[0] if text else ""
    return msg if isinstance(exc, GeminiError) else f"{type(exc).__name__}: {msg}".rstrip(": ")


def write_summary(out: Path, rows: list[dict], suffix: str = "") -> tuple[Path, Path]:
    from gemini_cmr.core.io.atomic import atomic_write_text

    fields = ["study", "output", "status", "reason", "seconds"]
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: r.get(k, "") for k in fields})
    counts = {s: sum(r["status"] == s for r in rows) for s in ("ok", "failed", "skipped")}
    csv_path, json_path = out / f"batch_summary{suffix}.csv", out / f"batch_summary{suffix}.json"
    atomic_write_text(csv_path, buf.getvalue())
    atomic_write_text(json_path, json.dumps({"counts": counts, "studies": rows}, indent=2) + "\n")
    return csv_path, json_path


class Bar:
    """A one-line progress bar on stderr (a new line per study when stderr is not a terminal)."""

    def __init__(self, total: int, enabled: bool = True, prefix: str = ""):
        self.total, self.enabled, self.prefix = total, enabled, prefix
        self.t0 = time.perf_counter()
        self.tty = sys.stderr.isatty()

    def __call__(self, done: int, text: str) -> None:
        if not self.enabled:
            return
        el = time.perf_counter() - self.t0
        eta = el / done * (self.total - done) if done else 0.0
        filled = int(20 * done / max(1, self.total))
        line = (
            f"{self.prefix}[{'#' * filled}{'.' * (20 - filled)}] {done}/{self.total} "
            f"{el:6.0f}s ETA {eta:5.0f}s  {text}"
        )
        print(
            ("\r" + line[:150].ljust(150)) if self.tty else line,
            end="" if self.tty else "\n",
            file=sys.stderr,
            flush=True,
        )

    def close(self) -> None:
        if self.enabled and self.tty:
            print(file=sys.stderr)


# --- the command ------------------------------------------------------------------------------------------
def run(args: argparse.Namespace) -> int:
    from gemini_cmr.core import mesh as meshlib

    studies = read_input_list(args.input_list)
    if not studies:
        raise GeminiError("no studies in the input list", args.input_list)
    try:
        formats = meshlib.parse_formats(args.mesh_format)
    except ValueError as exc:
        raise GeminiError(str(exc)) from None
    rank, world = rank_and_world()
    names = output_names(studies)
    mine = shard(list(zip(studies, names)), rank, world)
    out = args.out.expanduser()
    if out.exists() and not out.is_dir():
        raise GeminiError("output path exists and is not a folder", out)
    out.mkdir(parents=True, exist_ok=True)
    suffix = f".rank{rank}" if world > 1 else ""
    prefix = f"rank {rank}/{world} " if world > 1 else ""

    import torch

    from gemini_cmr.core.engine import SuperResolver
    from gemini_cmr.core.io import load_study
    from gemini_cmr.core.outputs import write_outputs

    if args.threads:
        torch.set_num_threads(args.threads)
    device = shard_device(args.device, rank, world)
    if device.startswith("cuda:"):
        torch.cuda.set_device(torch.device(device))
    engine = None
    rows: list[dict] = []
    bar = Bar(len(mine), not args.quiet, prefix)
    t_start = time.perf_counter()
    n_done = 0
    try:
        for i, (study_path, name) in enumerate(mine):
            dest = out / name
            row = {
                "study": str(study_path),
                "output": str(dest),
                "status": "ok",
                "reason": "",
                "seconds": 0.0,
            }
            t0 = time.perf_counter()
            if not args.redo and is_complete(dest):
                row.update(status="skipped", reason="complete run.json already there")
            else:
                try:
                    if engine is None:
                        engine = SuperResolver(model=args.model, adapter=args.adapter, device=device)
                    study = load_study(study_path)
                    result = engine.run(study, phases=args.phases, meshes="ed_es")
                    extra = {
                        "arguments": {
                            "study": str(study_path),
                            "out": str(dest),
                            "batch": str(args.input_list),
                            "rank": rank,
                            "world_size": world,
                        }
                    }
                    write_outputs(result, dest, formats, False, extra_info=extra, sr_dtype=args.sr_dtype)
                    n_done += 1
                except (KeyboardInterrupt, MemoryError):
                    raise
                except GeminiError as exc:
                    if engine is None:  # the model itself could not be loaded: nothing can run
                        raise
                    row.update(status="failed", reason=one_line(exc))
                except Exception as exc:  # noqa: BLE001 - a bad study must not stop the cohort
                    row.update(status="failed", reason=one_line(exc))
            row["seconds"] = round(time.perf_counter() - t0, 3)
            rows.append(row)
            bar(
                i + 1, f"{row['status']} {name}" + (f": {row['reason']}" if row["status"] == "failed" else "")
            )
    finally:
        bar.close()
        done_names = {r["study"] for r in rows}
        pending = [
            {
                "study": str(p),
                "output": str(out / n),
                "status": "pending",
                "reason": "not reached",
                "seconds": 0.0,
            }
            for p, n in mine
            if str(p) not in done_names
        ]
        csv_path, _ = write_summary(out, rows + pending, suffix)
    wall = time.perf_counter() - t_start
    counts = {s: sum(r["status"] == s for r in rows) for s in ("ok", "failed", "skipped")}
    for r in rows:
        if r["status"] == "failed":
            why = r["reason"] if r["reason"].startswith(r["study"]) else f"{r['study']}: {r['reason']}"
            print(f"gemini-cmr: failed: {why}", file=sys.stderr)
    rate = f", {3600 * n_done / wall:.0f} studies/hour" if n_done else ""
    print(
        f"{prefix}{counts['ok']} ok, {counts['failed']} failed, {counts['skipped']} skipped of {len(mine)} "
        f"in {wall:.1f} s{rate}; summary {csv_path}"
    )
    return 1 if counts["failed"] else 0
