"""COCO keypoint loaders: person records from ground-truth boxes and from person-detection results.

Follows the HRNet official code (leoxiaobin/deep-high-resolution-net.pytorch, ``lib/dataset/coco.py``):

- ``_load_coco_keypoint_annotation_kernal``: per image (in ``getImgIds`` order), the non-crowd
  annotations (``getAnnIds(iscrowd=False)``); the box is clipped to the image as
  ``x1 = max(0, x)``, ``y1 = max(0, y)``, ``x2 = min(W - 1, x1 + max(0, w - 1))``,
  ``y2 = min(H - 1, y1 + max(0, h - 1))`` and kept when ``area > 0`` and ``x2 >= x1``,
  ``y2 >= y1``, as ``[x1, y1, x2 - x1, y2 - y1]``; only the person category; persons without
  any labelled keypoint are skipped (HRNet tests ``max(keypoints) == 0``; here: no ``v > 0``).
- ``_xywh2cs``: centre = box centre; the box is widened or heightened to the model's aspect
  ratio W/H (e.g. 192/256 = 0.75), divided by ``pixel_std = 200`` and padded by 1.25.
- ``_load_coco_person_detection_results``: category 1 only, boxes with ``score <`` the
  threshold dropped; the box score is kept for rescoring (box score x mean keypoint score).
  Detection boxes are not clipped.

Visibility: ``visible`` = ``v > 0`` (labelled, whether or not occluded); the raw COCO flags
(0 unlabelled, 1 labelled but not visible, 2 visible; COCO data format page) stay in
``extras["keypoint_flags"]``. Image paths come from each image's ``file_name``; image files
are not opened here (the data check and the dataset's image read report missing ones).
"""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import numpy as np
from pycocotools.coco import COCO as CocoApi

from datamodules.records import PIXEL_STD, DatasetError, PersonRecord, read_json
from datamodules.skeletons import COCO

NUM_JOINTS = COCO.num_joints
BOX_PADDING = 1.25


BOX_RULES = ("hrnet", "mmpose")


def box_to_center_scale(
    box_xywh: np.ndarray | list[float], aspect_ratio: float, padding: float = BOX_PADDING, rule: str = "hrnet"
) -> tuple[np.ndarray, np.ndarray]:
    """Centre ``(..., 2)`` and scale ``(..., 2)`` (box w, h / 200) of boxes ``(..., 4)`` as x, y, w, h.

    ``hrnet`` (``_xywh2cs``, float64): the box keeps its centre and grows along one side to
    ``aspect_ratio`` (width / height of the model input), then is padded by ``padding``.
    ``mmpose`` (``bbox_xyxy2cs`` then ``TopdownAffine._fix_aspect_ratio``): the same in float32 on the
    float32 corners, padding first, so the centre and size equal mmpose's bit for bit.
    """
    box = np.asarray(box_xywh, dtype=np.float64)
    if box.shape[-1] != 4:
        raise ValueError(f"boxes must end in 4 values (x, y, w, h), got shape {box.shape}")
    if rule not in BOX_RULES:
        raise ValueError(f"unknown box rule {rule!r}; valid: {', '.join(BOX_RULES)}")
    if rule == "mmpose":
        return _mmpose_center_scale(box, aspect_ratio, padding)
    x, y, w, h = np.moveaxis(box, -1, 0)
    center = np.stack([x + w * 0.5, y + h * 0.5], axis=-1)
    width = np.where(w > aspect_ratio * h, w, h * aspect_ratio)
    height = np.where(w > aspect_ratio * h, w / aspect_ratio, h)
    scale = np.stack([width, height], axis=-1) / PIXEL_STD * padding
    return center, scale


def _mmpose_center_scale(box: np.ndarray, aspect_ratio: float, padding: float) -> tuple[np.ndarray, np.ndarray]:
    """mmpose's float32 centre and padded, aspect-fixed size, returned as float64 centre and size / 200."""
    x1, y1 = box[..., 0].astype(np.float32), box[..., 1].astype(np.float32)
    x2 = (box[..., 0] + box[..., 2]).astype(np.float32)
    y2 = (box[..., 1] + box[..., 3]).astype(np.float32)
    padding32, aspect32 = np.float32(padding), np.float32(aspect_ratio)
    center = np.stack([(x1 + x2) * np.float32(0.5), (y1 + y2) * np.float32(0.5)], axis=-1)
    w, h = (x2 - x1) * padding32, (y2 - y1) * padding32
    wider = w > h * aspect32
    size = np.stack([np.where(wider, w, h * aspect32), np.where(wider, w / aspect32, h)], axis=-1)
    return center.astype(np.float64), size.astype(np.float64) / PIXEL_STD


