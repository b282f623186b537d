"""Phenotypes on hand-computable label volumes (boxes of known voxel counts)."""

from __future__ import annotations

import csv
import io
import json
import math

import numpy as np
import pytest

from gemini_cmr.core import phenotypes as ph
from gemini_cmr.core.study import Grid, StudyMeta


def _grid(spacing=(1.25, 1.25, 2.0), shape=(20, 32, 32)) -> Grid:
    aff = np.diag([*spacing, 1.0])
    return Grid(shape, aff)


def _cine(lv_sizes, myo=2, rv_sizes=None, shape=(20, 32, 32)) -> np.ndarray:
    """T phases: an LV cavity box of n x 10 x 10 voxels (slices x rows x cols) inside a myocardium
    shell `myo` voxels thick in-plane, and an RV box of m x 6 x 6."""
    t = len(lv_sizes)
    lab = np.zeros((t, *shape), np.uint8)
    for p, n in enumerate(lv_sizes):
        lab[p, 2:2 + n, 4 - myo:14 + myo, 4 - myo:14 + myo] = 2
        lab[p, 2:2 + n, 4:14, 4:14] = 1
        if rv_sizes is not None:
            lab[p, 2:2 + rv_sizes[p], 20:26, 20:26] = 3
    return lab


def test_hand_computed_volumes_ef_mass():
    g = _grid()
    vv = 1.25 * 1.25 * 2.0 / 1000.0
    assert g.voxel_volume_ml == pytest.approx(vv)
    lv = [10, 12, 8, 6, 9]  # ED = phase 1 (max), ES = phase 3 (min)
    rv = [10, 11, 9, 5, 9]
    labels = _cine(lv, rv_sizes=rv)
    res = ph.compute_phenotypes(labels, g)
    assert (res["ed_phase"], res["es_phase"]) == (1, 3)
    assert res["ed_phase_source"] == "computed"
    edv, esv = 12 * 100 * vv, 6 * 100 * vv
    assert res["lv_edv_ml"] == pytest.approx(edv)
    assert res["lv_esv_ml"] == pytest.approx(esv)
    assert res["lv_sv_ml"] == pytest.approx(edv - esv)
    assert res["lv_ef_pct"] == pytest.approx(50.0)
    myo_ed = 12 * (14 * 14 - 10 * 10) * vv
    assert res["lv_mass_g"] == pytest.approx(1.05 * myo_ed)
    assert res["rv_edv_ml"] == pytest.approx(11 * 36 * vv)
    assert res["rv_esv_ml"] == pytest.approx(5 * 36 * vv)
    assert res["rv_ef_pct"] == pytest.approx(100 * 6 / 11)
    assert res["volume_curves_ml"]["lv_cavity"] == pytest.approx([n * 100 * vv for n in lv])
    assert res["volume_curves_ml"]["lv_myocardium"] == pytest.approx([n * 96 * vv for n in lv])
    assert res["bsa_m2"] is None and res["indexed"] is None and res["lr"] is None


def test_ellipsoid_volume_close_to_analytic():
    g = _grid(spacing=(0.5, 0.5, 0.5), shape=(80, 80, 80))
    z, y, x = np.meshgrid(*(np.arange(80) * 0.5 - 20 + 0.25,) * 3, indexing="ij")
    a, b, c = 15.0, 10.0, 12.0
    lab = ((x / a) ** 2 + (y / b) ** 2 + (z / c) ** 2 <= 1).astype(np.uint8)
    res = ph.compute_phenotypes(lab, g)
    analytic = 4 / 3 * math.pi * a * b * c / 1000.0
    assert res["lv_edv_ml"] == pytest.approx(analytic, rel=0.01)


