"""Writing the outputs of a real study: each writer against its baseline, interleaved in one process.

    .venv/bin/python benchmarks/bench_writers.py [--study DICOM_FOLDER] [--repeat 3] [--dicom-base REV]
                                                 [--outputs-base REV] [--dir FOLDER] [--dicom-only] [--json]

The study (default: the Sunnybrook cine SCD0000101 of ../shared/data) is super-resolved once as
`super-resolve` would (model chosen for it, heart box); then, alternating, per repeat:

- SR image (NIfTI .nii.gz): the baseline (nibabel writes an uncompressed .nii, read back, gzip in chunks on
  all cores with zlib level 1) against the current `save_nifti_fast` (the header and data straight from
  memory, `core.io.nifti.nifti_file_parts`, deflate by ISA-L when installed), float32 and int16;
- SR labels: nibabel's gzip against `save_nifti_fast`;
- the DICOM outputs of every phase: the DICOM writer of git revision `--dicom-base` (`core/io/dicom_write.py`
  of that revision, loaded beside the current one in this process; by default the writer before the direct
  encoding: pydicom datasets per SR instance, highdicom building every segmentation) against the current
  one: the SR series alone (uncompressed and JPEG-LS), the segmentations alone (on the SR grid and on the
  acquired slices), all the DICOM outputs (`core.outputs.write_dicom`, uncompressed and JPEG-LS) and every
  output of a run (`core.outputs.write_outputs`, no meshes, DICOM uncompressed and JPEG-LS). The first
  round's DICOM outputs of both writers are compared: the same files, the same pixel data (SR instances
  decoded), the same segmentation frames and frame positions. With `--outputs-base REV` the baseline of
  "every output" is `core/outputs.py` of that revision too (staging and publishing), with its DICOM writer.

Every variant writes into a new temporary folder under `--dir` (default: the system's temporary folder):
creating a file costs what that file system charges (here 0.15-0.2 ms under /tmp, 0.7-0.9 ms under /work).

Prints the seconds of every run, the median per variant and the ratio baseline / current; the JSON also
holds this process's CPU seconds per run.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import inspect
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import types
import zlib
from pathlib import Path

import numpy as np
import pydicom

from gemini_cmr.core import outputs
from gemini_cmr.core.io import dicom_write
from gemini_cmr.core.io.nifti import save_nifti


def baseline_nifti_gz(path: Path, array, affine, interval, description, dtype="float32") -> None:
    """The writer before: nibabel to an uncompressed .nii, read back, zlib gzip in parallel chunks."""
    raw = path.with_suffix("")
    save_nifti(raw, array, affine, interval, description, dtype)
    data = raw.read_bytes()
    lib = outputs._deflate_lib
    outputs._deflate_lib = zlib
    try:
        path.write_bytes(outputs.gzip_parallel(data))
    finally:
        outputs._deflate_lib = lib
        raw.unlink()


def base_dicom_writer(revision: str, file: str = "core/io/dicom_write.py") -> types.ModuleType:
    """`file` (default `core/io/dicom_write.py`) of git revision `revision` as a module of its own (it
    imports the rest of the package from the working tree)."""
    root = Path(__file__).resolve().parents[1]
    source = subprocess.run(["git", "show", f"{revision}:{file}"], cwd=root, check=True,
                            capture_output=True, text=True).stdout
    name = Path(file).stem
    with tempfile.TemporaryDirectory(prefix="gemini-bench-base-") as folder:
        path = Path(folder) / f"{name}_base.py"
        path.write_text(source)
        spec = importlib.util.spec_from_file_location(f"gemini_cmr_bench_{name}_base_{revision}", path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module
        spec.loader.exec_module(module)
    return module


def _accepting_atomic(module: types.ModuleType) -> types.ModuleType:
    """`module`, or a copy whose `write_sr_series` takes (and ignores) the `atomic` argument that the
    current `core.outputs` passes: a writer of a revision before it always wrote through temporary names."""
    if "atomic" in inspect.signature(module.write_sr_series).parameters:
        return module
    shim = types.ModuleType(f"{module.__name__}_shim")
    shim.__dict__.update(module.__dict__)
    shim.write_sr_series = lambda *a, atomic=True, **k: module.write_sr_series(*a, **k)
    return shim


@contextlib.contextmanager
def dicom_writer(module: types.ModuleType):
    """`core.outputs` writing its DICOM outputs with `module`."""
    real = outputs.dicom_write
    outputs.dicom_write = _accepting_atomic(module)
    try:
        yield
    finally:
        outputs.dicom_write = real


def equivalent_dicom(a: Path, b: Path) -> dict:
    """Two runs' DICOM outputs compared: file names, SR pixel data (decoded), segmentation frames."""
    names = sorted(p.relative_to(a).as_posix() for p in a.rglob("*.dcm"))
    same_names = names == sorted(p.relative_to(b).as_posix() for p in b.rglob("*.dcm"))
    pixels = frames = True
    for name in names if same_names else []:
        x, y = pydicom.dcmread(a / name), pydicom.dcmread(b / name)
        if "SEG_" in name:
            key = [(int(f.SegmentIdentificationSequence[0].ReferencedSegmentNumber),
                    [str(v) for v in f.PlanePositionSequence[0].ImagePositionPatient])
                   for f in x.PerFrameFunctionalGroupsSequence]
            frames &= key == [(int(f.SegmentIdentificationSequence[0].ReferencedSegmentNumber),
                               [str(v) for v in f.PlanePositionSequence[0].ImagePositionPatient])
                              for f in y.PerFrameFunctionalGroupsSequence]
            frames &= x.PixelData == y.PixelData and ([(int(s.SegmentNumber), s.SegmentLabel) for s in x.SegmentSequence]
                                                      == [(int(s.SegmentNumber), s.SegmentLabel) for s in y.SegmentSequence])
        else:
            pixels &= bool(np.array_equal(x.pixel_array, y.pixel_array))
            pixels &= x.RescaleSlope == y.RescaleSlope and x.RescaleIntercept == y.RescaleIntercept
    return {"files": len(names), "same_names": same_names, "same_sr_pixels": bool(pixels),
            "same_segmentation_frames": bool(frames)}


