"""COCO loaders on the real sample annotations and detections (values worked out by hand from the JSON)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from datamodules.coco import (
    box_to_center_scale,
    load_coco_detection_records,
    load_coco_records,
)
from datamodules.records import DatasetError


@pytest.fixture(scope="module")
def coco_json(coco_fixture_dir: Path) -> Path:
    return coco_fixture_dir / "test_coco.json"


@pytest.fixture(scope="module")
def det_json(coco_fixture_dir: Path) -> Path:
    return coco_fixture_dir / "test_coco_det_AP_H_56.json"


def test_box_to_center_scale_pads_to_aspect_ratio() -> None:
    # Tall box: widened to 0.75 x height; wide box: heightened to width / 0.75; then x 1.25 / 200.
    center, scale = box_to_center_scale([[10.0, 20.0, 30.0, 80.0], [0.0, 0.0, 30.0, 10.0]], 0.75)
    np.testing.assert_allclose(center, [[25.0, 60.0], [15.0, 5.0]], rtol=0, atol=0)
    np.testing.assert_allclose(scale, [[0.375, 0.5], [0.1875, 0.25]], rtol=1e-15, atol=0)
    one_center, one_scale = box_to_center_scale([0.0, 0.0, 30.0, 10.0], 0.75)
    assert one_center.shape == (2,) and one_scale.shape == (2,)
    np.testing.assert_allclose(one_scale, scale[1], rtol=0, atol=0)


def test_labelled_persons_count_matches_raw_json(coco_json: Path, coco_fixture_dir: Path) -> None:
    data = json.loads(coco_json.read_text())
    expected = [
        a["id"] for a in data["annotations"]
        if a["category_id"] == 1 and not a["iscrowd"] and a["area"] > 0 and any(v > 0 for v in a["keypoints"][2::3])
    ]
    records = load_coco_records(coco_json, coco_fixture_dir, 0.75)
    assert len(records) == len(expected) == 12
    assert sorted(r.extras["annotation_id"] for r in records) == sorted(expected)
    assert all(Path(r.image).is_file() for r in records)


def test_record_values_by_hand(coco_json: Path, coco_fixture_dir: Path) -> None:
    records = {r.extras["annotation_id"]: r for r in load_coco_records(coco_json, coco_fixture_dir, 0.75)}
    raw = {a["id"]: a for a in json.loads(coco_json.read_text())["annotations"]}

    # id 442619 on image 785 (640 x 425), bbox [280.79, 44.73, 218.7, 346.68]:
    # clean box [280.79, 44.73, 217.7, 345.68] -> centre (389.64, 217.57); 217.7 < 0.75 * 345.68,
    # so w = 259.26 -> scale (259.26, 345.68) * 1.25 / 200.
    r = records[442619]
    assert r.image == str(coco_fixture_dir / "000000000785.jpg") and r.image_id == 785
    np.testing.assert_allclose(r.extras["clean_bbox"], [280.79, 44.73, 217.7, 345.68], rtol=0, atol=1e-9)
    np.testing.assert_allclose(r.center, [389.64, 217.57], rtol=0, atol=1e-9)
    np.testing.assert_allclose(r.scale, [1.620375, 2.1605], rtol=0, atol=1e-9)
    np.testing.assert_allclose(r.bbox, [280.79, 44.73, 218.7, 346.68], rtol=0, atol=0)
    assert r.area == 27789.11055 and r.box_score == 1.0

    # id 531914 on image 197388 (640 x 392), bbox [540.04, 48.81, 99.96, 223.36]: x2 reaches W - 1.
    # clean [540.04, 48.81, 98.96, 222.36] -> centre (589.52, 159.99), scale (166.77, 222.36) * 1.25 / 200.
    r = records[531914]
    np.testing.assert_allclose(r.extras["clean_bbox"], [540.04, 48.81, 98.96, 222.36], rtol=0, atol=1e-9)
    np.testing.assert_allclose(r.center, [589.52, 159.99], rtol=0, atol=1e-9)
    np.testing.assert_allclose(r.scale, [1.0423125, 1.38975], rtol=0, atol=1e-9)

    # id 533949: keypoint 3 (l_ear) unlabelled (v 0), keypoint 15 (l_ankle) labelled but hidden (v 1).
    r = records[533949]
    flags = np.array(raw[533949]["keypoints"][2::3])
    assert flags[3] == 0 and flags[15] == 1
    np.testing.assert_array_equal(r.extras["keypoint_flags"], flags)
    np.testing.assert_array_equal(r.visible, flags > 0)
    np.testing.assert_allclose(r.keypoints[0], [580.0, 211.0], rtol=0, atol=0)
    np.testing.assert_allclose(r.keypoints, np.array(raw[533949]["keypoints"]).reshape(17, 3)[:, :2], rtol=0, atol=0)


def _write(tmp_path: Path, annotations: list[dict]) -> Path:
    data = {
        "images": [{"id": 7, "file_name": "a.jpg", "width": 100, "height": 80}],
        "annotations": annotations,
        "categories": [{"id": 1, "name": "person"}, {"id": 2, "name": "bicycle"}],
    }
    path = tmp_path / "person_keypoints.json"
    path.write_text(json.dumps(data))
    return path


def _ann(ann_id: int, bbox: list[float], *, category: int = 1, crowd: int = 0, labelled: bool = True) -> dict:
    keypoints = [0.0] * 51
    if labelled:
        keypoints[0:3] = [50.0, 40.0, 2]
    return {"id": ann_id, "image_id": 7, "category_id": category, "iscrowd": crowd, "bbox": bbox,
            "area": bbox[2] * bbox[3], "keypoints": keypoints, "num_keypoints": int(labelled)}


def test_box_is_clipped_like_the_reference_and_others_filtered(tmp_path: Path) -> None:
    path = _write(tmp_path, [
        _ann(1, [-10.0, 20.0, 130.0, 50.0]),
        _ann(2, [10.0, 10.0, 20.0, 20.0], crowd=1),
        _ann(3, [10.0, 10.0, 20.0, 20.0], category=2),
        _ann(4, [10.0, 10.0, 20.0, 20.0], labelled=False),
        _ann(5, [120.0, 10.0, 20.0, 20.0]),  # entirely right of the image: x1 = 120 > W - 1
    ])
    records = load_coco_records(path, tmp_path, 0.75)
    assert [r.extras["annotation_id"] for r in records] == [1]
    # x1 = 0, y1 = 20, x2 = min(99, 0 + 129) = 99, y2 = min(79, 20 + 49) = 69 -> [0, 20, 99, 49];
    # centre (49.5, 44.5); 99 > 0.75 * 49 so h = 132 -> scale (99, 132) * 1.25 / 200.
    np.testing.assert_allclose(records[0].extras["clean_bbox"], [0.0, 20.0, 99.0, 49.0], rtol=0, atol=0)
    np.testing.assert_allclose(records[0].center, [49.5, 44.5], rtol=0, atol=0)
    np.testing.assert_allclose(records[0].scale, [0.61875, 0.825], rtol=1e-15, atol=0)
    assert records[0].image == str(tmp_path / "a.jpg")


def test_wrong_keypoint_count_names_file_and_annotation(tmp_path: Path) -> None:
    bad = _ann(9, [10.0, 10.0, 20.0, 20.0])
    bad["keypoints"] = bad["keypoints"][:48]
    path = _write(tmp_path, [_ann(1, [10.0, 10.0, 20.0, 20.0]), bad])
    with pytest.raises(DatasetError, match=r"annotation id 9 has 48 keypoint values") as error:
        load_coco_records(path, tmp_path, 0.75)
    assert str(path) in str(error.value)
    problems: list[str] = []
    assert len(load_coco_records(path, tmp_path, 0.75, problems=problems)) == 1 and "annotation id 9" in problems[0]


def test_malformed_json_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "broken.json"
    path.write_text('{"images": [')
    with pytest.raises(DatasetError, match="not valid JSON") as error:
        load_coco_records(path, tmp_path, 0.75)
    assert str(path) in str(error.value)


@pytest.mark.parametrize("threshold", [0.0, 0.5, 0.99])
def test_detection_count_matches_raw_json(coco_json: Path, det_json: Path, coco_fixture_dir: Path,
                                          threshold: float) -> None:
    raw = json.loads(det_json.read_text())
    expected = [d for d in raw if d["category_id"] == 1 and d["score"] >= threshold]
    records = load_coco_detection_records(coco_json, coco_fixture_dir, det_json, 0.75, score_threshold=threshold)
    assert len(records) == len(expected)
    np.testing.assert_array_equal([r.box_score for r in records], [d["score"] for d in expected])
    assert [r.image_id for r in records] == [d["image_id"] for d in expected]
    if threshold == 0.0:
        assert len(records) == 118


def test_detection_record_values_by_hand(coco_json: Path, det_json: Path, coco_fixture_dir: Path) -> None:
    first = load_coco_detection_records(coco_json, coco_fixture_dir, det_json, 0.75, score_threshold=0.5)[0]
    # bbox [277.1183158543966, 45.699667786163765, 225.09126579259754, 333.5602652943344], score 0.99997...
    # centre = (x + w / 2, y + h / 2); w < 0.75 h so width = 0.75 * 333.5602652943344 = 250.1701989707508.
    assert first.image == str(coco_fixture_dir / "000000000785.jpg") and first.image_id == 785
    np.testing.assert_allclose(first.center, [389.66394875069537, 212.47980043333097], rtol=1e-14, atol=0)
    np.testing.assert_allclose(first.scale, [1.5635637435671925, 2.08475165808959], rtol=1e-14, atol=0)
    assert first.box_score == 0.9999731779098511
    assert first.keypoints.shape == (17, 2) and not first.keypoints.any()
    assert first.visible.shape == (17,) and not first.visible.any()


def test_detection_on_unknown_image_names_file_and_id(tmp_path: Path, coco_json: Path, coco_fixture_dir: Path) -> None:
    det = tmp_path / "det.json"
    det.write_text(json.dumps([{"image_id": 12345, "category_id": 1, "bbox": [1, 2, 3, 4], "score": 0.9}]))
    with pytest.raises(DatasetError, match="image id 12345") as error:
        load_coco_detection_records(coco_json, coco_fixture_dir, det, 0.75)
    assert str(det) in str(error.value)
