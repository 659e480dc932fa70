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
from benchmark.commands.profile_data import measured_sides, profile_data, reduced_decode_difference
from benchmark.errors import PoseBenchError
from datamodules.coco import load_coco_records
from datamodules.mpii import load_mpii_annotations
from datamodules.skeletons import COCO, MPII
from datamodules.topdown import TopDownDataset
from datamodules.transforms import HRNET_COCO, TopDownTransform, affine_matrix, reduction_for

SIZE = (256, 192)


@pytest.fixture(scope="module")
def records(coco_fixture_dir):
    return load_coco_records(coco_fixture_dir / "test_coco.json", coco_fixture_dir, SIZE[1] / SIZE[0])


def test_without_augmentation_the_pipeline_holds_exactly_the_floor_crop(records):
    pipeline, _, floor = measured_sides(records, COCO, SIZE, augmentation=None)
    for k in (0, len(records) - 1, len(records) + 2):  # records cycle
        record = records[k % len(records)]
        crop = floor(k)
        # The floor by hand: one decode, one warp of the record's box to the input size.
        by_hand = cv2.warpAffine(cv2.imread(record.image), affine_matrix(record.center, record.scale, 0.0, SIZE[::-1]),
                                 SIZE[::-1], flags=cv2.INTER_LINEAR)
        np.testing.assert_array_equal(crop, by_hand)
        # The pipeline hands over the uint8 RGB crop (normalised later, on the device).
        np.testing.assert_array_equal(pipeline(k)["image"].numpy(), crop[..., ::-1].transpose(2, 0, 1))


def test_the_timed_pipeline_is_the_training_loader(records):
    augmentation = dataclasses.replace(HRNET_COCO, photometric=True)
    pipeline, reduced, _ = measured_sides(records, COCO, SIZE, augmentation)
    transform = TopDownTransform(SIZE, COCO, augmentation, seed=0)
    loader, reduced_loader = TopDownDataset(records, transform), TopDownDataset(records, transform, reduced_decode=True)
    n = len(records)
    for k in (0, 3, n + 1):  # the second pass over the records is epoch 1: fresh augmentations
        for side, dataset in ((pipeline, loader), (reduced, reduced_loader)):
            sample, expected = side(k), dataset[(k // n, k % n)]
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
    assert result["reduced_ms"] > 0.0
    assert result["ratio"] == result["pipeline_ms"] / result["floor_ms"]
    assert result["reduced_ratio"] == result["reduced_ms"] / result["floor_ms"]
    assert result["target_ratio"] == 1.3 and result["meets_target"] == (result["ratio"] <= 1.3)
    assert result["reduced_target_ratio"] == 0.8
    assert result["reduced_meets_target"] == (result["reduced_ratio"] <= 0.8)
    assert 0.0 <= result["reduced_share"] <= 1.0 and result["mean_diff"] <= result["p99_diff"] + 1e-9
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "data profile: coco (fixtures) train, 256x192, 3 samples over 12 records, one core"
    assert lines[1].startswith("  pipeline (TopDownDataset, hrnet_coco augmentation + photometric): ")
    assert f"{result['ratio']:.3f}x the floor (target <= 1.3: " in lines[1]
    assert lines[2].startswith("  pipeline with reduced decode: ")
    assert f"{result['reduced_ratio']:.3f}x the floor (target <= 0.8: " in lines[2]
    assert lines[3].startswith("  floor (cv2.imread + one warpAffine): ")
    assert lines[4].startswith("  reduced decode accuracy: ")
    # The one-core limit is undone afterwards.
    assert (torch.get_num_threads(), cv2.getNumThreads()) == threads


def test_bad_counts_are_user_errors():
    with pytest.raises(PoseBenchError, match="samples, repeats and batch_size must be >= 1, got 0, 5, 32"):
        profile_data(samples=0)


def test_the_accuracy_check_measures_only_the_reduced_samples_by_hand(mpii_fixture_dir):
    records = load_mpii_annotations(mpii_fixture_dir / "test_mpii.json", mpii_fixture_dir)
    result = reduced_decode_difference(records, MPII, (256, 256), None, len(records))
    transform = TopDownTransform((256, 256), MPII)
    full, reduced = TopDownDataset(records, transform), TopDownDataset(records, transform, reduced_decode=True)
    differing = [(full[i]["image"].int() - reduced[i]["image"].int()).abs().flatten() for i in range(len(records))
                 if reduction_for(full[i]["matrix"]) > 1]
    pixels = torch.cat(differing).double()
    assert result["reduced_share"] == len(differing) / len(records) > 0
    assert result["mean_diff"] == pytest.approx(float(pixels.mean()), rel=1e-12)
    assert result["p99_diff"] == pytest.approx(float(np.percentile(pixels.numpy(), 99)), rel=1e-12)


def test_cli_runs_the_profile(capsys):
    assert main(["profile", "data", "--data", "coco", "mpii", "--samples", "3"]) == 0
    out = capsys.readouterr().out
    assert "data profile: coco (fixtures) train, 256x192" in out
    assert "data profile: mpii (fixtures) train, 256x256" in out
    assert out.count("floor (cv2.imread + one warpAffine)") == 2
