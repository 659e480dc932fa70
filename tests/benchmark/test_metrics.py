"""Tests of benchmark.metrics against hand-computed values and pycocotools itself."""

from __future__ import annotations

import contextlib
import copy
import io
import json
from pathlib import Path

import numpy as np
import pytest
from pycocotools.coco import COCO as CocoApi
from pycocotools.cocoeval import COCOeval

from benchmark import metrics
from datamodules.skeletons import LSP, MPII

PCKH_KEYS = {"Head", "Shoulder", "Elbow", "Wrist", "Hip", "Knee", "Ankle", "Mean", "Mean@0.1"}
STAT_KEYS = ["AP", "AP50", "AP75", "APM", "APL", "AR", "AR50", "AR75", "ARM", "ARL"]

# --------------------------------------------------------------------------- MPII PCKh example
# Two people. Person A: head box (10,20)-(40,60), diagonal 50, head size 0.6*50 = 30 px, so
# PCKh@0.5 allows 15 px, @0.1 3 px, @0.11 3.3 px. Person B: head box (0,0)-(60,80), diagonal
# 100, head size 60 px: @0.5 30 px, @0.1 6 px, @0.11 6.6 px.
# Per joint: (error vector of A, error vector of B); None = not annotated.
_ERRORS = {
    0: ((20, 0), (25, 0)),  # r_ankle   A wrong        B right        -> 1/2
    1: ((9, 12), (31, 0)),  # r_knee    A 15 = limit   B wrong        -> 1/2
    2: ((0, 0), None),  # r_hip     A right                       -> 1/1
    3: ((0, 0), (0, 0)),  # l_hip                                   -> 2/2
    4: ((10, 0), (0, 0)),  # l_knee                                  -> 2/2
    5: ((0, 0), (40, 0)),  # l_ankle   A right        B wrong        -> 1/2
    6: ((100, 0), (0, 0)),  # pelvis    (left out of Mean)            -> 1/2
    7: ((100, 0), (0, 0)),  # thorax    (left out of Mean)            -> 1/2
    8: ((3, 0), (7, 0)),  # upper_neck both right; A = 0.1 limit    -> 2/2
    9: ((3.2, 0), (50, 0)),  # head_top  A right (0.107) B wrong      -> 1/2
    10: ((16, 0), (18, 24)),  # r_wrist   A wrong        B 30 = limit   -> 1/2
    11: ((5, 0), (60, 0)),  # r_elbow   A right        B wrong        -> 1/2
    12: ((1, 0), (0, 0)),  # r_shoulder                              -> 2/2
    13: ((2, 0), None),  # l_shoulder A right                       -> 1/1
    14: (None, (10, 0)),  # l_elbow   B right                       -> 1/1
    15: ((14.9, 0), (29, 0)),  # l_wrist   both right                   -> 2/2
}
# Per-joint PCKh@0.5 in percent (MPII order), from the counts above.
_PER_JOINT = [50, 50, 100, 100, 100, 50, 50, 50, 100, 50, 50, 50, 100, 100, 100, 100]
# Mean over the 14 joints without pelvis/thorax: 25 annotated (11 joints x 2 + 3 x 1),
# 19 correct (1+1+1+2+2+1+2+1+1+1+2+1+1+2) -> 100*19/25 = 76.0.
# Mean@0.1: A within 3 px: r_hip, l_hip, l_ankle, upper_neck (3 = limit), r_sho, l_sho = 6;
# B within 6 px: l_hip, l_knee, r_sho = 3 -> 100*9/25 = 36.0.
# At 0.11 A's head_top (3.2 <= 3.3) also counts -> 100*10/25 = 40.0.
# At 0.00 only exact joints: A r_hip, l_hip, l_ankle; B l_hip, l_knee, r_sho -> 100*6/25 = 24.0.
_EXPECTED = {
    "Head": 50.0,  # head_top
    "Shoulder": 100.0,  # (100 + 100) / 2
    "Elbow": 75.0,  # (r 50 + l 100) / 2
    "Wrist": 75.0,  # (r 50 + l 100) / 2
    "Hip": 100.0,  # (100 + 100) / 2
    "Knee": 75.0,  # (r 50 + l 100) / 2
    "Ankle": 50.0,  # (r 50 + l 50) / 2
    "Mean": 76.0,
    "Mean@0.1": 36.0,
}


def _example() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    joints = np.arange(16, dtype=np.float64)
    gt = np.stack(
        [
            np.stack([100 + 10 * joints, 200 + 5 * joints], axis=1),
            np.stack([400 + 10 * joints, 300 + 5 * joints], axis=1),
        ]
    )
    pred = gt.copy()
    visible = np.zeros((2, 16), dtype=bool)
    for j, per_person in _ERRORS.items():
        for i, err in enumerate(per_person):
            if err is None:
                # Whatever sits at an unannotated joint must not matter, NaN ground truth included.
                gt[i, j] = np.nan
                pred[i, j] = (1e6, -1e6)
            else:
                visible[i, j] = True
                pred[i, j] = gt[i, j] + np.asarray(err, dtype=np.float64)
    headboxes = np.array([[[10.0, 20.0], [40.0, 60.0]], [[0.0, 0.0], [60.0, 80.0]]])
    return pred, gt, visible, headboxes


