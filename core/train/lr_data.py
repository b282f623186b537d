"""LR-labelled cohorts: cine studies with manual labels on the acquired slices only (ACDC).

Data sources (`--data` of `gemini-cmr train gemini`):
- `acdc:PATH`: the ACDC training layout (`PATH/patientNNN/` with `Info.cfg`, `_frameXX` and `_frameXX_gt`),
  read by `core.io.layouts.load_acdc` (labels remapped to the project convention, true voxel sizes from
  pixdim). Split (documented, fixed): patients whose number is a multiple of 5 -> `val` (20 subjects,
  4 of each of the 5 pathology groups), the others -> `train` (80).
- `mnms:PATH`: the M&Ms layout, found anywhere under PATH: `<code>/<code>_sa.nii.gz` (4D cine) +
  `<code>_sa_gt.nii.gz` (labels 1 LV, 2 myo, 3 RV at ED and ES). Split: subjects under a folder named
  `Validation` or `Testing` (the official release) -> `val`, under `Training` -> `train`; without those
  folders every 5th subject in sorted order (0, 5, 10, ...) -> `val`.
- `pairs:MANIFEST.json`: any image + label NIfTI pairs: `{"subjects": [{"id": "s01", "image":
  "s01/cine.nii.gz", "labels": "s01/cine_gt.nii.gz", "convention": "acdc" | "mnms" | "ukbb" | "ukdhp" |
  "project", "split": "train" | "val", "ed_phase": 0, "es_phase": 9}, ...]}`, paths relative to the
  manifest; image 3D (one phase) or 4D, labels the same shape; `convention` defaults to "project"
  (0 background, 1 LV cavity, 2 myocardium, 3 RV cavity), `split` to every 5th subject -> `val`,
  ED/ES phases to the labelled phases with the largest / smallest LV cavity.

Per subject and labelled phase (ED and ES) one `LRSample`: the acquired LR slices resampled in-plane onto
the SR grid's in-plane grid (`core.geometry.inplane_resample`, image linear, labels nearest), the map
from SR slices to acquired slices (`nearest_slice_indices`: nearest-slice placement), intensities divided
by the cine's 99.5th percentile (as the predictor does). The network input is rebuilt per item by
gathering the planes (`planes[slice_index]`), so the cache stores each acquired slice once.
Samples are cached as `.npz` (no pickle) keyed by the files' paths, sizes and mtimes.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gemini_cmr.core.errors import DataError, GeminiError
from gemini_cmr.core.geometry import inplane_resample, nearest_slice_indices, sr_grid
from gemini_cmr.core.io.atomic import atomic_path
from gemini_cmr.core.models.preprocess import DEFAULT_PERCENTILE, depth_windows, intensity_scale
from gemini_cmr.core.study import Grid
from gemini_cmr.core.train.data import labels_centre

log = logging.getLogger(__name__)
CACHE_VERSION = 2  # 2: in-plane placement keeps the LR field of view edge


@dataclass
class LRSample:
    subject: str
    phase: int
    planes: np.ndarray  # (Z, H, W) float16: acquired slices on the SR in-plane grid, normalised
    labels: np.ndarray  # (Z, H, W) uint8: their manual labels (project convention)
    slice_index: np.ndarray  # (Dz,) int64: acquired slice of every SR slice
    scale: float
    is_ed: bool = False
    is_es: bool = False
    group: str = ""

    @property
    def centre(self) -> tuple[float, float]:
        return labels_centre(self.labels)


SOURCES = ("acdc", "mnms", "pairs")


def parse_source(data: str | Path) -> tuple[str, Path] | None:
    """"acdc:PATH" / "mnms:PATH" / "pairs:MANIFEST" -> (kind, PATH); anything else -> None (a paired
    HR dataset folder)."""
    s = str(data)
    for kind in SOURCES:
        if s.startswith(kind + ":"):
            return kind, Path(s[len(kind) + 1:])
    return None


@dataclass
class LRSubject:
    """One subject of an LR-labelled source: id, split, the files it is read from (cache key), a loader."""

    sid: str
    split: str
    files: list[Path]
    load: object  # () -> Study with labels


def _ed_es_from_labels(study) -> None:
    """ED / ES = the labelled phases with the largest / smallest LV cavity, where the source gives none."""
    if study.meta.ed_phase is not None and study.meta.es_phase is not None:
        return
    lv = {t: int((study.labels[t] == 1).sum()) for t in study.labelled_phases}
    if lv:
        study.meta.ed_phase = max(lv, key=lv.get) if study.meta.ed_phase is None else study.meta.ed_phase
        study.meta.es_phase = min(lv, key=lv.get) if study.meta.es_phase is None else study.meta.es_phase


def _every_fifth(i: int) -> str:
    return "val" if i % 5 == 0 else "train"


def mnms_subjects(root: str | Path) -> list[LRSubject]:
    """M&Ms subjects under `root` (see the module docstring for the split)."""
    from gemini_cmr.core.io.layouts import study_from_nifti

    root = Path(root)
    if not root.is_dir():
        raise DataError("M&Ms folder not found", root)
    gts = sorted(p for p in root.rglob("*_sa_gt.nii*") if p.name.endswith((".nii", ".nii.gz")))
    if not gts:
        raise DataError("no <code>/<code>_sa_gt.nii.gz label files: not the M&Ms layout", root)
    out = []
    for i, gt in enumerate(gts):
        sid = gt.parent.name
        image = gt.with_name(gt.name.replace("_sa_gt", "_sa"))
        if not image.is_file():
            raise DataError(f"subject {sid}: labels without the image {image.name}", gt)
        parts = {q.lower() for q in gt.relative_to(root).parts[:-1]}
        split = "val" if parts & {"validation", "testing"} else "train" if "training" in parts else _every_fifth(i)

        def load(image=image, gt=gt):
            st = study_from_nifti(image, gt, "mnms")
            _ed_es_from_labels(st)
            return st
        out.append(LRSubject(sid, split, [image, gt], load))
    return out


def manifest_subjects(manifest: str | Path) -> list[LRSubject]:
    """Subjects listed in a `pairs:` manifest (see the module docstring)."""
    import json

    from gemini_cmr.core.io.layouts import LABEL_MAPS, study_from_nifti

    manifest = Path(manifest)
    try:
        doc = json.loads(manifest.read_text())
        entries = doc["subjects"]
        if not isinstance(entries, list) or not entries:
            raise ValueError("'subjects' must be a non-empty list")
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise DataError(f"not a readable pairs manifest ({exc})", manifest) from None
    out, seen = [], set()
    for i, e in enumerate(entries):
        if not isinstance(e, dict) or "image" not in e or "labels" not in e:
            raise DataError(f"subject entry {i}: needs 'image' and 'labels'", manifest)
        sid = str(e.get("id", f"subject{i:03d}"))
        if sid in seen:
            raise DataError(f"subject id {sid} listed twice", manifest)
        seen.add(sid)
        image, labels = manifest.parent / e["image"], manifest.parent / e["labels"]
        for f in (image, labels):
            if not f.is_file():
                raise DataError(f"subject {sid}: file not found", f)
        conv = str(e.get("convention", "project"))
        if conv not in LABEL_MAPS:
            raise DataError(f"subject {sid}: unknown label convention {conv!r} (one of {sorted(LABEL_MAPS)})",
                            manifest)
        split = str(e.get("split", _every_fifth(i)))
        if split not in ("train", "val"):
            raise DataError(f"subject {sid}: split must be 'train' or 'val', not {split!r}", manifest)
        ed, es = e.get("ed_phase"), e.get("es_phase")

        def load(image=image, labels=labels, conv=conv, ed=ed, es=es):
            st = study_from_nifti(image, labels, conv)
            st.meta.ed_phase = None if ed is None else int(ed)
            st.meta.es_phase = None if es is None else int(es)
            _ed_es_from_labels(st)
            return st
        out.append(LRSubject(sid, split, [image, labels], load))
    return out


def lr_subjects(kind: str, root: str | Path) -> list[LRSubject]:
    """The subjects of an LR-labelled source ("acdc", "mnms" or "pairs")."""
    if kind == "acdc":
        from gemini_cmr.core.io.layouts import acdc_subjects, load_acdc

        return [LRSubject(sid, sp, sorted(folder.iterdir()), lambda folder=folder: load_acdc(folder))
                for sid, folder, sp in acdc_subjects(root)]
    if kind == "mnms":
        return mnms_subjects(root)
    if kind == "pairs":
        return manifest_subjects(root)
    raise DataError(f"unknown LR-label source {kind!r} (one of {', '.join(SOURCES)})", root)


def heart_box(study, roi_mm: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(image, labels, affine) of `study` cut in-plane to a `roi_mm` box centred on its labels (all
    labelled phases), clipped to the image; the affine's origin moves so world coordinates are unchanged.
    The training counterpart of the predictor's heart region of interest (`inference.roi_mm`), whose
    intensity scale is likewise taken inside the box."""
    lr = study.grid
    mask = np.any([study.labels[t].any(axis=0) for t in study.labelled_phases], axis=0)
    jj, ii = np.nonzero(mask)
    ny, nx = lr.shape[1:]
    sx, sy = float(lr.spacing[0]), float(lr.spacing[1])
    hx, hy = int(round(roi_mm / sx / 2)), int(round(roi_mm / sy / 2))
    cx, cy = int(round(ii.mean())), int(round(jj.mean()))
    x0, x1, y0, y1 = max(0, cx - hx), min(nx, cx + hx), max(0, cy - hy), min(ny, cy + hy)
    affine = study.affine.copy()
    affine[:3, 3] = (study.affine @ np.array([x0, y0, 0.0, 1.0]))[:3]
    return study.image[:, :, y0:y1, x0:x1], study.labels[:, :, y0:y1, x0:x1], affine


