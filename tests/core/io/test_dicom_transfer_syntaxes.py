"""Compressed DICOM input: the lossless transfer syntaxes PACS exports use decode to the same study as the
uncompressed files (JPEG Lossless process 14 needs GDCM, a dependency: pydicom alone cannot decode it)."""

from __future__ import annotations

import numpy as np
import pydicom
import pytest

from gemini_cmr.core.io import load_study
from tests.core.io import dicom_factory as fac
from tests.core.io.dicom_factory import CineSpec

gdcm = pytest.importorskip("gdcm")  # a dependency (pyproject.toml); a missing wheel says so here

SYNTAXES = {
    "jpeg-lossless-sv1": ("JPEGLosslessProcess14_1", "1.2.840.10008.1.2.4.70"),
    "jpeg-lossless": ("JPEGLosslessProcess14", "1.2.840.10008.1.2.4.57"),
    "jpeg-ls": ("JPEGLSLossless", "1.2.840.10008.1.2.4.80"),
    "jpeg-2000-lossless": ("JPEG2000Lossless", "1.2.840.10008.1.2.4.90"),
    "rle": ("RLELossless", "1.2.840.10008.1.2.5"),
}


@pytest.mark.parametrize("name", sorted(SYNTAXES))
def test_lossless_compressed_series_loads_as_the_uncompressed_one(tmp_path, name):
    syntax, uid = SYNTAXES[name]
    spec = CineSpec(n_slices=3, n_phases=4, slope=2.0, intercept=-5.0)
    paths = fac.write(tmp_path / "plain", fac.make_cine(spec))
    (tmp_path / "packed").mkdir()
    for p in paths:
        fac.gdcm_transcode(p, tmp_path / "packed" / p.name, syntax)
    assert str(pydicom.dcmread(tmp_path / "packed" / paths[0].name).file_meta.TransferSyntaxUID) == uid
    plain, packed = load_study(tmp_path / "plain"), load_study(tmp_path / "packed")
    assert np.ptp(plain.image) > 1000  # a real range of values, not a blank image
    np.testing.assert_array_equal(packed.image, plain.image)
    np.testing.assert_allclose(packed.affine, plain.affine)
