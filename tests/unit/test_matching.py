"""The comparison of two runs of our own graphs (matching.unpaired): order-free, within float
tolerances, and still strict: a missing or extra detection, another class, a moved box or a changed
score each count."""

import numpy as np
from matching import SAME_BOX_ATOL, SAME_SCORE_ATOL, Detections, unpaired

BOXES = np.array([[0, 0, 10, 10], [5, 5, 20, 20], [30, 30, 40, 50]], np.float32)
SCORES = np.array([0.5, 0.5, 0.3], np.float32)  # two equal scores
CLASSES = np.array([1, 2, 1])


def _dets(order=(0, 1, 2), boxes=BOXES, scores=SCORES, classes=CLASSES) -> Detections:
    i = list(order)
    return Detections(boxes[i], scores[i], classes[i])


def test_equal_scores_in_either_order_are_the_same_detections():
    assert unpaired(_dets(), _dets((1, 0, 2))) == 0


def test_last_bits_do_not_count():
    assert unpaired(_dets(), _dets(boxes=BOXES + SAME_BOX_ATOL / 2, scores=SCORES + SAME_SCORE_ATOL / 2)) == 0


def test_real_differences_count():
    assert unpaired(_dets(), _dets((0, 1))) == 1  # one missing
    assert unpaired(_dets((0, 1)), _dets()) == 1  # one extra
    assert unpaired(_dets(), _dets(classes=np.array([1, 2, 3]))) == 2  # another class
    moved = BOXES.copy()
    moved[2, 0] += 0.5
    assert unpaired(_dets(), _dets(boxes=moved)) == 2  # half a pixel
    assert unpaired(_dets(), _dets(scores=SCORES + np.array([0, 0, 1e-3], np.float32))) == 2
    assert unpaired(_dets(()), _dets(())) == 0 and unpaired(_dets(()), _dets()) == 3
