"""Paired datasets -> training samples on the SR grid (docs/DEVELOPING.md, "paired dataset layout").

For every subject and every labelled phase (phases whose HR labels are non-empty, ED and ES included):
- input  = `place_on_sr_grid(LR image)` on `sr_grid(LR grid)` (nearest-slice placement);
- target image / labels = HR image / HR labels on that SR grid: an exact copy when the HR files already lie
  on it (phantoms), else resampled by world coordinates (image linear, labels nearest; edge values
  extended outside the HR field of view, which must cover at least half of the SR grid);
- intensities divided by the cine's normalisation scale (`core.models.preprocess.intensity_scale`: the
  99.5th percentile of the whole LR cine), the same for input and target.
Everything is checked before training starts; problems raise `DataError` naming the subject.

Preprocessed samples are kept in memory (float16 images, uint8 labels) and cached on disk as `.npz`
(no pickle) keyed by the files' paths, sizes and mtimes, so later runs and resumes skip the NIfTI reads.
Training items are (sample, depth window) pairs; `TrainItems.get` applies the augmentation: in-plane
crop (heart-centred with jitter, or uniform), horizontal/vertical flips, intensity gain (input and target)
and input noise, all drawn from a generator seeded by (seed, epoch, item) so runs are reproducible.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gemini_cmr.core.errors import DataError
from gemini_cmr.core.geometry import matching_sr_grid, place_on_sr_grid, resample
from gemini_cmr.core.io.atomic import atomic_path
from gemini_cmr.core.io.manifest import SPLITS, read_manifest, subject_file
from gemini_cmr.core.io.nifti import read_nifti_array
from gemini_cmr.core.models.preprocess import DEFAULT_PERCENTILE, depth_windows, intensity_scale
from gemini_cmr.core.parallel import process_pool, process_workers
from gemini_cmr.core.study import Grid

NEEDS = "Gemini-GAN training needs HR labels"

log = logging.getLogger(__name__)
CACHE_VERSION = 3  # 3: in-plane placement keeps the LR field of view edge (core.geometry.inplane_resample)


def labels_centre(labels: np.ndarray) -> tuple[float, float]:
    """In-plane (row, column) centre of the labelled voxels of a (Z, H, W) stack; the middle when empty."""
    yy, xx = np.nonzero(labels.any(axis=0))
    if len(yy) == 0:
        return (labels.shape[1] - 1) / 2, (labels.shape[2] - 1) / 2
    return float(yy.mean()), float(xx.mean())


@dataclass
class Sample:
    """One labelled phase of one subject on its SR grid (depth not padded), normalised."""

    subject: str
    phase: int
    x: np.ndarray  # (Dz, H, W) float16: LR placed on the SR grid
    image: np.ndarray  # (Dz, H, W) float16: HR target
    labels: np.ndarray  # (Dz, H, W) uint8
    scale: float
    is_ed: bool = False
    is_es: bool = False

    @property
    def centre(self) -> tuple[float, float]:
        return labels_centre(self.labels)


def _read4d(path: Path, sid: str, what: str) -> tuple[np.ndarray, np.ndarray]:
    try:
        a, aff, _ = read_nifti_array(path)
    except Exception as exc:  # nibabel raises many types
        raise DataError(f"subject {sid}: cannot read {what}: {exc}", path) from None
    if a.ndim == 3:
        a = a[None]
    if a.ndim != 4:
        raise DataError(f"subject {sid}: {what} must be 3D or 4D, got shape {a.shape}", path)
    if np.iscomplexobj(a) or a.dtype.fields is not None:
        raise DataError(f"subject {sid}: {what} has unsupported voxel type {a.dtype}", path)
    return a, aff


def _coverage(hr: Grid, sr: Grid) -> float:
    """Fraction of SR-grid voxel centres (subsampled) that fall inside the HR grid."""
    nz, ny, nx = sr.shape
    k, j, i = np.meshgrid(np.linspace(0, nz - 1, 7), np.linspace(0, ny - 1, 7), np.linspace(0, nx - 1, 7),
                          indexing="ij")
    ijk = hr.world_to_index(sr.index_to_world(np.stack([i, j, k], -1).reshape(-1, 3)))
    inside = np.all((ijk >= -0.5) & (ijk <= np.array(hr.shape[::-1]) - 0.5), axis=1)
    return float(inside.mean())


def load_subject(root: str | Path, entry: dict, percentile: float = DEFAULT_PERCENTILE,
                 max_phases: int = 0) -> list[Sample]:
    """Labelled phases of one manifest subject as `Sample`s; DataError naming the subject on problems.

    `max_phases` > 0 keeps ED, ES and evenly spaced other labelled phases up to that many per subject.
    """
    root = Path(root)
    sid = entry["id"]
    lr_img, lr_aff = _read4d(subject_file(root, entry, "lr_image", NEEDS), sid, "lr_image")
    hr_img, hr_aff = _read4d(subject_file(root, entry, "hr_image", NEEDS), sid, "hr_image")
    hr_lab, hr_lab_aff = _read4d(subject_file(root, entry, "hr_labels", NEEDS), sid, "hr_labels")
    if hr_lab.shape != hr_img.shape or not np.allclose(hr_lab_aff, hr_aff, atol=1e-4):
        raise DataError(f"subject {sid}: hr_labels {hr_lab.shape} do not match hr_image {hr_img.shape} "
                        "(shape or affine)", root)
    if lr_img.shape[0] != hr_img.shape[0]:
        raise DataError(f"subject {sid}: LR has {lr_img.shape[0]} phases but HR has {hr_img.shape[0]}", root)
    if not np.all(np.isfinite(lr_img)) or not np.all(np.isfinite(hr_img)):
        raise DataError(f"subject {sid}: NaN/Inf intensities", root)
    labels_int = np.rint(hr_lab).astype(np.int64)
    if labels_int.min() < 0 or labels_int.max() > 3:
        raise DataError(f"subject {sid}: HR label values {sorted(np.unique(labels_int))[:8]} outside 0..3", root)
    try:
        lr = Grid(lr_img.shape[1:], lr_aff)
        hr = Grid(hr_img.shape[1:], hr_aff)
    except ValueError as exc:
        raise DataError(f"subject {sid}: invalid affine: {exc}", root) from None
    if lr_img.shape[1] < 2:
        raise DataError(f"subject {sid}: the LR stack has a single slice", root)
    if min(lr_img.shape[2:]) < 16:  # the same floor as `Study.validate` for studies to super-resolve
        raise DataError(f"subject {sid}: LR in-plane size {lr_img.shape[3]}x{lr_img.shape[2]} is too small", root)
    sr = matching_sr_grid(lr, hr)
    exact = hr == sr
    if not exact:
        cov = _coverage(hr, sr)
        if cov < 0.5:
            raise DataError(f"subject {sid}: mismatched LR/HR geometry: the HR volume covers only "
                            f"{100 * cov:.0f}% of the LR slab's SR grid", root)
    n_t = lr_img.shape[0]
    labelled = [t for t in range(n_t) if labels_int[t].any()]
    if not labelled:
        raise DataError(f"subject {sid}: hr_labels are empty in every phase", root)
    ed, es = entry.get("ed_phase"), entry.get("es_phase")
    for name, ph in (("ed_phase", ed), ("es_phase", es)):
        if ph is not None and not (isinstance(ph, int) and 0 <= ph < n_t):
            raise DataError(f"subject {sid}: {name} {ph!r} outside 0..{n_t - 1}", root)
        if ph is not None and ph not in labelled:
            raise DataError(f"subject {sid}: {name} {ph} has no HR labels", root)
    if max_phases > 0 and len(labelled) > max_phases:
        labelled = select_phases(labelled, ed, es, max_phases)
    scale = intensity_scale(lr_img, percentile)
    out = []
    for t in labelled:
        x = place_on_sr_grid(lr_img[t].astype(np.float32), lr, sr) / scale
        if exact:
            img, lab = hr_img[t].astype(np.float32), labels_int[t].astype(np.uint8)
        else:
            img = resample(hr_img[t].astype(np.float32), hr, sr, order=1, mode="nearest")
            lab = resample(labels_int[t].astype(np.uint8), hr, sr, order=0, mode="nearest")
        out.append(Sample(sid, t, x.astype(np.float16), (img / scale).astype(np.float16), lab, scale,
                          t == ed, t == es))
    return out


def select_phases(labelled: list[int], ed: int | None, es: int | None, n: int) -> list[int]:
    """ED and ES first, then evenly spaced other labelled phases; at most `n`, sorted."""
    keep = [p for p in (ed, es) if p is not None and p in labelled][:n]
    rest = [p for p in labelled if p not in keep]
    k = n - len(keep)
    if k > 0 and rest:
        idx = np.unique(np.round(np.linspace(0, len(rest) - 1, min(k, len(rest)) + 2)[1:-1]).astype(int))
        keep += [rest[i] for i in idx][:k]
    return sorted(keep)


def check_subjects(root: str | Path, splits: tuple[str, ...] = SPLITS,
                   percentile: float = DEFAULT_PERCENTILE) -> list[tuple[str, bool, str]]:
    """Check every manifest subject in `splits` as training loads it: [(subject id, ok, problem)].

    Runs the same checks as `load_subject` (files, shapes, phases, labels, geometry) subject by subject and
    reports each problem instead of stopping at the first. A manifest that cannot be read raises `DataError`.
    """
    root = Path(root)
    rows = []
    for entry in read_manifest(root)["subjects"]:
        if entry["split"] not in splits:
            continue
        try:
            load_subject(root, entry, percentile, max_phases=1)
            rows.append((entry["id"], True, ""))
        except DataError as exc:
            msg = str(exc)
            if exc.path and Path(exc.path) == root and msg.startswith(f"{exc.path}: "):
                msg = msg[len(exc.path) + 2:]
            rows.append((entry["id"], False, msg))
    return rows


def _cache_key(root: Path, entry: dict, percentile: float, max_phases: int = 0) -> str:
    h = hashlib.sha256(f"v{CACHE_VERSION}|{percentile}|{max_phases}|{root.resolve()}|{entry['id']}".encode())
    for k in ("lr_image", "hr_image", "hr_labels"):
        p = root / entry[k]
        st = p.stat()
        h.update(f"|{p.resolve()}|{st.st_size}|{st.st_mtime_ns}".encode())
    return h.hexdigest()[:24]


def load_split(root: str | Path, split: str | tuple[str, ...], percentile: float = DEFAULT_PERCENTILE,
               cache_dir: str | Path | None = None, max_phases: int = 0,
               workers: int | None = None) -> list[Sample]:
    """Samples of the subjects in `split` (one name or a tuple), via the on-disk cache when given.
    Subjects not in the cache are preprocessed in `workers` processes (`core.parallel.process_workers`)."""
    root = Path(root)
    manifest = read_manifest(root)
    splits = (split,) if isinstance(split, str) else tuple(split)
    entries = [s for s in manifest["subjects"] if s["split"] in splits]
    per_subject: list[list[Sample] | None] = [None] * len(entries)
    todo: list[tuple[int, Path | None]] = []
    for i, e in enumerate(entries):
        for k in ("lr_image", "hr_image", "hr_labels"):
            subject_file(root, e, k, NEEDS)
        cached = None
        if cache_dir is not None:
            cached = Path(cache_dir) / f"{e['id']}-{_cache_key(root, e, percentile, max_phases)}.npz"
            if cached.exists():
                try:
                    per_subject[i] = _read_cache(cached, e["id"])
                    continue
                except (OSError, ValueError, KeyError):
                    log.warning("ignoring unreadable cache file %s", cached)
        todo.append((i, cached))
    workers = process_workers(workers)
    if len(todo) > 1 and workers > 1:
        with process_pool(min(workers, len(todo))) as pool:
            futures = [(i, cached, pool.submit(load_subject, root, entries[i], percentile, max_phases))
                       for i, cached in todo]
            for i, cached, fut in futures:
                per_subject[i] = fut.result()
                if cached is not None:
                    _write_cache(cached, per_subject[i])
    else:
        for i, cached in todo:
            per_subject[i] = load_subject(root, entries[i], percentile, max_phases)
            if cached is not None:
                _write_cache(cached, per_subject[i])
    return [s for subj in per_subject for s in subj]


def _write_cache(path: Path, samples: list[Sample]) -> None:
    arrays = {}
    for i, s in enumerate(samples):
        arrays[f"x{i}"], arrays[f"image{i}"], arrays[f"labels{i}"] = s.x, s.image, s.labels
    arrays["meta"] = np.array([[s.phase, s.is_ed, s.is_es] for s in samples], np.int64)
    arrays["scale"] = np.array([s.scale for s in samples], np.float64)
    with atomic_path(path, suffix=".npz") as tmp, open(tmp, "wb") as f:
        np.savez(f, **arrays)


def _read_cache(path: Path, sid: str) -> list[Sample]:
    with np.load(path, allow_pickle=False) as z:
        meta, scale = z["meta"], z["scale"]
        return [Sample(sid, int(m[0]), z[f"x{i}"], z[f"image{i}"], z[f"labels{i}"], float(scale[i]),
                       bool(m[1]), bool(m[2])) for i, m in enumerate(meta)]


@dataclass
class Augment:
    crop: int = 128  # in-plane crop (square); 0 = whole field of view padded to a multiple of 16
    heart_centred: float = 0.8  # probability that the crop is centred on the labels (with jitter)
    flip: bool = True
    gain: float = 0.15  # intensity gain in [1 - gain, 1 + gain], input and target
    noise: float = 0.02  # input Gaussian noise sigma drawn from [0, noise]


class TrainItems:
    """(sample, depth window) items for a fixed network depth, with augmentation."""

    def __init__(self, samples: list[Sample], depth: int, multiple: int = 16):
        self.samples = samples
        self.depth = depth
        self.multiple = multiple
        self.items = [(si, start, off) for si, s in enumerate(samples)
                      for start, off in depth_windows(s.x.shape[0], depth)]
        self._centres = [s.centre for s in samples]

    def __len__(self) -> int:
        return len(self.items)

    def get(self, index: int, rng: np.random.Generator | None, aug: Augment | None):
        """-> x (D, h, w) float32, image (D, h, w) float32, labels (D, h, w) int64, mask (D,) bool."""
        si, start, off = self.items[index]
        s = self.samples[si]
        dz, h, w = s.x.shape
        n = min(self.depth, dz)
        crop = aug.crop if (aug is not None and aug.crop) else 0
        if crop:
            ch = cw = crop
            if rng is not None and rng.random() < aug.heart_centred:
                cy, cx = self._centres[si]
                cy += rng.uniform(-crop / 5, crop / 5)
                cx += rng.uniform(-crop / 5, crop / 5)
                y0, x0 = int(round(cy - ch / 2)), int(round(cx - cw / 2))
            elif rng is not None:
                y0 = int(rng.integers(min(0, h - ch), max(0, h - ch) + 1))
                x0 = int(rng.integers(min(0, w - cw), max(0, w - cw) + 1))
            else:
                cy, cx = self._centres[si]
                y0, x0 = int(round(cy - ch / 2)), int(round(cx - cw / 2))
        else:
            ch = h + (-h) % self.multiple
            cw = w + (-w) % self.multiple
            y0, x0 = -((ch - h) // 2), -((cw - w) // 2)
        x = np.zeros((self.depth, ch, cw), np.float32)
        img = np.zeros((self.depth, ch, cw), np.float32)
        lab = np.zeros((self.depth, ch, cw), np.int64)
        # intersection of the crop window with the volume
        sy0, sy1 = max(0, y0), min(h, y0 + ch)
        sx0, sx1 = max(0, x0), min(w, x0 + cw)
        if sy1 > sy0 and sx1 > sx0:
            dst = (slice(off, off + n), slice(sy0 - y0, sy1 - y0), slice(sx0 - x0, sx1 - x0))
            src = (slice(start, start + n), slice(sy0, sy1), slice(sx0, sx1))
            x[dst] = s.x[src]
            img[dst] = s.image[src]
            lab[dst] = s.labels[src]
        mask = np.zeros(self.depth, bool)
        mask[off:off + n] = True
        if rng is not None and aug is not None:
            if aug.flip and rng.random() < 0.5:
                x, img, lab = x[:, ::-1], img[:, ::-1], lab[:, ::-1]
            if aug.flip and rng.random() < 0.5:
                x, img, lab = x[:, :, ::-1], img[:, :, ::-1], lab[:, :, ::-1]
            g = np.float32(rng.uniform(1 - aug.gain, 1 + aug.gain))
            sigma = rng.uniform(0, aug.noise)
            x = x * g
            img = img * g
            if sigma > 0:
                # One noise field per acquired slice, shared by the SR slices it was placed on: the per-slice
                # generators ("acquired-2d") find acquired slices as runs of identical slices, so per-slice
                # noise would make those copies differ and train on every SR slice as its own acquired
                # slice, unlike inference.
                run = run_index(x)
                noise = rng.normal(0, sigma, (int(run[-1]) + 1, *x.shape[1:])).astype(np.float32)
                x = x + noise[run] * mask[:, None, None]
        return (np.ascontiguousarray(x, dtype=np.float32), np.ascontiguousarray(img, dtype=np.float32),
                np.ascontiguousarray(lab), mask)


def run_index(x: np.ndarray) -> np.ndarray:
    """(D, h, w) -> (D,) index of the run of identical consecutive slices each slice belongs to."""
    same = np.zeros(x.shape[0], bool)
    if x.shape[0] > 1:
        same[1:] = (x[1:] == x[:-1]).reshape(x.shape[0] - 1, -1).all(1)
    return np.cumsum(~same) - 1


def class_frequencies(samples: list[Sample], n_classes: int = 4) -> np.ndarray:
    counts = np.zeros(n_classes, np.float64)
    for s in samples:
        counts += np.bincount(s.labels.ravel(), minlength=n_classes)[:n_classes]
    return counts / max(1.0, counts.sum())
