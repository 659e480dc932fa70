"""Each protocol's ``evaluate`` equals the metric functions (and pycocotools) on the real sample data.

The truth is read independently of the loaders where it can be: MPII joints and visibility from the
sample JSON and the head boxes tests/builders.py wrote into gt_valid.mat, COCO results built by hand
and scored by pycocotools' COCOeval itself, LSP values computed by hand.
"""

from __future__ import annotations

import contextlib
import io
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import scipy.io
from pycocotools.coco import COCO as CocoApi
from pycocotools.cocoeval import COCOeval

from benchmark import metrics
from benchmark.evaluation import evaluate_predictions, presence_metrics
from benchmark.protocols import EvaluationError, get_protocol
from datamodules.datasets import build_dataset
from tests.builders import HEADBOXES, make_coco_root, make_mpii_root, write_lsp, write_lspet


def test_mpii_evaluate_is_mpii_pckh_per_joint_and_auc(tmp_path: Path, mpii_fixture_dir: Path) -> None:
    dataset = build_dataset("mpii", make_mpii_root(tmp_path / "mpii", mpii_fixture_dir), "val")
    persons = json.loads((mpii_fixture_dir / "test_mpii.json").read_text())
    gt = np.array([p["joints"] for p in persons], dtype=np.float64) - 1.0  # MATLAB 1-based -> 0-based
    visible = np.array([p["joints_vis"] for p in persons], dtype=bool)
    headboxes = HEADBOXES - 1.0
    pred = gt + np.random.default_rng(0).normal(0.0, 20.0, gt.shape)  # head sizes are 52 to 56 px
    result = get_protocol("mpii").evaluate(dataset, pred, np.ones(visible.shape))
    table = metrics.mpii_pckh(pred, gt, visible, headboxes)
    assert 0.0 < table["Mean"] < 100.0  # the noise is neither negligible nor total
    per_joint = metrics.pckh_per_joint(pred, gt, visible, headboxes)
    expected = {f"PCKh/{name}": value for name, value in table.items()}
    expected |= {f"PCKh/{name}": float(v) for name, v in zip(dataset.skeleton.joints, per_joint, strict=True)}
    expected["PCKh/AUC"] = metrics.pckh_auc(pred, gt, visible, headboxes)
    assert result == expected


def _cocoeval(annotation: Path, results: list[dict]) -> list[float]:
    with contextlib.redirect_stdout(io.StringIO()):
        gt = CocoApi(str(annotation))
        evaluator = COCOeval(gt, gt.loadRes(results), iouType="keypoints")
        evaluator.evaluate(), evaluator.accumulate(), evaluator.summarize()
    return [float(v) for v in evaluator.stats]


def _noisy_coco_case(root: Path, seed: int, person_score: Callable[[np.ndarray], float]) -> tuple[Any, ...]:
    """The fixture's val persons with 4 px noise and random joint scores, and their COCO results built by hand with
    ``person_score(joint scores)`` as each result's score: ``(dataset, pred, scores, by_hand)``."""
    dataset = build_dataset("coco", root, "val")
    gt = np.stack([r.keypoints for r in dataset.records])
    rng = np.random.default_rng(seed)
    pred = gt + rng.normal(0.0, 4.0, gt.shape)
    scores = rng.uniform(0.0, 1.0, gt.shape[:2])
    by_hand = [{"image_id": r.image_id, "category_id": 1,
                "keypoints": np.concatenate([pred[i], scores[i][:, None]], axis=1).reshape(-1).tolist(),
                "score": person_score(scores[i])} for i, r in enumerate(dataset.records)]
    return dataset, pred, scores, by_hand