def load_coco_api(annotation_path: Path) -> CocoApi:
    """A pycocotools ``COCO`` index of a keypoint annotation file; bad JSON or layout names the file."""
    annotation_path = Path(annotation_path)
    data = read_json(annotation_path, "annotation file")
    if not isinstance(data, dict):
        raise DatasetError(f"{annotation_path}: expected a COCO annotation object, found a {type(data).__name__}")
    missing = [key for key in ("images", "annotations", "categories") if key not in data]
    if missing:
        raise DatasetError(f"{annotation_path}: missing key(s) {', '.join(missing)}")
    for i, image in enumerate(data["images"]):
        absent = [k for k in ("id", "file_name", "width", "height") if k not in image]
        if absent:
            raise DatasetError(f"{annotation_path}: images[{i}] lacks key(s) {', '.join(absent)}")
    api = CocoApi()
    api.dataset = data
    # createIndex prints progress lines; the harness keeps stdout for its own output.
    with contextlib.redirect_stdout(io.StringIO()):
        try:
            api.createIndex()
        except (KeyError, TypeError) as error:
            raise DatasetError(f"{annotation_path}: malformed COCO layout ({error!r})") from None
    return api


def _person_category(api: CocoApi, path: Path) -> int:
    ids = api.getCatIds(catNms=["person"])
    if not ids:
        raise DatasetError(f"{path}: no 'person' category in categories")
    return int(ids[0])


def _clean_box(box: list[float], width: float, height: float, rule: str = "hrnet") -> np.ndarray | None:
    """The clipped box as [x1, y1, x2 - x1, y2 - y1], or None when nothing is left.

    ``hrnet``: ``x2 = min(W - 1, x1 + max(0, w - 1))``; ``mmpose``: ``x2 = clip(x + w, 0, W - 1)``
    on float32 corners, and a box of zero width or height is dropped (``_is_valid_instance``).
    """
    x, y, w, h = (float(v) for v in box)
    if rule == "mmpose":
        left, top = np.float32(np.clip(x, 0, width - 1)), np.float32(np.clip(y, 0, height - 1))
        right, bottom = np.float32(np.clip(x + w, 0, width - 1)), np.float32(np.clip(y + h, 0, height - 1))
        if right - left <= 0 or bottom - top <= 0:
            return None
        # Corners stay float32 values; left + (right - left) in float64 gives right back exactly.
        return np.array([left, top, float(right) - float(left), float(bottom) - float(top)], dtype=np.float64)
    x1, y1 = max(0.0, x), max(0.0, y)
    x2 = min(width - 1.0, x1 + max(0.0, w - 1.0))
    y2 = min(height - 1.0, y1 + max(0.0, h - 1.0))
    if x2 < x1 or y2 < y1:
        return None
    return np.array([x1, y1, x2 - x1, y2 - y1], dtype=np.float64)


def _keypoint_array(ann: dict, path: Path) -> np.ndarray:
    """``(17, 3)`` x, y, v of one annotation; a wrong length names the file and the annotation."""
    raw = ann.get("keypoints")
    if raw is None:
        raise DatasetError(f"{path}: annotation id {ann.get('id')} has no 'keypoints'")
    values = np.asarray(raw, dtype=np.float64)
    if values.shape != (NUM_JOINTS * 3,):
        raise DatasetError(
            f"{path}: annotation id {ann.get('id')} has {values.size} keypoint values "
            f"({values.size / 3:g} joints), expected {NUM_JOINTS * 3} ({NUM_JOINTS} joints x [x, y, v])"
        )
    values = values.reshape(NUM_JOINTS, 3)
    if not np.isfinite(values[:, 2]).all():
        raise DatasetError(f"{path}: annotation id {ann.get('id')} has non-finite keypoint flags "
                           f"{values[:, 2].tolist()}")
    bad = np.flatnonzero((values[:, 2] > 0) & ~np.isfinite(values[:, :2]).all(axis=1))
    if bad.size:
        joint = int(bad[0])
        raise DatasetError(
            f"{path}: annotation id {ann.get('id')} has labelled keypoint {joint} ({COCO.joints[joint]}) "
            f"at non-finite {values[joint, :2].tolist()}"
        )
    return values


def _finite_box(ann: dict, path: Path) -> None:
    """A ``bbox`` of 4 finite numbers and a finite ``area``; else an error naming the file and annotation."""
    try:
        box = np.asarray(ann["bbox"], dtype=np.float64)
        area = float(ann["area"])
    except (TypeError, ValueError) as error:
        raise DatasetError(f"{path}: annotation id {ann.get('id')} has a non-numeric bbox or area ({error})") from None
    if box.shape != (4,) or not np.isfinite(box).all():
        raise DatasetError(f"{path}: annotation id {ann.get('id')} has bbox {box.tolist()}, "
                           "expected 4 finite x, y, w, h")
    if not np.isfinite(area):
        raise DatasetError(f"{path}: annotation id {ann.get('id')} has a non-finite area {area}")


