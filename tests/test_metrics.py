import math

import numpy as np
import pytest

from jsegnext.engine.metrics import IoUAccumulator, format_metrics_table, intersect_and_union

# Two hand-made "images" (flattened), 255 = ignore.
# image 1 after dropping the ignored pixel: label [0,0,1,1,2], pred [0,1,1,1,3]
#   I [1,2,0,0]  P [1,3,0,1]  L [2,2,1,0]  U [2,3,1,1]   (the ignored pixel was predicted 3: not counted)
# image 2 after dropping: label [0,2,2], pred [0,2,0]
#   I [1,0,1,0]  P [2,0,1,0]  L [1,0,2,0]  U [2,0,2,0]
# totals: I [2,2,1,0]  P [3,3,1,1]  L [3,2,3,0]  U [4,3,3,1]
LABEL1, PRED1 = np.array([[0, 0, 1], [1, 255, 2]]), np.array([[0, 1, 1], [1, 3, 3]])
LABEL2, PRED2 = np.array([0, 2, 2, 255]), np.array([0, 2, 0, 1])


def test_counts_per_image():
    np.testing.assert_array_equal(
        intersect_and_union(PRED1, LABEL1, 4), [[1, 2, 0, 0], [2, 3, 1, 1], [1, 3, 0, 1], [2, 2, 1, 0]]
    )
    np.testing.assert_array_equal(
        intersect_and_union(PRED2, LABEL2, 4), [[1, 0, 1, 0], [2, 0, 2, 0], [2, 0, 1, 0], [1, 0, 2, 0]]
    )


def test_hand_computed_metrics_with_absent_and_predicted_only_classes():
    # 5 classes: class 3 is predicted but never labelled (IoU 0 counts, Acc 0/0 = NaN excluded);
    # class 4 is neither labelled nor predicted (IoU and Acc NaN, excluded from both means).
    acc = IoUAccumulator(5).update(PRED1, LABEL1).update(PRED2, LABEL2)
    res = acc.summary(["a", "b", "c", "d", "e"])
    iou = [50.0, 200 / 3, 100 / 3, 0.0]
    accs = [200 / 3, 100.0, 100 / 3]
    for name, want in zip("abcd", iou):
        assert res["IoU"][name] == pytest.approx(want)
    for name, want in zip("abc", accs):
        assert res["Acc"][name] == pytest.approx(want)
    assert math.isnan(res["Acc"]["d"]) and math.isnan(res["IoU"]["e"]) and math.isnan(res["Acc"]["e"])
    assert res["mIoU"] == pytest.approx(37.5)  # (50 + 66.67 + 33.33 + 0) / 4
    assert res["mAcc"] == pytest.approx(200 / 3)  # (66.67 + 100 + 33.33) / 3
    assert res["aAcc"] == pytest.approx(62.5)  # 5 / 8
    assert res["num_images"] == 2


def test_label_outside_classes_counts_like_histc():
    # mmseg's torch.histc(min=0, max=n-1) drops out-of-range values from each histogram separately
    counts = intersect_and_union(np.array([1, 1]), np.array([1, 7]), 3)
    np.testing.assert_array_equal(counts, [[0, 1, 0], [0, 2, 0], [0, 2, 0], [0, 1, 0]])


def test_matches_naive_per_class_loop():
    rng = np.random.default_rng(0)
    label = rng.integers(0, 6, (37, 41))
    label[rng.random(label.shape) < 0.2] = 255
    pred = rng.integers(0, 6, label.shape)
    counts = intersect_and_union(pred, label, 6)
    keep = label != 255
    for c in range(6):
        i = np.sum((pred == c) & (label == c) & keep)
        p, l = np.sum((pred == c) & keep), np.sum((label == c) & keep)
        np.testing.assert_array_equal(counts[:, c], [i, p + l - i, p, l])


def test_state_merge_equals_single_pass():
    whole = IoUAccumulator(4).update(PRED1, LABEL1).update(PRED2, LABEL2)
    rank0, rank1 = IoUAccumulator(4).update(PRED1, LABEL1), IoUAccumulator(4).update(PRED2, LABEL2)
    summed = IoUAccumulator.from_state(rank0.state() + rank1.state())
    np.testing.assert_array_equal(summed.counts, whole.counts)
    assert summed.num_images == 2
    np.testing.assert_array_equal(rank0.merge(rank1).counts, whole.counts)
    assert rank0.merge_all_ranks() is rank0  # no MPI here: a no-op


def test_shape_mismatch_and_table():
    with pytest.raises(ValueError, match="shape"):
        intersect_and_union(np.zeros((2, 2)), np.zeros((2, 3)), 3)
    table = format_metrics_table(
        IoUAccumulator(5).update(PRED1, LABEL1).update(PRED2, LABEL2).summary(["wall", "b", "c", "d", "e"])
    )
    assert "|  wall | 50.00 | 66.67  |" in table
    assert "37.50" in table and "62.50" in table and "66.67" in table and "nan" in table
