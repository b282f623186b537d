"""V-AMA domains from real data (../shared/data): a folder of DICOM studies and `acdc:` accepted, in their
own slice frames; a few real training steps; the adapter refused for another model; bad sources named."""

from __future__ import annotations

import json
import zipfile

import numpy as np
import pytest

from gemini_cmr.core.errors import DataError, ModelError
from gemini_cmr.core.train.vama import TrainSettings, cohort_studies, train_vama
from gemini_cmr.core.vama.domains import check_domains, read_domain

pytestmark = pytest.mark.usefixtures("one_thread")

SMALL = {"base_channels": 4, "depth": 2, "latent_channels": 4, "disc_channels": 8}
ACDC_MODEL = "resources/models/gemini-acdc"


@pytest.fixture
def real(shared_data, tmp_path):
    """A folder of DICOM studies (one Sunnybrook series, linked) and an ACDC cohort of 3 patients."""
    sb = shared_data / "sunnybrook" / "SCD0000401"
    acdc = shared_data / "acdc" / "training"
    if not sb.is_dir() or not acdc.is_dir():
        pytest.skip("Sunnybrook or ACDC not in ../shared/data")
    studies = tmp_path / "ge"
    studies.mkdir()
    (studies / "SCD0000401").symlink_to(sb, target_is_directory=True)
    cohort = tmp_path / "acdc"
    cohort.mkdir()
    for p in ("patient001", "patient002", "patient003"):
        (cohort / p).symlink_to(acdc / p, target_is_directory=True)
    return studies, cohort


def test_dicom_folder_and_acdc_domains_in_their_own_slice_frames(real):
    studies, cohort = real
    src = read_domain(studies, "source")
    assert [s.name for s in src] == ["SCD0000401"] and src[0].n_slices == 220  # 20 phases x 11 slices
    assert src[0].reference is None and "GE" in src[0].description
    tgt = read_domain(f"acdc:{cohort}", "target", cohort=cohort_studies)
    assert [t.name for t in tgt] == ["patient001", "patient002", "patient003"]
    assert all(t.has_landmark_labels for t in tgt)
    # the oblique DICOM stack and the axis-aligned ACDC stacks, both in their slice frames
    for s in src + tgt:
        assert np.allclose(s.grid.affine[:3, :3], np.diag(s.grid.spacing))
    check_domains(src, tgt, studies, f"acdc:{cohort}")
    # the series folder itself (one DICOM series) is one study too
    assert [s.name for s in read_domain(studies / "SCD0000401", "source")] == ["SCD0000401"]


def test_a_few_real_training_steps_and_the_adapter_is_tied_to_its_model(real, tmp_path):
    from gemini_cmr.core.engine import SuperResolver
    from gemini_cmr.core.resources import bundled_model_path
    from gemini_cmr.core.vama.summary import adapter_summary

    studies, cohort = real
    settings = TrainSettings(epochs=1, max_steps=2, steps_per_epoch=2, batch_size=4, crop=32, device="cpu",
                             segment_phases=2)
    events = []
    out = train_vama(studies, f"acdc:{cohort}", tmp_path / "run", gemini=ACDC_MODEL, settings=settings,
                     model_cfg=SMALL, progress=events.append)
    cfg = json.loads((out / "config.json").read_text())
    assert [e["study"] for e in events if e["event"] == "segment"] == ["SCD0000401"]
    assert "GE MEDICAL SYSTEMS" in cfg["training"]["source_description"]
    assert "220 slices" in cfg["training"]["source_description"]
    assert {a["target"] for a in cfg["alignment"]} <= {"patient001", "patient002", "patient003"}
    assert all(a["rms_mm"] < 40 for a in cfg["alignment"])
    assert "source_labelled" not in cfg.get("evaluation", {})  # unlabelled source: nothing to measure
    text = adapter_summary(out)
    assert cfg["gemini_model_id"][:12] in text and "GE MEDICAL SYSTEMS" in text and "not measured" in text
    with pytest.raises(ModelError, match="trained for"):
        SuperResolver(model=str(bundled_model_path()), adapter=str(out), device="cpu")


def test_bad_real_sources_are_named(real, tmp_path):
    studies, cohort = real
    other = tmp_path / "contours-only"
    (other / "i-contours").mkdir(parents=True)
    (other / "i-contours" / "IM-0001-0048-icontour-manual.txt").write_text("1.0 2.0\n")
    with zipfile.ZipFile(other / "broken.zip", "w") as z:
        z.writestr("readme.txt", "no images")
    with pytest.raises(DataError, match="contours-only.*no readable short-axis cine"):
        read_domain(other, "source")
    with pytest.raises(DataError, match="same folder"):
        train_vama(cohort, f"acdc:{cohort}", tmp_path / "run")
    with pytest.raises(DataError, match="ge: 220 source slices.*at least 500"):
        train_vama(studies, f"acdc:{cohort}", tmp_path / "run", settings=TrainSettings(min_slices=500))
