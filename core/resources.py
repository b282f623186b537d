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


def icon_path(name: str = "gemini-cmr.png") -> Path:
    return RESOURCES / "icons" / name
