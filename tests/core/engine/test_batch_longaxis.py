"""`gemini-cmr batch --long-axis auto|off`: each study's long-axis cines found as `super-resolve` finds them, used and
recorded in its run.json; the resume check follows the long-axis files beside a study and the option."""

from __future__ import annotations

import json
import os

from gemini_cmr.core.io.nifti import save_nifti

from .fakes import FakePredictor, make_study
from .test_longaxis_engine import four_chamber


def test_batch_long_axis_auto_and_off(tmp_path, monkeypatch, capsys):
    from gemini_cmr.cli.main import main

    s = make_study(n_phases=2)
    la = four_chamber(s)
    for sub in ("1000001", "1000002"):
        save_nifti(tmp_path / sub / "sa.nii.gz", s.image, s.affine, phase_interval_ms=40.0)
    la_file = tmp_path / "1000001" / "la_4ch.nii.gz"
    save_nifti(la_file, la.image[:, None], la.affine, 40.0)
    far = la.affine.copy()
    far[:3, 3] += 500.0 * s.grid.normal  # a long-axis file that misses the stack: ignored with a warning
    save_nifti(tmp_path / "1000002" / "la_2ch.nii.gz", la.image[:, None], far, 40.0)
    lst = tmp_path / "list.txt"
    lst.write_text("1000001/sa.nii.gz\n1000002/sa.nii.gz\n")

    class Fixed(FakePredictor):
        loaded = type("Loaded", (), {"weights_path": tmp_path / "fake.safetensors"})()

        def predict(self, study, phases=None, progress=None, cancel=None, **kw):
            study.meta.extra.update(heart_centre=s.meta.extra["heart_centre"], heart_frame=s.meta.extra["heart_frame"])
            return super().predict(study, phases, progress, cancel)

    monkeypatch.setattr("gemini_cmr.core.predict.Predictor.load", classmethod(lambda cls, *a, **k: Fixed()))
    monkeypatch.setattr("gemini_cmr.cli.batch.model_identity",
                        lambda model, adapter: {"model": {"path": "default", "sha256": [Fixed.model_id]}, "adapter": None})
    out = tmp_path / "out"
    args = ["batch", str(lst), "--out", str(out), "--device", "cpu", "--model", str(tmp_path), "--quiet",
            "--no-motion-correction"]

    def summary():
        return {r["study"].split("/")[-2]: r for r in json.loads((out / "batch_summary.json").read_text())["studies"]}

    assert main(args) == 0
    err = capsys.readouterr().err
    one, two = (json.loads((out / f"{n}_sa" / "run.json").read_text()) for n in ("1000001", "1000002"))
    (rec,) = one["long_axis"]
    assert rec["used"] and rec["view"] == "4ch" and rec["path"] == str(la_file)
    assert (out / "1000001_sa" / "la_4ch_sr_labels.nii.gz").is_file() and one["arguments"]["long_axis"] == "auto"
    (bad,) = two["long_axis"]
    assert not bad["used"] and "does not intersect" in bad["reason"]
    assert "la_2ch.nii.gz" in summary()["1000002"]["warnings"] and "la_2ch.nii.gz: the long-axis plane" in err

    assert main(args) == 0  # resumed: nothing changed
    assert {r["status"] for r in summary().values()} == {"skipped"}
    st = la_file.stat()  # the long-axis file beside the study rewritten: that study is redone
    os.utime(la_file, ns=(st.st_atime_ns, st.st_mtime_ns + 5_000_000_000))
    assert main(args) == 0
    rows = summary()
    assert rows["1000001"]["status"] == "ok" and "long-axis files" in rows["1000001"]["reason"]
    assert rows["1000002"]["status"] == "skipped"

    assert main([*args, "--long-axis", "off"]) == 0
    rows = summary()
    assert all(r["status"] == "ok" and "other options (long_axis)" in r["reason"] for r in rows.values()), rows
    one = json.loads((out / "1000001_sa" / "run.json").read_text())
    assert one["long_axis"] == [] and not (out / "1000001_sa" / "la_4ch_sr_labels.nii.gz").exists()
    capsys.readouterr()
