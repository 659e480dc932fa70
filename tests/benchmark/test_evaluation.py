"""EvaluationCallback: merging and de-duplication, protocols, prediction files, and DDP == 1 process."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import pytorch_lightning as pl
import scipy.io
import torch
from torch.utils.data import DataLoader, Dataset

from benchmark import metrics
from benchmark.evaluation import (
    EvaluationCallback,
    EvaluationError,
    evaluate_predictions,
    merge_predictions,
)
from benchmark.protocols import get_protocol
from benchmark.protocols.coco import coco_results
from datamodules.coco import load_coco_records
from datamodules.datamodule import EpochSampler
from datamodules.datasets import PoseDataset
from datamodules.records import PersonRecord
from datamodules.skeletons import COCO, MPII

NUM_ODD = 13  # odd: two ranks pad one duplicate in


def _mpii_dataset(n: int, seed: int = 0) -> PoseDataset:
    """``n`` synthetic MPII persons with head boxes of diagonal 10 * sqrt(2) px."""
    rng = np.random.default_rng(seed)
    records = []
    for i in range(n):
        keypoints = rng.uniform(20, 200, size=(16, 2))
        visible = rng.random(16) > 0.1
        corner = rng.uniform(0, 100, size=2)
        records.append(PersonRecord(
            image=f"img{i}.jpg", image_id=i, center=np.array([100.0, 100.0]), scale=np.array([1.0, 1.0]),
            keypoints=keypoints, visible=visible, headbox=np.stack([corner, corner + 10.0]),
        ))
    return PoseDataset("fake", "val", MPII, records, (), Path("."), "mpii")


def _predictions(dataset: PoseDataset, seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Ground truth plus errors from 0 to ~2 head sizes, so PCKh lies strictly between 0 and 100."""
    rng = np.random.default_rng(seed)
    gt = np.stack([r.keypoints for r in dataset.records])
    offsets = rng.normal(0, 6.0, size=gt.shape)
    return gt + offsets, rng.uniform(0.1, 1.0, size=gt.shape[:2])


# --------------------------------------------------------------------------- merge_predictions


def _part(index: list[int], k: int = 2, value: float | None = None) -> dict[str, np.ndarray]:
    idx = np.array(index, dtype=np.int64)
    fill = idx[:, None, None].astype(float) if value is None else np.full((len(idx), 1, 1), value)
    return {"index": idx, "keypoints": np.broadcast_to(fill, (len(idx), k, 2)).copy(),
            "scores": np.ones((len(idx), k))}


def test_merge_drops_padding_and_restores_order():
    # DistributedSampler-style padding of 5 samples over 2 ranks: rank 0 [0, 2, 4], rank 1 [1, 3, 0].
    merged = merge_predictions([_part([0, 2]), _part([4]), _part([1, 3]), _part([0], value=99.0)], 5)
    assert merged["index"].tolist() == [0, 1, 2, 3, 4]
    assert merged["keypoints"][:, 0, 0].tolist() == [0.0, 1.0, 2.0, 3.0, 4.0]  # the first copy of 0 is kept


def test_merge_names_missing_and_outside_indices():
    missing = r"saw 3 distinct samples but the dataset has 5 \(missing indices \[3, 4\]"
    with pytest.raises(EvaluationError, match=missing):
        merge_predictions([_part([0, 1, 2])], 5)
    with pytest.raises(EvaluationError, match=r"indices \[7\] lie outside the dataset of 5"):
        merge_predictions([_part([0, 1, 2, 3, 4, 7])], 5)
    with pytest.raises(EvaluationError, match="no predictions"):
        merge_predictions([], 5)


# --------------------------------------------------------------------------- protocols


def test_mpii_protocol_matches_metrics_and_writes_one_based_mat(tmp_path):
    dataset = _mpii_dataset(9)
    keypoints, scores = _predictions(dataset)
    merged = {"index": np.arange(9), "keypoints": keypoints, "scores": scores}
    result = evaluate_predictions(dataset, merged, tmp_path, "val")
    gt = np.stack([r.keypoints for r in dataset.records])
    visible = np.stack([r.visible for r in dataset.records])
    boxes = np.stack([r.headbox for r in dataset.records])
    assert result["PCKh/Mean"] == metrics.mpii_pckh(keypoints, gt, visible, boxes)["Mean"]
    assert 0.0 < result["PCKh/Mean"] < 100.0
    per_joint = metrics.pckh_per_joint(keypoints, gt, visible, boxes)
    assert result["PCKh/r_ankle"] == per_joint[0] and result["PCKh/l_wrist"] == per_joint[15]
    saved = scipy.io.loadmat(tmp_path / "val_predictions.mat")["preds"]
    assert saved.shape == (9, 16, 2)
    np.testing.assert_array_equal(saved, keypoints + 1.0)


