"""Long-axis inputs through the engine, the outputs and `gemini-cmr super-resolve --long-axis`: checked against the
stack (bad ones ignored with one warning naming the file, the short-axis result still produced), the SR labels cut
along each plane (`la_<view>_sr_labels.nii.gz`), run.json's record, auto-detection and --no-long-axis."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np

from gemini_cmr.core.engine import SuperResolver
from gemini_cmr.core.evaluation.metrics import dice_per_structure
from gemini_cmr.core.io.nifti import save_nifti
from gemini_cmr.core.longaxis import LongAxisCine, pixel_world
from gemini_cmr.core.study import Grid

from .fakes import FakePredictor, anatomy, make_study, phase_scale


def four_chamber(study, n: int = 96, px: float = 1.5, path: str = "la_4ch.nii.gz") -> LongAxisCine:
    """A plane through the fake heart's LV-RV axis and long axis (normal: its second axis)."""
    c, rot = study.meta.extra["heart_centre"], study.meta.extra["heart_frame"]
    aff = np.eye(4)
    aff[:3, 0], aff[:3, 1], aff[:3, 2] = rot[:, 0] * px, rot[:, 2] * px, rot[:, 1] * 8.0
    aff[:3, 3] = c - aff[:3, :3] @ np.array([(n - 1) / 2, (n - 1) / 2, 0.0])
    world = pixel_world(Grid((1, n, n), aff))
    labels = np.stack([anatomy(world, c, rot, phase_scale(t, study.n_phases)) for t in range(study.n_phases)])
    image = np.where(labels == 1, 300.0, np.where(labels == 2, 80.0, np.where(labels == 3, 250.0, 30.0)))
    return LongAxisCine("4ch", image.astype(np.float32), aff, labels, source_path=path)


def test_engine_cuts_the_sr_labels_and_ignores_bad_inputs():
    s = make_study(n_phases=2, ed_es=(0, 1))
    good = four_chamber(s)
    parallel = four_chamber(s, path="la_2ch.nii.gz")
    parallel.affine = s.affine.copy()
    parallel.affine[:3, 2] *= 0.5
    r = SuperResolver(model=FakePredictor()).run(s, phases="all", meshes="none", motion_correction=False,
                                                 long_axis=[good, parallel])
    assert [i.used for i in r.long_axis] == [True, False]
    assert r.long_axis[1].reason.startswith("la_2ch.nii.gz: the plane is 0 degrees from the short-axis slices")
    assert any(w.startswith("long-axis input ignored: la_2ch.nii.gz:") for w in r.warnings)
    item = r.long_axis[0]
    assert item.cut_phases == [0, 1] and item.sr_labels.shape == (2, 96, 96)
    inside = item.inside
    assert 2000 < inside.sum() < 96 * 96  # the slab (10 x 8 mm) covers part of the 144 mm plane
    for row, t in enumerate(item.cut_phases):
        d = dice_per_structure(item.sr_labels[row] * inside, good.labels[t] * inside)
        assert min(d.values()) > 0.85, d
    assert r.sr_labels.shape[0] == 2 and "long_axis" in r.timings  # the short-axis result is there too


def test_cli_auto_detection_outputs_run_json_and_bad_files(tmp_path, monkeypatch, capsys):
    from gemini_cmr.cli.main import main

    s = make_study(n_phases=2)
    sub = tmp_path / "1000001"
    save_nifti(sub / "sa.nii.gz", s.image, s.affine, phase_interval_ms=40.0)
    la = four_chamber(s)
    save_nifti(sub / "la_4ch.nii.gz", la.image[:, None], la.affine, 40.0)
    bad = tmp_path / "other" / "la_2ch.nii.gz"
    far = la.affine.copy()
    far[:3, 3] += 500.0 * s.grid.normal
    save_nifti(bad, la.image[:, None], far, 40.0)

    class Fixed(FakePredictor):
        loaded = type("Loaded", (), {"weights_path": tmp_path / "fake.safetensors"})()

        def predict(self, study, phases=None, progress=None, cancel=None, **kw):
            study.meta.extra.update(heart_centre=s.meta.extra["heart_centre"], heart_frame=s.meta.extra["heart_frame"])
            return super().predict(study, phases, progress, cancel)

    monkeypatch.setattr("gemini_cmr.core.predict.Predictor.load", classmethod(lambda cls, *a, **k: Fixed()))
    out = tmp_path / "out"
    args = ["super-resolve", str(sub / "sa.nii.gz"), "--out", str(out), "--mesh-format", "stl", "--device", "cpu",
            "--model", str(tmp_path)]
    assert main(args) == 0, capsys.readouterr().err
    run = json.loads((out / "run.json").read_text())
    (rec,) = run["long_axis"]
    assert rec["used"] and rec["view"] == "4ch" and rec["output"] == "la_4ch_sr_labels.nii.gz"
    assert rec["path"].endswith("la_4ch.nii.gz") and "la_4ch_sr_labels.nii.gz" in run["outputs"]
    mc = run["motion_correction"]  # the long-axis cine is evidence for the correction; its offset moves the cut
    assert mc["long_axis"][0]["view"] == "4ch" and mc["long_axis"][0]["slices_measured"] >= 3
    assert "long-axis" in mc["method"] and len(rec["offset_mm"]) == 2
    img = nib.load(out / "la_4ch_sr_labels.nii.gz")
    assert img.shape == (96, 96, 1, 2) and np.allclose(img.affine, la.affine, atol=1e-4)
    cut = np.asarray(img.dataobj)[:, :, 0, 0].T
    assert dice_per_structure(cut, la.labels[0] * (cut > 0))["lv_cavity"] > 0.85
    capsys.readouterr()

    assert main([*args, "--long-axis", str(bad)]) == 0
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if "la_2ch.nii.gz" in ln]
    assert len(lines) == 1 and "does not intersect the short-axis stack" in lines[0] and "warning" in lines[0]
    run = json.loads((out / "run.json").read_text())
    assert [r["used"] for r in run["long_axis"]] == [False] and str(bad) in run["long_axis"][0]["reason"]
    assert not (out / "la_4ch_sr_labels.nii.gz").exists()  # the earlier run's cut is not left behind
    assert (out / "sr_labels.nii.gz").is_file() and run["arguments"]["long_axis"] == [str(bad)]

    missing = tmp_path / "nope.nii.gz"
    assert main([*args, "--long-axis", str(missing)]) == 0
    run = json.loads((out / "run.json").read_text())
    assert "no such file" in run["long_axis"][0]["reason"] and str(missing) in run["long_axis"][0]["reason"]

    assert main([*args, "--no-long-axis"]) == 0
    run = json.loads((out / "run.json").read_text())
    assert run["long_axis"] == [] and run["arguments"]["no_long_axis"] is True
