"""PACS: `gemini-cmr pacs find|pull|push` and `super-resolve dicomweb://...` against a real Orthanc (DICOMweb
and DIMSE, basic authentication), on a synthetic short-axis cine; the bad cases (unreachable server, wrong
password, missing study, no short-axis cine, a retrieve cut off, an upload rejected) end in one line."""

from __future__ import annotations

import http.server
import json
import threading
import time
import warnings
from pathlib import Path

import numpy as np
import pydicom
import pytest

from gemini_cmr.cli.main import main as cli_main
from gemini_cmr.core.errors import PacsError
from gemini_cmr.core.io import load_study, pacs
from tests.core.engine.fakes import FakePredictor
from tests.orthanc import PASSWORD, REJECTED_DESCRIPTION, USER, free_port

from .dicom_factory import AXIAL, CineSpec, make_cine, pixel_code, write

pytestmark = pytest.mark.timeout(120)


def _server(orthanc, url=None, password=PASSWORD, **kw) -> pacs.PacsServer:
    return pacs.server_settings(url=url or orthanc.dicomweb, username=USER, password=password, timeout_s=10,
                                env={}, config=None, **kw)


def _study(folder: Path, spec: CineSpec | None = None, extras: bool = True, patient: str = "PACS001"):
    """A study: the SAX cine, plus (with `extras`) a localizer and a one-slice long-axis cine."""
    spec = spec or CineSpec(n_slices=5, n_phases=3, rows=40, cols=44, spacing=(1.8, 1.8), gap=8.0, thickness=8.0)
    sax = make_cine(spec)
    study_uid, for_uid = sax[0].StudyInstanceUID, sax[0].FrameOfReferenceUID
    datasets = list(sax)
    if extras:
        datasets += make_cine(CineSpec(n_slices=3, n_phases=1, rows=32, cols=32, description="localizer",
                                       orientation=AXIAL), study_uid, for_uid)
        datasets += make_cine(CineSpec(n_slices=1, n_phases=12, rows=40, cols=44, description="cine_4ch",
                                       orientation=AXIAL), study_uid, for_uid)
    for ds in datasets:
        ds.PatientID = patient
        ds.PatientName = "Test^Pacs"
        ds.StudyDate = "20240315"
    write(folder, datasets)
    return study_uid, sax[0].SeriesInstanceUID, spec


@pytest.fixture(scope="module")
def uploaded(orthanc, tmp_path_factory):
    """The synthetic study sent to Orthanc with `pacs.push` (DICOMweb STOW-RS)."""
    folder = tmp_path_factory.mktemp("pacs_src") / "study"
    study_uid, sax_uid, spec = _study(folder)
    t0 = time.perf_counter()
    report = pacs.push(_server(orthanc), [folder])
    assert len(report.stored) == 5 * 3 + 3 + 12 and len(report.series) == 3
    assert time.perf_counter() - t0 < 20
    return study_uid, sax_uid, spec


@pytest.fixture
def pacs_env(orthanc, monkeypatch, tmp_path_factory):
    """Credentials from the environment, as a user would set them (never on the command line)."""
    cfg = tmp_path_factory.mktemp("cfg") / "pacs.toml"
    cfg.write_text("[pacs]\ntimeout_s = 10\n")
    monkeypatch.setenv("GEMINI_CMR_PACS_USER", USER)
    monkeypatch.setenv("GEMINI_CMR_PACS_PASSWORD", PASSWORD)
    monkeypatch.setenv("GEMINI_CMR_PACS_CONFIG", str(cfg))
    for key in ("GEMINI_CMR_PACS_URL", "GEMINI_CMR_PACS_CA_BUNDLE", "GEMINI_CMR_PACS_TIMEOUT"):
        monkeypatch.delenv(key, raising=False)
    return orthanc


def _cli(args, capsys):
    t0 = time.perf_counter()
    rc = cli_main([str(a) for a in args])
    out, err = capsys.readouterr()
    return rc, out, err, time.perf_counter() - t0


