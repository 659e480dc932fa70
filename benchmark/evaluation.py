"""The evaluation callback every method shares: gather predictions, de-duplicate, score, log, write.

Validation and test steps return ``{"index": (B,), "keypoints": (B, K, 2) image px, "scores":
(B, K)}`` (models/base.py). ``EvaluationCallback`` keeps them on every rank, gathers them over
processes with ``torch.distributed.all_gather_object`` (gloo and nccl), drops the repeats that
the distributed sampler pads in (``datamodules.datamodule.EpochSampler`` pads like
``torch.utils.data.DistributedSampler``: the first indices again), checks that every dataset
sample was seen exactly once, restores dataset order and applies the dataset's protocol:

- ``mpii``: PCKh against ``gt_valid.mat`` (``PoseDataset.mpii_ground_truth``; visible = not
  ``jnt_missing``), head size 0.6 x head-box diagonal (``benchmark.metrics.mpii_pckh``, HRNet
  ``lib/dataset/mpii.py`` ``evaluate``). The predictions are written as HRNet writes
  ``pred.mat``: key ``preds``, ``(N, 16, 2)``, 1-based MATLAB pixels (``preds + 1.0``), which the
  MPII evaluator and HRNet's ``evaluate`` read back.
- ``coco``: per person the box score times the mean of the keypoint scores above 0.2, OKS-NMS
  at 0.9 per image with areas ``scale_w * scale_h * 200^2`` of the (enlarged) person box, then
  pycocotools COCOeval (HRNet ``lib/dataset/coco.py`` ``evaluate``, ``lib/nms/nms.py``); the
  results JSON (``image_id, category_id 1, keypoints (51 floats), score``) is written.
- ``lsp``: PCK@0.2 with the torso = left shoulder to right hip, and strict PCP (Yang et al.'s
  ``eval_pck.m`` / ``eval_pcp.m``, see benchmark/metrics.py).

SynthPose data carries the protocol of the format it is read in (MPII or COCO). Every metric
is logged under ``val/`` or ``test/`` (per joint too); files are written atomically
(temp file + rename) by rank 0.

Every decoding protocol in one pass: when test steps also return ``protocol_keypoints``
``(B, P, K, 2)`` and ``protocol_scores`` ``(B, P, K)`` (models/base.py, ``all_protocols``), the
same forward passes are scored under each ``(decoder, flip test)`` pair of the model's
``evaluation_protocols``; ``protocol_results[stage]`` lists ``{decoder, flip_test, metrics}`` for
all of them, and each one's ranking metric is logged as ``test/protocol/<decoder>[+flip]/<metric>``.
The headline metrics stay those of the configured protocol (the recipe's).
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import scipy.io
import torch

from benchmark import metrics
from benchmark.files import atomic_write, atomic_write_text
from datamodules.datasets import PoseDataset
from datamodules.records import PIXEL_STD

STEP_KEYS = ("index", "keypoints", "scores")
PROTOCOL_KEYS = ("protocol_keypoints", "protocol_scores")
"""Optional step outputs: every (decoder, flip test) protocol's keypoints ``(B, P, K, 2)`` and scores ``(B, P, K)``."""
PRIMARY_METRICS: dict[str, str] = {"mpii": "PCKh/Mean", "coco": "AP", "lsp": "PCK/Mean"}
"""The metric each protocol ranks by (checkpoint selection, leaderboard), without the stage prefix."""

COCO_OKS_NMS_THRESHOLD = 0.9
COCO_RESCORE_THRESHOLD = 0.2
LSP_PCK_THRESHOLD = 0.2


class EvaluationError(RuntimeError):
    """The gathered predictions do not cover the dataset exactly once, or a step output is malformed."""


# ---------------------------------------------------------------------------- merging


