"""`gemini-cmr batch INPUT_LIST --out DIR`: super-resolve a cohort, one output folder per study.

INPUT_LIST is a text file with one study path per line (blank lines and lines starting with '#' are
skipped; relative paths are taken from the current folder, else from the list file's folder) or a folder
whose entries (NIfTI files, zips, study folders) are the studies. Each study goes to DIR/<name>/ with the
files of `gemini-cmr super-resolve`. The name comes from the study's path relative to the list file's
folder (or the input folder; the studies' common folder for studies outside it), folders joined by '_',
without .nii.gz/.nii/.zip: A/study.nii.gz -> A_study. It does not depend on the order or the other
entries of the list; two studies that would share a name get a short hash of their path added.

- Long-axis cines (--long-axis auto, the default): found per study as `super-resolve` finds them (UK Biobank and
  M&Ms-2 files beside it, the long-axis series of a DICOM study) and used; each study's run.json records them
  (`long_axis`: used, or ignored with the reason, also among its warnings). --long-axis off: none.
- A study that fails (unreadable file, bad geometry, ...) is reported with a one-line reason and the run
  goes on. DIR/batch_summary.csv and .json list every study: ok / failed / skipped, reason, seconds,
  whether its phenotypes are plausible, whether its labels passed the automatic quality checks (`core.qc`:
  "passed" or "failed: " and the checks), and its warnings (also printed on stderr). DIR/batch_review.html
  shows every study's qc.png (its ED and ES slices with the labels' outlines), those that failed a quality
  check or have implausible phenotypes first.
- Resume: a study is skipped only when DIR/<name>/run.json (written last, so present only for a finished
  study) records the same input (resolved path, size and modification time of the file or of the files of
  the folder), the same model (path and sha256 of the weights; the bundled models' for the default),
  adapter and options (--phases, --mesh-format, --sr-dtype, --dicom, --dicom-compression, --no-motion-correction,
  --tta/--tta-ed-es, --long-axis) and the long-axis files found beside it, and every output it lists still exists.
  Results of an older input or other options are redone in place; a folder holding another study's
  results is left alone and this study gets its own (name + hash). Run the same command again after an
  interruption.
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
import hashlib
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
    p.add_argument("--sr-dtype", choices=("auto", "float32", "int16"), default="auto",
                   help="SR image storage: int16 (scaled 16-bit integers: half the file, values within half a step of "
                        "range/65534), float32, or auto (default: int16 for real studies, float32 for phantoms)")
    from gemini_cmr.cli.super_resolve import add_dicom_options, add_motion_option

    add_dicom_options(p)
    add_motion_option(p)
    p.add_argument("--long-axis", choices=("auto", "off"), default="auto",
                   help="auto (default): each study's long-axis cines as `super-resolve` finds them (UK Biobank "
                        "la_2ch/3ch/4ch and M&Ms-2 <id>_LA_* beside it, the long-axis series of a DICOM study), "
                        "recorded in its run.json long_axis; off: none")
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


def _stem(name: str) -> str:
    for suf in STUDY_SUFFIXES:
        if name.lower().endswith(suf):
            return name[: -len(suf)]
    return name


def _clean(part: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", part).strip("._")


def path_hash(path: str | Path, n: int = 8) -> str:
    """A short, stable hash of a study's absolute path (its output name's tie-breaker)."""
    return hashlib.sha256(os.path.abspath(os.path.expanduser(str(path))).encode()).hexdigest()[:n]


def output_names(studies: list[Path], root: Path | None = None) -> list[str]:
    """One folder name per study, from its path relative to `root` (default: the studies' common folder;
    a study outside `root` is taken relative to the common folder of all): the folders and the file name
    without its study suffix joined by '_' (A/study.nii.gz -> A_study). Names that would repeat get
    '-<hash of the path>', so a name never depends on the list's order."""
    paths = [Path(os.path.abspath(os.path.expanduser(str(p)))) for p in studies]
    if not paths:
        return []
    common = Path(os.path.commonpath([str(p.parent) for p in paths]))
    base = Path(os.path.abspath(os.path.expanduser(str(root)))) if root is not None else common
    if not all(base in p.parents for p in paths):
        base = common
    names = []
    for p in paths:
        parts = list(p.relative_to(base).parts)
        parts[-1] = _stem(parts[-1])
        names.append("_".join(c for c in (_clean(x) for x in parts) if c) or "study")
    counts: dict[str, int] = {}
    for n in names:
        counts[n] = counts.get(n, 0) + 1
    return [n if counts[n] == 1 else f"{n}-{path_hash(p)}" for n, p in zip(names, paths)]