def _check_pixels(folder: Path, spec: CineSpec):
    study = load_study(folder)
    assert study.image.shape == (spec.n_phases, spec.n_slices, spec.rows, spec.cols)
    for t in range(spec.n_phases):
        for k in range(spec.n_slices):
            np.testing.assert_array_equal(study.image[t, k], pixel_code(t, k, spec.rows, spec.cols))


# --- settings (no server) -------------------------------------------------------------------------------
def test_settings_come_from_options_then_environment_then_the_config_file(tmp_path):
    cfg = tmp_path / "pacs.toml"
    cfg.write_text('[pacs]\nurl = "https://pacs.example.org/dicom-web"\nusername = "cfg"\npassword = "from-file"\n'
                   "timeout_s = 12\n")
    cfg.chmod(0o600)
    s = pacs.server_settings(config=str(cfg), env={})
    assert (s.url, s.username, s.password, s.timeout_s, s.verify_tls) == (
        "https://pacs.example.org/dicom-web", "cfg", "from-file", 12.0, True)
    env = {"GEMINI_CMR_PACS_URL": "dicomweb://env-host:8042/dicom-web", "GEMINI_CMR_PACS_USER": "env",
           "GEMINI_CMR_PACS_PASSWORD": "from-env"}
    s = pacs.server_settings(config=str(cfg), env=env)
    assert (s.url, s.username, s.password) == ("http://env-host:8042/dicom-web", "env", "from-env")
    pw = tmp_path / "pw"
    pw.write_text("from-option\n")
    s = pacs.server_settings(url="dimse://PACS@h:11112", username="opt", password_file=str(pw), insecure=True,
                             config=str(cfg), env=env)
    assert (s.protocol, s.called_ae, s.host_port, s.username, s.password, s.verify_tls) == (
        "dimse", "PACS", ("h", 11112), "opt", "from-option", False)
    # The password never shows: not in repr, not in the address, not in messages.
    s = pacs.server_settings(url="https://u:hunter2@h/dw", config=str(cfg), env={})
    assert s.password == "hunter2" and "hunter2" not in repr(s) and "hunter2" not in s.display
    assert "hunter2" not in pacs.redact("https://u:hunter2@h/dw?StudyInstanceUID=1")
    (tmp_path / "empty.toml").write_text("[pacs]\n")
    with pytest.raises(PacsError, match="no PACS server given"):
        pacs.server_settings(env={"GEMINI_CMR_PACS_CONFIG": str(tmp_path / "empty.toml")})
    with pytest.raises(PacsError, match="PACS config file not found"):
        pacs.server_settings(config=str(tmp_path / "absent.toml"), env={})
    with pytest.raises(PacsError, match="unknown key"):
        cfg.write_text('[pacs]\nurl = "http://h/dw"\npasword = "typo"\n')
        pacs.server_settings(config=str(cfg), env={})
    with pytest.raises(PacsError, match="C-MOVE needs a local storage port"):
        pacs.server_settings(url="dimse://A@h:104", retrieve="move", env={}, config=str(tmp_path / "empty.toml"))
    assert pacs.parse_study_url("dicomweb://h:1/dw?StudyInstanceUID=1.2&SeriesInstanceUID=3.4")[:3] == (
        "http://h:1/dw", "1.2", "3.4")
    with pytest.raises(PacsError, match="unknown query parameter"):
        pacs.parse_study_url("dicomweb://h:1/dw?Study=1.2")


