from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from gemini_cmr.core.errors import DataError
from gemini_cmr.core.geometry import place_on_sr_grid, sr_grid
from gemini_cmr.core.io.nifti import read_nifti_array, save_nifti
from gemini_cmr.core.models.preprocess import intensity_scale
from gemini_cmr.core.study import Grid
from gemini_cmr.core.train.data import Augment, TrainItems, load_split, read_manifest


def test_samples_on_the_sr_grid(toy_data, tmp_path):
    samples = load_split(toy_data, "train", cache_dir=tmp_path / "cache")
    assert len(samples) == 3 * 4  # every phase is labelled in the toy set
    s = samples[0]
    lr, lr_aff, _ = read_nifti_array(toy_data / "toy-000" / "lr_image.nii.gz")
    hr, _, _ = read_nifti_array(toy_data / "toy-000" / "hr_image.nii.gz")
    lab, _, _ = read_nifti_array(toy_data / "toy-000" / "hr_labels.nii.gz")
    grid = Grid(lr.shape[1:], lr_aff)
    scale = intensity_scale(lr)
    expected = place_on_sr_grid(lr[0], grid, sr_grid(grid)) / scale
    np.testing.assert_allclose(s.x.astype(np.float32), expected, rtol=2e-3, atol=2e-3)
    np.testing.assert_allclose(s.image.astype(np.float32), hr[0] / scale, rtol=2e-3, atol=2e-3)
    np.testing.assert_array_equal(s.labels, lab[0])  # exact copy: HR already on the SR grid
    assert s.is_ed and samples[2].is_es
    # the cache gives the same samples without reading NIfTI
    again = load_split(toy_data, "train", cache_dir=tmp_path / "cache")
    assert len(list((tmp_path / "cache").glob("*.npz"))) == 3
    np.testing.assert_array_equal(again[5].x, samples[5].x)


def test_parallel_preprocessing_gives_the_same_samples(toy_data, tmp_path):
    """Subjects missing from the cache are preprocessed in worker processes: same samples, same order,
    and the cache files they write are read back identically."""
    one = load_split(toy_data, "train", workers=1)
    two = load_split(toy_data, "train", cache_dir=tmp_path / "cache", workers=2)
    assert [(s.subject, s.phase) for s in two] == [(s.subject, s.phase) for s in one]
    for a, b in zip(one, two):
        np.testing.assert_array_equal(a.x, b.x)
        np.testing.assert_array_equal(a.labels, b.labels)
    again = load_split(toy_data, "train", cache_dir=tmp_path / "cache", workers=2)
    np.testing.assert_array_equal(again[-1].image, one[-1].image)


def test_hr_on_another_grid_is_resampled(toy_data, tmp_path):
    data = tmp_path / "d"
    shutil.copytree(toy_data, data)
    sub = data / "toy-000"
    for name in ("hr_image", "hr_labels"):
        arr, aff, _ = read_nifti_array(sub / f"{name}.nii.gz")
        shifted = aff.copy()
        shifted[:3, 3] += aff[:3, :3] @ np.array([2.0, 0.0, 0.0])  # moved 2 voxels along i
        # content moved with it, so world positions are unchanged where both overlap
        arr2 = np.zeros_like(arr)
        arr2[..., :-2] = arr[..., 2:]
        save_nifti(sub / f"{name}.nii.gz", arr2, shifted)
    moved = load_split(data, "train")[0]
    ref = load_split(toy_data, "train")[0]
    np.testing.assert_array_equal(moved.labels[:, :, 4:-4], ref.labels[:, :, 4:-4])


def _edit_manifest(src, dst, fn):
    shutil.copytree(src, dst)
    m = json.loads((dst / "manifest.json").read_text())
    fn(m)
    (dst / "manifest.json").write_text(json.dumps(m))
    return dst