def test_mpii_pckh_two_person_example() -> None:
    result = metrics.mpii_pckh(*_example())
    assert set(result) == PCKH_KEYS
    assert result == _EXPECTED
    assert all(type(v) is float for v in result.values())


def test_pckh_per_joint_example() -> None:
    np.testing.assert_array_equal(metrics.pckh_per_joint(*_example()), np.array(_PER_JOINT, dtype=float))


def test_mean_is_count_weighted_not_plain_average() -> None:
    per_joint = metrics.pckh_per_joint(*_example())
    plain = per_joint[[0, 1, 2, 3, 4, 5, 8, 9, 10, 11, 12, 13, 14, 15]].mean()  # 1100 / 14 = 78.57
    assert plain == pytest.approx(1100 / 14)
    assert metrics.mpii_pckh(*_example())["Mean"] == 76.0 != plain


def test_pelvis_and_thorax_are_left_out_of_mean() -> None:
    pred, gt, visible, headboxes = _example()
    # Counting pelvis and thorax would give (19 + 2) / (25 + 4) = 72.41 %.
    assert metrics.mpii_pckh(pred, gt, visible, headboxes)["Mean"] != pytest.approx(100 * 21 / 29)
    pred[:, [6, 7]] = gt[:, [6, 7]] + 1000.0  # both now wrong for both people
    assert metrics.mpii_pckh(pred, gt, visible, headboxes)["Mean"] == 76.0
    assert metrics.pckh_per_joint(pred, gt, visible, headboxes)[[6, 7]].tolist() == [0.0, 0.0]


def test_upper_neck_counts_in_mean() -> None:
    pred, gt, visible, headboxes = _example()
    pred[1, 8] = gt[1, 8] + (100.0, 0.0)  # B's upper_neck becomes wrong: 18 / 25
    assert metrics.mpii_pckh(pred, gt, visible, headboxes)["Mean"] == 72.0


def test_unannotated_joints_are_ignored() -> None:
    pred, gt, visible, headboxes = _example()
    pred[~visible] = -5.0  # anything at unannotated joints
    assert metrics.mpii_pckh(pred, gt, visible, headboxes) == _EXPECTED
    # Un-annotating B's wrong l_ankle: l_ankle 1/1 = 100, Ankle (50 + 100) / 2 = 75, Mean 19/24.
    visible[1, 5] = False
    result = metrics.mpii_pckh(pred, gt, visible, headboxes)
    assert result["Ankle"] == 75.0
    assert result["Mean"] == pytest.approx(100 * 19 / 24, abs=1e-12)


def test_joint_without_annotation_is_nan_and_left_out_of_mean() -> None:
    pred, gt, visible, headboxes = _example()
    visible[:, 5] = False  # no l_ankle at all (A's was right, B's wrong): 18 correct of 23
    per_joint = metrics.pckh_per_joint(pred, gt, visible, headboxes)
    assert np.isnan(per_joint[5]) and np.isfinite(np.delete(per_joint, 5)).all()
    result = metrics.mpii_pckh(pred, gt, visible, headboxes)
    assert np.isnan(result["Ankle"])
    assert result["Knee"] == 75.0
    assert result["Mean"] == pytest.approx(100 * 18 / 23, abs=1e-12)


def test_threshold_is_inclusive() -> None:
    gt = np.zeros((1, 16, 2))
    visible = np.zeros((1, 16), dtype=bool)
    visible[0, 9] = True
    headboxes = np.array([[[10.0, 20.0], [40.0, 60.0]]])  # head size 30 -> 15 px at 0.5
    at_limit = gt.copy()
    at_limit[0, 9] = (15.0, 0.0)
    assert metrics.mpii_pckh(at_limit, gt, visible, headboxes)["Head"] == 100.0
    beyond = gt.copy()
    beyond[0, 9] = (15.0 + 1e-9, 0.0)
    assert metrics.mpii_pckh(beyond, gt, visible, headboxes)["Head"] == 0.0


def test_mean_at_0_1_is_the_true_0_1_threshold() -> None:
    data = _example()
    # 36 at 0.10; the HRNet code's pckAll[11] (0.11) would give 40.
    assert metrics.mpii_pckh(*data)["Mean@0.1"] == 36.0
    thresholds, curve = metrics.pckh_curve(*data)
    assert thresholds[11] == pytest.approx(0.11) and curve[11] == 40.0
    # Mean@0.1 does not follow the threshold argument.
    other = metrics.mpii_pckh(*data, threshold=0.1)
    assert other["Mean"] == 36.0 and other["Mean@0.1"] == 36.0
    assert metrics.mpii_pckh(*data, threshold=0.2)["Mean@0.1"] == 36.0


