"""The automatic quality checks of a run's labels (`core.qc`): each check passes a well-formed heart and fails
the failure it is meant to find; the engine records them in the result, run.json and its warnings."""

from __future__ import annotations

import json

import numpy as np
import pytest

from gemini_cmr.core import qc
from gemini_cmr.core.engine import SuperResolver
from gemini_cmr.core.outputs import run_info

from .engine.fakes import FakePredictor, make_study


def heart(n_slices: int = 8, size: int = 64, rv: bool = True, rv_offset: int = 0) -> np.ndarray:
    """(Z, Y, X) labels: a walled LV cavity on every slice, the RV beside the septum (or `rv_offset` pixels
    further away)."""
    yy, xx = np.mgrid[:size, :size]
    r = np.hypot(yy - 32, xx - 28)
    lab = np.zeros((n_slices, size, size), np.uint8)
    lab[:, r < 12] = 2
    lab[:, r < 8] = 1
    if rv:
        rv_mask = (np.hypot(yy - 32, xx - (46 + rv_offset)) < 6) & (r >= 12)
        lab[:, rv_mask] = 3
    return lab


def test_well_formed_heart_passes_every_check():
    lab = heart()
    out = qc.assess_labels(lab[None], [0], (1.5, 1.5), [0], curves=None)
    assert out["passed"] and out["failed"] == []
    assert {c["name"] for c in out["checks"]} == {"lv_ring", "lv_continuous", "rv_beside_lv"}
    assert qc.warning_lines(out) == []


def test_rim_fraction_of_an_open_ring():
    lab = heart()[3]
    assert qc.rim_on_myocardium(lab) == 1.0
    open_ring = lab.copy()
    open_ring[:, :28][open_ring[:, :28] == 2] = 0  # the left half of the wall gone
    assert 0.3 < qc.rim_on_myocardium(open_ring) < 0.7
    assert np.isnan(qc.rim_on_myocardium(np.zeros_like(lab)))


def test_unwalled_cavity_fails_the_ring_check_but_not_at_the_ends():
    lab = heart()
    ends = lab.copy()
    ends[0][ends[0] == 2] = 0  # the basal and apical LV slices may be open
    ends[-1][ends[-1] == 2] = 0
    assert qc.ring_check(ends, 0).ok
    inner = lab.copy()
    inner[4][inner[4] == 2] = 0
    c = qc.ring_check(inner, 7)
    assert not c.ok and c.value == 0.0 and "slice 4" in c.message and "phase 7" in c.message


def test_missing_lv_slice_fails_the_continuity_check():
    lab = heart()
    lab[3][lab[3] == 1] = 2
    lab[5][lab[5] == 1] = 2
    c = qc.continuity_check(lab, 0)
    assert not c.ok and c.value == 2.0 and "slices 3, 5" in c.message
    assert qc.continuity_check(heart(), 0).ok
    empty = qc.continuity_check(np.zeros((4, 8, 8), np.uint8), 0)
    assert empty.ok and empty.value == 0.0


def test_rv_away_from_the_lv_fails():
    assert qc.rv_check(heart(), 0, (1.5, 1.5)).ok
    far = heart(rv_offset=12)  # RV 12 px (18 mm) further from the septum
    c = qc.rv_check(far, 0, (1.5, 1.5))
    assert not c.ok and c.value == 0.0
    # the same pixels are beside the LV at a fine enough pixel size: the limit is in millimetres
    assert qc.rv_check(heart(rv_offset=1), 0, (1.5, 1.5)).ok
    assert not qc.rv_check(heart(rv_offset=1), 0, (4.0, 4.0)).ok
    no_rv = qc.rv_check(heart(rv=False), 0, (1.5, 1.5))
    assert no_rv.ok and no_rv.value is not None and np.isnan(no_rv.value)


def test_volume_curve_jump_fails_and_a_smooth_curve_passes():
    t = np.arange(20)
    smooth = 150 - 80 * np.sin(np.pi * t / 20) ** 2
    assert qc.curve_check(smooth, list(range(20))).ok
    jumpy = smooth.copy()
    jumpy[12] -= 50
    c = qc.curve_check(jumpy, list(range(100, 120)))
    assert not c.ok and "phase 112" in c.message and c.value > qc.CURVE_JUMP_MAX
    assert qc.curve_check(smooth[::3], list(range(7))) is None  # too few phases to judge