def test_study_phases_and_bsa_and_lr_section():
    g = _grid()
    lv = [10, 12, 8, 6, 9]
    labels = _cine(lv, rv_sizes=lv)
    meta = StudyMeta(ed_phase=0, es_phase=3, height_cm=180.0, weight_kg=80.0)
    lr_grid = Grid((5, 16, 16), np.diag([2.5, 2.5, 8.0, 1.0]))
    lr = np.zeros((5, 5, 16, 16), np.uint8)
    lr[0, 1:3, 2:7, 2:7] = 1  # 50 voxels at ED
    lr[3, 1:2, 2:7, 2:7] = 1  # 25 at ES
    res = ph.compute_phenotypes(labels, g, meta=meta, lr_labels=lr, lr_grid=lr_grid, lr_phases=[0, 3])
    vv = g.voxel_volume_ml
    assert (res["ed_phase"], res["es_phase"]) == (0, 3)
    assert res["ed_phase_source"] == "study" and res["ed_phase_computed"] == 1
    assert res["lv_edv_ml"] == pytest.approx(10 * 100 * vv)
    # Values at the computed phases are reported too when they differ.
    assert res["computed_phases"]["lv_edv_ml"] == pytest.approx(12 * 100 * vv)
    bsa = math.sqrt(180 * 80 / 3600)
    assert res["bsa_m2"] == pytest.approx(bsa)
    assert res["indexed"]["lv_edv_ml_per_m2"] == pytest.approx(res["lv_edv_ml"] / bsa)
    assert res["indexed"]["lv_mass_g_per_m2"] == pytest.approx(res["lv_mass_g"] / bsa)
    lrv = lr_grid.voxel_volume_ml
    assert res["lr"]["lv_edv_ml"] == pytest.approx(50 * lrv)
    assert res["lr"]["lv_esv_ml"] == pytest.approx(25 * lrv)
    assert res["lr"]["lv_ef_pct"] == pytest.approx(50.0)
    assert res["lr"]["phases"] == [0, 3]
    assert res["lr"]["indexed"]["lv_edv_ml_per_m2"] == pytest.approx(50 * lrv / bsa)
    rows = {r.split(",")[0]: r.split(",") for r in ph.to_csv(res).splitlines()}
    assert float(rows["lv_edv_ml_per_m2"][2]) == pytest.approx(50 * lrv / bsa, abs=1e-4)
    assert float(rows["lv_cavity_ml_phase_3"][2]) == pytest.approx(25 * lrv, abs=1e-4)
    assert rows["lv_cavity_ml_phase_1"][2] == ""  # not annotated in the LR labels


def test_subset_of_phases_and_writers(tmp_path):
    g = _grid()
    labels = _cine([12, 6])
    res = ph.compute_phenotypes(labels, g, phases=[4, 11])
    assert (res["ed_phase"], res["es_phase"]) == (4, 11)
    assert math.isnan(res["rv_ef_pct"])  # no RV: EF undefined
    jp = ph.write_json(res, tmp_path / "p.json")
    data = json.loads(jp.read_text())
    assert data["rv_ef_pct"] is None and data["phases"] == [4, 11]
    assert data["lv_ef_pct"] == pytest.approx(50.0)
    cp = ph.write_csv(res, tmp_path / "p.csv")
    rows = list(csv.reader(io.StringIO(cp.read_text())))
    # a fifth column says why a value is flagged (undefined values must not look clean)
    assert rows[0] == ["quantity", "sr_labels", "lr_labels", "unit", "flag"]
    table = {r[0]: r for r in rows[1:]}
    assert table["rv_ef_pct"][1] == "" and table["rv_ef_pct"][4] == "not available: no RV cavity at ED"
    assert table["rv_cavity_ml_phase_4"][4].startswith("empty") and table["plausible"][1] == "false"
    assert float(table["lv_ef_pct"][1]) == pytest.approx(50.0)
    assert table["lv_edv_ml"][3] == "mL" and table["lv_mass_g"][3] == "g"
    assert "lv_cavity_ml_phase_11" in table
    assert not list(tmp_path.glob(".*"))  # no temporary files left


def test_bsa():
    assert ph.bsa_mosteller(None, 70) is None
    assert ph.bsa_mosteller(170, 70) == pytest.approx(math.sqrt(170 * 70 / 3600))


def test_rv_ef_outside_the_plausible_range_is_flagged():
    """An RV reduced to a few voxels at ES (RVEF near 100 %) is implausible, as the same LV value is."""
    g = _grid()
    labels = _cine([10, 6], rv_sizes=[11, 1])
    labels[1][labels[1] == 3] = 0
    labels[1, 2, 20, 20] = 3  # one voxel of RV left at ES
    res = ph.compute_phenotypes(labels, g)
    assert res["rv_ef_pct"] > 95 and res["value_status"]["rv_ef_pct"] == ph.IMPLAUSIBLE
    assert "outside the plausible range 0-95 %" in res["flags"]["rv_ef_pct"] and not res["plausible"]


def test_a_low_rv_ef_that_expert_labels_give_is_not_flagged_but_a_negative_one_is():
    """Expert ACDC labels give RVEF down to about 2 % between the LV's ED and ES frames; an RV larger at ES
    than at ED is not a heart."""
    g = _grid()
    res = ph.compute_phenotypes(_cine([10, 6], rv_sizes=[11, 11]), g)
    assert res["rv_ef_pct"] == pytest.approx(0.0) and res["value_status"]["rv_ef_pct"] == ph.OK
    res = ph.compute_phenotypes(_cine([10, 6], rv_sizes=[10, 11]), g)
    assert res["rv_ef_pct"] < 0 and res["value_status"]["rv_ef_pct"] == ph.IMPLAUSIBLE
