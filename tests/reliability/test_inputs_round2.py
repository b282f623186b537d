"""Bad input beyond what the bad-input table (cases.py, run through info, super-resolve, train and the
app) cannot say on its own. Real-size bombs under lowered caps with memory and time bounds; the caps'
environment variables; duplicate DICOM images; FIFOs and device links beside a good series (loads, no
hang); 1,100 nested folders; one-line messages (logging, warnings, file names, `view --size`); the real
scanner data still loading as before."""

from __future__ import annotations

import copy
import json
import os
import time
import tracemalloc
import zipfile
from pathlib import Path

import numpy as np
import pytest

from gemini_cmr.core.errors import GeminiError, StudyError
from gemini_cmr.core.io import load_study
from tests.core.io import dicom_factory as dfac
from tests.reliability import cases
from tests.reliability.conftest import REPO, assert_one_line_error, run_cli, run_cli_process

SHARED = REPO.parent / "shared" / "data"
MB = 1024**2


def _peak(fn) -> tuple[int, float]:
    """Peak Python/numpy allocation (bytes) and seconds of `fn()`, which must raise `StudyError`."""
    tracemalloc.start()
    t0 = time.perf_counter()
    try:
        with pytest.raises(StudyError) as info:
            fn()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    fn.message = str(info.value)
    return peak, time.perf_counter() - t0


def _remove_tree(top: Path) -> None:
    """rmtree without recursion (shutil.rmtree overflows Python's stack on 1,100 nested folders)."""
    stack = [top]
    while stack:
        d = stack[-1]
        subdirs = [e.path for e in os.scandir(d) if e.is_dir(follow_symlinks=False)]
        if subdirs:
            stack.extend(Path(s) for s in subdirs)
            continue
        for e in os.scandir(d):
            os.unlink(e.path)
        os.rmdir(d)
        stack.pop()


# --- 1. NIfTI geometry: tolerances real data never trips ------------------------------------------------------
@pytest.mark.parametrize("degrees,ok", [(0.0, True), (0.004, True), (0.3, True), (1.0, False), (6.0, False)])
@pytest.mark.parametrize("axis", [1, 2])
def test_skew_tolerance(degrees, ok, axis, tmp_path):
    """Axes within 0.6 degrees of perpendicular load (above ITK's 0.006 degrees with a warning); more is refused."""
    p = cases._nifti_with_affine(tmp_path, "s.nii.gz", cases.skewed_affine(degrees, axis))
    if ok:
        study = load_study(p)
        warned = any("perpendicular" in w for w in study.meta.warnings)
        assert warned == (degrees > 0.006), study.meta.warnings
    else:
        with pytest.raises(StudyError, match="non-orthogonal voxel axes"):
            load_study(p)


def test_large_slab_loads_with_a_warning_and_caps_can_be_raised(tmp_path, monkeypatch, capsys):
    """A 352 mm slab loads with a warning; the 4 m slab is refused, and loads once GEMINI_CMR_MAX_EXTENT_MM
    allows it (the documented way to raise a cap)."""
    data = np.zeros((16, 16, 44, 2), np.uint8)
    data[4:12, 4:12] = 50
    study = load_study(cases._nifti_with_affine(tmp_path, "tall.nii.gz", np.diag([1.5, 1.5, 8.0, 1.0]), data))
    assert any("slab is 352 mm" in w for w in study.meta.warnings), study.meta.warnings
    slab = cases.nifti_slab_4m(tmp_path)
    rc, _, err, _ = run_cli(["info", slab], capsys)
    assert "GEMINI_CMR_MAX_EXTENT_MM" in assert_one_line_error(rc, err, ("slab_4m.nii.gz", "4000 mm"))
    monkeypatch.setenv("GEMINI_CMR_MAX_EXTENT_MM", "5000")
    assert load_study(slab).n_slices == 400


def test_pixdim_zero_with_an_sform_uses_the_sform(tmp_path, capsys):
    import nibabel as nib

    img = nib.Nifti1Image(cases.cine_array(), np.diag([1.5, 1.5, 8.0, 1.0]))
    img.set_sform(np.diag([1.5, 1.5, 8.0, 1.0]), code=1)
    img.set_qform(None, code=0)
    img.header["pixdim"][1:4] = 0
    p = tmp_path / "zero_pixdim_sform.nii"
    p.write_bytes(img.to_bytes())
    rc, out, err, _ = run_cli(["info", "--json", p], capsys)
    assert rc == 0 and err == "", err
    info = json.loads(out)
    assert info["spacing_mm"] == [1.5, 1.5, 8.0]
    assert any("used the sform" in w for w in info["warnings"])


