"""`gemini-cmr info PATH [--json]`: load a study and describe it (shape, geometry, phases, labels, warnings).
`gemini-cmr info --model MODEL [--json]`: a model's card (`core.evaluation.card`: what it is, its training,
its accuracy on patients it never saw, its licence); MODEL is a model folder or `.safetensors` file, or
`acdc` / `phantom` for the bundled models.

The JSON form is `Study.summary()` (one object on stdout) and is what scripts and the app's tests read;
the plain form prints the same facts for people. Load errors are `StudyError`s: main.py turns them into
one line on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import json
import sys


def register(subparsers, summary: str) -> argparse.ArgumentParser:
    parser = subparsers.add_parser("info", help=summary, description=summary)
    parser.add_argument("path", nargs="?", default=None,
                        help="DICOM folder or zip (segmentations beside the images give the labels), NIfTI "
                             "file, or ACDC / M&Ms / UK Biobank subject folder")
    parser.add_argument("--model", default=None, metavar="MODEL",
                        help="describe a model instead: its folder or .safetensors file, or 'acdc' / 'phantom' for "
                             "the bundled ones (architecture, training, held-out accuracy, licence)")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    parser.add_argument("--series-uid", default=None, metavar="UID",
                        help="load this DICOM SeriesInstanceUID when the folder holds several series")
    parser.add_argument("--allow-incomplete", action="store_true",
                        help="load the complete slices of an incomplete DICOM series instead of failing")
    parser.set_defaults(func=run)
    return parser


def model_path(name: str):
    """A model argument: `acdc` / `phantom` name the bundled models, anything else is a path."""
    from gemini_cmr.core.resources import acdc_model_path, bundled_model_path

    return {"acdc": acdc_model_path(), "phantom": bundled_model_path()}.get(name.lower(), name)


def _write(doc: dict, as_json: bool, text) -> int:
    """One JSON object on stdout, or `text(doc)` for people."""
    if as_json:
        json.dump(doc, sys.stdout, indent=1)
        sys.stdout.write("\n")
    else:
        sys.stdout.write(text(doc))
    return 0


def run(args: argparse.Namespace) -> int:
    if args.model is not None:
        if args.path is not None:
            print("gemini-cmr info: give a study or --model, not both", file=sys.stderr)
            return 2
        from gemini_cmr.core.evaluation.card import format_card, model_card

        return _write(model_card(model_path(args.model)), args.json, format_card)
    if args.path is None:
        print("gemini-cmr info: give a study (PATH) or --model MODEL", file=sys.stderr)
        return 2
    from gemini_cmr.core.io import load_study  # lazy: keeps `gemini-cmr --help` fast

    study = load_study(args.path, series_uid=args.series_uid, allow_incomplete=args.allow_incomplete)
    return _write(study.summary(), args.json, format_summary)


def _quantity(value, unit: str) -> str:
    return "unknown" if value is None else f"{value:.4g} {unit}"


def _phase(value) -> str:
    return "unknown" if value is None else f"{value} (0-based)"


def format_summary(info: dict) -> str:
    """Readable multi-line text of a `Study.summary()` dict (control characters in names escaped, so every
    fact stays on its line)."""
    from gemini_cmr.core.io.names import printable

    info = {**info, **{k: printable(str(info[k])) for k in ("path", "patient_id", "series_description", "vendor")
                       if info.get(k)}, "warnings": [printable(str(w)) for w in info.get("warnings", [])]}
    t, z, y, x = info["shape"]
    sx, sy, sz = info["spacing_mm"]
    lines = [
        f"path:            {info['path']}",
        f"format:          {info['format']}" + (f" ({info['vendor']})" if info.get("vendor") else ""),
    ]
    if info.get("patient_id"):
        lines.append(f"patient:         {info['patient_id']}")
    if info.get("series_description"):
        lines.append(f"series:          {info['series_description']}")
    lines += [
        f"shape:           {t} phases x {z} slices x {y} rows x {x} columns (T, Z, Y, X)",
        f"spacing:         {sx:.4g} x {sy:.4g} mm in-plane, {sz:.4g} mm between slice centres",
        f"slice thickness: {_quantity(info['slice_thickness_mm'], 'mm')}",
        "affine (RAS+):   " + "\n                 ".join(
            "[" + " ".join(f"{v + 0.0:9.3f}" for v in row) + "]" for row in info["affine"]),
    ]
    inten = info.get("intensity")
    if inten:
        lines.append(f"intensity:       {inten['min']:.6g} to {inten['max']:.6g}, mean {inten['mean']:.6g}")
    times = info.get("phase_times_ms")
    if times:
        lines.append(f"phase times:     {times[0]:.1f}-{times[-1]:.1f} ms")
    lines += [
        f"ED phase:        {_phase(info['ed_phase'])}",
        f"ES phase:        {_phase(info['es_phase'])}",
        "labels:          " + (f"values {info['label_values']} on phases {info['labelled_phases']}"
                                + (f" ({info['label_source']})" if info.get("label_source") else "")
                                if info["has_labels"] else "none"),
    ]
    if info.get("height_cm") or info.get("weight_kg"):
        lines.append(f"height/weight:   {_quantity(info.get('height_cm'), 'cm')} / "
                     f"{_quantity(info.get('weight_kg'), 'kg')}")
    for w in info["warnings"]:
        lines.append(f"warning:         {w}")
    return "\n".join(lines) + "\n"