def test_pckh_curve_default_thresholds_and_values() -> None:
    thresholds, curve = metrics.pckh_curve(*_example())
    assert thresholds.shape == (51,) and curve.shape == (51,)
    assert thresholds[0] == 0.0 and thresholds[10] == 0.1 and thresholds[50] == 0.5
    np.testing.assert_allclose(np.diff(thresholds), 0.01, atol=1e-15)
    assert curve[0] == 24.0 and curve[10] == 36.0 and curve[50] == 76.0
    assert np.all(np.diff(curve) >= 0)


def test_pckh_auc_hand_example() -> None:
    # One annotated joint at normalised error 7.5 / 30 = 0.25: the curve is 0 below 0.25 and
    # 100 from 0.25 on. Trapezoid area: 0.01 * 100 / 2 (the 0.24 -> 0.25 step) + 0.25 * 100
    # = 25.5; divided by 0.5 -> 51.0.
    gt = np.zeros((1, 16, 2))
    pred = gt.copy()
    pred[0, 9] = (7.5, 0.0)
    visible = np.zeros((1, 16), dtype=bool)
    visible[0, 9] = True
    headboxes = np.array([[[10.0, 20.0], [40.0, 60.0]]])
    assert metrics.pckh_auc(pred, gt, visible, headboxes) == pytest.approx(51.0, abs=1e-10)
    assert metrics.pckh_auc(gt, gt, visible, headboxes) == pytest.approx(100.0, abs=1e-10)


def test_perfect_predictions_score_100() -> None:
    _, gt, visible, headboxes = _example()
    gt = np.nan_to_num(gt)
    result = metrics.mpii_pckh(gt, gt, visible, headboxes)
    assert set(result) == PCKH_KEYS
    assert all(v == 100.0 for v in result.values())
    assert metrics.pckh_auc(gt, gt, visible, headboxes) == pytest.approx(100.0, abs=1e-10)


@pytest.mark.parametrize(
    ("change", "name"),
    [
        (lambda p, g, v, h: (p[:, :15], g, v, h), "pred"),
        (lambda p, g, v, h: (p, g[..., :1], v, h), "gt"),
        (lambda p, g, v, h: (p, g, v[:1], h), "visible"),
        (lambda p, g, v, h: (p, g, v, h.reshape(2, 4)), "headboxes"),
        (lambda p, g, v, h: (p, g, v, np.zeros_like(h)), r"headboxes\[0\]"),
        (lambda p, g, v, h: (np.full_like(p, np.nan), g, v, h), "pred"),
    ],
)
def test_pckh_bad_input_names_the_argument(change, name: str) -> None:
    with pytest.raises(ValueError, match=name):
        metrics.mpii_pckh(*change(*_example()))


def test_pckh_without_any_annotation_raises() -> None:
    pred, gt, visible, headboxes = _example()
    with pytest.raises(ValueError, match="nothing to evaluate"):
        metrics.mpii_pckh(pred, gt, np.zeros_like(visible), headboxes)


# --------------------------------------------------------------------------- PCK, PDJ, PCP


def _lsp_example() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    # LSP order; torso = l_shoulder (9) to r_hip (2). A: r_hip (100,200), l_shoulder (130,160):
    # torso 50, PCK@0.2 allows 10 px. B: r_hip (0,0), l_shoulder (60,80): torso 100, 20 px.
    rng = np.random.default_rng(3)
    gt = rng.uniform(0, 300, size=(2, 14, 2)).round()
    gt[0, 2], gt[0, 9] = (100, 200), (130, 160)
    gt[1, 2], gt[1, 9] = (0, 0), (60, 80)
    pred = gt.copy()
    visible = np.ones((2, 14), dtype=bool)
    pred[0, 0] += (10, 0)  # A r_ankle: 10 = limit -> right
    pred[0, 1] += (11, 0)  # A r_knee: wrong
    visible[0, 13] = False  # A head_top unannotated
    pred[0, 13] += (500, 0)
    pred[1, 0] += (25, 0)  # B r_ankle: wrong
    pred[1, 1] += (12, 16)  # B r_knee: 20 = limit -> right
    pred[1, 6] += (21, 0)  # B r_wrist: wrong
    return pred, gt, visible


def test_torso_and_bbox_size() -> None:
    _, gt, visible = _lsp_example()
    np.testing.assert_array_equal(metrics.torso_size(gt, LSP), [50.0, 100.0])
    np.testing.assert_array_equal(metrics.torso_size(gt, (9, 2)), [50.0, 100.0])
    points = np.array([[[0, 0], [30, 10], [10, 50], [1000, 1000]], [[5, 5], [6, 6], [7, 7], [8, 8]]], float)
    vis = np.array([[True, True, True, False], [False] * 4])
    sizes = metrics.bbox_size(points, vis)
    assert sizes[0] == 50.0 and np.isnan(sizes[1])  # max(30 - 0, 50 - 0); nothing annotated


