"""Detection metrics (tasks/detection.py) against values worked out by hand on fixed boxes."""

from __future__ import annotations

import numpy as np
import pytest

from edgepack.tasks.detection import (COCO_IOUS, average_precision, centroid_f1, iou, map50, map50_95,
                                      mean_average_precision)


def test_iou_of_boxes():
    a = np.array([[0, 0, 10, 10]])
    b = np.array([[0, 0, 10, 10], [5, 0, 15, 10], [20, 20, 30, 30], [0, 0, 5, 5]])
    np.testing.assert_allclose(iou(a, b), [[1.0, 50 / 150, 0.0, 25 / 100]])
    assert iou(np.zeros((0, 4)), b).shape == (0, 4)
    assert iou([[3, 3, 3, 3]], [[3, 3, 3, 3]])[0, 0] == 0.0  # degenerate boxes overlap nothing


def test_the_101_point_ap_of_a_worked_example():
    # 2 ground-truth boxes; detections by score: hit, miss, hit. Recall 0.5, 0.5, 1; precision 1, 0.5,
    # 2/3; the envelope is 1 up to recall 0.5 (51 of the 101 recalls) and 2/3 above it (50)
    assert average_precision([1, 0, 1], [0.9, 0.8, 0.7], 2) == pytest.approx((51 + 50 * 2 / 3) / 101)
    assert average_precision([0, 1, 0, 1], [0.9, 0.8, 0.7, 0.6], 2) == pytest.approx((51 * 0.5 + 50 * 0.5) / 101)
    assert average_precision([1, 1], [0.5, 0.6], 4) == pytest.approx(51 / 101)  # half the boxes found, no false ones
    assert average_precision([], [], 3) == 0.0
    assert np.isnan(average_precision([0], [0.5], 0))


def test_map_matches_by_iou_class_and_score_over_images():
    truths = [(np.array([[0, 0, 10, 10], [20, 20, 40, 40]]), np.array([0, 1])),
              (np.array([[0, 0, 10, 10]]), np.array([0]))]
    detections = [
        # image 0: class 0 found at IoU 81/109 = 0.74 (0.9); the exact box (0.8) comes second and is false;
        # class 1 found exactly; a class-1 box where class 0 is (wrong class) is false
        (np.array([[1, 1, 10, 11], [0, 0, 10, 10], [20, 20, 40, 40], [0, 0, 10, 10]]),
         np.array([0.9, 0.8, 0.7, 0.95]), np.array([0, 0, 1, 1])),
        # image 1: class 0 found at 0.6
        (np.array([[0, 0, 10, 10]]), np.array([0.6]), np.array([0])),
    ]
    got = mean_average_precision(detections, truths, iou_thresholds=(0.5,))
    # class 0 by score: 0.9 hit, 0.8 miss (its box is taken), 0.6 hit: the worked example, (51 + 50 * 2/3) / 101
    assert got["per_class"][0] == pytest.approx((51 + 50 * 2 / 3) / 101)
    # class 1 by score: 0.95 miss (IoU 0 with the class-1 box), 0.7 hit: precision 1/2 at recall 1
    assert got["per_class"][1] == pytest.approx(0.5)
    assert map50(detections, truths) == pytest.approx(100 * (got["per_class"][0] + 0.5) / 2)
    # at IoU 0.75 the 0.9 detection misses and the 0.8 one, the exact box, hits: miss, hit, hit has
    # precision 2/3 at every recall once the curve is made monotone
    strict = mean_average_precision(detections, truths, iou_thresholds=(0.75,))
    assert strict["per_class"][0] == pytest.approx(2 / 3)
    # 0.5:0.95 is the mean over its ten thresholds
    full = mean_average_precision(detections, truths, iou_thresholds=COCO_IOUS)
    assert map50_95(detections, truths) == pytest.approx(100 * np.mean(list(full["per_threshold"].values())))
    assert len(full["per_threshold"]) == 10 and full["per_threshold"][0.5] == pytest.approx(got["map"])


def test_perfect_detections_score_100_and_classes_without_truth_are_left_out():
    truths = [(np.array([[0, 0, 8, 8]]), np.array([2]))]
    detections = [(np.array([[0, 0, 8, 8], [50, 50, 60, 60]]), np.array([0.9, 0.1]), np.array([2, 5]))]
    got = mean_average_precision(detections, truths)
    assert got["per_class"] == {2: 1.0} and got["map"] == 1.0  # class 5 has no truth: not in the mean
    assert map50_95(detections, truths) == pytest.approx(100.0)
    # at most max_detections per image, the highest scores: the hit is dropped when only one may stay
    worse = [(np.array([[0, 0, 8, 8], [0, 0, 1, 1]]), np.array([0.1, 0.9]), np.array([2, 2]))]
    assert map50(worse, truths, max_detections=1) == 0.0
    assert map50([(np.zeros((0, 4)), np.zeros(0), np.zeros(0))], truths) == 0.0
    with pytest.raises(ValueError, match="2 images of detections against 1"):
        map50(detections * 2, truths)


def test_centroid_f1_matches_nearest_centres_of_the_same_class_within_the_distance():
    truths = [(np.array([[10, 10], [30, 30]]), np.array([1, 1])), (np.array([[5, 5]]), np.array([2]))]
    predicted = [(np.array([[11, 10], [12, 12], [60, 60]]), np.array([1, 1, 1])),  # one hit, two false
                 (np.array([[5, 6]]), np.array([1]))]  # the right place, the wrong class
    got = centroid_f1(predicted, truths, distance=3)
    assert (got["tp"], got["fp"], got["fn"]) == (1, 3, 2)
    assert got["f1"] == pytest.approx(100 * 2 / (2 + 3 + 2))
    assert centroid_f1(truths, truths, distance=0)["f1"] == 100.0
    assert centroid_f1([(np.zeros((0, 2)), np.zeros(0))], [(np.zeros((0, 2)), np.zeros(0))], distance=1)["f1"] == 100.0
