"""LSP: PCK@0.2 with the torso as normaliser and strict PCP, as Yang et al.'s evaluation scripts score LSP.

Torso = left shoulder to right hip of the ground truth (bearpaw/eval_pose ``utils/eval_pck.m``);
strict PCP over the skeleton's ``pcp_limbs`` (``utils/eval_pcp.m``); ``benchmark.metrics`` ``pck``,
``pcp``, ``torso_size``; docs/protocols.md. Predictions are written as pred.mat (1-based).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from benchmark import metrics
from benchmark.protocols.base import Column, Protocol, register_protocol
from datamodules.skeletons import LSP

if TYPE_CHECKING:
    from datamodules.datasets import PoseDataset

PCK_THRESHOLD = 0.2


@register_protocol("lsp")
class LspProtocol(Protocol):
    """PCK@0.2 (torso) per joint and ``Mean`` as ``PCK/<joint>``, strict PCP as ``PCP/<limb>``."""

    title = "LSP"
    primary = (Column("PCK@0.2", "PCK/Mean"),)
    per_joint = tuple(f"PCK/{name}" for name in (*LSP.joints, "Mean"))
    error_label = "torso-norm err"
    augmentation = "hrnet_mpii"
    table_order = 2

    def score(self, dataset: PoseDataset, predictions: np.ndarray) -> dict[str, float]:
        """PCK@0.2 of keypoints ``(N, K, 2)`` per joint and pooled, and strict PCP per limb group."""
        gt, visible = self.ground_truth(dataset)
        skeleton = dataset.skeleton
        torso = metrics.torso_size(gt, skeleton)
        table = metrics.pck(predictions, gt, visible, torso, PCK_THRESHOLD, joint_names=skeleton.joints)
        out = {f"PCK/{name}": value for name, value in table.items()}
        if skeleton.pcp_limbs:
            limbs = metrics.pcp(predictions, gt, visible, skeleton.pcp_limbs)
            out.update({f"PCP/{name}": value for name, value in limbs.items()})
        return out

    def person_errors(self, dataset: PoseDataset, keypoints: np.ndarray) -> np.ndarray:
        """Mean over the annotated joints of ``pixel error / torso size``; NaN for a zero torso."""
        gt, visible = self.ground_truth(dataset)
        return metrics.mean_normalised_error(keypoints, gt, visible, metrics.torso_size(gt, dataset.skeleton))
