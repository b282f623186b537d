"""Write a heart-centred in-plane crop of an ACDC training folder (ED/ES frames, labels, Info.cfg).

For moving the cohort to a machine with a small transfer limit (the lent GPU machine takes 64 MiB):
each patient's frames are cropped to a SIZE_MM x SIZE_MM box centred on the union of its ED and ES
labels (clipped to the image); the affine's origin is moved so world coordinates are unchanged.
Training crops (`crop` 112 SR pixels, heart-centred) fit well inside the default 176 mm box.
Usage: python recipes/gemini-acdc/crop_acdc.py ACDC_TRAINING_DIR OUT_DIR [SIZE_MM]
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import nibabel as nib
import numpy as np


def main(src: str, dst: str, size_mm: float = 176.0) -> None:
    src_p, dst_p = Path(src), Path(dst)
    for pdir in sorted(p for p in src_p.iterdir() if p.is_dir() and p.name.startswith("patient")):
        gts = sorted(pdir.glob("*_frame??_gt.nii.gz"))
        if not gts:
            continue
        labs = [np.asarray(nib.load(g).dataobj) for g in gts]
        mask = np.any([lab.any(axis=2) for lab in labs], axis=0)
        ii, jj = np.nonzero(mask)
        hdr = nib.load(gts[0]).header
        px, py = (float(v) for v in hdr.get_zooms()[:2])
        nx, ny = labs[0].shape[:2]
        hx, hy = int(round(size_mm / px / 2)), int(round(size_mm / py / 2))
        cx, cy = int(round(ii.mean())), int(round(jj.mean()))
        x0, x1 = max(0, cx - hx), min(nx, cx + hx)
        y0, y1 = max(0, cy - hy), min(ny, cy + hy)
        out = dst_p / pdir.name
        out.mkdir(parents=True, exist_ok=True)
        shutil.copy2(pdir / "Info.cfg", out / "Info.cfg")
        for f in sorted(pdir.glob("*_frame??*.nii.gz")):
            img = nib.load(f)
            data = np.asarray(img.dataobj)[x0:x1, y0:y1]
            # ACDC headers: a unit-norm sform, the voxel size only in pixdim (core.io.nifti handles
            # this); move the origin by the cropped voxels at the pixdim size and keep the rest.
            hdr = img.header.copy()
            zooms = np.asarray(hdr.get_zooms()[:3], np.float64)
            aff = img.affine.copy()
            unit = aff[:3, :3] / np.linalg.norm(aff[:3, :3], axis=0)
            aff[:3, 3] = aff[:3, 3] + unit @ (zooms * np.array([x0, y0, 0.0]))
            hdr.set_data_shape(data.shape)
            hdr.set_sform(aff, int(hdr["sform_code"]))
            hdr.set_qform(img.header.get_qform(), int(hdr["qform_code"]))
            new = nib.Nifti1Image(data, None, hdr)
            nib.save(new, out / f.name)
    print("cropped", src_p, "->", dst_p)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], *(float(a) for a in sys.argv[3:4]))
