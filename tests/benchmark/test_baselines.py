"""The mean-pose floor and the heatmap-grid oracle, on hand-computed boxes and grid points.

Set-up used throughout: a 64x64 crop of a 200x200 px box centred at (100, 50) under the aligned grid, so
crop = (image - centre) * 64 / 200 + 31.5, and 16x16 heatmaps (stride 4), hm = (crop + 0.5) / 4 - 0.5.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from benchmark import baselines
from datamodules.records import PersonRecord

CENTRE = np.array([100.0, 50.0])
ZOOM = 64 / 200


def _record(crop_points: list[list[float]], visible: list[int], centre: np.ndarray = CENTRE,
            box: float = 200.0) -> PersonRecord:
    crop = np.asarray(crop_points, dtype=np.float64)
    image = (crop - 31.5) * box / 64 + centre
    return PersonRecord(image="x.jpg", image_id=0, center=centre, scale=np.array([box, box]) / 200,
                        keypoints=image, visible=np.asarray(visible, dtype=bool))


def _crop_of_heatmap(hm: list[float]) -> list[float]:
    return list((np.asarray(hm) + 0.5) * 4 - 0.5)


def test_crop_keypoints_invert_the_hand_computed_warp() -> None:
    record = _record([[31.5, 31.5], [63.5, 0.0]], [1, 0])
    crop, visible = baselines.crop_keypoints([record], (64, 64))
    np.testing.assert_allclose(crop[0], [[31.5, 31.5], [63.5, 0.0]], atol=1e-12)
    assert visible.tolist() == [[True, False]]
    np.testing.assert_allclose((record.keypoints[1] - CENTRE) * ZOOM + 31.5, [63.5, 0.0])


def test_mean_pose_averages_annotated_joints_only() -> None:
    first = _record([[10.0, 10.0], [5.0, 5.0], [1.0, 2.0]], [1, 1, 0])
    second = _record([[20.0, 30.0], [50.0, 50.0], [3.0, 4.0]], [1, 0, 0], centre=np.array([300.0, 400.0]), box=100.0)
    pose = baselines.mean_pose([first, second], (64, 64))
    np.testing.assert_allclose(pose.keypoints, [[15.0, 20.0], [5.0, 5.0], [31.5, 31.5]], atol=1e-12)
    np.testing.assert_allclose(pose.frequency, [1.0, 0.5, 0.0])


def test_mean_pose_is_placed_in_each_box_by_the_inverse_warp() -> None:
    pose = baselines.MeanPose(keypoints=np.array([[31.5, 31.5], [15.5, 47.5]]), frequency=np.array([1.0, 0.25]))
    target = _record([[0.0, 0.0], [0.0, 0.0]], [1, 1], centre=np.array([300.0, 400.0]), box=100.0)
    keypoints, scores = baselines.mean_pose_predictions([target], pose, (64, 64))
    # crop 15.5 is 16 crop px left of the centre: 16 * 100 / 64 = 25 image px.
    np.testing.assert_allclose(keypoints[0], [[300.0, 400.0], [275.0, 425.0]], atol=1e-9)
    np.testing.assert_allclose(scores, [[1.0, 0.25]])


def test_mean_pose_needs_records() -> None:
    with pytest.raises(ValueError, match="at least one"):
        baselines.mean_pose([], (64, 64))


@pytest.mark.parametrize("decoder", ["argmax", "quarter", "dark"])
def test_oracle_on_grid_points_returns_the_ground_truth(decoder: str) -> None:
    record = _record([_crop_of_heatmap([7.0, 7.0]), _crop_of_heatmap([9.0, 6.0])], [1, 1])
    keypoints, scores = baselines.oracle_predictions([record], (64, 64), (16, 16), 2.0, decoder)
    np.testing.assert_allclose(keypoints[0], record.keypoints, atol=1e-4)
    np.testing.assert_allclose(scores, 1.0)


@pytest.mark.parametrize("decoder", ["argmax", "quarter"])
def test_oracle_is_the_ground_truth_quantised_to_the_grid(decoder: str) -> None:
    # hm (7.3, 7.0) -> the standard target sits on pixel (7, 7); hm 7.5 rounds up to 8 (floor(x + 0.5)).
    record = _record([_crop_of_heatmap([7.3, 7.0]), _crop_of_heatmap([7.5, 6.5])], [1, 1])
    keypoints, _ = baselines.oracle_predictions([record], (64, 64), (16, 16), 2.0, decoder)
    error_hm = (keypoints[0] - record.keypoints) * ZOOM / 4
    np.testing.assert_allclose(error_hm, [[-0.3, 0.0], [0.5, 0.5]], atol=1e-9)


def test_the_unbiased_target_lets_dark_recover_the_sub_pixel_point() -> None:
    record = _record([_crop_of_heatmap([7.3, 7.0])], [1])
    quantised, _ = baselines.oracle_predictions([record], (64, 64), (16, 16), 2.0, "dark")
    unbiased, _ = baselines.oracle_predictions([record], (64, 64), (16, 16), 2.0, "dark", unbiased=True)
    assert abs((quantised[0, 0, 0] - record.keypoints[0, 0]) * ZOOM / 4 + 0.3) < 1e-3
    assert abs((unbiased[0, 0, 0] - record.keypoints[0, 0]) * ZOOM / 4) < 1e-3


def test_reference_rows_on_synthpose_bracket_what_a_method_can_score(synthpose_root: Path, tmp_path: Path) -> None:
    """On SynthPose (MPII format) the image-blind mean pose is a low floor and the stride-4 oracle scores every
    joint within half a head (its error is at most half a heatmap pixel per axis); the rows round-trip."""
    from datamodules.datasets import build_dataset

    train, val = (build_dataset("synthpose", synthpose_root, split, format="mpii", aspect_ratio=1.0)
                  for split in ("train", "val"))
    rows = baselines.reference_rows(train, val, (128, 128))
    assert [row["kind"] for row in rows] == ["floor", "ceiling", "ceiling", "ceiling"]
    floor, argmax = rows[0]["metrics"]["PCKh/Mean"], rows[1]["metrics"]["PCKh/Mean"]
    assert 0.0 < floor < 30.0
    assert argmax == 100.0
    path = baselines.write_references(tmp_path, val, "mpii", rows)
    assert path == tmp_path / "references" / "synthpose-mpii.json"
    (loaded,) = baselines.read_references(tmp_path)
    assert loaded["rows"] == rows and loaded["dataset"]["fingerprint"] == val.fingerprint()
