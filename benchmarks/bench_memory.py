"""Peak memory of the real-study path, this working tree against a git revision, and the outputs compared.

Each run is a fresh process doing what `gemini-cmr super-resolve STUDY --out DIR --device cpu` does (the
model chosen for the study, motion correction, the heart box, every output, DICOM too for a DICOM study):
`load_study` -> `SuperResolver.run` -> `write_outputs`. It reports the peak resident set size
(`ru_maxrss`) after the compute and after writing, and the stage times. The revision runs from a
temporary `git worktree` of it, the working tree from here, alternating (`--rounds`), so both see the same
machine load. DICOM UIDs and dates are made deterministic in both (seeded `uuid.uuid4` and
`secrets.randbelow`, a fixed `datetime.now`), so every output file but run.json is compared byte for byte
(but for pynrrd's date comment in the Slicer files and the folder's path in the ITK-SNAP workspace).

    .venv/bin/python benchmarks/bench_memory.py --base REV [--study DIR] [--rounds 2] [--json FILE]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_STUDY = ROOT.parent / "shared" / "data" / "sunnybrook" / "SCD0000101"


def child(root: str, study: str, out: str) -> None:
    """One run of the path in this process, with the package imported from `root`; prints a JSON line."""
    import datetime as dt
    import random
    import resource
    import secrets
    import time
    import types
    import uuid

    pkg = types.ModuleType("gemini_cmr")
    pkg.__path__ = [str(Path(root).resolve())]
    sys.modules["gemini_cmr"] = pkg
    rng = random.Random(0)
    uuid.uuid4 = lambda: uuid.UUID(int=rng.getrandbits(128), version=4)
    secrets.randbelow = lambda n: rng.randrange(n)  # pydicom's `generate_uid` with a prefix

    class FixedNow(dt.datetime):
        @classmethod
        def now(cls, tz=None):
            return cls(2020, 1, 1, 12, 0, 0, tzinfo=tz)

    from gemini_cmr.core.engine import SuperResolver
    from gemini_cmr.core.io import dicom_write, load_study
    from gemini_cmr.core.outputs import write_outputs

    dicom_write.datetime = FixedNow
    dt.datetime = FixedNow  # highdicom's content dates (`datetime.datetime.now()`)

    def peak_mib() -> float:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    t0 = time.perf_counter()
    s = load_study(study)
    result = SuperResolver(model=None, device="cpu").run(s, meshes="ed_es")
    compute_peak = peak_mib()
    t1 = time.perf_counter()
    write_outputs(result, out, ["stl"])
    t2 = time.perf_counter()
    tm = {k: round(float(v), 3) for k, v in result.timings.items()}
    print(json.dumps({"peak_compute_mib": round(compute_peak, 1), "peak_mib": round(peak_mib(), 1),
                      "end_to_end_s": round(t1 - t0, 3), "write_s": round(t2 - t1, 3),
                      "file_to_outputs_s": round(t2 - t0, 3), "timings_s": tm,
                      "package": str(Path(sys.modules["gemini_cmr.core"].__file__).parent)}))


def _content(p: Path, folder: Path) -> bytes:
    """A file's bytes, but for what differs between any two runs: pynrrd's "# on <date>" header comment in
    the Slicer files, and the outputs folder's own path in the ITK-SNAP workspace."""
    data = p.read_bytes()
    if p.name.endswith(".nrrd"):
        head, sep, rest = data.partition(b"\n\n")
        data = b"\n".join(line for line in head.split(b"\n") if not line.startswith(b"# on ")) + sep + rest
    elif p.suffix == ".itksnap":
        data = data.replace(str(folder.resolve()).encode(), b"OUTPUTS")
    return data


def digests(folder: Path) -> dict[str, str]:
    return {p.relative_to(folder).as_posix(): hashlib.sha256(_content(p, folder)).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file() and p.name != "run.json"}


