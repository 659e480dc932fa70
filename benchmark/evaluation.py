"""The evaluation callback every method shares: gather predictions, de-duplicate, score, log, write.

Validation and test steps return ``{"index": (B,), "keypoints": (B, K, 2) image px, "scores":
(B, K)}`` (models/base.py). ``EvaluationCallback`` keeps them on every rank, gathers them over
processes with ``torch.distributed.all_gather_object`` (gloo and nccl), drops the repeats that
the distributed sampler pads in (``datamodules.datamodule.EpochSampler`` pads like
``torch.utils.data.DistributedSampler``: the first indices again), checks that every dataset
sample was seen exactly once, restores dataset order and hands the predictions to the dataset's
protocol object (``benchmark.protocols``: MPII PCKh, COCO AP, LSP PCK and PCP; what each computes
and the prediction file it writes are in docs/protocols.md). SynthPose data carries the protocol
of the format it is read in (MPII or COCO). Every metric is logged under ``val/`` or ``test/``
(per joint too); files are written atomically (temp file + rename) by rank 0.

Every decoding protocol in one pass: when test steps also return ``protocol_keypoints``
``(B, P, K, 2)`` and ``protocol_scores`` ``(B, P, K)`` (models/base.py, ``all_protocols``), the
same forward passes are scored under each ``(decoder, flip test)`` pair of the model's
``evaluation_protocols``; ``protocol_results[stage]`` lists ``{decoder, flip_test, metrics}`` for
all of them, and each one's ranking metric is logged as ``test/protocol/<decoder>[+flip]/<metric>``.
The headline metrics stay those of the configured protocol (the recipe's).

Models that predict each joint's presence (``predicts_visibility``, e.g. models/visreg.py, whose scores are
presence probabilities) also get ``Visibility/accuracy`` under protocols that do not score it themselves
(``presence_metrics``; the LSP protocol always reports it).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import pytorch_lightning as pl
import torch

from benchmark import metrics
from benchmark.errors import user_errors
from benchmark.metrics import DEFAULT_INSTANCE_SCORE
from benchmark.protocols import EvaluationError, get_protocol
from benchmark.protocols.base import VISIBILITY_ACCURACY
from datamodules.datasets import PoseDataset

if TYPE_CHECKING:
    from models.base import PoseEstimator


STEP_KEYS = ("index", "keypoints", "scores")
PROTOCOL_KEYS = ("protocol_keypoints", "protocol_scores")
"""Optional step outputs: every (decoder, flip test) protocol's keypoints ``(B, P, K, 2)`` and scores ``(B, P, K)``."""

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


# ---------------------------------------------------------------------------- callback


def evaluate_predictions(
    dataset: PoseDataset, merged: Mapping[str, np.ndarray], output_dir: Path | None = None, stage: str = "val",
    instance_score: str = DEFAULT_INSTANCE_SCORE,
) -> dict[str, float]:
    """Score merged predictions (dataset order) under ``dataset.protocol``, persons ranked by ``instance_score``
    (``metrics.INSTANCE_SCORES``, where the protocol ranks persons); write them under ``output_dir``.

    Returns the metrics without a stage prefix. The file is the protocol's ``predictions_file(stage)``:
    ``{stage}_predictions.mat`` (MPII / LSP, 1-based) or ``{stage}_keypoints_results.json`` (COCO results).
    """
    keypoints, scores = merged["keypoints"], merged["scores"]
    expected = dataset.skeleton.num_joints
    if keypoints.shape[1:] != (expected, 2):
        raise EvaluationError(
            f"predictions have shape {keypoints.shape} but {dataset.name} has {expected} joints: (N, {expected}, 2)"
        )
    protocol = get_protocol(dataset.protocol)
    predictions = protocol.predictions(dataset, keypoints, scores, instance_score=instance_score)
    if output_dir is not None:
        protocol.write_predictions(Path(output_dir) / protocol.predictions_file(stage), predictions)
    return protocol.score(dataset, predictions)


def presence_metrics(dataset: PoseDataset, scores: np.ndarray) -> dict[str, float]:
    """``{Visibility/accuracy}`` of per-joint presence probabilities ``scores`` ``(N, K)`` against the joints the
    dataset's protocol counts as annotated (``metrics.visibility_accuracy``), for models that predict presence
    (``predicts_visibility``) under protocols that do not score it themselves; empty when nothing is annotated
    (detected boxes)."""
    _, annotated = get_protocol(dataset.protocol).ground_truth(dataset)
    if not np.asarray(annotated).any():
        return {}
    return {VISIBILITY_ACCURACY: metrics.visibility_accuracy(scores, annotated)}


