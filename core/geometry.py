"""Geometry shared by every stage: the SR grid of an LR stack, resampling between grids,
nearest-slice placement of an LR stack on its SR grid, and rigid transforms (Kabsch).

All functions take numpy arrays in (Z, Y, X) order (or (T, Z, Y, X)) and `Grid`s whose affines map
(i, j, k) = (column, row, slice) to world RAS+ mm.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage

from gemini_cmr.core.study import Grid

SR_INPLANE_MM = 1.25
SR_THROUGH_MM = 2.0

_REVERSE = np.array([[0, 0, 1], [0, 1, 0], [1, 0, 0]], dtype=np.float64)  # (x, y, z) <-> (z, y, x)


def sr_grid(lr: Grid, inplane_mm: float = SR_INPLANE_MM, through_mm: float = SR_THROUGH_MM) -> Grid:
    """The super-resolution grid of an LR stack (spec section 2).

    Same orientation as the LR stack; in-plane `inplane_mm` covering the LR field of view edge to edge;
    through-plane `through_mm` covering the LR slab from (first slice centre - spacing/2) to
    (last slice centre + spacing/2) along the stack's k axis. The grid is centred on the LR field of
    view when the sizes do not divide evenly.
    """
    nz, ny, nx = lr.shape
    sx, sy, sz = lr.spacing
    d = lr.directions
    lengths = np.array([nx * sx, ny * sy, nz * sz])
    steps = np.array([inplane_mm, inplane_mm, through_mm])
    # 1e-3 voxel tolerance: float32 affines read back from files must not gain a voxel.
    counts = np.array([max(1, math.ceil(L / s - 1e-3)) for L, s in zip(lengths, steps)])
    # LR outer edge (voxel index -0.5 on every axis) in world space, then centre the SR grid on the LR FOV.
    lr_edge = lr.index_to_world(np.array([-0.5, -0.5, -0.5]))
    excess = counts * steps - lengths
    start = lr_edge + d @ (steps / 2 - excess / 2)
    affine = np.eye(4)
    affine[:3, :3] = d * steps
    affine[:3, 3] = start
    return Grid((int(counts[2]), int(counts[1]), int(counts[0])), affine)


def matching_sr_grid(lr: Grid, hr: Grid) -> Grid:
    """`sr_grid(lr)`, or `hr` itself when it is that grid up to the float32 rounding of NIfTI affines.

    `core.geometry.sr_grid` rounds the field of view up with a 1e-6 tolerance, so LR spacings read back
    from float32 headers (1.8000001 mm) can add one SR voxel and move the grid by half a voxel. The LR
    spacing is snapped to 1e-4 mm and the grid recomputed; if it then matches `hr` within 1e-3 mm,
    the HR files are taken as lying on the SR grid (exact copy, no resampling).
    """
    sr = sr_grid(lr)
    if sr == hr:
        return sr
    sp = lr.spacing
    snapped = np.where(np.abs(sp - np.round(sp, 4)) < 1e-4, np.round(sp, 4), sp)
    aff = lr.affine.copy()
    aff[:3, :3] = lr.directions * snapped
    sr2 = sr_grid(Grid(lr.shape, aff))
    if sr2.shape == hr.shape and np.allclose(sr2.affine, hr.affine, atol=1e-3):
        return hr
    return sr


def index_map(src: Grid, dst: Grid) -> np.ndarray:
    """4x4 matrix mapping dst voxel indices (i, j, k) to src voxel indices."""
    return src.inverse @ dst.affine


def _zyx_transform(src: Grid, dst: Grid) -> tuple[np.ndarray, np.ndarray]:
    m = index_map(src, dst)
    # Snap float noise (1e-16 from inverting an oblique affine) to whole numbers: with mode "constant"
    # scipy returns cval for a point a hair beyond the last voxel, which dropped edge voxels when
    # resampling onto the same (or an integer-shifted) grid.
    near = np.abs(m - np.round(m)) < 1e-9
    m = np.where(near, np.round(m), m)
    return _REVERSE @ m[:3, :3] @ _REVERSE, _REVERSE @ m[:3, 3]


def resample(
    volume: np.ndarray,
    src: Grid,
    dst: Grid,
    order: int = 1,
    cval: float = 0.0,
    mode: str = "constant",
) -> np.ndarray:
    """Resample `volume` on `src` onto `dst` by world coordinates.

    `volume` is (Z, Y, X) or (T, Z, Y, X). order 0 = nearest (labels), 1 = linear, 3 = cubic B-spline.
    Points outside `src` get `cval` (mode="constant") or the nearest edge value (mode="nearest").
    """
    volume = np.asarray(volume)
    if volume.ndim == 4:
        return np.stack([resample(v, src, dst, order, cval, mode) for v in volume])
    if tuple(volume.shape) != tuple(src.shape):
        raise ValueError(f"volume shape {volume.shape} does not match source grid {src.shape}")
    matrix, offset = _zyx_transform(src, dst)
    is_int = np.issubdtype(volume.dtype, np.integer) or volume.dtype == bool
    data = volume.astype(np.float32) if (is_int and order > 0) else volume
    out = ndimage.affine_transform(
        data, matrix, offset=offset, output_shape=tuple(dst.shape), order=order, mode=mode, cval=cval,
        prefilter=order > 1,
    )
    if is_int and order == 0:
        return out.astype(volume.dtype)
    return out


def resample_nearest_stack(volumes: np.ndarray, src: Grid, dst: Grid, cval: int = 0) -> np.ndarray:
    """`resample(v, src, dst, order=0)` of every volume of (T, Z, Y, X) `volumes` (labels), the same
    voxels: the nearest-voxel map is found once (`resample` of the source voxels' flat indices, exact in
    float64) and every phase is gathered through it; ~10x faster than one resampling per phase."""
    volumes = np.asarray(volumes)
    if volumes.ndim != 4 or tuple(volumes.shape[1:]) != tuple(src.shape):
        raise ValueError(f"volumes {volumes.shape} do not match source grid {src.shape}")
    index = np.arange(int(np.prod(src.shape)), dtype=np.float64).reshape(src.shape)
    idx = resample(index, src, dst, order=0, cval=-1.0).astype(np.int64).ravel()
    out = volumes.reshape(len(volumes), -1)[:, np.maximum(idx, 0)]
    out[:, idx < 0] = cval
    return out.reshape(len(volumes), *dst.shape)


def inplane_nearest(volumes: np.ndarray, src: Grid, dst: Grid, cval: int = 0) -> np.ndarray:
    """Nearest-voxel resampling of (..., D, H, W) `volumes` (labels) from `src` to `dst`, two grids of one
    stack that differ only in-plane (the same slices and orientation, other in-plane spacing or extent:
    `sr_grid(lr, inplane_mm=...)` for two spacings); voxels of `dst` outside `src` get `cval`. One gather
    per axis instead of a 3D resampling; ValueError for grids that are not so related."""
    volumes = np.asarray(volumes)
    if tuple(volumes.shape[-3:]) != tuple(src.shape):
        raise ValueError(f"volumes {volumes.shape} do not match source grid {src.shape}")
    m = index_map(src, dst)  # dst (i, j, k) -> src (i, j, k)
    diag = np.diag(np.diag(m[:3, :3]))
    if (src.shape[0] != dst.shape[0] or not np.allclose(m[:3, :3], diag, atol=1e-6)
            or not np.isclose(m[2, 2], 1.0, atol=1e-6) or not np.isclose(m[2, 3], 0.0, atol=1e-4)):
        raise ValueError("the grids differ by more than their in-plane sampling")
    ix, iy = (np.floor(m[a, a] * np.arange(n) + m[a, 3] + 0.5).astype(np.int64)
              for a, n in ((0, dst.shape[2]), (1, dst.shape[1])))
    okx, oky = (ix >= 0) & (ix < src.shape[2]), (iy >= 0) & (iy < src.shape[1])
    out = volumes[..., np.clip(iy, 0, src.shape[1] - 1)[:, None], np.clip(ix, 0, src.shape[2] - 1)[None, :]]
    if not (okx.all() and oky.all()):
        out[..., ~(oky[:, None] & okx[None, :])] = cval
    return out


LABEL_SMOOTH_MM = 1.75  # sd of the in-plane Gaussian on the class indicators in `labels_onto_slices`


def labels_onto_slices(labels: np.ndarray, src: Grid, dst: Grid, shifts_mm: np.ndarray | None = None,
                       smooth_mm: float = LABEL_SMOOTH_MM) -> np.ndarray:
    """Label volumes (T, D, H, W) on `src` (the SR grid) onto the slices of `dst` (T, Z, Y, X; the acquired
    stack), with boundaries between pixels. Each `dst` pixel p of slice k is looked up at world(p) - shift_k
    (`shifts_mm` (Z, 2) mm along `dst`'s i and j axes, the slice misalignment convention of `core.motion`;
    None = no shift) on the `src` slice nearest to it through-plane: every class's indicator on that slice,
    smoothed in-plane by a Gaussian of sd `smooth_mm` (0: none), is interpolated linearly at the pixel, and
    the pixel takes the largest (the first on ties). Nearest-neighbour resampling moves each boundary by up to
    half a `src` pixel towards the nearest `src` pixel centre and keeps the pixel staircase; here the
    boundary runs between the `src` pixels, smoothed over about `smooth_mm` (docs/pipeline.md: measured on
    ACDC folds). Pixels outside `src` get 0. Labels are uint8 class indices."""
    labels = np.asarray(labels)
    if labels.ndim != 4 or tuple(labels.shape[1:]) != tuple(src.shape):
        raise ValueError(f"labels {labels.shape} do not match source grid {src.shape}")
    nt = len(labels)
    nz, ny, nx = dst.shape
    out = np.zeros((nt, nz, ny, nx), np.uint8)
    d, h, w = src.shape
    sigma = (0.0, smooth_mm / float(src.spacing[1]), smooth_mm / float(src.spacing[0]))
    margin = 2 + int(math.ceil(3.0 * max(sigma)))  # background around the labels, beyond the Gaussian's reach
    jj, ii = np.meshgrid(np.arange(ny, dtype=np.float64), np.arange(nx, dtype=np.float64), indexing="ij")
    dirs = dst.directions
    for k in range(nz):
        idx = np.stack([ii.ravel(), jj.ravel(), np.full(ii.size, float(k))], axis=1)
        world = dst.index_to_world(idx)
        if shifts_mm is not None:
            world = world - dirs[:, :2] @ np.asarray(shifts_mm[k], np.float64)
        s = src.world_to_index(world)  # (N, 3): column, row, slice of `src`
        kz = np.floor(s[:, 2] + 0.5).astype(np.int64)
        ok = (kz >= 0) & (kz < d) & (s[:, 0] > -0.5) & (s[:, 0] < w - 0.5) & (s[:, 1] > -0.5) & (s[:, 1] < h - 0.5)
        flat = out[:, k].reshape(nt, -1)
        for z in np.unique(kz[ok]):
            planes = labels[:, z]
            present = planes.any(axis=0)
            if not present.any():
                continue
            rows, cols = np.flatnonzero(present.any(axis=1)), np.flatnonzero(present.any(axis=0))
            y0, y1 = max(0, rows[0] - margin), min(h, rows[-1] + margin + 1)
            x0, x1 = max(0, cols[0] - margin), min(w, cols[-1] + margin + 1)
            pix = np.flatnonzero(ok & (kz == z) & (s[:, 1] > y0 - 0.5) & (s[:, 1] < y1 - 0.5)
                                 & (s[:, 0] > x0 - 0.5) & (s[:, 0] < x1 - 0.5))
            if len(pix):
                flat[:, pix] = _labels_at(planes[:, y0:y1, x0:x1], s[pix, 1] - y0, s[pix, 0] - x0, sigma)
    return out


def _labels_at(crop: np.ndarray, y: np.ndarray, x: np.ndarray, sigma: tuple[float, float, float]) -> np.ndarray:
    """(T, N) labels of the label maps `crop` (T, h, w) at the fractional (row, column) positions `y`, `x`:
    the argmax over classes of each class indicator smoothed by `sigma` (per axis, pixels) and interpolated
    bilinearly (positions clamped to the pixel centres at the edges)."""
    nt, h, w = crop.shape
    yy, xx = np.clip(y, 0, h - 1), np.clip(x, 0, w - 1)
    fy, fx = np.minimum(yy.astype(np.int64), max(h - 2, 0)), np.minimum(xx.astype(np.int64), max(w - 2, 0))
    wy, wx = (yy - fy).astype(np.float32), (xx - fx).astype(np.float32)
    fy1, fx1 = np.minimum(fy + 1, h - 1), np.minimum(fx + 1, w - 1)
    corners = ((fy, fx, (1 - wy) * (1 - wx)), (fy1, fx, wy * (1 - wx)), (fy, fx1, (1 - wy) * wx), (fy1, fx1, wy * wx))
    best = np.full((nt, len(y)), -1.0, np.float32)
    lab = np.zeros((nt, len(y)), np.uint8)
    for c in np.unique(crop):
        p = (crop == c).astype(np.float32)
        if max(sigma) > 0:
            p = ndimage.gaussian_filter(p, sigma, truncate=3.0)
        v = sum(p[:, a, b] * wt for a, b, wt in corners)
        take = v > best
        lab[take] = c
        np.maximum(best, v, out=best)
    return lab


def nearest_slice_indices(lr: Grid, sr: Grid) -> np.ndarray:
    """For each SR slice, the index of the LR slice whose slab contains the SR slice centre (clipped)."""
    k = lr.world_to_index(sr.slice_centres())[:, 2]
    return np.clip(np.floor(k + 0.5), 0, lr.shape[0] - 1).astype(np.int64)


def inplane_coords(lr: Grid, sr: Grid, shifts_mm: np.ndarray | None = None
                   ) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """For each LR slice k: (y, x, outside), the LR in-plane pixel coordinates (H_sr, W_sr) float64 of the
    SR in-plane positions of the SR slice nearest to it (k fixed), and where they fall beyond the LR field
    of view (more than half an LR pixel outside the edge pixel centres): `inplane_resample`'s sampling.
    `shifts_mm` (Z, 2): per-slice in-plane shifts (mm along the LR grid's i and j axes) to undo, as
    `core.motion.apply_shifts` does: slice k is sampled at p + shift_k (the field of view, `outside`, stays
    the acquired one; positions moved beyond the edge take the edge values)."""
    _, h, w = sr.shape
    ny, nx = lr.shape[1:]
    m = index_map(lr, sr)
    jj, ii = np.meshgrid(np.arange(h, dtype=np.float64), np.arange(w, dtype=np.float64), indexing="ij")
    # SR slice whose centre is closest to each LR slice centre (for the in-plane coordinates).
    k_sr = sr.world_to_index(lr.slice_centres())[:, 2]
    coords = []
    d = None if shifts_mm is None else shifts_in_pixels(shifts_mm, lr)
    for k in range(lr.shape[0]):
        ks = float(np.clip(k_sr[k], 0, sr.shape[0] - 1))
        x = m[0, 0] * ii + m[0, 1] * jj + m[0, 2] * ks + m[0, 3]
        y = m[1, 0] * ii + m[1, 1] * jj + m[1, 2] * ks + m[1, 3]
        outside = ~((y >= -0.5) & (y <= ny - 0.5) & (x >= -0.5) & (x <= nx - 0.5))
        if d is not None and (d[k] != 0).any():
            x, y = x + d[k, 0], y + d[k, 1]
        coords.append((y, x, outside))
    return coords


def shifts_in_pixels(shifts_mm: np.ndarray, grid: Grid) -> np.ndarray:
    """Per-slice in-plane shifts (Z, 2), mm along the grid's i and j axes -> pixels (di, dj); a shift
    array that does not have one row per slice of `grid` is refused."""
    s = np.asarray(shifts_mm, np.float64)
    if s.shape != (grid.shape[0], 2):
        raise ValueError(f"shifts of shape {s.shape} for a stack of {grid.shape[0]} slices (expected ({grid.shape[0]}, 2))")
    return s / np.asarray(grid.spacing[:2], np.float64)[None]


def inplane_resample(volume: np.ndarray, lr: Grid, sr: Grid, order: int = 1,
                     shifts_mm: np.ndarray | None = None) -> np.ndarray:
    """Resample every LR slice in-plane onto the SR in-plane grid: (Z_lr, Y, X) -> (Z_lr, H_sr, W_sr), or
    (T, Z_lr, Y, X) -> (T, Z_lr, H_sr, W_sr).

    Each LR slice k is sampled at the SR in-plane positions of the SR slice nearest to it, keeping
    k fixed, so no content is interpolated through-plane. Positions inside the LR field of view (within
    half an LR pixel of the edge pixel centres, where the SR grid's first and last rows and columns fall)
    take the nearest edge value; positions beyond it are 0. (Zero there, as `mode="constant"` gave, left
    the SR grid's edge rows black: about 1 dB of PSNR on the phantoms.) `shifts_mm`: `inplane_coords`'s.
    """
    volume = np.asarray(volume)
    single = volume.ndim == 3
    vols = volume[None] if single else volume  # (T, Z, Y, X)
    nt, nz = vols.shape[:2]
    _, h, w = sr.shape
    is_int = np.issubdtype(vols.dtype, np.integer) or vols.dtype == bool
    src = vols.astype(np.float32) if (is_int and order > 0) else vols
    out = np.empty((nt, nz, h, w), dtype=vols.dtype if (order == 0 or not is_int) else np.float32)
    ny, nx = vols.shape[-2:]
    coords = inplane_coords(Grid((nz, ny, nx), lr.affine), sr, shifts_mm)
    if order == 1 and src.dtype == np.float32 and ny > 1 and nx > 1:
        _bilinear_slices(src, coords, out)
    else:
        for k, (y, x, _) in enumerate(coords):
            for t in range(nt):
                ndimage.map_coordinates(src[t, k], [y, x], output=out[t, k], order=order, mode="nearest",
                                        prefilter=order > 1)
    for k, (_, _, outside) in enumerate(coords):
        if outside.any():
            out[:, k][:, outside] = 0
    return out[0] if single else out


def sampling_grid(coords: list, ny: int, nx: int) -> np.ndarray:
    """`inplane_coords` -> (Z, H, W, 2) float32 `grid_sample` grid (x, y in [-1, 1], align_corners=True)."""
    return np.stack([np.stack([x / (nx - 1) * 2 - 1, y / (ny - 1) * 2 - 1], -1)
                     for y, x, _ in coords]).astype(np.float32)


def _bilinear_slices(src: np.ndarray, coords: list, out: np.ndarray) -> None:
    """Bilinear in-plane sampling of every phase of every LR slice in one `torch.grid_sample` call (edge
    values beyond the last pixel centres, like `map_coordinates(order=1, mode="nearest")`; ~5x faster on
    two cores than one map_coordinates call per slice and phase)."""
    import torch

    inp = torch.from_numpy(np.ascontiguousarray(src.transpose(1, 0, 2, 3)))  # (Z, T, Y, X)
    out[:] = _sample_planes(inp, coords).numpy().transpose(1, 0, 2, 3)


def _sample_planes(inp, coords: list):
    """(Z, T, Y, X) float tensor -> (Z, T, H, W): every LR slice bilinearly sampled at its `inplane_coords`
    in one `grid_sample` call on the tensor's device (edge values beyond the last pixel centres)."""
    import torch
    from torch.nn.functional import grid_sample

    grid = torch.from_numpy(sampling_grid(coords, *inp.shape[-2:])).to(inp.device)
    return grid_sample(inp, grid, mode="bilinear", padding_mode="border", align_corners=True)


def place_on_sr_grid(volume: np.ndarray, lr: Grid, sr: Grid, order: int = 1,
                     out: np.ndarray | None = None, shifts_mm: np.ndarray | None = None) -> np.ndarray:
    """Nearest-slice placement (spec section 2): LR (Z, Y, X) or (T, Z, Y, X) -> SR (D, H, W) / (T, D, H, W).

    The LR stack is resampled in-plane to the SR in-plane grid, and every SR slice takes the LR slice
    whose slab contains it: the network sees only acquired data. `out`: an array of the result's shape
    (e.g. rows of the cine's SR image) to place it into, converted to its type, and returned.
    `shifts_mm` (Z, 2): per-slice shifts undone in the same resampling (`inplane_coords`): the placement
    of the motion-corrected stack with one interpolation instead of two.
    """
    idx = nearest_slice_indices(lr, sr)
    planes = inplane_resample(volume, lr, sr, order, shifts_mm)
    if out is None:
        return planes[..., idx, :, :]
    if out.shape != planes.shape[:-3] + (len(idx),) + planes.shape[-2:]:
        raise ValueError(f"out has shape {out.shape}, the placed stack {planes.shape[:-3] + (len(idx),) + planes.shape[-2:]}")
    if out.dtype == planes.dtype:
        np.take(planes, idx, axis=-3, out=out, mode="clip")  # "clip": no buffered copy (idx are in range)
    else:
        out[...] = planes[..., idx, :, :]
    return out


def place_on_sr_grid_torch(volume, lr: Grid, sr: Grid, shifts_mm: np.ndarray | None = None):
    """`place_on_sr_grid` (order 1, `shifts_mm` as there) of a float torch tensor (T, Z, Y, X) on its own
    device (the GPU predictor: the LR cine goes to the device, not the 5x larger stack placed on the SR
    grid) -> (T, D, H, W) float32 on that device. Same sampling (one `grid_sample`, edge values, zero beyond
    the field of view); the same numbers as the NumPy path up to the device's float rounding."""
    import torch

    dev = volume.device
    ny, nx = volume.shape[-2:]
    if ny < 2 or nx < 2:
        raise ValueError("device placement needs at least 2 x 2 LR pixels (use place_on_sr_grid)")
    coords = inplane_coords(lr, sr, shifts_mm)
    planes = _sample_planes(volume.float().transpose(0, 1), coords)  # (Z, T, H, W)
    outside = torch.from_numpy(np.stack([o for _, _, o in coords])).to(dev)  # (Z, H, W)
    planes = planes.masked_fill(outside[:, None], 0)
    idx = torch.from_numpy(nearest_slice_indices(lr, sr)).to(dev)
    return planes.index_select(0, idx).transpose(0, 1).contiguous()  # (T, D, H, W)


# --- rigid transforms --------------------------------------------------------------------------------
def kabsch(source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Least-squares rigid transform (4x4) mapping `source` points (N, 3) onto `target` (N, 3).

    SVD of the cross-covariance with the reflection fix (det = +1), no scaling.
    """
    p = np.asarray(source, dtype=np.float64)
    q = np.asarray(target, dtype=np.float64)
    if p.shape != q.shape or p.ndim != 2 or p.shape[1] != 3 or p.shape[0] < 3:
        raise ValueError("kabsch needs two (N, 3) point sets with N >= 3")
    pc, qc = p.mean(0), q.mean(0)
    h = (p - pc).T @ (q - qc)
    u, _, vt = np.linalg.svd(h)
    d = np.sign(np.linalg.det(vt.T @ u.T))
    r = vt.T @ np.diag([1.0, 1.0, d]) @ u.T
    t = np.eye(4)
    t[:3, :3] = r
    t[:3, 3] = qc - r @ pc
    return t


def apply_transform(points: np.ndarray, transform: np.ndarray) -> np.ndarray:
    points = np.asarray(points, dtype=np.float64)
    return points @ transform[:3, :3].T + transform[:3, 3]


def rotation_matrix(axis: np.ndarray, angle_deg: float) -> np.ndarray:
    """3x3 rotation about a unit `axis` by `angle_deg` (Rodrigues)."""
    a = np.asarray(axis, dtype=np.float64)
    a = a / np.linalg.norm(a)
    th = math.radians(angle_deg)
    k = np.array([[0, -a[2], a[1]], [a[2], 0, -a[0]], [-a[1], a[0], 0]])
    return np.eye(3) + math.sin(th) * k + (1 - math.cos(th)) * (k @ k)


def transformed_grid(grid: Grid, transform: np.ndarray) -> Grid:
    """The grid moved by a world-space rigid `transform` (4x4)."""
    return Grid(grid.shape, transform @ grid.affine)
