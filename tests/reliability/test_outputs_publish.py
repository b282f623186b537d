"""Publishing the outputs never loses finished work.

`--out` is checked before the compute (a file, a folder named like an output file, inside the study's folder,
read-only, not enough space: one line, exit 2, within seconds); outputs are staged inside `--out` (its own
file system: mount points and symbolic links work) and published file by file, the old run.json set aside
first and the new one moved in last; a failure at any step puts everything back; files the product did not
write (also in `meshes/`) are never deleted; disk full is one line; staging folders of SIGKILLed runs are
cleaned by the next run. Real mounts (tmpfs: a mount point, a full disk, a read-only file system) are used
when the tests may mount (root); otherwise those cases skip and the injected faults still run."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import gemini_cmr.core.outputs as outputs
from gemini_cmr.core.errors import GeminiError
from tests.core.engine.fakes import CentreFakePredictor, FakePredictor, make_study
from tests.reliability.conftest import DEMO, REPO, assert_one_line_error, child_env, run_cli, tree


# --- helpers --------------------------------------------------------------------------------------------------
@contextlib.contextmanager
def tmpfs(path: Path, size: str = "16m"):
    """A tmpfs mounted on `path` (skips the test when this process may not mount)."""
    path.mkdir(parents=True, exist_ok=True)
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "gemini-test", str(path)],
                       capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({r.stderr.strip() or r.returncode})")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True)


def remount_read_only(path: Path) -> None:
    r = subprocess.run(["mount", "-o", "remount,ro", str(path)], capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot remount read-only ({r.stderr.strip()})")


def previous_outputs(out: Path) -> dict:
    """A finished earlier run in `out` plus the user's own files (also inside meshes/)."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "sr_image.nii.gz").write_bytes(b"old image")
    (out / "phenotypes.json").write_text('{"old": true}')
    (out / "run.json").write_text(json.dumps({"phases": [0], "outputs": ["sr_image.nii.gz", "run.json"]}))
    (out / "meshes").mkdir(exist_ok=True)
    (out / "meshes" / "ed_lv_cavity.stl").write_bytes(b"old mesh")
    (out / "meshes" / "phase_07_rv_cavity.stl").write_bytes(b"old mesh of a phase this run does not write")
    (out / "meshes" / "my_annotations.vtk").write_bytes(b"the user's")
    (out / "meshes" / "notes.stl").write_bytes(b"the user's, with a mesh suffix")
    (out / "my_notes.txt").write_text("not ours")
    return tree(out)


def staging(out: Path) -> list[str]:
    return sorted(p.name for p in out.glob(f"{outputs.STAGING_PREFIX}*")) if out.is_dir() else []


@pytest.fixture(scope="module")
def result():
    from gemini_cmr.core.engine import SuperResolver

    return SuperResolver(model=FakePredictor()).run(make_study(n_phases=2), meshes="ed_es")


@pytest.fixture
def study_file(tmp_path) -> Path:
    from gemini_cmr.core.io.nifti import save_nifti

    s = make_study(n_phases=2)
    path = tmp_path / "in" / "cine.nii.gz"
    path.parent.mkdir()
    save_nifti(path, s.image, s.affine, phase_interval_ms=40.0)
    return path


@pytest.fixture
def fake_engine(monkeypatch):
    import gemini_cmr.core.engine as engine

    real = engine.SuperResolver
    monkeypatch.setattr(engine, "SuperResolver",
                        lambda model=None, adapter=None, device="auto", **kw: real(model=CentreFakePredictor()))


@pytest.fixture
def no_engine(monkeypatch):
    """The model must not even be loaded: the output folder is checked first."""
    import gemini_cmr.core.engine as engine

    def explode(*a, **k):
        raise AssertionError("the compute started before --out was checked")

    monkeypatch.setattr(engine, "SuperResolver", explode)


def super_resolve(capsys, study: Path, out: Path, *extra) -> tuple[int, str, str, float]:
    return run_cli(["super-resolve", study, "--out", out, "--quiet", *extra], capsys)


def assert_published(out: Path, user_files=("my_notes.txt", "meshes/my_annotations.vtk", "meshes/notes.stl")):
    run = json.loads((out / "run.json").read_text())
    for name in run["outputs"]:
        assert (out / name).is_file(), name
    for name in user_files:
        assert (out / name).exists(), name
    assert not (out / "meshes" / "phase_07_rv_cavity.stl").exists()  # ours, from an earlier run
    assert staging(out) == []