def to_numpy_outputs(outputs: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """A step output on the CPU as numpy: ``index`` int64 ``(B,)``, ``keypoints`` float64 ``(B, K, 2)``,
    ``scores`` float64 ``(B, K)``, and the ``PROTOCOL_KEYS`` when present. Missing keys raise
    ``EvaluationError``."""
    if not isinstance(outputs, Mapping) or any(key not in outputs for key in STEP_KEYS):
        got = sorted(outputs) if isinstance(outputs, Mapping) else type(outputs).__name__
        raise EvaluationError(f"validation/test steps must return a dict with keys {STEP_KEYS}; got {got}")
    out = {}
    for key in STEP_KEYS + tuple(key for key in PROTOCOL_KEYS if key in outputs):
        value = outputs[key]
        if isinstance(value, torch.Tensor):
            value = value.detach().to("cpu", torch.float64 if key != "index" else torch.int64).numpy()
        out[key] = np.asarray(value, dtype=np.int64 if key == "index" else np.float64)
    return out


def merge_predictions(parts: list[dict[str, np.ndarray]], num_samples: int) -> dict[str, np.ndarray]:
    """Concatenate step outputs from all ranks, keep one copy per sample index, sort by index.

    ``parts``: dicts as ``to_numpy_outputs`` gives; ``num_samples``: the dataset size. Returns
    ``index`` ``(N,)`` = ``0 .. N-1``, ``keypoints`` ``(N, K, 2)``, ``scores`` ``(N, K)`` (and the
    ``PROTOCOL_KEYS`` when every part has them). The sampler's padding repeats samples that were
    already predicted, so the first copy of each index is kept. Missing or out-of-range indices
    raise ``EvaluationError`` naming them.
    """
    if not parts:
        raise EvaluationError(f"no predictions were collected for a dataset of {num_samples} samples")
    index = np.concatenate([p["index"].reshape(-1) for p in parts])
    keys = ("keypoints", "scores") + tuple(key for key in PROTOCOL_KEYS if all(key in p for p in parts))
    arrays = {key: np.concatenate([p[key] for p in parts]) for key in keys}
    if any(array.shape[0] != index.shape[0] for array in arrays.values()):
        lengths = ", ".join(f"{array.shape[0]} {key} rows" for key, array in arrays.items())
        raise EvaluationError(f"step outputs disagree in length: {index.shape[0]} indices, {lengths}")
    unique, first = np.unique(index, return_index=True)
    outside = unique[(unique < 0) | (unique >= num_samples)]
    if outside.size:
        raise EvaluationError(f"sample indices {outside[:10].tolist()} lie outside the dataset of {num_samples}")
    if unique.size != num_samples:
        missing = np.setdiff1d(np.arange(num_samples), unique)
        raise EvaluationError(
            f"evaluation saw {unique.size} distinct samples but the dataset has {num_samples} "
            f"(missing indices {missing[:10].tolist()}{' ...' if missing.size > 10 else ''}); "
            "evaluate on the whole split (no limit_val_batches / limit_test_batches below 1.0)"
        )
    return {"index": unique, **{key: array[first] for key, array in arrays.items()}}


def gather_parts(parts: list[dict[str, np.ndarray]]) -> list[dict[str, np.ndarray]]:
    """Every rank's ``parts`` on every rank (``all_gather_object``); the input when not distributed."""
    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return parts
    world = torch.distributed.get_world_size()
    if world == 1:
        return parts
    gathered: list[list[dict[str, np.ndarray]] | None] = [None] * world
    torch.distributed.all_gather_object(gathered, parts)
    return [part for rank_parts in gathered for part in (rank_parts or [])]


def _broadcast(value: Any) -> Any:
    """Rank 0's ``value`` on every rank."""
    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return value
    box = [value]
    torch.distributed.broadcast_object_list(box, src=0)
    return box[0]


# ---------------------------------------------------------------------------- protocols


def _mpii_ground_truth(dataset: PoseDataset) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(gt (N,16,2), visible (N,16), headboxes (N,2,2))`` from gt_valid.mat, else from the records."""
    truth = dataset.mpii_ground_truth
    if truth is not None:
        n = len(dataset)
        if n == 0 or n != len(truth):
            raise EvaluationError(
                f"{dataset.name} {dataset.split}: {n} records but gt_valid.mat has {len(truth)} persons"
            )
        # gt_valid.mat is joined to the records by order; the joints must agree.
        records_gt = np.stack([r.keypoints for r in dataset.records])
        annotated = ~truth.missing & np.stack([r.visible for r in dataset.records])
        if (np.abs(records_gt - truth.joints).max(axis=-1) > 1e-3)[annotated].any():
            raise EvaluationError(
                f"{dataset.name} {dataset.split}: gt_valid.mat does not match the {n} records of the split by order"
            )
        return truth.joints, ~truth.missing, truth.headboxes
    if any(r.headbox is None for r in dataset.records):
        raise EvaluationError(
            f"{dataset.name} {dataset.split}: PCKh needs head boxes; this split has neither gt_valid.mat nor "
            "head boxes on its records (evaluate on the val split)"
        )
    gt = np.stack([r.keypoints for r in dataset.records])
    visible = np.stack([r.visible for r in dataset.records])
    headboxes = np.stack([r.headbox for r in dataset.records])
    return gt, visible, headboxes


def evaluate_mpii(dataset: PoseDataset, keypoints: np.ndarray) -> dict[str, float]:
    """MPII PCKh of ``keypoints`` ``(N, 16, 2)`` (0-based image px, dataset order): the table
    (``PCKh/Head`` ... ``PCKh/Mean``, ``PCKh/Mean@0.1``), ``PCKh/AUC`` and per joint ``PCKh/<joint>``."""
    gt, visible, headboxes = _mpii_ground_truth(dataset)
    table = metrics.mpii_pckh(keypoints, gt, visible, headboxes)
    per_joint = metrics.pckh_per_joint(keypoints, gt, visible, headboxes)
    out = {f"PCKh/{name}": value for name, value in table.items()}
    out.update({f"PCKh/{name}": float(v) for name, v in zip(dataset.skeleton.joints, per_joint)})
    out["PCKh/AUC"] = metrics.pckh_auc(keypoints, gt, visible, headboxes)
    return out


def coco_results(dataset: PoseDataset, keypoints: np.ndarray, scores: np.ndarray) -> list[dict[str, Any]]:
    """COCO keypoint results after rescoring and per-image OKS-NMS (HRNet's protocol).

    ``keypoints`` ``(N, K, 2)`` image px and ``scores`` ``(N, K)`` in dataset order. Each
    result is ``{image_id, category_id: 1, keypoints: 3K floats (x, y, score), score}``.
    """
    records = dataset.records
    box_scores = np.array([r.box_score for r in records], dtype=np.float64)
    areas = np.array([r.scale[0] * r.scale[1] for r in records], dtype=np.float64) * PIXEL_STD**2
    image_ids = np.array([r.image_id for r in records], dtype=np.int64)
    rescored = metrics.rescore(box_scores, scores, threshold=COCO_RESCORE_THRESHOLD)
    triples = np.concatenate([keypoints, scores[..., None]], axis=2)
    sigmas = np.asarray(dataset.skeleton.oks_sigmas, dtype=np.float64)
    by_image: dict[int, list[int]] = defaultdict(list)
    for i, image_id in enumerate(image_ids.tolist()):
        by_image[image_id].append(i)
    results = []
    for image_id, members in sorted(by_image.items()):
        rows = np.asarray(members)
        keep = metrics.oks_nms(triples[rows], rescored[rows], areas[rows], COCO_OKS_NMS_THRESHOLD, sigmas)
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


def evaluate_coco(dataset: PoseDataset, results: list[dict[str, Any]]) -> dict[str, float]:
    """pycocotools AP/AR of ``results`` (``coco_results``) against ``dataset.coco_annotation``; a debug
    subset (``data.max_samples``) is scored on its own images only, not on every image of the file."""
    if dataset.coco_annotation is None:
        raise EvaluationError(f"{dataset.name} {dataset.split}: COCO evaluation needs coco_annotation, which is None")
    image_ids = sorted({int(r.image_id) for r in dataset.records}) if dataset.subset else None
    return metrics.coco_keypoint_ap(dataset.coco_annotation, results, image_ids=image_ids)


def evaluate_lsp(dataset: PoseDataset, keypoints: np.ndarray) -> dict[str, float]:
    """PCK@0.2 (torso) per joint and ``Mean`` as ``PCK/<joint>``, and strict PCP as ``PCP/<limb>``."""
    gt = np.stack([r.keypoints for r in dataset.records])
    visible = np.stack([r.visible for r in dataset.records])
    skeleton = dataset.skeleton
    torso = metrics.torso_size(gt, skeleton)
    table = metrics.pck(keypoints, gt, visible, torso, LSP_PCK_THRESHOLD, joint_names=skeleton.joints)
    out = {f"PCK/{name}": value for name, value in table.items()}
    if skeleton.pcp_limbs:
        limbs = metrics.pcp(keypoints, gt, visible, skeleton.pcp_limbs)
        out.update({f"PCP/{name}": value for name, value in limbs.items()})
    return out


# ---------------------------------------------------------------------------- writing


def write_mpii_predictions(path: Path, keypoints: np.ndarray) -> Path:
    """Write ``keypoints`` ``(N, K, 2)`` (0-based px) as ``{"preds": keypoints + 1}``, HRNet's pred.mat layout."""
    atomic_write(path, lambda f: scipy.io.savemat(f, {"preds": np.asarray(keypoints, dtype=np.float64) + 1.0}))
    return path


def write_json(path: Path, payload: Any) -> Path:
    """Write ``payload`` as JSON atomically."""
    return atomic_write_text(path, json.dumps(payload))


# ---------------------------------------------------------------------------- callback


def evaluate_predictions(
    dataset: PoseDataset, merged: Mapping[str, np.ndarray], output_dir: Path | None = None, stage: str = "val"
) -> dict[str, float]:
    """Apply ``dataset.protocol`` to merged predictions (dataset order); write them under ``output_dir``.

    Returns the metrics without a stage prefix. Files: ``{stage}_predictions.mat`` (MPII / LSP,
    1-based) or ``{stage}_keypoints_results.json`` (COCO results format).
    """
    keypoints, scores = merged["keypoints"], merged["scores"]
    expected = dataset.skeleton.num_joints
    if keypoints.shape[1:] != (expected, 2):
        raise EvaluationError(
            f"predictions have shape {keypoints.shape} but {dataset.name} has {expected} joints: (N, {expected}, 2)"
        )
    if dataset.protocol == "coco":
        results = coco_results(dataset, keypoints, scores)
        if output_dir is not None:
            write_json(Path(output_dir) / f"{stage}_keypoints_results.json", results)
        return evaluate_coco(dataset, results)
    if output_dir is not None:
        write_mpii_predictions(Path(output_dir) / f"{stage}_predictions.mat", keypoints)
    if dataset.protocol == "mpii":
        return evaluate_mpii(dataset, keypoints)
    if dataset.protocol == "lsp":
        return evaluate_lsp(dataset, keypoints)
    raise EvaluationError(f"unknown evaluation protocol {dataset.protocol!r} of dataset {dataset.name}")


def protocol_label(decoder: str, flip_test: bool) -> str:
    """``dark+flip`` / ``dark``: a protocol's name in logged metric keys."""
    return f"{decoder}+flip" if flip_test else decoder


def evaluate_protocols(
    dataset: PoseDataset,
    merged: Mapping[str, np.ndarray],
    protocols: Sequence[tuple[str, bool]],
    primary: tuple[str, bool],
    primary_metrics: Mapping[str, float],
) -> list[dict[str, Any]]:
    """``[{decoder, flip_test, metrics}]``: ``merged``'s ``protocol_keypoints`` ``(N, P, K, 2)`` and
    ``protocol_scores`` ``(N, P, K)`` scored under the dataset's protocol, one entry per
    ``protocols[p]``; the ``primary`` one reuses ``primary_metrics`` (the same predictions)."""
    keypoints, scores = merged["protocol_keypoints"], merged["protocol_scores"]
    if keypoints.shape[1] != len(protocols) or scores.shape[1] != len(protocols):
        raise EvaluationError(
            f"test steps returned {keypoints.shape[1]} protocol predictions but the model lists "
            f"{len(protocols)} evaluation protocols {list(protocols)}"
        )
    entries = []
    for p, (decoder, flip) in enumerate(protocols):
        if (decoder, flip) == tuple(primary):
            table = dict(primary_metrics)
        else:
            table = evaluate_predictions(dataset, {"keypoints": keypoints[:, p], "scores": scores[:, p]})
        entries.append({"decoder": decoder, "flip_test": bool(flip), "metrics": table})
    return entries


class EvaluationCallback(pl.Callback):
    """Scores validation and test epochs with the dataset's protocol and logs ``val/...``, ``test/...``.

    ``dataset`` is the evaluated ``PoseDataset`` (``test_dataset`` for ``trainer.test`` when it
    differs); None takes ``trainer.datamodule.val_dataset`` / ``test_dataset``. ``output_dir``
    receives the prediction files (rank 0). After an epoch, ``results[stage]`` holds the metrics
    as float64 (no prefix), ``predictions[stage]`` the merged predictions and, when the steps
    returned every protocol's predictions, ``protocol_results[stage]`` the per-protocol metrics.
    """

    def __init__(
        self,
        dataset: PoseDataset | None = None,
        output_dir: Path | str | None = None,
        test_dataset: PoseDataset | None = None,
    ) -> None:
        self.datasets = {"val": dataset, "test": test_dataset or dataset}
        self.output_dir = Path(output_dir) if output_dir is not None else None
        self.results: dict[str, dict[str, float]] = {}
        self.predictions: dict[str, dict[str, np.ndarray]] = {}
        self.protocol_results: dict[str, list[dict[str, Any]]] = {}
        self._parts: list[dict[str, np.ndarray]] = []

    def primary_metric(self, stage: str = "val") -> str:
        """The logged name of the metric checkpoints rank by, e.g. ``val/PCKh/Mean``."""
        dataset = self.datasets[stage]
        if dataset is None:
            raise EvaluationError("primary_metric needs the dataset: pass it to EvaluationCallback")
        return f"{stage}/{PRIMARY_METRICS[dataset.protocol]}"

    def _dataset(self, trainer: pl.Trainer, stage: str) -> PoseDataset:
        dataset = self.datasets[stage]
        if dataset is None:
            datamodule = trainer.datamodule
            if datamodule is None:
                raise EvaluationError(
                    "EvaluationCallback needs a dataset, or a trainer datamodule with val/test datasets"
                )
            dataset = datamodule.val_dataset if stage == "val" else datamodule.test_dataset
        return dataset

    # --- collection
    def _reset(self, *_: Any) -> None:
        self._parts = []

    on_validation_epoch_start = _reset
    on_test_epoch_start = _reset

    def _collect(self, outputs: Any) -> None:
        self._parts.append(to_numpy_outputs(outputs))

    def on_validation_batch_end(  # noqa: D102
        self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0
    ) -> None:
        if not trainer.sanity_checking:
            self._collect(outputs)

    def on_test_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:  # noqa: D102
        self._collect(outputs)

    # --- scoring
    def _finish(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        dataset = self._dataset(trainer, stage)
        parts = gather_parts(self._parts)
        self._parts = []
        outcome: tuple[str, Any] = ("ok", None)
        if trainer.is_global_zero:
            try:
                merged = merge_predictions(parts, len(dataset))
                scores = evaluate_predictions(dataset, merged, self.output_dir, stage)
                protocols = []
                if PROTOCOL_KEYS[0] in merged:
                    protocols = evaluate_protocols(dataset, merged, pl_module.evaluation_protocols,
                                                   pl_module.primary_protocol, scores)
                outcome = ("ok", (scores, protocols))
                self.predictions[stage] = merged
            except (EvaluationError, ValueError) as error:
                outcome = ("error", f"{type(error).__name__}: {error}")
        # Rank 0 scores; the others wait here, so an error there must reach them too (no hang).
        status, payload = _broadcast(outcome)
        if status == "error":
            raise EvaluationError(f"{stage} evaluation of {dataset.name} ({dataset.split}) failed: {payload}")
        scores, protocols = payload
        self.results[stage] = scores
        if protocols:
            self.protocol_results[stage] = protocols
        ranked_by = PRIMARY_METRICS[dataset.protocol]
        logged = {f"{stage}/{name}": value for name, value in scores.items()}
        for entry in protocols:
            label = protocol_label(entry["decoder"], entry["flip_test"])
            logged[f"{stage}/protocol/{label}/{ranked_by}"] = entry["metrics"][ranked_by]
        for name, value in logged.items():
            # Every rank logs the same value; the max over ranks returns it unchanged (a mean of
            # three equal float32 numbers need not), and syncing keeps Lightning's epoch-level
            # logging consistent across ranks.
            pl_module.log(name, float(value), sync_dist=True, reduce_fx="max")

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:  # noqa: D102
        if trainer.sanity_checking:
            self._parts = []
            return
        self._finish(trainer, pl_module, "val")

    def on_test_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:  # noqa: D102
        self._finish(trainer, pl_module, "test")