def test_coco_perfect_predictions_score_ap_one(coco_fixture_dir, tmp_path):
    records = load_coco_records(coco_fixture_dir / "test_coco.json", coco_fixture_dir, aspect_ratio=0.75)
    dataset = PoseDataset("coco", "val", COCO, records, (), coco_fixture_dir, "coco",
                          coco_annotation=coco_fixture_dir / "test_coco.json")
    keypoints = np.stack([r.keypoints for r in records])
    merged = {"index": np.arange(len(records)), "keypoints": keypoints, "scores": np.ones(keypoints.shape[:2])}
    result = evaluate_predictions(dataset, merged, tmp_path, "test")
    assert result["AP"] == 1.0 and result["AR"] == 1.0
    written = json.loads((tmp_path / "test_keypoints_results.json").read_text())
    assert len(written) == len(records)
    assert {"image_id", "category_id", "keypoints", "score"} <= set(written[0])
    assert len(written[0]["keypoints"]) == 51


def test_a_coco_debug_subset_is_scored_on_its_own_images(coco_fixture_dir):
    from pycocotools.coco import COCO as CocoApi
    from pycocotools.cocoeval import COCOeval

    annotation = coco_fixture_dir / "test_coco.json"
    records = load_coco_records(annotation, coco_fixture_dir, aspect_ratio=0.75)
    full = PoseDataset("coco", "val", COCO, records, (), coco_fixture_dir, "coco", coco_annotation=annotation)
    first_image = [r for r in records if r.image_id == records[0].image_id]
    subset = full.head(len(first_image))
    assert subset.subset and not full.subset and len({r.image_id for r in records}) > 1
    keypoints = np.stack([r.keypoints for r in subset.records])
    merged = {"index": np.arange(len(subset)), "keypoints": keypoints, "scores": np.ones(keypoints.shape[:2])}
    # Perfect predictions on the subset: AP 1 on its image, not diluted by the other images' persons.
    assert evaluate_predictions(subset, merged)["AR"] == 1.0
    # The same as pycocotools with imgIds set by hand.
    results = coco_results(subset, keypoints + 3.0, np.ones(keypoints.shape[:2]))
    gt = CocoApi(str(annotation))
    evaluator = COCOeval(gt, gt.loadRes([dict(r) for r in results]), iouType="keypoints")
    evaluator.params.imgIds = [records[0].image_id]
    evaluator.evaluate(), evaluator.accumulate(), evaluator.summarize()
    shifted = {**merged, "keypoints": keypoints + 3.0}
    assert list(evaluate_predictions(subset, shifted).values()) == [float(v) for v in evaluator.stats]
    assert evaluate_predictions(full.head(len(records)), {
        "index": np.arange(len(records)), "keypoints": np.stack([r.keypoints for r in records]),
        "scores": np.ones((len(records), 17))})["AR"] == 1.0


def test_coco_rescoring_and_oks_nms_drop_a_duplicate_pose(coco_fixture_dir):
    records = load_coco_records(coco_fixture_dir / "test_coco.json", coco_fixture_dir, aspect_ratio=0.75)
    twin = dataclasses.replace(records[0], box_score=0.5)  # same pose, same image, lower box score
    dataset = PoseDataset("coco", "val", COCO, [records[0], twin], (), coco_fixture_dir, "coco")
    keypoints = np.stack([records[0].keypoints] * 2)
    scores = np.full((2, 17), 0.1)
    scores[:, :4] = 0.8  # only joints above 0.2 count: mean 0.8
    results = coco_results(dataset, keypoints, scores)
    assert len(results) == 1  # OKS 1.0 > 0.9: the lower-scored twin is suppressed
    assert results[0]["score"] == float(np.float32(1.0) * np.float32(0.8))  # float32, as the reference sums


def test_wrong_joint_count_is_a_clear_error():
    dataset = _mpii_dataset(3)
    merged = {"index": np.arange(3), "keypoints": np.zeros((3, 17, 2)), "scores": np.zeros((3, 17))}
    with pytest.raises(EvaluationError, match=r"fake has 16 joints"):
        evaluate_predictions(dataset, merged)


# --------------------------------------------------------------------------- the callback under DDP


class _IndexDataset(Dataset):
    def __init__(self, n: int) -> None:
        self.n = n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, item):
        _, index = item
        return {"index": torch.tensor(index, dtype=torch.int64)}


class _FakeEstimator(pl.LightningModule):
    """Emits known predictions for the sample indices it is given, sharded like PoseDataModule."""

    def __init__(self, keypoints: np.ndarray, scores: np.ndarray) -> None:
        super().__init__()
        self.keypoints = torch.from_numpy(keypoints).float()
        self.scores = torch.from_numpy(scores).float()
        self.weight = torch.nn.Parameter(torch.zeros(1))

    def validation_step(self, batch, batch_idx):
        index = batch["index"]
        return {"index": index, "keypoints": self.keypoints[index], "scores": self.scores[index]}

    def val_dataloader(self):
        n = self.keypoints.shape[0]
        sampler = EpochSampler(n, shuffle=False, seed=0, num_replicas=self.trainer.world_size,
                               rank=self.trainer.global_rank)
        return DataLoader(_IndexDataset(n), batch_size=3, sampler=sampler)


