"""Tiny two-domain LR cine data for the V-AMA tests (made here, no phantom generator needed).

Target domain: a short-axis stack with LV cavity (bright), LV myocardium (dark ring), RV cavity and a
smooth background, light noise. Source domain: the same anatomy seen by "another scanner": a gamma
curve and contrast change, stronger noise and a different intensity scale. Every study has its own
rigid pose (rotation + translation) so the alignment block has work to do.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from gemini_cmr.core.geometry import rotation_matrix
from gemini_cmr.core.io.nifti import save_nifti

SHAPE = (6, 40, 40)  # Z, Y, X
SPACING = (2.5, 2.5, 8.0)  # x, y, z mm


def make_anatomy(rng: np.random.Generator, phases: int = 2) -> np.ndarray:
    """Labels (T, Z, Y, X): LV cavity 1, myocardium 2, RV cavity 3, apex at k = 0."""
    nz, ny, nx = SHAPE
    yy, xx = np.mgrid[0:ny, 0:nx].astype(np.float64)
    cy, cx = ny / 2 + rng.uniform(-2, 2), nx / 2 + rng.uniform(-2, 2)
    out = np.zeros((phases, nz, ny, nx), np.uint8)
    for t in range(phases):
        squeeze = 1.0 - 0.25 * t
        for k in range(nz):
            f = 0.45 + 0.55 * k / (nz - 1)  # apex small, base large
            r_in, r_out = 5.5 * f * squeeze + 1.0, 5.5 * f * squeeze + 3.5
            d = np.hypot(yy - cy, xx - cx)
            lab = np.zeros((ny, nx), np.uint8)
            lab[d < r_out] = 2
            lab[d < r_in] = 1
            if k >= 1:
                rv = np.hypot((yy - cy) / 1.3, xx - (cx - r_out - 3.5 * f)) < 3.0 * f + 1.0
                lab[rv & (lab == 0)] = 3
            out[t, k] = lab
    return out


def render(labels: np.ndarray, rng: np.random.Generator, domain: str) -> np.ndarray:
    """Intensities of a label volume in the 'target' or 'source' domain."""
    t, nz, ny, nx = labels.shape
    yy, xx = np.mgrid[0:ny, 0:nx]
    bg = 0.15 + 0.08 * np.sin(xx / 6.0 + rng.uniform(0, 3)) * np.cos(yy / 7.0)
    tissue = {0: None, 1: 0.9, 2: 0.3, 3: 0.8}
    img = np.broadcast_to(bg, labels.shape).astype(np.float32).copy()
    for lab, val in tissue.items():
        if val is not None:
            img[labels == lab] = val
    img = np.clip(img, 0, None)
    if domain == "target":
        img = img + rng.normal(0, 0.02, img.shape)
        return (np.clip(img, 0, None) * 300.0).astype(np.float32)
    img = 0.55 * np.power(img, 0.45) + 0.1  # brighter dark tissue, lower contrast
    img = img + rng.normal(0, 0.03, img.shape)
    return (np.clip(img, 0, None) * 1000.0).astype(np.float32)


def random_affine(rng: np.random.Generator, angle: float = 20.0) -> np.ndarray:
    aff = np.eye(4)
    r = rotation_matrix(rng.normal(size=3), rng.uniform(-angle, angle))
    aff[:3, :3] = r @ np.diag(SPACING)
    aff[:3, 3] = rng.uniform(-20, 20, 3) - r @ (np.array(SPACING) * np.array(SHAPE[::-1]) / 2)
    return aff


def make_study(rng: np.random.Generator, domain: str, phases: int = 2):
    labels = make_anatomy(rng, phases)
    return render(labels, rng, domain), labels, random_affine(rng)


def write_folder(folder: Path, domain: str, n: int, seed: int, labels: bool = True) -> Path:
    """A folder of NIfTI studies `<name>.nii.gz` (+ `<name>_labels.nii.gz`)."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        img, lab, aff = make_study(rng, domain)
        save_nifti(folder / f"{domain}-{i:02d}.nii.gz", img, aff)
        if labels:
            save_nifti(folder / f"{domain}-{i:02d}_labels.nii.gz", lab, aff)
    return folder


def write_manifest(folder: Path, domain: str, n: int, seed: int) -> Path:
    """A paired-dataset-style folder (manifest.json, lr_image/lr_labels; hr_* not needed by V-AMA)."""
    rng = np.random.default_rng(seed)
    subjects = []
    for i in range(n):
        img, lab, aff = make_study(rng, domain)
        sid = f"sub-{i:03d}"
        save_nifti(folder / sid / "lr_image.nii.gz", img, aff)
        save_nifti(folder / sid / "lr_labels.nii.gz", lab, aff)
        subjects.append({"id": sid, "split": "train", "domain": domain, "lr_image": f"{sid}/lr_image.nii.gz",
                         "lr_labels": f"{sid}/lr_labels.nii.gz", "hr_image": None, "hr_labels": None,
                         "ed_phase": 0, "es_phase": 1})
    (folder / "manifest.json").write_text(json.dumps({"format": "gemini-cmr-paired", "version": 1,
                                                      "subjects": subjects}))
    return folder


@pytest.fixture(scope="session")
def domains(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("vama-domains")
    return write_folder(root / "source", "source", 4, seed=1), write_manifest(root / "target", "target", 4, seed=2)


@pytest.fixture
def one_thread():
    """Training tests run torch on one thread (the machine's 2 cores are shared with other jobs)."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
