"""Reference rows that put every score in context: an image-blind floor and a heatmap-grid ceiling.

- **Mean pose** (the floor): the training set's mean pose in crop coordinates, placed in every
  evaluation box and mapped back to the image by the same inverse warp the methods use. It sees the
  box but not the image, so a method that scores near it has learnt little from the pixels. Each
  joint's score is the fraction of training persons that have it annotated.
- **Oracle** (the ceiling of a heatmap method): the ground truth encoded as the training target
  (the Gaussian of ``models.codecs.HeatmapCodec`` on the heatmap grid) and decoded by a decoder
  through ``benchmark.protocol.image_keypoints``, the test-time path every heatmap method uses. It
  shows what the grid and the decoder alone cost: ``argmax`` loses up to half a heatmap pixel,
  ``dark`` recovers the sub-pixel point.

Both are scored by the dataset's own protocol (docs/protocols.md) and kept as reference rows beside
the run records (``references/`` in the records directory, written by ``make demo``); the leaderboard
shows them under each table and every method's primary metric as a multiple of the mean pose.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmark.errors import PoseBenchError
from benchmark.files import atomic_write_text
from benchmark.protocol import image_keypoints
from benchmark.protocols import get_protocol
from datamodules.datasets import PoseDataset
from datamodules.records import PIXEL_STD, PersonRecord
from datamodules.transforms import invert_affine, transform_points
from models.codecs import HeatmapCodec
from pixelgrid import get_convention


@dataclass(frozen=True)
class MeanPose:
    """The training set's mean pose: ``keypoints`` ``(K, 2)`` crop px, ``frequency`` ``(K,)`` annotated share."""

    keypoints: np.ndarray
    frequency: np.ndarray


def boxes(records: Sequence[PersonRecord]) -> tuple[np.ndarray, np.ndarray]:
    """``(centers, sizes)`` ``(N, 2)`` float64: the box each crop covers in image px (``scale x 200``)."""
    centers = np.stack([np.asarray(r.center, dtype=np.float64) for r in records])
    sizes = np.stack([np.asarray(r.scale, dtype=np.float64) * PIXEL_STD for r in records])
    return centers, sizes


def crop_keypoints(records: Sequence[PersonRecord], input_size: tuple[int, int],
                   convention: str = "aligned") -> tuple[np.ndarray, np.ndarray]:
    """Keypoints ``(N, K, 2)`` in crop px (no augmentation) and annotated flags ``(N, K)`` bool."""
    grid = get_convention(convention)
    centers, sizes = boxes(records)
    out = np.empty((len(records), records[0].num_joints, 2), dtype=np.float64)
    for index, record in enumerate(records):
        out[index] = transform_points(record.keypoints, grid.warp_matrix(centers[index], sizes[index], input_size))
    visible = np.stack([np.asarray(r.visible, dtype=bool) for r in records])
    return out, visible


def mean_pose(records: Sequence[PersonRecord], input_size: tuple[int, int], convention: str = "aligned") -> MeanPose:
    """Per-joint mean of the annotated keypoints of ``records`` in crop px; a joint never annotated sits at the
    crop centre with frequency 0."""
    if not records:
        raise ValueError("the mean pose needs at least one training record")
    keypoints, visible = crop_keypoints(records, input_size, convention)
    counts = visible.sum(axis=0)
    sums = np.where(visible[..., None], keypoints, 0.0).sum(axis=0)
    height, width = input_size
    centre = np.array([(width - 1) / 2.0, (height - 1) / 2.0])
    mean = np.where(counts[:, None] > 0, sums / np.maximum(counts, 1)[:, None], centre)
    return MeanPose(keypoints=mean, frequency=counts / len(records))


def mean_pose_predictions(records: Sequence[PersonRecord], pose: MeanPose, input_size: tuple[int, int],
                          convention: str = "aligned") -> tuple[np.ndarray, np.ndarray]:
    """``pose`` placed in every box of ``records``: keypoints ``(N, K, 2)`` image px and scores ``(N, K)``."""
    grid = get_convention(convention)
    centers, sizes = boxes(records)
    crop = np.broadcast_to(pose.keypoints, (len(records), *pose.keypoints.shape))
    keypoints = np.empty_like(crop)
    for index in range(len(records)):
        inverse = invert_affine(grid.warp_matrix(centers[index], sizes[index], input_size))
        keypoints[index] = transform_points(crop[index], inverse)
    scores = np.broadcast_to(pose.frequency, (len(records), pose.frequency.shape[0])).astype(np.float64)
    return keypoints, scores


