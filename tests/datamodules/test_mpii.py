"""MPII loaders on the real sample annotations (values derived by hand from test_mpii.json)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import scipy.io

from datamodules.mpii import (
    MAT_JOINT_NAMES,
    attach_ground_truth,
    load_mpii_annotations,
    load_mpii_ground_truth,
)
from datamodules.records import DatasetError
from tests.builders import HEADBOXES, write_gt_valid


@pytest.fixture(scope="module")
def mpii_json(mpii_fixture_dir: Path) -> Path:
    return mpii_fixture_dir / "test_mpii.json"


@pytest.fixture(scope="module")
def persons(mpii_json: Path) -> list[dict]:
    return json.loads(mpii_json.read_text())


def test_records_match_hand_derived_values(mpii_json: Path, mpii_fixture_dir: Path) -> None:
    records = load_mpii_annotations(mpii_json, mpii_fixture_dir)
    assert len(records) == 5

    first = records[0]
    assert first.image == str(mpii_fixture_dir / "005808361.jpg")
    # center [966, 340], scale 4.718488: y + 15 * 4.718488 = 410.77732, then both minus 1.
    np.testing.assert_allclose(first.center, [965.0, 409.77732], rtol=0, atol=1e-9)
    np.testing.assert_allclose(first.scale, [5.89811, 5.89811], rtol=0, atol=1e-9)
    np.testing.assert_allclose(first.keypoints[0], [803.0, 710.0], rtol=0, atol=1e-12)
    np.testing.assert_allclose(first.keypoints[8], [981.7591, 234.9694], rtol=0, atol=1e-9)
    assert first.visible.dtype == bool and first.visible.all()

    third = records[2]  # 051423444.jpg: ankles unannotated (joints_vis 0, joints [-1, -1])
    # center [1030, 396], scale 3.139233: y + 47.088495, scale x 1.25 = 3.92404125.
    np.testing.assert_allclose(third.center, [1029.0, 442.088495], rtol=0, atol=1e-9)
    np.testing.assert_allclose(third.scale, [3.92404125, 3.92404125], rtol=0, atol=1e-9)
    np.testing.assert_array_equal(np.flatnonzero(~third.visible), [0, 5])
    np.testing.assert_allclose(third.keypoints[[0, 5]], [[-2.0, -2.0], [-2.0, -2.0]], rtol=0, atol=0)
    np.testing.assert_allclose(third.keypoints[1], [1032.0, 648.0], rtol=0, atol=0)

    assert [r.image_id for r in records] == [0, 1, 2, 3, 4]
    assert all(Path(r.image).is_file() for r in records)
    assert all(r.keypoints.shape == (16, 2) and r.headbox is None for r in records)


def test_same_image_gets_same_id(tmp_path: Path, persons: list[dict]) -> None:
    path = tmp_path / "annot.json"
    path.write_text(json.dumps([persons[0], persons[1], persons[0]]))
    records = load_mpii_annotations(path, tmp_path)
    assert [r.image_id for r in records] == [0, 1, 0]


def test_ground_truth_is_zero_based_and_person_first(tmp_path: Path, persons: list[dict]) -> None:
    mat = tmp_path / "gt_valid.mat"
    write_gt_valid(mat, persons, HEADBOXES)
    truth = load_mpii_ground_truth(mat)
    assert len(truth) == 5
    assert truth.joints.shape == (5, 16, 2) and truth.missing.shape == (5, 16) and truth.headboxes.shape == (5, 2, 2)
    assert list(truth.joint_names) == list(MAT_JOINT_NAMES)
    np.testing.assert_allclose(truth.joints[0, 0], [803.0, 710.0], rtol=0, atol=1e-12)
    np.testing.assert_array_equal(np.argwhere(truth.missing), [[2, 0], [2, 5], [3, 0], [3, 5]])
    np.testing.assert_allclose(truth.headboxes[3], [[102.0, 49.0], [152.0, 125.0]], rtol=0, atol=0)


def test_ground_truth_in_another_joint_order_is_reordered(tmp_path: Path, persons: list[dict]) -> None:
    mat = tmp_path / "gt_valid.mat"
    write_gt_valid(mat, persons, HEADBOXES, names=tuple(reversed(MAT_JOINT_NAMES)))
    truth = load_mpii_ground_truth(mat)
    assert list(truth.joint_names) == list(MAT_JOINT_NAMES)
    np.testing.assert_allclose(truth.joints[1, 9], [346.0055, 104.8949], rtol=0, atol=1e-9)  # head_top


def test_attach_ground_truth_adds_head_boxes(tmp_path: Path, mpii_json: Path, mpii_fixture_dir: Path,
                                             persons: list[dict]) -> None:
    mat = tmp_path / "gt_valid.mat"
    # Unannotated joints may hold anything in the .mat; they must not take part in the check.
    edited = json.loads(json.dumps(persons))
    edited[2]["joints"][0] = [0.0, 0.0]
    write_gt_valid(mat, edited, HEADBOXES)
    records = load_mpii_annotations(mpii_json, mpii_fixture_dir)
    joined = attach_ground_truth(records, load_mpii_ground_truth(mat))
    assert len(joined) == 5
    np.testing.assert_allclose(joined[0].headbox, [[99.0, 49.0], [149.0, 119.0]], rtol=0, atol=0)
    np.testing.assert_allclose(joined[4].headbox, [[103.0, 49.0], [153.0, 127.0]], rtol=0, atol=0)
    assert records[0].headbox is None  # inputs are left as they were


def test_attach_count_mismatch_names_both_files(tmp_path: Path, mpii_json: Path, mpii_fixture_dir: Path,
                                                persons: list[dict]) -> None:
    mat = tmp_path / "gt_valid.mat"
    write_gt_valid(mat, persons[:4], HEADBOXES[:4])
    records = load_mpii_annotations(mpii_json, mpii_fixture_dir)
    with pytest.raises(DatasetError) as error:
        attach_ground_truth(records, load_mpii_ground_truth(mat))
    message = str(error.value)
    assert str(mat) in message and "4 persons" in message
    assert str(mpii_json) in message and "has 5" in message


def test_attach_joint_mismatch_names_the_record(tmp_path: Path, mpii_json: Path, mpii_fixture_dir: Path,
                                                persons: list[dict]) -> None:
    mat = tmp_path / "gt_valid.mat"
    edited = json.loads(json.dumps(persons))
    edited[3]["joints"][10][0] += 2.0  # r_wrist of record 3 moved by 2 px
    write_gt_valid(mat, edited, HEADBOXES)
    records = load_mpii_annotations(mpii_json, mpii_fixture_dir)
    with pytest.raises(DatasetError, match=r"record 3 \(image .*004645041\.jpg, joint r_wrist") as error:
        attach_ground_truth(records, load_mpii_ground_truth(mat))
    assert str(mat) in str(error.value) and str(mpii_json) in str(error.value)


def test_missing_key_in_mat_names_file_and_key(tmp_path: Path) -> None:
    mat = tmp_path / "gt_valid.mat"
    scipy.io.savemat(str(mat), {"jnt_missing": np.zeros((16, 1))})
    with pytest.raises(DatasetError, match="dataset_joints") as error:
        load_mpii_ground_truth(mat)
    assert str(mat) in str(error.value)


def test_wrong_joint_count_names_file_and_entry(tmp_path: Path, persons: list[dict]) -> None:
    edited = json.loads(json.dumps(persons))
    edited[1]["joints"] = edited[1]["joints"][:15]
    path = tmp_path / "train.json"
    path.write_text(json.dumps(edited))
    with pytest.raises(DatasetError, match=r"entry 1 \(image 052475643\.jpg\) has joints of shape \(15, 2\)") as error:
        load_mpii_annotations(path, tmp_path)
    assert str(path) in str(error.value)
    problems: list[str] = []
    records = load_mpii_annotations(path, tmp_path, problems=problems)
    assert len(records) == 4 and len(problems) == 1 and "entry 1" in problems[0]
