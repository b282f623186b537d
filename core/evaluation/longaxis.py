"""The long-axis consistency test (`gemini-cmr evaluate long-axis --data DIR`): 3D labels cut along a labelled
long-axis plane that was not an input, scored against that plane's labels.

For each study with a labelled long-axis cine (phantom datasets written with `gemini-cmr synth --long-axis`,
or folders in the UK Biobank / M&Ms-2 layouts with `la_<view>` + `label_la_<view>` or `<id>_LA_*` + `_gt`), the
short-axis stack is super-resolved at ED and ES (with the `input_views` long-axis cines as inputs, if any) and
each held-out labelled view is scored. The methods, each cut along the plane at the long-axis pixel centres
(world coordinates through both affines) and scored only inside the short-axis slab:
- `sa_labels_nearest`: the short-axis input's own labels (manual, or the phantom's LR truth), nearest slice;
- `lr_nearest`: the product's labels on the acquired grid, nearest slice;
- `lr_linear`: the same, linear between slices (per structure, the in-plane signed distance maps interpolated
  linearly through the stack);
- `sr`: the product's SR labels;
- `hr_truth` (phantoms): the HR truth labels (the test's own ceiling).
Each method gets its own best global in-plane shift of the long-axis labels (`best_shift`: +-`SEARCH_MM`,
1 mm then 0.5 mm steps, maximising the mean Dice over the phases and structures), so the breath-hold offset
between the acquisitions is not counted against anyone. Reported per phase: Dice per structure (LV cavity,
LV myocardium, RV cavity; their mean) and the mean symmetric contour distance (mm; per structure, averaged;
contour points on the slab's edge left out).

Images (`image_correlation`): the Pearson correlation between the acquired long-axis image and 3D images cut
along its plane, inside the short-axis slab, per phase; each method at its own best global in-plane shift
(`best_correlation_shift`, the same search as the labels'; the 3D image is cut along the shifted plane, so no
method's cut is resampled twice):
- `sr`: the product's SR image (trilinear on the SR grid);
- `lr_linear`: the short-axis input image, linear between slices (trilinear);
- `lr_bspline`: the same, cubic B-spline;
also within `HEART_MARGIN_MM` of the long-axis image's labelled heart (`near_heart`, at the same shift).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage

from gemini_cmr.core.errors import DataError
from gemini_cmr.core.longaxis import (
    LongAxisCine,
    cut_volume,
    find_long_axis_files,
    load_long_axis,
    match_phases,
    pixel_world,
    sample_world,
)
from gemini_cmr.core.study import STRUCTURE_SHORT, STRUCTURES, Grid, Study

Say = Callable[[str], None]
METHODS = ("sa_labels_nearest", "lr_nearest", "lr_linear", "sr", "hr_truth")
IMAGE_METHODS = ("sr", "lr_linear", "lr_bspline")
IMAGE_METHOD_NAMES = {"sr": "product SR image", "lr_linear": "short-axis input image, linear between slices",
                      "lr_bspline": "short-axis input image, cubic B-spline between slices"}
METHOD_NAMES = {"sa_labels_nearest": "short-axis input labels, nearest slice",
                "lr_nearest": "product labels on the acquired grid, nearest slice",
                "lr_linear": "product labels on the acquired grid, linear between slices",
                "sr": "product SR labels", "hr_truth": "HR truth labels (phantoms)"}
SEARCH_MM = 8.0
#: The image correlation is also reported within this distance (mm) of the long-axis image's labelled heart.
HEART_MARGIN_MM = 10.0


# --- scoring one plane -------------------------------------------------------------------------------
def _contour(mask: np.ndarray) -> np.ndarray:
    return mask & ~ndimage.binary_erosion(mask, border_value=0)


def contour_distance(a: np.ndarray, b: np.ndarray, inside: np.ndarray, spacing_yx) -> float:
    """Mean symmetric distance (mm) between the contours of two 2D masks within `inside`; contour points on
    the edge of `inside` (where the slab cuts a structure) are left out. NaN when either is empty."""
    a, b = a & inside, b & inside
    if not a.any() or not b.any():
        return math.nan
    core = ndimage.binary_erosion(inside, border_value=0)
    ca, cb = _contour(a), _contour(b)
    pa, pb = ca & core, cb & core
    if not pa.any() and not pb.any():
        return math.nan
    sp = tuple(float(v) for v in spacing_yx)
    da = ndimage.distance_transform_edt(~cb, sampling=sp)[pa]
    db = ndimage.distance_transform_edt(~ca, sampling=sp)[pb]
    return float((da.sum() + db.sum()) / (len(da) + len(db)))


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    n = int(a.sum()) + int(b.sum())
    return math.nan if n == 0 else 2.0 * int((a & b).sum()) / n


def plane_scores(pred: np.ndarray, truth: np.ndarray, inside: np.ndarray, spacing_yx) -> dict[str, dict[str, float]]:
    """Dice and contour distance per structure (and their mean) of a 2D label cut against 2D truth."""
    dice, mcd = {}, {}
    for v, key in STRUCTURES.items():
        p, t = (pred == v) & inside, (truth == v) & inside
        dice[key] = _dice(p, t)
        mcd[key] = contour_distance(p, t, inside, spacing_yx)
    for d in (dice, mcd):
        vals = [x for x in d.values() if not math.isnan(x)]
        d["mean"] = float(np.mean(vals)) if vals else math.nan
    return {"dice": dice, "mcd_mm": mcd}


def _shifted(truth: np.ndarray, shift_mm: np.ndarray, spacing_yx) -> np.ndarray:
    """Long-axis labels (P, Y, X) moved so that an acquisition displaced by `shift_mm` (i, j) lines up with
    the nominal plane: out(p) = truth(p + shift)."""
    dj, di = shift_mm[1] / spacing_yx[0], shift_mm[0] / spacing_yx[1]
    return np.stack([ndimage.shift(t, (-dj, -di), order=0, mode="constant", cval=0) for t in truth])


def _mean_dice(pred: np.ndarray, truth: np.ndarray, inside: np.ndarray) -> float:
    vals = []
    for p, t in zip(pred, truth):
        for v in STRUCTURES:
            d = _dice((p == v) & inside, (t == v) & inside)
            if not math.isnan(d):
                vals.append(d)
    return float(np.mean(vals)) if vals else -1.0


def search_shift(score, search_mm: float = SEARCH_MM) -> np.ndarray:
    """The in-plane shift (mm, 2-vector) maximising `score(shift)`: 1 mm steps over +-search_mm, then 0.5 mm
    steps within 1 mm of the best (the first best kept on ties)."""
    best, best_v = np.zeros(2), -np.inf
    for step, span, centre in ((1.0, search_mm, np.zeros(2)), (0.5, 1.0, None)):
        c = best if centre is None else centre
        offs = np.arange(-span, span + 1e-9, step)
        for dj in offs:
            for di in offs:
                s = c + np.array([di, dj])
                if np.max(np.abs(s)) > search_mm + 1e-9:
                    continue
                v = score(s)
                if v > best_v + 1e-12:
                    best, best_v = s, v
    return best


def best_shift(pred: np.ndarray, truth: np.ndarray, inside: np.ndarray, spacing_yx,
               search_mm: float = SEARCH_MM) -> np.ndarray:
    """The global in-plane shift (mm along the long-axis i, j) of the long-axis labels (P, Y, X) that
    maximises the mean Dice against the cuts `pred` (P, Y, X) inside the slab: 1 mm steps over +-search_mm,
    then 0.5 mm steps around the best."""
    return search_shift(lambda s: _mean_dice(pred, _shifted(truth, s, spacing_yx), inside), search_mm)


def score_method(pred: np.ndarray, truth: np.ndarray, inside: np.ndarray, spacing_yx, tags: list[str],
                 search_mm: float = SEARCH_MM) -> dict[str, Any]:
    """One method on one plane: its best shift, then per phase (tags) Dice and contour distance."""
    shift = best_shift(pred, truth, inside, spacing_yx, search_mm)
    aligned = _shifted(truth, shift, spacing_yx)
    out: dict[str, Any] = {"shift_mm": [round(float(v), 2) for v in shift]}
    for tag, p, t in zip(tags, pred, aligned):
        out[tag] = plane_scores(p, t, inside, spacing_yx)
    return out


# --- image correlation ------------------------------------------------------------------------------
def pearson(a: np.ndarray, b: np.ndarray, mask: np.ndarray) -> float:
    """Pearson correlation of two 2D images over `mask` (NaN with fewer than 10 pixels or a flat image)."""
    x, y = a[mask].astype(np.float64), b[mask].astype(np.float64)
    if x.size < 10:
        return math.nan
    x, y = x - x.mean(), y - y.mean()
    den = math.sqrt(float((x * x).sum()) * float((y * y).sum()))
    return math.nan if den == 0 else float((x * y).sum() / den)


class PlaneSampler:
    """A 3D image ((P,) Z, Y, X on `grid`) cut along the long-axis plane `la` at any in-plane shift: `cut(shift_mm)`
    -> (images (P, Y, X), mask (Y, X) of the pixels inside the image's grid), sampled at each pixel p - shift
    (as `cut_volume(shift_mm=)`: the cut an acquisition displaced by `shift_mm` would show). order 1 =
    trilinear, 3 = cubic B-spline (prefiltered once)."""

    def __init__(self, volume: np.ndarray, grid: Grid, la: Grid, order: int = 1):
        vols = np.asarray(volume, np.float32)
        vols = vols[None] if vols.ndim == 3 else vols
        self.order = order
        self.vols = [ndimage.spline_filter(v, order, mode="nearest") if order > 1 else v for v in vols]
        self.grid, self.la = grid, la
        self.world = pixel_world(la)

    def cut(self, shift_mm=(0.0, 0.0)) -> tuple[np.ndarray, np.ndarray]:
        d = self.la.directions
        world = self.world - (d[:, 0] * float(shift_mm[0]) + d[:, 1] * float(shift_mm[1]))
        idx = self.grid.world_to_index(world)
        nz, ny, nx = self.grid.shape
        inside = ((idx[..., 0] >= -0.5) & (idx[..., 0] <= nx - 0.5) & (idx[..., 1] >= -0.5) & (idx[..., 1] <= ny - 0.5)
                  & (idx[..., 2] >= -0.5) & (idx[..., 2] <= nz - 0.5))
        coords = np.stack([idx[..., 2], idx[..., 1], idx[..., 0]])
        out = np.stack([ndimage.map_coordinates(v, coords, order=self.order, mode="nearest", prefilter=False)
                        for v in self.vols])
        return out, inside


def _correlations(sampler: PlaneSampler, la_images: np.ndarray, mask: np.ndarray, shift) -> list[float]:
    cuts, inside = sampler.cut(shift)
    return [pearson(c, img, mask & inside) for c, img in zip(cuts, la_images)]


def best_correlation_shift(sampler: PlaneSampler, la_images: np.ndarray, mask: np.ndarray,
                           search_mm: float = SEARCH_MM) -> np.ndarray:
    """The global in-plane shift (mm along the long-axis i, j) of the cut that maximises its mean correlation with
    the long-axis images (P, Y, X) within `mask`: 1 mm steps over +-search_mm, then 0.5 mm steps around the best
    (the labels' search)."""
    def score(s: np.ndarray) -> float:
        vals = [v for v in _correlations(sampler, la_images, mask, s) if not math.isnan(v)]
        return float(np.mean(vals)) if vals else -np.inf

    return search_shift(score, search_mm)


def score_image(sampler: PlaneSampler, la_images: np.ndarray, mask: np.ndarray, tags: list[str],
                search_mm: float = SEARCH_MM, near: np.ndarray | None = None) -> dict[str, Any]:
    """One image method on one plane: its best shift, then the correlation per phase (tags) within `mask` (the
    short-axis slab) and the shifted cut's own extent; with `near` (a mask of the long-axis image, e.g. near the
    heart) also within `near` at the same shift (`near_heart`)."""
    shift = best_correlation_shift(sampler, la_images, mask, search_mm)
    out: dict[str, Any] = {"shift_mm": [round(float(v), 2) for v in shift]}
    for tag, r in zip(tags, _correlations(sampler, la_images, mask, shift)):
        out[tag] = r
    if near is not None:
        out["near_heart"] = dict(zip(tags, _correlations(sampler, la_images, mask & near, shift)))
    return out


def near_heart(labels: np.ndarray, spacing_yx, margin_mm: float = HEART_MARGIN_MM) -> np.ndarray:
    """Pixels (Y, X) within `margin_mm` of any labelled structure of long-axis labels (P, Y, X)."""
    heart = np.any(np.asarray(labels) > 0, axis=0)
    if not heart.any():
        return heart
    return ndimage.distance_transform_edt(~heart, sampling=tuple(float(v) for v in spacing_yx)) <= margin_mm


def image_samplers(la: LongAxisCine, result, rows: list[int], phases: list[int]) -> dict[str, PlaneSampler]:
    """The 3D images of every image method, ready to be cut along `la`'s plane at the result rows / phases."""
    study = result.study
    lr_images = study.image[phases]
    return {"sr": PlaneSampler(np.asarray(result.sr_image)[rows], result.sr_grid, la.grid, 1),
            "lr_linear": PlaneSampler(lr_images, study.grid, la.grid, 1),
            "lr_bspline": PlaneSampler(lr_images, study.grid, la.grid, 3)}


# --- cuts of each method -----------------------------------------------------------------------------
def linear_between_slices(labels: np.ndarray, grid: Grid, la: Grid) -> np.ndarray:
    """Labels (Z, Y, X) on a stack cut along a plane with linear interpolation between slices: each structure's
    in-plane signed distance map (mm, negative inside) per slice, sampled trilinearly; the structure with the
    most negative value where any is negative."""
    sp = (float(grid.spacing[1]), float(grid.spacing[0]))
    sdf = np.zeros((len(STRUCTURES), *labels.shape), np.float32)
    for c, v in enumerate(STRUCTURES):
        for k in range(labels.shape[0]):
            m = labels[k] == v
            if not m.any():
                sdf[c, k] = 1e3
                continue
            sdf[c, k] = np.where(m, -ndimage.distance_transform_edt(m, sampling=sp),
                                 ndimage.distance_transform_edt(~m, sampling=sp))
    vals, inside = sample_world(sdf, grid, pixel_world(la), order=1)
    keys = np.array(list(STRUCTURES), np.uint8)
    best = np.argmin(vals, axis=0)
    out = np.where(np.min(vals, axis=0) < 0, keys[best], 0).astype(np.uint8)
    return np.where(inside, out, 0)


def plane_cuts(la: LongAxisCine, result, lr_labels_in: np.ndarray | None, rows: list[int], phases: list[int],
               hr: tuple[np.ndarray, Grid] | None = None) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """The cuts (P, Y, X) of every method along `la`'s plane at the result rows/phases, and the slab mask."""
    study = result.study
    lr = study.grid
    _, inside = cut_volume(np.zeros(lr.shape, np.uint8), lr, la.grid, order=0)
    cuts: dict[str, np.ndarray] = {}
    if lr_labels_in is not None:
        cuts["sa_labels_nearest"] = np.stack([cut_volume(lr_labels_in[t], lr, la.grid, 0)[0] for t in phases])
    cuts["lr_nearest"] = np.stack([cut_volume(result.lr_labels[r], lr, la.grid, 0)[0] for r in rows])
    cuts["lr_linear"] = np.stack([linear_between_slices(result.lr_labels[r], lr, la.grid) for r in rows])
    cuts["sr"] = np.stack([cut_volume(result.sr_labels[r], result.sr_grid, la.grid, 0)[0] for r in rows])
    if hr is not None:
        hr_labels, hr_grid = hr
        cuts["hr_truth"] = np.stack([cut_volume(hr_labels[t], hr_grid, la.grid, 0)[0] for t in phases])
    return cuts, inside


# --- studies -----------------------------------------------------------------------------------------
class LongAxisStudy:
    """One study of the test: the short-axis `study` (its labels = the input labels, when any), its
    long-axis cines by view, the HR truth when known (phantoms), the true long-axis offsets (phantoms)."""

    def __init__(self, name: str, study: Study, views: dict[str, LongAxisCine], hr=None, offsets=None):
        self.name, self.study, self.views, self.hr, self.offsets = name, study, views, hr, offsets or {}


def phantom_studies(data: Path, split: str = "test") -> list[Callable[[], LongAxisStudy]]:
    """Loaders of the phantom subjects of a paired dataset's split that have long-axis cines."""
    from gemini_cmr.core.evaluation.paired import PairedSubject, labelled_subjects

    entries, _ = labelled_subjects(data, split)
    entries = [e for e in entries if e.get("long_axis")]
    if not entries:
        raise DataError(f"no subjects with long-axis cines in split {split!r} (write them with "
                        "`gemini-cmr synth --long-axis 4ch 2ch`)", data / "manifest.json")

    def load(e: dict) -> LongAxisStudy:
        sub = PairedSubject(data, e)
        views = {v: load_long_axis(data / d["image"])[0] for v, d in e["long_axis"].items()}
        offsets = {v: d.get("offset_mm") for v, d in e["long_axis"].items()}
        return LongAxisStudy(sub.id, sub.study(), views, (sub.hr_labels, sub.hr_labels_grid), offsets)

    return [lambda e=e: load(e) for e in entries]


def layout_studies(data: Path) -> list[Callable[[], LongAxisStudy]]:
    """Loaders of the subject folders (UK Biobank / M&Ms-2 layouts) under `data` (or `data` itself) with
    labelled long-axis cines beside the short-axis one."""
    from gemini_cmr.core.io import load_study
    from gemini_cmr.core.io.layouts import find_layout_image

    folders = [data] if find_long_axis_files(data) else sorted(p for p in data.iterdir() if p.is_dir())

    def sa_of(folder: Path) -> Path | None:
        found = find_layout_image(folder)
        if found is not None:
            return found[0]
        cines = sorted(folder.glob("*_SA_CINE.nii*")) + sorted(folder.glob("*_SA_ED.nii*"))
        return cines[0] if cines else None

    out = []
    for f in folders:
        la_files = find_long_axis_files(f)
        sa = sa_of(f)
        if not la_files or sa is None:
            continue

        def load(f=f, sa=sa, la_files=la_files) -> LongAxisStudy:
            views = {}
            for p in la_files:
                for c in load_long_axis(p):
                    views.setdefault(c.view, c)
            return LongAxisStudy(f.name, load_study(sa), views)

        out.append(load)
    if not out:
        raise DataError("no study folder with a short-axis cine and long-axis cines (UK Biobank sa + la_<view>, "
                        "M&Ms-2 <id>_SA_* + <id>_LA_*)", data)
    return out


# --- the test ----------------------------------------------------------------------------------------
def evaluate_study(s: LongAxisStudy, resolver, input_views: tuple[str, ...] = (),
                   held_out: tuple[str, ...] | None = None, motion_correction: bool | None = None) -> dict[str, Any]:
    """Run the product on one study (long-axis `input_views` as inputs) and score every held-out labelled view."""
    study = s.study
    lr_in = study.labels if study.has_labels else None
    ed, es = study.meta.ed_phase, study.meta.es_phase
    run_study = study
    run_study.labels, run_study.labelled_phases = None, []
    inputs = [s.views[v] for v in input_views if v in s.views]
    t0 = time.perf_counter()
    phases = "ed,es" if ed is not None and es is not None else "all"
    res = resolver.run(run_study, phases=phases, meshes="none", long_axis=inputs,
                       **({} if motion_correction is None else {"motion_correction": motion_correction}))
    seconds = time.perf_counter() - t0
    ed, es = res.ed_phase, res.es_phase
    want = [v for v in (held_out or s.views) if v in s.views and v not in input_views]
    out: dict[str, Any] = {"id": s.name, "inputs": list(input_views), "seconds": round(seconds, 2), "views": {}}
    for v in want:
        la = s.views[v]
        tags, rows, sa_ph, la_rows = [], [], [], []
        match = match_phases(la, study.n_phases, ed, es)
        for tag, t in (("ED", ed), ("ES", es)):
            lt = int(match[t])
            if t in res.phases and lt in la.labelled_phases and tag not in tags:
                tags.append(tag)
                rows.append(res.phase_row(t))
                sa_ph.append(t)
                la_rows.append(lt)
        if not tags:
            out["views"][v] = {"skipped": "no long-axis labels at ED or ES"}
            continue
        cuts, inside = plane_cuts(la, res, lr_in, rows, sa_ph, s.hr)
        truth = la.labels[la_rows]
        sp = (float(la.grid.spacing[1]), float(la.grid.spacing[0]))
        row = {"phases": dict(zip(tags, sa_ph)), "inside_pixels": int(inside.sum()), "methods": {}}
        for m in METHODS:
            if m in cuts:
                row["methods"][m] = score_method(cuts[m], truth, inside, sp, tags)
        samplers = image_samplers(la, res, rows, sa_ph)
        heart = near_heart(truth, sp)
        row["image_correlation"] = {m: score_image(samplers[m], la.image[la_rows], inside, tags, near=heart)
                                    for m in IMAGE_METHODS}
        if v in s.offsets:
            row["true_offset_mm"] = s.offsets[v]
        out["views"][v] = row
    return out


def summarise(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean over studies and held-out views, per method and phase: Dice and contour distance per structure."""
    acc: dict[str, dict[str, dict[str, dict[str, list[float]]]]] = {}
    n_planes = 0
    for r in rows:
        for v in r["views"].values():
            if "methods" not in v:
                continue
            n_planes += 1
            for m, sc in v["methods"].items():
                for tag in ("ED", "ES"):
                    if tag not in sc:
                        continue
                    for metric in ("dice", "mcd_mm"):
                        for k, x in sc[tag][metric].items():
                            acc.setdefault(m, {}).setdefault(tag, {}).setdefault(metric, {}).setdefault(k, []).append(x)
    out: dict[str, Any] = {"planes": n_planes, "methods": {}, "image_correlation": {}}
    for m, by_tag in acc.items():
        out["methods"][m] = {tag: {metric: {k: _nanmean(v) for k, v in d.items()} for metric, d in mt.items()}
                             for tag, mt in by_tag.items()}
    corr: dict[str, dict[str, dict[str, list[float]]]] = {}
    for r in rows:
        for v in r["views"].values():
            for m, sc in (v.get("image_correlation") or {}).items():
                for where, d in (("slab", sc), ("near_heart", sc.get("near_heart") or {})):
                    for tag in ("ED", "ES"):
                        if tag in d:
                            corr.setdefault(m, {}).setdefault(where, {}).setdefault(tag, []).append(d[tag])
    out["image_correlation"] = {m: {where: {tag: _nanmean(x) for tag, x in t.items()} for where, t in w.items()}
                                for m, w in corr.items()}
    return out


def _nanmean(values: list[float]) -> float:
    return float(np.nanmean(values)) if np.any(np.isfinite(values)) else math.nan


def evaluate_long_axis(data: str | Path, resolver, split: str = "test", limit: int | None = None,
                       input_views: tuple[str, ...] = (), held_out: tuple[str, ...] | None = None,
                       say: Say | None = None) -> dict[str, Any]:
    """The test over a phantom dataset (a folder with manifest.json) or layout folders; rows and summary."""
    data = Path(data).expanduser()
    if not data.is_dir():
        raise DataError("data folder not found", data)
    loaders = phantom_studies(data, split) if (data / "manifest.json").is_file() else layout_studies(data)
    if limit:
        loaders = loaders[: max(1, int(limit))]
    rows = []
    for load in loaders:
        row = evaluate_study(load(), resolver, tuple(input_views), held_out)
        rows.append(row)
        if say:
            say(format_row(row))
    return {"data": str(data), "n": len(rows), "inputs": list(input_views), "model_id": resolver.model_id,
            "summary": summarise(rows), "subjects": rows}


def format_row(row: dict[str, Any]) -> str:
    parts = [row["id"], f"({row['seconds']:.0f} s)"]
    for v, r in row["views"].items():
        if "methods" not in r:
            parts.append(f"{v}: {r.get('skipped')}")
            continue
        sr = r["methods"]["sr"]
        ed = sr.get("ED") or next(iter(x for k, x in sr.items() if k != "shift_mm"))
        text = f"{v}: SR Dice {ed['dice']['mean']:.3f} MCD {ed['mcd_mm']['mean']:.2f} mm shift {sr['shift_mm']}"
        corr = r.get("image_correlation") or {}
        if corr:
            first = next((t for t in ("ED", "ES") if t in corr["sr"]), None)
            if first:
                text += (f" image r ({first}) SR {corr['sr'][first]:.3f} / linear {corr['lr_linear'][first]:.3f}"
                         f" / B-spline {corr['lr_bspline'][first]:.3f}")
        parts.append(text)
    return "  ".join(parts)


def format_summary(s: dict[str, Any]) -> str:
    keys = list(STRUCTURES.values())
    short = "/".join(STRUCTURE_SHORT[k] for k in keys)
    lines = [f"| method | phase | Dice {short} | Dice mean | contour distance {short} (mm) | mean (mm) |",
             "|---|---|---|---|---|---|"]
    for m in METHODS:
        if m not in s["methods"]:
            continue
        for tag in ("ED", "ES"):
            d = s["methods"][m].get(tag)
            if d is None:
                continue
            lines.append(f"| {METHOD_NAMES[m]} | {tag} | " + "/".join(f"{d['dice'][k]:.3f}" for k in keys)
                         + f" | {d['dice']['mean']:.3f} | " + "/".join(f"{d['mcd_mm'][k]:.2f}" for k in keys)
                         + f" | {d['mcd_mm']['mean']:.2f} |")
    corr = s.get("image_correlation") or {}
    if corr:
        lines += ["", "| image cut along the plane | correlation with the long-axis image, slab ED / ES | within "
                  f"{HEART_MARGIN_MM:g} mm of the heart ED / ES |", "|---|---|---|"]
        for m in IMAGE_METHODS:
            if m in corr:
                cells = [" / ".join(f"{corr[m].get(w, {}).get(t, math.nan):.3f}" for t in ("ED", "ES"))
                         for w in ("slab", "near_heart")]
                lines.append(f"| {IMAGE_METHOD_NAMES[m]} | {cells[0]} | {cells[1]} |")
    return "\n".join(lines)


__all__ = ["IMAGE_METHODS", "METHODS", "LongAxisStudy", "PlaneSampler", "best_correlation_shift", "best_shift", "image_samplers", "near_heart", "pearson",
           "score_image", "contour_distance", "evaluate_long_axis", "evaluate_study",
           "format_summary", "layout_studies", "linear_between_slices", "phantom_studies", "plane_cuts",
           "plane_scores", "score_method", "summarise"]
