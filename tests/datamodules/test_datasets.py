"""The dataset registry on roots laid out from the real sample data (fixtures linked into tmp_path)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import scipy.io

from datamodules.datasets import (
    DATASETS,
    DatasetNotFoundError,
    build_dataset,
    dataset_skeleton,
    lsp_train_images,
)
from datamodules.records import DatasetError
from datamodules.skeletons import COCO, LSP, MPII
from tests.builders import (
    HEADBOXES,
    make_coco_root,
    make_mpii_root,
    make_synthpose_root,
    write_lsp,
    write_lspet,
)


@pytest.fixture()
def mpii_root(tmp_path: Path, mpii_fixture_dir: Path) -> Path:
    return make_mpii_root(tmp_path / "mpii", mpii_fixture_dir)


@pytest.fixture()
def coco_root(tmp_path: Path, coco_fixture_dir: Path) -> Path:
    return make_coco_root(tmp_path / "coco", coco_fixture_dir)


def test_mpii_splits(mpii_root: Path) -> None:
    train = build_dataset("mpii", mpii_root, "train")
    assert train.skeleton is MPII and train.protocol == "mpii" and len(train) == 5
    assert train.annotation_files == (mpii_root / "annot" / "train.json",)
    assert train.mpii_ground_truth is None and train.records[0].headbox is None
    assert all(Path(r.image).is_file() and Path(r.image).parent == mpii_root / "images" for r in train.records)

    val = build_dataset("mpii", mpii_root, "val")
    assert val.annotation_files == (mpii_root / "annot" / "valid.json", mpii_root / "annot" / "gt_valid.mat")
    assert val.mpii_ground_truth is not None and len(val.mpii_ground_truth) == 5
    np.testing.assert_allclose(val.records[0].headbox, HEADBOXES[0] - 1.0, rtol=0, atol=0)


def test_coco_val_gt_and_detection_boxes(coco_root: Path) -> None:
    gt = build_dataset("coco", coco_root, "val", aspect_ratio=0.75)
    assert gt.skeleton is COCO and gt.protocol == "coco" and len(gt) == 12
    assert gt.coco_annotation == coco_root / "annotations" / "person_keypoints_val2017.json"
    assert gt.image_dir == coco_root / "val2017"

    detections = coco_root / "person_detection_results" / "COCO_val2017_detections_AP_H_56_person.json"
    raw = json.loads(detections.read_text())
    det = build_dataset("coco", coco_root, "val", boxes="detections", detection_threshold=0.5)
    assert len(det) == sum(d["category_id"] == 1 and d["score"] >= 0.5 for d in raw)
    assert len(det.annotation_files) == 2 and det.coco_annotation == gt.coco_annotation
    # aspect ratio reaches the boxes: 1.0 makes them square
    square = build_dataset("coco", coco_root, "val", aspect_ratio=1.0)
    assert all(r.scale[0] == r.scale[1] for r in square.records)


def test_fingerprint_is_stable_and_tracks_annotation_bytes(mpii_root: Path, tmp_path: Path,
                                                           mpii_fixture_dir: Path) -> None:
    first = build_dataset("mpii", mpii_root, "val").fingerprint()
    assert len(first) == 64 and int(first, 16) >= 0
    assert build_dataset("mpii", mpii_root, "val").fingerprint() == first
    # Same data elsewhere, same fingerprint (names and bytes, not paths).
    elsewhere = make_mpii_root(tmp_path / "copy", mpii_fixture_dir)
    assert build_dataset("mpii", elsewhere, "val").fingerprint() == first
    assert build_dataset("mpii", mpii_root, "train").fingerprint() != first

    valid = mpii_root / "annot" / "valid.json"
    valid.write_bytes(valid.read_bytes().replace(b"4.718488", b"4.718489", 1))
    assert build_dataset("mpii", mpii_root, "val").fingerprint() != first


def test_fingerprint_tracks_image_names(coco_root: Path) -> None:
    dataset = build_dataset("coco", coco_root, "val")
    before = dataset.fingerprint()
    assert dataset.image_names() == ["000000000785.jpg", "000000040083.jpg", "000000196141.jpg", "000000197388.jpg"]
    dataset.records = [r for r in dataset.records if r.image_id != 785]
    assert dataset.fingerprint() != before


def test_head_keeps_records_and_gt_valid_rows_together(mpii_root: Path) -> None:
    val = build_dataset("mpii", mpii_root, "val")
    subset = val.head(3)
    assert len(subset) == 3 and len(subset.mpii_ground_truth) == 3
    assert subset.records == val.records[:3]
    np.testing.assert_array_equal(subset.mpii_ground_truth.headboxes, val.mpii_ground_truth.headboxes[:3])
    np.testing.assert_array_equal(subset.mpii_ground_truth.joints, val.mpii_ground_truth.joints[:3])
    assert len(val) == 5 and len(val.mpii_ground_truth) == 5  # the original is untouched


def test_unknown_names_list_the_valid_ones(coco_root: Path) -> None:
    with pytest.raises(DatasetError) as error:
        build_dataset("mpi", coco_root, "val")
    assert all(name in str(error.value) for name in DATASETS)
    for kwargs, valid in (({"split": "test"}, "train, val"), ({"boxes": "dets"}, "gt, detections"),
                          ({"format": "yolo"}, "mpii, coco")):
        args = {"split": "val"} | kwargs
        with pytest.raises(DatasetError, match=valid):
            build_dataset("coco", coco_root, args.pop("split"), **args)


def test_missing_annotation_file_says_where_and_how(coco_root: Path, tmp_path: Path) -> None:
    with pytest.raises(DatasetNotFoundError) as error:
        build_dataset("coco", coco_root, "train")
    message = str(error.value)
    assert str(coco_root / "annotations" / "person_keypoints_train2017.json") in message
    assert "python -m benchmark data fetch coco --root DIR" in message
    assert "person_keypoints_{train2017,val2017}.json" in message

    (coco_root / "person_detection_results" / "COCO_val2017_detections_AP_H_56_person.json").unlink()
    with pytest.raises(DatasetNotFoundError, match="COCO_val2017_detections_AP_H_56_person.json"):
        build_dataset("coco", coco_root, "val", boxes="detections")

    with pytest.raises(DatasetNotFoundError, match=r"python -m benchmark data synth --out DIR") as error:
        build_dataset("synthpose", tmp_path / "nowhere", "train")
    assert str(tmp_path / "nowhere" / "mpii" / "annot" / "train.json") in str(error.value)
    assert "does not exist" in str(error.value)


def test_missing_ground_truth_is_reported(mpii_root: Path) -> None:
    (mpii_root / "annot" / "gt_valid.mat").unlink()
    with pytest.raises(DatasetNotFoundError, match="gt_valid.mat") as error:
        build_dataset("mpii", mpii_root, "val")
    assert "python -m benchmark data fetch mpii" in str(error.value)


def test_wrong_joint_count_and_bad_json_name_the_file(mpii_root: Path) -> None:
    train = mpii_root / "annot" / "train.json"
    persons = json.loads(train.read_text())
    persons[2]["joints_vis"] = persons[2]["joints_vis"][:14]
    train.write_text(json.dumps(persons))
    with pytest.raises(DatasetError, match=r"entry 2 .* joints_vis of shape \(14,\)") as error:
        build_dataset("mpii", mpii_root, "train")
    assert str(train) in str(error.value)

    valid = mpii_root / "annot" / "valid.json"
    valid.write_text(valid.read_text()[:-40])
    with pytest.raises(DatasetError, match="not valid JSON") as error:
        build_dataset("mpii", mpii_root, "val")
    assert str(valid) in str(error.value)


def test_box_option_errors(mpii_root: Path, coco_root: Path) -> None:
    with pytest.raises(DatasetError, match="COCO-format"):
        build_dataset("mpii", mpii_root, "val", boxes="detections")
    with pytest.raises(DatasetError, match="training uses ground-truth boxes"):
        build_dataset("coco", coco_root, "train", boxes="detections")


def test_lsp_standard_split_and_extended(tmp_path: Path) -> None:
    write_lsp(tmp_path / "lsp")
    train = build_dataset("lsp", tmp_path / "lsp", "train")
    val = build_dataset("lsp", tmp_path / "lsp", "val")
    assert train.skeleton is LSP and train.protocol == "lsp"
    assert [r.image_id for r in train.records] == [1, 2] and [r.image_id for r in val.records] == [3, 4]
    assert train.fingerprint() != val.fingerprint()

    write_lspet(tmp_path / "lspet")
    assert len(build_dataset("lsp_extended", tmp_path / "lspet", "train")) == 2
    assert len(build_dataset("lsp_extended", tmp_path / "lspet", "val")) == 0  # 3 images: 10% of them is none


def test_lsp_extended_split_keeps_the_last_tenth_by_image_number_for_val(tmp_path: Path) -> None:
    # 20 images, all 14 joints annotated except image 19 (none: the loader skips it).
    values = np.zeros((20, 14, 3))
    for i in range(20):
        values[i, :, :2] = np.stack([np.linspace(10, 60, 14) + i, np.linspace(20, 120, 14)], axis=1)
        values[i, :, 2] = 0.0 if i == 18 else 1.0
    tmp_path.mkdir(exist_ok=True)
    scipy.io.savemat(str(tmp_path / "joints.mat"), {"joints": np.transpose(values, (1, 2, 0))})
    train = build_dataset("lsp_extended", tmp_path, "train")
    val = build_dataset("lsp_extended", tmp_path, "val")
    assert [r.image_id for r in train.records] == list(range(1, 19))  # im00001-im00018
    assert [r.image_id for r in val.records] == [20]  # im00019-im00020, of which im00019 has no joint
    assert Path(val.records[0].image).name == "im00020.jpg"
    assert val.protocol == "lsp" and val.skeleton is LSP
    assert lsp_train_images(10_000, extended=True) == 9_000 and lsp_train_images(2_000, extended=False) == 1_000


def test_synthpose_both_formats(tmp_path: Path, fixtures_dir: Path) -> None:
    root = make_synthpose_root(tmp_path / "synth", fixtures_dir)
    mpii = build_dataset("synthpose", root, "val", format="mpii")
    assert mpii.protocol == "mpii" and len(mpii) == 5 and mpii.records[0].headbox is not None
    assert all(Path(r.image).parent == root / "images" and Path(r.image).is_file() for r in mpii.records)
    coco = build_dataset("synthpose", root, "train", format="coco")
    assert coco.protocol == "coco" and len(coco) == 12 and coco.image_dir == root / "images"
    assert all(Path(r.image).is_file() for r in coco.records)
    det = build_dataset("synthpose", root, "val", format="coco", boxes="detections")
    assert det.annotation_files[1] == root / "coco" / "person_detection_results" / "synthpose_val_detections.json"
    assert len(det) == 118


def test_synthpose_lsp_format_reads_each_split_whole_through_the_lsp_extended_loader(tmp_path: Path) -> None:
    for split in ("train", "val"):
        (tmp_path / "lsp" / split).mkdir(parents=True)
        write_lspet(tmp_path / "lsp" / split)
    for split in ("train", "val"):
        dataset = build_dataset("synthpose", tmp_path, split, format="lsp")
        assert dataset.skeleton is LSP and dataset.protocol == "lsp"
        assert [r.image_id for r in dataset.records] == [1, 2]  # no 90/10 cut: each file is one split
        assert dataset.annotation_files == (tmp_path / "lsp" / split / "joints.mat",)
        assert dataset.image_dir == tmp_path / "lsp" / split / "images"
        assert not dataset.records[1].visible[:4].any()  # LSP-extended flags: 0 = not annotated
    assert dataset_skeleton("synthpose", "lsp") is LSP
    with pytest.raises(DatasetNotFoundError, match=r"lsp/val/joints\.mat"):
        build_dataset("synthpose", tmp_path / "empty", "val", format="lsp")