def test_pck_hand_example() -> None:
    pred, gt, visible = _lsp_example()
    result = metrics.pck(pred, gt, visible, metrics.torso_size(gt, LSP), 0.2, joint_names=LSP.joints)
    assert list(result) == [*LSP.joints, "Mean"]
    # r_ankle: A right, B wrong; r_knee: A wrong, B right; r_wrist: A right, B wrong;
    # head_top: B only, right; the rest 2/2.
    expected = {name: 100.0 for name in LSP.joints}
    expected.update(r_ankle=50.0, r_knee=50.0, r_wrist=50.0)
    expected["Mean"] = pytest.approx(100 * 24 / 27, abs=1e-12)  # 27 annotated, 3 wrong
    assert result == expected


def test_pdj_hand_example() -> None:
    pred, gt, visible = _lsp_example()
    # Fraction 0.1: A allows 5 px, B 10 px. Wrong: A r_ankle (10), A r_knee (11), B r_ankle (25),
    # B r_knee (20), B r_wrist (21) -> 22 of 27 right.
    result = metrics.pdj(pred, gt, visible, (9, 2), fraction=0.1)
    assert result["joint_0"] == 0.0 and result["joint_1"] == 0.0 and result["joint_6"] == 50.0
    assert result["joint_13"] == 100.0
    assert result["Mean"] == pytest.approx(100 * 22 / 27, abs=1e-12)
    assert metrics.pdj(pred, gt, visible, LSP)["Mean"] == pytest.approx(100 * 24 / 27, abs=1e-12)


def test_pck_perfect_and_bad_normalizer() -> None:
    _, gt, visible = _lsp_example()
    result = metrics.pck(gt, gt, visible, metrics.bbox_size(gt, visible))
    assert all(v == 100.0 for v in result.values())
    with pytest.raises(ValueError, match=r"normalizer\[1\]"):
        metrics.pck(gt, gt, visible, np.array([1.0, 0.0]))
    with pytest.raises(ValueError, match="normalizer"):
        metrics.pck(gt, gt, visible, np.ones(3))


def _pcp_example() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    # Chain j0 (0,0) - j1 (10,0) - j2 (10,20) - j3 (10,40): limbs 0-1 length 10 (5 px at 0.5),
    # 1-2 and 2-3 length 20 (10 px).
    gt = np.tile(np.array([[0, 0], [10, 0], [10, 20], [10, 40]], dtype=float), (2, 1, 1))
    pred = gt.copy()
    visible = np.ones((2, 4), dtype=bool)
    pred[0, 0] += (5, 0)  # P1 j0: 5 = limit of 0-1
    pred[0, 1] += (0, 5)  # P1 j1: 5 -> 0-1 right; within 10 for 1-2
    pred[0, 2] += (11, 0)  # P1 j2: 11 > 10 -> 1-2 and 2-3 wrong
    pred[1, 0] += (6, 0)  # P2 j0: 6 > 5 -> 0-1 wrong; 1-2 right
    visible[1, 3] = False  # P2 2-3 not counted
    pred[1, 3] += (100, 0)
    return pred, gt, visible


def test_pcp_hand_example() -> None:
    pred, gt, visible = _pcp_example()
    groups = {"Upper arm": ((0, 1), (2, 3)), "Forearm": ((1, 2),)}
    result = metrics.pcp(pred, gt, visible, groups)
    assert list(result) == ["Upper arm", "Forearm", "Mean"]
    # Upper arm: P1 0-1 right, P1 2-3 wrong, P2 0-1 wrong -> 1/3. Forearm: P1 wrong, P2 right
    # -> 1/2. Mean pooled over the 5 limb instances: 2 of 5 = 40 (the plain mean of the two
    # groups would be 41.67).
    assert result["Upper arm"] == pytest.approx(100 / 3, abs=1e-12)
    assert result["Forearm"] == 50.0
    assert result["Mean"] == 40.0
    pairs = metrics.pcp(pred, gt, visible, [(0, 1), (1, 2)])
    assert pairs == {"0-1": 50.0, "1-2": 50.0, "Mean": 50.0}


def test_pcp_perfect_with_skeleton_limbs() -> None:
    _, gt, visible, _ = _example()
    gt = np.nan_to_num(gt)
    visible = np.ones_like(visible)
    result = metrics.pcp(gt, gt, visible, MPII.pcp_limbs)
    assert list(result) == [*MPII.pcp_limbs, "Mean"]
    assert all(v == 100.0 for v in result.values())


