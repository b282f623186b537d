"""Phantom subjects in memory (`make_subject`) and the paired dataset writer (`write_dataset`).

The dataset layout is the contract in docs/DEVELOPING.md ("paired dataset layout"): a `manifest.json`
plus, per subject, 4D NIfTI files `lr_image`, `lr_labels`, `hr_image`, `hr_labels`, with the HR files
exactly on `core.geometry.sr_grid(LR grid)`. Each subject folder also holds `phantom.json` (the drawn
parameters, volumes, per-slice shifts) for analysis; readers may ignore it.

Determinism: subject i of a dataset with seed S uses the seed `subject_seed(S, i)`; the anatomy,
geometry and shifts come from one random stream and the noise from another, so the same seed gives
identical arrays on any machine with the same numpy.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from gemini_cmr.core import __version__
from gemini_cmr.core.errors import GeminiError
from gemini_cmr.core.geometry import sr_grid
from gemini_cmr.core.io.atomic import atomic_write_text
from gemini_cmr.core.io.nifti import save_nifti
from gemini_cmr.core.parallel import process_pool, process_workers
from gemini_cmr.core.study import Grid, Study, StudyMeta
from gemini_cmr.core.synth.acquisition import (
    SliceShifts,
    la_offset,
    plan_la_grid,
    plan_lr_grid,
    render_grid,
    render_signal,
    simulate_lr,
)
from gemini_cmr.core.synth.anatomy import TISSUE_TO_LABEL, Phantom, sample_heart_params
from gemini_cmr.core.synth.appearance import SubjectAppearance, contrast_lut, finalize
from gemini_cmr.core.synth.domains import DEFAULT_DOMAIN, Domain, get_domain

log = logging.getLogger(__name__)

FORMAT = "gemini-cmr-paired"
FORMAT_VERSION = 1
#: Gaussian PSF (sigma, mm) of the HR truth images
HR_BLUR_MM = 0.7


@dataclass
class PhantomPair:
    """One phantom subject: LR and HR cines (with labels) as `Study` objects, plus what was drawn."""

    lr: Study
    hr: Study
    phantom: Phantom
    shifts: SliceShifts
    domain: Domain
    seed: int
    info: dict = field(default_factory=dict)
    timings: dict = field(default_factory=dict)
    #: long-axis acquisitions by view (`core.longaxis.LongAxisCine`, labels = truth at the plane's centre)
    long_axis: dict = field(default_factory=dict)
    #: their breath-hold offsets (2,), mm along each long-axis image's i and j axes
    long_axis_offsets: dict = field(default_factory=dict)

    @property
    def lr_grid(self) -> Grid:
        return self.lr.grid

    @property
    def hr_grid(self) -> Grid:
        return self.hr.grid


def subject_seed(seed: int, index: int) -> int:
    """The seed of subject `index` in a dataset made with `seed` (independent streams per subject)."""
    return int(np.random.SeedSequence([int(seed), int(index)]).generate_state(1, dtype=np.uint32)[0])


def make_subject(
    seed: int,
    domain: Domain | str = DEFAULT_DOMAIN,
    n_phases: int = 20,
    *,
    misalign: bool = True,
    noise: bool = True,
    subject_id: str = "phantom",
    long_axis: tuple[str, ...] = (),
) -> PhantomPair:
    """Generate one phantom subject in memory (LR and HR `Study` with labels).

    `misalign=False` turns off the per-slice shifts (and the long-axis offsets); `noise=False` gives
    noise-free images (both for tests and analysis; datasets always use the domain's settings).
    `long_axis`: views ("4ch", "2ch") acquired as well (`make_long_axis`), from their own random stream, so the
    short-axis and HR arrays are the same with or without them.
    """
    domain = get_domain(domain)
    acq = domain.acquisition
    t0 = time.perf_counter()
    shape_rng, noise_rng = (np.random.default_rng(s) for s in np.random.SeedSequence(int(seed)).spawn(2))
    params = sample_heart_params(shape_rng, domain.size_scale)
    phantom = Phantom(params, n_phases)
    lr_grid = plan_lr_grid(phantom, acq, shape_rng)
    hr_grid = sr_grid(lr_grid)
    shifts = SliceShifts.random(shape_rng, lr_grid, acq)
    if not misalign:
        shifts = SliceShifts.none(lr_grid.shape[0])
    looks = SubjectAppearance.random(shape_rng, domain, phantom.heart_to_world(np.zeros((1, 3)))[0])
    lut = contrast_lut(domain)
    t1 = time.perf_counter()

    lr_signal, lr_tissue = simulate_lr(phantom, lr_grid, acq, shifts, lut)
    lr_signal *= looks.gain_on_grid(lr_grid)
    lr_image = finalize(lr_signal, domain, domain.noise if noise else 0.0, noise_rng)
    lr_labels = TISSUE_TO_LABEL[lr_tissue]
    t2 = time.perf_counter()

    hr_render = render_grid(phantom, hr_grid)
    hr_labels = hr_render.dense(TISSUE_TO_LABEL)
    sigma = (0.0, *(HR_BLUR_MM / hr_grid.spacing[1::-1]))  # in-plane PSF only (slices are 2 mm)
    hr_signal = render_signal(hr_render, lut, sigma, gain=looks.gain_on_grid(hr_grid))
    hr_image = finalize(hr_signal, domain, domain.hr_noise if noise else 0.0, noise_rng, noise_bank=True)
    t3 = time.perf_counter()

    rr_ms = 60000.0 / params.heart_rate_bpm
    times = np.arange(n_phases) * rr_ms / n_phases
    summary = phantom.summary()

    def meta(kind: str, thickness: float) -> StudyMeta:
        return StudyMeta(
            source_path="", format="phantom", patient_id=subject_id, vendor=f"gemini-cmr phantom ({domain.name})",
            series_description=f"phantom {kind} cine", slice_thickness_mm=thickness, ed_phase=0,
            es_phase=phantom.es_phase, group=domain.name,
            extra={"seed": int(seed), "domain": domain.name},
        )

    lr = Study(lr_image, lr_grid.affine, times, lr_labels, list(range(n_phases)),
               meta(f"LR {acq.slice_thickness_mm:g}/{acq.slice_spacing_mm:g} mm", acq.slice_thickness_mm))
    hr = Study(hr_image, hr_grid.affine, times, hr_labels, list(range(n_phases)),
               meta("HR truth", float(hr_grid.spacing[2])))
    info = {
        "seed": int(seed),
        "domain": domain.name,
        "n_phases": n_phases,
        "ed_phase": 0,
        "es_phase": phantom.es_phase,
        "phase_interval_ms": rr_ms / n_phases,
        "summary": summary,
        "shifts": shifts.to_json(),
        "params": params.to_json(),
        "lr_shape": list(lr_image.shape),
        "hr_shape": list(hr_image.shape),
        "generator": f"gemini-cmr {__version__}",
    }
    timings = {"plan": t1 - t0, "lr": t2 - t1, "hr": t3 - t2, "total": t3 - t0}
    pair = PhantomPair(lr, hr, phantom, shifts, domain, int(seed), info, timings)
    if long_axis:
        t4 = time.perf_counter()
        pair.long_axis, pair.long_axis_offsets = make_long_axis(pair, long_axis, looks, lut, misalign=misalign,
                                                                noise=noise)
        info["long_axis"] = {v: {"offset_mm": np.round(pair.long_axis_offsets[v], 4).tolist(),
                                 "offset_axes": "in-plane translation of the anatomy along the image columns (i) "
                                                "and rows (j), mm",
                                 "shape": list(c.image.shape)} for v, c in pair.long_axis.items()}
        timings["long_axis"] = time.perf_counter() - t4
        timings["total"] = time.perf_counter() - t0
    return pair


def make_long_axis(pair: PhantomPair, views: tuple[str, ...], looks: SubjectAppearance, lut: np.ndarray,
                   misalign: bool = True, noise: bool = True) -> tuple[dict, dict]:
    """Long-axis cines of a phantom (`plan_la_grid`): each view acquired like a one-slice stack with the
    short-axis slice profile and PSF, its own breath-hold offset (`la_offset`; the second dict),
    noise and the subject's gain; labels are the truth at the plane's centre, offset like the image. The
    random stream is the subject seed's third child (the first two make the short-axis and HR data)."""
    from gemini_cmr.core.longaxis import LongAxisCine

    domain, acq, phantom = pair.domain, pair.domain.acquisition, pair.phantom
    rng = np.random.default_rng(np.random.SeedSequence(int(pair.seed)).spawn(3)[2])
    out, offsets = {}, {}
    times = pair.lr.phase_times_ms
    for view in dict.fromkeys(views):
        grid = plan_la_grid(phantom, view, rng)
        offset = la_offset(rng, grid, acq)
        if not misalign:
            offset = SliceShifts.none(1)
        la_acq = replace(acq, inplane_mm=float(grid.spacing[0]), matrix=grid.shape[2])
        signal, tissue = simulate_lr(phantom, grid, la_acq, offset, lut)
        signal *= looks.gain_on_grid(grid)
        image = finalize(signal, domain, domain.noise if noise else 0.0, rng)
        cine = LongAxisCine(view, image[:, 0], grid.affine, TISSUE_TO_LABEL[tissue][:, 0],
                            list(range(phantom.n_phases)), times, source_path=f"phantom {view}",
                            ed_phase=0, es_phase=phantom.es_phase, patient_id=pair.lr.meta.patient_id)
        out[view] = cine
        offsets[view] = offset.inplane_mm[0].copy()
    return out, offsets


def split_names(n: int) -> list[str]:
    """Deterministic split of n subjects: about 70% train, 15% val, 15% test (val/test at least one each
    from 3 subjects on); the last subjects are test, the ones before them val."""
    if n <= 0:
        return []
    n_val = n_test = 0
    if n >= 3:
        n_val = max(1, round(0.15 * n))
        n_test = max(1, round(0.15 * n))
    elif n == 2:
        n_test = 1
    n_train = n - n_val - n_test
    return ["train"] * n_train + ["val"] * n_val + ["test"] * n_test


ProgressFn = Callable[[float, str], None]


def _write_subject(out: Path, i: int, sid: str, split: str, seed: int, domain: Domain,
                   n_phases: int, long_axis: tuple[str, ...] = (), misalign: bool = True
                   ) -> tuple[int, dict, float, float]:
    """Generate and write subject `i` (its files and phantom.json); returns i, its manifest entry and the
    generation and writing times. Module-level so that a process pool can run it. Long-axis views are
    written in the UK Biobank naming (`la_4ch.nii.gz`, `label_la_4ch.nii.gz`), recorded in the entry's
    `long_axis` with their true breath-hold offsets."""
    t0 = time.perf_counter()
    pair = make_subject(subject_seed(seed, i), domain, n_phases, subject_id=sid, long_axis=tuple(long_axis),
                        misalign=misalign)
    t1 = time.perf_counter()
    folder = out / sid
    folder.mkdir(parents=True, exist_ok=True)
    dt = float(pair.info["phase_interval_ms"])
    desc = f"gemini-cmr phantom {domain.name} seed {seed} {sid}"
    save_nifti(folder / "lr_image.nii.gz", pair.lr.image, pair.lr.affine, dt, desc)
    save_nifti(folder / "lr_labels.nii.gz", pair.lr.labels, pair.lr.affine, dt, desc)
    save_nifti(folder / "hr_image.nii.gz", pair.hr.image, pair.hr.affine, dt, desc)
    save_nifti(folder / "hr_labels.nii.gz", pair.hr.labels, pair.hr.affine, dt, desc)
    info = dict(pair.info, id=sid, split=split, dataset_seed=int(seed), subject_index=i,
                timings_s={k: round(v, 3) for k, v in pair.timings.items()})
    atomic_write_text(folder / "phantom.json", json.dumps(info, indent=1))
    entry = {
        "id": sid,
        "split": split,
        "domain": domain.name,
        "lr_image": f"{sid}/lr_image.nii.gz",
        "lr_labels": f"{sid}/lr_labels.nii.gz",
        "hr_image": f"{sid}/hr_image.nii.gz",
        "hr_labels": f"{sid}/hr_labels.nii.gz",
        "ed_phase": 0,
        "es_phase": int(pair.phantom.es_phase),
        "phantom": f"{sid}/phantom.json",
    }
    if pair.long_axis:
        entry["long_axis"] = {}
        for view, cine in pair.long_axis.items():
            save_nifti(folder / f"la_{view}.nii.gz", cine.image[:, None], cine.affine, dt, desc)
            save_nifti(folder / f"label_la_{view}.nii.gz", cine.labels[:, None], cine.affine, dt, desc)
            entry["long_axis"][view] = {"image": f"{sid}/la_{view}.nii.gz", "labels": f"{sid}/label_la_{view}.nii.gz",
                                        "offset_mm": np.round(pair.long_axis_offsets[view], 4).tolist()}
    return i, entry, t1 - t0, time.perf_counter() - t1


def write_dataset(
    out: str | Path,
    n_subjects: int,
    seed: int = 0,
    domain: Domain | str = DEFAULT_DOMAIN,
    n_phases: int = 20,
    *,
    command: str = "",
    overwrite: bool = False,
    progress: ProgressFn | None = None,
    workers: int = 1,
    long_axis: tuple[str, ...] = (),
    misalign: bool = True,
) -> Path:
    """Write a paired phantom dataset to folder `out`; returns the manifest path. `workers` > 1 generates
    subjects in that many processes (same files: every subject has its own seed); the manifest is written
    last, so an interrupted run leaves no manifest. `long_axis`: long-axis views ("4ch", "2ch") acquired
    as well (the short-axis and HR files are the same with or without them). `misalign=False`: no
    breath-hold shifts between slices (or long-axis offsets); every other array is the same as with them,
    so the two datasets of one seed are aligned twins of each other."""
    domain = get_domain(domain)
    out = Path(out)
    if n_subjects < 1:
        raise GeminiError("--subjects must be at least 1")
    if n_phases < 2:
        raise GeminiError("--phases must be at least 2")
    if workers < 1:
        raise GeminiError("--workers must be at least 1")
    manifest_path = out / "manifest.json"
    if manifest_path.exists() and not overwrite:
        raise GeminiError("a dataset already exists here (use --force to overwrite)", manifest_path)
    out.mkdir(parents=True, exist_ok=True)
    splits = split_names(n_subjects)
    width = max(3, len(str(n_subjects - 1)))
    jobs = [(out, i, f"sub-{i:0{width}d}", splits[i], int(seed), domain, n_phases, tuple(long_axis), bool(misalign))
            for i in range(n_subjects)]
    subjects: list[dict] = [{} for _ in jobs]

    def done(k: int, i: int, entry: dict, t_gen: float, t_write: float) -> None:
        subjects[i] = entry
        log.info("%s (%s): generated in %.2f s, written in %.2f s", entry["id"], entry["split"], t_gen, t_write)
        if progress:
            progress(k / n_subjects,
                     f"{entry['id']} ({entry['split']}): generated {t_gen:.2f} s, written {t_write:.2f} s")

    workers = process_workers(workers)
    if workers == 1 or n_subjects == 1:
        for k, job in enumerate(jobs, 1):
            done(k, *_write_subject(*job))
    else:
        from concurrent.futures import as_completed

        with process_pool(min(workers, n_subjects)) as pool:
            futures = [pool.submit(_write_subject, *job) for job in jobs]
            for k, fut in enumerate(as_completed(futures), 1):
                done(k, *fut.result())
    manifest = {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "generator": {"command": command, "seed": int(seed), "domain": domain.name, "version": __version__,
                      "n_phases": int(n_phases), **({"long_axis": list(long_axis)} if long_axis else {}),
                      **({} if misalign else {"misalign": False})},
        "subjects": subjects,
    }
    atomic_write_text(manifest_path, json.dumps(manifest, indent=1))
    return manifest_path


#: seed and phases of the bundled demo study (resources/demo/demo_study.nii.gz)
DEMO_SEED = 2024
DEMO_PHASES = 20


def write_demo(out: str | Path, seed: int = DEMO_SEED, n_phases: int = DEMO_PHASES,
               domain: Domain | str = DEFAULT_DOMAIN) -> Path:
    """Write the demo study: one phantom subject, LR cine only, `out/demo_study.nii.gz` (int16)."""
    pair = make_subject(seed, domain, n_phases, subject_id="demo")
    out = Path(out)
    img = pair.lr.image
    data = np.clip(np.rint(img), 0, np.iinfo(np.int16).max).astype(np.int16)
    # the demo is committed to the repository: compress harder than the default (level 1)
    from nibabel.openers import Opener

    level = Opener.default_compresslevel
    Opener.default_compresslevel = 9
    try:
        path = save_nifti(out / "demo_study.nii.gz", data, pair.lr.affine, float(pair.info["phase_interval_ms"]),
                          f"gemini-cmr demo phantom seed {seed}")
    finally:
        Opener.default_compresslevel = level
    info = {k: pair.info[k] for k in ("seed", "domain", "n_phases", "ed_phase", "es_phase", "phase_interval_ms",
                                       "summary", "generator")}
    atomic_write_text(out / "demo_study.json", json.dumps(info, indent=1))
    log.info("demo study written to %s", path)
    return path