# --- --out through a symbolic link, on a mount point ---------------------------------------------------------
def test_out_is_a_symlink_to_a_folder(tmp_path, study_file, capsys, fake_engine):
    """Before: a traceback after the run, results lost."""
    target = tmp_path / "real"
    previous_outputs(target)
    link = tmp_path / "link"
    link.symlink_to(target, target_is_directory=True)
    rc, out, err, _ = super_resolve(capsys, study_file, link)
    assert rc == 0, err
    assert link.is_symlink() and link.resolve() == target.resolve()
    assert_published(target)
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
    # a new (empty) folder behind the link works too
    empty = tmp_path / "empty"
    empty.mkdir()
    (tmp_path / "link2").symlink_to(empty, target_is_directory=True)
    assert super_resolve(capsys, study_file, tmp_path / "link2")[0] == 0
    assert (empty / "run.json").is_file()


def test_out_is_a_mount_point(tmp_path, study_file, capsys, fake_engine):
    """Before: EBUSY (removing an empty mount point) or EXDEV (renaming across file systems), results lost."""
    with tmpfs(tmp_path / "mnt", size="128m") as mnt:
        rc, _, err, _ = super_resolve(capsys, study_file, mnt)  # empty mount point
        assert rc == 0, err
        assert (mnt / "run.json").is_file() and staging(mnt) == []
        before = previous_outputs(mnt)
        assert before
        rc, _, err, _ = super_resolve(capsys, study_file, mnt)  # with earlier outputs and user files
        assert rc == 0, err
        assert_published(mnt)
        rc, _, err, _ = super_resolve(capsys, study_file, mnt / "new" / "deeper")  # created on the mount
        assert rc == 0, err
        assert (mnt / "new" / "deeper" / "run.json").is_file()


def test_every_move_stays_inside_out(tmp_path, result, monkeypatch):
    """Staging lives inside --out, so every rename is within its file system (whatever is mounted where)."""
    out = tmp_path / "out"
    previous_outputs(out)
    moves: list[tuple[str, str]] = []
    real_replace = os.replace

    def replace(src, dst, *a, **k):
        moves.append((str(src), str(dst)))
        return real_replace(src, dst, *a, **k)

    monkeypatch.setattr(os, "replace", replace)
    outputs.write_outputs(result, out, ["stl"])
    monkeypatch.undo()
    root = str(out.resolve())
    assert moves and all(s.startswith(root + os.sep) and d.startswith(root + os.sep) for s, d in moves), moves
    published = [(s, d) for s, d in moves if outputs.STAGING_PREFIX in s and outputs.STAGING_PREFIX not in d]
    # the old run.json leaves first (the folder stops looking complete), the new one lands last
    first_out_of_out = next((s, d) for s, d in moves if outputs.STAGING_PREFIX not in s)
    assert first_out_of_out[0] == str(out.resolve() / "run.json")
    assert published[-1][1] == str(out.resolve() / "run.json")
    assert_published(out)


# --- conflicts, checked before the compute ----------------------------------------------------------------------
@pytest.mark.parametrize("name", ["phenotypes.csv", "sr_image.nii.gz", "run.json"])
def test_a_folder_named_like_an_output_is_refused_before_the_compute(name, tmp_path, study_file, capsys, no_engine):
    """Before: an error after four outputs had already been replaced."""
    out = tmp_path / "out"
    previous_outputs(out)
    if (out / name).exists():
        (out / name).unlink()
    (out / name).mkdir()
    (out / name / "inside.txt").write_text("x")
    before = tree(out)
    rc, _, err, seconds = super_resolve(capsys, study_file, out)
    assert_one_line_error(rc, err, (name, "folder"), seconds, limit_s=10)
    assert tree(out) == before


def test_meshes_as_a_file_is_refused(tmp_path, study_file, capsys, no_engine):
    out = tmp_path / "out"
    out.mkdir()
    (out / "meshes").write_text("a file")
    rc, _, err, seconds = super_resolve(capsys, study_file, out)
    assert_one_line_error(rc, err, ("meshes",), seconds, limit_s=10)