def test_mean_pixel_error() -> None:
    gt = np.zeros((2, 3, 2))
    pred = np.array([[[3, 4], [0, 0], [500, 0]], [[6, 8], [0, 1], [0, 0]]], dtype=float)
    visible = np.array([[True, True, False], [True, True, True]])
    assert metrics.mean_pixel_error(pred, gt, visible) == pytest.approx((5 + 0 + 10 + 1 + 0) / 5, abs=1e-12)
    with pytest.raises(ValueError, match="nothing to evaluate"):
        metrics.mean_pixel_error(pred, gt, np.zeros_like(visible))


def test_mean_normalised_error_per_person() -> None:
    gt = np.zeros((3, 3, 2))
    pred = np.array([[[3, 4], [0, 0], [np.nan, 0]], [[6, 8], [0, 1], [0, 0]], [[1, 1], [1, 1], [1, 1]]], dtype=float)
    visible = np.array([[True, True, False], [True, True, True], [False, False, False]])
    errors = metrics.mean_normalised_error(pred, gt, visible, np.array([5.0, 2.0, 1.0]))
    # Person 0: (5 + 0) / 2 / 5 (the NaN is not annotated); person 1: (10 + 1 + 0) / 3 / 2; person 2: nothing.
    assert errors[0] == 0.5 and errors[1] == pytest.approx(11 / 6, abs=1e-15) and np.isnan(errors[2])
    # A normaliser that is zero or not finite gives NaN, not an error: that person is left out.
    assert np.isnan(metrics.mean_normalised_error(pred, gt, visible, np.array([0.0, np.nan, 1.0]))[:2]).all()
    with pytest.raises(ValueError, match="non-finite coordinate at annotated joint"):
        metrics.mean_normalised_error(pred, gt, np.ones_like(visible), np.ones(3))


def test_head_size_and_checked_keypoints() -> None:
    boxes = np.array([[[100.0, 50.0], [130.0, 90.0]], [[0.0, 0.0], [np.nan, 1.0]]])
    sizes = metrics.head_size(boxes)
    assert sizes[0] == pytest.approx(0.6 * 50.0, abs=1e-12) and np.isnan(sizes[1])  # |(30, 40)| = 50
    with pytest.raises(ValueError, match="headboxes must have shape"):
        metrics.head_size(np.zeros((2, 4)))
    pred, gt, visible = metrics.check_keypoints([[[1, 2]]], [[[3, 4]]], [[1]], k=1)
    assert pred.dtype == gt.dtype == np.float64 and visible.dtype == bool
    with pytest.raises(ValueError, match=r"gt must have shape \(N, 2, 2\)"):
        metrics.check_keypoints([[[1, 2]]], [[[3, 4]]], [[1]], k=2)


# --------------------------------------------------------------------------- COCO


def _quiet_eval(coco_gt: CocoApi, results: list[dict]) -> COCOeval:
    """pycocotools run directly, independent of benchmark.metrics."""
    with contextlib.redirect_stdout(io.StringIO()):
        coco_dt = coco_gt.loadRes(copy.deepcopy(results))
        evaluator = COCOeval(coco_gt, coco_dt, iouType="keypoints")
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return evaluator


def _load(path: Path) -> CocoApi:
    with contextlib.redirect_stdout(io.StringIO()):
        return CocoApi(str(path))


def _perturbed_results(coco_gt: CocoApi, seed: int, noise: float) -> list[dict]:
    rng = np.random.default_rng(seed)
    results = []
    for ann in coco_gt.loadAnns(coco_gt.getAnnIds()):
        if ann["num_keypoints"] == 0:
            continue
        kpts = np.asarray(ann["keypoints"], dtype=float).reshape(-1, 3)
        kpts[:, :2] += rng.normal(0.0, noise, size=(len(kpts), 2))
        kpts[:, 2] = rng.uniform(0.3, 1.0, size=len(kpts))
        results.append(
            {
                "image_id": ann["image_id"],
                "category_id": 1,
                "keypoints": kpts.ravel().tolist(),
                "score": float(rng.uniform(0.2, 1.0)),
            }
        )
    return results


def test_coco_ap_equals_cocoeval_on_fixture(coco_fixture_dir: Path) -> None:
    path = coco_fixture_dir / "test_coco.json"
    reference_gt = _load(path)
    results = _perturbed_results(reference_gt, seed=0, noise=4.0)
    snapshot = copy.deepcopy(results)
    expected = _quiet_eval(reference_gt, results).stats
    ours = metrics.coco_keypoint_ap(path, results)
    assert list(ours) == STAT_KEYS
    assert [ours[k] for k in STAT_KEYS] == expected.tolist()
    assert 0.0 < ours["AP"] < 1.0  # the perturbation matters
    assert results == snapshot  # loadRes would have added area/id/bbox

    # A loaded COCO object gives the same and is left untouched (COCOeval adds 'ignore' flags).
    coco_gt = _load(path)
    before = copy.deepcopy(coco_gt.dataset)
    assert metrics.coco_keypoint_ap(coco_gt, results) == ours
    assert coco_gt.dataset == before


