"""Writing the outputs of a real study: each writer against its baseline, interleaved in one process.

    .venv/bin/python benchmarks/bench_writers.py [--study DICOM_FOLDER] [--repeat 3] [--dicom-phases 4] [--json]

The study (default: the Sunnybrook cine SCD0000101 of ../shared/data) is super-resolved once as
`super-resolve` would (model chosen for it, heart box); then, alternating, per repeat:

- SR image (NIfTI .nii.gz): the baseline (nibabel writes an uncompressed .nii, read back, gzip in chunks on
  all cores with zlib level 1) against the current `save_nifti_fast` (the header and data straight from
  memory, `core.io.nifti.nifti_file_parts`, deflate by ISA-L when installed), float32 and int16;
- SR labels: nibabel's gzip against `save_nifti_fast`;
- DICOM SR series of `--dicom-phases` phases: pydicom's `save_as` per instance against the shared-element
  writer (`core.io.dicom_write.SharedElementWriter`), JPEG-LS and uncompressed;
- DICOM segmentations (highdicom) of the same phases on the SR grid: pydicom's `save_as` against
  `core.io.dicom_write.CachingEncoder` (the same bytes);
- all the DICOM outputs of every phase (`core.outputs.write_dicom`: the SR series in JPEG-LS and both sets of
  segmentations): the writer before (pydicom's `Dataset.compress` per instance, pydicom's file meta
  encoding, pydicom's `save_as` for the segmentations) against the current one (JPEG-LS frames encoded
  straight by CharLS, the file meta elements encoded once, the segmentations encoded by
  `core.io.dicom_write.CachingEncoder`).

Prints the seconds of every run, the median per variant and the ratio baseline / current; the JSON also
holds this process's CPU seconds per run.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import sys
import tempfile
import time
import zlib
from pathlib import Path

import pydicom
from pydicom.filebase import DicomBytesIO

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


@contextlib.contextmanager
def pydicom_writer():
    """The SR series written by pydicom's `save_as` per instance (no shared-element writer)."""
    real = dicom_write.SharedElementWriter
    dicom_write.SharedElementWriter = lambda template: None
    try:
        yield
    finally:
        dicom_write.SharedElementWriter = real


@contextlib.contextmanager
def previous_dicom_writer():
    """The DICOM outputs as written before (the same bytes): `Dataset.compress` per instance, pydicom's file
    meta encoding, pydicom's `save_as` for the segmentations."""
    def meta_bytes(self, file_meta):
        fp = DicomBytesIO()
        fp.is_little_endian, fp.is_implicit_VR = True, False
        pydicom.filewriter.write_file_meta_info(fp, file_meta, enforce_standard=True)
        return fp.getvalue()

    def save_as(ds, path, encoder=None):
        ds.save_as(path, enforce_file_format=True)

    saved = (dicom_write.encode_jpegls_frames, dicom_write.SharedElementWriter._meta_bytes, dicom_write.save_dataset)
    dicom_write.encode_jpegls_frames = lambda stored: stored  # arrays: `_save` compresses them with pydicom
    dicom_write.SharedElementWriter._meta_bytes = meta_bytes
    dicom_write.save_dataset = save_as
    try:
        yield
    finally:
        dicom_write.encode_jpegls_frames, dicom_write.SharedElementWriter._meta_bytes, dicom_write.save_dataset = saved


def main() -> int:
    from gemini_cmr.core.perf import default_real_study

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--study", type=Path, default=None)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--dicom-phases", type=int, default=4)
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
    n = min(args.dicom_phases, len(result.phases))
    ctx = dicom_write.dicom_context(study, outputs.model_name(result), result.model_id, "bench")
    ident = study.meta.dicom
    sub = img[:n]

    def series(folder, compression):
        return dicom_write.write_sr_series(folder, sub, result.sr_grid, result.phases[:n], study.phase_times_ms,
                                           ctx, compression, source_grid=study.grid,
                                           source_uids=ident.sop_instance_uids if ident else None)

    variants = {
        ("sr_image float32", "baseline"): lambda d: baseline_nifti_gz(d / "a.nii.gz", img, aff, interval, "x"),
        ("sr_image float32", "current"): lambda d: outputs.save_nifti_fast(d / "a.nii.gz", img, aff, interval, "x"),
        ("sr_image int16", "baseline"): lambda d: baseline_nifti_gz(d / "b.nii.gz", img, aff, interval, "x", "int16"),
        ("sr_image int16", "current"): lambda d: outputs.save_nifti_fast(d / "b.nii.gz", img, aff, interval, "x",
                                                                          "int16"),
        ("sr_labels", "baseline"): lambda d: save_nifti(d / "c.nii.gz", lab, aff, interval, "x"),
        ("sr_labels", "current"): lambda d: outputs.save_nifti_fast(d / "c.nii.gz", lab, aff, interval, "x"),
    }
    if ident is not None:
        for comp in ("jpeg-ls", "none"):
            def base(d, comp=comp):
                with pydicom_writer():
                    series(d / "mr", comp)
            variants[(f"DICOM SR series {n} phases {comp}", "baseline")] = base
            variants[(f"DICOM SR series {n} phases {comp}", "current")] = lambda d, comp=comp: series(d / "mr", comp)
        headers = series(Path(tempfile.mkdtemp(prefix="gemini-bench-")), "none")
        def seg(d):
            dicom_write.write_segmentations(d / "seg", lab[:n], headers, result.phases[:n], ctx, "sr_labels")

        def seg_before(d):
            with previous_dicom_writer():
                seg(d)
        variants[(f"DICOM SEG on the SR grid, {n} phases", "baseline")] = seg_before
        variants[(f"DICOM SEG on the SR grid, {n} phases", "current")] = seg
        whole = f"DICOM outputs, all {len(result.phases)} phases (write_dicom, jpeg-ls)"

        def before(d):
            with previous_dicom_writer():
                outputs.write_dicom(result, d)
        variants[(whole, "baseline")] = before
        variants[(whole, "current")] = lambda d: outputs.write_dicom(result, d)

    times: dict[tuple[str, str], list[float]] = {k: [] for k in variants}
    cpu: dict[tuple[str, str], list[float]] = {k: [] for k in variants}  # this process's CPU seconds
    for _ in range(max(1, args.repeat)):
        for key, fn in variants.items():
            with tempfile.TemporaryDirectory(prefix="gemini-bench-") as d:
                t, c = time.perf_counter(), time.process_time()
                fn(Path(d))
                times[key].append(time.perf_counter() - t)
                cpu[key].append(time.process_time() - c)
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
              "deflate": getattr(outputs._deflate_lib, "__name__", "zlib"),
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
    return 0


if __name__ == "__main__":
    sys.exit(main())