def test_memory_estimate_refuses_absurd_grids_at_once():
    """Studies built in memory bypass the loader: the memory plan refuses 1e9 mm voxels in well under a
    second (it spent 45 s enumerating depth windows)."""
    from gemini_cmr.core.memory import estimate_memory
    from gemini_cmr.core.study import Study

    study = Study(np.zeros((3, 4, 20, 24), np.float32), np.diag([1e9, 1e9, 1e9, 1.0]))
    config = json.loads((REPO / "resources" / "models" / "gemini-phantom" / "config.json").read_text())
    t0 = time.perf_counter()
    with pytest.raises(GeminiError, match="implausible geometry"):
        estimate_memory(study, config)
    assert time.perf_counter() - t0 < 1.0


# --- 2. caps before allocating, with real (small) bombs under lowered caps ---------------------------------
def test_gzip_bomb_refused_before_decompressing(tmp_path, monkeypatch, capsys):
    """64 MB of zeros in a 65 kB .nii.gz, GEMINI_CMR_MAX_IMAGE_BYTES=8 MiB: refused from the header, less than
    1 MB allocated, within a second."""
    import gzip

    import nibabel as nib

    raw = nib.Nifti1Image(np.zeros((128, 128, 64, 64), np.uint8), np.diag([1.5, 1.5, 8.0, 1.0])).to_bytes()
    p = tmp_path / "bomb.nii.gz"
    p.write_bytes(gzip.compress(raw, compresslevel=9))
    del raw
    assert p.stat().st_size < 200_000
    monkeypatch.setenv("GEMINI_CMR_MAX_IMAGE_BYTES", str(8 * MB))

    def load():
        load_study(p)

    peak, seconds = _peak(load)
    assert peak < MB and seconds < 1.0, (peak, seconds)
    assert "GEMINI_CMR_MAX_IMAGE_BYTES" in load.message
    rc, _, err, _ = run_cli(["info", p], capsys)
    assert_one_line_error(rc, err, ("bomb.nii.gz", "limit"))


def test_vox_offset_bomb_never_reaches_nibabel(tmp_path):
    """A 200 kB .nii.gz whose declared extensions hold 200 MB of real zeros: refused from the header (nibabel
    would read the whole block while loading the header)."""
    p = cases.nifti_vox_offset_bomb(tmp_path)

    def load():
        load_study(p)

    peak, seconds = _peak(load)
    assert peak < 4 * MB and seconds < 2.0, (peak, seconds)


def test_zip_member_bomb_never_decompressed(tmp_path, monkeypatch):
    """A DICOM member of 32 MB (32 kB deflated) under GEMINI_CMR_MAX_FILE_BYTES=4 MiB: refused by its
    directory entry; a large non-DICOM member beside a good series is skipped without being inflated."""
    monkeypatch.setenv("GEMINI_CMR_MAX_FILE_BYTES", str(4 * MB))
    bomb = tmp_path / "bomb.zip"
    bomb.write_bytes(cases.zip_dicom_member_bomb_bytes(32 * MB))
    assert bomb.stat().st_size < 100_000

    def load():
        load_study(bomb)

    peak, seconds = _peak(load)
    assert peak < 2 * MB and seconds < 2.0, (peak, seconds)
    assert "IM_0001.dcm" in load.message and "GEMINI_CMR_MAX_FILE_BYTES" in load.message

    good = tmp_path / "good.zip"
    files = cases.dicom_cine(tmp_path / "src")
    with zipfile.ZipFile(good, "w", zipfile.ZIP_DEFLATED) as z:
        for f in files:
            z.write(f, f.name)
        report = zipfile.ZipInfo("report.pdf")
        report.compress_type = zipfile.ZIP_DEFLATED
        with z.open(report, "w") as f:
            for _ in range(32):
                f.write(bytes(MB))
    tracemalloc.start()
    try:
        study = load_study(good)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert study.image.shape == (5, 4, 20, 24)
    assert peak < 16 * MB, peak


