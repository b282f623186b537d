"""Locations of the bundled resources (demo study, demo model, icons), for source and installed layouts."""

from __future__ import annotations

from pathlib import Path

RESOURCES = Path(__file__).resolve().parent.parent / "resources"


def resources_dir() -> Path:
    return RESOURCES


def demo_study_path() -> Path:
    return RESOURCES / "demo" / "demo_study.nii.gz"


def bundled_model_path() -> Path:
    return RESOURCES / "models" / "gemini-phantom"


def phantom_sac_model_path() -> Path:
    """Optional phantom model with the paper's slices-as-channels generator (282a0c557b2e): about half the
    CPU time of the bundled acquired-2d model, but it draws the ventricle above the descended base at ES
    (docs/gemini.md)."""
    return RESOURCES / "models" / "gemini-phantom-sac"


def acdc_model_path() -> Path:
    """Research weights trained on ACDC: the default for real (non-phantom) studies."""
    return RESOURCES / "models" / "gemini-acdc"


def is_phantom_study(study) -> bool:
    """True for studies made by the phantom generator (`gemini-cmr synth`, the demo study): their
    metadata say so, or the NIfTI header description written by `core.io.nifti.save_nifti` does."""
    meta = study.meta
    if meta.format == "phantom" or meta.vendor.lower().startswith("gemini-cmr phantom"):
        return True
    if "phantom" in meta.series_description.lower() and "gemini-cmr" in meta.series_description.lower():
        return True
    src = Path(meta.source_path) if meta.source_path else None
    if src is not None and src.is_file() and src.name.lower().endswith((".nii", ".nii.gz")):
        try:
            import nibabel as nib

            descrip = bytes(nib.load(str(src)).header["descrip"]).split(b"\0")[0].decode("ascii", "replace")
        except Exception:  # unreadable header: not a phantom we wrote
            return False
        return descrip.lower().startswith("gemini-cmr") and "phantom" in descrip.lower()
    return False


def default_model_for(study) -> tuple[Path, str]:
    """(model folder, reason): the phantom model for phantoms, the ACDC model for real studies (when
    installed; else the phantom model, saying so)."""
    if is_phantom_study(study):
        return bundled_model_path(), "phantom study: phantom-trained model (gemini-phantom)"
    acdc = acdc_model_path()
    if (acdc / "model.safetensors").is_file():
        return acdc, f"real study ({study.meta.format or 'unknown format'}): ACDC-trained model (gemini-acdc)"
    return bundled_model_path(), "real study, but the ACDC model is not installed: phantom model (gemini-phantom)"


def icon_path(name: str = "gemini-cmr.png") -> Path:
    return RESOURCES / "icons" / name