def test_coco_evaluate_is_cocoeval_of_the_rescored_results(tmp_path: Path, coco_fixture_dir: Path) -> None:
    root = make_coco_root(tmp_path / "coco", coco_fixture_dir)
    # Ground-truth boxes score 1; rescored = mean of the joint scores above 0.2. The persons are far apart,
    # so OKS-NMS at 0.9 keeps every one of them.
    dataset, pred, scores, by_hand = _noisy_coco_case(root, 1, lambda s: float(s[s > 0.2].mean()))
    result = get_protocol("coco").evaluate(dataset, pred, scores)
    assert list(result) == ["AP", "AP50", "AP75", "APM", "APL", "AR", "AR50", "AR75", "ARM", "ARL"]
    expected = _cocoeval(root / "annotations" / "person_keypoints_val2017.json", by_hand)
    assert 0.0 < result["AP"] < 1.0
    np.testing.assert_allclose(list(result.values()), expected, rtol=0, atol=1e-6)  # results rounded to 1e-4 px
    assert evaluate_predictions(dataset, {"keypoints": pred, "scores": scores}, tmp_path, "test") == result
    written = json.loads((tmp_path / "test_keypoints_results.json").read_text())
    assert len(written) == len(dataset) and [r["image_id"] for r in written] == sorted(r["image_id"] for r in by_hand)


def test_coco_keypoint_instance_scores_rank_persons_by_the_plain_keypoint_mean(
        tmp_path: Path, coco_fixture_dir: Path, mpii_fixture_dir: Path) -> None:
    # G-RMI's pose score (eq. 7; mmpose's score_mode 'keypoint'): the mean of every joint's score, box score
    # ignored, ranks the persons for COCOeval and orders OKS-NMS.
    root = make_coco_root(tmp_path / "coco", coco_fixture_dir)
    dataset, pred, scores, by_hand = _noisy_coco_case(root, 2, lambda s: float(s.mean()))
    protocol = get_protocol("coco")
    result = protocol.evaluate(dataset, pred, scores, instance_score="keypoint")
    np.testing.assert_allclose(list(result.values()), _cocoeval(root / "annotations" / "person_keypoints_val2017.json",
                                                                by_hand), rtol=0, atol=1e-6)
    written = protocol.predictions(dataset, pred, scores, instance_score="keypoint")
    assert len(written) == len(by_hand)  # far-apart persons: OKS-NMS keeps every one, best first per image
    np.testing.assert_allclose(sorted((r["image_id"], r["score"]) for r in written),
                               sorted((r["image_id"], r["score"]) for r in by_hand), rtol=0, atol=1e-6)
    default = protocol.predictions(dataset, pred, scores)
    assert [r["score"] for r in default] != [r["score"] for r in written]  # the mode changes the ranking scores
    # Single-person protocols have no instances to rank: the mode changes nothing there.
    mpii = build_dataset("mpii", make_mpii_root(tmp_path / "mpii", mpii_fixture_dir), "val")
    keypoints = np.stack([r.keypoints for r in mpii.records])
    assert (get_protocol("mpii").evaluate(mpii, keypoints, np.ones(keypoints.shape[:2]), instance_score="keypoint")
            == get_protocol("mpii").evaluate(mpii, keypoints, np.ones(keypoints.shape[:2])))


def test_lsp_evaluate_is_pck_at_0_2_torso_and_strict_pcp_by_hand(tmp_path: Path) -> None:
    write_lsp(tmp_path, count=4)
    dataset = build_dataset("lsp", tmp_path, "val")
    gt = np.stack([r.keypoints for r in dataset.records])
    # builders: joint j at (10 + 2 j + offset, 20 + 3 j): the torso (l_shoulder 9 to r_hip 2) is |(14, 21)|
    # = 25.24 px, so 0.2 x torso = 5.05 px. Even joints are 5 px off (correct), odd ones 10 px (wrong).
    shift = np.where(np.arange(14)[:, None] % 2 == 0, [3.0, 4.0], [6.0, 8.0])
    result = get_protocol("lsp").evaluate(dataset, gt + shift, np.ones(gt.shape[:2]))
    expected = {f"PCK/{name}": 100.0 if j % 2 == 0 else 0.0 for j, name in enumerate(dataset.skeleton.joints)}
    expected["PCK/Mean"] = 50.0
    # Every PCP limb joins neighbouring joints |(2, 3)| = 3.6 px apart: half of it is below either error.
    expected |= {f"PCP/{name}": 0.0 for name in (*dataset.skeleton.pcp_limbs, "Mean")}
    # The builders' images are 80 px high: 1/12 of it is 6.67 px, so the same joints are right at 1/12 height.
    expected |= {f"PCK-img/{name}": 100.0 if j % 2 == 0 else 0.0 for j, name in enumerate(dataset.skeleton.joints)}
    expected["PCK-img/Mean"] = 50.0
    expected["Visibility/accuracy"] = 100.0  # every LSP joint is annotated and every score is 1 > 0.5
    assert result == expected
    evaluate_predictions(dataset, {"keypoints": gt + shift, "scores": np.ones(gt.shape[:2])}, tmp_path, "val")
    saved = scipy.io.loadmat(tmp_path / "val_predictions.mat")
    np.testing.assert_array_equal(saved["preds"], gt + shift + 1.0)  # HRNet's pred.mat: 1-based
    np.testing.assert_array_equal(saved["scores"], np.ones(gt.shape[:2]))


