"""Long-axis reformats of a short-axis stack (pure numpy/scipy, no GUI).

- `long_axis(labels, grid)`: the LV long axis estimated from a label volume (centroid line of the LV
  through the slices, oriented base -> apex), plus the RV centroid used to orient the views.
- `standard_planes(axis, extent_grid)`: a 4-chamber-like plane (through the LV long axis and the RV
  centre) and a 2-chamber-like plane (through the long axis, perpendicular to the first).
- `plane_through_line(p0, p1, grid)`: the oblique plane through a line drawn on a short-axis slice,
  perpendicular to that slice.
- `sample_plane(volume, grid, plane)`: world-coordinate resampling of a (Z, Y, X) volume on a plane,
  like `core.geometry.resample`; `nearest_slices=True` keeps each slice's slab (no through-plane
  interpolation), which shows a thick-slice stack as the staircase it is.

Planes are displayed with rows along `v` and columns along `u`; long-axis planes put the apex up.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from gemini_cmr.core.study import Grid

LV_LABELS = (1, 2)
RV_LABEL = 3


@dataclass(frozen=True)
class Plane:
    """A bounded plane in world mm: centre `origin`, unit column direction `u`, unit row direction `v`."""

    origin: np.ndarray
    u: np.ndarray
    v: np.ndarray
    half_width: float
    half_height: float

    @property
    def normal(self) -> np.ndarray:
        n = np.cross(self.u, self.v)
        return n / np.linalg.norm(n)

    def shape(self, spacing_mm: float) -> tuple[int, int]:
        """(rows, columns) of a sampling at `spacing_mm`."""
        return (
            max(1, int(round(2 * self.half_height / spacing_mm))),
            max(1, int(round(2 * self.half_width / spacing_mm))),
        )

    def points(self, spacing_mm: float) -> np.ndarray:
        """World coordinates (rows, columns, 3) of the sample centres at `spacing_mm`."""
        h, w = self.shape(spacing_mm)
        s = (np.arange(w) - (w - 1) / 2) * spacing_mm
        t = (np.arange(h) - (h - 1) / 2) * spacing_mm
        return self.origin + t[:, None, None] * self.v + s[None, :, None] * self.u

    def to_plane(self, xyz: np.ndarray) -> np.ndarray:
        """World points (..., 3) -> in-plane (s, t) mm from the centre along (u, v)."""
        d = np.asarray(xyz, dtype=np.float64) - self.origin
        return np.stack([d @ self.u, d @ self.v], axis=-1)

    def to_world(self, st: np.ndarray) -> np.ndarray:
        """In-plane (..., 2) (s, t) mm -> world points (..., 3)."""
        st = np.asarray(st, dtype=np.float64)
        return self.origin + st[..., :1] * self.u + st[..., 1:2] * self.v


@dataclass(frozen=True)
class LongAxis:
    """The LV long axis in world mm: `direction` is a unit vector from `base` to `apex`."""

    centre: np.ndarray
    direction: np.ndarray
    base: np.ndarray
    apex: np.ndarray
    rv_centre: np.ndarray | None

    @property
    def length_mm(self) -> float:
        return float(np.linalg.norm(self.apex - self.base))


def _unit(v: np.ndarray) -> np.ndarray:
    v = np.asarray(v, dtype=np.float64)
    n = np.linalg.norm(v)
    if n < 1e-12:
        raise ValueError("zero-length direction")
    return v / n


def _perpendicular(v: np.ndarray, axis: np.ndarray) -> np.ndarray | None:
    """Component of `v` perpendicular to unit `axis`, normalised; None if (almost) parallel."""
    p = v - np.dot(v, axis) * axis
    n = np.linalg.norm(p)
    return None if n < 1e-6 else p / n


def long_axis(
    labels: np.ndarray, grid: Grid, lv_labels: tuple[int, ...] = LV_LABELS, rv_label: int = RV_LABEL,
    max_tilt_deg: float = 45.0,
) -> LongAxis:
    """Estimate the LV long axis from a (Z, Y, X) label volume on `grid`.

    The axis passes through the LV centroid along the principal axis of the LV (cavity + myocardium:
    the long axis of a truncated ellipsoid, where per-slice centroids of a tilted LV would lie on a
    conjugate diameter instead). When the LV is not clearly elongated, the line through the per-slice
    centroids is used; when that is tilted more than `max_tilt_deg` from the slice normal (short-axis
    stacks are planned perpendicular to the long axis) or there are too few slices, the slice normal.
    The axis points from the base (larger LV cross-sections) to the apex. Raises ValueError without LV.
    """
    labels = np.asarray(labels)
    if labels.shape != tuple(grid.shape):
        raise ValueError(f"labels shape {labels.shape} does not match grid {grid.shape}")
    lv = np.isin(labels, lv_labels)
    if not lv.any():
        raise ValueError("no LV in the segmentation")
    normal = grid.normal
    kk, jj, ii = np.nonzero(lv)
    pts = grid.index_to_world(np.stack([ii, jj, kk], axis=-1))
    centroid = pts.mean(axis=0)

    areas = np.bincount(kk, minlength=grid.shape[0]).astype(np.float64)
    slices = np.nonzero(areas)[0]
    cents = np.array([pts[kk == k].mean(axis=0) for k in slices])

    def tilt_ok(d: np.ndarray) -> bool:
        return np.degrees(np.arccos(np.clip(abs(np.dot(d, normal)), -1, 1))) <= max_tilt_deg

    direction = normal
    # 1) principal axis of the filled LV (cavity + myocardium), when the LV is clearly elongated;
    # 2) else the line through the per-slice centroids; 3) else the slice normal.
    evals, evecs = np.linalg.eigh(np.cov((pts - centroid).T))
    principal = evecs[:, 2]
    if len(slices) >= 2 and evals[2] > 1.3 * evals[1] and tilt_ok(principal):
        direction = principal
    elif len(slices) >= 3:
        c0 = cents.mean(axis=0)
        _, _, vt = np.linalg.svd(cents - c0)
        if tilt_ok(vt[0]):
            direction = vt[0]
    direction = direction if np.dot(direction, normal) >= 0 else -direction
    # Base -> apex: the LV is widest at the base, so the area-weighted position lies on the base side.
    t = (cents - centroid) @ direction
    w = areas[slices]
    if len(slices) >= 2 and np.dot(w, t) / w.sum() > t.mean():
        direction = -direction
    proj = (pts - centroid) @ direction
    base = centroid + proj.min() * direction
    apex = centroid + proj.max() * direction

    rv_centre = None
    rv = labels == rv_label
    if rv.any():
        kr, jr, ir = np.nonzero(rv)
        rv_centre = grid.index_to_world(np.stack([ir, jr, kr], axis=-1)).mean(axis=0)
    return LongAxis(centre=(base + apex) / 2, direction=_unit(direction), base=base, apex=apex,
                    rv_centre=rv_centre)


def _extent(origin: np.ndarray, u: np.ndarray, v: np.ndarray, grid: Grid, margin_mm: float) -> tuple[float, float]:
    """Half width/height of a plane (origin, u, v) covering the outer corners of `grid`."""
    d = grid.corners() - origin
    return float(np.abs(d @ u).max() + margin_mm), float(np.abs(d @ v).max() + margin_mm)


def standard_planes(axis: LongAxis, extent_grid: Grid, margin_mm: float = 5.0) -> dict[str, Plane]:
    """The 4-chamber-like and 2-chamber-like planes through `axis`, covering `extent_grid`.

    Both contain the long axis (rows run apex -> base, so the apex is at the top). The 4-chamber-like
    plane also contains the RV centre, shown on the left; the 2-chamber-like plane is perpendicular to it.
    Without an RV, the grid's column direction stands in for the septal direction.
    """
    a = axis.direction
    side = None
    if axis.rv_centre is not None:
        side = _perpendicular(axis.rv_centre - axis.centre, a)
    if side is None:
        side = _perpendicular(extent_grid.directions[:, 0], a)
    if side is None:
        side = _perpendicular(extent_grid.directions[:, 1], a)
    v = -a
    u4 = -side  # the RV (at +side) appears at the left of the image
    u2 = _unit(np.cross(v, u4))
    planes = {}
    for name, u in (("4ch", u4), ("2ch", u2)):
        hw, hh = _extent(axis.centre, u, v, extent_grid, margin_mm)
        planes[name] = Plane(origin=axis.centre.copy(), u=u, v=v, half_width=hw, half_height=hh)
    return planes


def plane_through_line(
    p0: np.ndarray, p1: np.ndarray, grid: Grid, axis: LongAxis | None = None, margin_mm: float = 5.0
) -> Plane:
    """The oblique plane through the world segment p0 -> p1 (drawn on a short-axis slice of `grid`),
    perpendicular to the slices; centred on the segment's midpoint moved to the middle of the stack.
    Rows run along the slice normal, oriented apex-up when `axis` is known.
    """
    p0 = np.asarray(p0, dtype=np.float64)
    p1 = np.asarray(p1, dtype=np.float64)
    n = grid.normal
    u = _perpendicular(p1 - p0, n)
    if u is None:
        raise ValueError("the oblique line needs two distinct in-plane points")
    v = -n
    if axis is not None and np.dot(v, axis.direction) > 0:
        v = n
    mid = (p0 + p1) / 2
    mid = mid + np.dot(grid.centre() - mid, n) * n
    hw, hh = _extent(mid, u, v, grid, margin_mm)
    return Plane(origin=mid, u=u, v=v, half_width=hw, half_height=hh)


def sample_plane(
    volume: np.ndarray, grid: Grid, plane: Plane, spacing_mm: float = 1.0, order: int = 1,
    nearest_slices: bool = False, cval: float = 0.0,
) -> np.ndarray:
    """Sample a (Z, Y, X) `volume` on `grid` at the plane's points: (rows, columns).

    order 0 = nearest (labels), 1 = linear. `nearest_slices` rounds the slice coordinate first, so each
    acquired slice keeps its slab thickness and nothing is interpolated between slices. Points outside
    the volume get `cval`. Integer volumes sampled with order 0 keep their dtype.
    """
    from scipy import ndimage  # lazy: keeps the app's start-up fast

    volume = np.asarray(volume)
    if volume.shape != tuple(grid.shape):
        raise ValueError(f"volume shape {volume.shape} does not match grid {grid.shape}")
    ijk = grid.world_to_index(plane.points(spacing_mm))
    k = np.floor(ijk[..., 2] + 0.5) if nearest_slices else ijk[..., 2]
    coords = np.stack([k, ijk[..., 1], ijk[..., 0]])
    is_int = np.issubdtype(volume.dtype, np.integer) or volume.dtype == bool
    data = volume.astype(np.float32) if (is_int and order > 0) else volume
    out = ndimage.map_coordinates(data, coords, order=order, mode="constant", cval=cval, prefilter=order > 1)
    return out.astype(volume.dtype) if (is_int and order == 0) else out


def plane_slice_line(plane: Plane, grid: Grid, k: float) -> tuple[np.ndarray, np.ndarray] | None:
    """Where `plane` cuts slice `k` of `grid`: two world points spanning the plane's width, or None if
    the plane is parallel to the slices."""
    n = grid.normal
    d = np.cross(plane.normal, n)
    if np.linalg.norm(d) < 1e-6:
        return None
    d /= np.linalg.norm(d)
    q = grid.index_to_world(np.array([0.0, 0.0, k]))
    # A point on both planes: solve for x = origin + a*u + b*v with n.(x - q) = 0 along the plane's
    # direction that leaves the slice fastest.
    w = _perpendicular(n, plane.normal)
    if w is None:
        return None
    s = np.dot(q - plane.origin, n) / np.dot(w, n)
    p = plane.origin + s * w
    half = max(plane.half_width, plane.half_height)
    return p - half * d, p + half * d
