"""Bad inputs for `gemini-cmr info`, `super-resolve` and `train gemini` (the app's open action is in
test_app_open.py). Every case must end with exit status 2, exactly one stderr line naming the file and
the problem, no traceback, in bounded time, and nothing written to --out."""

from __future__ import annotations

import json
import shutil
import sys
import tracemalloc
from pathlib import Path

import pytest

from tests.reliability import cases
from tests.reliability.cases import CASES, Case
from tests.reliability.conftest import (
    REPO,
    assert_one_line_error,
    child_env,
    leftovers,
    run_cli,
    run_cli_process,
    tree,
)

NIFTI_CASES = [c for c in CASES if c.nifti]


@pytest.mark.parametrize("case", CASES, ids=str)
def test_info_refuses(case: Case, tmp_path, capsys):
    path = case.make(tmp_path)
    rc, out, err, dt = run_cli(["info", path], capsys)
    assert out == ""
    assert_one_line_error(rc, err, case.expect, dt)


@pytest.mark.parametrize("case", CASES, ids=str)
def test_super_resolve_refuses_and_writes_nothing(case: Case, tmp_path, capsys):
    path = case.make(tmp_path / "in" if (tmp_path / "in").mkdir() is None else tmp_path)
    out_dir = tmp_path / "results"
    rc, _, err, dt = run_cli(["super-resolve", path, "--out", out_dir, "--quiet", "--device", "cpu"], capsys)
    assert_one_line_error(rc, err, case.expect, dt)
    assert not out_dir.exists()
    assert leftovers(tmp_path, "results") == []


def test_super_resolve_keeps_existing_outputs(tmp_path, capsys):
    out_dir = tmp_path / "results"
    out_dir.mkdir()
    (out_dir / "sr_image.nii.gz").write_bytes(b"previous run")
    (out_dir / "notes.txt").write_text("mine")
    before = tree(out_dir)
    bad = cases.nifti_truncated_gz(tmp_path)
    rc, _, err, _ = run_cli(["super-resolve", bad, "--out", out_dir, "--quiet"], capsys)
    assert_one_line_error(rc, err, ("cut.nii.gz",))
    assert tree(out_dir) == before
    assert leftovers(tmp_path, "results") == []


