"""MPII: PCKh against gt_valid.mat, as the MPII benchmark and HRNet's ``lib/dataset/mpii.py`` score it.

Head size = 0.6 x the head-box diagonal; ``Mean`` weights the 14 joints other than pelvis and
thorax by their annotated counts; ``Mean@0.1`` is the true 0.10 threshold (``benchmark.metrics``
``mpii_pckh``; docs/protocols.md). The ground truth is gt_valid.mat joined to the records by order
(visible = not ``jnt_missing``), else the records' keypoints, visibility and head boxes:
``mpii_ground_truth`` assembles it, for scoring and for the gallery alike. Predictions are written
as HRNet writes ``pred.mat`` (key ``preds``, ``(N, 16, 2)``, 1-based).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from benchmark import metrics
from benchmark.protocols.base import Column, EvaluationError, Protocol, register_protocol

if TYPE_CHECKING:
    from datamodules.datasets import PoseDataset


def mpii_ground_truth(dataset: PoseDataset) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(gt (N, 16, 2), visible (N, 16), headboxes (N, 2, 2))`` from gt_valid.mat, else from the records.

    gt_valid.mat must have one person per record (the loader, ``datamodules.mpii.attach_ground_truth``,
    has checked that their annotated joints agree). Without it, a record's missing head box is NaN,
    allowed only for a person with nothing annotated; otherwise the EvaluationError names the record.
    """
    name = f"{dataset.name} {dataset.split}"
    truth = dataset.mpii_ground_truth
    n = len(dataset.records)
    if truth is not None:
        if n != len(truth):
            raise EvaluationError(f"{name}: {n} records but gt_valid.mat has {len(truth)} persons; they are joined "
                                  "by order and must match")
        return (np.asarray(truth.joints, np.float64), ~np.asarray(truth.missing, bool),
                np.asarray(truth.headboxes, np.float64))
    gt = np.stack([r.keypoints for r in dataset.records]).astype(np.float64)
    visible = np.stack([r.visible for r in dataset.records]).astype(bool)
    nan_box = np.full((2, 2), np.nan)
    boxes = np.stack([nan_box if r.headbox is None else np.asarray(r.headbox, np.float64) for r in dataset.records])
    lacking = visible.any(axis=1) & np.isnan(boxes).any(axis=(1, 2))
    if lacking.any():
        i = int(np.argmax(lacking))
        raise EvaluationError(f"{name}: record {i} ({dataset.records[i].image}) has annotated joints but no head "
                              "box; PCKh needs head boxes (use the val split, which has gt_valid.mat)")
    return gt, visible, boxes


@register_protocol("mpii")
class MpiiProtocol(Protocol):
    """PCKh@0.5 (``PCKh/Mean``), ``PCKh/Mean@0.1``, ``PCKh/AUC`` and per joint ``PCKh/<joint>``."""

    title = "MPII"
    primary = (Column("PCKh@0.5", "PCKh/Mean"), Column("PCKh@0.1", "PCKh/Mean@0.1"), Column("AUC", "PCKh/AUC"))
    per_joint = tuple(f"PCKh/{column}" for column in (*metrics.MPII_GROUPS, "Mean"))
    error_label = "head-norm err"
    augmentation = "hrnet_mpii"
    table_order = 0

    def score(self, dataset: PoseDataset, predictions: np.ndarray) -> dict[str, float]:
        """The MPII table (``PCKh/Head`` ... ``PCKh/Mean``, ``PCKh/Mean@0.1``), per joint ``PCKh/<joint>`` and
        ``PCKh/AUC`` of keypoints ``(N, 16, 2)``."""
        gt, visible, headboxes = mpii_ground_truth(dataset)
        table = metrics.mpii_pckh(predictions, gt, visible, headboxes)
        per_joint = metrics.pckh_per_joint(predictions, gt, visible, headboxes)
        out = {f"PCKh/{name}": value for name, value in table.items()}
        out.update({f"PCKh/{name}": float(v) for name, v in zip(dataset.skeleton.joints, per_joint, strict=True)})
        out["PCKh/AUC"] = metrics.pckh_auc(predictions, gt, visible, headboxes)
        return out

    def ground_truth(self, dataset: PoseDataset) -> tuple[np.ndarray, np.ndarray]:
        """gt_valid.mat's joints and ``~jnt_missing`` when the split has it, else the records'."""
        gt, visible, _ = mpii_ground_truth(dataset)
        return gt, visible

    def person_errors(self, dataset: PoseDataset, keypoints: np.ndarray) -> np.ndarray:
        """Mean over the annotated joints of ``pixel error / head size`` (PCKh's normalisation)."""
        gt, visible, headboxes = mpii_ground_truth(dataset)
        return metrics.mean_normalised_error(keypoints, gt, visible, metrics.head_size(headboxes))
