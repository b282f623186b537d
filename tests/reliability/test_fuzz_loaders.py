"""Bounded fuzzing of the loaders: hypothesis mutates bytes of small valid NIfTI and DICOM files (and
truncates them); `load_study` must return a valid Study or raise `GeminiError`, never anything else."""

from __future__ import annotations

import shutil
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gemini_cmr.core.errors import GeminiError
from gemini_cmr.core.io import load_study
from tests.reliability import cases

FUZZ = settings(max_examples=80, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
FUZZ_HEADER = settings(FUZZ, max_examples=120)

_TEMPLATES = Path(tempfile.mkdtemp(prefix="gemini-fuzz-templates-"))
NIFTI = cases.nifti_bytes(cases.cine_array(t=2, z=3, y=16, x=16), gz=False)
NIFTI_GZ = cases.nifti_bytes(cases.cine_array(t=2, z=3, y=16, x=16), gz=True)
DICOM_DIR = _TEMPLATES / "dcm"


def _deterministic_template() -> None:
    """The DICOM template with fixed UIDs, so the same mutants are tried in every run."""
    from itertools import count

    from pydicom.uid import generate_uid

    from tests.core.io import dicom_factory

    n = count()
    real = dicom_factory.generate_uid
    dicom_factory.generate_uid = lambda: generate_uid(entropy_srcs=[f"gemini-fuzz-{next(n)}"])
    try:
        cases.dicom_cine(DICOM_DIR, n_slices=3, n_phases=2, rows=16, cols=16)
    finally:
        dicom_factory.generate_uid = real


_deterministic_template()
DICOM_FILES = sorted(DICOM_DIR.iterdir())
DICOM = DICOM_FILES[0].read_bytes()


def mutations(size: int, head: int | None = None):
    """A few (position, byte) edits, optionally within the first `head` bytes, and an optional cut."""
    pos = st.integers(0, (head or size) - 1)
    return st.tuples(st.lists(st.tuples(pos, st.integers(0, 255)), min_size=1, max_size=8),
                     st.none() | st.integers(0, size))


def mutate(data: bytes, edits) -> bytes:
    changes, cut = edits
    b = bytearray(data)
    for p, v in changes:
        if p < len(b):
            b[p] = v
    return bytes(b if cut is None else b[:cut])


def check(path: Path) -> str:
    try:
        study = load_study(path)
    except GeminiError as exc:
        msg = str(exc)
        assert msg and "\n" not in msg
        return "refused"
    # whatever loads is valid for later stages
    assert study.image.ndim == 4 and study.n_slices >= 2 and np.all(np.isfinite(study.image))
    return "loaded"


OUTCOMES: dict[str, dict[str, int]] = {}


def _count(kind: str, outcome: str) -> None:
    OUTCOMES.setdefault(kind, {}).setdefault(outcome, 0)
    OUTCOMES[kind][outcome] += 1


@FUZZ_HEADER
@given(mutations(len(NIFTI), head=352))
def test_fuzz_nifti_header(edits):
    with tempfile.TemporaryDirectory() as tmp:
        p = Path(tmp) / "fuzz.nii"
        p.write_bytes(mutate(NIFTI, edits))
        _count("nifti-header", check(p))


@FUZZ
@given(mutations(len(NIFTI)))
def test_fuzz_nifti_anywhere(edits):
    with tempfile.TemporaryDirectory() as tmp:
        p = Path(tmp) / "fuzz.nii"
        p.write_bytes(mutate(NIFTI, edits))
        _count("nifti", check(p))


@FUZZ
@given(mutations(len(NIFTI_GZ)))
def test_fuzz_nifti_gz(edits):
    with tempfile.TemporaryDirectory() as tmp:
        p = Path(tmp) / "fuzz.nii.gz"
        p.write_bytes(mutate(NIFTI_GZ, edits))
        _count("nifti-gz", check(p))


@FUZZ_HEADER
@given(mutations(len(DICOM), head=min(len(DICOM), 1200)), st.integers(0, len(DICOM_FILES) - 1))
def test_fuzz_dicom_in_folder(edits, which):
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "dcm"
        shutil.copytree(DICOM_DIR, folder)
        target = folder / DICOM_FILES[which].name
        target.write_bytes(mutate(target.read_bytes(), edits))
        _count("dicom", check(folder))


@FUZZ
@given(mutations(len(DICOM)))
def test_fuzz_dicom_zip(edits):
    with tempfile.TemporaryDirectory() as tmp:
        p = Path(tmp) / "study.zip"
        with zipfile.ZipFile(p, "w") as z:
            for i, f in enumerate(DICOM_FILES):
                data = f.read_bytes()
                z.writestr(f.name, mutate(data, edits) if i == 0 else data)
        _count("dicom-zip", check(p))


@pytest.mark.parametrize("kind", ["nifti-header", "dicom"])
def test_fuzzing_reached_both_outcomes(kind):
    """The fuzzers are not vacuous: some mutants still load, others are refused (run after the fuzz tests)."""
    seen = OUTCOMES.get(kind, {})
    if not seen:
        pytest.skip("fuzz tests did not run in this session")
    assert seen.get("loaded", 0) > 0 and seen.get("refused", 0) > 0, seen
