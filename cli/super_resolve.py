"""`gemini-cmr super-resolve STUDY --out DIR`: SR image, 3D labels, meshes and phenotypes of a study.

Writes into DIR: sr_image.nii.gz, sr_labels.nii.gz, lr_labels.nii.gz, meshes/, phenotypes.json,
phenotypes.csv, label files for 3D Slicer (sr_labels_ed/es.seg.nrrd) and ITK-SNAP (labels_itksnap.txt,
sr.itksnap), with --dicom (the default for DICOM input) dicom/sr/ (the SR series and its segmentations) and
dicom/lr_labels/ (segmentations of the acquired slices), and run.json (see docs/pipeline.md). DIR is checked before the compute (writable, enough
free space, no folder named like an output, not inside the study's folder). Everything is written to a
hidden staging folder inside DIR and published at the end, run.json last, so a failed run leaves DIR as it
was. Progress and warnings (the study's, implausible or unavailable phenotypes) go to stderr; the
summary line on stdout marks implausible values and says why a value is not available.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from gemini_cmr.core.errors import GeminiError


def register(subparsers, summary: str) -> None:
    p = subparsers.add_parser(
        "super-resolve", help=summary, description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    p.add_argument("study", type=Path, help="study: DICOM folder/zip, NIfTI file, ACDC/M&Ms folder")
    p.add_argument("--out", type=Path, required=True, help="output folder (created; existing outputs replaced)")
    p.add_argument("--model", type=Path, default=None, help="Gemini-GAN model folder or .safetensors (default: bundled)")
    p.add_argument("--adapter", type=Path, default=None, help="V-AMA adapter for studies from another domain")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto", help="where the networks run")
    p.add_argument("--phases", default="all",
                   help="'all' (default), 'ed,es' (only ED and ES when the study states them), or e.g. '0,7'")
    p.add_argument("--mesh-format", default="stl", metavar="FORMATS",
                   help="comma-separated mesh formats among stl,obj,ply,vtp (default stl)")
    p.add_argument("--all-phase-meshes", action="store_true",
                   help="also write meshes for every phase and a time series (.pvd) per structure")
    p.add_argument("--series-uid", default=None, help="DICOM SeriesInstanceUID when a folder holds several cines")
    p.add_argument("--allow-incomplete", action="store_true",
                   help="use the complete slices of an incomplete DICOM series (with a warning)")
    p.add_argument("--sr-dtype", choices=("float32", "int16"), default="float32",
                   help="SR image storage: float32 (default) or int16 (scaled 16-bit integers: half the file, values within half a step of range/65535)")
    add_dicom_options(p)
    p.add_argument("--quiet", action="store_true", help="no progress on stderr")
    p.set_defaults(func=run)


def add_dicom_options(p: argparse.ArgumentParser) -> None:
    """--dicom / --no-dicom and --dicom-compression (super-resolve, batch)."""
    p.add_argument("--dicom", action=argparse.BooleanOptionalAction, default=None,
                   help="also write DICOM: the SR series and segmentations (SEG) of the SR labels and of the labels "
                        "on the acquired slices, in the input's study (default: on for DICOM input, off otherwise; "
                        "for other input a new study is made)")
    p.add_argument("--dicom-compression", choices=("jpeg-ls", "none"), default="jpeg-ls",
                   help="transfer syntax of the SR series: JPEG-LS lossless (default, about 2.6x smaller) or none "
                        "(uncompressed, for viewers without JPEG-LS)")


def dicom_notice(study, dicom: bool | None) -> str | None:
    """The warning for --dicom on an input that is not DICOM (a new study, no segmentation of the acquired
    slices), or None."""
    if dicom and study.meta.dicom is None:
        return ("the input is not DICOM: the DICOM outputs get a new Study Instance UID and Frame of Reference "
                "(they do not join the input's study), and there is no segmentation of the acquired slices")
    return None


class StderrProgress:
    """Progress lines on stderr: one line per message change (no carriage-return tricks in logs)."""

    def __init__(self, enabled: bool = True):
        self.enabled = enabled
        self.last = None
        self.t0 = time.perf_counter()

    def __call__(self, fraction: float, message: str) -> None:
        if not self.enabled:
            return
        key = (message, int(fraction * 20))
        if key == self.last:
            return
        self.last = key
        print(f"[{time.perf_counter() - self.t0:6.1f}s {fraction * 100:3.0f}%] {message}", file=sys.stderr,
              flush=True)


def run(args: argparse.Namespace) -> int:
    from gemini_cmr.core import mesh as meshlib
    from gemini_cmr.core.engine import SuperResolver, parse_phases
    from gemini_cmr.core.io import load_study
    from gemini_cmr.core.outputs import check_output_folder, estimate_output_bytes, write_outputs

    try:
        formats = meshlib.parse_formats(args.mesh_format)
    except ValueError as exc:
        raise GeminiError(str(exc)) from None
    if not formats:
        raise GeminiError("--mesh-format needs at least one of stl,obj,ply,vtp")
    out = check_output_folder(args.out, args.study)  # before anything slow: a bad --out fails in a second
    progress = StderrProgress(not args.quiet)
    t0 = time.perf_counter()
    study = load_study(args.study, series_uid=args.series_uid, allow_incomplete=args.allow_incomplete)
    t_load = time.perf_counter() - t0
    for w in study.meta.warnings:
        print(f"gemini-cmr: warning: {study.meta.source_path or args.study}: {w}", file=sys.stderr, flush=True)
    n_phases = len(parse_phases(args.phases, study)[0])
    with_dicom = study.meta.dicom is not None if args.dicom is None else args.dicom
    notice = dicom_notice(study, args.dicom)
    if notice:
        print(f"gemini-cmr: warning: {notice}", file=sys.stderr, flush=True)
    check_output_folder(out, args.study, need_bytes=estimate_output_bytes(study, n_phases, args.sr_dtype,
                                                                          with_dicom, args.dicom_compression))
    progress(0.0, f"loaded {study.name}: {study.n_phases} phases x {study.n_slices} slices")
    engine = SuperResolver(model=args.model, adapter=args.adapter, device=args.device)
    progress(0.0, f"model {engine.model_id[:12]} on {engine.device}")
    result = engine.run(study, phases=args.phases, meshes="all" if args.all_phase_meshes else "ed_es",
                        progress=progress)
    if result.model_choice:
        progress(0.8, f"model used: {result.model_id[:12]} ({result.model_choice})")
    result.timings["load_study"] = t_load
    for w in result.warnings:
        print(f"gemini-cmr: warning: {w}", file=sys.stderr, flush=True)
    extra = {"arguments": {
        "study": str(args.study), "out": str(out), "model": None if args.model is None else str(args.model),
        "adapter": None if args.adapter is None else str(args.adapter), "device": args.device,
        "phases": args.phases, "mesh_format": formats, "all_phase_meshes": bool(args.all_phase_meshes),
        "dicom": with_dicom, "dicom_compression": args.dicom_compression,
    }}  # fmt: skip
    if notice:
        result.warnings.append(notice)
    write_outputs(result, out, formats, args.all_phase_meshes, extra_info=extra, sr_dtype=args.sr_dtype,
                  dicom=with_dicom, dicom_compression=args.dicom_compression)
    total = time.perf_counter() - t0
    progress(1.0, f"wrote {out} in {total:.1f} s")
    print(f"{out}: {summary_line(result)}")
    return 0


def summary_line(result) -> str:
    """ED/ES and the main phenotypes; implausible values marked, unavailable ones "n/a (reason)"."""
    from gemini_cmr.core.phenotypes import value_text

    p = result.phenotypes
    values = "  ".join(f"{name} {value_text(p, key, unit)}" for name, key, unit in (
        ("LVEDV", "lv_edv_ml", "mL"), ("LVESV", "lv_esv_ml", "mL"), ("LVEF", "lv_ef_pct", "%"),
        ("LV mass", "lv_mass_g", "g"), ("RVEDV", "rv_edv_ml", "mL"), ("RVEF", "rv_ef_pct", "%")))
    flag = "" if p.get("plausible", True) else "  [check: implausible values, see the warnings]"
    return f"ED {result.ed_phase} ES {result.es_phase}  {values}{flag}"