def samples_from_study(study, sid: str, percentile: float = DEFAULT_PERCENTILE,
                       roi_mm: float = 0.0) -> list[LRSample]:
    """LRSamples of the labelled phases of a `Study` with LR labels; with `roi_mm` > 0 only a box of that
    size around the labels (`heart_box`), normalised by its own intensity percentile."""
    if not study.has_labels or not study.labelled_phases:
        raise DataError(f"subject {sid}: no labelled phases", study.meta.source_path)
    image, labels_all, affine = study.image, study.labels, study.affine
    if roi_mm > 0:
        image, labels_all, affine = heart_box(study, roi_mm)
    lr = Grid(image.shape[1:], affine)
    if lr.shape[0] < 2:
        raise DataError(f"subject {sid}: the LR stack has a single slice", study.meta.source_path)
    sr = sr_grid(lr)
    idx = nearest_slice_indices(lr, sr)
    scale = intensity_scale(image, percentile)
    out = []
    for t in study.labelled_phases:
        planes = inplane_resample(image[t].astype(np.float32), lr, sr, order=1) / scale
        labels = inplane_resample(labels_all[t].astype(np.uint8), lr, sr, order=0).astype(np.uint8)
        out.append(LRSample(sid, int(t), planes.astype(np.float16), labels, idx.astype(np.int64), float(scale),
                            t == study.meta.ed_phase, t == study.meta.es_phase, study.meta.group))
    return out