def oracle_predictions(records: Sequence[PersonRecord], input_size: tuple[int, int], heatmap_size: tuple[int, int],
                       sigma: float, decoder: str, convention: str = "aligned",
                       unbiased: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """The ground truth encoded as a heatmap target and decoded by ``decoder`` (no flip test): keypoints
    ``(N, K, 2)`` image px and scores ``(N, K)``.

    The standard target puts the Gaussian on the nearest heatmap pixel, so this is the ground truth quantised
    to the grid; ``unbiased`` (DARK's target) keeps the sub-pixel point. Unannotated joints decode from an
    empty map.
    """
    keypoints, visible = crop_keypoints(records, input_size, convention)
    codec = HeatmapCodec(input_size, heatmap_size, sigma, unbiased=unbiased, convention=convention)
    heatmaps, _ = codec.encode(torch.from_numpy(keypoints), torch.from_numpy(visible))
    centers, sizes = boxes(records)
    image, scores = image_keypoints(heatmaps, center=centers, size=sizes, input_size=input_size,
                                    convention=convention, decoder=decoder, flip_pairs=[])
    return np.asarray(image, dtype=np.float64), np.asarray(scores, dtype=np.float64)


# ------------------------------------------------------------------------------ reference rows

REFERENCES_DIR = "references"
"""Reference rows live in ``<records dir>/references/<dataset>[-<format>].json``, beside the run records."""
REFERENCE_KIND = "posebench-reference-rows"
ORACLE_DECODERS = ("argmax", "quarter", "dark")


def reference_rows(train: PoseDataset, val: PoseDataset, input_size: tuple[int, int], stride: int = 4,
                   sigma: float = 2.0, convention: str = "aligned") -> list[dict[str, Any]]:
    """The mean-pose floor and the oracle ceiling of ``val`` (one row per decoder), each ``{label, kind,
    metrics}`` scored by ``val``'s protocol; the mean pose is learnt from ``train``."""
    protocol = get_protocol(val.protocol)
    pose = mean_pose(train.records, input_size, convention)
    keypoints, scores = mean_pose_predictions(val.records, pose, input_size, convention)
    rows = [{"label": "mean pose (image-blind)", "kind": "floor",
             "metrics": protocol.evaluate(val, keypoints, scores)}]
    heatmap_size = (input_size[0] // stride, input_size[1] // stride)
    grid = f"{heatmap_size[0]}x{heatmap_size[1]}"
    for decoder in ORACLE_DECODERS:
        keypoints, scores = oracle_predictions(val.records, input_size, heatmap_size, sigma, decoder, convention)
        rows.append({"label": f"oracle: ground truth on a {grid} grid, {decoder}", "kind": "ceiling",
                     "metrics": protocol.evaluate(val, keypoints, scores)})
    return rows


def reference_file(records_dir: Path | str, dataset: str, data_format: str | None) -> Path:
    """Where the reference rows of ``dataset`` (SynthPose: in ``data_format``) are kept for ``records_dir``."""
    name = f"{dataset}-{data_format}" if data_format else dataset
    return Path(records_dir) / REFERENCES_DIR / f"{name}.json"


def write_references(records_dir: Path | str, val: PoseDataset, data_format: str | None,
                     rows: list[dict[str, Any]]) -> Path:
    """Write ``rows`` with the data they were scored on (name, format, split, fingerprint), atomically."""
    payload = {"kind": REFERENCE_KIND, "dataset": {"name": val.name, "format": data_format, "split": val.split,
                                                   "fingerprint": val.fingerprint()},
               "protocol": val.protocol, "rows": rows}
    path = reference_file(records_dir, val.name, data_format)
    return atomic_write_text(path, json.dumps(payload, indent=2, sort_keys=True, allow_nan=False) + "\n")


def read_references(records_dir: Path | str) -> list[dict[str, Any]]:
    """Every reference file of ``records_dir`` (none: an empty list); a damaged one is a PoseBenchError."""
    out = []
    for path in sorted((Path(records_dir) / REFERENCES_DIR).glob("*.json")):
        try:
            payload = json.loads(path.read_text())
        except (OSError, ValueError) as error:
            raise PoseBenchError(f"{path}: unreadable reference rows ({error})") from None
        if not isinstance(payload, dict) or payload.get("kind") != REFERENCE_KIND or not isinstance(
                payload.get("rows"), list) or not isinstance(payload.get("dataset"), dict):
            raise PoseBenchError(f"{path}: not a reference-rows file (kind {REFERENCE_KIND!r} with dataset and rows)")
        out.append(payload)
    return out
