"""The app opens the SR series written as DICOM and shows the labels of the segmentations beside it."""

from __future__ import annotations

import numpy as np
from PySide6.QtGui import QImage

from gemini_cmr.core import outputs
from gemini_cmr.core.engine import SuperResolver
from gemini_cmr.core.study import LABEL_COLOURS
from tests.core.engine.fakes import FakePredictor, make_study


def _rgb(image: QImage) -> np.ndarray:
    image = image.convertToFormat(QImage.Format.Format_RGB888)
    w, h, bpl = image.width(), image.height(), image.bytesPerLine()
    return np.frombuffer(image.constBits(), np.uint8, count=h * bpl).reshape(h, bpl)[:, : 3 * w].reshape(h, w, 3)


def test_dicom_sr_series_opens_with_the_labels_of_its_segmentations(qtbot, window, tmp_path):
    result = SuperResolver(model=FakePredictor()).run(make_study(n_phases=2), meshes="none")
    outputs.write_outputs(result, tmp_path / "out", [], dicom=True)
    with qtbot.waitSignal(window.studyLoaded, timeout=30000):
        window.open_path(tmp_path / "out/dicom/sr")
    study = window.study
    assert study.has_labels and study.meta.label_source.startswith("DICOM segmentation")
    np.testing.assert_array_equal(study.labels, result.sr_labels)
    window.opacity_slider.setValue(100)
    k = int(np.argmax((result.sr_labels[0] == 1).sum(axis=(1, 2))))  # the slice with most LV cavity
    window.slice_slider.setValue(k)
    rgb = _rgb(window.lr_view.grab().toImage()).astype(int)
    for label in (1, 2):
        assert np.all(np.abs(rgb - np.array(LABEL_COLOURS[label])) <= 12, axis=-1).sum() > 30, label


def test_export_writes_dicom_and_viewer_label_files(qtbot, window, phantom_path, oracle_engine, tmp_path):
    from gemini_cmr.app.dialogs.export_dialog import ExportDialog

    with qtbot.waitSignal(window.studyLoaded, timeout=30000):
        window.open_path(phantom_path)
    with qtbot.waitSignal(window.resultReady, timeout=120000):
        assert window.super_resolve() is not None
    out = tmp_path / "export"
    dlg = ExportDialog(window, has_result=True, default_dir=str(out), dicom_input=False)
    assert not dlg.dicom.isChecked() and dlg.viewer_labels.isChecked()  # NIfTI input: DICOM off by default
    dlg.dicom.setChecked(True)
    opts = dlg.options()
    assert opts.dicom and opts.viewer_labels
    with qtbot.waitSignal(window.exportDone, timeout=120000) as sig:
        window.export(opts, confirm=False)
    written = {p.relative_to(out).as_posix() for p in sig.args[0]}
    assert {"dicom", "sr_labels_ed.seg.nrrd", "sr_labels_es.seg.nrrd", "labels_itksnap.txt", "sr.itksnap"} <= written
    n = window.result.sr_image.shape[0] * window.result.sr_grid.shape[0]
    assert len(list((out / "dicom/sr").glob("MR_*.dcm"))) == n
    assert len(list((out / "dicom/sr").glob("SEG_*.dcm"))) == window.result.sr_image.shape[0]
    assert not (out / "dicom/lr_labels").exists()  # NIfTI input: no acquired DICOM images to reference
