"""The person record every dataset loader yields, and the errors loaders raise on bad input.

A record is one person to crop: what the top-down transform needs (image, centre, scale) plus
what evaluation needs (ground-truth keypoints, head box, area, box score). Coordinates are
0-based image pixels with pixel centres at integers.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import scipy.io

PIXEL_STD = 200.0
"""``scale`` is the person box size in units of 200 px, the MPII convention the reference code keeps."""


class DatasetError(ValueError):
    """Bad or missing dataset input; the message names the file, key or value at fault."""


def read_json(path: Path, what: str = "annotation file") -> object:
    """The parsed JSON of ``path``; a missing or malformed file raises ``DatasetError`` naming it."""
    if not path.is_file():
        raise DatasetError(f"{what} not found: {path}")
    try:
        with path.open("rb") as f:
            return json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise DatasetError(f"{path}: not valid JSON ({error})") from None


def read_mat(path: Path, what: str = "annotation file") -> dict[str, object]:
    """The variables of the MATLAB file ``path`` (``scipy.io.loadmat``); a missing or unreadable file
    raises ``DatasetError`` naming it."""
    if not path.is_file():
        raise DatasetError(f"{what} not found: {path}")
    try:
        return scipy.io.loadmat(str(path))
    except (ValueError, TypeError, OSError, NotImplementedError) as error:
        raise DatasetError(f"{path}: not a readable MATLAB file ({error})") from None


@dataclass
class PersonRecord:
    """One person in one image.

    Shapes: ``center`` (2,) as (x, y); ``scale`` (2,) as box (w, h) / 200; ``keypoints`` (K, 2)
    in image pixels; ``visible`` (K,) bool, true where the joint is annotated;
    ``headbox`` (2, 2) as [[x1, y1], [x2, y2]] or None; ``bbox`` (4,) as x, y, w, h or None.
    """

    image: str
    image_id: int
    center: np.ndarray
    scale: np.ndarray
    keypoints: np.ndarray
    visible: np.ndarray
    headbox: np.ndarray | None = None
    bbox: np.ndarray | None = None
    area: float = 0.0
    box_score: float = 1.0
    extras: dict = field(default_factory=dict)

    @property
    def num_joints(self) -> int:
        return int(self.keypoints.shape[0])
