"""`gemini-cmr super-resolve STUDY --out DIR`: SR image, 3D labels, meshes and phenotypes of a study.

Writes into DIR: sr_image.nii.gz, sr_labels.nii.gz, lr_labels.nii.gz, meshes/, phenotypes.json,
phenotypes.csv, label files for 3D Slicer (sr_labels_ed/es.seg.nrrd) and ITK-SNAP (labels_itksnap.txt,
sr.itksnap), qc.png (ED and ES slices with the labels' outlines and the quality checks' verdict), for each long-axis input (--long-axis, or found beside the study or among a DICOM study's series, also on a
PACS) la_<view>_sr_labels.nii.gz, with --dicom (the default for DICOM input) dicom/sr/ (the SR series and its segmentations) and
dicom/lr_labels/ (segmentations of the acquired slices), and run.json (see docs/pipeline.md). STUDY may be a
study on a PACS, 'dicomweb://host:port/path?StudyInstanceUID=...[&SeriesInstanceUID=...]' (or dimse://AE@host:port?...;
the short-axis cine is chosen when no series is named), retrieved into a temporary folder first; --push
then sends the DICOM outputs to that server (or to --server); see `gemini-cmr pacs --help`. DIR is checked before the compute (writable, enough
free space, no folder named like an output, not inside the study's folder). Everything is written to a
hidden staging folder inside DIR and published at the end, run.json last, so a failed run leaves DIR as it
was. Progress and warnings (the study's, implausible or unavailable phenotypes, failed quality checks of the
labels) go to stderr; the summary line on stdout marks implausible values and failed checks and says why a
value is not available. Exit status 0 when the outputs are written; with --strict, 3 when they are written
but a phenotype is implausible or a quality check failed (for pipelines that must stop there); 2 for bad
input.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from gemini_cmr.cli.pacs import add_server_options
from gemini_cmr.core.errors import GeminiError


def register(subparsers, summary: str) -> None:
    p = subparsers.add_parser(
        "super-resolve", help=summary, description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    p.add_argument("study", help="study: DICOM folder/zip, NIfTI file, ACDC/M&Ms folder, or a study on a PACS "
                                 "(dicomweb://host:port/path?StudyInstanceUID=...)")
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
    p.add_argument("--sr-dtype", choices=("auto", "float32", "int16"), default="auto",
                   help="SR image storage: int16 (scaled 16-bit integers: half the file, values within half a step of "
                        "range/65534), float32, or auto (default: int16 for real studies, float32 for phantoms)")
    add_dicom_options(p)
    add_motion_option(p)
    add_long_axis_options(p)
    p.add_argument("--push", action="store_true",
                   help="send the DICOM outputs (SR series and SEGs) to the PACS the study came from, or to --server")
    p.add_argument("--quiet", action="store_true", help="no progress on stderr")
    p.add_argument("--strict", action="store_true",
                   help="exit status 3 (outputs still written) when a phenotype is implausible or a quality check "
                        "of the labels failed")
    add_server_options(p, "PACS for --push when the study is not on one (the study's own server otherwise)")
    p.set_defaults(func=run)


def add_motion_option(p: argparse.ArgumentParser) -> None:
    """--no-motion-correction, --tta and --tta-ed-es (super-resolve, batch)."""
    p.add_argument("--no-motion-correction", dest="motion_correction", action="store_false", default=True,
                   help="do not estimate and undo the per-slice breath-hold shifts before super-resolution "
                        "(on by default; docs/pipeline.md)")
    tta = p.add_mutually_exclusive_group()
    tta.add_argument("--tta", dest="tta", action="store_const", const="all", default="off",
                     help="test-time augmentation: labels from the class scores averaged over the image and its "
                          "three in-plane mirrorings, every phase (4x the network time; on ACDC cross-validation "
                          "folds +0.005 myocardium and +0.01 RV end-systole Dice, docs/real-data.md)")
    tta.add_argument("--tta-ed-es", dest="tta", action="store_const", const="ed_es",
                     help="test-time augmentation of the ED and ES phases only, the phases the volumes, EF and "
                          "mass come from (about 1.4x the network time of a 20-phase cine)")


def add_long_axis_options(p: argparse.ArgumentParser) -> None:
    """--long-axis LA [LA ...] and --no-long-axis."""
    p.add_argument("--long-axis", nargs="+", type=Path, default=None, metavar="LA",
                   help="long-axis cines of the same study (NIfTI: UK Biobank la_2ch/3ch/4ch, M&Ms-2 <id>_LA_*; DICOM "
                        "folder, zip or file: every single-slice cine series): evidence for the motion correction, "
                        "and the SR labels are cut along each plane (la_<view>_sr_labels.nii.gz). Default: the "
                        "long-axis files found beside the study in the UK Biobank and M&Ms-2 layouts, and the "
                        "long-axis cine series of a DICOM study (its folder, zip or PACS study: one slice position, "
                        "several phases, at an angle to the short-axis slices)")
    p.add_argument("--no-long-axis", action="store_true",
                   help="ignore long-axis cines (also those found beside the study)")


def long_axis_inputs(args: argparse.Namespace, study_path: Path | None, say, study=None) -> list:
    """The long-axis inputs of a run: --long-axis, else those found beside the study (`find_long_axis_files`) and
    the long-axis series read with a DICOM study (`long_axis_in_study`); none with --no-long-axis. A file or series
    that cannot be read is kept as ignored (one warning line naming it)."""
    from gemini_cmr.core.longaxis import (
        LongAxisInput,
        find_long_axis_files,
        load_long_axis,
        long_axis_in_study,
    )

    in_study = list(getattr(study, "meta", None) and study.meta.long_axis_series or [])
    if getattr(args, "no_long_axis", False):
        if in_study and not args.long_axis:
            say(f"long-axis series in the study not used (--no-long-axis): "
                f"{', '.join(repr(c.description or c.series_uids[0]) for c in in_study)}")
        return []
    paths = list(args.long_axis or [])
    out: list = []
    if not paths:
        if study_path is not None:
            paths = find_long_axis_files(study_path)
            if paths:
                say(f"long-axis cines found beside the study: {', '.join(p.name for p in paths)}")
        if in_study:
            found = long_axis_in_study(study)
            names = [x.path if isinstance(x, LongAxisInput) else f"{x.view} {x.source_path}" for x in found]
            say(f"long-axis series found in the study: {'; '.join(names)}")
            out.extend(found)
    for p in paths:
        try:
            out.extend(load_long_axis(p))
        except GeminiError as exc:
            out.append(LongAxisInput(str(p), reason=str(exc)))
    return out


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
    remote = pacs_source(args)  # (server, study UID, series UID) for a study on a PACS, else None
    study_path = None if remote else Path(args.study)
    out = check_output_folder(args.out, study_path)  # before anything slow: a bad --out fails in a second
    push_to = push_target(args, remote)  # bad PACS settings fail before the compute too
    progress = StderrProgress(not args.quiet)
    t0 = time.perf_counter()
    if remote:
        from gemini_cmr.core.io.pacs import pulled_study

        server, study_uid, series_uid = remote
        want_la = not args.no_long_axis and not args.long_axis  # the study's long-axis series, retrieved too
        with pulled_study(server, study_uid, series_uid or args.series_uid, progress, long_axis=want_la) as folder:
            study = load_study(folder, allow_incomplete=args.allow_incomplete)
        study.meta.source_path = study_address(server, study_uid, series_uid)
    else:
        study = load_study(study_path, series_uid=args.series_uid, allow_incomplete=args.allow_incomplete)
    t_load = time.perf_counter() - t0
    for w in study.meta.warnings:
        print(f"gemini-cmr: warning: {study.meta.source_path or args.study}: {w}", file=sys.stderr, flush=True)
    n_phases = len(parse_phases(args.phases, study)[0])
    with_dicom = study.meta.dicom is not None if args.dicom is None else args.dicom
    if push_to is not None and not with_dicom:
        raise GeminiError("--push sends the DICOM outputs: add --dicom")
    notice = dicom_notice(study, args.dicom)
    if notice:
        print(f"gemini-cmr: warning: {notice}", file=sys.stderr, flush=True)
    check_output_folder(out, study_path, need_bytes=estimate_output_bytes(study, n_phases, args.sr_dtype,
                                                                          with_dicom, args.dicom_compression))
    progress(0.0, f"loaded {study.name}: {study.n_phases} phases x {study.n_slices} slices")
    long_axis = long_axis_inputs(args, study_path, lambda m: progress(0.0, m), study)
    engine = SuperResolver(model=args.model, adapter=args.adapter, device=args.device)
    progress(0.0, f"model {engine.model_id[:12]} on {engine.device}")
    result = engine.run(study, phases=args.phases, meshes="all" if args.all_phase_meshes else "ed_es",
                        progress=progress, motion_correction=args.motion_correction, long_axis=long_axis,
                        tta=args.tta)
    if result.model_choice:
        progress(0.8, f"model used: {result.model_id[:12]} ({result.model_choice})")
    result.timings["load_study"] = t_load
    for w in result.warnings:
        print(f"gemini-cmr: warning: {w}", file=sys.stderr, flush=True)
    extra = {"arguments": {
        "study": study.meta.source_path if remote else str(args.study), "out": str(out), "model": None if args.model is None else str(args.model),
        "adapter": None if args.adapter is None else str(args.adapter), "device": args.device,
        "phases": args.phases, "mesh_format": formats, "all_phase_meshes": bool(args.all_phase_meshes),
        "dicom": with_dicom, "dicom_compression": args.dicom_compression,
        "motion_correction": bool(args.motion_correction), "tta": args.tta,
        "long_axis": None if args.long_axis is None else [str(p) for p in args.long_axis],
        "no_long_axis": bool(args.no_long_axis),
    }}  # fmt: skip
    if notice:
        result.warnings.append(notice)
    write_outputs(result, out, formats, args.all_phase_meshes, extra_info=extra, sr_dtype=args.sr_dtype,
                  dicom=with_dicom, dicom_compression=args.dicom_compression)
    total = time.perf_counter() - t0
    for item in result.long_axis:
        if item.used:
            progress(1.0, f"long-axis {item.view}: SR labels cut along its plane -> {item.output}")
    progress(1.0, f"wrote {out} in {total:.1f} s")
    print(f"{out}: {summary_line(result)}")
    if push_to is not None:
        push_outputs(push_to, out, progress)
    return STRICT_EXIT if args.strict and doubtful(result) else 0


STRICT_EXIT = 3  # --strict: outputs written, but their numbers need a look


def doubtful(result) -> bool:
    """An implausible phenotype or a failed quality check of the labels (`--strict`'s test)."""
    return not (result.phenotypes or {}).get("plausible", True) or not (getattr(result, "qc", None) or {}).get(
        "passed", True)


def pacs_source(args: argparse.Namespace):
    """(server settings, study UID, series UID) when STUDY names a study on a PACS, else None."""
    from gemini_cmr.cli.pacs import server_from_args
    from gemini_cmr.core.io.pacs import is_pacs_url, parse_study_url

    if not is_pacs_url(args.study):
        return None
    url, study_uid, series_uid, user, password = parse_study_url(args.study)
    if not study_uid:
        raise GeminiError(f"name the study on the server: {url}?StudyInstanceUID=...[&SeriesInstanceUID=...]")
    return server_from_args(args, url, user, password), study_uid, series_uid


def push_target(args: argparse.Namespace, remote):
    """Where --push sends the outputs: --server (or the environment and config file when the study is a
    local one), else the server the study came from; None without --push."""
    from gemini_cmr.cli.pacs import server_from_args

    if not args.push:
        return None
    if remote is not None and not args.server:
        return remote[0]
    return server_from_args(args)


def study_address(server, study_uid: str, series_uid: str | None) -> str:
    """The study's address without credentials (run.json, messages)."""
    query = f"StudyInstanceUID={study_uid}" + (f"&SeriesInstanceUID={series_uid}" if series_uid else "")
    return f"{server.display}?{query}"


def push_outputs(server, out: Path, progress) -> None:
    """Send the DICOM files this run wrote (run.json's outputs under dicom/): images before segmentations."""
    import json

    from gemini_cmr.core.errors import PacsError
    from gemini_cmr.core.io.pacs import push

    names = json.loads((out / "run.json").read_text())["outputs"]
    files = [out / n for n in names if n.startswith("dicom/") and n.endswith(".dcm")]
    try:
        report = push(server, files, progress)
    except PacsError as exc:
        raise PacsError(f"{exc} (the outputs in {out} are complete)") from None
    print(f"{server.display}: sent {len(report.stored)} DICOM files in {len(report.series)} series")


def summary_line(result) -> str:
    """ED/ES and the main phenotypes; implausible values marked, unavailable ones "n/a (reason)"."""
    from gemini_cmr.core.phenotypes import value_text

    p = result.phenotypes
    values = "  ".join(f"{name} {value_text(p, key, unit)}" for name, key, unit in (
        ("LVEDV", "lv_edv_ml", "mL"), ("LVESV", "lv_esv_ml", "mL"), ("LVEF", "lv_ef_pct", "%"),
        ("LV mass", "lv_mass_g", "g"), ("RVEDV", "rv_edv_ml", "mL"), ("RVEF", "rv_ef_pct", "%")))
    flag = "" if p.get("plausible", True) else "  [check: implausible values, see the warnings]"
    if not (getattr(result, "qc", None) or {}).get("passed", True):
        flag += "  [check: the labels failed a quality check, see the warnings]"
    return f"ED {result.ed_phase} ES {result.es_phase}  {values}{flag}"
