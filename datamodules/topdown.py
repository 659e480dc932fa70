"""The torch Dataset of top-down pose estimation: read one person's image, crop it, add metadata.

This is the loaders' hot path: one JPEG decode and one ``TopDownTransform`` call per sample,
nothing else. Images are read as HRNet reads them (lib/dataset/JointsDataset.py):
``cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION``, i.e. BGR pixels as stored, because the
COCO and MPII annotations refer to the stored pixel grid, not to the EXIF-rotated one.

A truncated file is refused before decoding: OpenCV 4 decodes a truncated JPEG with only a
libjpeg warning that names no file (the missing rows come back grey), so ``read_image`` checks
that a JPEG has an end-of-image marker (FF D9) after its last start-of-scan marker (FF DA) and
that a PNG ends with its IEND chunk. Inside entropy-coded data an FF byte is always followed by
00 or a restart marker (ITU-T T.81, annex B), so neither marker can occur there by chance.
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
    """The ``(2, 3)`` float64 affine from image to crop pixels (rotation 0), a public contract (docs/conventions.md).

    ``center``, ``size`` ``(2,)``: the box the crop covers in image px, after padding and the aspect
    fix (mmpose's ``input_center`` / ``input_scale``); ``input_size`` ``(H, W)``; ``convention`` one of
    ``pixelgrid.CONVENTIONS``.
    """
    return get_convention(convention).warp_matrix(center, size, input_size)


_JPEG_START, _JPEG_SCAN, _JPEG_END = b"\xff\xd8", b"\xff\xda", b"\xff\xd9"
_PNG_SIGNATURE, _PNG_END = b"\x89PNG\r\n\x1a\n", b"IEND\xaeB`\x82"
_TAIL = 64  # bytes searched at the end of a file for its end marker (padding may follow it)


def truncation_problem(data: bytes) -> str | None:
    """Why the encoded image ``data`` is cut short (a JPEG without end-of-image marker after its last scan,
    a PNG without IEND chunk), or None when it is complete or neither format. The end marker is looked for in
    the last 64 bytes first (a few µs); only a JPEG with other data after its end marker is searched whole."""
    if data[:2] == _JPEG_START:
        if data.find(_JPEG_END, max(0, len(data) - _TAIL)) >= 0:
            return None  # the usual case: the marker ends the file, maybe followed by padding
        # Trailing data (e.g. a camera's trailer): an end marker must still follow the last scan.
        last_scan = data.rfind(_JPEG_SCAN)
        if last_scan < 0 or data.find(_JPEG_END, last_scan) < 0:
            return "truncated JPEG, no end-of-image marker"
    elif data[:8] == _PNG_SIGNATURE and data.find(_PNG_END, max(0, len(data) - _TAIL)) < 0:
        return "truncated PNG, no IEND chunk"
    return None


def read_image(path: str) -> np.ndarray:
    """The image at ``path`` as ``(H, W, 3)`` uint8 BGR; a missing, truncated or undecodable file raises
    DatasetError naming it (one line)."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as error:
        reason = "no such file" if not os.path.exists(path) else error.strerror or str(error)
        raise DatasetError(f"cannot read image {path}: {reason}") from None
    problem = truncation_problem(data)
    if problem is not None:
        raise DatasetError(f"corrupt image ({problem}): {path}")
    image = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), _IMREAD_FLAGS)
    if image is None:
        raise DatasetError(f"cannot read image {path}: not a decodable image")
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
