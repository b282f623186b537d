"""Package layout: the repository's top-level folders install under one namespace.

    core/      -> gemini_cmr.core       (engine, no Qt)
    cli/       -> gemini_cmr.cli        (the `gemini-cmr` command line)
    app/       -> gemini_cmr.app        (PySide6 desktop app)
    resources/ -> gemini_cmr.resources  (bundled models, demo study, icons: package data)

Everything else (metadata, dependencies, entry points) is in pyproject.toml.
"""

from pathlib import Path

from setuptools import find_packages, setup

ROOT = Path(__file__).resolve().parent
FOLDERS = ("core", "cli", "app", "resources")

package_dir = {f"gemini_cmr.{folder}": folder for folder in FOLDERS}
packages = []
for folder in FOLDERS:
    packages.append(f"gemini_cmr.{folder}")
    packages += [f"gemini_cmr.{folder}.{sub}" for sub in find_packages(str(ROOT / folder))]

setup(package_dir=package_dir, packages=packages)