def _validate(devices: int, out: Path) -> dict[str, float]:
    dataset = _mpii_dataset(NUM_ODD)
    keypoints, scores = _predictions(dataset)
    trainer = pl.Trainer(
        accelerator="cpu", devices=devices, strategy="ddp_spawn" if devices > 1 else "auto",
        callbacks=[EvaluationCallback(dataset, out)], logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, use_distributed_sampler=False,
    )
    (result,) = trainer.validate(_FakeEstimator(keypoints, scores))
    return result


def _validate_dataset(dataset: PoseDataset) -> None:
    keypoints, scores = _predictions(dataset)
    trainer = pl.Trainer(accelerator="cpu", devices=1, callbacks=[EvaluationCallback(dataset)], logger=False,
                         enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                         use_distributed_sampler=False)
    trainer.validate(_FakeEstimator(keypoints, scores))


def test_the_callback_ranks_coco_persons_by_the_runs_instance_score(coco_fixture_dir, tmp_path):
    records = load_coco_records(coco_fixture_dir / "test_coco.json", coco_fixture_dir, aspect_ratio=0.75)
    dataset = PoseDataset("coco", "val", COCO, records, (), coco_fixture_dir, "coco",
                          coco_annotation=coco_fixture_dir / "test_coco.json")
    rng = np.random.default_rng(4)
    keypoints = np.stack([r.keypoints for r in records]) + rng.normal(0.0, 3.0, (len(records), 17, 2))
    scores = rng.uniform(0.0, 1.0, (len(records), 17)).astype(np.float32)
    written = {}
    for mode in ("bbox_keypoint", "keypoint"):
        callback = EvaluationCallback(dataset, tmp_path / mode, instance_score=mode)  # the run's model.instance_score
        trainer = pl.Trainer(accelerator="cpu", devices=1, callbacks=[callback], logger=False,
                             enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                             use_distributed_sampler=False)
        trainer.validate(_FakeEstimator(keypoints, scores))
        results = json.loads((tmp_path / mode / "val_keypoints_results.json").read_text())
        written[mode] = sorted((r["image_id"], r["score"]) for r in results)
    # The fixture's persons are far apart, so OKS-NMS keeps every one of them.
    box = np.array([r.box_score for r in records])
    expected = {"bbox_keypoint": metrics.rescore(box, scores), "keypoint": scores.mean(axis=1, dtype=np.float32)}
    for mode, values in expected.items():
        wanted = sorted((r.image_id, float(v)) for r, v in zip(records, values, strict=True))
        assert [i for i, _ in written[mode]] == [i for i, _ in wanted], mode
        np.testing.assert_allclose([v for _, v in written[mode]], [v for _, v in wanted], rtol=0, atol=1e-7)
    assert written["keypoint"] != written["bbox_keypoint"]
    with pytest.raises(EvaluationError, match=r"model.instance_score 'oks' is not a score mode; valid: bbox_keypoint, "
                                              r"keypoint, bbox"):
        EvaluationCallback(dataset, instance_score="oks")


def test_a_user_error_names_the_stage_and_a_bug_keeps_its_traceback(monkeypatch):
    dataset = _mpii_dataset(4)
    dataset.records[2] = dataclasses.replace(dataset.records[2], headbox=None)
    with pytest.raises(EvaluationError, match=r"^val evaluation of fake \(val\) failed: EvaluationError: fake val: "
                                              r"record 2 \(img2\.jpg\) has annotated joints but no head box"):
        _validate_dataset(dataset)

    def broken(self, dataset, predictions):
        raise ZeroDivisionError("a bug in a protocol")

    monkeypatch.setattr(type(get_protocol("mpii")), "score", broken)
    with pytest.raises(ZeroDivisionError, match="a bug in a protocol"):  # not turned into a one-line message
        _validate_dataset(_mpii_dataset(4))


@pytest.mark.slow
def test_two_ddp_processes_give_exactly_the_one_process_metrics(tmp_path):
    single = _validate(1, tmp_path / "one")
    double = _validate(2, tmp_path / "two")
    assert set(single) == set(double) and "val/PCKh/Mean" in single and "val/PCKh/l_wrist" in single
    assert single == double
    assert 0.0 < single["val/PCKh/Mean"] < 100.0
    one = scipy.io.loadmat(tmp_path / "one" / "val_predictions.mat")["preds"]
    two = scipy.io.loadmat(tmp_path / "two" / "val_predictions.mat")["preds"]
    assert one.shape == (NUM_ODD, 16, 2)
    np.testing.assert_array_equal(one, two)