def list_root(input_list: Path) -> Path:
    """The folder names are relative to: the input folder, or the list file's folder."""
    p = Path(input_list).expanduser()
    return p if p.is_dir() else p.parent


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
    return _run_record(folder) is not None


def _run_record(folder: Path) -> dict | None:
    try:
        info = json.loads((Path(folder) / "run.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return info if isinstance(info, dict) and "outputs" in info and "phases" in info else None


def resume_key(study: Path, model_key: dict, options: dict) -> dict:
    """What a finished study's run.json must record for it to be skipped: the input's fingerprint
    (`core.outputs.input_fingerprint`), the model and adapter (`model_identity`), the options, and with
    `--long-axis auto` the fingerprints of the long-axis files found beside the study (`find_long_axis_files`;
    those inside a study folder or DICOM study are part of its own fingerprint)."""
    from gemini_cmr.core.outputs import input_fingerprint

    key = {"input": input_fingerprint(study) or {"path": os.path.abspath(study)}, **model_key,
           "options": dict(options)}
    if options.get("long_axis", "auto") == "auto" and not Path(study).expanduser().is_dir():
        from gemini_cmr.core.longaxis import find_long_axis_files

        found = [input_fingerprint(p) for p in find_long_axis_files(study)]
        if found:
            key["long_axis_inputs"] = found
    return key


def model_identity(model: Path | None, adapter: Path | None) -> dict:
    """The requested model and adapter: resolved path and sha256 of the weights; for the default model
    (`model` None) the sha256 of every bundled model (the one used depends on the study)."""
    from gemini_cmr.core.models import store
    from gemini_cmr.core.resources import resources_dir

    out: dict = {}
    if model is None:
        bundled = sorted((resources_dir() / "models").glob("*/model.safetensors"))
        out["model"] = {"path": "default", "sha256": sorted(store.file_sha256(w) for w in bundled)}
    else:
        weights, _ = store.model_files(Path(model).expanduser())
        out["model"] = {"path": str(weights.resolve()), "sha256": [store.file_sha256(weights)]}
    if adapter is None:
        out["adapter"] = None
    else:
        from gemini_cmr.core.models.vama import _resolve

        weights, _ = _resolve(Path(adapter).expanduser())
        out["adapter"] = {"path": str(weights.resolve()), "sha256": store.file_sha256(weights)}
    return out


def resume_state(folder: Path, key: dict) -> tuple[str, str]:
    """("missing" | "complete" | "stale" | "other", reason) of `folder` for the study with `key`:
    missing = no finished run there; complete = the same input, model and options, every output present
    (skip it); stale = this study's results, but from another input version, model or options, or with
    outputs missing (redo in place); other = another study's results (leave them alone)."""
    info = _run_record(folder)
    if info is None:
        return "missing", ""
    old = info.get("resume_key")
    if not isinstance(old, dict):
        recorded = (info.get("input") or {}).get("path") or (info.get("arguments") or {}).get("study")
        if recorded and os.path.realpath(str(recorded)) != key["input"].get("path"):
            return "other", f"holds the results of {recorded}"
        return "stale", "run.json does not record the input's fingerprint (older version)"
    old_input, new_input = old.get("input") or {}, key["input"]
    if old_input.get("path") != new_input.get("path"):
        return "other", f"holds the results of {old_input.get('path')}"
    changed = [k for k in ("size_bytes", "mtime_ns", "files") if old_input.get(k) != new_input.get(k)]
    if changed:
        return "stale", "the input changed since (" + ", ".join(changed) + ")"
    old_options = {"long_axis": "auto", **(old.get("options") or {})}  # runs before --long-axis: none found
    if old_options != {"long_axis": "auto", **key["options"]}:
        diff = sorted(k for k in set(old_options) | set(key["options"])
                      if old_options.get(k) != key["options"].get(k))
        return "stale", "other options (" + ", ".join(diff) + ")"
    if old.get("long_axis_inputs", []) != key.get("long_axis_inputs", []):
        return "stale", "the long-axis files beside the study changed"
    used = (info.get("model") or {}).get("id")
    if old.get("model", {}).get("path") != key["model"]["path"] or used not in key["model"]["sha256"]:
        return "stale", "made with another model"
    if old.get("adapter") != key["adapter"]:
        return "stale", "made with another adapter"
    missing = [o for o in info.get("outputs") or [] if not (Path(folder) / o).is_file()]
    if missing:
        return "stale", f"{len(missing)} output(s) missing, e.g. {missing[0]}"
    return "complete", ""


def one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    msg = text[0] if text else ""
    return msg if isinstance(exc, GeminiError) else f"{type(exc).__name__}: {msg}".rstrip(": ")


def quality_text(qc: dict | None) -> str:
    """The summary's `quality_checks` cell: "passed", "failed: NAME, ..." (`core.qc`), "" when not run."""
    from gemini_cmr.core.qc import failed_names

    if not qc:
        return ""
    failed = failed_names(qc)
    return "failed: " + ", ".join(failed) if failed else "passed"


def write_summary(out: Path, rows: list[dict], suffix: str = "") -> tuple[Path, Path]:
    from gemini_cmr.core.io.atomic import atomic_write_text

    fields = ["study", "output", "status", "reason", "seconds", "plausible", "quality_checks", "warnings"]
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: r.get(k, "") for k in fields})
    counts = {s: sum(r["status"] == s for r in rows) for s in ("ok", "failed", "skipped")}
    csv_path, json_path = out / f"batch_summary{suffix}.csv", out / f"batch_summary{suffix}.json"
    atomic_write_text(csv_path, buf.getvalue())
    atomic_write_text(json_path, json.dumps({"counts": counts, "studies": rows}, indent=2) + "\n")
    atomic_write_text(out / f"batch_review{suffix}.html", review_page(out, rows))
    return csv_path, json_path


