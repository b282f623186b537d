"""Tiny LR-labelled cohorts for the fine-tuning tests (core and wizard): 4D NIfTI cines with label maps
listed in a `pairs:` manifest, and a tiny acquired-2d model to start from."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from gemini_cmr.core.io.nifti import save_nifti

AFFINE = np.diag([1.5, 1.5, 8.0, 1.0])
TINY_MODEL = {"depth": 32, "widths": [4, 8, 8], "encoder": "acquired-2d", "input_to_heads": True}
# A run of a few steps on the toy cohort (batch 2 of 48 px crops, no heart box, no augmentation).
TINY_RUN = {"crop": 48, "batch_size": 2, "amp": "off", "num_threads": 1, "roi_mm": 0, "val_crop": 0,
            "augment": {}, "checkpoint_every": 2}


def heart_labels(n_slices: int = 5, size: int = 32, shift: int = 0, rv: bool = True) -> np.ndarray:
    """(Z, Y, X) project labels: an LV cavity (1) ringed by myocardium (2), an RV cavity (3) beside it,
    on the middle slices; `shift` moves the heart down and shrinks the LV cavity (phase 1: systole)."""
    yy, xx = np.mgrid[0:size, 0:size]
    r = np.hypot(yy - 15 - shift, xx - 13)
    lab = np.zeros((n_slices, size, size), np.uint8)
    for z in range(1, n_slices - 1):
        lab[z][r < 7] = 2
        lab[z][r < 4 - 0.5 * shift] = 1
        if rv:
            lab[z][(np.abs(yy - 15 - shift) < 5) & (xx >= 21) & (xx < 28)] = 3
    return lab


def write_subject(folder: Path, sid: str, seed: int, values: dict[int, int] | None = None, rv: bool = True,
                  labelled: bool = True, affine: np.ndarray = AFFINE, label_affine: np.ndarray | None = None,
                  n_phases: int = 2) -> tuple[Path, Path]:
    """`sid.nii.gz` (T phases) and `sid_gt.nii.gz`; `values` maps project labels to the file's values."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    labs = np.stack([heart_labels(shift=t, rv=rv) for t in range(n_phases)])
    img = rng.normal(40, 8, labs.shape).astype(np.float32)
    img[labs == 1] += 160
    img[labs == 3] += 140
    img[labs == 2] += 20
    out = labs.copy()
    if values:
        for k, v in values.items():
            out[labs == k] = v
    if not labelled:
        out[:] = 0
    image, labels = folder / f"{sid}.nii.gz", folder / f"{sid}_gt.nii.gz"
    save_nifti(image, img, affine)
    save_nifti(labels, out, affine if label_affine is None else label_affine)
    return image, labels


def write_cohort(root: Path, n: int = 4, rv: bool = True, groups: tuple[str, ...] = ("A", "B"),
                 convention: str = "project") -> Path:
    """`n` subjects `s0`.. in `root`, listed in `root/subjects.json` (a pairs manifest); returns it."""
    entries = []
    for i in range(n):
        image, labels = write_subject(root, f"s{i}", i, rv=rv)
        entries.append({"id": f"s{i}", "image": image.name, "labels": labels.name, "convention": convention,
                        "group": groups[i % len(groups)]})
    manifest = root / "subjects.json"
    manifest.write_text(json.dumps({"subjects": entries}))
    return manifest


def write_tiny_model(folder: Path, roi_mm: float | None = None) -> Path:
    """A randomly initialised tiny acquired-2d model folder (what a fine-tuning starts from)."""
    import torch

    from gemini_cmr.core.models.gemini import GeminiConfig, GeminiGenerator
    from gemini_cmr.core.models.store import save_model

    torch.manual_seed(0)
    g = GeminiGenerator(GeminiConfig.from_dict(TINY_MODEL))
    save_model(folder, g, {"training": {"note": "test model"}, "licence": "test terms",
                           "inference": {"roi_mm": roi_mm, "keep_largest_heart_component": False}})
    (folder / "LICENCE.md").write_text("test licence\n")
    return folder
