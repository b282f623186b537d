"""File > Open from PACS… and Send to PACS… against a real Orthanc (tests/orthanc.py): query, the short-axis
cine preselected, retrieve on a worker thread into the window, a wrong password shown in the dialog, the
result's DICOM outputs sent back. With GEMINI_CMR_DOCS_IMAGES=docs/images the filled dialog is saved as
pacs_dialog.png (the README's screenshot)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from gemini_cmr.core.io import pacs
from tests.core.io.dicom_factory import AXIAL, CineSpec, make_cine, write
from tests.orthanc import PASSWORD, USER

pytestmark = [pytest.mark.gui, pytest.mark.timeout(120)]


@pytest.fixture(scope="module")
def on_server(orthanc, tmp_path_factory):
    folder = tmp_path_factory.mktemp("app_pacs") / "study"
    spec = CineSpec(n_slices=6, n_phases=4, rows=44, cols=48, spacing=(1.8, 1.8), gap=8.0, thickness=8.0,
                    description="CINE_SAX_retro")
    sax = make_cine(spec)
    datasets = sax + make_cine(CineSpec(n_slices=3, n_phases=1, rows=32, cols=32, description="3-plane localizer",
                                        orientation=AXIAL), sax[0].StudyInstanceUID, sax[0].FrameOfReferenceUID)
    datasets += make_cine(CineSpec(n_slices=1, n_phases=20, rows=44, cols=48, description="CINE_4CH",
                                   orientation=AXIAL), sax[0].StudyInstanceUID, sax[0].FrameOfReferenceUID)
    for ds in datasets:
        ds.PatientID, ds.PatientName, ds.StudyDate = "APP001", "Doe^Jane", "20240611"
        ds.StudyDescription = "Cardiac MR"
    write(folder, datasets)
    (folder.parent / "none.toml").write_text("[pacs]\n")
    server = pacs.server_settings(url=orthanc.dicomweb, username=USER, password=PASSWORD, env={},
                                  config=str(folder.parent / "none.toml"))
    pacs.push(server, [folder])
    return server, sax[0].StudyInstanceUID, sax[0].SeriesInstanceUID


@pytest.fixture
def no_pacs_env(monkeypatch, tmp_path):
    for key in pacs.ENV.values():
        monkeypatch.delenv(key, raising=False)
    (tmp_path / "pacs.toml").write_text("[pacs]\n")
    monkeypatch.setenv("GEMINI_CMR_PACS_CONFIG", str(tmp_path / "pacs.toml"))


def _fill(dlg, server, password=PASSWORD):
    dlg.server_box.url.setText(server.url)
    dlg.server_box.user.setText(USER)
    dlg.server_box.password.setText(password)
    dlg.patient_id.setText("APP001")


def test_open_from_pacs_retrieves_the_short_axis_cine_into_the_window(window, qtbot, on_server, no_pacs_env):
    from gemini_cmr.app.dialogs.pacs_dialog import open_from_pacs

    server, study_uid, sax_uid = on_server
    dlg = open_from_pacs(window)
    dlg.show()
    _fill(dlg, server)
    with qtbot.waitSignal(dlg.studiesFound, timeout=20000) as found:
        dlg.search_button.click()
    assert found.args == [1] and dlg.study_table.item(0, 1).text() == "Doe^Jane"
    with qtbot.waitSignal(dlg.seriesListed, timeout=20000):
        dlg.study_table.selectRow(0)
    assert dlg._chosen_series().series_uid == sax_uid and dlg.open_button.isEnabled()
    notes = {dlg.series_table.item(r, 1).text(): dlg.series_table.item(r, 5).text()
             for r in range(dlg.series_table.rowCount())}
    assert notes["CINE_SAX_retro"] == "short-axis cine" and notes["3-plane localizer"] == "localizer"
    if os.environ.get("GEMINI_CMR_DOCS_IMAGES"):
        dlg.status.setText("Short-axis cine selected: Open retrieves it")
        dlg.grab().save(str(Path(os.environ["GEMINI_CMR_DOCS_IMAGES"]) / "pacs_dialog.png"))
    with qtbot.waitSignal(window.studyLoaded, timeout=30000) as loaded:
        dlg.open_button.click()
    study = loaded.args[0]
    assert study.image.shape == (4, 6, 44, 48) and study.meta.dicom.series_uids[0] == sax_uid
    assert dlg.folder.is_dir() and dlg.folder.name == "study"


def test_a_wrong_password_is_shown_in_the_dialog(window, qtbot, on_server, no_pacs_env):
    from gemini_cmr.app.dialogs.pacs_dialog import OpenFromPacsDialog

    server, _, _ = on_server
    dlg = OpenFromPacsDialog(window)
    qtbot.addWidget(dlg)
    _fill(dlg, server, password="wrong")
    with qtbot.waitSignal(dlg.failed, timeout=20000) as failed:
        dlg.search_button.click()
    assert "refused the credentials" in failed.args[0] and "wrong" not in failed.args[0]
    assert dlg.status.text().startswith("Error: ") and dlg.study_table.rowCount() == 0
    qtbot.waitUntil(lambda: dlg.search_button.isEnabled(), timeout=5000)


def test_send_to_pacs_stores_the_results_dicom_outputs(window, qtbot, on_server, no_pacs_env, oracle_engine,
                                                       phantom_path, orthanc):
    from gemini_cmr.app.dialogs.pacs_dialog import send_to_pacs

    server, _, _ = on_server
    with qtbot.waitSignal(window.studyLoaded, timeout=30000):
        window.open_path(phantom_path)
    task = window.super_resolve()
    with qtbot.waitSignal(task.done, timeout=60000):
        pass
    assert window.state.result is not None and window.pacs_send_action.isEnabled()
    task = send_to_pacs(window, server)
    with qtbot.waitSignal(task.finished, timeout=60000) as sent:
        pass
    report = sent.args[0]
    uid = window.state.result.study.meta.dicom
    assert uid is None  # the phantom is NIfTI: a new study is made for its DICOM outputs
    assert len(report.series) == 3 and window.status_label.text().startswith(f"Sent {len(report.stored)} DICOM")  # SR, SEG, QC
