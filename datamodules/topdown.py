"""The torch Dataset of top-down pose estimation: read one person's image, crop it, add metadata.

This is the loaders' hot path: one JPEG decode and one ``TopDownTransform`` call per sample,
nothing else. Images are read as HRNet reads them (lib/dataset/JointsDataset.py):
``cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION``, i.e. BGR pixels as stored, because the
COCO and MPII annotations refer to the stored pixel grid, not to the EXIF-rotated one.
"""

from __future__ import annotations

import os

import cv2
import numpy as np
from torch.utils.data import Dataset

from datamodules.records import DatasetError, PersonRecord
from datamodules.transforms import TopDownTransform
from pixelgrid import get_convention

_IMREAD_FLAGS = cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION
_NO_HEADBOX = np.full((2, 2), np.nan, dtype=np.float32)


def warp_matrix(center: np.ndarray, size: np.ndarray, input_size: tuple[int, int], convention: str) -> np.ndarray:
    """The ``(2, 3)`` float64 affine from image to crop pixels (rotation 0), a public contract (DESIGN.md).

    ``center``, ``size`` ``(2,)``: the box the crop covers in image px, after padding and the aspect
    fix (mmpose's ``input_center`` / ``input_scale``); ``input_size`` ``(H, W)``; ``convention`` one of
    ``pixelgrid.CONVENTIONS``.
    """
    return get_convention(convention).warp_matrix(center, size, input_size)


def read_image(path: str) -> np.ndarray:
    """The image at ``path`` as ``(H, W, 3)`` uint8 BGR; a missing or undecodable file raises DatasetError."""
    image = cv2.imread(path, _IMREAD_FLAGS)
    if image is None:
        reason = "no such file" if not os.path.exists(path) else "not a decodable image"
        raise DatasetError(f"cannot read image {path}: {reason}")
    return image


class TopDownDataset(Dataset):
    """Person records -> transformed samples that ``default_collate`` batches.

    ``dataset[i]`` uses epoch 0; ``dataset[(epoch, i)]`` (what the DataModule's sampler yields)
    draws that epoch's augmentation for record ``i``.
    """

    def __init__(self, records: list[PersonRecord], transform: TopDownTransform) -> None:
        self.records = records
        self.transform = transform

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, item: int | tuple[int, int]) -> dict:
        """Sample dict: the transform's keys (``image`` ``(3, H, W)``, ``keypoints`` ``(K, 2)``,
        ``visible`` ``(K,)``, ``matrix`` / ``inverse_matrix`` ``(2, 3)``) plus ``index`` int64,
        ``image_id``, ``center`` ``(2,)`` and ``scale`` ``(2,)`` of the record (before augmentation;
        ``matrix`` holds the crop actually taken), ``box_score``, ``area`` and ``headbox``
        ``(2, 2)`` float32, NaN where the record has none.
        """
        epoch, index = item if isinstance(item, tuple) else (0, item)
        record = self.records[index]
        sample = self.transform(read_image(record.image), record, index, epoch)
        sample["index"] = np.int64(index)
        sample["image_id"] = np.int64(record.image_id)
        sample["center"] = np.asarray(record.center, dtype=np.float64)
        sample["scale"] = np.asarray(record.scale, dtype=np.float64)
        sample["box_score"] = np.float32(record.box_score)
        sample["area"] = np.float32(record.area)
        sample["headbox"] = _NO_HEADBOX if record.headbox is None else np.asarray(record.headbox, dtype=np.float32)
        return sample
