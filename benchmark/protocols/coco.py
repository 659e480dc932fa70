"""COCO keypoints: rescoring, per-image OKS-NMS, then pycocotools' COCOeval, as HRNet scores COCO.

Per person the box score times the mean of the keypoint scores above 0.2, OKS-NMS at 0.9 per
image with areas ``scale_w * scale_h * 200^2`` of the (enlarged) person box, then COCOeval with
``iouType='keypoints'`` (HRNet ``lib/dataset/coco.py`` ``evaluate``, ``lib/nms/nms.py``;
docs/protocols.md). A method may rank its persons by another instance score (``model.instance_score``:
G-RMI's keypoint mean, mmpose's ``score_mode``; ``metrics.instance_scores``). The results JSON
(``image_id, category_id 1, keypoints (51 floats), score``) is what is scored and what is written.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from benchmark import metrics
from benchmark.metrics import DEFAULT_INSTANCE_SCORE
from benchmark.protocols.base import Column, EvaluationError, Protocol, register_protocol, write_json
from datamodules.records import PIXEL_STD

if TYPE_CHECKING:
    from datamodules.datasets import PoseDataset

OKS_NMS_THRESHOLD = 0.9
RESCORE_THRESHOLD = 0.2


def coco_results(dataset: PoseDataset, keypoints: np.ndarray, scores: np.ndarray,
                 instance_score: str = DEFAULT_INSTANCE_SCORE) -> list[dict[str, Any]]:
    """COCO keypoint results after rescoring and per-image OKS-NMS (HRNet's protocol).

    ``keypoints`` ``(N, K, 2)`` image px and ``scores`` ``(N, K)`` in dataset order; ``instance_score``
    (``metrics.INSTANCE_SCORES``) is the person score that ranks and de-duplicates them. Each result is
    ``{image_id, category_id: 1, keypoints: 3K floats (x, y, score), score}``.
    """
    records = dataset.records
    box_scores = np.array([r.box_score for r in records], dtype=np.float64)
    areas = np.array([r.scale[0] * r.scale[1] for r in records], dtype=np.float64) * PIXEL_STD**2
    image_ids = np.array([r.image_id for r in records], dtype=np.int64)
    rescored = metrics.instance_scores(box_scores, scores, instance_score, threshold=RESCORE_THRESHOLD)
    triples = np.concatenate([keypoints, scores[..., None]], axis=2)
    sigmas = np.asarray(dataset.skeleton.oks_sigmas, dtype=np.float64)
    by_image: dict[int, list[int]] = defaultdict(list)
    for i, image_id in enumerate(image_ids.tolist()):
        by_image[image_id].append(i)
    results = []
    for image_id, members in sorted(by_image.items()):
        rows = np.asarray(members)
        keep = metrics.oks_nms(triples[rows], rescored[rows], areas[rows], OKS_NMS_THRESHOLD, sigmas)
        for i in rows[keep]:
            results.append(
                {
                    "image_id": int(image_id),
                    "category_id": 1,
                    "keypoints": [round(float(v), 4) for v in triples[i].reshape(-1)],
                    "score": float(rescored[i]),
                }
            )
    return results


@register_protocol("coco")
class CocoProtocol(Protocol):
    """pycocotools' ``AP, AP50, AP75, APM, APL, AR, AR50, AR75, ARM, ARL`` (fractions)."""

    title = "COCO"
    primary = tuple(Column(name, name) for name in ("AP", "AP50", "AP75", "APM", "APL", "AR"))
    display_scale = 100.0
    error_label = "1-OKS"
    detections = True
    ranks_persons = True
    augmentation = "hrnet_coco"
    table_order = 1

    def predictions(self, dataset: PoseDataset, keypoints: np.ndarray, scores: np.ndarray,
                    instance_score: str = DEFAULT_INSTANCE_SCORE) -> list[dict[str, Any]]:
        """The COCO results after rescoring by ``instance_score`` and OKS-NMS (``coco_results``)."""
        return coco_results(dataset, keypoints, scores, instance_score)

    def score(self, dataset: PoseDataset, predictions: list[dict[str, Any]]) -> dict[str, float]:
        """COCOeval of the results against ``dataset.coco_annotation``; a debug subset (``data.max_samples``) is
        scored on its own images only, not on every image of the file."""
        if dataset.coco_annotation is None:
            raise EvaluationError(f"{dataset.name} {dataset.split}: COCO evaluation needs coco_annotation, which is "
                                  "None")
        image_ids = sorted({int(r.image_id) for r in dataset.records}) if dataset.subset else None
        return metrics.coco_keypoint_ap(dataset.coco_annotation, predictions, image_ids=image_ids)

    def predictions_file(self, stage: str) -> str:
        """``<stage>_keypoints_results.json``, HRNet's name for the results file."""
        return f"{stage}_keypoints_results.json"

    def write_predictions(self, path: Path, predictions: list[dict[str, Any]]) -> Path:
        """Write the results list as COCO's results JSON."""
        return write_json(path, predictions)

    def person_errors(self, dataset: PoseDataset, keypoints: np.ndarray) -> np.ndarray:
        """``1 - OKS`` against the record's own annotation (its ``area``, the skeleton's sigmas), as pycocotools'
        ``COCOeval.computeOks``; NaN for a record with no labelled joint (detection boxes)."""
        gt, annotated = self.ground_truth(dataset)
        pred, gt, annotated = metrics.check_keypoints(keypoints, gt, annotated)
        areas = np.array([r.area for r in dataset.records], dtype=np.float64)
        return 1.0 - metrics.oks(pred, gt, annotated, areas, dataset.skeleton.oks_sigmas)
