"""A synthetic study and a fake predictor (the analytic anatomy sampled on the SR grid) for engine tests."""

from __future__ import annotations

import numpy as np

from gemini_cmr.core.geometry import place_on_sr_grid, rotation_matrix, sr_grid
from gemini_cmr.core.predict import Prediction
from gemini_cmr.core.study import Grid, Study, StudyMeta

LV_RADII = np.array([22.0, 18.0, 30.0])  # mm, scaled per phase


def phase_scale(t: int, n: int) -> float:
    """1.0 at phase 0 (ED) down to 0.75 at n // 2 (ES)."""
    return 1.0 - 0.25 * np.sin(np.pi * t / n) ** 2 if n > 1 else 1.0


def anatomy(world: np.ndarray, centre: np.ndarray, frame: np.ndarray, s: float) -> np.ndarray:
    """Labels at world points (..., 3): LV cavity ellipsoid, myocardium shell of constant volume, RV ellipsoid
    beside it."""
    local = (world - centre) @ frame  # coordinates along the heart's own axes
    r = np.sqrt(np.sum((local / (LV_RADII * s)) ** 2, axis=-1))
    lab = np.zeros(world.shape[:-1], np.uint8)
    # the myocardium keeps its volume: an 8 mm shell at s = 1, outer radii (s^3 + C)^(1/3) x LV_RADII
    c = (1.0 + 8.0 / LV_RADII[0]) ** 3 - 1.0
    lab[r < (s**3 + c) ** (1.0 / 3.0) / s] = 2
    lab[r < 1.0] = 1
    rv = np.sqrt(np.sum(((local - np.array([34.0 * s, 0, 0])) / (np.array([12.0, 22.0, 26.0]) * s)) ** 2, axis=-1))
    lab[(rv < 1.0) & (lab == 0)] = 3
    return lab


def make_study(n_phases: int = 4, oblique: bool = True, ed_es: tuple[int, int] | None = None,
               with_labels: bool = True) -> Study:
    rot = rotation_matrix(np.array([0.3, 1.0, 0.2]), 25.0) if oblique else np.eye(3)
    aff = np.eye(4)
    aff[:3, :3] = rot * np.array([1.8, 1.8, 8.0])
    aff[:3, 3] = [-60.0, -70.0, -30.0]
    grid = Grid((10, 64, 64), aff)
    centre = grid.centre() + np.array([-8.0, 0.0, 0.0])
    world = grid.voxel_centres()
    labels = np.stack([anatomy(world, centre, rot, phase_scale(t, n_phases)) for t in range(n_phases)])
    image = np.where(labels == 1, 300.0, np.where(labels == 2, 80.0, np.where(labels == 3, 250.0, 30.0)))
    rng = np.random.default_rng(1)
    image = (image + rng.normal(0, 5, image.shape)).astype(np.float32)
    meta = StudyMeta(source_path="synthetic", format="synthetic", patient_id="fake-001",
                     ed_phase=None if ed_es is None else ed_es[0], es_phase=None if ed_es is None else ed_es[1],
                     height_cm=175.0, weight_kg=70.0)
    study = Study(image=image, affine=aff, phase_times_ms=np.arange(n_phases) * 40.0,
                  labels=labels if with_labels else None, meta=meta)
    study.meta.extra["heart_centre"] = centre
    study.meta.extra["heart_frame"] = rot
    return study


class FakePredictor:
    """Predictor interface; 'predicts' the analytic anatomy on the SR grid (so outputs are known)."""

    model_id = "f" * 64
    device = "cpu"

    def __init__(self):
        self.calls: list[list[int]] = []

    def predict(self, study, phases=None, progress=None, cancel=None):
        phases = list(range(study.n_phases)) if phases is None else list(phases)
        self.calls.append(phases)
        sr = sr_grid(study.grid)
        world = sr.voxel_centres()
        c, f = study.meta.extra["heart_centre"], study.meta.extra["heart_frame"]
        labels = []
        for i, t in enumerate(phases):
            if cancel is not None and cancel():
                from gemini_cmr.core.errors import Cancelled

                raise Cancelled("cancelled")
            labels.append(anatomy(world, c, f, phase_scale(t, study.n_phases)))
            if progress:
                progress((i + 1) / len(phases), f"phase {t}")
        image = place_on_sr_grid(study.image[phases], study.grid, sr)
        return Prediction(sr, phases, image.astype(np.float32), np.stack(labels), self.model_id,
                          timings={"model": 0.0})


def write_paired_dataset(root, splits=("test", "test", "train"), n_phases: int = 4, ed_es=(0, 2)):
    """A paired dataset (manifest layout) whose HR ground truth is the analytic anatomy on the SR grid."""
    import json
    from pathlib import Path

    from gemini_cmr.core.io.nifti import save_nifti

    root = Path(root)
    subjects = []
    for n, split in enumerate(splits):
        sid = f"sub-{n:03d}"
        study = make_study(n_phases=n_phases, oblique=n % 2 == 0)
        sr = sr_grid(study.grid)
        world = sr.voxel_centres()
        c, f = study.meta.extra["heart_centre"], study.meta.extra["heart_frame"]
        hr_lab = np.stack([anatomy(world, c, f, phase_scale(t, n_phases)) for t in range(n_phases)])
        hr_img = place_on_sr_grid(study.image, study.grid, sr) + 1.0
        d = root / sid
        save_nifti(d / "lr_image.nii.gz", study.image, study.affine)
        save_nifti(d / "lr_labels.nii.gz", study.labels, study.affine)
        save_nifti(d / "hr_image.nii.gz", hr_img, sr.affine)
        save_nifti(d / "hr_labels.nii.gz", hr_lab, sr.affine)
        subjects.append({"id": sid, "split": split, "domain": "synthetic",
                         "lr_image": f"{sid}/lr_image.nii.gz", "lr_labels": f"{sid}/lr_labels.nii.gz",
                         "hr_image": f"{sid}/hr_image.nii.gz", "hr_labels": f"{sid}/hr_labels.nii.gz",
                         "ed_phase": ed_es[0], "es_phase": ed_es[1]})
    manifest = {"format": "gemini-cmr-paired", "version": 1, "generator": {"command": "tests"},
                "subjects": subjects}
    (root / "manifest.json").write_text(json.dumps(manifest))
    return root


class CentreFakePredictor(FakePredictor):
    """FakePredictor for studies read from files (no meta.extra): the heart centre/frame are fixed."""

    def predict(self, study, phases=None, progress=None, cancel=None):
        ref = make_study(n_phases=study.n_phases, oblique=not np.allclose(study.affine[:3, :3],
                                                                          np.diag([1.8, 1.8, 8.0]), atol=1e-3))
        study.meta.extra.setdefault("heart_centre", ref.meta.extra["heart_centre"])
        study.meta.extra.setdefault("heart_frame", ref.meta.extra["heart_frame"])
        return super().predict(study, phases, progress, cancel)
