"""`core.train.data.check_subjects`: one row per subject (id, ok, problem), used by the app's training wizard."""

from __future__ import annotations

import json
import shutil

import pytest

from gemini_cmr.core.errors import DataError
from gemini_cmr.core.train.data import check_subjects


def test_every_subject_is_reported(toy_data, tmp_path):
    rows = check_subjects(toy_data)
    assert [r[0] for r in rows] == ["toy-000", "toy-001", "toy-002", "toy-003"]
    assert all(ok and problem == "" for _, ok, problem in rows)

    data = tmp_path / "d"
    shutil.copytree(toy_data, data)
    (data / "toy-001" / "hr_labels.nii.gz").unlink()
    mf = json.loads((data / "manifest.json").read_text())
    mf["subjects"][2]["es_phase"] = 99
    (data / "manifest.json").write_text(json.dumps(mf))
    rows = {sid: (ok, problem) for sid, ok, problem in check_subjects(data)}
    assert rows["toy-000"] == (True, "") and rows["toy-003"] == (True, "")
    assert not rows["toy-001"][0] and "hr_labels file not found" in rows["toy-001"][1]
    assert not rows["toy-002"][0] and "es_phase 99" in rows["toy-002"][1]
    assert not rows["toy-001"][1].startswith(str(data))  # the dataset folder is not repeated
    # only the splits asked for
    assert [r[0] for r in check_subjects(data, splits=("val",))] == [
        s["id"] for s in mf["subjects"] if s["split"] == "val"]


def test_unreadable_manifest_raises(tmp_path):
    with pytest.raises(DataError, match="no manifest.json"):
        check_subjects(tmp_path)
