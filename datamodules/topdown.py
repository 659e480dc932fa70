"""The torch Dataset of top-down pose estimation: read one person's image, crop it, add metadata.

This is the loaders' hot path: one JPEG decode and one ``TopDownTransform`` call per sample,
nothing else. Images are read as HRNet reads them (lib/dataset/JointsDataset.py):
``cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION``, i.e. BGR pixels as stored, because the
COCO and MPII annotations refer to the stored pixel grid, not to the EXIF-rotated one.
``read_image_reduced`` decodes a JPEG at 1/2, 1/4 or 1/8 instead, for crops much smaller than
their box (``TopDownDataset(reduced_decode=True)``). Nothing is cached: every sample decodes its file.

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
from datamodules.transforms import TopDownTransform, reduction_for
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


_REDUCED_FLAGS = {
    2: cv2.IMREAD_REDUCED_COLOR_2 | cv2.IMREAD_IGNORE_ORIENTATION,
    4: cv2.IMREAD_REDUCED_COLOR_4 | cv2.IMREAD_IGNORE_ORIENTATION,
    8: cv2.IMREAD_REDUCED_COLOR_8 | cv2.IMREAD_IGNORE_ORIENTATION,
}


def _read_bytes(path: str) -> bytes:
    """The complete encoded file at ``path``; missing, unreadable or truncated raises DatasetError naming it."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as error:
        reason = "no such file" if not os.path.exists(path) else error.strerror or str(error)
        raise DatasetError(f"cannot read image {path}: {reason}") from None
    problem = truncation_problem(data)
    if problem is not None:
        raise DatasetError(f"corrupt image ({problem}): {path}")
    return data


def _decode(data: bytes, flags: int, path: str) -> np.ndarray:
    image = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), flags)
    if image is None:
        raise DatasetError(f"cannot read image {path}: not a decodable image")
    return image


def read_image(path: str) -> np.ndarray:
    """The image at ``path`` as ``(H, W, 3)`` uint8 BGR; a missing, truncated or undecodable file raises
    DatasetError naming it (one line)."""
    return _decode(_read_bytes(path), _IMREAD_FLAGS, path)


def read_image_reduced(path: str, reduction: int) -> tuple[np.ndarray, int]:
    """``(image, applied)``: the image at ``path`` decoded at ``1 / applied`` of its resolution, ``(ceil(H / applied),
    ceil(W / applied), 3)`` uint8 BGR. A JPEG is decoded at ``reduction`` (1, 2, 4 or 8) by libjpeg's DCT scaling,
    which skips most of the decoding work; any other format at full resolution (``applied`` 1), where a
    reduction would cost a resize on top of the full decode."""
    data = _read_bytes(path)
    if reduction == 1 or data[:2] != _JPEG_START:
        return _decode(data, _IMREAD_FLAGS, path), 1
    return _decode(data, _REDUCED_FLAGS[reduction], path), reduction


class TopDownDataset(Dataset):
    """Person records -> transformed samples that ``datamodules.datamodule.collate_pose_batch`` batches.

    ``dataset[i]`` uses epoch 0; ``dataset[(epoch, i)]`` (what the DataModule's sampler yields)
    draws that epoch's augmentation for record ``i``. With ``reduced_decode`` a JPEG is decoded at
    the largest reduction that keeps it at least as dense as the crop (``transforms.reduction_for``,
    from the sample's own matrix, augmentation included): the crop's pixel values change slightly (the
    reduced image is an area average, so a crop that samples the image every 2 or more pixels aliases
    less), its keypoints and matrices do not.
    """

    def __init__(self, records: list[PersonRecord], transform: TopDownTransform, reduced_decode: bool = False) -> None:
        self.records = records
        self.transform = transform
        self.reduced_decode = reduced_decode

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, item: int | tuple[int, int]) -> dict:
        """Sample dict: the transform's keys (``image`` ``(3, H, W)`` uint8 RGB, ``colour_gain`` ``(3,)``,
        ``keypoints`` ``(K, 2)``, ``visible`` ``(K,)``, ``matrix`` / ``inverse_matrix`` ``(2, 3)``) plus
        ``index`` int64, ``image_id``, ``center`` ``(2,)`` and ``scale`` ``(2,)`` of the record (before
        augmentation; ``matrix`` holds the crop actually taken), ``box_score``, ``area`` and ``headbox``
        ``(2, 2)`` float32, NaN where the record has none.
        """
        epoch, index = item if isinstance(item, tuple) else (0, item)
        record = self.records[index]
        plan = self.transform.plan(record, index, epoch)
        if self.reduced_decode:
            image, reduction = read_image_reduced(record.image, reduction_for(plan.matrix))
        else:
            image, reduction = read_image(record.image), 1
        sample = self.transform.crop(image, record, plan, reduction)
        sample["index"] = np.int64(index)
        sample["image_id"] = np.int64(record.image_id)
        sample["center"] = np.asarray(record.center, dtype=np.float64)
        sample["scale"] = np.asarray(record.scale, dtype=np.float64)
        sample["box_score"] = np.float32(record.box_score)
        sample["area"] = np.float32(record.area)
        sample["headbox"] = _NO_HEADBOX if record.headbox is None else np.asarray(record.headbox, dtype=np.float32)
        return sample
