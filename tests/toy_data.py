"""Tiny analytic test data, far smaller and faster than the product's phantoms (`gemini-cmr synth`).

`write_toy_dataset`: a paired dataset (LR/HR cine + labels) for the training and evaluation tests: a prolate LV (cavity + myocardial shell)
and an RV ellipsoid beside it, contracting over the cycle, sampled on an HR grid = `sr_grid(LR grid)`
(voxel centres) and on the LR grid with a box slice profile (sub-samples averaged through-plane and
in-plane). Files follow the paired-dataset contract of docs/DEVELOPING.md.
`phantom` / `write_phantom`: an unlabelled beating two-ventricle cine on an oblique stack (pipeline tests).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from gemini_cmr.core.geometry import rotation_matrix, sr_grid
from gemini_cmr.core.io.atomic import atomic_write_text
from gemini_cmr.core.io.nifti import save_nifti
from gemini_cmr.core.study import Grid


def _labels_at(p: np.ndarray, centre: np.ndarray, r_lv: float, r_rv: float, ang: float) -> np.ndarray:
    """Labels at world points p (..., 3): slice normal = z."""
    q = p - centre
    x, y, z = q[..., 0], q[..., 1], q[..., 2]
    lab = np.zeros(q.shape[:-1], np.uint8)
    below_base = z < 22.0
    lc = 42.0
    cav = below_base & ((x**2 + y**2) / r_lv**2 + ((z - 22.0) / lc) ** 2 < 1)
    myo = below_base & ((x**2 + y**2) / (r_lv + 7) ** 2 + ((z - 22.0) / (lc + 7)) ** 2 < 1) & ~cav
    c, s = np.cos(ang), np.sin(ang)
    off = r_lv + 7 + 0.55 * r_rv
    xr, yr = x - off * c, y - off * s
    u, v = xr * c + yr * s, -xr * s + yr * c
    rv = (z < 20.0) & ((u / (0.6 * r_rv)) ** 2 + (v / (1.5 * r_rv)) ** 2 + ((z - 20.0) / 36.0) ** 2 < 1)
    lab[rv & ~myo & ~cav] = 3
    lab[myo] = 2
    lab[cav] = 1
    return lab


def _image_from_labels(lab: np.ndarray, p: np.ndarray, centre: np.ndarray) -> np.ndarray:
    q = p - centre
    body = ((q[..., 0] / 70.0) ** 2 + (q[..., 1] / 55.0) ** 2) < 1
    tex = 0.05 * np.sin(q[..., 0] / 4.0) * np.cos(q[..., 1] / 5.0)
    img = np.where(body, 0.25 + tex, 0.02).astype(np.float32)
    img[lab == 1] = 1.0
    img[lab == 3] = 0.9
    img[lab == 2] = 0.4
    return img


def make_subject(rng: np.random.Generator, n_phases: int = 4, lr_shape=(8, 40, 40), lr_spacing=(2.0, 2.0, 8.0),
                 oblique_deg: float = 0.0):
    """Return (lr_image, lr_labels, lr_affine, hr_image, hr_labels, hr_affine, ed, es); arrays (T, Z, Y, X)."""
    nz, ny, nx = lr_shape
    sx, sy, sz = lr_spacing
    rot = rotation_matrix(np.array([1.0, 0.3, 0.0]), oblique_deg) if oblique_deg else np.eye(3)
    aff = np.eye(4)
    aff[:3, :3] = rot @ np.diag([sx, sy, sz])
    centre_idx = np.array([(nx - 1) / 2, (ny - 1) / 2, (nz - 1) / 2])
    aff[:3, 3] = rng.uniform(-50, 50, 3) - aff[:3, :3] @ centre_idx
    lr = Grid(lr_shape, aff)
    sr = sr_grid(lr)
    heart = lr.index_to_world(centre_idx + np.array([rng.uniform(-3, 3), rng.uniform(-3, 3), rng.uniform(-0.3, 0.3)]))
    # positions in the heart's frame: rotate world offsets back so the long axis follows the slice normal
    size = rng.uniform(0.85, 1.15)
    ang = rng.uniform(np.pi * 0.8, np.pi * 1.2)
    gain = float(rng.uniform(50, 500))
    inv = rot.T

    def local(points):
        return (points - heart) @ inv.T + heart

    hr_pts = local(sr.voxel_centres())
    # LR: box profile, 2x2 in-plane x 4 through-plane sub-samples
    subs = [(a, b, c) for a in (-0.25, 0.25) for b in (-0.25, 0.25) for c in (-0.375, -0.125, 0.125, 0.375)]
    zz, yy, xx = np.meshgrid(*(np.arange(n) for n in lr_shape), indexing="ij")
    ijk = np.stack([xx, yy, zz], -1).astype(np.float64)
    lr_img, lr_lab, hr_img, hr_lab = [], [], [], []
    for t in range(n_phases):
        contraction = np.sin(np.pi * t / n_phases) ** 2
        r_lv = 20.0 * size * (1 - 0.3 * contraction)
        r_rv = 16.0 * size * (1 - 0.25 * contraction)
        lab = _labels_at(hr_pts, heart, r_lv, r_rv, ang)
        hr_lab.append(lab)
        hr_img.append(_image_from_labels(lab, hr_pts, heart) * gain)
        acc = np.zeros(lr_shape, np.float32)
        for s in subs:
            pts = local(lr.index_to_world(ijk + np.array(s)))
            acc += _image_from_labels(_labels_at(pts, heart, r_lv, r_rv, ang), pts, heart)
        acc = acc / len(subs) + rng.normal(0, 0.01, lr_shape).astype(np.float32)
        lr_img.append(acc * gain)
        lr_lab.append(_labels_at(local(lr.index_to_world(ijk)), heart, r_lv, r_rv, ang))
    ed, es = 0, n_phases // 2
    return (np.stack(lr_img), np.stack(lr_lab), lr.affine, np.stack(hr_img).astype(np.float32),
            np.stack(hr_lab), sr.affine, ed, es)


def write_toy_dataset(root: str | Path, n_subjects: int = 4, seed: int = 0, splits: list[str] | None = None,
                      n_phases: int = 4, lr_shape=(8, 40, 40), lr_spacing=(2.0, 2.0, 8.0)) -> Path:
    """Write a paired dataset (manifest.json + NIfTI files) under `root`; returns `root`."""
    root = Path(root)
    rng = np.random.default_rng(seed)
    splits = splits or (["train"] * max(1, n_subjects - 1) + ["val"])[:n_subjects]
    subjects = []
    for i in range(n_subjects):
        sid = f"toy-{i:03d}"
        lr_i, lr_l, lr_a, hr_i, hr_l, hr_a, ed, es = make_subject(
            rng, n_phases, lr_shape, lr_spacing, oblique_deg=float(rng.uniform(0, 20)))
        d = root / sid
        save_nifti(d / "lr_image.nii.gz", lr_i, lr_a)
        save_nifti(d / "lr_labels.nii.gz", lr_l, lr_a)
        save_nifti(d / "hr_image.nii.gz", hr_i, hr_a)
        save_nifti(d / "hr_labels.nii.gz", hr_l, hr_a)
        subjects.append({"id": sid, "split": splits[i], "domain": "toy",
                         "lr_image": f"{sid}/lr_image.nii.gz", "lr_labels": f"{sid}/lr_labels.nii.gz",
                         "hr_image": f"{sid}/hr_image.nii.gz", "hr_labels": f"{sid}/hr_labels.nii.gz",
                         "ed_phase": ed, "es_phase": es})
    manifest = {"format": "gemini-cmr-paired", "version": 1,
                "generator": {"command": "tests.toy_data.write_toy_dataset", "seed": seed, "domain": "toy",
                              "version": "0.1.0"},
                "subjects": subjects}
    atomic_write_text(root / "manifest.json", json.dumps(manifest, indent=2) + "\n")
    return root


def phantom(n_phases: int, n_slices: int, size: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(T, Z, Y, X) float32 cine and affine: a beating two-ventricle phantom on an oblique stack."""
    rot = rotation_matrix(np.array([0.3, 1.0, 0.2]), 25.0)
    aff = np.eye(4)
    aff[:3, :3] = rot * np.array([1.8, 1.8, 8.0])
    grid = Grid((n_slices, size, size), aff)
    aff[:3, 3] = -grid.centre()
    grid = Grid((n_slices, size, size), aff)
    local = (grid.voxel_centres() - np.array([-8.0, 0.0, 0.0])) @ rot
    rng = np.random.default_rng(seed)
    body = np.sqrt(np.sum((local[..., :2] / (0.45 * size * 1.8)) ** 2, axis=-1)) < 1.0
    frames = []
    for t in range(n_phases):
        s = 1.0 - 0.3 * math.sin(math.pi * t / n_phases) ** 2
        r = np.sqrt(np.sum((local / (np.array([22.0, 18.0, 30.0]) * s)) ** 2, axis=-1))
        rv = np.sqrt(np.sum(((local - [40.0, 0, 0]) / (np.array([12.0, 22.0, 26.0]) * s)) ** 2, axis=-1))
        img = np.where(body, 60.0, 5.0)
        img = np.where(rv < 1.0, 240.0, img)
        img = np.where(r < 1.0 + 8.0 / (22.0 * s), 80.0, img)
        img = np.where(r < 1.0, 300.0, img)
        frames.append(img + rng.normal(0, 6.0, img.shape))
    return np.stack(frames).astype(np.float32), aff


def write_phantom(path: Path, n_phases: int, n_slices: int, size: int, seed: int = 0) -> Path:
    image, aff = phantom(n_phases, n_slices, size, seed)
    save_nifti(path, image, aff, phase_interval_ms=40.0)
    return Path(path)
