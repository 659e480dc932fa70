"""The protocol base class and registry: what it means to score one dataset family, in one object.

A dataset names its protocol in ``PoseDataset.protocol`` (``mpii``, ``coco``, ``lsp``); everything
that depends on that name lives on the protocol object registered under it: the metrics
(``evaluate``), the prediction file the evaluation writes, the leaderboard's primary columns, their
display scale and the per-joint table, the per-person error the prediction gallery ranks by, and
the reference training augmentation the data tools show. Callers ask ``get_protocol(name)`` and
never compare protocol names. What each protocol computes is in docs/protocols.md; adding one is a
single file in this package (docs/adding-a-dataset.md).
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple, TypeVar

import numpy as np

from benchmark.errors import PoseBenchError
from benchmark.files import atomic_write, atomic_write_text
from benchmark.metrics import DEFAULT_INSTANCE_SCORE

if TYPE_CHECKING:
    from datamodules.datasets import PoseDataset


class EvaluationError(PoseBenchError):
    """Predictions cannot be scored: they do not cover the dataset exactly once, or the split lacks what the
    protocol needs (head boxes, the COCO annotation file); the message names the dataset and what is wrong."""


VISIBILITY_ACCURACY = "Visibility/accuracy"
"""The metric of joint-presence predictions (``benchmark.metrics.visibility_accuracy``, percent), under any protocol."""


class Column(NamedTuple):
    """A leaderboard column: its header and the metric it shows (a key of the evaluation's metrics)."""

    label: str
    metric: str


class Protocol(ABC):
    """How one dataset family is scored. Subclasses set the class attributes and implement ``score`` and
    ``person_errors``; the defaults suit protocols that score keypoints directly and write HRNet's pred.mat."""

    name: str = ""
    """Set by ``register_protocol``: the name datasets give in their ``protocol`` attribute."""
    title: str = ""
    """The protocol's name in tables and headings, e.g. ``MPII``."""
    primary: tuple[Column, ...] = ()
    """The leaderboard's primary columns; the first one ranks rows and selects the best checkpoint."""
    display_scale: float = 1.0
    """Factor from the metric's value to the percent the leaderboard shows (COCO AP fractions: 100)."""
    per_joint: tuple[str, ...] = ()
    """Metrics of the leaderboard's per-joint table, ``Mean`` last; empty: no such table."""
    error_label: str = ""
    """The caption name of ``person_errors`` in prediction galleries."""
    detections: bool = False
    """Whether val splits may be scored on detected person boxes (a detection file beside the data)."""
    ranks_persons: bool = False
    """Whether the metric ranks persons by a score (COCO AP), so ``instance_score`` (``model.instance_score``)
    matters."""
    augmentation: str = "none"
    """The reference training augmentation (``datamodules.transforms.PRESETS``) of this protocol's data."""
    table_order: int = 100
    """Where this protocol's tables stand on the leaderboard, lowest first; ties by name."""

    @property
    def ranking_metric(self) -> str:
        """The metric rows are ranked and checkpoints selected by, e.g. ``PCKh/Mean``."""
        return self.primary[0].metric

    def display(self, value: float) -> float:
        """``value`` in the leaderboard's units (percent)."""
        return value * self.display_scale

    # ------------------------------------------------------------------ scoring

    def evaluate(self, dataset: PoseDataset, keypoints: np.ndarray, scores: np.ndarray,
                 instance_score: str = DEFAULT_INSTANCE_SCORE) -> dict[str, float]:
        """The metrics of ``keypoints`` ``(N, K, 2)`` image px and ``scores`` ``(N, K)`` in dataset order;
        ``instance_score`` (``metrics.INSTANCE_SCORES``) is how a protocol that ranks persons scores them."""
        return self.score(dataset, self.predictions(dataset, keypoints, scores, instance_score=instance_score))

    def predictions(self, dataset: PoseDataset, keypoints: np.ndarray, scores: np.ndarray,
                    instance_score: str = DEFAULT_INSTANCE_SCORE) -> Any:
        """What is written and scored: here the keypoints ``(N, K, 2)`` themselves (a single-person protocol ranks
        no persons, so ``instance_score`` changes nothing)."""
        return keypoints

    @abstractmethod
    def score(self, dataset: PoseDataset, predictions: Any) -> dict[str, float]:
        """The metrics (no stage prefix) of ``predictions`` as ``predictions`` returns them."""

    def predictions_file(self, stage: str) -> str:
        """The file name ``write_predictions`` is given for ``stage``."""
        return f"{stage}_predictions.mat"

    def write_predictions(self, path: Path, predictions: Any) -> Path:
        """Write ``predictions`` (keypoints ``(N, K, 2)``, 0-based px) as HRNet's pred.mat (1-based)."""
        return write_pred_mat(path, predictions)

    # ------------------------------------------------------------------ gallery

    def ground_truth(self, dataset: PoseDataset) -> tuple[np.ndarray, np.ndarray]:
        """``(gt (N, K, 2), annotated (N, K))`` as this protocol scores them: here the records'."""
        return records_ground_truth(dataset)

    @abstractmethod
    def person_errors(self, dataset: PoseDataset, keypoints: np.ndarray) -> np.ndarray:
        """``(N,)`` error of each person's ``keypoints`` ``(N, K, 2)`` (lower is better); NaN where undefined."""


PROTOCOLS: dict[str, Protocol] = {}
"""Every registered protocol by name (``register_protocol``)."""

ProtocolClass = TypeVar("ProtocolClass", bound=type[Protocol])


def register_protocol(name: str) -> Callable[[ProtocolClass], ProtocolClass]:
    """Class decorator: register one instance of a ``Protocol`` subclass under ``name``. A duplicate name, or a
    class without ``title``, ``primary`` or ``error_label``, is a ValueError."""

    def decorator(cls: ProtocolClass) -> ProtocolClass:
        if name in PROTOCOLS:
            existing = type(PROTOCOLS[name])
            raise ValueError(f"protocol {name!r} is already registered by {existing.__module__}."
                             f"{existing.__qualname__}; cannot register {cls.__module__}.{cls.__qualname__} under "
                             "the same name")
        missing = [attribute for attribute in ("title", "primary", "error_label") if not getattr(cls, attribute)]
        if missing:
            raise ValueError(f"protocol {cls.__qualname__} must set {', '.join(missing)}")
        cls.name = name
        PROTOCOLS[name] = cls()
        return cls

    return decorator


def get_protocol(name: str) -> Protocol:
    """The protocol registered under ``name``; an unknown name is a PoseBenchError naming the known ones."""
    if name not in PROTOCOLS:
        raise PoseBenchError(f"unknown evaluation protocol {name!r}; known: {', '.join(sorted(PROTOCOLS))}")
    return PROTOCOLS[name]


def leaderboard_protocols() -> list[Protocol]:
    """Every protocol in the order of its leaderboard tables (``table_order``, then name)."""
    return sorted(PROTOCOLS.values(), key=lambda protocol: (protocol.table_order, protocol.name))


# ---------------------------------------------------------------------- shared pieces


def records_ground_truth(dataset: PoseDataset) -> tuple[np.ndarray, np.ndarray]:
    """``(gt (N, K, 2) float64, annotated (N, K) bool)`` from the dataset's person records."""
    k = dataset.skeleton.num_joints
    if not dataset.records:
        return np.zeros((0, k, 2)), np.zeros((0, k), dtype=bool)
    gt = np.stack([r.keypoints for r in dataset.records]).astype(np.float64)
    return gt, np.stack([r.visible for r in dataset.records]).astype(bool)


def write_pred_mat(path: Path, keypoints: np.ndarray) -> Path:
    """Write ``keypoints`` ``(N, K, 2)`` (0-based px) as ``{"preds": keypoints + 1}``, HRNet's pred.mat layout
    (1-based MATLAB pixels, what the MPII evaluator and HRNet's ``evaluate`` read back)."""
    import scipy.io

    return atomic_write(path, lambda f: scipy.io.savemat(f, {"preds": np.asarray(keypoints, dtype=np.float64) + 1.0}))


def write_json(path: Path, payload: Any) -> Path:
    """Write ``payload`` as JSON atomically."""
    return atomic_write_text(path, json.dumps(payload))