def _cache_key(files: list[Path], percentile: float, roi_mm: float = 0.0) -> str:
    h = hashlib.sha256(f"v{CACHE_VERSION}|{percentile}".encode() + (f"|roi{roi_mm:g}".encode() if roi_mm else b""))
    for p in sorted(Path(f).resolve() for f in files):
        st = p.stat()
        h.update(f"|{p}|{st.st_size}|{st.st_mtime_ns}".encode())
    return h.hexdigest()[:24]


def parse_fold(fold: str | None) -> tuple[int, int] | None:
    """"k/n" -> (k, n) with 0 <= k < n; "" or None -> None (the source's own split)."""
    if not fold:
        return None
    try:
        k, n = (int(v) for v in str(fold).split("/"))
    except ValueError:
        raise DataError(f"fold must look like 'k/n' (e.g. 2/5), not {fold!r}") from None
    if n < 2 or not 0 <= k < n:
        raise DataError(f"fold {fold!r}: need n >= 2 and 0 <= k < n")
    return k, n


def fold_of(kind: str, subject: LRSubject, position: int, n: int) -> int:
    """The cross-validation fold (0..n-1) of a subject: ACDC by patient number modulo n (the pathology
    groups are blocks of 20 consecutive patients, so with n = 5 every fold holds 4 of each group and fold 0
    is the fixed validation split); other sources by position in sorted order modulo n."""
    if kind == "acdc":
        from gemini_cmr.core.io.layouts import ACDC_PATIENT

        m = ACDC_PATIENT.match(subject.sid)
        if m:
            return int(m.group(1)) % n
    return position % n