@pytest.mark.parametrize("name", ["nifti-vox-offset-bomb", "zip-dicom-600MB-member"])
def test_bombs_at_default_caps_keep_a_real_process_small(name, tmp_path):
    """At the default caps, in a real process: 200 MB of declared NIfTI extensions (in a 0.2 MB .nii.gz) and a
    600 MB DICOM member (in a 0.6 MB zip) are refused with the peak RSS near an idle CLI's (~60 MB)."""
    import subprocess
    import sys

    from tests.reliability.conftest import child_env

    case = {c.name: c for c in cases.CASES}[name]
    code = ("import sys\nfrom gemini_cmr.cli.main import main\nrc = main(sys.argv[1:])\n"
            "hwm = [l for l in open('/proc/self/status') if l.startswith('VmHWM')][0].split()[1]\n"
            "print(hwm)\nsys.exit(rc)\n")
    proc = subprocess.run([sys.executable, "-c", code, "info", str(case.make(tmp_path))], cwd=REPO, env=child_env(),
                          capture_output=True, text=True, timeout=90)
    assert_one_line_error(proc.returncode, proc.stderr, case.expect)
    peak_mb = int(proc.stdout.strip()) / 1024
    assert peak_mb < 150, f"peak RSS {peak_mb:.0f} MB"


@pytest.mark.parametrize("env,value,expect", [
    ("GEMINI_CMR_MAX_FILE_BYTES", 1000, "file too large"),
    ("GEMINI_CMR_MAX_TOTAL_BYTES", 10_000, "too much data"),
    ("GEMINI_CMR_MAX_FILES", 5, "more than 5 files"),
    ("GEMINI_CMR_MAX_VOXELS", 1000, "study too large"),
    ("GEMINI_CMR_MAX_IMAGE_BYTES", 1000, "study too large"),
])
def test_dicom_caps_are_adjustable(env, value, expect, tmp_path, monkeypatch, capsys):
    """Each cap refuses a good (small) series once lowered below it, naming its environment variable."""
    folder = tmp_path / "dcm"
    cases.dicom_cine(folder)
    assert load_study(folder).n_phases == 5
    monkeypatch.setenv(env, str(value))
    rc, _, err, _ = run_cli(["info", folder], capsys)
    line = assert_one_line_error(rc, err, ("dcm", expect))
    assert env in line


