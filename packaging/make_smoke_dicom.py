"""A small JPEG Lossless (process 14, SV1) DICOM cine for the bundle's smoke test (`packaging/smoke_test.sh`).

The demo study written as a single-frame MR cine series by the source tree's DICOM writer (uncompressed),
each file's pixel data then re-encoded by GDCM in JPEG Lossless SV1, the usual lossless syntax of PACS
exports, which only GDCM decodes. Also writes `expected.json` (shape, spacing, pixel sum) for the check.

Usage (the source tree's environment, not the bundle): .venv/bin/python packaging/make_smoke_dicom.py OUT
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

JPEG_LOSSLESS_SV1 = "1.2.840.10008.1.2.4.70"


def transcode(src: Path, dst: Path, syntax: str = "JPEGLosslessProcess14_1") -> None:
    """`src` with its pixel data encoded by GDCM in `syntax` (a `gdcm.TransferSyntax` name; default JPEG
    Lossless SV1); every other element as it was. Also used by the tests of compressed input."""
    import gdcm
    import pydicom

    reader = gdcm.ImageReader()
    reader.SetFileName(str(src))
    if not reader.Read():
        sys.exit(f"make_smoke_dicom: GDCM cannot read {src}")
    change = gdcm.ImageChangeTransferSyntax()
    change.SetTransferSyntax(gdcm.TransferSyntax(getattr(gdcm.TransferSyntax, syntax)))
    change.SetInput(reader.GetImage())
    if not change.Change():
        sys.exit(f"make_smoke_dicom: GDCM cannot encode {src}")
    writer = gdcm.ImageWriter()
    writer.SetFileName(str(dst))
    writer.SetFile(reader.GetFile())
    writer.SetImage(change.GetOutput())
    if not writer.Write():
        sys.exit(f"make_smoke_dicom: GDCM cannot write {dst}")
    packed, ds = pydicom.dcmread(dst), pydicom.dcmread(src)
    ds.file_meta.TransferSyntaxUID = packed.file_meta.TransferSyntaxUID
    ds.PixelData = packed.PixelData
    ds["PixelData"].is_undefined_length = True
    ds["PixelData"].VR = "OB"
    ds.save_as(dst, enforce_file_format=True)


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print(__doc__.strip().splitlines()[-1], file=sys.stderr)
        return 2
    import numpy as np
    import pydicom

    from gemini_cmr.core.io import load_study
    from gemini_cmr.core.io.dicom_write import dicom_context, write_sr_series
    from gemini_cmr.core.resources import demo_study_path

    out = Path(argv[0])
    out.mkdir(parents=True, exist_ok=True)
    study = load_study(demo_study_path())
    ctx = dicom_context(study, "smoke", "0", "0")
    with tempfile.TemporaryDirectory() as tmp:
        write_sr_series(tmp, study.image, study.grid, list(range(study.n_phases)), None, ctx,
                        compression="none", atomic=False)
        files = sorted(Path(tmp).glob("*.dcm"))
        for f in files:
            transcode(f, out / f.name)
        plain = load_study(tmp)
    syntaxes = {str(pydicom.dcmread(f, stop_before_pixels=True).file_meta.TransferSyntaxUID) for f in out.glob("*.dcm")}
    if syntaxes != {JPEG_LOSSLESS_SV1}:
        sys.exit(f"make_smoke_dicom: transfer syntaxes {sorted(syntaxes)}, expected {JPEG_LOSSLESS_SV1}")
    expected = {"shape": list(plain.image.shape), "pixel_sum": float(np.asarray(plain.image, np.float64).sum())}
    (out.parent / f"{out.name}.expected.json").write_text(json.dumps(expected))
    print(f"make_smoke_dicom: {len(files)} JPEG Lossless files in {out}, image {tuple(plain.image.shape)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
