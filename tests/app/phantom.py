"""A small analytic beating-heart phantom for the app tests (not the project's phantom generator).

The anatomy is a function of world position and phase, so the same heart can be sampled on the LR
grid (the study) and exactly on its SR grid (an oracle predictor that stands in for the network,
making the GUI tests independent of how well the bundled model is trained).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from gemini_cmr.core.geometry import rotation_matrix, sr_grid
from gemini_cmr.core.io.nifti import save_nifti
from gemini_cmr.core.study import Grid

N_PHASES = 8
LR_SHAPE = (10, 80, 80)  # Z, Y, X
LR_SPACING = (1.8, 1.8, 8.0)  # x, y, z mm


def lr_grid() -> Grid:
    rot = rotation_matrix(np.array([1.0, 0.3, 0.0]), 25.0)
    aff = np.eye(4)
    aff[:3, :3] = rot * np.array(LR_SPACING)
    nz, ny, nx = LR_SHAPE
    centre_idx = np.array([(nx - 1) / 2, (ny - 1) / 2, (nz - 1) / 2])
    aff[:3, 3] = np.array([10.0, -20.0, 30.0]) - aff[:3, :3] @ centre_idx
    return Grid(LR_SHAPE, aff)


def _frame(grid: Grid):
    normal = grid.normal
    tilt = rotation_matrix(grid.directions[:, 0], 12.0) @ normal  # LV axis tilted from the slice normal
    side = np.cross(tilt, grid.directions[:, 1])
    side /= np.linalg.norm(side)
    return grid.centre(), tilt, side


def labels_at(points: np.ndarray, phase: int, grid_for_frame: Grid) -> np.ndarray:
    """Labels (0 bg, 1 LV cavity, 2 LV myocardium, 3 RV cavity) at world points (..., 3)."""
    c, a, side = _frame(grid_for_frame)
    s = math.sin(math.pi * phase / N_PHASES) ** 2  # 0 at ED (phase 0), 1 at ES
    d = points - c
    z = d @ a
    r = np.linalg.norm(d - z[..., None] * a, axis=-1)
    base = z > -30
    rc, lc = 21 - 6 * s, 34 - 5 * s
    re, le = rc + 8 + 2 * s, lc + 8
    cav = ((r / rc) ** 2 + (z / lc) ** 2 < 1) & base
    epi = ((r / re) ** 2 + (z / le) ** 2 < 1) & base
    drv = d - 30 * side
    zr = drv @ a
    rr = np.linalg.norm(drv - zr[..., None] * a, axis=-1)
    rv = ((rr / (22 - 4 * s)) ** 2 + ((zr + 6) / (32 - 4 * s)) ** 2 < 1) & base & ~epi
    out = np.zeros(points.shape[:-1], dtype=np.uint8)
    out[rv] = 3
    out[epi] = 2
    out[cav] = 1
    return out


def image_at(points: np.ndarray, phase: int, grid_for_frame: Grid, lab: np.ndarray | None = None) -> np.ndarray:
    c, _, _ = _frame(grid_for_frame)
    lab = labels_at(points, phase, grid_for_frame) if lab is None else lab
    body = np.linalg.norm(points - c, axis=-1) < 68
    img = np.where(body, 110.0, 6.0)
    img = np.where(lab == 2, 60.0, img)
    img = np.where((lab == 1) | (lab == 3), 230.0, img)
    return img.astype(np.float32)


def make_study(folder: Path, with_labels: bool = False) -> Path:
    """Write phantom.nii.gz (and phantom_labels.nii.gz) into `folder`; returns the image path."""
    g = lr_grid()
    rng = np.random.default_rng(0)
    nz, ny, nx = g.shape
    zz, yy, xx = np.meshgrid(np.arange(nz), np.arange(ny), np.arange(nx), indexing="ij")
    images, labels = [], []
    for t in range(N_PHASES):
        acc = np.zeros(g.shape, np.float32)
        for dk in (-0.33, 0.0, 0.33):  # thick slices: average across the slab (partial volume)
            pts = g.index_to_world(np.stack([xx, yy, zz + dk], axis=-1))
            acc += image_at(pts, t, g)
        images.append(acc / 3 + rng.normal(0, 4, g.shape).astype(np.float32))
        labels.append(labels_at(g.index_to_world(np.stack([xx, yy, zz], axis=-1)), t, g))
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "phantom.nii.gz"
    save_nifti(path, np.stack(images), g.affine, phase_interval_ms=40.0)
    if with_labels:
        save_nifti(folder / "phantom_labels.nii.gz", np.stack(labels), g.affine, phase_interval_ms=40.0)
    return path


LA_SHAPE = (96, 96)  # Y, X
LA_SPACING = 1.7  # mm, in-plane
LA_THICKNESS = 6.0


def la_grid(view: str) -> Grid:
    """A long-axis plane through the phantom's LV axis: 4ch through both ventricles, 2ch across; columns
    across the heart, rows from base to apex."""
    g = lr_grid()
    c, a, side = _frame(g)
    across = side if view == "4ch" else np.cross(a, side) / np.linalg.norm(np.cross(a, side))
    normal = np.cross(across, a)
    aff = np.eye(4)
    aff[:3, 0], aff[:3, 1], aff[:3, 2] = across * LA_SPACING, a * LA_SPACING, normal * LA_THICKNESS
    ny, nx = LA_SHAPE
    aff[:3, 3] = c - aff[:3, :3] @ np.array([(nx - 1) / 2, (ny - 1) / 2, 0.0])
    return Grid((1, *LA_SHAPE), aff)


def make_long_axis(folder: Path, views=("4ch", "2ch")) -> list[Path]:
    """Write UK Biobank-style la_<view>.nii.gz cines of the phantom into `folder` (found beside phantom.nii.gz)."""
    g, rng, paths = lr_grid(), np.random.default_rng(1), []
    for view in views:
        la = la_grid(view)
        pts = la.voxel_centres()
        frames = [image_at(pts, t, g) + rng.normal(0, 4, la.shape).astype(np.float32) for t in range(N_PHASES)]
        paths.append(save_nifti(Path(folder) / f"la_{view}.nii.gz", np.stack(frames), la.affine,
                                phase_interval_ms=40.0))
    return paths


class OraclePredictor:
    """Stands in for the network: the phantom's exact SR image and labels on `sr_grid(study.grid)`,
    with the Predictor interface (progress per phase, cancel checked between phases)."""

    model_id = "phantom-oracle"
    device = "cpu"

    def predict(self, study, phases=None, progress=None, cancel=None, tta=False, first=(), on_chunk=None):
        from gemini_cmr.core.errors import Cancelled

        self.tta = tta
        from gemini_cmr.core.predict import Prediction

        g = study.grid
        sr = sr_grid(g)
        phases = list(range(study.n_phases)) if phases is None else list(phases)
        pts = sr.voxel_centres()
        images = np.zeros((len(phases), *sr.shape), np.float32)
        labels = np.zeros((len(phases), *sr.shape), np.uint8)
        out = Prediction(sr_grid=sr, phases=phases, sr_image=images, sr_labels=labels, model_id=self.model_id)
        order = [n for n, t in enumerate(phases) if t in set(first)]
        order += [n for n in range(len(phases)) if n not in order]
        done: list[int] = []
        for k, n in enumerate(order):
            if cancel is not None and cancel():
                raise Cancelled("cancelled")
            t = phases[n]
            labels[n] = labels_at(pts, t, g)
            images[n] = image_at(pts, t, g, labels[n])
            done.append(t)
            if on_chunk is not None:
                on_chunk(out, list(done))
            if progress is not None:
                progress((k + 1) / len(phases), f"phase {t}")
        return out
