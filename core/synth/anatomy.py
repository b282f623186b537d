"""A parametric beating heart in its thorax, evaluated analytically at world coordinates.

The anatomy is a set of implicit shapes (truncated ellipsoids, elliptic cylinders) in two frames:

- the **heart frame** (u, v, w): w runs along the LV long axis from apex to base (w = 0 is the LV base
  plane at end-diastole, ED), u points from the septum to the LV lateral wall (the RV lies at -u),
  v = w x u. Its axes are the columns of `HeartParams.rotation` and its origin is `HeartParams.origin`
  (world RAS+ mm);
- the **world frame** for the static surroundings (body outline, subcutaneous fat, chest-wall muscle,
  lungs, liver under the diaphragm dome, spine, descending aorta), placed relative to the heart.

Shapes are evaluated at any world points, so the same phantom can be sampled on the HR grid, on the
sub-slices of a thick LR slice, or on a fine grid for volumes. Evaluation returns *tissue classes*
(`Tissue`), richer than the label convention; `TISSUE_TO_LABEL` maps them to labels
0 background, 1 LV cavity, 2 LV myocardium, 3 RV cavity (papillary muscles count as LV cavity, the RV
free wall and the atria as background, as in the UK Digital Heart label maps).

Motion: the LV cavity volume follows a smooth curve `volume_curve` (ED at phase 0, ES at a drawn
fraction of the cycle). The cavity shrinks radially and longitudinally (the apex stays put, the base
descends), the myocardium keeps its volume (so the wall thickens in systole), the RV free wall moves
towards the septum so that the RV ejection fraction is met at ES.

Per-subject parameters are drawn from `ANATOMY_RANGES` (documented there and in docs/phantoms.md).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from enum import IntEnum

import numpy as np


class Tissue(IntEnum):
    """Tissue classes painted by the phantom (uint8 values)."""

    AIR = 0
    LV_BLOOD = 1
    LV_MYO = 2
    RV_BLOOD = 3
    PAPILLARY = 4  # myocardial signal, labelled LV cavity
    RV_WALL = 5  # myocardial signal, label 0
    ATRIAL_BLOOD = 6  # blood signal, label 0
    FAT = 7
    LUNG = 8
    MUSCLE = 9
    LIVER = 10
    SOFT = 11  # mediastinum, stomach/spleen, generic soft tissue
    VESSEL = 12  # aorta: blood signal, label 0
    BONE = 13  # vertebral body (marrow)


N_TISSUES = len(Tissue)

#: tissue class -> label (0 bg, 1 LV cavity, 2 LV myocardium, 3 RV cavity)
TISSUE_TO_LABEL = np.zeros(N_TISSUES, dtype=np.uint8)
TISSUE_TO_LABEL[Tissue.LV_BLOOD] = 1
TISSUE_TO_LABEL[Tissue.PAPILLARY] = 1
TISSUE_TO_LABEL[Tissue.LV_MYO] = 2
TISSUE_TO_LABEL[Tissue.RV_BLOOD] = 3


# --- per-subject parameter ranges --------------------------------------------------------------------
#: Uniform ranges (low, high) from which every subject's parameters are drawn. Lengths in mm (multiplied
#: by a domain's `size_scale`), angles in degrees, fractions in [0, 1]. The resulting volumes (documented
#: in docs/phantoms.md, size_scale 1): LV EDV about 74-176 mL, LV mass about 59-122 g, RV EDV about 77-190 mL.
ANATOMY_RANGES: dict[str, tuple[float, float]] = {
    # LV cavity at ED: truncated ellipsoid with semi-axes a (septal-lateral), b = a * ellipticity, c (long)
    "lv_radius_mm": (22.0, 28.0),
    "lv_ellipticity": (0.88, 1.08),
    "lv_half_length_mm": (62.0, 80.0),
    # base plane height above the ellipsoid centre, as a fraction of c (0 = half ellipsoid)
    "lv_base_truncation": (0.10, 0.25),
    # ED wall thickness at the mid-ventricle; the apex is thinner (ratio); ES thickness follows from
    # conservation of myocardial volume (about 8-13 mm)
    "lv_wall_mm": (6.0, 8.0),
    "apex_wall_ratio": (0.6, 0.85),
    # ejection fractions
    "lv_ef": (0.45, 0.70),
    "rv_ef": (0.45, 0.65),
    # share of the LV volume change taken by long-axis shortening (rest is radial)
    "long_axis_share": (0.20, 0.35),
    # RV crescent: free-wall-to-septum width at ED, angle of the insertion points from the septal
    # direction, length relative to the LV, free-wall thickness, base above the LV base
    "rv_width_mm": (26.0, 36.0),
    "rv_insertion_deg": (80.0, 100.0),
    "rv_length_ratio": (0.78, 0.92),
    "rv_wall_mm": (2.5, 4.0),
    "rv_base_offset_mm": (0.0, 6.0),
    # epicardial fat shell thickness
    "fat_mm": (1.5, 4.0),
    # papillary muscle radius
    "papillary_mm": (3.0, 4.5),
    # irregular (trabeculated) endocardium: relative amplitude of angular harmonics 3-7 of the cavity
    "endo_roughness": (0.03, 0.07),
    # timing: ES at this fraction of the cycle; heart rate for phase times
    "es_fraction": (0.35, 0.40),
    "heart_rate_bpm": (55.0, 80.0),
    # long-axis orientation: apex direction = azimuth in the axial plane from anterior towards the
    # patient's left, elevation below the axial plane; roll of the septum about the long axis
    "la_azimuth_deg": (35.0, 55.0),
    "la_elevation_deg": (15.0, 35.0),
    "septum_roll_deg": (-15.0, 15.0),
    # thorax
    "body_half_width_mm": (150.0, 175.0),
    "body_half_depth_mm": (100.0, 120.0),
    "subcutaneous_fat_mm": (8.0, 20.0),
    "chest_muscle_mm": (8.0, 14.0),
    "heart_left_of_midline_mm": (20.0, 40.0),
}


def _draw(rng: np.random.Generator, name: str, ranges: dict[str, tuple[float, float]]) -> float:
    lo, hi = ranges[name]
    return float(rng.uniform(lo, hi))


@dataclass
class HeartParams:
    """Everything that defines one phantom subject (mm, degrees, fractions)."""

    origin: np.ndarray  # world position of the LV base-plane centre at ED
    rotation: np.ndarray  # 3x3, columns = heart axes u, v, w in world
    lv_a: float
    lv_b: float
    lv_c: float
    lv_beta: float
    lv_wall: float
    apex_wall_ratio: float
    lv_ef: float
    rv_ef: float
    long_axis_share: float
    rv_width: float
    rv_insertion_deg: float
    rv_length_ratio: float
    rv_wall: float
    rv_base_offset: float
    fat: float
    papillary: float
    es_fraction: float
    heart_rate_bpm: float
    body_centre: np.ndarray  # world (x, y) of the chest centre
    body_half_width: float
    body_half_depth: float
    subcutaneous_fat: float
    chest_muscle: float
    endo_roughness: float = 0.0
    # (n, 4): harmonic order, amplitude, phase (rad), twist along the long axis (rad/mm)
    endo_harmonics: np.ndarray = field(default_factory=lambda: np.zeros((0, 4)))
    extra: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        d = asdict(self)
        for k, v in d.items():
            if isinstance(v, np.ndarray):
                d[k] = v.tolist()
        return d


def sample_heart_params(
    rng: np.random.Generator,
    size_scale: float = 1.0,
    ranges: dict[str, tuple[float, float]] | None = None,
) -> HeartParams:
    """Draw one subject from `ranges` (default `ANATOMY_RANGES`); lengths are scaled by `size_scale`."""
    r = dict(ANATOMY_RANGES)
    if ranges:
        r.update(ranges)
    g = lambda name: _draw(rng, name, r)  # noqa: E731
    s = float(size_scale)
    a = g("lv_radius_mm") * s
    b = a * g("lv_ellipticity")
    c = g("lv_half_length_mm") * s
    # long axis: apex points left (-x), anterior (+y) and inferior (-z) in RAS
    az = math.radians(g("la_azimuth_deg"))
    el = math.radians(g("la_elevation_deg"))
    apex_dir = np.array([-math.sin(az) * math.cos(el), math.cos(az) * math.cos(el), -math.sin(el)])
    e_w = -apex_dir
    # RV lies to the patient's right and anterior of the LV: -u points there
    rv_dir = np.array([1.0, 0.7, 0.0])
    rv_dir -= e_w * np.dot(rv_dir, e_w)
    rv_dir /= np.linalg.norm(rv_dir)
    e_u = -rv_dir
    roll = math.radians(g("septum_roll_deg"))
    e_v = np.cross(e_w, e_u)
    e_u, e_v = math.cos(roll) * e_u + math.sin(roll) * e_v, -math.sin(roll) * e_u + math.cos(roll) * e_v
    rotation = np.stack([e_u, e_v, e_w], axis=1)
    # scanner-like world placement: heart near the isocentre, a little jitter
    origin = np.array([-10.0, 10.0, 20.0]) + rng.uniform(-15, 15, size=3)
    left = g("heart_left_of_midline_mm")
    lv_mid = origin - e_w * c * 0.6
    body_centre = np.array([lv_mid[0] + left, lv_mid[1] - 25.0 + rng.uniform(-8, 8)])
    return HeartParams(
        origin=origin,
        rotation=rotation,
        lv_a=a,
        lv_b=b,
        lv_c=c,
        lv_beta=g("lv_base_truncation"),
        lv_wall=g("lv_wall_mm") * s,
        apex_wall_ratio=g("apex_wall_ratio"),
        lv_ef=g("lv_ef"),
        rv_ef=g("rv_ef"),
        long_axis_share=g("long_axis_share"),
        rv_width=g("rv_width_mm") * s,
        rv_insertion_deg=g("rv_insertion_deg"),
        rv_length_ratio=g("rv_length_ratio"),
        rv_wall=g("rv_wall_mm") * s,
        rv_base_offset=g("rv_base_offset_mm") * s,
        fat=g("fat_mm"),
        papillary=g("papillary_mm") * s,
        es_fraction=g("es_fraction"),
        heart_rate_bpm=g("heart_rate_bpm"),
        body_centre=body_centre,
        body_half_width=g("body_half_width_mm") * s,
        body_half_depth=g("body_half_depth_mm") * s,
        subcutaneous_fat=g("subcutaneous_fat_mm"),
        chest_muscle=g("chest_muscle_mm"),
        endo_roughness=g("endo_roughness"),
        endo_harmonics=_harmonics(rng),
    )


def _harmonics(rng: np.random.Generator) -> np.ndarray:
    orders = np.arange(3, 8, dtype=np.float64)
    amps = rng.uniform(0.5, 1.0, size=len(orders))
    amps /= math.sqrt(float(np.sum(amps**2)))
    return np.stack([orders, amps, rng.uniform(0, 2 * np.pi, len(orders)), rng.uniform(-0.05, 0.05, len(orders))],
                    axis=1)


# --- the cardiac cycle -------------------------------------------------------------------------------
def _smoothstep(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3.0 - 2.0 * x)


def volume_curve(n_phases: int, ef: float, es_phase: int) -> np.ndarray:
    """Relative LV cavity volume V(t)/EDV for t = 0..n_phases-1: 1 at ED (phase 0), 1 - ef at `es_phase`.

    Ejection is a half cosine (zero slope at ED and ES); filling is a rapid early filling (75% of the
    stroke volume by 45% of diastole), diastasis, then the atrial kick; the curve is periodic and C1.
    """
    t = np.arange(n_phases, dtype=np.float64) / n_phases
    tes = es_phase / n_phases
    g = np.empty(n_phases)
    sys = t <= tes
    g[sys] = 1.0 - ef * (1.0 - np.cos(np.pi * t[sys] / tes)) / 2.0
    x = (t[~sys] - tes) / (1.0 - tes)
    recovered = 0.75 * _smoothstep(x / 0.45) + 0.25 * _smoothstep((x - 0.75) / 0.25)
    g[~sys] = (1.0 - ef) + ef * recovered
    return g


def es_phase_index(n_phases: int, es_fraction: float) -> int:
    return int(min(max(round(es_fraction * n_phases), 1), max(n_phases - 1, 1)))


def _trunc_ellipsoid_volume(a: float, b: float, c: float, h: float) -> float:
    """Volume (mm^3) of the ellipsoid with semi-axes a, b, c below the plane at height h (|h| < c)."""
    return math.pi * a * b * ((h + c) - (h**3 + c**3) / (3.0 * c * c))


@dataclass
class Frame:
    """Shape scalars of one phase, in the heart frame (mm)."""

    # LV: cavity semi-axes, outer (epicardial) semi-axes, ellipsoid centre and base plane along w
    a: float
    b: float
    c: float
    ao: float
    bo: float
    co: float
    w_centre: float
    w_base: float
    wall: float
    # RV cavity ellipsoid: centre at (u = -d, v = 0, w_rv), semi-axes (A, B, C); base plane
    d: float
    A: float
    B: float
    C: float
    w_rv: float
    w_rv_base: float
    # papillary muscles: radial position
    pap_r: float
    lv_volume_ml: float


class Phantom:
    """One beating-heart subject: `frames[t]` are the shape scalars of phase t."""

    def __init__(self, params: HeartParams, n_phases: int = 20):
        if n_phases < 2:
            raise ValueError("a cine phantom needs at least 2 phases")
        self.params = params
        self.n_phases = int(n_phases)
        self.es_phase = es_phase_index(self.n_phases, params.es_fraction)
        self.lv_curve = volume_curve(self.n_phases, params.lv_ef, self.es_phase)
        p = params
        self._apex_w = -(1.0 + p.lv_beta) * p.lv_c
        edv = _trunc_ellipsoid_volume(p.lv_a, p.lv_b, p.lv_c, p.lv_beta * p.lv_c)
        self.lv_edv_ml = edv / 1000.0
        outer = self._outer_volume(p.lv_a, p.lv_b, p.lv_c, p.lv_beta * p.lv_c, p.lv_wall)
        self.myo_volume_ml = (outer - edv) / 1000.0
        lv_frames = [self._lv_frame(g) for g in self.lv_curve]
        # RV free wall shortening factor s(t): s = 1 at ED, s_es at ES solves the RV EF
        self._rv_ed = self._rv_shape(lv_frames[0], 1.0)
        rv_edv = self._rv_volume(lv_frames[0], 1.0)
        target = rv_edv * (1.0 - p.rv_ef)
        lo, hi = 0.05, 1.0
        es = lv_frames[self.es_phase]
        for _ in range(14):
            mid = 0.5 * (lo + hi)
            if self._rv_volume(es, mid) > target:
                hi = mid
            else:
                lo = mid
        s_es = 0.5 * (lo + hi)
        self.rv_edv_ml = rv_edv / 1000.0
        self.frames: list[Frame] = []
        denom = max(1.0 - self.lv_curve[self.es_phase], 1e-6)
        for g, lvf in zip(self.lv_curve, lv_frames):
            s = 1.0 - (1.0 - s_es) * (1.0 - g) / denom
            self.frames.append(self._rv_shape(lvf, s))

    # --- LV ----------------------------------------------------------------------------------------
    def _outer_volume(self, a, b, c, h, wall):
        return _trunc_ellipsoid_volume(a + wall, b + wall, c + self.params.apex_wall_ratio * wall, h)

    def _lv_frame(self, g: float) -> dict:
        p = self.params
        k_long = g ** p.long_axis_share
        k_rad = g ** ((1.0 - p.long_axis_share) / 2.0)
        a, b, c = p.lv_a * k_rad, p.lv_b * k_rad, p.lv_c * k_long
        h = p.lv_beta * c
        cav = _trunc_ellipsoid_volume(a, b, c, h)
        target = cav + self.myo_volume_ml * 1000.0
        lo, hi = 0.5, 40.0
        for _ in range(40):
            mid = 0.5 * (lo + hi)
            if self._outer_volume(a, b, c, h, mid) > target:
                hi = mid
            else:
                lo = mid
        wall = 0.5 * (lo + hi)
        w_centre = self._apex_w + c
        return dict(a=a, b=b, c=c, ao=a + wall, bo=b + wall, co=c + p.apex_wall_ratio * wall,
                    w_centre=w_centre, w_base=w_centre + h, wall=wall, lv_volume_ml=cav / 1000.0)

    # --- RV ----------------------------------------------------------------------------------------
    def _rv_shape(self, lv: dict, s: float) -> Frame:
        p = self.params
        ro = 0.5 * (lv["ao"] + lv["bo"])
        width = p.rv_width * s
        # RV ellipse centre on the septal side; far enough that it never reaches past the lateral wall
        d = max(0.4 * ro, 0.5 * (width + 10.0))
        A = ro + width - d
        phi = math.radians(p.rv_insertion_deg)
        q = (d - ro * math.cos(phi)) / A
        B = ro * math.sin(phi) / math.sqrt(max(1.0 - q * q, 0.05))
        # RV length follows the LV's (longitudinal shortening) and the free-wall factor a little
        lv_len_ed = (1.0 + p.lv_beta) * p.lv_c
        lv_len = lv["w_base"] - self._apex_w
        beta_rv = 0.35
        C = p.rv_length_ratio * lv_len_ed / (1.0 + beta_rv) * (lv_len / lv_len_ed) * s**0.15
        w_rv_base = lv["w_base"] + p.rv_base_offset
        w_rv = w_rv_base - beta_rv * C
        return Frame(a=lv["a"], b=lv["b"], c=lv["c"], ao=lv["ao"], bo=lv["bo"], co=lv["co"],
                     w_centre=lv["w_centre"], w_base=lv["w_base"], wall=lv["wall"], d=d, A=A, B=B, C=C,
                     w_rv=w_rv, w_rv_base=w_rv_base, pap_r=max(lv["a"] - 0.8 * p.papillary, 0.3 * lv["a"]), lv_volume_ml=lv["lv_volume_ml"])

    def _rv_volume(self, lv: dict, s: float, step: float = 1.5, w_step: float = 1.0) -> float:
        """RV cavity volume (mm^3) by midpoint sampling; the w samples are centred in slabs that end at the
        RV base plane, so the flat base is integrated exactly."""
        f = self._rv_shape(lv, s)
        u = np.arange(-f.d - f.A + step / 2, -f.d + f.A, step, dtype=np.float32)
        v = np.arange(-f.B + step / 2, f.B, step, dtype=np.float32)
        nw = int(math.ceil((f.w_rv_base - (f.w_rv - f.C)) / w_step))
        w = (f.w_rv_base - (np.arange(nw) + 0.5) * w_step).astype(np.float32)
        W, V, U = np.meshgrid(w, v, u, indexing="ij")
        rv = ((U + f.d) / f.A) ** 2 + (V / f.B) ** 2 + ((W - f.w_rv) / f.C) ** 2 < 1.0
        rv &= W < f.w_rv_base
        lv_out = (U / f.ao) ** 2 + (V / f.bo) ** 2 + ((W - f.w_centre) / f.co) ** 2 < 1.0
        lv_out &= W < f.w_base
        return float(np.count_nonzero(rv & ~lv_out)) * step * step * w_step

    # --- frames and boxes --------------------------------------------------------------------------
    def _atria(self, f: Frame) -> list[tuple[tuple[float, float, float], np.ndarray]]:
        """(centre (u, v, w), semi-axes) of the left and right atrium, resting on the base planes."""
        post = self.params.rotation.T @ np.array([0.0, -1.0, 0.0])
        pu, pv = post[0], post[1]
        n = math.hypot(pu, pv) or 1.0
        pu, pv = pu / n, pv / n
        r_la = 0.8 * self.params.lv_a + 4.0
        la = (0.25 * f.ao + 12.0 * pu, 12.0 * pv, f.w_base + 0.9 * r_la)
        r_ra = 0.8 * r_la
        ra = (-f.d - 0.6 * f.A + 10.0 * pu, 10.0 * pv, f.w_rv_base + 0.9 * r_ra)
        return [(la, np.array([r_la, r_la, 1.1 * r_la])), (ra, np.array([r_ra, r_ra, 1.1 * r_ra]))]

    def _vessels(self, f: Frame) -> list[tuple[float, float, float, float, float]]:
        """Aortic root and pulmonary trunk as cylinders along w: (u, v, radius, w_start, w_end)."""
        post = self.params.rotation.T @ np.array([0.0, -1.0, 0.0])
        pu, pv = post[0], post[1]
        n = math.hypot(pu, pv) or 1.0
        pu, pv = pu / n, pv / n
        ro = 0.5 * (f.ao + f.bo)
        s = self.params.lv_a / 25.0
        aorta = (-0.3 * ro - 0.3 * ro * pu, -0.3 * ro * pv, 12.0 * s, f.w_base - 1.0, f.w_base + 45.0)
        pulm = (-f.d - 0.45 * f.A - 0.5 * ro * pu, -0.5 * ro * pv, 11.0 * s, f.w_rv_base - 1.0, f.w_rv_base + 40.0)
        return [aorta, pulm]

    # --- coordinates -------------------------------------------------------------------------------
    def world_to_heart(self, xyz: np.ndarray) -> np.ndarray:
        return (np.asarray(xyz, dtype=np.float64) - self.params.origin) @ self.params.rotation

    def heart_to_world(self, uvw: np.ndarray) -> np.ndarray:
        return np.asarray(uvw, dtype=np.float64) @ self.params.rotation.T + self.params.origin

    # --- painting ----------------------------------------------------------------------------------
    def envelope(self, hu: np.ndarray, hv: np.ndarray, hw: np.ndarray, margin: float) -> np.ndarray:
        """True where a heart-frame point is within about `margin` mm of the heart in any phase (union of
        the ED epicardial-fat ellipsoids of LV and RV and the atria over their travel; it contains every
        voxel that `paint_heart` may change when margin >= 0)."""
        p = self.params
        f32 = np.float32
        f0, fs = self.frames[0], self.frames[self.es_phase]
        m = margin + p.fat + 2.0
        # the ES epicardial apex may lie a little beyond the ED one (thicker wall)
        extra = max(0.0, (fs.co - fs.c) - (f0.co - f0.c))
        wl = hw - f32(f0.w_centre)
        env = (hu / f32(f0.ao + m)) ** 2 + (hv / f32(f0.bo + m)) ** 2 + (wl / f32(f0.co + m + extra)) ** 2 < 1
        tw = p.rv_wall + m
        env |= ((hu + f32(f0.d)) / f32(f0.A + tw)) ** 2 + (hv / f32(f0.B + tw)) ** 2 + (
            (hw - f32(f0.w_rv)) / f32(f0.C + tw)) ** 2 < 1
        # each atrium over the cycle: an ellipsoid covering its positions in all phases
        atria = [self._atria(f) for f in self.frames]
        for a in range(len(atria[0])):
            centres = np.array([at[a][0] for at in atria])
            radii = np.max([at[a][1] for at in atria], axis=0)
            c = 0.5 * (centres.min(0) + centres.max(0))
            # ellipsoid (radii) swept over the box of centres (half-size h) lies inside the homothetic
            # ellipsoid radii * (1 + |h / radii|)
            h = 0.5 * (centres.max(0) - centres.min(0))
            r = radii * (1.0 + float(np.linalg.norm(h / radii))) + margin
            env |= ((hu - f32(c[0])) / f32(r[0])) ** 2 + ((hv - f32(c[1])) / f32(r[1])) ** 2 + (
                (hw - f32(c[2])) / f32(r[2])) ** 2 < 1
        for cyl in zip(*[self._vessels(f) for f in self.frames]):
            arr = np.array(cyl)
            cu, cv = 0.5 * (arr[:, 0].min() + arr[:, 0].max()), 0.5 * (arr[:, 1].min() + arr[:, 1].max())
            spread = math.hypot(np.ptp(arr[:, 0]), np.ptp(arr[:, 1])) / 2.0
            r = arr[:, 2].max() + spread + margin
            env |= ((hu - f32(cu)) ** 2 + (hv - f32(cv)) ** 2 < f32(r * r)) & (
                hw > f32(arr[:, 3].min() - margin)) & (hw < f32(arr[:, 4].max() + margin))
        return env

    #: margin (mm) of the envelope that holds the mediastinum around the heart; the fast renderer paints
    #: the heart at the points of this envelope
    MEDIASTINUM_MARGIN = 3.0

    def paint_static(self, x: np.ndarray, y: np.ndarray, z: np.ndarray, hu, hv, hw,
                     envelope: np.ndarray | None = None) -> np.ndarray:
        """Static thorax tissue classes at world points (x, y, z float32), heart frame (hu, hv, hw).

        `envelope` is `self.envelope(hu, hv, hw, MEDIASTINUM_MARGIN)` when the caller has it already.

        Body: elliptic cylinder along the S-I axis with subcutaneous fat and chest-wall/back muscle rings;
        inside, above the diaphragm: lungs, the mediastinum (soft tissue) around the heart and in a
        column from behind the heart to the spine, the descending aorta and the vertebral body; below the
        diaphragm dome: the liver on the right, soft tissue (stomach, spleen) on the left.
        """
        p = self.params
        f32 = np.float32
        cx, cy = p.body_centre
        dx = x - f32(cx)
        dy = y - f32(cy)
        out = np.full(np.broadcast_shapes(x.shape, y.shape, z.shape, hu.shape), Tissue.AIR, dtype=np.uint8)
        W, D = p.body_half_width, p.body_half_depth

        def ell(ex, ey, ox=0.0, oy=0.0):
            return ((dx - f32(ox)) / f32(ex)) ** 2 + ((dy - f32(oy)) / f32(ey)) ** 2 < 1.0

        out[ell(W, D)] = Tissue.FAT
        f = p.subcutaneous_fat
        out[ell(W - f, D - f)] = Tissue.MUSCLE
        m = f + p.chest_muscle
        inner = ell(W - m, D - m - 10.0, oy=5.0)  # back muscles thicker than the chest wall
        # diaphragm: right dome higher than the left one, the heart rests on the left/central part
        apex_z = float(self.heart_to_world(np.array([[0.0, 0.0, self._apex_w]]))[0, 2])
        f0_w_base = self.frames[0].w_base
        right = f32(apex_z + 28.0) - f32(40.0) * ((dx - f32(0.4 * W)) / f32(0.7 * W)) ** 2
        left = f32(apex_z + 2.0) - f32(40.0) * ((dx + f32(0.35 * W)) / f32(0.7 * W)) ** 2
        z_dome = np.maximum(right, left) - f32(12.0) * (dy / f32(D)) ** 2
        above = z > z_dome
        out[inner & above] = Tissue.LUNG
        # posterior mediastinum: a column from behind the heart to the spine (oesophagus, aorta)
        heart_y = float(self.heart_to_world(np.array([[0.0, 0.0, 0.5 * (self._apex_w + f0_w_base)]]))[0, 1]) - cy
        mediastinum = (np.abs(dx + f32(0.06 * W)) < f32(0.1 * W)) & (dy < f32(heart_y))
        if envelope is None:
            envelope = self.envelope(hu, hv, hw, self.MEDIASTINUM_MARGIN)
        mediastinum |= envelope
        out[inner & above & mediastinum] = Tissue.SOFT
        below = inner & ~above
        out[below] = Tissue.SOFT
        out[below & ell(0.8 * W, 1.1 * D, ox=0.3 * W)] = Tissue.LIVER
        out[ell(11.0, 11.0, ox=-0.12 * W, oy=-0.5 * D) & inner] = Tissue.VESSEL
        out[ell(16.0, 14.0, oy=-0.68 * D)] = Tissue.BONE
        return out

    def endo_modulation(self, hu: np.ndarray, hv: np.ndarray, hw: np.ndarray) -> np.ndarray | None:
        """Per-point factor (about 1 +- roughness) on the LV cavity's implicit function: an irregular,
        slightly twisted endocardium. Depends only on the heart-frame position, so it is computed once
        per point set and reused for every phase."""
        p = self.params
        if not p.endo_roughness or len(p.endo_harmonics) == 0:
            return None
        theta = np.arctan2(hv, hu)
        mod = np.zeros(np.shape(theta), dtype=np.float32)
        for k, a, ph, tw in p.endo_harmonics:
            mod += np.float32(a) * np.cos(np.float32(k) * theta + np.float32(tw) * hw + np.float32(ph))
        mod *= np.float32(p.endo_roughness)
        mod += np.float32(1.0)
        return mod

    def paint_heart(self, out: np.ndarray, hu: np.ndarray, hv: np.ndarray, hw: np.ndarray, t: int,
                    endo: np.ndarray | None = None, w_sorted: bool = False) -> None:
        """Paint the heart of phase `t` into `out` (tissue classes) at heart-frame points (hu, hv, hw).

        `endo` is `endo_modulation(hu, hv, hw)` (computed here when not given). With `w_sorted` the points
        are 1D and sorted by hw, and every shape is evaluated only on the run of points within its w range.
        """
        if endo is None:
            endo = self.endo_modulation(hu, hv, hw)
        p = self.params
        f = self.frames[t]
        f32 = np.float32

        def run(lo: float, hi: float) -> slice:
            if not w_sorted:
                return slice(None)
            # search with the array's dtype (a float64 key would convert the whole array each time)
            lo, hi = np.asarray(lo, dtype=hw.dtype), np.asarray(hi, dtype=hw.dtype)
            return slice(int(np.searchsorted(hw, lo)), int(np.searchsorted(hw, hi, side="right")))

        fat = p.fat
        tw = p.rv_wall
        # atria and great vessels (above the base planes), painted first: the ventricles win
        # (atria are cut at their ventricle's base plane: they do not hang down beside the ventricles)
        for ((cu, cv, cw), r), floor in zip(self._atria(f), (f.w_base, f.w_rv_base)):
            sl = run(max(cw - r[2], floor), cw + r[2])
            a, b, c = hu[sl] - f32(cu), hv[sl] - f32(cv), hw[sl] - f32(cw)
            m = a * a * f32(1 / r[0] ** 2) + b * b * f32(1 / r[1] ** 2) + c * c * f32(1 / r[2] ** 2) < 1
            m &= hw[sl] > f32(floor)
            out[sl][m] = Tissue.ATRIAL_BLOOD
        for cu, cv, r, w0, w1 in self._vessels(f):
            sl = run(w0, w1)
            a, b = hu[sl] - f32(cu), hv[sl] - f32(cv)
            m = (a * a + b * b < f32(r * r)) & (hw[sl] > f32(w0)) & (hw[sl] < f32(w1))
            out[sl][m] = Tissue.VESSEL
        # the ventricles: everything below the highest base plane (+ fat)
        top = run(-np.inf, max(f.w_base, f.w_rv_base) + fat)
        full_out, full_endo = out, endo
        out, hu, hv, hw = out[top], hu[top], hv[top], hw[top]
        endo = None if full_endo is None else full_endo[top]
        del full_out
        u2 = hu * hu
        v2 = hv * hv
        # epicardial fat shell (around LV and RV), then RV wall, RV blood, LV wall, LV blood
        wl = hw - f32(f.w_centre)
        wl2 = wl * wl
        ur = hu + f32(f.d)
        ur2 = ur * ur
        wr = hw - f32(f.w_rv)
        wr2 = wr * wr

        def q(uu, vv, ww, a, b, c):
            return uu * f32(1.0 / (a * a)) + vv * f32(1.0 / (b * b)) + ww * f32(1.0 / (c * c))

        below_lv = hw < f32(f.w_base)
        below_rv = hw < f32(f.w_rv_base)
        # LV fat shell: thick anteriorly/inferiorly and in the AV groove, none at the lateral wall
        uf = hu + f32(0.6 * fat)
        fat_m = (q(uf * uf, v2, wl2, f.ao + 0.4 * fat, f.bo + fat, f.co + fat) < 1) & (hw < f32(f.w_base + fat))
        fat_m |= (q(ur2, v2, wr2, f.A + tw + fat, f.B + tw + fat, f.C + tw + fat) < 1) & (
            hw < f32(f.w_rv_base + fat))
        out[fat_m] = Tissue.FAT
        rv_out = q(ur2, v2, wr2, f.A + tw, f.B + tw, f.C + tw) < 1
        rv_out &= below_rv
        out[rv_out] = Tissue.RV_WALL
        rv = q(ur2, v2, wr2, f.A, f.B, f.C) < 1
        rv &= below_rv
        out[rv] = Tissue.RV_BLOOD
        lv_out = q(u2, v2, wl2, f.ao, f.bo, f.co) < 1
        lv_out &= below_lv
        out[lv_out] = Tissue.LV_MYO
        # irregular endocardium: modulate the in-plane part only (constant relative roughness to the apex)
        lv = u2 * f32(1.0 / (f.a * f.a)) + v2 * f32(1.0 / (f.b * f.b))
        if endo is not None:
            lv *= endo
        lv += wl2 * f32(1.0 / (f.c * f.c))
        lv = lv < 1
        lv &= below_lv
        out[lv] = Tissue.LV_BLOOD
        # papillary muscles: two columns from near the apex to the mid-ventricle, at the lateral wall
        pr = p.papillary
        w_lo, w_hi = self._apex_w + 0.25 * f.c, f.w_centre - 0.1 * f.c
        sl = run(w_lo, w_hi)
        for ang in (math.radians(50.0), math.radians(-60.0)):
            cu, cv = f.pap_r * math.cos(ang), f.pap_r * math.sin(ang)
            a, b = hu[sl] - f32(cu), hv[sl] - f32(cv)
            m = (a * a + b * b < f32(pr * pr)) & (hw[sl] > f32(w_lo)) & (hw[sl] < f32(w_hi))
            m &= lv[sl]
            out[sl][m] = Tissue.PAPILLARY

    def tissue_at(self, xyz: np.ndarray, t: int) -> np.ndarray:
        """Tissue classes at world points `xyz` (..., 3) for phase t (convenience, not the fast path)."""
        xyz = np.asarray(xyz, dtype=np.float64)
        h = self.world_to_heart(xyz).astype(np.float32)
        w = xyz.astype(np.float32)
        out = self.paint_static(w[..., 0], w[..., 1], w[..., 2], h[..., 0], h[..., 1], h[..., 2])
        self.paint_heart(out, h[..., 0], h[..., 1], h[..., 2], t)
        return out

    # --- summaries ---------------------------------------------------------------------------------
    def summary(self) -> dict:
        lv = np.array([f.lv_volume_ml for f in self.frames])
        return {
            "n_phases": self.n_phases,
            "ed_phase": 0,
            "es_phase": self.es_phase,
            "lv_edv_ml": float(lv[0]),
            "lv_esv_ml": float(lv[self.es_phase]),
            "lv_ef": float(1.0 - lv[self.es_phase] / lv[0]),
            "rv_edv_ml": self.rv_edv_ml,
            "rv_ef_target": self.params.rv_ef,
            "lv_myocardial_volume_ml": self.myo_volume_ml,
            "lv_mass_g": 1.05 * self.myo_volume_ml,
            "wall_ed_mm": self.frames[0].wall,
            "wall_es_mm": self.frames[self.es_phase].wall,
        }