def test_choosing_the_short_axis_cine_from_headers():
    sax = pacs.SeriesInfo("1", "sax", "MR", "cine_sax", n_instances=60)
    geom = [{"ImagePositionPatient": [0, 0, 8.0 * k], "ImageOrientationPatient": [1, 0, 0, 0, 1, 0],
             "ImageType": ["ORIGINAL"]} for k in range(6) for _ in range(10)]
    lax = pacs.SeriesInfo("1", "lax", "MR", "cine_4ch", n_instances=90)
    lax_geom = [{"ImagePositionPatient": [0, 0, 0], "ImageOrientationPatient": [1, 0, 0, 0, 0, 1]}] * 90
    sr = pacs.SeriesInfo("1", "ours", "MR", "Gemini CMR SR of cine_sax", n_instances=200)
    sr_geom = [{**g, "ImageType": ["DERIVED", "SECONDARY"]} for g in geom] * 3
    seg = pacs.SeriesInfo("1", "seg", "SEG", "labels", n_instances=3)
    judged = [pacs.judge_series(sax, geom), pacs.judge_series(lax, lax_geom), pacs.judge_series(sr, sr_geom),
              pacs.judge_series(seg, None)]
    assert (sax.n_positions, sax.n_phases) == (6, 10) and "single slice" in lax.problem and sr.derived
    assert "modality SEG" in seg.problem
    assert pacs.choose_cine_series(judged, "1", "here").series_uid == "sax"
    with pytest.raises(PacsError, match="no short-axis cine in study 1"):
        pacs.choose_cine_series([lax, seg], "1", "here")


# --- against Orthanc: DICOMweb ----------------------------------------------------------------------------
def test_find_lists_the_study_and_marks_the_short_axis_cine(uploaded, pacs_env, capsys):
    study_uid, sax_uid, _ = uploaded
    rc, out, err, dt = _cli(["pacs", "find", "--server", pacs_env.dicomweb, "--patient-id", "PACS001"], capsys)
    assert rc == 0 and study_uid in out and "Test^Pacs" in out and "20240315" in out, err
    rc, out, err, _ = _cli(["pacs", "find", "--server", pacs_env.dicomweb, "--study", study_uid, "--json"], capsys)
    rows = {r["series_uid"]: r for r in json.loads(out)}
    assert rows[sax_uid]["short_axis_cine"] and (rows[sax_uid]["n_positions"], rows[sax_uid]["n_phases"]) == (5, 3)
    assert sum(r["short_axis_cine"] for r in rows.values()) == 1
    assert {r["problem"] for r in rows.values() if r["series_uid"] != sax_uid} >= {"localizer"}
    rc, out, _, _ = _cli(["pacs", "find", "--server", pacs_env.dicomweb, "--date", "20240315-20240316"], capsys)
    assert study_uid in out
    assert PASSWORD not in out and dt < 20


def test_pull_retrieves_the_short_axis_cine_into_a_new_folder(uploaded, pacs_env, tmp_path, capsys):
    study_uid, sax_uid, spec = uploaded
    url = f"dicomweb://127.0.0.1:{pacs_env.http_port}/dicom-web?StudyInstanceUID={study_uid}"
    rc, out, err, dt = _cli(["pacs", "pull", url, "--out", tmp_path / "got", "--quiet"], capsys)
    assert rc == 0 and sax_uid in out, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["got"]  # no temporary left beside it
    assert len(list((tmp_path / "got").iterdir())) == 15
    _check_pixels(tmp_path / "got", spec)
    rc, _, err, _ = _cli(["pacs", "pull", url, "--out", tmp_path / "got", "--quiet"], capsys)
    assert rc == 2 and "not empty" in err
    assert dt < 20


def test_pull_with_the_long_axis_series(uploaded, pacs_env, tmp_path):
    study_uid, sax_uid, spec = uploaded
    dest, chosen = pacs.pull(_server(pacs_env), study_uid, None, tmp_path / "got", long_axis=True)
    assert chosen.series_uid == sax_uid
    assert sorted(p.name for p in dest.iterdir() if p.is_dir()) == ["long-axis-1"]  # not the localizer
    assert len(list((dest / "long-axis-1").iterdir())) == 12
    study = load_study(dest)
    assert study.meta.series_uid == sax_uid and study.image.shape == (spec.n_phases, spec.n_slices, 40, 44)
    assert [c.description for c in study.meta.long_axis_series] == ["cine_4ch"]
    dest2, _ = pacs.pull(_server(pacs_env), study_uid, sax_uid, tmp_path / "named", long_axis=True)
    assert (dest2 / "long-axis-1").is_dir()  # a named short-axis series: its study's long-axis series too