def test_bad_layouts_name_the_subject(toy_data, tmp_path):
    with pytest.raises(DataError, match="no manifest.json"):
        read_manifest(tmp_path)

    def no_labels(m):
        m["subjects"][1]["hr_labels"] = None

    d = _edit_manifest(toy_data, tmp_path / "a", no_labels)
    with pytest.raises(DataError, match="toy-001: no hr_labels"):
        load_split(d, "train")

    def missing_file(m):
        m["subjects"][0]["lr_image"] = "toy-000/nope.nii.gz"

    d = _edit_manifest(toy_data, tmp_path / "b", missing_file)
    with pytest.raises(DataError, match="toy-000: lr_image file not found"):
        load_split(d, "train")

    def bad_split(m):
        m["subjects"][2]["split"] = "training"

    d = _edit_manifest(toy_data, tmp_path / "c", bad_split)
    with pytest.raises(DataError, match="toy-002: split"):
        read_manifest(d)

    d = _edit_manifest(toy_data, tmp_path / "e", lambda m: None)
    arr, aff, _ = read_nifti_array(d / "toy-001" / "hr_image.nii.gz")
    far = aff.copy()
    far[:3, 3] += 500.0
    save_nifti(d / "toy-001" / "hr_image.nii.gz", arr, far)
    lab, _, _ = read_nifti_array(d / "toy-001" / "hr_labels.nii.gz")
    save_nifti(d / "toy-001" / "hr_labels.nii.gz", lab, far)
    with pytest.raises(DataError, match="toy-001: mismatched LR/HR geometry"):
        load_split(d, "train")

    d = _edit_manifest(toy_data, tmp_path / "f", lambda m: None)
    save_nifti(d / "toy-002" / "hr_image.nii.gz", arr[:2], aff)
    with pytest.raises(DataError, match="toy-002: hr_labels .* do not match hr_image"):
        load_split(d, "train")


def test_items_augmentation_is_deterministic(toy_data):
    samples = load_split(toy_data, "train")
    items = TrainItems(samples, depth=32, multiple=4)
    aug = Augment(crop=32)
    a = items.get(3, np.random.default_rng([0, 1]), aug)
    b = items.get(3, np.random.default_rng([0, 1]), aug)
    for u, v in zip(a, b):
        np.testing.assert_array_equal(u, v)
    x, img, lab, mask = a
    assert x.shape == img.shape == lab.shape == (32, 32, 32)
    n = samples[3].x.shape[0]
    assert mask.sum() == n and mask[(32 - n) // 2]  # slab centred in the network depth
    x, img, lab, mask = items.get(0, None, None)  # whole FOV, padded to the multiple
    assert x.shape[1] % 4 == 0 and x.shape[2] % 4 == 0


def test_input_noise_keeps_the_acquired_slices():
    """The augmentation's noise is one field per acquired slice, shared by its SR copies, so the acquired-2d
    generator finds the same acquired slices in a noisy training input as in the clean one (per-SR-slice
    noise made every copy an acquired slice of its own in training, unlike inference)."""
    import torch

    from gemini_cmr.core.models.gemini import acquired_plan
    from gemini_cmr.core.train.data import Sample, run_index

    rng = np.random.default_rng(0)
    lr = rng.random((4, 16, 16)).astype(np.float16) + 0.1
    x = np.repeat(lr, 3, axis=0)  # 4 acquired slices, each on 3 SR slices
    lab = np.zeros(x.shape, np.uint8)
    lab[:, 6:10, 6:10] = 1
    items = TrainItems([Sample("s", 0, x, x.copy(), lab, 1.0)], depth=16, multiple=4)
    xn, _, _, mask = items.get(0, np.random.default_rng(1), Augment(crop=0, noise=0.05))
    assert list(run_index(x.astype(np.float32))) == [0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3]
    assert not np.array_equal(xn[mask], np.repeat(lr, 3, axis=0).astype(np.float32))  # noise was added
    plan = acquired_plan(torch.from_numpy(xn)[None])
    assert plan.n == 4 and [s1 - s0 for s0, s1 in plan.runs[0]] == [3, 3, 3, 3]


def test_float32_rounded_lr_spacing_still_matches_the_hr_grid():
    from gemini_cmr.core.geometry import matching_sr_grid

    exact = Grid((12, 100, 100), np.diag([1.8, 1.8, 10.0, 1.0]))
    hr = sr_grid(exact)
    rounded = Grid((12, 100, 100), np.diag([1.8000001, 1.8000001, 10.0, 1.0]))  # as read from float32
    assert matching_sr_grid(rounded, hr) is hr
    other = Grid(hr.shape, hr.affine + np.pad(np.eye(3) * 0, ((0, 1), (0, 1))) + np.array(
        [[0, 0, 0, 5.0], [0, 0, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0]]))
    assert matching_sr_grid(rounded, other) == sr_grid(rounded)