def test_a_conflict_appearing_during_the_run_changes_nothing(tmp_path, result, monkeypatch):
    """A folder named like an output that appears after the check: found before anything moves."""
    out = tmp_path / "out"
    before = previous_outputs(out)
    real_write = outputs._write_rest

    def write_rest(*a, **k):
        real_write(*a, **k)
        (out / "phenotypes.csv").mkdir()

    monkeypatch.setattr(outputs, "_write_rest", write_rest)
    with pytest.raises(GeminiError, match="phenotypes.csv") as info:
        outputs.write_outputs(result, out, ["stl"])
    assert "\n" not in str(info.value)
    (out / "phenotypes.csv").rmdir()
    assert tree(out) == before


def _fail_each_publishing_rename(monkeypatch, result, out: Path, after_failure) -> int:
    """Write `result` into `out` with the n-th rename of the publishing step failing (EIO), for n = 1, 2, ...
    until a run has fewer renames than n and publishes; `after_failure(n)` checks the folder after each
    failed run. Returns the number of failed runs."""
    real_publish, real_replace = outputs._publish_entries, os.replace
    state = {"fail_at": 0, "n": 0, "publishing": False}

    def replace(src, dst, *a, **k):
        if state["publishing"]:
            state["n"] += 1
            if state["n"] == state["fail_at"]:
                raise OSError(errno.EIO, "Input/output error", str(dst))
        return real_replace(src, dst, *a, **k)

    def publish(staging_dir, out_dir, files=None):
        state["publishing"] = True
        try:
            return real_publish(staging_dir, out_dir, files)
        finally:
            state["publishing"] = False

    monkeypatch.setattr(os, "replace", replace)
    monkeypatch.setattr(outputs, "_publish_entries", publish)
    failures = 0
    for n in range(1, 40):
        state.update(fail_at=n, n=0)
        try:
            outputs.write_outputs(result, out, ["stl"])
        except GeminiError as exc:
            failures += 1
            assert "input/output error" in str(exc) and "\n" not in str(exc)
            after_failure(n)
            continue
        break  # fewer renames than n: published
    monkeypatch.undo()
    return failures


def test_a_failure_at_any_step_of_publishing_puts_everything_back(tmp_path, result, monkeypatch):
    """Fault injection: the n-th rename of the publishing step fails (EIO), for every n; the folder is then
    byte for byte as it was, with no staging folder left."""
    out = tmp_path / "out"
    before = previous_outputs(out)

    def unchanged(n):
        assert tree(out) == before, n

    failures = _fail_each_publishing_rename(monkeypatch, result, out, unchanged)
    assert failures >= 15, failures  # 17 here: 11 outputs in, 5 old files aside (run.json first), run.json last
    assert_published(out)


def test_a_failure_while_publishing_a_new_dicom_folder_leaves_nothing(tmp_path, monkeypatch):
    """A DICOM result into a new folder (`dicom/` moves in whole): a failed rename at any step leaves no
    output folder and no staging folder."""
    from tests.core.io.test_dicom_outputs import _dicom_result

    _, result, _ = _dicom_result(tmp_path / "study", n_phases=2)
    out = tmp_path / "out"

    def nothing(n):
        assert not out.exists(), n

    failures = _fail_each_publishing_rename(monkeypatch, result, out, nothing)
    assert 3 <= failures < 30, failures  # a handful of files, dicom/ and meshes/ whole, run.json last
    assert (out / "dicom/sr/MR_p00_s000.dcm").is_file() and staging(out) == []


# --- never delete what is not ours ------------------------------------------------------------------------------
def test_user_files_in_meshes_survive_and_our_stale_meshes_go(tmp_path, result):
    """Before: the old meshes/ folder was swapped out whole, with the user's files in it."""
    out = tmp_path / "out"
    previous_outputs(out)
    outputs.write_outputs(result, out, ["ply"])
    assert (out / "meshes" / "ed_lv_cavity.ply").is_file()
    assert not (out / "meshes" / "ed_lv_cavity.stl").exists()  # an earlier run's format: ours, replaced
    assert_published(out)
    assert (out / "meshes" / "my_annotations.vtk").read_bytes() == b"the user's"
    assert (out / "my_notes.txt").read_text() == "not ours"


