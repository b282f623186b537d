import numpy as np

from core.postprocess import keep_largest_heart_component, postprocess_labels


def test_keeps_only_the_largest_heart_component():
    lab = np.zeros((6, 20, 20), np.uint8)
    lab[1:5, 4:12, 4:12] = 2
    lab[1:5, 6:10, 6:10] = 1
    lab[1:5, 4:12, 12:16] = 3  # touches the myocardium: same component
    lab[0, 18:20, 0:3] = 3  # isolated false positive
    lab[5, 0:2, 18:20] = 1
    out = keep_largest_heart_component(lab)
    assert out[0, 18:20, 0:3].sum() == 0 and out[5, 0:2, 18:20].sum() == 0
    np.testing.assert_array_equal(out[1:5], lab[1:5])
    batch = np.stack([lab, lab])
    assert np.array_equal(postprocess_labels(batch.copy(), {}), batch)  # not asked for: unchanged
    done = postprocess_labels(batch.copy(), {"inference": {"keep_largest_heart_component": True}})
    assert np.array_equal(done[1], out)