def test_zip_unpack_total_is_capped(tmp_path, monkeypatch):
    p = tmp_path / "nifti.zip"
    with zipfile.ZipFile(p, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("subject/image.nii", cases.nifti_bytes(cases.cine_array(t=4, z=6, y=64, x=64), gz=False))
    assert load_study(p).n_phases == 4
    monkeypatch.setenv("GEMINI_CMR_MAX_TOTAL_BYTES", str(100_000))
    with pytest.raises(StudyError, match="unpacks to too much data"):
        load_study(p)


def test_bad_cap_value_is_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("GEMINI_CMR_MAX_VOXELS", "lots")
    rc, _, err, _ = run_cli(["info", cases.write_nifti(tmp_path / "ok.nii.gz", cases.cine_array())], capsys)
    assert_one_line_error(rc, err, ("GEMINI_CMR_MAX_VOXELS", "positive number"))


def test_header_claims_refused_in_a_real_process(tmp_path):
    """pixdim 1e9 (45 s in the memory estimate) and a 4 m slab (167 s): refused in seconds, one line."""
    for make, name in ((cases.nifti_pixdim_1e9, "pixdim_1e9.nii.gz"), (cases.nifti_slab_4m, "slab_4m.nii.gz")):
        t0 = time.perf_counter()
        proc = run_cli_process(["super-resolve", make(tmp_path), "--out", tmp_path / "out", "--quiet"], timeout=120)
        assert_one_line_error(proc.returncode, proc.stderr, (name,), time.perf_counter() - t0, limit_s=30)
        assert not (tmp_path / "out").exists()


# --- 3. duplicate images ----------------------------------------------------------------------------------------
def _reexported(datasets, noise: int = 0):
    """The same images with new SOPInstanceUIDs (optionally +-noise on a few pixels: a lossy re-export)."""
    from pydicom.uid import generate_uid

    out = []
    rng = np.random.default_rng(3)
    for ds in datasets:
        ds = copy.deepcopy(ds)
        uid = generate_uid()
        ds.SOPInstanceUID = uid
        ds.file_meta.MediaStorageSOPInstanceUID = uid
        if noise:
            px = np.frombuffer(ds.PixelData, "<i2").copy()
            idx = rng.choice(px.size, px.size // 10, replace=False)
            px[idx] += rng.integers(-noise, noise + 1, idx.size).astype(np.int16)
            ds.PixelData = px.tobytes()
        out.append(ds)
    return out


@pytest.mark.parametrize("noise", [0, 2])
def test_series_exported_twice_loads_once(noise, tmp_path, capsys):
    """The same series twice with new SOPInstanceUIDs loaded as 10 interleaved phases (LVEF 100%): now 5
    phases, a warning, and the image of one copy."""
    spec = dfac.CineSpec()
    datasets = dfac.make_cine(spec)
    dfac.write(tmp_path / "study" / "export1", datasets)
    dfac.write(tmp_path / "study" / "export2", _reexported(datasets, noise), prefix="RE")
    once = tmp_path / "once"
    dfac.write(once, datasets)
    study = load_study(tmp_path / "study")
    assert study.image.shape == (5, 4, 20, 24)
    np.testing.assert_array_equal(study.image, load_study(once).image)
    assert any("ignored 20 duplicate image(s)" in w for w in study.meta.warnings), study.meta.warnings
    rc, out, err, _ = run_cli(["info", "--json", tmp_path / "study"], capsys)
    assert rc == 0 and json.loads(out)["phases"] == 5


def test_same_trigger_time_different_images_are_kept(tmp_path):
    """Two acquisitions at one trigger time (different pixels) are not duplicates: kept, and reported."""
    datasets = dfac.make_cine(dfac.CineSpec(n_slices=2, n_phases=4))
    for ds in datasets:
        ds.TriggerTime = str(int(ds.InstanceNumber - 1) % 4 // 2 * 40)
    dfac.write(tmp_path, datasets)
    study = load_study(tmp_path)
    assert study.n_phases == 4
    assert not any("duplicate image" in w for w in study.meta.warnings)
    assert any("distinct TriggerTimes" in w for w in study.meta.warnings)


# --- 4. special files: no hang, no endless read ---------------------------------------------------------------
def test_fifo_and_device_links_beside_a_series(tmp_path):
    """A FIFO and .dcm links to /dev/zero and /dev/urandom among a good series: the series loads (they are
    skipped with a warning) in a real process, in seconds (the FIFO blocked forever, /dev/zero spun,
    /dev/urandom grew 200 MB/s)."""
    folder = tmp_path / "dcm"
    cases.dicom_cine(folder)
    os.mkfifo(folder / "IM_9000.dcm")
    os.symlink("/dev/zero", folder / "IM_9001.dcm")
    os.symlink("/dev/urandom", folder / "IM_9002.dcm")
    t0 = time.perf_counter()
    proc = run_cli_process(["info", "--json", folder], timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert time.perf_counter() - t0 < 30
    info = json.loads(proc.stdout)
    assert info["shape"] == [5, 4, 20, 24]
    assert any("skipped 3 entries that are not regular files" in w for w in info["warnings"]), info["warnings"]


@pytest.mark.parametrize("name", ["fifo-path", "fifo-in-folder", "links-to-devices", "link-to-dev-zero"])
def test_special_files_refused_in_a_real_process(name, tmp_path):
    case = {c.name: c for c in cases.CASES}[name]
    proc = run_cli_process(["info", case.make(tmp_path)], timeout=60)
    assert_one_line_error(proc.returncode, proc.stderr, case.expect)


def test_fifo_swapped_in_after_the_walk_does_not_block(tmp_path):
    """The file opener itself never blocks: O_NONBLOCK, then only regular files are read."""
    from gemini_cmr.core.io.loader import _file_opener

    os.mkfifo(tmp_path / "late.dcm")
    with pytest.raises(StudyError, match="FIFO"):
        _file_opener(tmp_path / "late.dcm")()


# --- 5. one line -------------------------------------------------------------------------------------------
def test_1100_nested_folders(tmp_path, capsys):
    """1,100 nested folders gave a RecursionError traceback: one line, in a real process too."""
    top = cases.nested_folders(tmp_path, depth=1100)
    try:
        rc, out, err, dt = run_cli(["info", top], capsys)
        assert_one_line_error(rc, err, ("deep", "nested more than 32 levels", "GEMINI_CMR_MAX_DEPTH"), dt)
        rc, _, err, dt = run_cli(["super-resolve", top, "--out", tmp_path / "out", "--quiet"], capsys)
        assert_one_line_error(rc, err, ("deep", "nested"), dt)
        proc = run_cli_process(["info", top], timeout=60)
        assert_one_line_error(proc.returncode, proc.stderr, ("deep", "nested"))
    finally:
        _remove_tree(top)


def test_nesting_within_the_cap_still_loads(tmp_path, monkeypatch):
    top = tmp_path / "archive"
    folder = top / "a" / "b" / "c" / "series"
    cases.dicom_cine(folder)
    (top / "a" / "README.txt").write_text("export")  # a file beside: the whole tree is walked
    assert load_study(top).n_phases == 5
    monkeypatch.setenv("GEMINI_CMR_MAX_DEPTH", "2")
    with pytest.raises(StudyError, match="nested more than 2 levels"):
        load_study(top)


def test_newline_in_file_name_is_escaped(tmp_path, capsys):
    p = cases.newline_name(tmp_path)
    rc, _, err, _ = run_cli(["info", p], capsys)
    line = assert_one_line_error(rc, err, ("bad\\nname.nii.gz",))
    assert "\n" not in line
    with pytest.raises(StudyError) as info:
        load_study(p)
    assert "\n" not in str(info.value)  # the app's dialog shows the same one line


def test_escape_sequences_and_undecodable_names(tmp_path, capsys):
    p = tmp_path / "evil\x1b[31m\udcff.nii.gz"
    p.write_bytes(cases.RNG_BYTES)
    rc, _, err, _ = run_cli(["info", p], capsys)
    line = assert_one_line_error(rc, err, ("evil\\x1b[31m\\xff.nii.gz",))
    assert "\x1b" not in line


@pytest.mark.parametrize("case_name", ["dicom-corrupt-jpeg2000", "dicom-corrupt-jpeg-lossless", "nifti-float64-1e300",
                                       "nifti-scl-slope-1e38",
                                       "nifti-pixdim-zero", "dicom-rescale-slope-1e38"])
def test_library_chatter_stays_off_stderr_in_a_real_process(case_name, tmp_path):
    """pydicom's logged traceback, numpy's RuntimeWarning and nibabel's doubled report: gone; one line left."""
    case = {c.name: c for c in cases.CASES}[case_name]
    proc = run_cli_process(["info", case.make(tmp_path)], timeout=60)
    assert_one_line_error(proc.returncode, proc.stderr, case.expect)


@pytest.mark.parametrize("size", ["abc", "1600", "0x0", "1600x", "99999x1000", "-5x10"])
def test_view_size_is_validated(size, capsys):
    rc, _, err, _ = run_cli(["view", f"--size={size}"], capsys)
    assert_one_line_error(rc, err, ("--size", "widthxheight"))


def test_view_size_parses():
    from gemini_cmr.cli.view import parse_size

    assert parse_size("1600x1000") == (1600, 1000) and parse_size(" 800X600 ") == (800, 600)
    assert parse_size(None) is None


# --- real scanner data: unchanged ----------------------------------------------------------------------------
REAL = [
    ("acdc/training/patient001", (2, 10, 256, 216), None),
    ("acdc/training/patient090", (12, 7, 224, 154), None),
    ("acdc/training/patient090/patient090_frame04.nii.gz", (1, 7, 224, 154), None),
    ("sunnybrook/SCD0000101", (20, 12, 256, 256), None),
    ("sunnybrook/SCD0000401", (20, 11, 256, 256), None),
    ("philips_partial/LVSA1", (30, 3, 288, 288), "--allow-incomplete"),
]
NEW_WARNINGS = ("perpendicular", "slab is", "duplicate image", "regular file", "repaired on reading",
                "pixdim gives")


@pytest.mark.parametrize("rel,shape,flag", REAL, ids=[r[0] for r in REAL])
def test_real_scanner_data_loads_as_before(rel, shape, flag, capsys):
    path = SHARED / rel
    if not path.exists():
        pytest.skip(f"{path} not present (real data lives in ../shared/data)")
    rc, out, err, _ = run_cli(["info", "--json", path, *([flag] if flag else [])], capsys)
    assert rc == 0 and err == "", err
    info = json.loads(out)
    assert tuple(info["shape"]) == shape
    assert not [w for w in info["warnings"] if any(k in w for k in NEW_WARNINGS)], info["warnings"]