@pytest.mark.parametrize("case", ["nifti-claims-2.6GB-gz", "nifti-claims-2.6GB-raw", "nifti-1e5-phases"])
def test_absurd_sizes_refused_before_allocating(case, tmp_path):
    """Peak Python/numpy allocation while refusing a header that claims gigabytes stays under 50 MB."""
    from gemini_cmr.core.errors import StudyError
    from gemini_cmr.core.io import load_study

    path = {c.name: c for c in CASES}[case].make(tmp_path)
    tracemalloc.start()
    try:
        with pytest.raises(StudyError):
            load_study(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 50 * 1024**2, f"peak {peak / 1024**2:.0f} MB"


# --- real processes: the exit status and stderr as a shell sees them ----------------------------------------
PROCESS_CASES = ["nifti-truncated-gz", "random-bytes.dcm", "zip-dotdot", "symlink-loop", "dicom-no-position"]


@pytest.mark.parametrize("name", PROCESS_CASES)
def test_info_process_exit_status(name, tmp_path):
    case = {c.name: c for c in CASES}[name]
    proc = run_cli_process(["info", case.make(tmp_path)], timeout=90)
    assert proc.stdout == ""
    assert_one_line_error(proc.returncode, proc.stderr, case.expect)


def test_huge_claim_process_memory(tmp_path):
    """In a real process: refusing a 2.6 GB claim in a 1 kB file must not raise the peak RSS by 1 GB."""
    import subprocess

    path = cases.nifti_large_claim_small_file(tmp_path)
    # VmHWM is this process's own peak (ru_maxrss would carry over the forking pytest process's peak).
    code = ("import sys\nfrom gemini_cmr.cli.main import main\nrc = main(sys.argv[1:])\n"
            "hwm = [l for l in open('/proc/self/status') if l.startswith('VmHWM')][0].split()[1]\n"
            "print(hwm, file=sys.stdout)\nsys.exit(rc)\n")
    proc = subprocess.run([sys.executable, "-c", code, "info", str(path)], cwd=REPO, env=child_env(),
                          capture_output=True, text=True, timeout=90)
    assert_one_line_error(proc.returncode, proc.stderr, ("claims.nii.gz",))
    peak_kb = int(proc.stdout.strip())
    assert peak_kb < 1024 * 1024, f"peak RSS {peak_kb / 1024:.0f} MB"


# --- permissions ------------------------------------------------------------------------------------------
def _deny_reads_under(monkeypatch, root: Path) -> None:
    """Fault injection: reading any file under `root` raises PermissionError (tests run as root, where
    chmod 000 does not stop reads)."""
    import builtins

    real_open = builtins.open
    root = str(root.resolve())

    def guarded(file, mode="r", *a, **kw):
        if isinstance(file, (str, Path)) and str(Path(file).resolve()).startswith(root) and "r" in mode:
            raise PermissionError(13, "Permission denied", str(file))
        return real_open(file, mode, *a, **kw)

    monkeypatch.setattr(builtins, "open", guarded)


PERMISSION_CASES = {
    "unreadable-nifti": (lambda tmp: cases.write_nifti(tmp / "locked.nii.gz", cases.cine_array()), ("locked.nii.gz",)),
    "unreadable-dicom-folder": (lambda tmp: cases.dicom_cine(tmp / "locked") and tmp / "locked", ("locked",)),
    "unreadable-zip": (lambda tmp: _zip_of_dicoms(tmp), ("locked.zip",)),
}


def _zip_of_dicoms(tmp: Path) -> Path:
    import zipfile

    files = cases.dicom_cine(tmp / "src")
    p = tmp / "locked.zip"
    with zipfile.ZipFile(p, "w") as z:
        for f in files:
            z.write(f, f.name)
    return p


@pytest.mark.parametrize("name", sorted(PERMISSION_CASES))
def test_unreadable_files(name, tmp_path, capsys, monkeypatch):
    make, expect = PERMISSION_CASES[name]
    path = make(tmp_path)
    _deny_reads_under(monkeypatch, tmp_path)
    rc, _, err, dt = run_cli(["info", path], capsys)
    line = assert_one_line_error(rc, err, expect, dt)
    assert "permission denied" in line.lower()


def test_unlistable_folder(tmp_path, capsys, monkeypatch):
    folder = tmp_path / "locked"
    cases.dicom_cine(folder)
    real_iterdir = Path.iterdir

    def iterdir(self):
        if self == folder:
            raise PermissionError(13, "Permission denied", str(self))
        return real_iterdir(self)

    monkeypatch.setattr(Path, "iterdir", iterdir)
    rc, _, err, dt = run_cli(["info", folder], capsys)
    assert "permission denied" in assert_one_line_error(rc, err, ("locked",), dt).lower()


@pytest.mark.skipif(not hasattr(__import__("os"), "geteuid") or __import__("os").geteuid() == 0,
                    reason="running as root: chmod 000 does not block reads (covered by fault injection above)")
def test_chmod_000(tmp_path, capsys):
    p = cases.write_nifti(tmp_path / "locked.nii.gz", cases.cine_array())
    p.chmod(0)
    try:
        rc, _, err, dt = run_cli(["info", p], capsys)
        assert_one_line_error(rc, err, ("locked.nii.gz",), dt)
    finally:
        p.chmod(0o644)


# --- train gemini -------------------------------------------------------------------------------------------
def _dataset(tmp: Path, lr_image: Path | None) -> Path:
    """A one-subject paired dataset whose LR image is `lr_image` (HR files valid, on a plausible grid)."""
    import numpy as np

    root = tmp / "data"
    sub = root / "sub-000"
    sub.mkdir(parents=True)
    hr = cases.cine_array(t=3, z=16, y=24, x=28)
    cases.write_nifti(sub / "hr_image.nii.gz", hr, np.diag([1.25, 1.25, 2.0, 1.0]))
    lab = (hr > 500).astype(np.uint8)
    cases.write_nifti(sub / "hr_labels.nii.gz", lab, np.diag([1.25, 1.25, 2.0, 1.0]))
    if lr_image is not None:
        shutil.copy(lr_image, sub / lr_image.name)
    entry = {"id": "sub-000", "split": "train", "domain": "x",
             "lr_image": f"sub-000/{lr_image.name if lr_image else 'missing.nii.gz'}",
             "lr_labels": None, "hr_image": "sub-000/hr_image.nii.gz", "hr_labels": "sub-000/hr_labels.nii.gz",
             "ed_phase": None, "es_phase": None}
    (root / "manifest.json").write_text(json.dumps({"format": "gemini-cmr-paired", "version": 1,
                                                    "subjects": [entry]}))
    return root


@pytest.mark.parametrize("case", NIFTI_CASES, ids=str)
def test_train_gemini_refuses_bad_member(case: Case, tmp_path, capsys):
    bad = case.make(tmp_path / "bad" if (tmp_path / "bad").mkdir() is None else tmp_path)
    data = _dataset(tmp_path, bad if bad.exists() else None)
    run = tmp_path / "run"
    rc, _, err, dt = run_cli(["train", "gemini", "--data", data, "--out", run, "--epochs", "1",
                              "--device", "cpu"], capsys)
    assert_one_line_error(rc, err, ("sub-000",), dt)
    assert not run.exists() or tree(run) == {}, tree(run).keys()


DATASET_CASES = {
    "no-manifest": lambda root: (root / "manifest.json").unlink(),
    "manifest-random-bytes": lambda root: (root / "manifest.json").write_bytes(cases.RNG_BYTES),
    "manifest-empty": lambda root: (root / "manifest.json").write_bytes(b""),
    "manifest-not-object": lambda root: (root / "manifest.json").write_text("[1, 2]"),
    "manifest-no-subjects": lambda root: (root / "manifest.json").write_text(
        json.dumps({"format": "gemini-cmr-paired", "version": 1, "subjects": []})),
}


@pytest.mark.parametrize("name", sorted(DATASET_CASES))
def test_train_gemini_refuses_bad_dataset(name, tmp_path, capsys):
    data = _dataset(tmp_path, cases.write_nifti(tmp_path / "lr.nii.gz", cases.cine_array()))
    DATASET_CASES[name](data)
    run = tmp_path / "run"
    rc, _, err, dt = run_cli(["train", "gemini", "--data", data, "--out", run, "--epochs", "1"], capsys)
    assert_one_line_error(rc, err, ("data",), dt)
    assert not run.exists()


@pytest.mark.parametrize("config", [{"no_such_key": 1}, {"model": {"widths": [0]}}, "not json", {"seg_input": "x"}])
def test_train_gemini_refuses_bad_config(config, tmp_path, capsys):
    data = _dataset(tmp_path, cases.write_nifti(tmp_path / "lr.nii.gz", cases.cine_array()))
    cfg = tmp_path / "train.json"
    cfg.write_text(config if isinstance(config, str) else json.dumps(config))
    rc, _, err, dt = run_cli(["train", "gemini", "--data", data, "--out", tmp_path / "run", "--config", cfg],
                             capsys)
    assert_one_line_error(rc, err, (), dt)
    assert not (tmp_path / "run").exists()


def test_size_check_accepts_maximally_compressed_files(tmp_path):
    """The gzip bound (1032:1, deflate's maximum) never refuses a real file: all-zero data at level 9."""
    import gzip

    import nibabel as nib
    import numpy as np

    from gemini_cmr.core.io.nifti import load_nifti_volume

    raw = nib.Nifti1Image(np.zeros((128, 128, 32, 20), np.uint8), np.diag([1.5, 1.5, 8.0, 1.0])).to_bytes()
    p = tmp_path / "zeros.nii.gz"
    p.write_bytes(gzip.compress(raw, compresslevel=9))
    assert len(raw) / p.stat().st_size > 1000  # as compressed as deflate gets
    image, _, _, _ = load_nifti_volume(p)
    assert image.shape == (20, 32, 128, 128)
