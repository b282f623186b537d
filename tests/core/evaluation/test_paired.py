"""`evaluate` on a paired dataset: perfect predictions give Dice 1 and zero phenotype bias."""

from __future__ import annotations

import json
import math

import pytest

from gemini_cmr.core.engine import SuperResolver
from gemini_cmr.core.errors import DataError
from gemini_cmr.core.evaluation import paired as ev
from gemini_cmr.core.io.jsonio import jsonable
from gemini_cmr.core.io.manifest import read_manifest
from tests.core.engine.fakes import CentreFakePredictor, write_paired_dataset


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return write_paired_dataset(tmp_path_factory.mktemp("paired"))


def test_evaluate_perfect_predictor(dataset):
    from gemini_cmr.core.evaluation.motion import WithMotion

    # the oracle's SR image is its placed input: no motion correction, which would move it
    resolver = WithMotion(SuperResolver(model=CentreFakePredictor()), False)
    res = ev.evaluate_dataset(dataset, resolver, split="test")
    assert res["n"] == 2 and res["skipped_unlabelled"] == 0
    s = res["summary"]
    for kind in ("dice_3d", "dice_slicewise"):
        for struct in ("lv_cavity", "lv_myocardium", "rv_cavity"):
            for tag in ("ED", "ES"):
                assert s[kind][struct][tag]["mean"] == pytest.approx(1.0, abs=1e-3)
    # The SR image is the HR image minus 1 everywhere: MSE = 1.
    sub = res["subjects"][0]["phases"]["ED"]
    assert sub["psnr"] == pytest.approx(20 * math.log10(sub["data_range"]), rel=1e-4)
    for kind in ("psnr_slicewise", "psnr_heart"):  # the same error on every labelled slice / near the heart
        assert sub[kind] == pytest.approx(sub["psnr"], rel=1e-4)
        assert s[kind]["ED"]["mean"] == pytest.approx(sub[kind], rel=0.01)
    assert 0.9 < s["ssim"]["ED"]["mean"] <= 1.0
    for key in ("lv_edv_ml", "lv_esv_ml", "lv_ef_pct", "lv_mass_g", "rv_edv_ml"):
        a = s["phenotype_agreement"][key]
        assert a["n"] == 2 and a["bias"] == pytest.approx(0.0, abs=0.5)
    assert res["subjects"][0]["phenotypes"]["lv_edv_ml"]["truth"] == pytest.approx(49.76, rel=0.03)
    table = ev.format_table(res)
    assert "Dice 3D" in table and "Dice slice-wise" in table and "LVEDV (mL)" in table and "1.00 (0.00)" in table
    assert "within 10 mm of the heart" in table
    json.dumps(jsonable(res), allow_nan=False)  # strict-JSON serialisable


def test_evaluate_bad_data(tmp_path, dataset):
    with pytest.raises(DataError, match="manifest"):
        read_manifest(tmp_path)
    (tmp_path / "manifest.json").write_text('{"format": "other"}')
    with pytest.raises(DataError, match="gemini-cmr-paired"):
        read_manifest(tmp_path)
    with pytest.raises(DataError, match="no labelled subjects"):
        ev.evaluate_dataset(dataset, SuperResolver(model=CentreFakePredictor()), split="val")
