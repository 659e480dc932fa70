"""TopDownDataset on the real COCO fixture images: sample contents, dtypes, collation, read errors."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from torch.utils.data import default_collate

from datamodules.coco import load_coco_records
from datamodules.records import DatasetError
from datamodules.skeletons import COCO
from datamodules.topdown import TopDownDataset, read_image
from datamodules.transforms import HRNET_COCO, TopDownTransform, transform_points

MEAN = np.array([0.485, 0.456, 0.406])[:, None, None]
STD = np.array([0.229, 0.224, 0.225])[:, None, None]


@pytest.fixture(scope="module")
def records(coco_fixture_dir: Path):
    return load_coco_records(coco_fixture_dir / "test_coco.json", coco_fixture_dir, 192 / 256)


def test_sample_shapes_dtypes_and_metadata(records):
    dataset = TopDownDataset(records, TopDownTransform((256, 192), COCO))
    assert len(dataset) == len(records)
    sample = dataset[3]
    record = records[3]
    assert sample["image"].shape == (3, 256, 192) and sample["image"].dtype == torch.float32
    assert sample["keypoints"].shape == (17, 2) and sample["keypoints"].dtype == np.float32
    assert sample["visible"].shape == (17,) and sample["visible"].dtype == np.float32
    assert sample["matrix"].shape == (2, 3) and sample["inverse_matrix"].shape == (2, 3)
    assert sample["index"] == 3 and sample["index"].dtype == np.int64
    assert sample["image_id"] == record.image_id
    np.testing.assert_array_equal(sample["center"], record.center)
    np.testing.assert_array_equal(sample["scale"], record.scale)
    assert sample["box_score"] == np.float32(record.box_score) and sample["area"] == np.float32(record.area)
    assert sample["headbox"].shape == (2, 2) and sample["headbox"].dtype == np.float32
    assert np.isnan(sample["headbox"]).all()
    np.testing.assert_array_equal(sample["visible"], record.visible.astype(np.float32))
    np.testing.assert_allclose(sample["keypoints"], transform_points(record.keypoints, sample["matrix"]), atol=1e-4)


def test_crop_is_the_warped_fixture_image(records):
    """Independent pipeline: read, warp with the sample's matrix, BGR -> RGB, normalise in float64."""
    dataset = TopDownDataset(records, TopDownTransform((256, 192), COCO))
    for index in (0, len(records) - 1):
        sample = dataset[index]
        bgr = cv2.imread(records[index].image, cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)
        crop = cv2.warpAffine(bgr, sample["matrix"], (192, 256), flags=cv2.INTER_LINEAR)
        expected = (crop[:, :, ::-1].transpose(2, 0, 1) / 255.0 - MEAN) / STD
        np.testing.assert_allclose(sample["image"].numpy(), expected, atol=1e-5)
        assert crop.std() > 10  # a real photograph, not an empty border


def test_epoch_tuple_items_and_collation(records):
    augmentation = dataclasses.replace(HRNET_COCO, photometric=True)
    dataset = TopDownDataset(records, TopDownTransform((256, 192), COCO, augmentation, seed=1))
    assert not np.array_equal(dataset[(0, 2)]["matrix"], dataset[(1, 2)]["matrix"])
    np.testing.assert_array_equal(dataset[2]["matrix"], dataset[(0, 2)]["matrix"])
    batch = default_collate([dataset[(4, i)] for i in range(5)])
    assert batch["image"].shape == (5, 3, 256, 192) and batch["image"].dtype == torch.float32
    assert batch["keypoints"].shape == (5, 17, 2) and batch["visible"].shape == (5, 17)
    assert batch["matrix"].shape == (5, 2, 3) and batch["inverse_matrix"].shape == (5, 2, 3)
    assert batch["headbox"].shape == (5, 2, 2) and batch["center"].shape == (5, 2) and batch["scale"].shape == (5, 2)
    assert batch["index"].dtype == torch.int64 and batch["index"].tolist() == [0, 1, 2, 3, 4]
    assert batch["image_id"].dtype == torch.int64 and batch["box_score"].shape == (5,) and batch["area"].shape == (5,)


def test_headbox_is_passed_through(records):
    record = dataclasses.replace(records[0], headbox=np.array([[10.0, 20.0], [30.0, 45.0]]))
    sample = TopDownDataset([record], TopDownTransform((64, 48), COCO))[0]
    np.testing.assert_array_equal(sample["headbox"], np.array([[10.0, 20.0], [30.0, 45.0]], dtype=np.float32))


def test_missing_image_names_the_path(records, tmp_path):
    missing = str(tmp_path / "nowhere" / "000000000000.jpg")
    dataset = TopDownDataset([dataclasses.replace(records[0], image=missing)], TopDownTransform((64, 48), COCO))
    with pytest.raises(DatasetError, match="no such file") as error:
        dataset[0]
    assert missing in str(error.value)


@pytest.mark.parametrize("content, reason", [
    (b"\xff\xd8\xff\xe0 this is not a JPEG body", "truncated JPEG, no end-of-image marker"),  # JPEG start, no scan
    (b"\xff\xd8\xff\xda scan \xff\xd9 but no frame", "not a decodable image"),
    (b"this is no image format at all", "not a decodable image"),
])
def test_corrupt_image_names_the_path(records, tmp_path, content, reason):
    corrupt = tmp_path / "corrupt.jpg"
    corrupt.write_bytes(content)
    dataset = TopDownDataset([dataclasses.replace(records[0], image=str(corrupt))], TopDownTransform((64, 48), COCO))
    with pytest.raises(DatasetError, match=reason) as error:
        dataset[0]
    assert str(corrupt) in str(error.value)


def test_truncated_png_names_the_path(tmp_path):
    png = tmp_path / "image.png"
    cv2.imwrite(str(png), np.full((20, 30, 3), 90, dtype=np.uint8))
    assert read_image(str(png)).shape == (20, 30, 3)
    png.write_bytes(png.read_bytes()[:-12])  # without its IEND chunk
    with pytest.raises(DatasetError, match=r"truncated PNG, no IEND chunk\): .*image\.png"):
        read_image(str(png))