# --- inside the study folder --------------------------------------------------------------------------------------
def test_out_inside_a_dicom_study_folder_is_refused(tmp_path, capsys, no_engine):
    """Before: the outputs were written there, and the next `info` read them instead of the DICOM."""
    from tests.reliability.cases import dicom_cine

    study = tmp_path / "dicom"
    dicom_cine(study)
    for out in (study / "gemini", study, study / "a" / "b"):
        rc, _, err, seconds = super_resolve(capsys, study, out)
        assert_one_line_error(rc, err, ("inside the study folder",), seconds, limit_s=10)
    assert sorted(p.name for p in study.iterdir() if p.is_dir()) == []
    one = sorted(study.iterdir())[0]  # a single DICOM file: its folder is what the loader reads
    rc, _, err, seconds = super_resolve(capsys, one, study / "out")
    assert_one_line_error(rc, err, ("inside the study folder",), seconds, limit_s=10)
    rc, out_text, err, _ = run_cli(["info", study], capsys)
    assert rc == 0, err


def test_out_beside_a_nifti_study_is_fine(tmp_path, study_file, capsys, fake_engine):
    assert super_resolve(capsys, study_file, study_file.parent / "gemini")[0] == 0


# --- disk full, read-only -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("size", ["256k", "1m", "2m", "3m", "4m", "6m", "7m", "8m"])
def test_disk_full_while_writing_is_one_line_and_changes_nothing(size, tmp_path, result, capfd):
    """Before: a 42-line traceback. A real full disk: a small tmpfs holding an earlier run, filled while
    the SR image, the labels or (the larger sizes) the meshes are written; VTK prints nothing, and its
    XML writer, which crashes the process (segmentation fault) when the disk fills under it, is never
    reached without room (3 MB and 4 MB crashed before the free-space check per mesh set)."""
    with tmpfs(tmp_path / "small", size=size) as mnt:
        out = mnt / "out"
        before = previous_outputs(out)
        capfd.readouterr()
        with pytest.raises(GeminiError) as info:
            outputs.write_outputs(result, out, ["stl", "ply", "vtp"])
        msg = str(info.value)
        assert ("no space left" in msg or "disk full" in msg) and "\n" not in msg and str(out) in msg, msg
        assert tree(out) == before and staging(out) == []
        assert capfd.readouterr().err == ""


def test_disk_full_injected_through_the_cli(tmp_path, study_file, capsys, fake_engine, monkeypatch):
    out = tmp_path / "out"
    before = previous_outputs(out)
    real = outputs.save_nifti_fast

    def full(path, *a, **k):
        real(path, *a, **k)
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(outputs, "save_nifti_fast", full)
    rc, _, err, seconds = super_resolve(capsys, study_file, out)
    assert_one_line_error(rc, err, ("no space left", str(out)), seconds)
    assert tree(out) == before


def test_not_enough_free_space_is_found_before_the_compute(tmp_path, study_file, capsys, no_engine):
    with tmpfs(tmp_path / "small", size="256k") as mnt:
        rc, _, err, seconds = super_resolve(capsys, study_file, mnt / "out")
        assert_one_line_error(rc, err, ("not enough free space", "MB"), seconds, limit_s=10)
        assert list(mnt.iterdir()) == []


def test_read_only_out_is_found_before_the_compute(tmp_path, study_file, capsys, no_engine):
    """Before: found only after the compute. A real read-only file system (tmpfs remounted ro)."""
    with tmpfs(tmp_path / "ro") as mnt:
        before = previous_outputs(mnt / "out")
        remount_read_only(mnt)
        for out in (mnt / "out", mnt / "new"):
            rc, _, err, seconds = super_resolve(capsys, study_file, out)
            assert_one_line_error(rc, err, ("read-only",), seconds, limit_s=10)
        assert tree(mnt / "out") == before and not (mnt / "new").exists()