@pytest.fixture
def fake_engine(monkeypatch):
    """The real engine and writers around a fake network (tests/core/engine/fakes.py): seconds, not minutes."""
    import gemini_cmr.core.engine as engine

    real = engine.SuperResolver

    class Fake(real):
        def __init__(self, model=None, adapter=None, device="auto", **kw):
            super().__init__(model=FakePredictor())

        def run(self, s, **kw):
            s.meta.extra["heart_centre"] = s.grid.centre()
            s.meta.extra["heart_frame"] = s.grid.directions
            return super().run(s, **kw)

    monkeypatch.setattr(engine, "SuperResolver", Fake)


def test_super_resolve_from_the_server_and_push_the_dicom_outputs(uploaded, pacs_env, tmp_path, fake_engine, capsys):
    study_uid, sax_uid, spec = uploaded
    url = f"dicomweb://127.0.0.1:{pacs_env.http_port}/dicom-web?StudyInstanceUID={study_uid}"
    before = set(pacs_env.series_of(study_uid))
    rc, out, err, dt = _cli(["super-resolve", url, "--out", tmp_path / "out", "--quiet", "--push"], capsys)
    assert rc == 0, err
    info = json.loads((tmp_path / "out/run.json").read_text())
    assert info["input"]["path"] == f"{pacs_env.dicomweb}?StudyInstanceUID={study_uid}"
    assert info["arguments"]["study"] == info["input"]["path"] and info["dicom"]["new_study"] is False
    assert PASSWORD not in (tmp_path / "out/run.json").read_text() and PASSWORD not in out + err
    (la,) = info["long_axis"]  # the study's long-axis cine was retrieved with the short-axis one
    assert la["path"] == f"{info['input']['path']} (series 'cine_4ch')" and la["view"] == "4ch"
    sent = [n for n in info["outputs"] if n.startswith("dicom/")]
    assert f"sent {len(sent)} DICOM files in 4 series" in out  # SR, its SEG, the acquired SEG, the QC capture
    after = pacs_env.series_of(study_uid)
    new = {uid: s for uid, s in after.items() if uid not in before}
    n_sr = spec.n_phases * load_study(tmp_path / "out/dicom/sr").n_slices
    assert sorted((s["modality"], s["instances"]) for s in new.values()) == sorted(
        [("MR", n_sr), ("SEG", spec.n_phases), ("SEG", spec.n_phases), ("OT", 1)])
    # The SR series now on the server is derived: a new run on the study still picks the acquired cine.
    series = pacs.list_series(_server(pacs_env), study_uid)
    assert pacs.choose_cine_series(series, study_uid, "").series_uid == sax_uid
    assert dt < 40


def test_bad_servers_and_studies_end_in_one_line(uploaded, pacs_env, tmp_path, capsys):
    study_uid, _, _ = uploaded
    port = free_port()
    cases = [
        (["pacs", "find", "--server", f"http://127.0.0.1:{port}/dicom-web"], "cannot reach the PACS"),
        (["pacs", "find", "--server", f"dimse://ORTHANC@127.0.0.1:{port}", "--timeout", "3"], "cannot reach the DICOM node"),
        (["pacs", "find", "--server", pacs_env.dicomweb, "--password-file", tmp_path / "pw"], "refused the credentials"),
        (["pacs", "pull", "--server", pacs_env.dicomweb, "--study", "1.2.3.4.5.6", "--out", tmp_path / "x"],
         "study 1.2.3.4.5.6 not found"),
        (["super-resolve", f"dicomweb://127.0.0.1:{pacs_env.http_port}/dicom-web?StudyInstanceUID=1.2.3.9",
          "--out", tmp_path / "o", "--quiet"], "study 1.2.3.9 not found"),
        (["pacs", "pull", "--server", pacs_env.dicomweb, "--study", study_uid, "--series", "9.9", "--out",
          tmp_path / "y"], "series 9.9 not found"),
        (["pacs", "push", "--server", pacs_env.dicomweb, tmp_path / "nothing"], "no such file or folder"),
    ]
    (tmp_path / "pw").write_text("wrong-password\n")
    for args, expected in cases:
        rc, out, err, dt = _cli(args, capsys)
        assert rc == 2 and expected in err, (args, err)
        lines = [line for line in err.splitlines() if not line.startswith("[")]  # progress lines aside
        assert len(lines) == 1 and lines[0].startswith("gemini-cmr: ") and dt < 15, (args, err, dt)
        assert "wrong-password" not in err and PASSWORD not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pw"]  # nothing half-written