def run(root: Path, study: str, out: Path) -> dict:
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")
    proc = subprocess.run([sys.executable, __file__, "--child", str(root), "--study", study, "--out", str(out)],
                          env=env, capture_output=True, text=True, cwd=ROOT)
    if proc.returncode:
        sys.exit(f"run of {root} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--base", required=False, help="git revision to compare with (e.g. a commit before a change)")
    ap.add_argument("--study", default=str(DEFAULT_STUDY))
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--json", help="write the results here")
    ap.add_argument("--keep", help="copy each run's outputs folder into this folder")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args.child, args.study, args.out)
        return
    with tempfile.TemporaryDirectory(prefix="gemini-bench-memory-") as tmp:
        tmp = Path(tmp)
        trees = {"current": ROOT}
        base_sha = None
        if args.base:
            base_sha = subprocess.run(["git", "rev-parse", args.base], cwd=ROOT, capture_output=True, text=True,
                                      check=True).stdout.strip()
            subprocess.run(["git", "worktree", "add", "--detach", str(tmp / "base"), base_sha], cwd=ROOT,
                           capture_output=True, check=True)
            trees = {"base": tmp / "base", "current": ROOT}
        runs: dict[str, list[dict]] = {k: [] for k in trees}
        files: dict[str, list[dict[str, str]]] = {k: [] for k in trees}
        try:
            for r in range(max(1, args.rounds)):
                for name, root in trees.items():
                    out = tmp / f"out-{name}-{r}"
                    rep = run(root, args.study, out)
                    runs[name].append(rep)
                    files[name].append(digests(out))
                    if args.keep:
                        shutil.copytree(out, Path(args.keep) / out.name, dirs_exist_ok=True)
                    print(f"round {r + 1} {name}: peak {rep['peak_mib']:.0f} MiB (compute {rep['peak_compute_mib']:.0f}"
                          f" MiB), end to end {rep['end_to_end_s']:.2f} s, writing {rep['write_s']:.2f} s", flush=True)
        finally:
            if args.base:
                subprocess.run(["git", "worktree", "remove", "--force", str(tmp / "base")], cwd=ROOT,
                               capture_output=True)
    report: dict = {"study": args.study, "base": base_sha, "rounds": max(1, args.rounds),
                    "machine": {"cpu_count": os.cpu_count(), "platform": platform.platform(),
                                "load_average_1min": round(os.getloadavg()[0], 2)}}
    for name in trees:
        reps = runs[name]
        report[name] = {
            "peak_mib": [r["peak_mib"] for r in reps], "peak_compute_mib": [r["peak_compute_mib"] for r in reps],
            "median_peak_mib": statistics.median(r["peak_mib"] for r in reps),
            "median_peak_compute_mib": statistics.median(r["peak_compute_mib"] for r in reps),
            "median_end_to_end_s": statistics.median(r["end_to_end_s"] for r in reps),
            "median_write_s": statistics.median(r["write_s"] for r in reps),
            "median_file_to_outputs_s": statistics.median(r["file_to_outputs_s"] for r in reps),
            "runs": reps,
        }
    every = [d for name in trees for d in files[name]]
    first = every[0]
    differ = sorted({k for d in every for k in set(d) | set(first) if d.get(k) != first.get(k)})
    report["output_files"] = len(first)
    report["files_differing"] = differ
    report["outputs_identical"] = not differ
    print(f"outputs: {len(first)} files (run.json aside) compared over {len(every)} runs: "
          + ("all byte-identical" if not differ else f"{len(differ)} differ, e.g. {differ[:5]}"))
    for name in trees:
        x = report[name]
        print(f"{name}: peak RSS {x['median_peak_mib']:.0f} MiB (compute {x['median_peak_compute_mib']:.0f} MiB), "
              f"end to end {x['median_end_to_end_s']:.2f} s, writing {x['median_write_s']:.2f} s (medians)")
    if args.base:
        ratio = report["base"]["median_peak_mib"] / report["current"]["median_peak_mib"]
        report["peak_ratio_base_over_current"] = round(ratio, 3)
        print(f"peak RSS: base / current = {ratio:.2f}x")
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