def test_unwritable_out_injected(tmp_path, study_file, capsys, no_engine, monkeypatch):
    """The same through an injected EACCES (for machines where the tests cannot mount)."""
    import tempfile

    def denied(*a, **k):
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(tempfile, "mkstemp", denied)
    rc, _, err, seconds = super_resolve(capsys, study_file, tmp_path / "out")
    assert_one_line_error(rc, err, ("permission denied", "cannot write"), seconds, limit_s=10)


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into chmod 555 folders")
def test_chmod_555_out_as_a_user(tmp_path, study_file, capsys, no_engine):
    out = tmp_path / "out"
    out.mkdir()
    out.chmod(0o555)
    try:
        rc, _, err, seconds = super_resolve(capsys, study_file, out)
        assert_one_line_error(rc, err, ("permission denied",), seconds, limit_s=10)
    finally:
        out.chmod(0o755)


# --- leftovers of killed runs ------------------------------------------------------------------------------------
def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def test_stale_staging_of_dead_processes_is_cleaned(tmp_path):
    out = tmp_path / "out"
    previous_outputs(out)
    host = outputs._host()
    dead = out / f"{outputs.STAGING_PREFIX}{host}-{_dead_pid()}-abc123"
    live = out / f"{outputs.STAGING_PREFIX}{host}-{os.getppid()}-def456"
    other_host = out / f"{outputs.STAGING_PREFIX}otherhost-{_dead_pid()}-ghi789"
    old_meshes = out / f".meshes.old-{_dead_pid()}"
    probe = out / f"{outputs.STAGING_PREFIX}{host}-{_dead_pid()}-probe1"
    for d in (dead, live, other_host, old_meshes):
        d.mkdir()
        (d / "sr_image.nii.gz").write_bytes(b"half written")
    probe.write_bytes(b"")
    legacy_old, legacy_new = tmp_path / ".out.tmp-abcd1234", tmp_path / ".out.tmp-efgh5678"
    for d in (legacy_old, legacy_new):
        d.mkdir()
    stamp = time.time() - 2 * outputs.LEGACY_TMP_AGE_S
    os.utime(legacy_old, (stamp, stamp))
    outputs.check_output_folder(out)
    assert not dead.exists() and not old_meshes.exists() and not probe.exists() and not legacy_old.exists()
    assert live.exists() and other_host.exists() and legacy_new.exists()  # not known to be dead: kept
    assert (out / "my_notes.txt").exists() and (out / "run.json").exists()


@pytest.mark.slow
def test_sigkill_while_writing_then_the_next_run_cleans_up(tmp_path):
    """SIGKILL (nothing can run) while the outputs are written: the earlier run's files are untouched
    (run.json is published last, so a half-published folder never looks complete) and the staging folder
    left behind is removed by the next run's check."""
    out = tmp_path / "results"
    before = previous_outputs(out)
    proc = subprocess.Popen([sys.executable, "-m", "gemini_cmr.cli.main", "super-resolve", str(DEMO), "--out",
                             str(out), "--phases", "0,1", "--device", "cpu"], cwd=REPO, env=child_env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        end = time.monotonic() + 300
        while not staging(out) and proc.poll() is None and time.monotonic() < end:
            time.sleep(0.005)
        assert staging(out), f"the run ended before writing: {proc.communicate()[1][-2000:]}"
        time.sleep(0.02)  # inside the writing, which takes well under a second
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
    left = staging(out)
    assert left, "nothing left behind: the kill came too late"
    assert {k: v for k, v in tree(out).items() if not k.startswith(outputs.STAGING_PREFIX)} == before
    outputs.check_output_folder(out, DEMO)
    assert staging(out) == [] and tree(out) == before


def test_an_empty_segmentation_still_publishes_every_output(tmp_path):
    """Nothing segmented (no meshes to write): the outputs, the (empty) meshes/ folder and the flags."""
    from gemini_cmr.core.engine import SuperResolver

    class Nothing(FakePredictor):
        def predict(self, study, phases=None, progress=None, cancel=None):
            pred = super().predict(study, phases, progress, cancel)
            pred.sr_labels[:] = 0
            return pred

    r = SuperResolver(model=Nothing()).run(make_study(n_phases=2), meshes="ed_es")
    out = tmp_path / "out"
    outputs.write_outputs(r, out, ["stl"])
    assert (out / "meshes").is_dir() and not list((out / "meshes").iterdir())
    phen = json.loads((out / "phenotypes.json").read_text())
    assert phen["plausible"] is False and phen["flags"]["lv_cavity"].startswith("empty")
    assert json.loads((out / "run.json").read_text())["outputs"][-1] == "run.json"
