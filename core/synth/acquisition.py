"""LR short-axis acquisition simulator and HR rendering on the SR grid.

- `plan_lr_grid`: a SAX stack roughly perpendicular to the LV long axis (random obliquity), slice 0 above
  the base, k running towards the apex, FOV centred on the ventricles (with jitter).
- `render_planes`: tissue classes of a phantom on a stack of planes (the fast path: the static thorax is
  evaluated once, the heart per phase only at the points inside its envelope).
- `simulate_lr`: slice-profile integration (sub-slices across the slice thickness), per-slice breath-hold
  shifts in-plane (and optionally through-plane), in-plane PSF; LR labels at the slice centre planes
  with the same shifts.
- `plan_la_grid`, `la_offset`: long-axis (2- and 4-chamber) planes through the LV long axis and their own
  breath-hold offset; `simulate_lr` acquires them like a one-slice stack (same slice profile and PSF).
- `simulate_lr_from_volume`: the same acquisition applied to an HR image/label volume (real data),
  by trilinear/nearest sampling in world coordinates.

Shift convention: the heart (and thorax) of slice k was displaced by `shifts_mm[k]` (world mm) when the
slice was acquired, so the slice shows the anatomy at `p - shifts_mm[k]` at nominal position p. The
affine of the LR stack is the nominal one (it does not know about the shifts), as on a scanner.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from gemini_cmr.core.geometry import rotation_matrix
from gemini_cmr.core.study import Grid
from gemini_cmr.core.synth.anatomy import Phantom
from gemini_cmr.core.synth.domains import Acquisition


@dataclass
class SliceShifts:
    """Per-slice misregistration of an LR stack: world-mm displacement of the anatomy per slice."""

    shifts_mm: np.ndarray  # (Z, 3) world mm
    inplane_mm: np.ndarray  # (Z, 2) along the stack's i and j axes
    through_mm: np.ndarray  # (Z,) along the stack normal

    @classmethod
    def none(cls, n: int) -> SliceShifts:
        return cls(np.zeros((n, 3)), np.zeros((n, 2)), np.zeros(n))

    @classmethod
    def random(cls, rng: np.random.Generator, grid: Grid, acq: Acquisition) -> SliceShifts:
        nz = grid.shape[0]
        ip = rng.normal(0.0, acq.shift_mm, size=(nz, 2)) if acq.shift_mm > 0 else np.zeros((nz, 2))
        r = np.linalg.norm(ip, axis=1, keepdims=True)
        ip *= np.minimum(1.0, acq.shift_max_mm / np.maximum(r, 1e-9))
        tp = rng.normal(0.0, acq.through_plane_mm, size=nz) if acq.through_plane_mm > 0 else np.zeros(nz)
        d = grid.directions
        world = ip[:, :1] * d[:, 0] + ip[:, 1:] * d[:, 1] + tp[:, None] * grid.normal
        return cls(world, ip, tp)

    def to_json(self) -> dict:
        return {"inplane_mm": np.round(self.inplane_mm, 4).tolist(),
                "through_plane_mm": np.round(self.through_mm, 4).tolist()}


def plan_lr_grid(phantom: Phantom, acq: Acquisition, rng: np.random.Generator) -> Grid:
    """The nominal LR SAX stack for a phantom (see module docstring)."""
    p = phantom.params
    e_w = p.rotation[:, 2]
    # stack normal: base -> apex, tilted by a random obliquity about a random in-plane axis
    n = -e_w
    axis = np.cross(n, rng.normal(size=3))
    axis /= np.linalg.norm(axis)
    n = rotation_matrix(axis, rng.uniform(0.0, acq.obliquity_deg)) @ n
    # image axes: columns towards the patient's left, rows towards posterior (anterior at the top)
    i_dir = np.array([-1.0, 0.0, 0.0]) - n * (-n[0])
    i_dir /= np.linalg.norm(i_dir)
    j_dir = np.array([0.0, -1.0, 0.0])
    j_dir = j_dir - n * np.dot(j_dir, n) - i_dir * np.dot(j_dir, i_dir)
    j_dir /= np.linalg.norm(j_dir)
    rot = rotation_matrix(n, rng.uniform(-acq.inplane_rotation_deg, acq.inplane_rotation_deg))
    i_dir, j_dir = rot @ i_dir, rot @ j_dir
    f0 = phantom.frames[0]
    apex_w = f0.w_centre - f0.co
    mid_w = 0.5 * (apex_w + f0.w_base)
    centre = phantom.heart_to_world(np.array([[-0.3 * f0.A, 0.0, mid_w]]))[0]
    jit = acq.fov_jitter_mm * rng.uniform(-1.0, 1.0, size=3)
    centre = centre + jit[0] * i_dir + jit[1] * j_dir + 0.5 * jit[2] * n
    nx = ny = int(acq.matrix)
    nz = int(acq.n_slices)
    s_in, s_z = acq.inplane_mm, acq.slice_spacing_mm
    affine = np.eye(4)
    affine[:3, 0] = i_dir * s_in
    affine[:3, 1] = j_dir * s_in
    affine[:3, 2] = n * s_z
    affine[:3, 3] = centre - affine[:3, :3] @ np.array([(nx - 1) / 2, (ny - 1) / 2, (nz - 1) / 2])
    return Grid((nz, ny, nx), file_exact_affine(affine))


#: Long-axis views the simulator plans: the plane through the LV long axis (heart frame w) and the
#: heart-frame axis it contains besides w (4-chamber: u, through the septum, LV and RV; 2-chamber: v, the
#: LV alone).
LA_VIEWS = {"4ch": 0, "2ch": 1}
LA_FOV_MM = 260.0  # long-axis field of view (square)
LA_INPLANE_MM = (1.5, 1.8)  # range of the long-axis pixel size
LA_TILT_DEG = 5.0  # planning variety: the plane tilted by up to this about a random in-plane axis
LA_OFFSET_MM = 3.0  # ... and moved by up to this along its normal


def plan_la_grid(phantom: Phantom, view: str, rng: np.random.Generator) -> Grid:
    """The nominal long-axis plane of a phantom: a single-slice grid (1, Y, X) through the LV long axis at
    ED (`LA_VIEWS`), rows running from the apex towards the base (apex at the top of the image), columns
    along the view's second heart axis, pixels drawn from `LA_INPLANE_MM`, field of view `LA_FOV_MM` centred
    on the LV; the grid's slice axis is the plane normal (8 mm, nominal: `simulate_lr` uses the acquisition's
    slice profile)."""
    if view not in LA_VIEWS:
        raise ValueError(f"unknown long-axis view {view!r}; the simulator plans {', '.join(LA_VIEWS)}")
    R = phantom.params.rotation
    w = R[:, 2]
    across = R[:, LA_VIEWS[view]]
    normal = np.cross(across, w)
    tilt_axis = np.cross(normal, rng.normal(size=3))
    tilt_axis /= np.linalg.norm(tilt_axis)
    rot = rotation_matrix(tilt_axis, rng.uniform(-LA_TILT_DEG, LA_TILT_DEG))
    i_dir, j_dir = rot @ across, rot @ w
    j_dir = j_dir - i_dir * np.dot(j_dir, i_dir)
    j_dir /= np.linalg.norm(j_dir)
    n = np.cross(i_dir, j_dir)
    px = float(rng.uniform(*LA_INPLANE_MM))
    m = int(round(LA_FOV_MM / px / 2.0)) * 2
    f0 = phantom.frames[0]
    mid_w = 0.5 * (f0.w_centre - f0.co + f0.w_base)
    centre = phantom.heart_to_world(np.array([[0.0, 0.0, mid_w]]))[0] + n * rng.uniform(-LA_OFFSET_MM, LA_OFFSET_MM)
    affine = np.eye(4)
    affine[:3, 0] = i_dir * px
    affine[:3, 1] = j_dir * px
    affine[:3, 2] = n * 8.0
    affine[:3, 3] = centre - affine[:3, :3] @ np.array([(m - 1) / 2, (m - 1) / 2, 0.0])
    return Grid((1, m, m), file_exact_affine(affine))


def la_offset(rng: np.random.Generator, grid: Grid, acq: Acquisition) -> SliceShifts:
    """The breath-hold offset of one long-axis acquisition: an in-plane translation of the anatomy (along
    the plane's i and j axes), drawn like a short-axis slice's (`SliceShifts.random`, no through-plane part)."""
    ip = rng.normal(0.0, acq.shift_mm, size=(1, 2)) if acq.shift_mm > 0 else np.zeros((1, 2))
    r = np.linalg.norm(ip, axis=1, keepdims=True)
    ip *= np.minimum(1.0, acq.shift_max_mm / np.maximum(r, 1e-9))
    d = grid.directions
    world = ip[:, :1] * d[:, 0] + ip[:, 1:] * d[:, 1]
    return SliceShifts(world, ip, np.zeros(1))


def file_exact_affine(affine: np.ndarray) -> np.ndarray:
    """The affine as NIfTI stores it (float32 sform), with voxel sizes a hair (<= 1e-6) below nominal.

    The grid then reads back from a file exactly as it was generated, and `sr_grid` of the read-back
    grid is the same grid (a float32 round-off that makes 100 x 1.8 mm come out as 180.00001 mm would
    otherwise add an SR voxel: ceil(144.00001))."""
    a = np.asarray(affine, dtype=np.float64).copy()
    a[:3, :3] *= 1.0 - 6e-7
    return a.astype(np.float32).astype(np.float64)


# --- plane-stack rendering ---------------------------------------------------------------------------
def _plane_xyz(origins: np.ndarray, ax: np.ndarray, ay: np.ndarray, ni: int, nj: int) -> list[np.ndarray]:
    """Broadcastable float32 (P, nj, ni) coordinates of the points origin_p + i ax + j ay, one array per
    component of origins/ax/ay (which may be in the world or the heart frame)."""
    i = np.arange(ni, dtype=np.float64)
    j = np.arange(nj, dtype=np.float64)
    return [
        (origins[:, c, None, None] + ay[c] * j[None, :, None] + ax[c] * i[None, None, :]).astype(np.float32)
        for c in range(3)
    ]


@dataclass
class PlaneRender:
    """Tissue classes of a phantom on a stack of planes, stored sparsely: the static thorax `static`
    (P, nj, ni) and, per phase, the tissue `heart[n]` at the points `flat` (flat indices into `static`)
    near the heart, the only points whose tissue changes over the cycle."""

    static: np.ndarray
    flat: np.ndarray
    heart: np.ndarray  # (T, N) uint8
    phases: list[int]

    @property
    def shape(self) -> tuple[int, ...]:
        return (len(self.phases), *self.static.shape)

    def dense(self, lut: np.ndarray | None = None) -> np.ndarray:
        """(T, P, nj, ni) array of tissue classes, or of `lut[tissue]` when a lookup table is given."""
        st = self.static if lut is None else lut[self.static]
        hv = self.heart if lut is None else lut[self.heart]
        out = np.empty(self.shape, dtype=st.dtype)
        out[:] = st
        for n in range(len(self.phases)):
            out[n].reshape(-1)[self.flat] = hv[n]
        return out

    def box(self) -> tuple[slice, slice, slice]:
        """Bounding box (plane, row, column slices) of the points that move."""
        if len(self.flat) == 0:
            return (slice(0, 0),) * 3
        idx = np.unravel_index(self.flat, self.static.shape)
        return tuple(slice(int(i.min()), int(i.max()) + 1) for i in idx)


def render_planes(
    phantom: Phantom,
    origins: np.ndarray,
    ax: np.ndarray,
    ay: np.ndarray,
    ni: int,
    nj: int,
    phases: list[int] | None = None,
) -> PlaneRender:
    """Tissue classes at the points origins[p] + i * ax + j * ay (world mm), p < P, i < ni, j < nj.

    The thorax is painted once; the heart is painted per phase only at the points inside the heart's
    envelope (`Phantom.envelope`), gathered once.
    """
    origins = np.asarray(origins, dtype=np.float64)
    ax = np.asarray(ax, dtype=np.float64)
    ay = np.asarray(ay, dtype=np.float64)
    phases = list(range(phantom.n_phases)) if phases is None else list(phases)
    R = phantom.params.rotation
    h_orig = (origins - phantom.params.origin) @ R
    h_ax, h_ay = R.T @ ax, R.T @ ay
    x, y, z = _plane_xyz(origins, ax, ay, ni, nj)
    hu, hv, hw = np.broadcast_arrays(*_plane_xyz(h_orig, h_ax, h_ay, ni, nj))
    env = phantom.envelope(hu, hv, hw, phantom.MEDIASTINUM_MARGIN)
    static = phantom.paint_static(x, y, z, hu, hv, hw, envelope=env)
    flat = np.flatnonzero(env)
    pp, rr, cc = np.unravel_index(flat, static.shape)
    cu, cv, cw = ((h_orig[pp, c] + h_ay[c] * rr + h_ax[c] * cc).astype(np.float32) for c in range(3))
    # sort the points along the long axis: each shape is then painted on a contiguous run of points
    order = np.argsort(cw, kind="stable")
    flat, cu, cv, cw = flat[order], cu[order], cv[order], cw[order]
    base = static.reshape(-1)[flat]
    endo = phantom.endo_modulation(cu, cv, cw)
    heart = np.empty((len(phases), len(flat)), dtype=np.uint8)
    for n, t in enumerate(phases):
        heart[n] = base
        phantom.paint_heart(heart[n], cu, cv, cw, t, endo, w_sorted=True)
    return PlaneRender(static, flat, heart, phases)


def render_grid(phantom: Phantom, grid: Grid, phases: list[int] | None = None) -> PlaneRender:
    """Tissue classes of a phantom at the voxel centres of `grid` (no misregistration); `.dense()` gives
    the (T, Z, Y, X) array."""
    nz, ny, nx = grid.shape
    origins = grid.index_to_world(np.stack([np.zeros(nz), np.zeros(nz), np.arange(nz)], axis=1))
    return render_planes(phantom, origins, grid.affine[:3, 0], grid.affine[:3, 1], nx, ny, phases)


def render_signal(render: PlaneRender, lut: np.ndarray, sigma_px: tuple[float, float, float],
                  gain: np.ndarray | None = None) -> np.ndarray:
    """Noise-free signal `gain * lut[tissue]` (T, P, nj, ni) blurred by a Gaussian PSF (sigma in voxels
    along plane, row, column). The static thorax is blurred once; per phase only the change near the heart.

    `gain` (P, nj, ni), a smooth field, is applied before the blur (it varies little over the kernel)."""
    s0 = lut[render.static]
    base = s0.reshape(-1)[render.flat]
    if gain is not None:
        s0 *= gain
    g_flat = None if gain is None else gain.reshape(-1)[render.flat]
    blur = any(s > 0 for s in sigma_px)
    trunc = 3.0
    sb = ndimage.gaussian_filter(s0, sigma_px, truncate=trunc, mode="nearest") if blur else s0
    out = np.empty(render.shape, dtype=np.float32)
    out[:] = sb
    if len(render.flat) == 0:
        return out
    if not blur:
        for n in range(len(render.phases)):
            v = lut[render.heart[n]]
            if g_flat is not None:
                v *= g_flat
            out[n].reshape(-1)[render.flat] = v
        return out
    box = render.box()
    pad = [int(math.ceil(trunc * s)) + 1 if s > 0 else 0 for s in sigma_px]
    box = tuple(slice(max(b.start - m, 0), min(b.stop + m, n)) for b, m, n in zip(box, pad, render.static.shape))
    bshape = tuple(b.stop - b.start for b in box)
    idx = np.unravel_index(render.flat, render.static.shape)
    local = np.ravel_multi_index(tuple(i - b.start for i, b in zip(idx, box)), bshape)
    d = np.empty(bshape, dtype=np.float32)
    for n in range(len(render.phases)):
        d[:] = 0.0
        v = lut[render.heart[n]] - base
        if g_flat is not None:
            v *= g_flat
        d.reshape(-1)[local] = v
        out[n][box] += ndimage.gaussian_filter(d, sigma_px, truncate=trunc, mode="constant")
    return out


def subslice_offsets(acq: Acquisition) -> tuple[np.ndarray, np.ndarray]:
    """Positions (mm along the normal, relative to the slice centre) and weights of the sub-slices that
    integrate a box slice profile of width `slice_thickness_mm`."""
    ns = max(int(acq.n_subslices), 1)
    if ns % 2 == 0:
        ns += 1
    pos = ((np.arange(ns) + 0.5) / ns - 0.5) * acq.slice_thickness_mm
    return pos, np.full(ns, 1.0 / ns)


def _psf(img: np.ndarray, sigma_px: float) -> np.ndarray:
    if sigma_px <= 0:
        return img
    sig = (0.0,) * (img.ndim - 2) + (sigma_px, sigma_px)
    return ndimage.gaussian_filter(img, sig, mode="nearest", truncate=3.0)


def simulate_lr(
    phantom: Phantom,
    grid: Grid,
    acq: Acquisition,
    shifts: SliceShifts,
    lut: np.ndarray,
    phases: list[int] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Noise-free LR signal (T, Z, Y, X) float32 and LR tissue classes at the slice centre planes (uint8).

    Each LR voxel averages the signal of `n_subslices` planes across the slice thickness (box profile),
    all displaced by the slice's shift; then an in-plane Gaussian PSF.
    """
    nz, ny, nx = grid.shape
    pos, weights = subslice_offsets(acq)
    ns = len(pos)
    n = grid.normal
    base = grid.index_to_world(np.stack([np.zeros(nz), np.zeros(nz), np.arange(nz)], axis=1))
    origins = (base[:, None, :] - shifts.shifts_mm[:, None, :] + pos[None, :, None] * n).reshape(-1, 3)
    render = render_planes(phantom, origins, grid.affine[:3, 0], grid.affine[:3, 1], nx, ny, phases)
    T = len(render.phases)
    signal = render_signal(render, lut, (0.0, 0.0, 0.0)).reshape(T, nz, ns, ny, nx)
    if np.allclose(weights, weights[0]):
        signal = signal.mean(axis=2, dtype=np.float32)
    else:
        signal = np.tensordot(signal, weights.astype(np.float32), axes=([2], [0]))
    # tissue at the centre planes
    centre = render.dense().reshape(T, nz, ns, ny, nx)[:, :, ns // 2]
    return _psf(signal.astype(np.float32, copy=False), acq.psf_sigma_px), np.ascontiguousarray(centre)


def simulate_lr_from_volume(
    image: np.ndarray,
    labels: np.ndarray | None,
    src: Grid,
    grid: Grid,
    acq: Acquisition,
    shifts: SliceShifts | None = None,
) -> tuple[np.ndarray, np.ndarray | None]:
    """The LR acquisition of an HR volume (real data): image (T, Z, Y, X) or (Z, Y, X) on `src` ->
    (LR image, LR labels) on `grid` (nominal LR geometry), noise-free.

    The HR image is filtered in-plane with the LR point-spread function (`psf_sigma_px` LR pixels, applied
    before sampling so that it also anti-aliases), sampled trilinearly on sub-slices across the slice
    thickness with the per-slice shifts, and averaged; labels are sampled (nearest) at the shifted slice
    centre planes. Points outside `src` read 0.
    """
    image = np.asarray(image, dtype=np.float32)
    single = image.ndim == 3
    if single:
        image = image[None]
        labels = None if labels is None else np.asarray(labels)[None]
    nz, ny, nx = grid.shape
    shifts = shifts or SliceShifts.none(nz)
    pos, weights = subslice_offsets(acq)
    # the LR in-plane PSF, in HR pixels along the source's rows and columns
    sig_xy = acq.psf_sigma_px * acq.inplane_mm / np.asarray(src.spacing[:2])
    pre = np.stack([ndimage.gaussian_filter(v, (0.0, sig_xy[1], sig_xy[0])) for v in image])
    n = grid.normal
    jj, ii = np.meshgrid(np.arange(ny, dtype=np.float64), np.arange(nx, dtype=np.float64), indexing="ij")
    inv = src.inverse

    def coords(k: int, off: float) -> np.ndarray:
        o = grid.index_to_world(np.array([0.0, 0.0, k])) - shifts.shifts_mm[k] + off * n
        w = o[:, None, None] + grid.affine[:3, 0, None, None] * ii + grid.affine[:3, 1, None, None] * jj
        idx = np.tensordot(inv[:3, :3], w, axes=([1], [0])) + inv[:3, 3, None, None]
        return idx[::-1]  # (k, j, i) order = array axes (Z, Y, X)

    T = image.shape[0]
    out = np.zeros((T, nz, ny, nx), dtype=np.float32)
    out_lab = None if labels is None else np.zeros((T, nz, ny, nx), dtype=np.uint8)
    for k in range(nz):
        for off, wt in zip(pos, weights):
            c = coords(k, off)
            for t in range(T):
                out[t, k] += wt * ndimage.map_coordinates(pre[t], c, order=1, mode="constant", cval=0.0)
        if labels is not None:
            c = coords(k, 0.0)
            for t in range(T):
                out_lab[t, k] = ndimage.map_coordinates(labels[t], c, order=0, mode="constant", cval=0)
    if single:
        return out[0], None if out_lab is None else out_lab[0]
    return out, out_lab