def protocol_label(decoder: str, flip_test: bool) -> str:
    """``dark+flip`` / ``dark``: a protocol's name in logged metric keys."""
    return f"{decoder}+flip" if flip_test else decoder


def evaluate_protocols(
    dataset: PoseDataset,
    merged: Mapping[str, np.ndarray],
    protocols: Sequence[tuple[str, bool]],
    primary: tuple[str, bool],
    primary_metrics: Mapping[str, float],
    instance_score: str = DEFAULT_INSTANCE_SCORE,
) -> list[dict[str, Any]]:
    """``[{decoder, flip_test, metrics}]``: ``merged``'s ``protocol_keypoints`` ``(N, P, K, 2)`` and
    ``protocol_scores`` ``(N, P, K)`` scored under the dataset's protocol (persons ranked by ``instance_score``),
    one entry per ``protocols[p]``; the ``primary`` one reuses ``primary_metrics`` (the same predictions)."""
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
            table = evaluate_predictions(dataset, {"keypoints": keypoints[:, p], "scores": scores[:, p]},
                                         instance_score=instance_score)
        entries.append({"decoder": decoder, "flip_test": bool(flip), "metrics": table})
    return entries


class EvaluationCallback(pl.Callback):
    """Scores validation and test epochs with the dataset's protocol and logs ``val/...``, ``test/...``.

    ``dataset`` is the evaluated ``PoseDataset`` (``test_dataset`` for ``trainer.test`` when it
    differs); None takes ``trainer.datamodule.val_dataset`` / ``test_dataset``. ``output_dir``
    receives the prediction files (rank 0). After an epoch, ``results[stage]`` holds the metrics
    as float64 (no prefix), ``predictions[stage]`` the merged predictions and, when the steps
    returned every protocol's predictions, ``protocol_results[stage]`` the per-protocol metrics.
    ``instance_score`` (the run's ``model.instance_score``, ``metrics.INSTANCE_SCORES``) is the person score a
    protocol that ranks persons (COCO) uses.
    """

    def __init__(
        self,
        dataset: PoseDataset | None = None,
        output_dir: Path | str | None = None,
        test_dataset: PoseDataset | None = None,
        instance_score: str = DEFAULT_INSTANCE_SCORE,
    ) -> None:
        if instance_score not in metrics.INSTANCE_SCORES:
            raise EvaluationError(f"model.instance_score {instance_score!r} is not a score mode; valid: "
                                  f"{', '.join(metrics.INSTANCE_SCORES)}")
        self.instance_score = instance_score
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
        return f"{stage}/{get_protocol(dataset.protocol).ranking_metric}"

    def _dataset(self, trainer: pl.Trainer, stage: str) -> PoseDataset:
        dataset = self.datasets[stage]
        if dataset is None:
            datamodule = getattr(trainer, "datamodule", None)
            if datamodule is None:
                raise EvaluationError(
                    "EvaluationCallback needs a dataset, or a trainer datamodule with val/test datasets"
                )
            dataset = datamodule.val_dataset if stage == "val" else datamodule.test_dataset
        return dataset

    # --- collection
    def on_validation_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:  # noqa: D102
        self._parts = []

    def on_test_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:  # noqa: D102
        self._parts = []

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
        failure: Exception | None = None
        if trainer.is_global_zero:
            try:
                merged = merge_predictions(parts, len(dataset))
                scores = evaluate_predictions(dataset, merged, self.output_dir, stage, self.instance_score)
                if getattr(pl_module, "predicts_visibility", False) and VISIBILITY_ACCURACY not in scores:
                    scores |= presence_metrics(dataset, merged["scores"])
                protocols = []
                if PROTOCOL_KEYS[0] in merged:
                    model = cast("PoseEstimator", pl_module)  # the protocol keys come from a PoseEstimator's steps
                    protocols = evaluate_protocols(dataset, merged, model.evaluation_protocols,
                                                   model.primary_protocol, scores, self.instance_score)
                outcome = ("ok", (scores, protocols))
                self.predictions[stage] = merged
            except Exception as error:  # noqa: BLE001 - raised again below, once the other ranks know
                failure, outcome = error, ("error", f"{type(error).__name__}: {error}")
        # Rank 0 scores; the others wait here, so a failure there must reach them too (no hang).
        status, payload = _broadcast(outcome)
        if failure is not None and not isinstance(failure, user_errors()):
            raise failure  # a bug: rank 0 keeps its traceback
        if status == "error":
            message = f"{stage} evaluation of {dataset.name} ({dataset.split}) failed: {payload}"
            raise EvaluationError(message) from failure
        scores, protocols = payload
        self.results[stage] = scores
        if protocols:
            self.protocol_results[stage] = protocols
        ranked_by = get_protocol(dataset.protocol).ranking_metric
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
