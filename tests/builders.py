"""Builders of small dataset roots in the real on-disk layouts, shared by several test modules."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import scipy.io

from datamodules.mpii import MAT_JOINT_NAMES


def _person(offset: float) -> np.ndarray:
    """(14, 2) 1-based joints: x = 10 + 2 j + offset, y = 20 + 3 j."""
    j = np.arange(14, dtype=np.float64)
    return np.stack([10.0 + 2.0 * j + offset, 20.0 + 3.0 * j], axis=1)


def _write_images(root: Path, names: list[str]) -> None:
    (root / "images").mkdir(parents=True, exist_ok=True)
    for name in names:
        cv2.imwrite(str(root / "images" / name), np.full((80, 60, 3), 127, dtype=np.uint8))


def write_lsp(root: Path, count: int = 4) -> np.ndarray:
    """LSP layout: joints (3, 14, N) with LSP's occlusion flag, and its images; returns the (N, 14, 3) values."""
    _write_images(root, [f"im{i + 1:04d}.jpg" for i in range(count)])
    values = np.zeros((count, 14, 3))
    for i in range(count):
        values[i, :, :2] = _person(float(i))
    values[1, 4, 2] = 1.0  # LSP flag 1: occluded but annotated
    scipy.io.savemat(str(root / "joints.mat"), {"joints": np.transpose(values, (2, 1, 0))})
    return values


def write_lspet(root: Path) -> np.ndarray:
    """LSP-extended layout: joints (14, 3, N) with a visibility flag, and its images."""
    _write_images(root, [f"im{i + 1:05d}.jpg" for i in range(3)])
    values = np.zeros((3, 14, 3))
    for i in range(3):
        values[i, :, :2] = _person(float(i))
    values[0, :, 2] = 1.0
    values[1, 4:, 2] = 1.0  # joints 0-3 not annotated ...
    values[1, :4, :2] = [[500.0, 900.0]] * 4  # ... and their coordinates are junk
    # person 2: no joint annotated -> no box -> skipped
    scipy.io.savemat(str(root / "joints.mat"), {"joints": np.transpose(values, (1, 2, 0))})
    return values


def write_gt_valid(
    path: Path, persons: list[dict], headboxes_1based: np.ndarray, names: tuple[str, ...] = MAT_JOINT_NAMES
) -> None:
    """A gt_valid.mat in the real layout: jnt_missing (16, N), pos_gt_src (16, 2, N), headboxes_src (2, 2, N).

    ``persons`` are MPII JSON entries (1-based joints); ``names`` orders the joints in the file.
    """
    order = [MAT_JOINT_NAMES.index(n) for n in names]
    joints = np.array([p["joints"] for p in persons], dtype=np.float64)[:, order]
    missing = 1 - np.array([p["joints_vis"] for p in persons], dtype=np.float64)[:, order]
    cell = np.empty((1, len(names)), dtype=object)
    for i, n in enumerate(names):
        cell[0, i] = n
    scipy.io.savemat(
        str(path),
        {
            "dataset_joints": cell,
            "jnt_missing": missing.T,
            "pos_gt_src": np.transpose(joints, (1, 2, 0)),
            "headboxes_src": np.transpose(headboxes_1based, (1, 2, 0)),
        },
    )


# Head boxes chosen for the 5 sample persons, 1-based [[x1, y1], [x2, y2]].
HEADBOXES = np.array([[[100.0 + i, 50.0], [150.0 + i, 120.0 + 2 * i]] for i in range(5)])


def _link_images(source: Path, target: Path) -> None:
    target.mkdir(parents=True, exist_ok=True)
    for image in sorted(source.glob("*.jpg")):
        (target / image.name).symlink_to(image)


def make_mpii_root(root: Path, fixtures: Path) -> Path:
    """MPII layout: annot/{train,valid}.json (the sample persons), annot/gt_valid.mat, images/."""
    (root / "annot").mkdir(parents=True)
    shutil.copy(fixtures / "test_mpii.json", root / "annot" / "train.json")
    shutil.copy(fixtures / "test_mpii.json", root / "annot" / "valid.json")
    write_gt_valid(root / "annot" / "gt_valid.mat", json.loads((fixtures / "test_mpii.json").read_text()), HEADBOXES)
    _link_images(fixtures, root / "images")
    return root


def make_coco_root(root: Path, fixtures: Path) -> Path:
    """COCO layout with only val2017: annotations, images and the person detections."""
    (root / "annotations").mkdir(parents=True)
    shutil.copy(fixtures / "test_coco.json", root / "annotations" / "person_keypoints_val2017.json")
    (root / "person_detection_results").mkdir()
    shutil.copy(
        fixtures / "test_coco_det_AP_H_56.json",
        root / "person_detection_results" / "COCO_val2017_detections_AP_H_56_person.json",
    )
    _link_images(fixtures, root / "val2017")
    return root


def make_synthpose_root(root: Path, fixtures: Path) -> Path:
    """SynthPose layout (images/ shared by mpii/ and coco/) filled with the sample data."""
    _link_images(fixtures / "mpii", root / "images")
    _link_images(fixtures / "coco", root / "images")
    make_mpii_root(root / "mpii", fixtures / "mpii")
    shutil.rmtree(root / "mpii" / "images")
    (root / "coco" / "annotations").mkdir(parents=True)
    for split in ("train", "val"):
        annotations = root / "coco" / "annotations" / f"person_keypoints_{split}.json"
        shutil.copy(fixtures / "coco" / "test_coco.json", annotations)
    (root / "coco" / "person_detection_results").mkdir()
    shutil.copy(
        fixtures / "coco" / "test_coco_det_AP_H_56.json",
        root / "coco" / "person_detection_results" / "synthpose_val_detections.json",
    )
    return root


