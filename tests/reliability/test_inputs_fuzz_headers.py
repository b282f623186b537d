"""Structured fuzzing of NIfTI headers: hypothesis draws dims, pixdim, sform/qform (codes, rows,
quaternions), datatype, bitpix, scl_slope/scl_inter, vox_offset and units, for NIfTI-1 and NIfTI-2,
raw and gzipped, with a few kB of data. `load_study` must return a valid Study or raise a one-line
`GeminiError`, never another exception, within a time and memory bound. The byte-level fuzzers in
test_fuzz_loaders.py mutate a valid file; these reach the header's absurd values directly (1e9 mm voxels,
2^40 voxels, scl_slope 1e38, NaN rows, skewed sforms, zero pixdim)."""

from __future__ import annotations

import gzip
import math
import tempfile
import time
import tracemalloc
import warnings
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gemini_cmr.core.errors import GeminiError
from gemini_cmr.core.io import load_study

FUZZ = settings(max_examples=150, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
SECONDS = 10.0
PEAK_BYTES = 64 * 1024**2

WILD_FLOATS = st.sampled_from([0.0, -1.5, 1e-9, 0.05, 1e9, 1e38, -1e38, math.nan, math.inf, -math.inf]) | \
    st.floats(width=32, allow_nan=True, allow_infinity=True)
DTYPES = [2, 4, 8, 16, 64, 256, 512, 768]  # uint8 int16 int32 float32 float64 int8 uint16 uint32
ODD_DTYPES = [0, 1, 32, 128, 1024, 1280, 1536, 1792, 2048, 2304, 9999, -1]  # bool complex rgb int64 ... invalid


def _odd(draw, one_in: int) -> bool:
    """True about once in `one_in` draws; False is hypothesis' simplest value, so shrinking and the early
    examples favour plausible headers (files that load) and the odd values stay a minority."""
    return draw(st.integers(0, one_in - 1)) == one_in - 1


@st.composite
def headers(draw):
    """(header fields, data length, gzip?, NIfTI-2?) with plausible values most of the time."""
    two = draw(st.booleans())
    big = [0, 1, 2, 400, 32767, -1, -32768] + ([10**9, 2**40] if two else [])
    if _odd(draw, 3):
        dims = tuple(draw(st.lists(st.sampled_from(big) | st.integers(0, 64), min_size=1, max_size=7)))
    else:
        dims = draw(st.tuples(st.integers(16, 28), st.integers(16, 28), st.integers(2, 4), st.integers(1, 3)))
    ndim = draw(st.integers(-1, 9)) if _odd(draw, 6) else len(dims)
    if _odd(draw, 3):
        spacing = draw(st.tuples(WILD_FLOATS, WILD_FLOATS, WILD_FLOATS))
    else:
        spacing = draw(st.tuples(st.floats(0.5, 3.0), st.floats(0.5, 3.0), st.floats(2.0, 12.0)))
    sform_code = draw(st.integers(-2, 5)) if _odd(draw, 5) else draw(st.sampled_from([1, 2, 0]))
    qform_code = draw(st.integers(-2, 5)) if _odd(draw, 5) else draw(st.sampled_from([0, 1]))
    if _odd(draw, 3):
        rows = np.array(draw(st.lists(WILD_FLOATS, min_size=12, max_size=12)), dtype=np.float64).reshape(3, 4)
    else:  # near-diagonal sform: mostly fine, sometimes skewed
        skew = draw(st.sampled_from([0.0, 1e-5, 0.005, 0.1, 1.0])) if _odd(draw, 3) else 0.0
        rows = np.diag([*spacing, 1.0])[:3].copy()
        rows[0, 1] = skew * (spacing[1] if np.isfinite(spacing[1]) else 1.0)
        rows[:, 3] = draw(st.tuples(st.floats(-200, 200), st.floats(-200, 200), st.floats(-200, 200)))
    if _odd(draw, 3):
        quatern = draw(st.tuples(WILD_FLOATS, WILD_FLOATS, WILD_FLOATS))
    else:
        quatern = draw(st.tuples(st.floats(-0.5, 0.5), st.floats(-0.5, 0.5), st.floats(-0.5, 0.5)))
    dtype = draw(st.sampled_from(ODD_DTYPES)) if _odd(draw, 5) else draw(st.sampled_from(DTYPES))
    slope = draw(WILD_FLOATS) if _odd(draw, 4) else draw(st.sampled_from([1.0, 0.0, math.nan, 2.5]))
    inter = draw(WILD_FLOATS) if _odd(draw, 4) else draw(st.sampled_from([0.0, math.nan, -100.0]))
    vox_offset = draw(st.sampled_from([0.0, 348.0, 400.0, 1e9, math.nan, -16.0])) if _odd(draw, 5) else None
    units = draw(st.integers(0, 255)) if _odd(draw, 5) else draw(st.sampled_from([10, 2, 0]))
    tr = draw(WILD_FLOATS) if _odd(draw, 5) else 40.0
    fields = dict(dims=dims, ndim=ndim, spacing=spacing, sform_code=sform_code, qform_code=qform_code, rows=rows,
                  quatern=quatern, dtype=dtype, slope=slope, inter=inter, vox_offset=vox_offset, units=units, tr=tr)
    data_choice = draw(st.integers(0, 4)) if _odd(draw, 3) else -1
    return fields, data_choice, draw(st.booleans()), two


def build(fields: dict, data_choice: int, gz: bool, two: bool) -> bytes:
    """Header bytes written field by field (no nibabel checks or fixes), then data of the claimed size when
    that is small (`data_choice` -1), else a few kB of random bytes."""
    hdr = (nib.Nifti2Header if two else nib.Nifti1Header)()
    dim = np.ones(8, dtype=np.int64)
    dims = fields["dims"][:7]
    dim[0] = fields["ndim"]
    dim[1:1 + len(dims)] = dims
    limit = np.iinfo(np.int64 if two else np.int16)
    hdr["dim"] = np.clip(dim, limit.min, limit.max)
    pixdim = np.ones(8, dtype=np.float64)
    pixdim[1:4] = fields["spacing"]
    pixdim[4] = fields["tr"]
    hdr["pixdim"] = pixdim.astype(np.float64 if two else np.float32)
    dtype = fields["dtype"]
    hdr["datatype"] = int(np.clip(dtype, -32768, 32767))
    try:
        itemsize = np.dtype(hdr.get_data_dtype()).itemsize
    except Exception:
        itemsize = 2
    hdr["bitpix"] = 8 * itemsize
    for key, value in (("sform_code", fields["sform_code"]), ("qform_code", fields["qform_code"])):
        hdr[key] = value
    for k, name in enumerate(("srow_x", "srow_y", "srow_z")):
        hdr[name] = fields["rows"][k]
    hdr["quatern_b"], hdr["quatern_c"], hdr["quatern_d"] = fields["quatern"]
    hdr["scl_slope"], hdr["scl_inter"] = fields["slope"], fields["inter"]
    hdr["xyzt_units"] = fields["units"]
    offset = hdr.single_vox_offset if fields["vox_offset"] is None else fields["vox_offset"]
    if two and not np.isfinite(offset):
        offset = -16.0  # NIfTI-2 stores vox_offset as int64
    hdr["vox_offset"] = offset
    head = hdr.binaryblock + b"\x00" * 4
    n = float(np.prod([max(int(d), 0) for d in dims], dtype=np.float64)) * itemsize
    rng = np.random.default_rng(len(head) + int(n) % 9973)
    if data_choice == -1 and n <= 256 * 1024:
        values = rng.normal(500, 100, int(n) // max(itemsize, 1) + 1).astype(np.float64)
        data = values.astype(_dtype_or(hdr, np.float32)).tobytes()[: int(n)]
    else:
        data = rng.integers(0, 256, 1024 * max(data_choice, 0) + 17, dtype=np.uint8).tobytes()
    if np.isfinite(offset) and len(head) < offset < 4096:
        head += b"\x00" * (int(offset) - len(head))
    raw = head + data
    return gzip.compress(raw, compresslevel=1, mtime=0) if gz else raw


def _dtype_or(hdr, default):
    try:
        dt = np.dtype(hdr.get_data_dtype())
        return dt if dt.fields is None else default
    except Exception:
        return default


OUTCOMES: dict[str, int] = {}


def check(path: Path) -> str:
    """One drawn file: a valid Study or a one-line GeminiError; a warning that would reach stderr (numpy's
    RuntimeWarning, nibabel's) is an error here."""
    tracemalloc.start()
    t0 = time.perf_counter()
    try:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error")
                study = load_study(path)
            outcome = "loaded"
        except GeminiError as exc:
            msg = str(exc)
            assert msg and "\n" not in msg and len(msg.splitlines()) == 1, msg
            outcome = "refused"
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    seconds = time.perf_counter() - t0
    assert seconds < SECONDS, f"{seconds:.1f} s"
    assert peak < PEAK_BYTES, f"peak {peak / 1024**2:.0f} MB"
    if outcome == "loaded":
        assert study.image.ndim == 4 and study.n_slices >= 2 and np.all(np.isfinite(study.image))
        assert study.image.dtype == np.float32 and np.all(np.isfinite(study.affine))
    OUTCOMES[outcome] = OUTCOMES.get(outcome, 0) + 1
    return outcome


@FUZZ
@given(headers())
def test_fuzz_nifti_header_fields(drawn):
    fields, data_choice, gz, two = drawn
    with tempfile.TemporaryDirectory() as tmp:
        p = Path(tmp) / ("fuzz.nii.gz" if gz else "fuzz.nii")
        p.write_bytes(build(fields, data_choice, gz, two))
        check(p)


def test_header_fuzzing_reached_both_outcomes():
    """Not vacuous: some drawn headers load, others are refused (runs after the fuzz test)."""
    if not OUTCOMES:
        pytest.skip("the header fuzz test did not run in this session")
    assert OUTCOMES.get("loaded", 0) >= 10 and OUTCOMES.get("refused", 0) >= 10, OUTCOMES
