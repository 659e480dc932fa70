"""MPII Human Pose loaders: the JSON person list and the ``gt_valid.mat`` evaluation ground truth.

Formats and conventions follow the HRNet official code (leoxiaobin/deep-high-resolution-net.pytorch,
``lib/dataset/mpii.py``), which is also what SimpleBaseline and DarkPose use:

- ``annot/{train,valid}.json`` is a list of persons with ``image``, ``center`` [x, y], ``scale``
  (person height / 200 px), ``joints`` 16 x [x, y] and ``joints_vis`` 16 x 0/1, in MATLAB
  1-based pixels. ``_get_db`` moves the centre down by ``15 * scale`` and enlarges the scale
  by 1.25 "to avoid cropping limbs" (only when ``center[0] != -1``), then subtracts 1 from the
  centre and the joints to make them 0-based; the scale becomes (s, s).
- ``annot/gt_valid.mat`` (the 2,958-person validation split of Tompson et al., CVPR'15) holds
  ``dataset_joints`` (joint names), ``jnt_missing`` (16, N), ``pos_gt_src`` (16, 2, N) in
  1-based pixels and ``headboxes_src`` (2, 2, N) as [corner, xy, person]; ``evaluate`` in the
  same file reads them with ``scipy.io.loadmat`` and takes the head size from
  ``headboxes_src[1] - headboxes_src[0]``. Here everything is made 0-based and person-first.

The JSON ``valid.json`` and ``gt_valid.mat`` list the same persons in the same order (HRNet's
evaluation pairs prediction ``i`` with ground truth ``i``); :func:`attach_ground_truth` checks that.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from datamodules.records import DatasetError, PersonRecord, read_json, read_mat
from datamodules.skeletons import MPII

NUM_JOINTS = MPII.num_joints

# Joint names as ``gt_valid.mat`` spells them, in MPII-16 order (HRNet mpii.py ``evaluate``).
MAT_JOINT_NAMES: tuple[str, ...] = (
    "rank", "rkne", "rhip", "lhip", "lkne", "lank", "pelv", "thor", "neck", "head", "rwri",
    "relb", "rsho", "lsho", "lelb", "lwri",
)

_JOINT_TOLERANCE_PX = 1e-3
"""``valid.json`` stores 4 decimals; anything further apart than this is a different person."""


@dataclass(frozen=True)
class MPIIGroundTruth:
    """The evaluation ground truth of ``gt_valid.mat``, 0-based and person-first.

    Shapes: ``joint_names`` (16,) in MPII-16 order; ``missing`` (N, 16) bool, true where the
    joint is not annotated; ``joints`` (N, 16, 2); ``headboxes`` (N, 2, 2) as [[x1, y1], [x2, y2]].
    """

    joint_names: np.ndarray
    missing: np.ndarray
    joints: np.ndarray
    headboxes: np.ndarray
    path: Path | None = None

    def __len__(self) -> int:
        return int(self.joints.shape[0])


def _entry_arrays(entry: object, index: int, path: Path) -> tuple[str, np.ndarray, float, np.ndarray, np.ndarray]:
    """Validate one JSON person and return (image, center (2,), scale, joints (16, 2), joints_vis (16,)).

    Checked at load time, so a bad value names file and entry instead of surfacing as a batch
    index in a codec or a NaN metric after an epoch: finite centre, positive scale, finite
    annotated joints (an unannotated joint's coordinates are never read).
    """
    if not isinstance(entry, dict):
        raise DatasetError(f"{path}: entry {index} is a {type(entry).__name__}, expected an object")
    missing = [key for key in ("image", "center", "scale", "joints", "joints_vis") if key not in entry]
    if missing:
        raise DatasetError(f"{path}: entry {index} lacks key(s) {', '.join(missing)}")
    image = entry["image"]
    try:
        center = np.asarray(entry["center"], dtype=np.float64)
        scale = float(entry["scale"])
        joints = np.asarray(entry["joints"], dtype=np.float64)
        joints_vis = np.asarray(entry["joints_vis"], dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise DatasetError(f"{path}: entry {index} (image {image}) has a non-numeric value ({error})") from None
    if center.shape != (2,):
        raise DatasetError(f"{path}: entry {index} (image {image}) has center of shape {center.shape}, expected (2,)")
    if joints.ndim != 2 or joints.shape[0] != NUM_JOINTS or joints.shape[1] < 2:
        raise DatasetError(
            f"{path}: entry {index} (image {image}) has joints of shape {joints.shape}, "
            f"expected {NUM_JOINTS} joints x [x, y]"
        )
    if joints_vis.shape != (NUM_JOINTS,):
        raise DatasetError(
            f"{path}: entry {index} (image {image}) has joints_vis of shape {joints_vis.shape}, "
            f"expected ({NUM_JOINTS},)"
        )
    where = f"{path}: entry {index} (image {image})"
    if not np.isfinite(center).all():
        raise DatasetError(f"{where} has a non-finite center {center.tolist()}")
    if not (np.isfinite(scale) and scale > 0):
        raise DatasetError(f"{where} has scale {scale}, expected a positive number")
    if not np.isfinite(joints_vis).all():
        raise DatasetError(f"{where} has a non-finite joints_vis {joints_vis.tolist()}")
    bad = np.flatnonzero((joints_vis > 0) & ~np.isfinite(joints[:, :2]).all(axis=1))
    if bad.size:
        joint = int(bad[0])
        raise DatasetError(
            f"{where} has annotated joint {joint} ({MPII.joints[joint]}) at non-finite {joints[joint, :2].tolist()}"
        )
    return str(image), center, scale, joints[:, :2], joints_vis


def load_mpii_annotations(
    json_path: Path, image_dir: Path, *, problems: list[str] | None = None
) -> list[PersonRecord]:
    """Person records from an MPII JSON annotation file (HRNet ``annot/*.json`` layout).

    Centre and joints become 0-based; the centre moves down by 15 x scale and the scale grows
    by 1.25 as in HRNet ``MPIIDataset._get_db``; ``scale`` is stored as (s, s). ``image_id`` is
    a running index over distinct images in file order. With ``problems`` given, a malformed
    entry is described there and skipped instead of raising :class:`DatasetError`.
    """
    json_path, image_dir = Path(json_path), Path(image_dir)
    data = read_json(json_path)
    if not isinstance(data, list):
        raise DatasetError(f"{json_path}: expected a list of persons, found a {type(data).__name__}")
    records: list[PersonRecord] = []
    image_ids: dict[str, int] = {}
    source = str(json_path)
    for index, entry in enumerate(data):
        try:
            image, center, scale, joints, joints_vis = _entry_arrays(entry, index, json_path)
        except DatasetError as error:
            if problems is None:
                raise
            problems.append(str(error))
            continue
        center = center.copy()
        scale_wh = np.array([scale, scale], dtype=np.float64)
        # HRNet: shift and enlarge only for a real centre (the MPII test set marks none with -1).
        if center[0] != -1:
            center[1] = center[1] + 15.0 * scale_wh[1]
            scale_wh = scale_wh * 1.25
        image_id = image_ids.setdefault(image, len(image_ids))
        records.append(
            PersonRecord(
                image=str(image_dir / image),
                image_id=image_id,
                center=center - 1.0,
                scale=scale_wh,
                keypoints=joints - 1.0,
                visible=joints_vis > 0,
                extras={"annotation_file": source, "entry": index},
            )
        )
    return records


def _mat_field(mat: dict, key: str, path: Path) -> np.ndarray:
    if key not in mat:
        raise DatasetError(f"{path}: missing key {key!r} "
                           "(expected dataset_joints, jnt_missing, pos_gt_src, headboxes_src)")
    return np.asarray(mat[key])


def _joint_names(raw: np.ndarray, path: Path) -> list[str]:
    """``dataset_joints`` is a MATLAB cell array: loadmat gives an object array of string arrays."""
    names = []
    for item in raw.ravel():
        value = np.asarray(item).ravel()
        names.append(str(value[0]).strip() if value.size else "")
    if len(names) != NUM_JOINTS:
        raise DatasetError(f"{path}: dataset_joints has {len(names)} names, expected {NUM_JOINTS}")
    return names


def _mpii_order(names: list[str], path: Path) -> np.ndarray:
    """Index array that puts the file's joints in MPII-16 order (names as in the .mat or the skeleton)."""
    lookup = {n: i for i, n in enumerate(MAT_JOINT_NAMES)} | {n: i for i, n in enumerate(MPII.joints)}
    unknown = [n for n in names if n not in lookup]
    if unknown:
        raise DatasetError(f"{path}: dataset_joints has unknown joint name(s) {unknown}; "
                           f"expected {list(MAT_JOINT_NAMES)}")
    position = np.array([lookup[n] for n in names])
    if sorted(position.tolist()) != list(range(NUM_JOINTS)):
        raise DatasetError(f"{path}: dataset_joints repeats a joint: {names}")
    return np.argsort(position)


def load_mpii_ground_truth(mat_path: Path) -> MPIIGroundTruth:
    """Read ``gt_valid.mat`` (HRNet mpii.py ``evaluate`` layout) into 0-based person-first arrays."""
    mat_path = Path(mat_path)
    mat = read_mat(mat_path, "ground-truth file")
    names = _joint_names(_mat_field(mat, "dataset_joints", mat_path), mat_path)
    order = _mpii_order(names, mat_path)
    missing = _mat_field(mat, "jnt_missing", mat_path)
    pos = _mat_field(mat, "pos_gt_src", mat_path)
    heads = _mat_field(mat, "headboxes_src", mat_path)
    if pos.ndim != 3 or pos.shape[:2] != (NUM_JOINTS, 2):
        raise DatasetError(f"{mat_path}: pos_gt_src has shape {pos.shape}, expected ({NUM_JOINTS}, 2, N)")
    count = pos.shape[2]
    if missing.shape != (NUM_JOINTS, count):
        raise DatasetError(f"{mat_path}: jnt_missing has shape {missing.shape}, expected ({NUM_JOINTS}, {count})")
    if heads.shape != (2, 2, count):
        raise DatasetError(f"{mat_path}: headboxes_src has shape {heads.shape}, expected (2, 2, {count})")
    return MPIIGroundTruth(
        joint_names=np.array(names)[order],
        missing=missing.T[:, order].astype(bool),
        joints=np.transpose(pos, (2, 0, 1))[:, order].astype(np.float64) - 1.0,
        headboxes=np.transpose(heads, (2, 0, 1)).astype(np.float64) - 1.0,
        path=mat_path,
    )


def attach_ground_truth(records: list[PersonRecord], gt: MPIIGroundTruth) -> list[PersonRecord]:
    """New records carrying the head boxes of ``gt``, joined by order after checking that they match.

    Raises :class:`DatasetError` when the counts differ (naming both files and counts) or when an
    annotated joint of record ``i`` is more than 1e-3 px from the ground truth's (naming ``i``).
    """
    gt_name = str(gt.path) if gt.path is not None else "the ground truth"
    sources = sorted({str(r.extras.get("annotation_file", "the annotation records")) for r in records})
    records_name = ", ".join(sources) if sources else "the annotation records"
    if len(records) != len(gt):
        raise DatasetError(f"{gt_name} has {len(gt)} persons but {records_name} has {len(records)}; "
                           "they must match by order")
    if not records:
        return []
    keypoints = np.stack([r.keypoints for r in records])
    annotated = np.stack([r.visible for r in records]) & ~gt.missing
    far = (np.abs(keypoints - gt.joints).max(axis=-1) > _JOINT_TOLERANCE_PX) & annotated
    bad = np.flatnonzero(far.any(axis=1))
    if bad.size:
        first = int(bad[0])
        joint = MPII.joints[int(np.flatnonzero(far[first])[0])]
        raise DatasetError(
            f"{records_name} and {gt_name} disagree at record {first} (image {records[first].image}, joint {joint}: "
            f"{keypoints[first, MPII.index(joint)].tolist()} vs {gt.joints[first, MPII.index(joint)].tolist()}); "
            f"{bad.size} record(s) differ, first indices {bad[:10].tolist()}"
        )
    return [replace(r, headbox=gt.headboxes[i].copy()) for i, r in enumerate(records)]