def load_lr_split(kind: str, root: str | Path, split: str, percentile: float = DEFAULT_PERCENTILE,
                  cache_dir: str | Path | None = None, fold: tuple[int, int] | None = None,
                  roi_mm: float = 0.0) -> list[LRSample]:
    """LRSamples (labelled phases) of one split of an LR-labelled source, cached as `.npz` per subject.
    With `fold` = (k, n), fold k is "val" (held out) and the other folds "train", instead of the source's
    own split; with `roi_mm` > 0 each study is cut to a box of that size around its labels first."""
    samples: list[LRSample] = []
    for position, subj in enumerate(lr_subjects(kind, root)):
        subj_split = subj.split if fold is None else ("val" if fold_of(kind, subj, position, fold[1]) == fold[0]
                                                      else "train")
        if subj_split != split:
            continue
        cached = None
        if cache_dir is not None:
            cached = Path(cache_dir) / f"{subj.sid}-{_cache_key(subj.files, percentile, roi_mm)}.npz"
            if cached.exists():
                try:
                    samples.extend(_read_cache(cached, subj.sid))
                    continue
                except (OSError, ValueError, KeyError):
                    log.warning("ignoring unreadable cache file %s", cached)
        try:
            study = subj.load()
        except GeminiError as exc:
            raise DataError(f"subject {subj.sid}: {exc}", subj.files[0]) from None
        got = samples_from_study(study, subj.sid, percentile, roi_mm)
        if cached is not None:
            _write_cache(cached, got)
        samples.extend(got)
    return samples


def load_acdc_split(root: str | Path, split: str, percentile: float = DEFAULT_PERCENTILE,
                    cache_dir: str | Path | None = None) -> list[LRSample]:
    return load_lr_split("acdc", root, split, percentile, cache_dir)


