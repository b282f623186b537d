"""Sunnybrook contour rasterisation: polygon filling and placement on the right slice and phase."""

from __future__ import annotations

import numpy as np
import pytest

from gemini_cmr.core.errors import StudyError
from gemini_cmr.core.io import load_study
from gemini_cmr.core.io.contours import attach_contours, contour_files, rasterise, read_contour


def test_rasterise_square_uses_pixel_centres():
    mask = rasterise(np.array([[1.5, 1.5], [4.5, 1.5], [4.5, 3.5], [1.5, 3.5]]), (6, 7))
    expected = np.zeros((6, 7), dtype=bool)
    expected[2:4, 2:5] = True  # rows 2-3 (y), columns 2-4 (x)
    np.testing.assert_array_equal(mask, expected)


def test_rasterise_circle_area():
    angles = np.linspace(0, 2 * np.pi, 400, endpoint=False)
    circle = np.stack([40 + 20 * np.cos(angles), 30 + 20 * np.sin(angles)], axis=1)
    mask = rasterise(circle, (64, 80))
    assert abs(mask.sum() - np.pi * 400) < 40
    rows, cols = np.nonzero(mask)
    assert abs(rows.mean() - 30) < 0.2 and abs(cols.mean() - 40) < 0.2  # x = column, y = row


def test_read_contour_rejects_garbage(tmp_path):
    p = tmp_path / "IM-0001-0001-icontour-manual.txt"
    p.write_text("1 2\n3 x\n")
    with pytest.raises(StudyError, match="line 2"):
        read_contour(p)


@pytest.mark.data
def test_sunnybrook_contours_on_right_slice_and_phase(shared_data):
    study = load_study(shared_data / "sunnybrook" / "SCD0000101")
    folder = shared_data / "sunnybrook" / "contours" / "SC-HF-I-1"
    attach_contours(study, folder)
    table = np.array(study.meta.extra["instance_numbers"])
    files = contour_files(folder)
    assert study.has_labels and set(study.labelled_phases) == {7, 18}
    for instance, kinds in files.items():
        t, k = (int(v[0]) for v in np.nonzero(table == instance))
        assert (t, k) == ((instance - 1) % 20, 11 - (instance - 1) // 20)
        plane = study.labels[t, k]
        assert (plane == 1).any()
        if "o" in kinds:
            assert (plane == 2).any()
        # Blood is bright in cine MRI: the cavity must be brighter than the myocardium and the
        # surroundings, which fails if masks land on another slice/phase or x/y are swapped.
        img = study.image[t, k]
        ring = (plane == 0) & _dilate(plane > 0, 4)
        assert img[plane == 1].mean() > 1.3 * img[ring].mean()
        if "o" in kinds:
            assert img[plane == 1].mean() > 1.3 * img[plane == 2].mean()
    ml = study.grid.voxel_volume_ml
    ed, es = (study.labels[18] == 1).sum() * ml, (study.labels[7] == 1).sum() * ml
    assert ed > es > 50  # contoured LV cavity, mL (heart-failure patient: large volumes)


def _dilate(mask: np.ndarray, n: int) -> np.ndarray:
    out = mask.copy()
    for _ in range(n):
        grown = out.copy()
        grown[1:] |= out[:-1]
        grown[:-1] |= out[1:]
        grown[:, 1:] |= out[:, :-1]
        grown[:, :-1] |= out[:, 1:]
        out = grown
    return out


def _circle(cx: float, cy: float, r: float) -> str:
    a = np.linspace(0, 2 * np.pi, 60, endpoint=False)
    return "\n".join(f"{cx + r * np.cos(t):.2f} {cy + r * np.sin(t):.2f}" for t in a)


@pytest.mark.parametrize("epi_centre, myocardium", [((32, 32), True), ((44, 32), False)])
def test_an_epicardium_that_does_not_enclose_its_endocardium_is_not_used(tmp_path, epi_centre, myocardium):
    from gemini_cmr.core.study import Study, StudyMeta

    study = Study(image=np.ones((2, 3, 64, 64), np.float32), affine=np.eye(4),
                  meta=StudyMeta(source_path="toy", extra={"instance_numbers": [[1, 2, 3], [4, 5, 6]]}))
    folder = tmp_path / "contours"
    folder.mkdir()
    (folder / "IM-0001-0005-icontour-manual.txt").write_text(_circle(32, 32, 8))
    (folder / "IM-0001-0005-ocontour-manual.txt").write_text(_circle(*epi_centre, 12))
    attach_contours(study, folder)
    plane = study.labels[1, 1]
    assert (plane == 1).sum() > 150  # the endocardium is kept either way
    assert (plane == 2).any() == myocardium
    assert any("does not enclose" in w for w in study.meta.warnings) != myocardium


def test_contour_coordinates_are_one_based(tmp_path):
    """A square around the 1-based pixel centres 2..4 (rows and columns) covers the 0-based pixels 1..3;
    `origin=0` reads the same file as 0-based (one pixel further down and right)."""
    from gemini_cmr.core.io.contours import CONTOUR_ORIGIN, rasterise_contours
    from gemini_cmr.core.study import Study, StudyMeta

    assert CONTOUR_ORIGIN == 1.0
    folder = tmp_path / "contours"
    folder.mkdir()
    (folder / "IM-0001-0001-icontour-manual.txt").write_text("1.5 1.5\n4.5 1.5\n4.5 4.5\n1.5 4.5\n")
    study = Study(image=np.ones((1, 1, 8, 8), np.float32), affine=np.eye(4),
                  meta=StudyMeta(source_path="toy", extra={"instance_numbers": [[1]]}))
    one_based = rasterise_contours(study, folder).labels[0, 0]
    zero_based = rasterise_contours(study, folder, origin=0.0).labels[0, 0]
    rows, cols = np.nonzero(one_based)
    assert (rows.min(), rows.max(), cols.min(), cols.max()) == (1, 3, 1, 3)
    assert np.array_equal(zero_based, np.roll(one_based, (1, 1), axis=(0, 1)))


@pytest.mark.data
def test_sunnybrook_copied_epicardial_contours_are_refused(shared_data):
    """SC-HF-I-6's epicardial contour files are byte copies of SC-HF-I-1's: they do not ring SCD0000501's
    endocardium, so SCD0000501 keeps its LV cavity contours and gets no myocardium."""
    study = load_study(shared_data / "sunnybrook" / "SCD0000501")
    attach_contours(study, shared_data / "sunnybrook" / "contours" / "SC-HF-I-6")
    assert (study.labels == 1).any() and not (study.labels == 2).any()
    assert sum("does not enclose" in w for w in study.meta.warnings) == 9
