"""Named acquisition domains: contrast, noise, bias, resolution and intensity scaling of a "scanner".

`DOMAINS["ukdhp-like"]` is the training domain (UK Digital Heart-like 1.5 T bSSFP). The other domains
shift the appearance the way a different vendor, field strength or population does, for V-AMA and its
benchmark. Every parameter is documented on `Domain`; `docs/phantoms.md` has the table.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from gemini_cmr.core.errors import GeminiError


@dataclass(frozen=True)
class Acquisition:
    """How the LR short-axis cine stack is acquired (all lengths in mm)."""

    inplane_mm: float = 1.8  # LR in-plane pixel size (square pixels)
    matrix: int = 100  # LR in-plane matrix (matrix x matrix); FOV = matrix * inplane_mm
    n_slices: int = 12  # SAX slices from above the base to below the apex
    slice_thickness_mm: float = 8.0  # slice profile width (box profile)
    slice_spacing_mm: float = 10.0  # centre-to-centre distance (spacing - thickness = gap)
    n_subslices: int = 5  # samples across the slice profile (odd: the middle one is the centre plane)
    psf_sigma_px: float = 0.5  # in-plane Gaussian point-spread function, in LR pixels
    shift_mm: float = 1.5  # std of the per-slice in-plane breath-hold shift (each axis)
    shift_max_mm: float = 4.0  # shifts are clipped to this radius
    through_plane_mm: float = 0.0  # std of the per-slice through-plane misregistration
    obliquity_deg: float = 12.0  # max angle between the stack normal and the LV long axis
    inplane_rotation_deg: float = 10.0  # max rotation of the image axes about the normal (planning variety)
    fov_jitter_mm: float = 8.0  # random offset of the FOV centre from the heart (each axis)


@dataclass(frozen=True)
class Domain:
    """A named scanner/population domain.

    contrast: relative signal per tissue (blood = 1 in the training domain), see `appearance.CONTRAST`
    for the tissue names; missing tissues take the ukdhp-like value.
    intensity_scale: stored intensity of unit signal (scanner units).
    gamma: intensity non-linearity applied after noise (vendor post-processing).
    noise: Rician noise sigma of the LR images relative to unit signal (blood ~ 1: SNR ~ 1/noise).
    hr_noise: the same for the HR truth images.
    bias: amplitude of the smooth multiplicative bias field (log-scale, 0 = none).
    bias_wavelength_mm: shortest wavelength of the bias field.
    texture: amplitude of a smooth per-subject texture in static tissues (liver, muscle, fat).
    size_scale: scales all heart and body lengths (population shift).
    acquisition: the LR stack geometry (`Acquisition`).
    """

    name: str
    description: str
    contrast: dict[str, float] = field(default_factory=dict)
    intensity_scale: float = 400.0
    gamma: float = 1.0
    noise: float = 0.035
    hr_noise: float = 0.02
    bias: float = 0.15
    bias_wavelength_mm: float = 350.0
    texture: float = 0.08
    size_scale: float = 1.0
    acquisition: Acquisition = field(default_factory=Acquisition)

    def with_(self, **changes) -> Domain:
        """A copy with some fields changed; `acquisition` may be given as a dict of its fields."""
        acq = changes.pop("acquisition", None)
        if isinstance(acq, dict):
            changes["acquisition"] = replace(self.acquisition, **acq)
        elif acq is not None:
            changes["acquisition"] = acq
        return replace(self, **changes)


DOMAINS: dict[str, Domain] = {
    d.name: d
    for d in (
        Domain(
            name="ukdhp-like",
            description="training domain: UK Digital Heart-like 1.5 T bSSFP, 1.8 mm in-plane, 8/10 mm slices",
        ),
        Domain(
            name="sg-like",
            description="external cohort at 3 T (like the paper's Singapore cohort): lower blood-myocardium "
            "contrast, darker fat, strong bias field, more noise, 1.4 mm in-plane, different scaling, "
            "slightly smaller hearts",
            contrast={"blood": 0.9, "myocardium": 0.34, "fat": 0.62, "liver": 0.46, "muscle": 0.33,
                      "soft": 0.5, "lung": 0.1},
            intensity_scale=2500.0,
            gamma=0.85,
            noise=0.05,
            hr_noise=0.03,
            bias=0.4,
            bias_wavelength_mm=250.0,
            texture=0.08,
            size_scale=0.93,
            acquisition=Acquisition(inplane_mm=1.4, matrix=128, shift_mm=2.0, through_plane_mm=1.0),
        ),
        Domain(
            name="lowfield-like",
            description="older/low-field scanner: low SNR, brighter fat, 2.0 mm in-plane, 10 mm contiguous "
            "slices, small integer intensities, slightly larger hearts",
            contrast={"blood": 0.8, "myocardium": 0.24, "fat": 0.95, "liver": 0.3, "muscle": 0.2,
                      "soft": 0.35, "lung": 0.04},
            intensity_scale=120.0,
            gamma=1.15,
            noise=0.075,
            hr_noise=0.04,
            bias=0.25,
            bias_wavelength_mm=300.0,
            texture=0.05,
            size_scale=1.06,
            acquisition=Acquisition(inplane_mm=2.0, matrix=90, slice_thickness_mm=10.0, n_subslices=7,
                                    shift_mm=2.5, through_plane_mm=1.5),
        ),
    )
}

#: the training domain
DEFAULT_DOMAIN = "ukdhp-like"


def get_domain(name: str | Domain) -> Domain:
    if isinstance(name, Domain):
        return name
    try:
        return DOMAINS[name]
    except KeyError:
        raise GeminiError(f"unknown domain {name!r}; choose one of {', '.join(DOMAINS)}") from None