def test_coco_ap_perfect_predictions(coco_fixture_dir: Path) -> None:
    path = coco_fixture_dir / "test_coco.json"
    results = _perturbed_results(_load(path), seed=1, noise=0.0)
    ours = metrics.coco_keypoint_ap(path, results)
    assert ours["AP"] == 1.0 and ours["AR"] == 1.0


def _random_coco(seed: int) -> tuple[dict, list[dict]]:
    """A small COCO keypoints set with random people, and noisy predictions with false positives."""
    rng = np.random.default_rng(seed)
    images, annotations, results = [], [], []
    for image_id in range(1, 7):
        images.append({"id": image_id, "file_name": f"{image_id:06d}.jpg", "width": 640, "height": 480})
        for _ in range(int(rng.integers(1, 4))):
            w, h = rng.uniform(20, 200), rng.uniform(40, 300)
            x, y = rng.uniform(0, 640 - w), rng.uniform(0, 480 - h)
            xy = np.stack([rng.uniform(x, x + w, 17), rng.uniform(y, y + h, 17)], axis=1)
            v = rng.choice([0, 1, 2], size=17, p=[0.2, 0.3, 0.5])
            xy[v == 0] = 0.0
            kpts = np.concatenate([xy, v[:, None]], axis=1)
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": image_id,
                    "category_id": 1,
                    "keypoints": kpts.ravel().tolist(),
                    "num_keypoints": int((v > 0).sum()),
                    "bbox": [x, y, w, h],
                    "area": float(w * h * 0.7),
                    "iscrowd": 0,
                }
            )
            guess = xy + rng.normal(0, rng.uniform(1, 15), size=(17, 2))
            guess[v == 0] = rng.uniform(0, 400, size=(int((v == 0).sum()), 2))
            pred = np.concatenate([guess, rng.uniform(0, 1, (17, 1))], axis=1)
            results.append(
                {
                    "image_id": image_id,
                    "category_id": 1,
                    "keypoints": pred.ravel().tolist(),
                    "score": float(rng.uniform()),
                }
            )
        fake = np.concatenate([rng.uniform(0, 480, (17, 2)), rng.uniform(0, 1, (17, 1))], axis=1)
        results.append(
            {"image_id": image_id, "category_id": 1, "keypoints": fake.ravel().tolist(), "score": float(rng.uniform())}
        )
    names = [f"keypoint_{j}" for j in range(17)]
    categories = [{"id": 1, "name": "person", "supercategory": "person", "keypoints": names, "skeleton": []}]
    return {"images": images, "annotations": annotations, "categories": categories}, results


def test_coco_ap_equals_cocoeval_on_random_set(tmp_path: Path) -> None:
    dataset, results = _random_coco(seed=7)
    path = tmp_path / "person_keypoints_random.json"
    path.write_text(json.dumps(dataset))
    expected = _quiet_eval(_load(path), results).stats
    ours = metrics.coco_keypoint_ap(path, results)
    assert [ours[k] for k in STAT_KEYS] == expected.tolist()
    assert 0.0 < ours["AP"] < 1.0


def test_coco_ap_bad_results(coco_fixture_dir: Path) -> None:
    path = coco_fixture_dir / "test_coco.json"
    with pytest.raises(ValueError, match="no predictions"):
        metrics.coco_keypoint_ap(path, [])
    good = _perturbed_results(_load(path), seed=0, noise=1.0)[:1]
    with pytest.raises(ValueError, match="image ids"):
        metrics.coco_keypoint_ap(path, [{**good[0], "image_id": 123456789}])
    with pytest.raises(ValueError, match=r"results\[0\] lacks score"):
        metrics.coco_keypoint_ap(path, [{k: v for k, v in good[0].items() if k != "score"}])
    with pytest.raises(ValueError, match="50 values"):
        metrics.coco_keypoint_ap(path, [{**good[0], "keypoints": good[0]["keypoints"][:50]}])


def test_coco_ap_printing(coco_fixture_dir: Path, capsys: pytest.CaptureFixture) -> None:
    path = coco_fixture_dir / "test_coco.json"
    results = _perturbed_results(_load(path), seed=0, noise=1.0)
    metrics.coco_keypoint_ap(path, results)
    assert capsys.readouterr().out == ""
    metrics.coco_keypoint_ap(path, results, verbose=True)
    assert "Average Precision" in capsys.readouterr().out