def _write_cache(path: Path, samples: list[LRSample]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    arrays = {}
    for i, s in enumerate(samples):
        arrays[f"planes{i}"], arrays[f"labels{i}"], arrays[f"index{i}"] = s.planes, s.labels, s.slice_index
    arrays["meta"] = np.array([[s.phase, s.is_ed, s.is_es] for s in samples], np.int64)
    arrays["scale"] = np.array([s.scale for s in samples], np.float64)
    arrays["group"] = np.array([s.group for s in samples])
    with atomic_path(path, suffix=".npz") as tmp, open(tmp, "wb") as f:
        np.savez(f, **arrays)


def _read_cache(path: Path, sid: str) -> list[LRSample]:
    with np.load(path, allow_pickle=False) as z:
        meta, scale, group = z["meta"], z["scale"], z["group"]
        return [LRSample(sid, int(m[0]), z[f"planes{i}"], z[f"labels{i}"], z[f"index{i}"], float(scale[i]),
                         bool(m[1]), bool(m[2]), str(group[i])) for i, m in enumerate(meta)]


IGNORE = 255  # label value of acquired-slice positions without a slice


@dataclass
class StackAugment:
    """Spatial and intensity augmentation of a stack of acquired slices (LR-label training), each applied
    with probability `p` (0 = all off). Spatial transforms are the same for every slice of the stack (a
    heart is rotated or scaled as a whole) except `slice_shift_px`, an in-plane offset drawn per slice like
    the breath-hold offsets between real acquisitions. Labels follow by nearest neighbour; positions beyond
    the field of view become background with intensity 0, as the crop's padding does."""

    p: float = 0.0
    rotate_deg: float = 180.0  # rotation in [-rotate_deg, rotate_deg]
    scale: tuple[float, float] = (0.8, 1.25)  # zoom (1.25 = 25% larger anatomy), log-uniform
    elastic_px: float = 0.0  # amplitude (SR pixels) of a smooth random displacement; 0 = off
    slice_shift_px: float = 0.0  # per-slice shift, normal sd (SR pixels); 0 = off
    gamma: tuple[float, float] = (0.7, 1.5)
    contrast: tuple[float, float] = (0.75, 1.25)
    blur_px: float = 1.0  # Gaussian sigma in [0.5, blur_px] (SR pixels)
    lowres: float = 0.5  # resolution loss: down by a factor in [lowres, 1], back up (linear)

    @classmethod
    def from_dict(cls, d: dict | None) -> StackAugment:
        d = dict(d or {})
        unknown = sorted(set(d) - set(cls.__dataclass_fields__))
        if unknown:
            raise DataError(f"unknown augmentation keys: {', '.join(unknown)}")
        for key in ("scale", "gamma", "contrast"):
            if key in d:
                d[key] = tuple(float(v) for v in d[key])
        return cls(**d)

    def spatial(self, rng: np.random.Generator, n: int, h: int, w: int, cy: float, cx: float
                ) -> tuple[np.ndarray, np.ndarray] | None:
        """Source (y, x) coordinates (n, h, w) of an output crop of h x w centred at (cy, cx), or None when
        no spatial transform was drawn."""
        rot = self.p > 0 and self.rotate_deg > 0 and rng.random() < self.p
        scl = self.p > 0 and rng.random() < self.p
        ela = self.p > 0 and self.elastic_px > 0 and rng.random() < self.p
        shf = self.p > 0 and self.slice_shift_px > 0 and rng.random() < self.p
        if not (rot or scl or ela or shf):
            return None
        theta = np.deg2rad(rng.uniform(-self.rotate_deg, self.rotate_deg)) if rot else 0.0
        zoom = float(np.exp(rng.uniform(np.log(self.scale[0]), np.log(self.scale[1])))) if scl else 1.0
        c, s = np.cos(theta) / zoom, np.sin(theta) / zoom
        v, u = np.mgrid[0:h, 0:w].astype(np.float64)
        v -= (h - 1) / 2
        u -= (w - 1) / 2
        ys = cy + c * v - s * u
        xs = cx + s * v + c * u
        if ela:
            from scipy.ndimage import gaussian_filter

            sigma = max(h, w) / 8
            for a in (ys, xs):
                f = gaussian_filter(rng.normal(size=(h, w)), sigma)
                a += f * (self.elastic_px * rng.uniform(0.5, 1.0) / (np.abs(f).max() + 1e-9))
        ys, xs = np.broadcast_to(ys, (n, h, w)).copy(), np.broadcast_to(xs, (n, h, w)).copy()
        if shf:
            ys += rng.normal(0, self.slice_shift_px, n)[:, None, None]
            xs += rng.normal(0, self.slice_shift_px, n)[:, None, None]
        return ys, xs

    def intensity(self, rng: np.random.Generator, planes: np.ndarray) -> np.ndarray:
        """Gamma, contrast, blur and resolution loss of (n, h, w) float32 planes (same draw for the stack)."""
        if self.p <= 0:
            return planes
        from scipy import ndimage

        if rng.random() < self.p:
            lo, hi = float(planes.min()), float(planes.max())
            if hi > lo:
                g = float(np.exp(rng.uniform(np.log(self.gamma[0]), np.log(self.gamma[1]))))
                planes = (((planes - lo) / (hi - lo)) ** g * (hi - lo) + lo).astype(np.float32)
        if rng.random() < self.p:
            mean = float(planes.mean())
            planes = ((planes - mean) * np.float32(rng.uniform(*self.contrast)) + mean).astype(np.float32)
        if self.blur_px > 0.5 and rng.random() < self.p:
            planes = ndimage.gaussian_filter(planes, (0, *[rng.uniform(0.5, self.blur_px)] * 2)).astype(np.float32)
        if self.lowres < 1 and rng.random() < self.p:
            f = rng.uniform(self.lowres, 1.0)
            n, h, w = planes.shape
            small = ndimage.zoom(planes, (1, f, f), order=1)
            planes = ndimage.zoom(small, (1, h / small.shape[1], w / small.shape[2]), order=1)[:, :h, :w]
            planes = np.ascontiguousarray(planes, dtype=np.float32)
        return planes


class LRItems:
    """(sample, depth window) items for a network depth D, with augmentation.

    get() -> x (D, h, w) float32 (acquired slices placed on the SR slices, zero depth padding),
    labels (D, h, w) int64 (the manual labels of acquired slice j of the window at row j, IGNORE beyond),
    slab (D,) int64 (row j of the acquired slice of every SR slice, -1 for padding).
    Augmentation: heart-centred crop with jitter (else uniform), flips, gain, Gaussian noise drawn per
    acquired slice (identical on the SR slices that repeat it, so they stay identical).
    """

    def __init__(self, samples: list[LRSample], depth: int, multiple: int = 16):
        self.samples = samples
        self.depth = depth
        self.multiple = multiple
        self.items = [(si, start, off) for si, s in enumerate(samples)
                      for start, off in depth_windows(len(s.slice_index), depth)]
        self._centres = [s.centre for s in samples]

    def __len__(self) -> int:
        return len(self.items)

    def get(self, index: int, rng: np.random.Generator | None, aug=None, crop: int | None = None,
            extra: StackAugment | None = None):
        si, start, off = self.items[index]
        s = self.samples[si]
        dz = len(s.slice_index)
        _, h, w = s.planes.shape
        n = min(self.depth, dz)
        crop = (aug.crop if aug is not None else 0) if crop is None else crop
        if crop:
            ch = cw = crop
            cy, cx = self._centres[si]
            if rng is not None and aug is not None and rng.random() >= aug.heart_centred:
                y0 = int(rng.integers(min(0, h - ch), max(0, h - ch) + 1))
                x0 = int(rng.integers(min(0, w - cw), max(0, w - cw) + 1))
            else:
                if rng is not None:
                    cy += rng.uniform(-crop / 5, crop / 5)
                    cx += rng.uniform(-crop / 5, crop / 5)
                y0, x0 = int(round(cy - ch / 2)), int(round(cx - cw / 2))
        else:
            ch, cw = h + (-h) % self.multiple, w + (-w) % self.multiple
            y0, x0 = -((ch - h) // 2), -((cw - w) // 2)
        idx = s.slice_index[start:start + n]
        j0, j1 = int(idx.min()), int(idx.max()) + 1
        nj = j1 - j0
        coords = None
        if rng is not None and extra is not None:
            coords = extra.spatial(rng, nj, ch, cw, y0 + (ch - 1) / 2, x0 + (cw - 1) / 2)
        if coords is not None:
            from scipy.ndimage import map_coordinates

            planes = np.empty((nj, ch, cw), np.float32)
            labels = np.empty((nj, ch, cw), np.int64)
            for j in range(nj):
                yx = [coords[0][j], coords[1][j]]
                planes[j] = map_coordinates(s.planes[j0 + j].astype(np.float32), yx, order=1, mode="constant")
                labels[j] = map_coordinates(s.labels[j0 + j], yx, order=0, mode="constant")
        else:
            planes = np.zeros((nj, ch, cw), np.float32)
            labels = np.zeros((nj, ch, cw), np.int64)
            sy0, sy1, sx0, sx1 = max(0, y0), min(h, y0 + ch), max(0, x0), min(w, x0 + cw)
            if sy1 > sy0 and sx1 > sx0:
                planes[:, sy0 - y0:sy1 - y0, sx0 - x0:sx1 - x0] = s.planes[j0:j1, sy0:sy1, sx0:sx1]
                labels[:, sy0 - y0:sy1 - y0, sx0 - x0:sx1 - x0] = s.labels[j0:j1, sy0:sy1, sx0:sx1]
        if rng is not None and extra is not None:
            planes = extra.intensity(rng, planes)
        if rng is not None and aug is not None:
            if aug.flip and rng.random() < 0.5:
                planes, labels = planes[:, ::-1], labels[:, ::-1]
            if aug.flip and rng.random() < 0.5:
                planes, labels = planes[:, :, ::-1], labels[:, :, ::-1]
            planes = planes * np.float32(rng.uniform(1 - aug.gain, 1 + aug.gain))
            sigma = rng.uniform(0, aug.noise)
            if sigma > 0:
                planes = planes + rng.normal(0, sigma, planes.shape).astype(np.float32)
        slab = np.full(self.depth, -1, np.int64)
        slab[off:off + n] = idx - j0
        x = np.zeros((self.depth, ch, cw), np.float32)
        x[off:off + n] = planes[idx - j0]
        lab = np.full((self.depth, ch, cw), IGNORE, np.int64)
        lab[:nj] = labels
        return np.ascontiguousarray(x), np.ascontiguousarray(lab), slab


def class_frequencies(samples: list[LRSample], n_classes: int = 4) -> np.ndarray:
    counts = np.zeros(n_classes, np.float64)
    for s in samples:
        counts += np.bincount(s.labels.ravel(), minlength=n_classes)[:n_classes]
    return counts / max(1.0, counts.sum())