def main() -> int:
    from gemini_cmr.core.perf import default_real_study

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--study", type=Path, default=None)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--dicom-base", default="ef5bd5c",
                    help="git revision whose DICOM writer is the baseline (default: the writer before the "
                         "direct encoding)")
    ap.add_argument("--outputs-base", default=None,
                    help="git revision whose core/outputs.py (and DICOM writer) is the baseline of 'every output'")
    ap.add_argument("--dir", type=Path, default=None, help="where the variants write (default: the system's "
                                                           "temporary folder)")
    ap.add_argument("--dicom-only", action="store_true", help="leave out the NIfTI writers")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    study_path = args.study or default_real_study()
    if study_path is None:
        print("no study: pass --study", file=sys.stderr)
        return 2
    from gemini_cmr.core.engine import SuperResolver
    from gemini_cmr.core.io import load_study

    load_before = os.getloadavg()[0]
    study = load_study(study_path)
    result = SuperResolver(device="cpu").run(study, meshes="none")
    interval = outputs._phase_interval_ms(result)
    aff, img, lab = result.sr_grid.affine, result.sr_image, result.sr_labels
    ctx = dicom_write.dicom_context(study, outputs.model_name(result), result.model_id, "bench")
    ident = study.meta.dicom

    variants = {} if args.dicom_only else {
        ("sr_image float32", "baseline"): lambda d: baseline_nifti_gz(d / "a.nii.gz", img, aff, interval, "x"),
        ("sr_image float32", "current"): lambda d: outputs.save_nifti_fast(d / "a.nii.gz", img, aff, interval, "x"),
        ("sr_image int16", "baseline"): lambda d: baseline_nifti_gz(d / "b.nii.gz", img, aff, interval, "x", "int16"),
        ("sr_image int16", "current"): lambda d: outputs.save_nifti_fast(d / "b.nii.gz", img, aff, interval, "x",
                                                                          "int16"),
        ("sr_labels", "baseline"): lambda d: save_nifti(d / "c.nii.gz", lab, aff, interval, "x"),
        ("sr_labels", "current"): lambda d: outputs.save_nifti_fast(d / "c.nii.gz", lab, aff, interval, "x"),
    }
    compared: dict[str, dict] = {}
    if ident is not None:
        base = base_dicom_writer(args.dicom_base)
        writers = {"baseline": base, "current": dicom_write}
        nph = len(result.phases)

        def series(module, d, comp):
            return module.write_sr_series(d / "mr", img, result.sr_grid, result.phases, study.phase_times_ms,
                                          module.dicom_context(study, ctx.model_name, ctx.model_id, "bench"),
                                          comp, source_grid=study.grid, source_uids=ident.sop_instance_uids)

        scratch = Path(tempfile.mkdtemp(prefix="gemini-bench-"))  # the headers' series, removed at the end
        headers = {k: series(m, scratch / k, "none") for k, m in writers.items()}

        def segs(module, which, d):
            c = module.dicom_context(study, ctx.model_name, ctx.model_id, "bench")
            module.write_segmentations(d / "seg", lab, headers[which], result.phases, c, "sr_labels")
            module.write_segmentations(d / "lr", result.lr_labels, module.source_images(study, result.phases, c),
                                       result.phases, c, "lr_labels")

        for which, module in writers.items():
            for comp in ("none", "jpeg-ls"):
                variants[(f"DICOM SR series, {nph} phases, {comp}", which)] = (
                    lambda d, m=module, c=comp: series(m, d, c))
            variants[(f"DICOM segmentations, SR grid and acquired slices, {nph} phases", which)] = (
                lambda d, m=module, w=which: segs(m, w, d))
            for comp in ("none", "jpeg-ls"):
                def whole(d, m=module, c=comp):
                    with dicom_writer(m):
                        outputs.write_dicom(result, d, c)
                variants[(f"all DICOM outputs (write_dicom), {comp}", which)] = whole
        base_outputs = None
        if args.outputs_base:
            base_outputs = base_dicom_writer(args.outputs_base, "core/outputs.py")
            base_outputs.dicom_write = base_dicom_writer(args.outputs_base)
        for which, module in writers.items():
            for comp in ("none", "jpeg-ls"):
                def everything(d, m=module, c=comp, w=which):
                    if w == "baseline" and base_outputs is not None:
                        base_outputs.write_outputs(result, d / "out", [], dicom=True, dicom_compression=c)
                        return
                    with dicom_writer(m):
                        outputs.write_outputs(result, d / "out", [], dicom=True, dicom_compression=c)
                variants[(f"every output (write_outputs, no meshes), DICOM {comp}", which)] = everything
        for comp in ("none", "jpeg-ls"):
            kept = {}
            for which, module in writers.items():
                kept[which] = Path(tempfile.mkdtemp(prefix="gemini-bench-"))
                with dicom_writer(module):
                    outputs.write_dicom(result, kept[which], comp)
            compared[comp] = equivalent_dicom(kept["baseline"], kept["current"])
            for folder in kept.values():
                shutil.rmtree(folder)
        variants = dict(sorted(variants.items(), key=lambda kv: list(dict.fromkeys(k[0] for k in variants))
                               .index(kv[0][0])))

    times: dict[tuple[str, str], list[float]] = {k: [] for k in variants}
    cpu: dict[tuple[str, str], list[float]] = {k: [] for k in variants}  # this process's CPU seconds
    for _ in range(max(1, args.repeat)):
        for key, fn in variants.items():
            with tempfile.TemporaryDirectory(prefix="gemini-bench-", dir=args.dir) as d:
                t, c = time.perf_counter(), time.process_time()
                fn(Path(d))
                times[key].append(time.perf_counter() - t)
                cpu[key].append(time.process_time() - c)
    if ident is not None:
        shutil.rmtree(scratch, ignore_errors=True)
    rows = []
    for what in dict.fromkeys(k[0] for k in variants):
        cur = statistics.median(times[(what, "current")])
        base = times.get((what, "baseline"))
        b = statistics.median(base) if base else None
        rows.append({"output": what, "baseline_s": b, "current_s": cur, "ratio": b / cur if b else None,
                     "baseline_runs": [round(v, 3) for v in base or []],
                     "current_runs": [round(v, 3) for v in times[(what, "current")]],
                     "baseline_cpu_s": [round(v, 3) for v in cpu.get((what, "baseline"), [])],
                     "current_cpu_s": [round(v, 3) for v in cpu[(what, "current")]]})
    report = {"study": str(study_path), "sr_grid": list(result.sr_grid.shape), "phases": len(result.phases),
              "roi_sr_yx": list(result.roi) if result.roi else None, "repeats": args.repeat,
              "deflate": getattr(outputs._deflate_lib, "__name__", "zlib"), "dicom_base": args.dicom_base,
              "outputs_base": args.outputs_base, "dir": str(args.dir or tempfile.gettempdir()),
              "dicom_outputs_compared": compared,
              "load_average_1min": [round(load_before, 2), round(os.getloadavg()[0], 2)], "rows": rows}
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(f"{study_path}: SR grid {report['sr_grid']} x {report['phases']} phases; deflate {report['deflate']}; "
              f"load average {report['load_average_1min']}")
        print("| output | baseline s (median) | current s (median) | baseline / current |")
        print("|---|---|---|---|")
        for r in rows:
            b = "-" if r["baseline_s"] is None else f"{r['baseline_s']:.3f}"
            x = "-" if r["ratio"] is None else f"x{r['ratio']:.2f}"
            print(f"| {r['output']} | {b} | {r['current_s']:.3f} | {x} |")
        for comp, same in compared.items():
            print(f"DICOM outputs ({comp}), baseline against current: {same}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
