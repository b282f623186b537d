"""What keeps the real path's peak memory down gives the same numbers and files: the SR stack placed straight
into the SR image, post-processing on the heart box, the int16 SR image converted and compressed chunk by
chunk, freed heap memory given back after a prediction."""

from __future__ import annotations

import gzip
import io
from pathlib import Path

import numpy as np
import pytest

from gemini_cmr.core import outputs
from gemini_cmr.core import predict as predict_mod
from gemini_cmr.core.geometry import place_on_sr_grid, sr_grid
from gemini_cmr.core.io.loader import load_study
from gemini_cmr.core.io.nifti import ScaledInt16, int16_scaling, nifti_file_parts
from gemini_cmr.core.postprocess import postprocess_labels
from gemini_cmr.core.predict import Predictor, run_stacks

DEMO = Path(__file__).resolve().parents[3] / "resources" / "demo" / "demo_study.nii.gz"


@pytest.fixture(scope="module")
def study():
    return load_study(DEMO)


def test_place_on_sr_grid_into_an_array_gives_the_same_stack(study):
    sr = sr_grid(study.grid)
    ref = place_on_sr_grid(study.image[:2], study.grid, sr)
    out = np.full(ref.shape, -1.0, np.float32)
    assert place_on_sr_grid(study.image[:2], study.grid, sr, out=out) is out
    np.testing.assert_array_equal(out, ref)
    out64 = np.zeros(ref.shape, np.float64)  # another type: converted
    np.testing.assert_array_equal(place_on_sr_grid(study.image[:2], study.grid, sr, out=out64), ref)
    with pytest.raises(ValueError):
        place_on_sr_grid(study.image[:2], study.grid, sr, out=out[:1])


def test_roi_prediction_is_the_whole_field_composition(roi_model, study, monkeypatch):
    """The heart-box prediction equals its definition: the placed LR stack with the network's output in the
    box, labels post-processed on the whole field; the stack is placed into the returned SR image (no
    separate placed array) and freed heap memory is given back once per prediction."""
    p = Predictor.load(roi_model, device="cpu")
    phases = [0, 1, 2]
    roi = p.predict(study, phases=[0]).roi
    assert roi is not None
    placed_into, released = [], []
    real_place = predict_mod.place_on_sr_grid

    def spy(*args, out=None, **kw):
        placed_into.append(out)
        return real_place(*args, out=out, **kw)

    monkeypatch.setattr(predict_mod, "place_on_sr_grid", spy)
    monkeypatch.setattr(predict_mod, "release_free_memory", lambda: released.append(1) or True)
    p.batch_size = 2
    pred = p.predict(study, phases=phases, roi=roi)
    assert released == [1]
    assert len(placed_into) == 2 and all(o is not None and np.shares_memory(o, pred.sr_image) for o in placed_into)

    sr = sr_grid(study.grid)
    y0, y1, x0, x1 = roi
    scale = p._roi_scale(study, sr, roi, 1.0, p.config.get("normalisation", {}))
    placed = real_place(study.image[phases], study.grid, sr)
    img, lab_box = run_stacks(p._inference_model(), placed[:, :, y0:y1, x0:x1], p.device, p.precision, scale)
    placed[:, :, y0:y1, x0:x1] = img
    lab = np.zeros(placed.shape, np.uint8)
    lab[:, :, y0:y1, x0:x1] = lab_box
    lab = postprocess_labels(lab, p.config)
    np.testing.assert_array_equal(pred.sr_image, placed)
    np.testing.assert_array_equal(pred.sr_labels, lab)


def test_post_processing_on_a_box_holding_every_label_is_the_whole_field_result():
    rng = np.random.default_rng(3)
    lab = np.zeros((2, 8, 40, 50), np.uint8)
    lab[:, :, 10:30, 12:40] = rng.integers(0, 4, (2, 8, 20, 28)) * (rng.random((2, 8, 20, 28)) < 0.3)
    cfg = {"inference": {"keep_largest_heart_component": True, "heart_component_by": "myocardium"}}
    whole = postprocess_labels(lab.copy(), cfg)
    box = postprocess_labels(lab[:, :, 10:30, 12:40].copy(), cfg)
    np.testing.assert_array_equal(box, whole[:, :, 10:30, 12:40])
    assert not whole[:, :, :10].any() and not whole[:, :, 30:].any()


def test_scaled_int16_reads_any_byte_range_of_the_converted_image():
    rng = np.random.default_rng(0)
    img = (rng.normal(100, 50, (2, 3, 7, 9))).astype(np.float32)
    slope, inter = int16_scaling(img)
    lazy = ScaledInt16(img, slope, inter)
    full = lazy.array()
    _, materialised = nifti_file_parts(img, np.eye(4), None, "x", "int16")
    np.testing.assert_array_equal(full, materialised)
    raw = full.tobytes()
    assert lazy.nbytes == len(raw)
    for b0, b1 in [(0, len(raw)), (0, 1), (5, 200), (125, 126), (126, 252), (len(raw) - 3, len(raw)), (40, 40)]:
        assert bytes(lazy.read(b0, b1)) == raw[b0:b1]


@pytest.mark.parametrize("size", [0, 1000, 3 * (1 << 20), outputs._GZ_CHUNK, 2 * outputs._GZ_CHUNK + 17])
def test_gzip_written_as_made_is_the_same_member(size):
    data = (np.arange(size, dtype=np.int64) % 251).astype(np.uint8).tobytes()
    prefix = b"HEADER" * 10
    for workers in (1, 2):
        buf = io.BytesIO()
        n = outputs.gzip_parallel_write(buf, data, workers=workers, prefix=prefix)
        assert n == len(buf.getvalue())
        assert buf.getvalue() == outputs.gzip_parallel(data, workers=workers, prefix=prefix)
        assert gzip.decompress(buf.getvalue()) == prefix + data


def test_int16_sr_image_file_is_the_file_of_the_materialised_data(tmp_path, monkeypatch):
    """Converting chunk by chunk while compressing (several chunks: a small chunk size) writes the bytes
    that compressing the whole converted image writes."""
    monkeypatch.setattr(outputs, "_GZ_CHUNK", 16 << 10)  # rows of 4,800 bytes: boundaries inside rows
    rng = np.random.default_rng(1)
    img = rng.normal(300, 80, (3, 5, 40, 60)).astype(np.float32)
    aff = np.diag([1.2, 1.2, 2.0, 1.0])
    path = outputs.save_nifti_fast(tmp_path / "a.nii.gz", img, aff, 40.0, "x", "int16")
    header, data = nifti_file_parts(img, aff, 40.0, "x", "int16")
    assert path.read_bytes() == outputs.gzip_parallel(data, prefix=header)
    assert len(data.tobytes()) > 4 * outputs._GZ_CHUNK
