"""LSP and LSP-extended: PCK@0.2 with the torso and strict PCP (Yang et al.'s scripts), and beside them PCK at
1/12 of the image height and the joints' visibility classification accuracy (the multi-task regression study).

Torso = left shoulder to right hip of the ground truth (bearpaw/eval_pose ``utils/eval_pck.m``);
strict PCP over the skeleton's ``pcp_limbs`` (``utils/eval_pcp.m``); ``benchmark.metrics`` ``pck``,
``pcp``, ``torso_size``; docs/protocols.md. The multi-task regression study that predicts each joint's
presence with its coordinates (``models/visreg.py``) scores LSP-extended with PCK whose threshold is 1/12 of
the height of the person's image (``metrics.pck_image_height``; LSP images are person-centred, so the image
height stands for the person's size) and with the visibility classification accuracy, present = score > 0.5
against the annotated flag over all joints (``metrics.visibility_accuracy``). For a method without a presence
head the scores are its joint confidences (1 for plain regressors), so that accuracy is what those scores say
when read as presence. Image heights are read from the image files' headers (PIL reads no pixels).
Predictions are written as pred.mat (1-based ``preds``) with the per-joint ``scores`` beside them.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

import numpy as np
import scipy.io
from PIL import Image, UnidentifiedImageError

from benchmark import metrics
from benchmark.files import atomic_write
from benchmark.metrics import DEFAULT_INSTANCE_SCORE
from benchmark.protocols.base import VISIBILITY_ACCURACY, Column, EvaluationError, Protocol, register_protocol
from datamodules.skeletons import LSP

if TYPE_CHECKING:
    from datamodules.datasets import PoseDataset

PCK_THRESHOLD = 0.2
IMAGE_HEIGHT_FRACTION = 1 / 12
PCK_IMAGE = "PCK-img"
"""Metric prefix of PCK at ``IMAGE_HEIGHT_FRACTION`` of the image height: ``PCK-img/<joint>``, ``PCK-img/Mean``."""


class LspPredictions(NamedTuple):
    """What the LSP protocol scores and writes: keypoints ``(N, K, 2)`` image px and scores ``(N, K)``."""

    keypoints: np.ndarray
    scores: np.ndarray


def image_heights(dataset: PoseDataset) -> np.ndarray:
    """``(N,)`` height in pixels of each record's image, from the file header (one read per distinct image)."""
    heights: dict[str, int] = {}
    for record in dataset.records:
        if record.image in heights:
            continue
        try:
            with Image.open(record.image) as image:
                heights[record.image] = image.height
        except FileNotFoundError:
            raise EvaluationError(f"{dataset.name} {dataset.split}: image {record.image} not found; PCK at a fraction "
                                  "of the image height needs the image files") from None
        except UnidentifiedImageError:
            raise EvaluationError(f"{dataset.name} {dataset.split}: {record.image} is not a readable image") from None
    return np.array([heights[r.image] for r in dataset.records], dtype=np.float64)


@register_protocol("lsp")
class LspProtocol(Protocol):
    """PCK@0.2 (torso) per joint and ``Mean`` as ``PCK/<joint>``, strict PCP as ``PCP/<limb>``, PCK at 1/12 of
    the image height as ``PCK-img/<joint>`` and the visibility accuracy as ``Visibility/accuracy``."""

    title = "LSP"
    primary = (Column("PCK@0.2", "PCK/Mean"), Column("PCK@1/12 img", f"{PCK_IMAGE}/Mean"),
               Column("visibility acc.", VISIBILITY_ACCURACY))
    per_joint = tuple(f"PCK/{name}" for name in (*LSP.joints, "Mean"))
    error_label = "torso-norm err"
    augmentation = "hrnet_mpii"
    table_order = 2

    def predictions(self, dataset: PoseDataset, keypoints: np.ndarray, scores: np.ndarray,
                    instance_score: str = DEFAULT_INSTANCE_SCORE) -> LspPredictions:
        """The keypoints with their scores (the visibility accuracy reads the scores; one person per image, so
        ``instance_score`` changes nothing)."""
        return LspPredictions(np.asarray(keypoints, dtype=np.float64), np.asarray(scores, dtype=np.float64))

    def score(self, dataset: PoseDataset, predictions: LspPredictions) -> dict[str, float]:
        """PCK@0.2 per joint and pooled, strict PCP per limb group, PCK@1/12 image height per joint and pooled,
        and the visibility accuracy of ``predictions`` (keypoints ``(N, K, 2)``, scores ``(N, K)``)."""
        keypoints, scores = predictions
        gt, visible = self.ground_truth(dataset)
        skeleton = dataset.skeleton
        torso = metrics.torso_size(gt, skeleton)
        table = metrics.pck(keypoints, gt, visible, torso, PCK_THRESHOLD, joint_names=skeleton.joints)
        out = {f"PCK/{name}": value for name, value in table.items()}
        if skeleton.pcp_limbs:
            limbs = metrics.pcp(keypoints, gt, visible, skeleton.pcp_limbs)
            out.update({f"PCP/{name}": value for name, value in limbs.items()})
        by_height = metrics.pck_image_height(keypoints, gt, visible, image_heights(dataset), IMAGE_HEIGHT_FRACTION,
                                             joint_names=skeleton.joints)
        out.update({f"{PCK_IMAGE}/{name}": value for name, value in by_height.items()})
        out[VISIBILITY_ACCURACY] = metrics.visibility_accuracy(scores, visible)
        return out

    def write_predictions(self, path: Path, predictions: LspPredictions) -> Path:
        """HRNet's pred.mat (``preds`` = keypoints + 1, 1-based) with the ``scores`` ``(N, K)`` beside them."""
        payload = {"preds": predictions.keypoints + 1.0, "scores": predictions.scores}
        return atomic_write(path, lambda f: scipy.io.savemat(f, payload))

    def person_errors(self, dataset: PoseDataset, keypoints: np.ndarray) -> np.ndarray:
        """Mean over the annotated joints of ``pixel error / torso size``; NaN for a zero torso."""
        gt, visible = self.ground_truth(dataset)
        return metrics.mean_normalised_error(keypoints, gt, visible, metrics.torso_size(gt, dataset.skeleton))
