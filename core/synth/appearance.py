"""bSSFP-like image synthesis from tissue classes or from any label map.

Signal model: each tissue has a relative signal (`CONTRAST`, blood = 1: bright blood, dark myocardium,
bright fat, dark lungs and air, mid-grey liver and muscle). The noise-free signal is multiplied by a smooth
per-subject gain (a low-frequency bias field from the coil plus a gentle tissue texture, both functions of
world position, so LR and HR of one subject share them), Rician noise is added (magnitude of a complex
Gaussian), then a domain's non-linearity and scale give the stored intensities.

`synthesize_from_labels` does the same for a given label map (e.g. a UK Digital Heart HR label map,
remapped to 0 bg, 1 LV cavity, 2 LV myocardium, 3 RV cavity): the RV free wall and epicardial fat are
grown around the labels and the thorax of a phantom is placed around the heart's position and axis.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from gemini_cmr.core.study import Grid
from gemini_cmr.core.synth.anatomy import ANATOMY_RANGES, N_TISSUES, HeartParams, Phantom, Tissue
from gemini_cmr.core.synth.domains import Domain, get_domain

#: relative bSSFP signal per tissue name in the training domain (blood = 1)
CONTRAST: dict[str, float] = {
    "air": 0.0,
    "blood": 1.0,
    "myocardium": 0.27,
    "fat": 0.85,
    "lung": 0.06,
    "muscle": 0.26,
    "liver": 0.36,
    "soft": 0.45,
    "bone": 0.5,
}

#: which contrast entry each tissue class uses
TISSUE_CONTRAST: dict[Tissue, str] = {
    Tissue.AIR: "air",
    Tissue.LV_BLOOD: "blood",
    Tissue.RV_BLOOD: "blood",
    Tissue.ATRIAL_BLOOD: "blood",
    Tissue.VESSEL: "blood",
    Tissue.LV_MYO: "myocardium",
    Tissue.PAPILLARY: "myocardium",
    Tissue.RV_WALL: "myocardium",
    Tissue.FAT: "fat",
    Tissue.LUNG: "lung",
    Tissue.MUSCLE: "muscle",
    Tissue.LIVER: "liver",
    Tissue.SOFT: "soft",
    Tissue.BONE: "bone",
}


def contrast_lut(domain: Domain | str) -> np.ndarray:
    """float32 lookup table tissue class -> relative signal for `domain`."""
    domain = get_domain(domain)
    values = dict(CONTRAST)
    values.update(domain.contrast)
    lut = np.zeros(N_TISSUES, dtype=np.float32)
    for tissue, name in TISSUE_CONTRAST.items():
        lut[int(tissue)] = values[name]
    return lut


@dataclass
class SmoothField:
    """sum_k amp_k cos(2 pi k . (x - centre) + phase_k) + grad . (x - centre) / 100, at world points."""

    centre: np.ndarray
    waves: np.ndarray  # (n, 3) cycles per mm
    phases: np.ndarray
    amps: np.ndarray
    grad: np.ndarray  # per 100 mm

    @classmethod
    def random(cls, rng: np.random.Generator, centre, min_wavelength_mm: float, n: int = 4,
               gradient: float = 0.0) -> SmoothField:
        dirs = rng.normal(size=(n, 3))
        dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
        lam = rng.uniform(min_wavelength_mm, 2.5 * min_wavelength_mm, size=n)
        amps = rng.uniform(0.5, 1.0, size=n)
        amps /= math.sqrt(float(np.sum(amps**2)))
        g = rng.normal(size=3)
        g = gradient * g / np.linalg.norm(g)
        return cls(np.asarray(centre, dtype=np.float64), dirs / lam[:, None], rng.uniform(0, 2 * np.pi, n),
                   amps, g)

    def on_grid(self, grid: Grid) -> np.ndarray:
        """The field at the voxel centres of `grid`, (Z, Y, X) float32, using separability: each wave is
        the real part of an outer product of three 1D complex exponentials."""
        nz, ny, nx = grid.shape
        a = grid.affine
        rel = a[:3, 3] - self.centre
        i, j, k = (np.arange(n, dtype=np.float64) for n in (nx, ny, nz))
        g = self.grad / 100.0
        out = ((g @ a[:3, 2]) * k + g @ rel)[:, None, None] + ((g @ a[:3, 1]) * j)[None, :, None] + (
            (g @ a[:3, 0]) * i)[None, None, :]
        out = out.astype(np.float32)
        tau = 2 * np.pi
        tmp = np.empty_like(out)
        for wave, ph, amp in zip(self.waves, self.phases, self.amps):
            # cos(a i + b j + c k + d) = cos(c k + d) Re(P) - sin(c k + d) Im(P), P = e^{i(a i + b j)}
            plane = np.exp(1j * tau * (wave @ a[:3, 1]) * j)[:, None] * np.exp(1j * tau * (wave @ a[:3, 0]) * i)
            arg = tau * (wave @ a[:3, 2]) * k + tau * (wave @ rel) + ph
            np.multiply((amp * np.cos(arg)).astype(np.float32)[:, None, None], plane.real.astype(np.float32), out=tmp)
            out += tmp
            np.multiply((amp * np.sin(arg)).astype(np.float32)[:, None, None], plane.imag.astype(np.float32), out=tmp)
            out -= tmp
        return out

    def __call__(self, x: np.ndarray, y: np.ndarray, z: np.ndarray) -> np.ndarray:
        dx = x - np.float32(self.centre[0])
        dy = y - np.float32(self.centre[1])
        dz = z - np.float32(self.centre[2])
        out = (dx * np.float32(self.grad[0] / 100) + dy * np.float32(self.grad[1] / 100)
               + dz * np.float32(self.grad[2] / 100)).astype(np.float32)
        tau = 2 * np.pi
        for k, ph, a in zip(self.waves, self.phases, self.amps):
            arg = dx * np.float32(tau * k[0]) + dy * np.float32(tau * k[1]) + dz * np.float32(tau * k[2])
            arg += np.float32(ph)
            out += np.float32(a) * np.cos(arg)
        return out


@dataclass
class SubjectAppearance:
    """Per-subject smooth gain (bias field x texture), shared by the LR and HR images of a subject."""

    bias: SmoothField
    texture: SmoothField
    bias_amp: float
    texture_amp: float

    @classmethod
    def random(cls, rng: np.random.Generator, domain: Domain, centre) -> SubjectAppearance:
        bias = SmoothField.random(rng, centre, domain.bias_wavelength_mm, n=3, gradient=0.8)
        texture = SmoothField.random(rng, centre, 35.0, n=6)
        return cls(bias, texture, domain.bias, domain.texture)

    def gain(self, x: np.ndarray, y: np.ndarray, z: np.ndarray) -> np.ndarray:
        g = np.exp(np.float32(self.bias_amp) * self.bias(x, y, z))
        if self.texture_amp:
            g *= 1.0 + np.float32(self.texture_amp) * self.texture(x, y, z)
        return g.astype(np.float32, copy=False)

    def gain_on_grid(self, grid: Grid) -> np.ndarray:
        """(Z, Y, X) gain at the voxel centres of `grid` (same values as `gain` at those points)."""
        g = self.bias.on_grid(grid)
        g *= np.float32(self.bias_amp)
        np.exp(g, out=g)
        if self.texture_amp:
            tex = self.texture.on_grid(grid)
            tex *= np.float32(self.texture_amp)
            tex += np.float32(1.0)
            g *= tex
        return g


def grid_world_xyz(grid: Grid) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """World x, y, z (float32, broadcastable to (Z, Y, X)) of the voxel centres of `grid`."""
    nz, ny, nx = grid.shape
    a = grid.affine
    i = np.arange(nx, dtype=np.float64)[None, None, :]
    j = np.arange(ny, dtype=np.float64)[None, :, None]
    k = np.arange(nz, dtype=np.float64)[:, None, None]
    return tuple((a[r, 0] * i + a[r, 1] * j + a[r, 2] * k + a[r, 3]).astype(np.float32) for r in range(3))


def add_rician(signal: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
    """Magnitude of signal + complex Gaussian noise of std `sigma` per channel (float32)."""
    if sigma <= 0:
        return signal.astype(np.float32, copy=False)
    sig = np.float32(sigma)
    re = rng.standard_normal(signal.shape, dtype=np.float32)
    re *= sig
    re += signal
    im = rng.standard_normal(signal.shape, dtype=np.float32)
    im *= sig
    np.multiply(re, re, out=re)
    np.multiply(im, im, out=im)
    re += im
    return np.sqrt(re, out=re)


def add_rician_normal(signal: np.ndarray, sigma: float, rng: np.random.Generator, dtype=np.float64) -> np.ndarray:
    """Magnitude of signal + complex Gaussian noise of std `sigma` per channel, drawn with `rng.normal` (float64
    draws, the real channel first), each draw cast to `dtype` before it is added (the evaluations' and the
    training augmentation's stream; `add_rician` draws float32 standard normals, another stream)."""
    re = signal + rng.normal(0, sigma, signal.shape).astype(dtype, copy=False)
    im = rng.normal(0, sigma, signal.shape).astype(dtype, copy=False)
    return np.sqrt(re * re + im * im)


def _noise_bank(n: int, sigma: float, rng: np.random.Generator) -> np.ndarray:
    bank = rng.standard_normal(2 * n, dtype=np.float32)
    bank *= np.float32(sigma)
    return bank


def add_rician_cine(signal: np.ndarray, sigma: float, rng: np.random.Generator, post=None) -> np.ndarray:
    """Rician noise for a long cine (T, ...) from a bank of 2 N Gaussian samples (N = voxels per phase),
    read at random offsets for the real and imaginary channel of every phase.

    Every phase gets Gaussian noise of the right variance, uncorrelated in space; between phases the
    noise fields are randomly shifted copies of one another (not independent), at a tenth of the cost
    of drawing 2 T N samples. Used for the HR truth, where T N is large. `post(phase_array)` is applied
    in place to each phase while it is in cache.
    """
    T = signal.shape[0]
    shape = signal.shape[1:]
    n = int(np.prod(shape))
    if sigma <= 0 or T <= 2:
        out = add_rician(signal, sigma, rng)
        if post is not None:
            for t in range(T):
                post(out[t])
        return out
    bank = _noise_bank(n, sigma, rng)
    offs = rng.integers(0, n + 1, size=(T, 2))
    out = np.empty(signal.shape, dtype=np.float32)
    im = np.empty(shape, dtype=np.float32)
    for t in range(T):
        re = out[t]
        np.add(bank[offs[t, 0]: offs[t, 0] + n].reshape(shape), signal[t], out=re)
        np.multiply(re, re, out=re)
        b = bank[offs[t, 1]: offs[t, 1] + n].reshape(shape)
        np.multiply(b, b, out=im)
        re += im
        np.sqrt(re, out=re)
        if post is not None:
            post(re)
    return out


def finalize(signal: np.ndarray, domain: Domain, noise: float, rng: np.random.Generator,
             noise_bank: bool = False) -> np.ndarray:
    """Rician noise, the domain's non-linearity and scale; integer-valued float32 like scanner data.

    `noise_bank=True` uses `add_rician_cine` (for large HR cines)."""
    gamma = np.float32(domain.gamma)
    scale = np.float32(domain.intensity_scale)

    def post(img: np.ndarray) -> None:
        if gamma != 1:
            np.power(img, gamma, out=img)
        img *= scale
        np.rint(img, out=img)

    if noise_bank:
        return add_rician_cine(signal, noise, rng, post)
    img = add_rician(signal, noise, rng)
    post(img)
    return img


# --- synthesis from a label map ---------------------------------------------------------------------
def _heart_params_from_labels(lab: np.ndarray, grid: Grid) -> HeartParams:
    """A phantom parameter set placed and oriented like the heart in a label map (Z, Y, X)."""
    from gemini_cmr.core.synth.anatomy import sample_heart_params

    mid = {k: 0.5 * (lo + hi) for k, (lo, hi) in ANATOMY_RANGES.items()}
    params = sample_heart_params(np.random.default_rng(0), ranges={k: (v, v) for k, v in mid.items()})
    lv_idx = np.argwhere((lab == 1) | (lab == 2))
    if len(lv_idx) < 10:
        raise ValueError("the label map has no LV (labels 1 and 2) to place the thorax around")
    def world(idx):
        return grid.index_to_world(idx[:, ::-1].astype(np.float64))
    lv = world(lv_idx)
    centroid = lv.mean(axis=0)
    _, _, vt = np.linalg.svd(lv - centroid, full_matrices=False)
    e_w = vt[0]
    cav = lab == 1
    myo = lab == 2
    if cav.any() and myo.any():
        toward_base = world(np.argwhere(cav)).mean(0) - world(np.argwhere(myo)).mean(0)
        if np.dot(toward_base, e_w) < 0:
            e_w = -e_w
    elif e_w[2] < 0:
        e_w = -e_w
    rv_idx = np.argwhere(lab == 3)
    rv_dir = world(rv_idx).mean(0) - centroid if len(rv_idx) else np.array([1.0, 0.7, 0.0])
    rv_dir = rv_dir - e_w * np.dot(rv_dir, e_w)
    if np.linalg.norm(rv_dir) < 1e-6:
        rv_dir = np.cross(e_w, [0.0, 0.0, 1.0])
    e_u = -rv_dir / np.linalg.norm(rv_dir)
    e_v = np.cross(e_w, e_u)
    params.rotation = np.stack([e_u, e_v, e_w], axis=1)
    proj = (lv - centroid) @ e_w
    params.origin = centroid + e_w * proj.max()
    length = float(proj.max() - proj.min())
    params.lv_c = max(length - params.lv_wall, 20.0) / (1.0 + params.lv_beta)
    cav_ml = float(np.count_nonzero(cav)) * grid.voxel_volume_ml
    if cav_ml > 1:
        f = (1.0 + params.lv_beta) - (1.0 + params.lv_beta**3) / 3.0
        params.lv_a = params.lv_b = max(math.sqrt(cav_ml * 1000 / (math.pi * params.lv_c * f)), 8.0)
    params.body_centre = np.array([centroid[0] + 30.0, centroid[1] - 45.0])
    return params


def tissue_from_labels(labels: np.ndarray, grid: Grid) -> np.ndarray:
    """Tissue classes for a label map (Z, Y, X) or (T, Z, Y, X) on `grid`: heart from the labels, RV free
    wall and epicardial fat grown around it (3 mm each), thorax of a phantom placed around the heart."""
    lab = np.asarray(labels)
    single = lab.ndim == 3
    if single:
        lab = lab[None]
    ref = next((lab[t] for t in range(lab.shape[0]) if np.any((lab[t] == 1) | (lab[t] == 2))), lab[0])
    params = _heart_params_from_labels(ref, grid)
    phantom = Phantom(params, n_phases=2)
    x, y, z = grid_world_xyz(grid)
    x, y, z = np.broadcast_arrays(x, y, z)
    h = phantom.world_to_heart(np.stack([x, y, z], axis=-1)).astype(np.float32)
    static = phantom.paint_static(x, y, z, h[..., 0], h[..., 1], h[..., 2])
    out = np.empty(lab.shape, dtype=np.uint8)
    sampling = tuple(float(s) for s in grid.spacing[::-1])
    for t in range(lab.shape[0]):
        tis = static.copy()
        lt = lab[t]
        heart = lt > 0
        if heart.any():
            # grow RV wall and fat only within the heart's bounding box (+ margin)
            idx = np.argwhere(heart)
            margin = np.ceil(8.0 / np.asarray(sampling)).astype(int)
            lo = np.maximum(idx.min(0) - margin, 0)
            hi = np.minimum(idx.max(0) + margin + 1, lt.shape)
            box = tuple(slice(a, b) for a, b in zip(lo, hi))
            lb = lt[box]
            sub = tis[box]
            d_heart = ndimage.distance_transform_edt(lb == 0, sampling=sampling)
            sub[(d_heart > 0) & (d_heart <= 6.0)] = Tissue.FAT
            if (lb == 3).any():
                d_rv = ndimage.distance_transform_edt(lb != 3, sampling=sampling)
                sub[(lb == 0) & (d_rv <= 3.0)] = Tissue.RV_WALL
            sub[lb == 1] = Tissue.LV_BLOOD
            sub[lb == 2] = Tissue.LV_MYO
            sub[lb == 3] = Tissue.RV_BLOOD
        out[t] = tis
    return out[0] if single else out


def synthesize_from_labels(
    labels: np.ndarray,
    affine: np.ndarray,
    domain: Domain | str = "ukdhp-like",
    seed: int = 0,
    noise: float | None = None,
    blur_mm: float = 0.6,
) -> np.ndarray:
    """A bSSFP-like image (same shape as `labels`, float32) for a label map on the grid of `affine`.

    `noise` defaults to the domain's HR noise; `blur_mm` is the Gaussian PSF (sigma) in mm.
    """
    domain = get_domain(domain)
    lab = np.asarray(labels)
    grid = Grid(lab.shape[-3:], affine)
    tissue = tissue_from_labels(lab, grid)
    signal = contrast_lut(domain)[tissue]
    sigma = blur_mm / grid.spacing[::-1]
    if blur_mm > 0:
        signal = ndimage.gaussian_filter(signal, ((0.0,) if signal.ndim == 4 else ()) + tuple(sigma))
    rng = np.random.default_rng(seed)
    looks = SubjectAppearance.random(rng, domain, grid.centre())
    signal *= looks.gain_on_grid(grid)
    return finalize(signal, domain, domain.hr_noise if noise is None else noise, rng)