def test_oks_matches_pycocotools_compute_oks(coco_fixture_dir: Path) -> None:
    coco_gt = _load(coco_fixture_dir / "test_coco.json")
    results = _perturbed_results(coco_gt, seed=2, noise=6.0)
    with contextlib.redirect_stdout(io.StringIO()):
        evaluator = COCOeval(coco_gt, coco_gt.loadRes(copy.deepcopy(results)), iouType="keypoints")
        evaluator.evaluate()
    sigmas = evaluator.params.kpt_oks_sigmas
    compared = 0
    for image_id in coco_gt.getImgIds():
        gts = evaluator._gts[image_id, 1]
        dts = sorted(evaluator._dts[image_id, 1], key=lambda d: -d["score"])  # computeOks' order
        reference = np.asarray(evaluator.computeOks(image_id, 1))
        for i, dt in enumerate(dts):
            for j, g in enumerate(gts):
                gk = np.asarray(g["keypoints"], dtype=float).reshape(17, 3)
                dk = np.asarray(dt["keypoints"], dtype=float).reshape(17, 3)
                ours = metrics.oks(dk[None, :, :2], gk[None, :, :2], gk[None, :, 2] > 0, [g["area"]], sigmas)[0]
                if g["num_keypoints"] == 0:
                    assert np.isnan(ours)  # pycocotools falls back to the box; undefined here
                    continue
                assert abs(ours - reference[i, j]) <= 1e-12
                compared += 1
    assert compared >= 20
    np.testing.assert_array_equal(metrics.COCO_SIGMAS, sigmas)  # the very doubles pycocotools uses


def test_oks_nms_keeps_best_of_duplicates_and_distinct_people() -> None:
    rng = np.random.default_rng(0)
    person = np.concatenate([rng.uniform(100, 200, (17, 2)), np.ones((17, 1))], axis=1)
    other = person.copy()
    other[:, 0] += 300.0
    areas = np.full(3, 100.0 * 100.0)
    # Two identical poses (scores 0.6 and 0.9) and a distinct person (0.7).
    keypoints = np.stack([person, person, other])
    assert metrics.oks_nms(keypoints, np.array([0.6, 0.9, 0.7]), areas) == [1, 2]
    assert metrics.oks_nms(keypoints[[0, 2]], np.array([0.5, 0.8]), areas[:2]) == [1, 0]
    assert metrics.oks_nms(keypoints[:0], np.zeros(0), np.zeros(0)) == []
    # A slightly moved copy is suppressed at 0.9 but kept when the threshold is above its OKS.
    moved = person.copy()
    moved[:, :2] += 2.0
    pair = np.stack([person, moved])
    all_joints = np.ones((1, 17), dtype=bool)
    overlap = metrics.oks(moved[None, :, :2], person[None, :, :2], all_joints, [1e4], metrics.COCO_SIGMAS)[0]
    assert 0.9 < overlap < 1.0
    assert metrics.oks_nms(pair, np.array([0.9, 0.8]), areas[:2]) == [0]
    # Only OKS > threshold suppresses: an OKS equal to the threshold is kept.
    assert metrics.oks_nms(pair, np.array([0.9, 0.8]), areas[:2], threshold=overlap) == [0, 1]
    assert metrics.oks_nms(pair, np.array([0.9, 0.8]), areas[:2], threshold=np.nextafter(overlap, 0)) == [0]
    # With a visibility threshold no joint of the low-confidence copy counts: OKS 0, kept.
    faint = moved.copy()
    faint[:, 2] = 0.1
    kept = metrics.oks_nms(np.stack([person, faint]), np.array([0.9, 0.8]), areas[:2], visibility_threshold=0.2)
    assert kept == [0, 1]


def test_rescore_hand_example() -> None:
    box = np.array([0.8, 0.5, 1.0])
    keypoint_scores = np.array([[0.1, 0.3, 0.5, 0.2], [0.1, 0.2, 0.15, 0.0], [0.9, 0.9, 0.6, 0.6]])
    # Row 0: scores > 0.2 are 0.3, 0.5 (0.2 itself is not) -> mean 0.4 -> 0.8 * 0.4 = 0.32.
    # Row 1: none above -> 0. Row 2: mean 0.75 -> 0.75. The reference sums joint by joint in float32.
    f = np.float32
    expected = [f(0.8) * ((f(0.3) + f(0.5)) / f(2)), 0.0, f(1.0) * ((((f(0.9) + f(0.9)) + f(0.6)) + f(0.6)) / f(4))]
    assert metrics.rescore(box, keypoint_scores).tolist() == [float(v) for v in expected]
    np.testing.assert_allclose(expected, [0.32, 0.0, 0.75], rtol=0, atol=1e-7)