def needs_a_look(row: dict) -> bool:
    """A study whose labels failed a quality check or whose phenotypes are implausible."""
    return str(row.get("quality_checks", "")).startswith("failed") or row.get("plausible") == "false"


def review_page(out: Path, rows: list[dict]) -> str:
    """`batch_review.html`: every study's `qc.png` with its status, quality checks and warnings, the studies
    that need a look first, then the rest, then those that failed or were not reached (no image)."""
    import html

    order = sorted(range(len(rows)), key=lambda i: (rows[i].get("status") not in ("ok", "skipped"),
                                                    not needs_a_look(rows[i]), i))
    look = sum(needs_a_look(r) for r in rows)
    parts = ["<!doctype html><meta charset='utf-8'><title>gemini-cmr batch review</title>",
             "<style>body{font-family:sans-serif;background:#111;color:#ddd}img{max-width:100%}"
             "div{margin:0 0 18px}.flag{color:#f66}.ok{color:#7d7}</style>",
             f"<h1>{len(rows)} studies, {look} to look at first</h1>"]
    for i in order:
        r = rows[i]
        flag = needs_a_look(r)
        folder = Path(str(r.get("output", "")))
        try:
            rel = folder.relative_to(out).as_posix()
        except ValueError:
            rel = folder.as_posix()
        cls = "flag" if flag or r.get("status") not in ("ok", "skipped") else "ok"
        verdict = r.get("quality_checks") or r.get("status", "")
        parts.append(f"<div><b>{html.escape(str(r.get('study', '')))}</b> "
                     f"<span class='{cls}'>{html.escape(str(r.get('status', '')))}; {html.escape(verdict)}"
                     + ("; implausible phenotypes" if r.get("plausible") == "false" else "") + "</span>")
        if r.get("reason"):
            parts.append(f"<br><small>{html.escape(str(r['reason']))}</small>")
        if r.get("warnings"):
            parts.append(f"<br><small>{html.escape(str(r['warnings']))}</small>")
        if r.get("status") in ("ok", "skipped"):
            parts.append(f"<br><a href='{html.escape(rel)}/qc.png'><img src='{html.escape(rel)}/qc.png' "
                         f"alt='no qc.png'></a>")
        parts.append("</div>")
    return "\n".join(parts) + "\n"


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

    def message(self, text: str) -> None:
        """A line on stderr (warnings), shown even with --quiet; keeps a terminal's bar line intact."""
        if self.enabled and self.tty:
            print("\r" + " " * 150 + "\r", end="", file=sys.stderr)
        print(text, file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.enabled and self.tty:
            print(file=sys.stderr)


# --- the command ------------------------------------------------------------------------------------------
def _destination(out: Path, name: str, study: Path, key: dict) -> tuple[Path, str, str]:
    """(folder, state, reason) for `study`: DIR/<name>, or DIR/<name>-<hash> when DIR/<name> holds
    another study's results (`resume_state`)."""
    dest = out / name
    state, reason = resume_state(dest, key)
    if state == "other":
        dest = out / f"{name}-{path_hash(study)}"
        state, reason2 = resume_state(dest, key)
        if state == "other":
            raise GeminiError(f"both {out / name} and {dest} hold other studies' results", study)
        reason = f"{out / name} {reason}; using {dest.name}" + (f"; {reason2}" if reason2 else "")
    return dest, state, reason


def run(args: argparse.Namespace) -> int:
    from gemini_cmr.core import mesh as meshlib
    from gemini_cmr.core.outputs import check_output_folder, clean_stale_temporaries

    studies = read_input_list(args.input_list)
    out = args.out.expanduser()
    # The output folder may lie inside a folder of studies: it is not a study.
    studies = [p for p in studies if os.path.abspath(p) != os.path.abspath(out)]
    if not studies:
        raise GeminiError("no studies in the input list", args.input_list)
    try:
        formats = meshlib.parse_formats(args.mesh_format)
    except ValueError as exc:
        raise GeminiError(str(exc)) from None
    rank, world = rank_and_world()
    names = output_names(studies, list_root(args.input_list))
    mine = shard(list(zip(studies, names)), rank, world)
    check_output_folder(out)  # writable, not a file: before any model is loaded
    out.mkdir(parents=True, exist_ok=True)
    suffix = f".rank{rank}" if world > 1 else ""
    prefix = f"rank {rank}/{world} " if world > 1 else ""

    import torch

    from gemini_cmr.cli.super_resolve import dicom_notice, long_axis_inputs
    from gemini_cmr.core.engine import SuperResolver, parse_phases
    from gemini_cmr.core.io import load_study
    from gemini_cmr.core.outputs import estimate_output_bytes, write_outputs

    model_key = model_identity(args.model, args.adapter)
    options = {"phases": str(args.phases), "mesh_format": list(formats), "sr_dtype": args.sr_dtype,
               "dicom": "auto" if args.dicom is None else bool(args.dicom), "dicom_compression": args.dicom_compression,
               "motion_correction": bool(getattr(args, "motion_correction", True)),
               "long_axis": getattr(args, "long_axis", "auto")}
    if getattr(args, "tta", "off") != "off":  # only when on: runs without it keep their resume key
        options["tta"] = args.tta
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
            row = {"study": str(study_path), "output": str(out / name), "status": "ok", "reason": "",
                   "seconds": 0.0, "plausible": "", "quality_checks": "", "warnings": ""}
            t0 = time.perf_counter()
            loading = False
            try:
                key = resume_key(study_path, model_key, options)
                dest, state, why = _destination(out, name, study_path, key)
                row["output"] = str(dest)
                clean_stale_temporaries(dest)
                if state == "complete" and not args.redo:
                    row.update(status="skipped", reason="complete run.json already there (same input, model "
                                                        "and options)" + (f"; {why}" if why else ""))
                    prev = _run_record(dest) or {}
                    row["plausible"] = str((prev.get("phenotypes") or {}).get("plausible", "")).lower()
                    row["quality_checks"] = quality_text(prev.get("quality_checks"))
                else:
                    if state == "stale" and not args.redo:
                        row["reason"] = f"redone: {why}"
                    elif why:
                        row["reason"] = why
                    check_output_folder(dest, study_path)
                    if engine is None:
                        loading = True
                        engine = SuperResolver(model=args.model, adapter=args.adapter, device=device)
                        loading = False
                    study = load_study(study_path)
                    n_ph = len(parse_phases(args.phases, study)[0])
                    with_dicom = study.meta.dicom is not None if args.dicom is None else args.dicom
                    check_output_folder(dest, study_path, estimate_output_bytes(
                        study, n_ph, args.sr_dtype, with_dicom, args.dicom_compression))
                    la_args = argparse.Namespace(long_axis=None, no_long_axis=options["long_axis"] == "off")
                    long_axis = long_axis_inputs(la_args, study_path, lambda m: None, study)
                    result = engine.run(study, phases=args.phases, meshes="ed_es",
                                        motion_correction=bool(getattr(args, "motion_correction", True)),
                                        long_axis=long_axis, tta=getattr(args, "tta", "off"))
                    notice = dicom_notice(study, args.dicom)
                    if notice:
                        result.warnings.append(notice)
                    warnings = list(study.meta.warnings) + list(result.warnings)
                    extra = {
                        "arguments": {
                            "study": str(study_path),
                            "out": str(dest),
                            "batch": str(args.input_list),
                            "rank": rank,
                            "world_size": world,
                            "long_axis": options["long_axis"],
                        },
                        "resume_key": key,
                    }
                    write_outputs(result, dest, formats, False, extra_info=extra, sr_dtype=args.sr_dtype,
                                  dicom=with_dicom, dicom_compression=args.dicom_compression)
                    n_done += 1
                    row["plausible"] = str(bool(result.phenotypes.get("plausible", True))).lower()
                    row["quality_checks"] = quality_text(result.qc)
                    row["warnings"] = " | ".join(warnings)
                    for w in warnings:
                        bar.message(f"gemini-cmr: warning: {study_path}: {w}")
            except (KeyboardInterrupt, MemoryError):
                raise
            except GeminiError as exc:
                if loading:  # the model cannot be loaded: nothing can run
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
    implausible = sum(r.get("plausible") == "false" for r in rows)
    rate = f", {3600 * n_done / wall:.0f} studies/hour" if n_done else ""
    qc_failed = sum(r.get("quality_checks", "").startswith("failed") for r in rows)
    flagged = f", {implausible} with implausible phenotypes" if implausible else ""
    flagged += f", {qc_failed} failed a quality check" if qc_failed else ""
    flagged += " (see the summary)" if flagged else ""
    print(
        f"{prefix}{counts['ok']} ok, {counts['failed']} failed, {counts['skipped']} skipped of {len(mine)} "
        f"in {wall:.1f} s{rate}{flagged}; summary {csv_path}"
    )
    return 1 if counts["failed"] else 0