def test_a_study_without_a_short_axis_cine_is_refused(orthanc, tmp_path):
    server = _server(orthanc)
    folder = tmp_path / "lax"
    lax = make_cine(CineSpec(n_slices=1, n_phases=10, rows=32, cols=32, description="cine_2ch"))
    for ds in lax:
        ds.PatientID = "NOSAX"
    write(folder, lax)
    pacs.push(server, [folder])
    study_uid = lax[0].StudyInstanceUID
    with pytest.raises(PacsError, match=f"no short-axis cine in study {study_uid}.*single slice position"):
        pacs.pull(server, study_uid, None, tmp_path / "got")
    assert not (tmp_path / "got").exists() and sorted(p.name for p in tmp_path.iterdir()) == ["lax"]
    orthanc.delete_study(study_uid)


def test_a_rejected_upload_reports_what_the_server_kept(orthanc, tmp_path):
    server = _server(orthanc)
    cine = make_cine(CineSpec(n_slices=3, n_phases=8, rows=16, cols=16))
    bad = make_cine(CineSpec(n_slices=2, n_phases=2, rows=16, cols=16, description=REJECTED_DESCRIPTION),
                    cine[0].StudyInstanceUID, cine[0].FrameOfReferenceUID)
    write(tmp_path / "a", cine, prefix="A")
    write(tmp_path / "b", bad, prefix="B")
    with pytest.raises(PacsError) as info:
        pacs.push(server, [tmp_path / "a", tmp_path / "b"])
    msg = str(info.value)
    assert "upload rejected" in msg and f"series {cine[0].SeriesInstanceUID} (24 images)" in msg, msg
    assert "\n" not in msg
    kept = orthanc.series_of(cine[0].StudyInstanceUID)
    assert kept == {cine[0].SeriesInstanceUID: {"modality": "MR", "description": "cine_sax", "instances": 24}}
    dimse = _server(orthanc, url=orthanc.dimse)
    with pytest.raises(PacsError, match=r"upload rejected: the server did not keep 4 of 4 files, e.g. B_0000.dcm; nothing was stored"):
        pacs.push(dimse, [tmp_path / "b"])
    orthanc.delete_study(cine[0].StudyInstanceUID)


class _CutOff(http.server.BaseHTTPRequestHandler):
    """A DICOMweb server that lists one series of 4 images, then ends the retrieve after the first image."""

    part: bytes = b""

    def log_message(self, *a):
        pass

    def do_GET(self):  # noqa: N802
        if "/metadata" in self.path or self.path.split("?")[0].endswith("/series"):
            body = json.dumps([{"0020000E": {"vr": "UI", "Value": ["1.2.3.1"]}, "00080060": {"vr": "CS", "Value": ["MR"]},
                                "00201209": {"vr": "IS", "Value": [4]}}]).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/dicom+json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        boundary = b"cutoffboundary"
        self.send_response(200)
        self.send_header("Content-Type", 'multipart/related; type="application/dicom"; boundary=cutoffboundary')
        self.send_header("Content-Length", str(10 * len(self.part) + 1000))
        self.end_headers()
        self.wfile.write(b"--" + boundary + b"\r\nContent-Type: application/dicom\r\n\r\n" + self.part + b"\r\n")
        self.wfile.write(b"--" + boundary + b"\r\nContent-Type: application/dicom\r\n\r\n" + self.part[:100])
        self.wfile.flush()
        self.close_connection = True