def test_instance_scores_follow_the_score_modes_by_hand() -> None:
    box = np.array([0.8, 0.5, 1.0])
    keypoint_scores = np.array([[0.1, 0.3, 0.5, 0.2], [0.1, 0.2, 0.15, 0.0], [0.9, 0.9, 0.6, 0.6]])
    # bbox_keypoint (HRNet / mmpose's default) is ``rescore``: 0.32, 0, 0.75.
    np.testing.assert_array_equal(metrics.instance_scores(box, keypoint_scores, "bbox_keypoint"),
                                  metrics.rescore(box, keypoint_scores))
    # keypoint (G-RMI's eq. 7): the plain mean of every joint's score, the box score left out:
    # (0.1 + 0.3 + 0.5 + 0.2) / 4 = 0.275, 0.45 / 4 = 0.1125, 3.0 / 4 = 0.75.
    plain = metrics.instance_scores(box, keypoint_scores, "keypoint")
    np.testing.assert_allclose(plain, [0.275, 0.1125, 0.75], rtol=0, atol=1e-7)
    # bbox: the detector's box score alone.
    assert metrics.instance_scores(box, keypoint_scores, "bbox").tolist() == [0.8, 0.5, 1.0]
    with pytest.raises(ValueError, match=r"instance score mode 'oks'; valid: bbox_keypoint, keypoint, bbox"):
        metrics.instance_scores(box, keypoint_scores, "oks")
    for mode in metrics.INSTANCE_SCORES:
        with pytest.raises(ValueError, match=r"box_scores \(N,\) and keypoint_scores \(N, K\) disagree: \(2,\)"):
            metrics.instance_scores(box[:2], keypoint_scores, mode)


def test_keypoint_instance_scores_are_mmpose_np_mean_of_float32_bit_for_bit() -> None:
    # mmpose coco_metric.py, score_mode 'keypoint': ``np.mean(instance['keypoint_scores'])`` of a float32 row.
    rng = np.random.default_rng(3)
    keypoint_scores = rng.uniform(0.0, 1.0, (500, 17))
    reference = [float(np.mean(row)) for row in keypoint_scores.astype(np.float32)]
    assert metrics.instance_scores(np.ones(500), keypoint_scores, "keypoint").tolist() == reference


def _image_height_example() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    # Person A in an image 120 px high (1/12: 10 px), person B in one 240 px high (20 px). Errors are 3-4-5
    # triangles, so the distances are exact: A j0 10 (exactly at the threshold), A j1 10.5, A j2 not annotated
    # (error 100); B j0 15 (right only because B's image is taller), B j1 20 (at the threshold), B j2 25.
    gt = np.zeros((2, 3, 2))
    offsets = np.array([[[6.0, 8.0], [0.0, 10.5], [60.0, 80.0]], [[9.0, 12.0], [12.0, 16.0], [15.0, 20.0]]])
    visible = np.array([[True, True, False], [True, True, True]])
    return gt + offsets, gt, visible, np.array([120.0, 240.0])


def test_pck_image_height_hand_example() -> None:
    pred, gt, visible, heights = _image_height_example()
    result = metrics.pck_image_height(pred, gt, visible, heights)
    assert result == {"joint_0": 100.0, "joint_1": 50.0, "joint_2": 0.0, "Mean": 60.0}  # 3 of 5 annotated right
    # At 1/6 of the height A allows 20 px and B 40 px: every annotated joint is right.
    assert metrics.pck_image_height(pred, gt, visible, heights, fraction=1 / 6)["Mean"] == 100.0
    # One height for both: B's 15 px error is wrong in a 120 px image.
    assert metrics.pck_image_height(pred, gt, visible, [120.0, 120.0])["joint_0"] == 50.0


def test_pck_image_height_bad_input() -> None:
    pred, gt, visible, heights = _image_height_example()
    with pytest.raises(ValueError, match="fraction"):
        metrics.pck_image_height(pred, gt, visible, heights, fraction=0.0)
    with pytest.raises(ValueError, match=r"normalizer\[0\]"):
        metrics.pck_image_height(pred, gt, visible, [0.0, 240.0])


def test_visibility_accuracy_hand_example() -> None:
    scores = np.array([[0.9, 0.5, 0.2], [0.51, 0.4, 1.0]])
    visible = np.array([[True, True, False], [True, True, True]])
    # Present = score > 0.5: [[T, F, F], [T, F, T]]; agrees with visible at 4 of the 6 joints (0.5 is not > 0.5).
    assert metrics.visibility_accuracy(scores, visible) == pytest.approx(100 * 4 / 6, abs=1e-12)
    assert metrics.visibility_accuracy(scores, visible, threshold=0.45) == pytest.approx(100 * 5 / 6, abs=1e-12)
    # Scores of 1 everywhere (a regressor without a presence head) score the share of annotated joints.
    assert metrics.visibility_accuracy(np.ones((2, 3)), visible) == pytest.approx(100 * 5 / 6, abs=1e-12)


def test_visibility_accuracy_bad_input() -> None:
    with pytest.raises(ValueError, match="visible"):
        metrics.visibility_accuracy(np.ones((2, 3)), np.ones((2, 4), dtype=bool))
    with pytest.raises(ValueError, match=r"non-finite value at \(sample 1, joint 0\)"):
        metrics.visibility_accuracy(np.array([[0.1], [np.nan]]), np.ones((2, 1), dtype=bool))