def test_checks_run_at_the_phases_named_and_nan_becomes_null():
    lab = np.stack([heart(), heart(rv=False)])
    out = qc.assess_labels(lab, [3, 9], (1.5, 1.5), [9, 9, 4])
    assert {c["phase"] for c in out["checks"]} == {9}
    rv = next(c for c in out["checks"] if c["name"] == "rv_beside_lv")
    assert rv["value"] is None
    json.dumps(out, allow_nan=False)


class _BrokenPredictor(FakePredictor):
    """The fake anatomy with the LV cavity of one acquired-slice level removed in every phase."""

    def predict(self, study, phases=None, progress=None, cancel=None):
        pred = super().predict(study, phases, progress, cancel)
        lab = pred.sr_labels
        z = np.flatnonzero((lab[0] == 1).any(axis=(1, 2)))
        mid = z[len(z) // 2 - 4: len(z) // 2 + 4]
        part = lab[:, mid]
        part[part == 1] = 2
        lab[:, mid] = part
        return pred


@pytest.mark.parametrize("broken", [False, True])
def test_engine_records_the_checks_in_the_result_run_json_and_warnings(broken):
    study = make_study(n_phases=12, oblique=False)
    model = _BrokenPredictor() if broken else FakePredictor()
    r = SuperResolver(model=model).run(study, phases="all", meshes="none", motion_correction=False)
    assert r.qc is not None and r.qc["version"] == qc.QC_VERSION
    names = {c["name"] for c in r.qc["checks"]}
    assert {"lv_ring", "lv_continuous", "rv_beside_lv", "heart_beats", "myo_conserved", "lv_curve_smooth"} <= names
    assert {c["phase"] for c in r.qc["checks"] if c["phase"] is not None} == {r.ed_phase, r.es_phase}
    info = run_info(r)
    assert info["quality_checks"] == r.qc
    json.dumps(info["quality_checks"], allow_nan=False)
    flagged = [w for w in r.warnings if w.startswith("quality check:")]
    assert len(flagged) == len(r.qc["failed"])
    lv_failed = [c for c in r.qc["checks"] if c["name"].startswith("lv_") and not c["ok"]]
    if broken:
        assert not r.qc["passed"] and lv_failed
        assert any("no LV cavity on slice" in w for w in flagged)
    else:
        # (the fake anatomy's RV leaves the septum at ES: 6.5 mm, beyond RV_GAP_MM, so only the LV is asserted)
        assert not lv_failed


def test_heart_in_still_tissue_fails_the_beating_check():
    from gemini_cmr.core.postprocess import cine_motion_map
    from gemini_cmr.core.study import Grid

    grid = Grid((6, 64, 64), np.diag([1.5, 1.5, 8.0, 1.0]))
    t = np.arange(16)
    rng = np.random.default_rng(0)
    image = rng.normal(100, 2, (16, 6, 64, 64)).astype(np.float32)
    image[:, :, 24:40, 12:28] += (60 * np.sin(2 * np.pi * t / 16))[:, None, None, None]  # what beats
    motion = cine_motion_map(image, grid)
    beating = np.zeros((6, 64, 64), np.uint8)
    beating[:, 26:38, 14:26] = 1
    still = np.zeros_like(beating)
    still[:, 26:38, 44:56] = 1
    assert qc.beating_check(beating, 0, motion).ok
    c = qc.beating_check(still, 3, motion)
    assert not c.ok and c.value < qc.HEART_MOTION_MIN and "phase 3" in c.message
    assert qc.beating_check(still, 0, None) is None
    assert qc.beating_check(np.zeros_like(still), 0, motion) is None
    out = qc.assess_labels(np.stack([still, still]), [0, 5], (1.5, 1.5), [0, 5], image=image, grid=grid)
    assert [c["phase"] for c in out["checks"] if c["name"] == "heart_beats"] == [None]  # once, from ED
    assert not out["passed"] and any("hardly moves" in m for m in out["failed"])


def test_snapshot_rows_tiles_and_outlines():
    lab = np.stack([heart(n_slices=20), heart(n_slices=20)])
    lab[1, :2] = 0  # no heart on the first two slices at ES
    image = np.full((10, *lab.shape[1:]), 20.0, np.float32)  # the whole cine: indexed by study phase
    image[[4, 9]] = np.where(lab > 0, 200.0, 20.0)
    img = qc.snapshot(image, lab, [4, 9], 4, 9, (1.5, 1.5), "s-01",
                      {"checks": [{"name": "lv_ring", "ok": False}]})
    assert img.dtype == np.uint8 and img.ndim == 3 and img.shape[2] == 3
    tiles = qc.SNAPSHOT_MAX_SLICES
    assert img.shape[1] == tiles * (qc.SNAPSHOT_TILE_PX + 2)  # 20 slices shown as 16 tiles
    body = img[30:]
    for colour in ((40, 205, 80), (250, 215, 30), (50, 130, 255)):  # every structure's outline drawn
        assert (body == colour).all(axis=2).any(), colour
    verdict = img[12:28].astype(int)
    assert ((verdict[..., 0] > 150) & (verdict[..., 1] < 120)).any()  # the failed verdict in red
    one = qc.snapshot(image, lab[:1], [4], 4, 4, (1.5, 1.5))  # ED = ES: two rows of the same phase
    assert one.shape[0] == img.shape[0]
    with pytest.raises(ValueError):
        qc.snapshot(image, lab, [4, 9], 1, 2, (1.5, 1.5))


def test_outputs_hold_the_snapshot(tmp_path):
    from PIL import Image

    from gemini_cmr.core.outputs import QC_SNAPSHOT, write_outputs

    study = make_study(n_phases=4, oblique=False)
    r = SuperResolver(model=FakePredictor()).run(study, phases="all", meshes="none", motion_correction=False)
    write_outputs(r, tmp_path / "o", mesh_formats=())
    png = tmp_path / "o" / QC_SNAPSHOT
    with Image.open(png) as im:
        assert im.format == "PNG" and im.mode == "RGB" and im.size[0] > 500
    assert QC_SNAPSHOT in json.loads((tmp_path / "o" / "run.json").read_text())["outputs"]


def test_myocardium_that_changes_its_volume_fails():
    assert qc.myocardium_check([100, 110, 90], [0, 5, 9], 0, 9).ok
    c = qc.myocardium_check([100, 110, 40], [0, 5, 9], 0, 9)
    assert not c.ok and c.value == pytest.approx(0.4) and c.limit == qc.MYO_ES_ED[0] and "phase 9" in c.message
    assert not qc.myocardium_check([100, 110, 250], [0, 5, 9], 0, 9).ok
    assert qc.myocardium_check([100, 50], [0, 5], 0, 0) is None  # ED = ES
    assert qc.myocardium_check([0, 50], [0, 5], 0, 5) is None  # no myocardium at ED: plausibility's case
    assert qc.myocardium_check([100, 50], [0, 5], 0, 7) is None  # ES not super-resolved
    out = qc.assess_labels(np.stack([heart(), heart()]), [0, 5], (1.5, 1.5), [0, 5],
                           curves={"lv_myocardium": [100.0, 30.0], "lv_cavity": [120.0, 50.0]})
    assert [c["name"] for c in out["checks"] if not c["ok"]] == ["myo_conserved"]


def test_failed_names_by_phase():
    qc_result = {"checks": [{"name": "lv_ring", "ok": False, "phase": 3}, {"name": "rv_beside_lv", "ok": False, "phase": 7},
                            {"name": "heart_beats", "ok": False, "phase": None}, {"name": "lv_ring", "ok": True, "phase": 7},
                            {"name": "lv_ring", "ok": False, "phase": 7}]}
    assert qc.failed_names(qc_result) == ["heart_beats", "lv_ring", "rv_beside_lv"]
    assert qc.failed_names(qc_result, 3) == ["heart_beats", "lv_ring"]
    assert qc.failed_names(qc_result, 9) == ["heart_beats"]
    assert qc.failed_names(None) == []