def test_a_retrieve_cut_off_half_way_leaves_nothing(tmp_path):
    ds = make_cine(CineSpec(n_slices=1, n_phases=1, rows=16, cols=16))[0]
    write(tmp_path / "one", [ds])
    _CutOff.part = next((tmp_path / "one").iterdir()).read_bytes()
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _CutOff)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        (tmp_path / "none.toml").write_text("[pacs]\n")
        server = pacs.server_settings(url=f"http://127.0.0.1:{httpd.server_address[1]}/dw", timeout_s=5, env={},
                                      config=str(tmp_path / "none.toml"))
        with pytest.raises(PacsError, match=r"cut off after \d of 4 images; nothing was kept"):
            pacs.pull(server, "1.2.3", "1.2.3.1", tmp_path / "dest")
    finally:
        httpd.shutdown()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["none.toml", "one"]


# --- against Orthanc: DIMSE --------------------------------------------------------------------------------
@pytest.mark.parametrize("method", ["get", "move"])
def test_dimse_find_and_retrieve(uploaded, orthanc, tmp_path, method):
    study_uid, sax_uid, spec = uploaded
    server = _server(orthanc, url=orthanc.dimse, retrieve=method,
                     move_port=orthanc.move_port if method == "move" else None)
    assert study_uid in {s.study_uid for s in pacs.find(server, patient_id="PACS001")}
    folder, chosen = pacs.pull(server, study_uid, None, tmp_path / "got")
    assert chosen.series_uid == sax_uid and (chosen.n_positions, chosen.n_phases) == (5, 3)
    _check_pixels(folder, spec)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["got"]


def test_dimse_push(orthanc, tmp_path):
    cine = make_cine(CineSpec(n_slices=2, n_phases=2, rows=16, cols=16))
    write(tmp_path / "c", cine)
    report = pacs.push(_server(orthanc, url=orthanc.dimse), [tmp_path / "c"])
    assert len(report.stored) == 4
    assert orthanc.series_of(cine[0].StudyInstanceUID)[cine[0].SeriesInstanceUID]["instances"] == 4
    orthanc.delete_study(cine[0].StudyInstanceUID)


# --- real scanner data ----------------------------------------------------------------------------------
@pytest.mark.data
@pytest.mark.slow  # about 20-55 s on the shared 2-core machine (writing the 256 x 256 study's outputs)
def test_sunnybrook_through_the_server(orthanc, shared_data, tmp_path, monkeypatch, fake_engine, capsys):
    """The Sunnybrook GE cine (240 images) sent to Orthanc, then read, super-resolved (fake network) and the
    results pushed back from there."""
    src = shared_data / "sunnybrook" / "SCD0000101"
    if not src.is_dir():
        pytest.skip(f"{src} not found")
    server = _server(orthanc)
    files = sorted(src.glob("*.dcm"))
    report = pacs.push(server, files)
    assert len(report.stored) == len(files)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Sunnybrook's non-conformant UIDs
        study_uid = pydicom.dcmread(files[0], stop_before_pixels=True).StudyInstanceUID
    monkeypatch.setenv("GEMINI_CMR_PACS_USER", USER)
    monkeypatch.setenv("GEMINI_CMR_PACS_PASSWORD", PASSWORD)
    (tmp_path / "pacs.toml").write_text("[pacs]\n")
    monkeypatch.setenv("GEMINI_CMR_PACS_CONFIG", str(tmp_path / "pacs.toml"))
    url = f"dicomweb://127.0.0.1:{orthanc.http_port}/dicom-web?StudyInstanceUID={study_uid}"
    rc, out, err, dt = _cli(["super-resolve", url, "--out", tmp_path / "out", "--phases", "0,7", "--quiet", "--push"],
                            capsys)
    assert rc == 0, err
    info = json.loads((tmp_path / "out/run.json").read_text())
    assert info["input"]["shape"] == [20, 12, 256, 256] and info["phases"] == [0, 7]
    new = [s for s in orthanc.series_of(study_uid).values() if s["modality"] == "SEG"]
    assert len(new) == 2 and "sent" in out
    orthanc.delete_study(study_uid)
