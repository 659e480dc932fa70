"""Loader profile: it measures the real training pipeline against the decode+warp floor and reports both.

Timings are the printout's business; these tests check what is timed (the pipeline is the training
loader's sample, the floor is the same crop without augmentation or normalisation) and what is
reported, never how fast anything ran.
"""

from __future__ import annotations

import dataclasses

import cv2
import numpy as np
import pytest
import torch

from benchmark.cli import main
from benchmark.commands.profile_data import measured_sides, profile_data
from benchmark.errors import PoseBenchError
from datamodules.coco import load_coco_records
from datamodules.skeletons import COCO
from datamodules.topdown import TopDownDataset
from datamodules.transforms import HRNET_COCO, IMAGENET_MEAN, IMAGENET_STD, TopDownTransform, affine_matrix

SIZE = (256, 192)


@pytest.fixture(scope="module")
def records(coco_fixture_dir):
    return load_coco_records(coco_fixture_dir / "test_coco.json", coco_fixture_dir, SIZE[1] / SIZE[0])


def test_without_augmentation_the_pipeline_normalises_exactly_the_floor_crop(records):
    pipeline, floor = measured_sides(records, COCO, SIZE, augmentation=None)
    for k in (0, len(records) - 1, len(records) + 2):  # records cycle
        record = records[k % len(records)]
        crop = floor(k)
        # The floor by hand: one decode, one warp of the record's box to the input size.
        by_hand = cv2.warpAffine(cv2.imread(record.image), affine_matrix(record.center, record.scale, 0.0, SIZE[::-1]),
                                 SIZE[::-1], flags=cv2.INTER_LINEAR)
        np.testing.assert_array_equal(crop, by_hand)
        rgb = crop[..., ::-1].transpose(2, 0, 1).astype(np.float64) / 255.0
        expected = (rgb - np.asarray(IMAGENET_MEAN)[:, None, None]) / np.asarray(IMAGENET_STD)[:, None, None]
        np.testing.assert_allclose(pipeline(k)["image"].numpy(), expected, rtol=0, atol=1e-6)


def test_the_timed_pipeline_is_the_training_loader(records):
    augmentation = dataclasses.replace(HRNET_COCO, photometric=True)
    pipeline, _ = measured_sides(records, COCO, SIZE, augmentation)
    loader = TopDownDataset(records, TopDownTransform(SIZE, COCO, augmentation, seed=0))
    n = len(records)
    for k in (0, 3, n + 1):  # the second pass over the records is epoch 1: fresh augmentations
        sample, expected = pipeline(k), loader[(k // n, k % n)]
        assert torch.equal(sample["image"], expected["image"])
        np.testing.assert_array_equal(sample["matrix"], expected["matrix"])
    assert not np.array_equal(pipeline(1)["matrix"], pipeline(n + 1)["matrix"])


def test_the_report_has_every_row_and_consistent_numbers(capsys):
    threads = torch.get_num_threads(), cv2.getNumThreads()
    result = profile_data(samples=3, repeats=1, batch_size=2)
    assert {key: result[key] for key in ("data", "split", "input_size", "samples", "repeats", "batch_size")} == {
        "data": "coco (fixtures)", "split": "train", "input_size": [256, 192], "samples": 3, "repeats": 1,
        "batch_size": 2}
    assert result["records"] == 12  # the 14 fixture persons minus the two with no labelled joint
    assert result["floor_ms"] > 0.0 and result["pipeline_ms"] > 0.0
    assert result["ratio"] == result["pipeline_ms"] / result["floor_ms"]
    assert result["target_ratio"] == 1.3 and result["meets_target"] == (result["ratio"] <= 1.3)
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "data profile: coco (fixtures) train, 256x192, 3 samples over 12 records, one core"
    assert lines[1].startswith("  pipeline (TopDownDataset, hrnet_coco augmentation + photometric): ")
    assert lines[2].startswith("  floor (cv2.imread + one warpAffine): ")
    assert lines[3].startswith(f"  ratio {result['ratio']:.3f} (target <= 1.3: ")
    # The one-core limit is undone afterwards.
    assert (torch.get_num_threads(), cv2.getNumThreads()) == threads


def test_bad_counts_are_user_errors():
    with pytest.raises(PoseBenchError, match="samples, repeats and batch_size must be >= 1, got 0, 5, 32"):
        profile_data(samples=0)


def test_cli_runs_the_profile(capsys):
    assert main(["profile", "data", "--samples", "3"]) == 0
    assert "floor (cv2.imread + one warpAffine)" in capsys.readouterr().out