def test_lsp_extended_pck_at_1_12_image_height_and_visibility_accuracy_by_hand(tmp_path: Path) -> None:
    write_lspet(tmp_path)  # person 0: all 14 joints annotated; person 1: joints 4-13; person 2: none (skipped)
    dataset = build_dataset("lsp_extended", tmp_path, "train")
    gt = np.stack([r.keypoints for r in dataset.records])
    # A 6 px error everywhere (a 3-4-5 triangle): inside 1/12 of the 80 px image height (6.67 px), outside
    # 0.2 x the torso of |(14, 21)| = 25.24 px (5.05 px).
    pred = gt + [3.6, 4.8]
    scores = np.full(gt.shape[:2], 0.9)
    scores[1, :4] = 0.2  # person 1's unannotated joints predicted absent: right
    scores[1, 4:6] = 0.3  # two of its annotated joints predicted absent: wrong
    result = get_protocol("lsp").evaluate(dataset, pred, scores)
    assert result["PCK-img/Mean"] == 100.0
    assert result["PCK-img/r_ankle"] == 100.0 and result["PCK/r_ankle"] == 0.0  # annotated for person 0 only
    assert result["Visibility/accuracy"] == pytest.approx(100 * 26 / 28, abs=1e-12)  # 28 joints, 2 wrong


def test_pck_at_image_height_needs_the_images(tmp_path: Path) -> None:
    write_lspet(tmp_path)
    dataset = build_dataset("lsp_extended", tmp_path, "train")
    (tmp_path / "images" / "im00002.jpg").unlink()
    gt = np.nan_to_num(np.stack([r.keypoints for r in dataset.records]))
    with pytest.raises(EvaluationError, match=r"lsp_extended train: image .*im00002.jpg not found"):
        get_protocol("lsp").evaluate(dataset, gt, np.ones(gt.shape[:2]))


def test_presence_metrics_score_a_presence_head_under_mpii(tmp_path: Path, mpii_fixture_dir: Path) -> None:
    dataset = build_dataset("mpii", make_mpii_root(tmp_path / "mpii", mpii_fixture_dir), "val")
    persons = json.loads((mpii_fixture_dir / "test_mpii.json").read_text())
    visible = np.array([p["joints_vis"] for p in persons], dtype=bool)
    scores = np.where(visible, 0.8, 0.1)
    scores[0, 0] = 1.0 - scores[0, 0]  # one joint on the wrong side of 0.5
    assert presence_metrics(dataset, scores) == {
        "Visibility/accuracy": pytest.approx(100 * (visible.size - 1) / visible.size, abs=1e-12)}


@pytest.mark.parametrize(("name", "stage", "file"), [
    ("mpii", "val", "val_predictions.mat"), ("lsp", "test", "test_predictions.mat"),
    ("coco", "test", "test_keypoints_results.json")])
def test_prediction_file_names(name: str, stage: str, file: str) -> None:
    assert get_protocol(name).predictions_file(stage) == file
