#!/usr/bin/env python
"""A real classic DICOM cine rewritten as Enhanced MR (multi-frame) files must give the same study and the
same results: the check of the Enhanced MR reader on scanner data (no Enhanced MR study is among
../shared/data, so one is made from a classic one).

    .venv/bin/python scripts/enhanced_roundtrip.py [STUDY] [--per-slice] [--run] [--json OUT]

Every image of the loaded series goes into one multi-frame file (or one per slice, `--per-slice`): its
position as PlanePositionSequence, its TriggerTime as NominalCardiacTriggerDelayTime, orientation, pixel
spacing and slice thickness as shared functional groups, frames shuffled. Both versions are loaded and
compared (image, affine, phase times, slice thickness); with `--run` both go through `super-resolve`'s
engine (the model chosen for the study, motion correction on) and their phenotypes are compared.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import warnings
from pathlib import Path


def to_enhanced(folder: Path, out: Path, per_slice: bool, seed: int = 1) -> int:
    """Write the classic series of `folder` that `load_study` loads as Enhanced MR files in `out`."""
    import numpy as np
    import pydicom
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.sequence import Sequence
    from pydicom.uid import EnhancedMRImageStorage, ExplicitVRLittleEndian, generate_uid

    from gemini_cmr.core.io import load_study

    study = load_study(folder)
    uids = set(study.meta.dicom.sop_instance_uids[t][k] for t in range(study.n_phases)
               for k in range(study.n_slices))
    classic = [ds for p in sorted(folder.rglob("*")) if p.is_file()
               for ds in [pydicom.dcmread(p, force=True)] if str(ds.get("SOPInstanceUID", "")) in uids]
    groups: dict[object, list] = {}
    for ds in classic:
        key = tuple(round(float(v), 3) for v in ds.ImagePositionPatient) if per_slice else 0
        groups.setdefault(key, []).append(ds)
    rng = np.random.default_rng(seed)
    series_uid = generate_uid()
    out.mkdir(parents=True, exist_ok=True)
    for number, members in enumerate(groups.values()):
        members = [members[i] for i in rng.permutation(len(members))]
        first = members[0]
        ds = Dataset()
        for elem in first:  # patient, study and series modules as they were; image-level ones replaced below
            if elem.tag.group in (0x0010, 0x0020, 0x0008, 0x0018) and elem.VR != "SQ":
                ds.add(elem)
        for kw in ("ImagePositionPatient", "ImageOrientationPatient", "SliceLocation", "TriggerTime",
                   "InstanceNumber", "SliceThickness", "PixelSpacing"):
            if kw in ds:
                delattr(ds, kw)
        sop = generate_uid()
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID = EnhancedMRImageStorage, sop
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.file_meta = meta
        ds.SOPClassUID, ds.SOPInstanceUID = EnhancedMRImageStorage, sop
        ds.SeriesInstanceUID = series_uid
        ds.InstanceNumber = number + 1
        shared, measures, orient = Dataset(), Dataset(), Dataset()
        measures.PixelSpacing = first.PixelSpacing
        if "SliceThickness" in first:
            measures.SliceThickness = first.SliceThickness
        orient.ImageOrientationPatient = first.ImageOrientationPatient
        shared.PixelMeasuresSequence, shared.PlaneOrientationSequence = Sequence([measures]), Sequence([orient])
        ds.SharedFunctionalGroupsSequence = Sequence([shared])
        frames, pixels = [], []
        for src in members:
            fg, pos, sync, content = Dataset(), Dataset(), Dataset(), Dataset()
            pos.ImagePositionPatient = src.ImagePositionPatient
            sync.NominalCardiacTriggerDelayTime = src.TriggerTime
            content.StackID = "1"
            fg.PlanePositionSequence, fg.CardiacSynchronizationSequence = Sequence([pos]), Sequence([sync])
            fg.FrameContentSequence = Sequence([content])
            slope, intercept = src.get("RescaleSlope"), src.get("RescaleIntercept")
            if slope is not None or intercept is not None:
                tr = Dataset()
                tr.RescaleSlope, tr.RescaleIntercept, tr.RescaleType = slope or 1, intercept or 0, "US"
                fg.PixelValueTransformationSequence = Sequence([tr])
            frames.append(fg)
            pixels.append(np.asarray(src.pixel_array))
        ds.PerFrameFunctionalGroupsSequence = Sequence(frames)
        ds.NumberOfFrames = len(frames)
        arr = np.stack(pixels)
        ds.Rows, ds.Columns = arr.shape[1:]
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        signed = arr.dtype.kind == "i"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, int(signed)
        ds.PixelData = arr.astype("<i2" if signed else "<u2").tobytes()
        ds.save_as(out / f"EMR{number:03d}.dcm", enforce_file_format=True)
    return len(groups)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("study", nargs="?", default="../shared/data/sunnybrook/SCD0000101")
    ap.add_argument("--per-slice", action="store_true", help="one multi-frame file per slice")
    ap.add_argument("--run", action="store_true", help="also super-resolve both and compare the phenotypes")
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    import numpy as np

    from gemini_cmr.core.io import load_study

    report: dict = {"study": args.study, "per_slice": args.per_slice}
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "enhanced"
        with warnings.catch_warnings():  # pydicom's notes on the source's non-conformant UIDs
            warnings.simplefilter("ignore")
            report["files"] = to_enhanced(Path(args.study), out, args.per_slice)
        a, b = load_study(args.study), load_study(out)
        report["load"] = {
            "shape": list(b.image.shape), "image_equal": bool(np.array_equal(a.image, b.image)),
            "affine_max_diff": float(np.abs(a.affine - b.affine).max()),
            "phase_times_equal": bool(np.allclose(a.phase_times_ms, b.phase_times_ms)),
            "slice_thickness": [a.meta.slice_thickness_mm, b.meta.slice_thickness_mm]}
        print("load:", report["load"], flush=True)
        if args.run:
            from gemini_cmr.core.engine import SuperResolver

            resolver = SuperResolver(device="cpu")
            ra, rb = resolver.run(a, meshes="none"), resolver.run(b, meshes="none")
            pa, pb = ra.phenotypes, rb.phenotypes
            keys = [k for k in ("lv_edv_ml", "lv_esv_ml", "lv_ef_pct", "lv_mass_g", "rv_edv_ml") if k in pa]
            report["run"] = {"model_id": ra.model_id[:12], "labels_equal": float(np.mean(ra.sr_labels == rb.sr_labels)),
                             "classic": {k: pa[k] for k in keys}, "enhanced": {k: pb[k] for k in keys}}
            print("run:", report["run"], flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1) + "\n")
    ok = report["load"]["image_equal"] and report["load"]["affine_max_diff"] < 1e-4
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