def load_coco_records(
    annotation_path: Path, image_dir: Path, aspect_ratio: float, *, problems: list[str] | None = None,
    box_rule: str = "hrnet",
) -> list[PersonRecord]:
    """Person records from the ground-truth boxes of a COCO keypoint file (HRNet kernel; see module doc).

    With ``problems`` given, a malformed annotation is described there and skipped instead of
    raising :class:`DatasetError`. ``box_rule`` (``hrnet`` or ``mmpose``) clips and frames the boxes
    as that code base does (``pixelgrid``'s ``coco_gt_box``).
    """
    annotation_path, image_dir = Path(annotation_path), Path(image_dir)
    api = load_coco_api(annotation_path)
    person = _person_category(api, annotation_path)
    source = str(annotation_path)
    records: list[PersonRecord] = []
    for image_id in api.getImgIds():
        image = api.imgs[image_id]
        width, height = float(image["width"]), float(image["height"])
        for ann in api.loadAnns(api.getAnnIds(imgIds=image_id, iscrowd=False)):
            try:
                if ann.get("category_id") != person:
                    continue
                missing = [k for k in ("bbox", "area") if k not in ann]
                if missing:
                    raise DatasetError(f"{annotation_path}: annotation id {ann.get('id')} lacks key(s) "
                                       f"{', '.join(missing)}")
                _finite_box(ann, annotation_path)
                keypoints = _keypoint_array(ann, annotation_path)
            except DatasetError as error:
                if problems is None:
                    raise
                problems.append(str(error))
                continue
            clean = _clean_box(ann["bbox"], width, height, box_rule)
            if clean is None or ann["area"] <= 0 or not (keypoints[:, 2] > 0).any():
                continue
            center, scale = box_to_center_scale(clean, aspect_ratio, rule=box_rule)
            records.append(
                PersonRecord(
                    image=str(image_dir / image["file_name"]),
                    image_id=int(image_id),
                    center=center,
                    scale=scale,
                    keypoints=keypoints[:, :2].copy(),
                    visible=keypoints[:, 2] > 0,
                    bbox=np.asarray(ann["bbox"], dtype=np.float64),
                    area=float(ann["area"]),
                    box_score=1.0,
                    extras={
                        "annotation_file": source,
                        "annotation_id": ann.get("id"),
                        "keypoint_flags": keypoints[:, 2].astype(np.int64),
                        "clean_bbox": clean,
                        "image_size": (int(width), int(height)),
                    },
                )
            )
    return records


def load_coco_detection_records(
    annotation_path: Path,
    image_dir: Path,
    detection_path: Path,
    aspect_ratio: float,
    score_threshold: float = 0.0,
    box_rule: str = "hrnet",
) -> list[PersonRecord]:
    """Person records from a COCO-results detection file (category 1, ``score >= score_threshold``).

    Keypoints are zeros and ``visible`` all False; ``box_score`` keeps the detector score,
    ``bbox`` the detected box and ``area`` its w x h.
    Image file names come from the annotation file; a detection on an image it does not list is
    an error naming the detection file and the image id.
    """
    annotation_path, image_dir, detection_path = Path(annotation_path), Path(image_dir), Path(detection_path)
    api = load_coco_api(annotation_path)
    detections = read_json(detection_path, "detection file")
    if not isinstance(detections, list):
        raise DatasetError(f"{detection_path}: expected a list of detections, found a {type(detections).__name__}")
    kept: list[tuple[int, dict]] = []
    for index, det in enumerate(detections):
        absent = [k for k in ("image_id", "category_id", "bbox", "score") if not isinstance(det, dict) or k not in det]
        if absent:
            raise DatasetError(f"{detection_path}: detection {index} lacks key(s) {', '.join(absent)}")
        if not np.isfinite(float(det["score"])):
            raise DatasetError(f"{detection_path}: detection {index} has a non-finite score {det['score']}")
        if det["category_id"] != 1 or det["score"] < score_threshold:
            continue
        if det["image_id"] not in api.imgs:
            raise DatasetError(f"{detection_path}: detection {index} is on image id {det['image_id']}, "
                               f"not in {annotation_path}")
        if len(det["bbox"]) != 4 or not np.isfinite(np.asarray(det["bbox"], dtype=np.float64)).all():
            raise DatasetError(f"{detection_path}: detection {index} has bbox {det['bbox']}, "
                               "expected 4 finite x, y, w, h")
        kept.append((index, det))
    if not kept:
        return []
    boxes = np.array([det["bbox"] for _, det in kept], dtype=np.float64)
    if box_rule == "mmpose":
        # mmpose reads detections as float32 x, y, w, h and adds them in float32 (bbox_xywh2xyxy).
        corners = boxes.astype(np.float32)
        far = (corners[:, :2] + corners[:, 2:]).astype(np.float64)
        boxes = np.concatenate([corners[:, :2].astype(np.float64), far - corners[:, :2]], axis=1)
    centers, scales = box_to_center_scale(boxes, aspect_ratio, rule=box_rule)
    source = str(detection_path)
    return [
        PersonRecord(
            image=str(image_dir / api.imgs[det["image_id"]]["file_name"]),
            image_id=int(det["image_id"]),
            center=centers[i],
            scale=scales[i],
            keypoints=np.zeros((NUM_JOINTS, 2), dtype=np.float64),
            visible=np.zeros(NUM_JOINTS, dtype=bool),
            bbox=boxes[i],
            area=float(boxes[i, 2] * boxes[i, 3]),
            box_score=float(det["score"]),
            extras={"detection_file": source, "detection_index": index},
        )
        for i, (index, det) in enumerate(kept)
    ]
