"""SynthPose: PoseBench's embedded synthetic data set, drawn procedurally so everything runs offline.

``generate_synthpose(out, num_train, num_val, seed)`` writes images and annotations in the real
MPII and COCO file formats (layouts in README.md, "Datasets"), so the project's real loaders,
transforms and metrics run unchanged on it. Same seed, same bytes: every image draws from its own
``numpy`` generator seeded by (seed, split, image index), so images do not depend on each other
or on the counts, and files are written with fixed formatting.

What an image holds
    A textured background (low-resolution noise upsampled with ``cv2.resize``, a colour ramp,
    sometimes stripes, fine noise), distractor shapes, 1 to 3 articulated figures (smaller ones
    drawn first, so later-drawn figures occlude earlier ones), then occluders (rectangles and
    blobs in front of the figures), then a little photometric jitter. Limbs are anti-aliased
    capsules (thick ``cv2.line`` with round caps), the torso a polygon, the head an ellipse with
    hair, eyes, nose and ears that follow the head's yaw.

The figure (21 points: the 16 MPII joints in MPII order, then nose, l_eye, r_eye, l_ear, r_ear)
    A kinematic tree rooted at the pelvis: torso -> neck -> head, shoulders -> elbows -> wrists,
    hips -> knees -> ankles. Segment lengths are fractions of the stature H, approximately those
    of Drillis & Contini (1966) as drawn in Winter, *Biomechanics and Motor Control of Human
    Movement*, Fig. 4.1 (shoulder height 0.818H, chin 0.870H, hip 0.530H, knee 0.285H, ankle
    0.039H, elbow 0.630H, wrist 0.485H, shoulder width 0.259H, hip width 0.191H, hand 0.108H,
    foot 0.152H); the head breadth (about 0.09H) and limb thicknesses are rough guesses. Joint
    angles are 2-D (image-plane) angles with plausible ranges: arms from slightly across the body
    to overhead, elbows bent up to about 140 degrees, hips abducted in front views and flexed
    (forward up to about 90 degrees) in side views, knees bending backwards, neck and head tilts
    of a few tens of degrees, segments foreshortened by out-of-plane motion.

Left and right (the convention)
    ``left``/``right`` are the person's own sides, as in MPII and COCO, so the datasets' flip
    pairs mean the same here. A figure has a body yaw: 0 faces the camera, pi shows the back.
    A frontal upright figure has its left shoulder, hip, eye and ear at larger image x than the
    right ones (the person's left is on the viewer's right); seen from the back it is the
    other way round. Face points lie on the head at fixed longitudes (nose 0, eyes +-0.45 rad,
    ears +-1.65 rad, left positive) and move with the head yaw; a face point turned away from
    the camera (on the far side of the head) is not labelled, as COCO annotators leave it.

Annotation semantics (as in the real files)
    - A point outside the image is unannotated everywhere: MPII ``joints_vis`` 0 with joints
      (-1, -1) like the real JSON (fixture ``test_mpii.json``), ``jnt_missing`` 1 in
      ``gt_valid.mat``, COCO (0, 0, 0).
    - A point covered by an occluder or by a later-drawn figure (its pixel in the rendered label
      map, see :func:`joint_occlusion`) is labelled but not visible: COCO v=1, MPII
      ``joints_vis`` 1 (MPII's JSON marks annotated joints, occluded or not). Otherwise COCO v=2.
    - A figure is not annotated at all when fewer than 4 of its MPII joints lie inside the image
      or its visible silhouette has fewer than 64 pixels (it is fully hidden).
    - MPII ``center``/``scale``: the HRNet loader (lib/dataset/mpii.py ``_get_db``) moves the
      centre down by 15 x scale, multiplies the scale by 1.25 and subtracts 1; the centre and
      scale here are chosen so that the resulting 250 x scale square holds every annotated joint:
      ``scale`` = max(joint-box side, 0.3 H) / 200, ``center`` = joint-box centre minus 15 x scale in y.
    - Head boxes (``headboxes_src``) are the axis-aligned box of the head ellipse, so that
      0.6 x diagonal (the MPII head size) is about 0.1 H for an upright head, a little under the
      0.13 H from upper neck to head top.
    - COCO ``bbox`` and ``area`` are those of the figure's visible silhouette in the label map
      (bbox as x, y = first pixel, w, h = pixel counts, which is what HRNet coco.py's clipping
      ``x2 = x1 + w - 1`` assumes); ``segmentation`` holds its outer contours as polygons.
    - Coordinates: 0-based pixels with pixel centres at integers (COCO files), MATLAB 1-based
      (MPII files), quantised to 0.01 px before anything is computed so the written numbers are
      exactly the ones used.

File formats and their sources
    - MPII JSON (``image``, ``center``, ``scale``, ``joints``, ``joints_vis``): the HRNet
      annotation files (leoxiaobin/deep-high-resolution-net.pytorch, lib/dataset/mpii.py) and the
      fixture ``test_mpii.json`` from mmpose's test data.
    - ``gt_valid.mat``: keys ``dataset_joints`` (1 x 16 cell of names, 'rank' ... 'lwri' with
      'thor' for the thorax, as public scripts that rebuild the file print its ``loadmat``
      contents; the list is shared with ``datamodules.mpii``), ``jnt_missing`` (16, N),
      ``pos_gt_src`` (16, 2, N) and ``headboxes_src`` (2, 2, N) with
      ``headboxes_src[:, :, i] = [[x1, y1], [x2, y2]]``, all 1-based; HRNet mpii.py ``evaluate`` reads them
      with ``scipy.io.loadmat`` (head size from ``headboxes_src[1] - headboxes_src[0]``). scipy's ``savemat``
      writes the creation time into the 116-byte text header; that header is replaced with a fixed text.
    - COCO keypoints (``images``, ``annotations``, ``categories`` with the person keypoint names
      and 1-based skeleton, exactly as in the real ``person_keypoints_val2017.json``) and COCO
      results-format detections (``image_id``, ``category_id``, ``bbox``, ``score``): the COCO
      data-format page and the fixtures ``test_coco.json`` / ``test_coco_det_AP_H_56.json``.
      The val detections are the annotated persons' boxes, jittered (score 0.75-1, 5% missed),
      plus a few random low-score (0.01-0.35) false positives, from a stream of their own.
    - LSP-extended (``generate_synthpose_lsp``): ``joints.mat`` with ``joints`` 14 x 3 x N (x, y 1-based and a
      visibility flag per joint) and ``images/im00001.jpg`` ..., the LSPET README's layout, one root per split.
"""

from __future__ import annotations

import hashlib
import io
import json
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import scipy.io
from tqdm import tqdm

from datamodules.mpii import MAT_JOINT_NAMES
from datamodules.records import PIXEL_STD, DatasetError
from datamodules.skeletons import COCO, LSP, MPII

GENERATOR_VERSION = "1.0"

JOINTS: tuple[str, ...] = MPII.joints + ("nose", "l_eye", "r_eye", "l_ear", "r_ear")
"""The 21 points of a SynthPose figure: MPII-16 in MPII order, then the COCO face points."""

NUM_JOINTS = len(JOINTS)
MPII_INDEX = np.arange(MPII.num_joints)
"""``(16,)`` indices into :data:`JOINTS` in MPII-16 order."""
COCO_INDEX = np.array([JOINTS.index(name) for name in COCO.joints])
"""``(17,)`` indices into :data:`JOINTS` in COCO-17 order (joints are matched by name)."""
FACE_INDEX = np.arange(MPII.num_joints, NUM_JOINTS)
LSP_INDEX = np.array([JOINTS.index("upper_neck" if name == "neck" else name) for name in LSP.joints])
"""``(14,)`` indices into :data:`JOINTS` in LSP-14 order (LSP's ``neck`` is MPII's ``upper_neck``)."""

SPLITS: tuple[str, ...] = ("train", "val")
_SPLIT_CODE = {"train": 0, "val": 1}
_SCENE_STREAM, _DETECTION_STREAM = 0, 1

IMAGE_SIDES: tuple[int, ...] = (192, 224, 256, 288, 320)
JPEG_QUALITY = 90
BACKGROUND_LABEL = 0
OCCLUDER_LABEL = 255
"""Label-map value of occluders; figures are 1, 2, 3 in drawing order, so a larger label is in front."""

MIN_INSIDE_JOINTS = 4
MIN_VISIBLE_AREA = 64
FACE_HIDDEN_DEPTH = -0.2
"""A face point whose toward-camera component (cosine of its longitude plus the head yaw) is below this is not
labelled."""

_MAT_HEADER = b"MATLAB 5.0 MAT-file, Platform: PoseBench SynthPose, Created by the generator (fixed text)".ljust(116)

COCO_CATEGORY: dict = {
    "supercategory": "person",
    "id": 1,
    "name": "person",
    "keypoints": [
        "nose", "left_eye", "right_eye", "left_ear", "right_ear", "left_shoulder", "right_shoulder",
        "left_elbow", "right_elbow", "left_wrist", "right_wrist", "left_hip", "right_hip", "left_knee",
        "right_knee", "left_ankle", "right_ankle",
    ],
    "skeleton": [
        [16, 14], [14, 12], [17, 15], [15, 13], [12, 13], [6, 12], [7, 13], [6, 7], [6, 8], [7, 9],
        [8, 10], [9, 11], [2, 3], [1, 2], [1, 3], [2, 4], [3, 5], [4, 6], [5, 7],
    ],
}

# Segment lengths and widths as fractions of the stature (see the module docstring).
_TRUNK = 0.818 - 0.530
_NECK = 0.870 - 0.818
_HEAD = 1.0 - 0.870
_UPPER_ARM = 0.818 - 0.630
_FOREARM = 0.630 - 0.485
_HAND = 0.108
_THIGH = 0.530 - 0.285
_SHANK = 0.285 - 0.039
_FOOT = 0.152
_SHOULDER_WIDTH = 0.259
_HIP_WIDTH = 0.191
_HEAD_HALF_LENGTH = 0.070
_HEAD_HALF_BREADTH = 0.047

# Face points on the head ellipse: longitude (rad, left positive), height along the head axis
# and radius, both in units of the ellipse's semi-axes. Order: nose, l_eye, r_eye, l_ear, r_ear.
_FACE_LONGITUDE = np.array([0.0, 0.45, -0.45, 1.65, -1.65])
_FACE_HEIGHT = np.array([-0.35, 0.02, 0.02, -0.08, -0.08])
_FACE_RADIUS = np.array([1.1, 0.92, 0.92, 1.0, 1.0])

_SHIFT = 4  # cv2 fixed-point bits: sub-pixel drawing
_ONE = 1 << _SHIFT

_SKIN_TONES = np.array(
    [[205, 225, 250], [170, 200, 235], [140, 180, 225], [110, 150, 200], [80, 115, 165], [55, 80, 120], [40, 60, 90]],
    dtype=np.float64,
)
_HAIR_TONES = np.array([[20, 20, 25], [30, 45, 70], [40, 80, 130], [120, 170, 210], [150, 150, 150]], dtype=np.float64)


@dataclass(frozen=True)
class FigurePose:
    """All the parameters of one figure; :func:`figure_geometry` turns them into points.

    Angles are in radians. ``rotation`` turns the whole figure about the pelvis (positive is
    clockwise on screen, image y pointing down). ``body_yaw``/``head_yaw``: 0 faces the camera,
    pi shows the back. Limb angles are image-plane angles measured from the parent segment's
    direction (from "straight down" for the upper arms and thighs), positive towards image +x of
    the unrotated figure; pairs are (left, right). ``foreshortening`` is (2, 4): per side, the
    projected fraction of upper arm, forearm, thigh and shank length.
    """

    stature: float
    pelvis: tuple[float, float]
    rotation: float = 0.0
    body_yaw: float = 0.0
    head_yaw: float = 0.0
    spine: float = 0.0
    neck: float = 0.0
    head: float = 0.0
    shoulders: tuple[float, float] = (0.0, 0.0)
    elbows: tuple[float, float] = (0.0, 0.0)
    hips: tuple[float, float] = (0.0, 0.0)
    knees: tuple[float, float] = (0.0, 0.0)
    foreshortening: tuple[tuple[float, ...], ...] = ((1.0,) * 4, (1.0,) * 4)
    build: float = 1.0


@dataclass(frozen=True)
class FigureGeometry:
    """Image-space geometry of one figure (pixels, 0-based, pixel centres at integers).

    ``keypoints`` (21, 2) in :data:`JOINTS` order; ``face_depth`` (5,) toward-camera component of
    the face points; ``torso`` (6, 2) polygon; ``hand_tips``/``toe_tips`` (2, 2) as (left, right);
    ``head_center`` (2,), ``head_axes`` (across, along) semi-axes, ``head_angle`` degrees of the
    across axis; ``hair_center``/``hair_axes`` likewise; ``left_depth`` > 0 when the left side is
    nearer the camera.
    """

    keypoints: np.ndarray
    face_depth: np.ndarray
    torso: np.ndarray
    hand_tips: np.ndarray
    toe_tips: np.ndarray
    head_center: np.ndarray
    head_axes: tuple[float, float]
    head_angle: float
    hair_center: np.ndarray
    hair_axes: tuple[float, float]
    left_depth: float

    @property
    def headbox(self) -> np.ndarray:
        """``(2, 2)`` [[x1, y1], [x2, y2]]: the axis-aligned box of the head ellipse."""
        across, along = self.head_axes
        theta = np.deg2rad(self.head_angle)
        half = np.array([np.hypot(across * np.cos(theta), along * np.sin(theta)),
                         np.hypot(across * np.sin(theta), along * np.cos(theta))])
        return np.stack([self.head_center - half, self.head_center + half])


@dataclass(frozen=True)
class ScenePerson:
    """One drawn figure and its annotation.

    ``label`` is its value in the scene's label map; ``keypoints`` (21, 2); ``inside``,
    ``occluded``, ``face_hidden`` (21,) bool; ``headbox`` (2, 2); ``bbox`` (4,) x, y, w, h of the
    visible silhouette; ``segmentation`` COCO polygons; ``annotated`` whether the files list it.
    """

    label: int
    pose: FigurePose
    keypoints: np.ndarray
    inside: np.ndarray
    occluded: np.ndarray
    face_hidden: np.ndarray
    headbox: np.ndarray
    bbox: np.ndarray
    area: int
    segmentation: list[list[float]]
    annotated: bool

    @property
    def coco_flags(self) -> np.ndarray:
        """``(21,)`` COCO flags: 0 unlabelled, 1 labelled but covered, 2 visible."""
        labelled = self.inside & ~self.face_hidden
        return np.where(labelled, np.where(self.occluded, 1, 2), 0)


@dataclass(frozen=True)
class Scene:
    """One rendered image: ``image`` (H, W, 3) uint8 BGR, ``labels`` (H, W) uint8 label map
    (0 background, figures 1.. in drawing order, :data:`OCCLUDER_LABEL` occluders), ``persons``."""

    image: np.ndarray
    labels: np.ndarray
    persons: tuple[ScenePerson, ...]


@dataclass(frozen=True)
class SynthPoseFiles:
    """Paths written by :func:`generate_synthpose`, and how many images and annotated persons."""

    root: Path
    image_dir: Path
    mpii_train: Path
    mpii_val: Path
    mpii_ground_truth: Path
    coco_train: Path
    coco_val: Path
    detections: Path
    manifest: Path
    counts: dict


# --------------------------------------------------------------------------- figure geometry


def _down(angle: np.ndarray | float) -> np.ndarray:
    """Unit vector(s) ``(..., 2)`` at ``angle`` from straight down (0, 1), positive towards +x."""
    angle = np.asarray(angle, dtype=np.float64)
    return np.stack([np.sin(angle), np.cos(angle)], axis=-1)


def figure_geometry(pose: FigurePose) -> FigureGeometry:
    """Points and drawing shapes of a figure; see :class:`FigurePose` for the conventions."""
    h = pose.stature
    c, s = np.cos(pose.body_yaw), np.sin(pose.body_yaw)
    side = np.array([1.0, -1.0])  # (left, right): the left side's image-lateral offset is +cos(yaw)
    spine_down = _down(pose.spine)
    up, lateral = -spine_down, np.array([spine_down[1], -spine_down[0]])

    pelvis = np.zeros(2)
    thorax = pelvis + up * _TRUNK * h
    shoulders = thorax + np.outer(side * c * 0.5 * _SHOULDER_WIDTH * h * pose.build, lateral)
    hips = pelvis + np.outer(side * c * 0.5 * _HIP_WIDTH * h * pose.build, lateral)
    short = np.asarray(pose.foreshortening, dtype=np.float64)

    upper_arm_angle = pose.spine + np.asarray(pose.shoulders)
    forearm_angle = upper_arm_angle + np.asarray(pose.elbows)
    elbows = shoulders + _down(upper_arm_angle) * (_UPPER_ARM * h * short[:, 0])[:, None]
    wrists = elbows + _down(forearm_angle) * (_FOREARM * h * short[:, 1])[:, None]
    hand_tips = wrists + _down(forearm_angle) * 0.6 * _HAND * h

    thigh_angle = np.asarray(pose.hips, dtype=np.float64)
    shank_angle = thigh_angle + np.asarray(pose.knees)
    knees = hips + _down(thigh_angle) * (_THIGH * h * short[:, 2])[:, None]
    ankles = knees + _down(shank_angle) * (_SHANK * h * short[:, 3])[:, None]
    # Toes point where the body faces: towards the camera they shrink to a stub.
    toe_tips = ankles + _down(shank_angle) * 0.03 * h + lateral * s * 0.75 * _FOOT * h

    neck_up = -_down(pose.spine + pose.neck)
    head_up = -_down(pose.spine + pose.neck + pose.head)
    head_lateral = np.array([-head_up[1], head_up[0]])
    upper_neck = thorax + neck_up * _NECK * h
    head_top = upper_neck + head_up * _HEAD * h
    along = _HEAD_HALF_LENGTH * h
    across = _HEAD_HALF_BREADTH * h * (1.0 + 0.15 * abs(np.sin(pose.head_yaw)))
    head_center = upper_neck + head_up * 0.5 * _HEAD * h

    turn = _FACE_LONGITUDE + pose.head_yaw
    face = (head_center + np.outer(_FACE_HEIGHT * along, head_up)
            + np.outer(_FACE_RADIUS * np.sin(turn) * across, head_lateral))
    back = max(0.0, -np.cos(pose.head_yaw))
    hair_center = (head_center + head_up * along * (0.55 - 0.45 * back)
                   - head_lateral * across * 0.3 * np.sin(pose.head_yaw))
    hair_axes = (across * 0.98, along * (0.5 + 0.45 * back))

    middle = 0.5 * (thorax + pelvis)
    torso_half = np.array([
        max(0.5 * _SHOULDER_WIDTH * abs(c), 0.07) * pose.build,
        max(0.4 * _SHOULDER_WIDTH * abs(c), 0.065) * pose.build,
        max(0.6 * _HIP_WIDTH * abs(c), 0.07) * pose.build,
    ]) * h
    spine_points = np.stack([thorax + up * 0.02 * h, middle, pelvis - up * 0.04 * h])
    torso = np.concatenate([spine_points + np.outer(torso_half, lateral),
                            (spine_points - np.outer(torso_half, lateral))[::-1]])

    keypoints = np.concatenate([
        np.stack([ankles[1], knees[1], hips[1], hips[0], knees[0], ankles[0], pelvis, thorax, upper_neck,
                  head_top, wrists[1], elbows[1], shoulders[1], shoulders[0], elbows[0], wrists[0]]),
        face,
    ])

    rotation = np.array([[np.cos(pose.rotation), -np.sin(pose.rotation)],
                         [np.sin(pose.rotation), np.cos(pose.rotation)]])
    origin = np.asarray(pose.pelvis, dtype=np.float64)

    def place(points: np.ndarray) -> np.ndarray:
        return points @ rotation.T + origin

    placed_lateral = rotation @ head_lateral
    return FigureGeometry(
        keypoints=np.round(place(keypoints), 2),
        face_depth=np.cos(turn),
        torso=place(torso),
        hand_tips=place(hand_tips),
        toe_tips=place(toe_tips),
        head_center=place(head_center),
        head_axes=(float(across), float(along)),
        head_angle=float(np.degrees(np.arctan2(placed_lateral[1], placed_lateral[0]))),
        hair_center=place(hair_center),
        hair_axes=(float(hair_axes[0]), float(hair_axes[1])),
        left_depth=float(-s),
    )


def sample_pose(rng: np.random.Generator, stature: float, pelvis: tuple[float, float]) -> FigurePose:
    """A random plausible pose (front, back and side views; see the module docstring)."""
    view = rng.random()
    if view < 0.55:
        body_yaw = rng.normal(0.0, 0.45)
    elif view < 0.85:
        body_yaw = np.pi + rng.normal(0.0, 0.45)
    else:
        body_yaw = rng.uniform(-np.pi, np.pi)
    c, s = np.cos(body_yaw), np.sin(body_yaw)
    frontal = abs(c)
    forward = np.sign(s) if abs(s) > 0.05 else rng.choice([-1.0, 1.0])
    rotation = rng.uniform(-np.pi, np.pi) if rng.random() < 0.08 else float(np.clip(rng.normal(0.0, 0.2), -0.6, 0.6))

    shoulders, elbows, hips, knees = [], [], [], []
    for side in (1.0, -1.0):
        # "Outward" in the image: the side's lateral direction, arbitrary in side views.
        outward = np.sign(side * c) if frontal > 0.2 else rng.choice([-1.0, 1.0])
        raise_kind = rng.random()
        abduction = (rng.uniform(-0.25, 0.6) if raise_kind < 0.5
                     else rng.uniform(0.6, 1.9) if raise_kind < 0.8 else rng.uniform(1.9, 3.0))
        shoulders.append(outward * abduction)
        bend_sign = forward if rng.random() > frontal else rng.choice([-1.0, 1.0])
        elbows.append(bend_sign * (rng.uniform(0.0, 2.4) if rng.random() < 0.7 else rng.uniform(0.0, 0.2)))
        if rng.random() < frontal:
            hips.append(outward * rng.uniform(-0.15, 0.5))
            knees.append(rng.choice([-1.0, 1.0]) * rng.uniform(0.0, 0.35))
        else:
            hips.append(forward * rng.uniform(-0.5, 1.6))
            knees.append(-forward * rng.uniform(0.0, 2.0))
    strong = rng.random((2, 4)) < 0.15
    foreshortening = np.where(strong, rng.uniform(0.4, 0.7, (2, 4)), rng.uniform(0.75, 1.0, (2, 4)))
    return FigurePose(
        stature=float(stature),
        pelvis=(float(pelvis[0]), float(pelvis[1])),
        rotation=float(rotation),
        body_yaw=float(body_yaw),
        head_yaw=float(body_yaw + np.clip(rng.normal(0.0, 0.35), -1.0, 1.0)),
        spine=float(np.clip(rng.normal(0.0, 0.12), -0.4, 0.4)),
        neck=float(np.clip(rng.normal(0.0, 0.1), -0.3, 0.3)),
        head=float(np.clip(rng.normal(0.0, 0.2), -0.5, 0.5)),
        shoulders=(float(shoulders[0]), float(shoulders[1])),
        elbows=(float(elbows[0]), float(elbows[1])),
        hips=(float(hips[0]), float(hips[1])),
        knees=(float(knees[0]), float(knees[1])),
        foreshortening=tuple(tuple(float(v) for v in row) for row in foreshortening),
        build=float(rng.uniform(0.85, 1.2)),
    )


# --------------------------------------------------------------------------- drawing


def _fixed(point: np.ndarray) -> tuple[int, int]:
    return int(round(float(point[0]) * _ONE)), int(round(float(point[1]) * _ONE))


def _colour(value: np.ndarray) -> tuple[float, float, float]:
    clipped = np.clip(value, 0, 255)
    return float(clipped[0]), float(clipped[1]), float(clipped[2])


class _Canvas:
    """Draws every shape twice: anti-aliased into the image and hard-edged into the label map."""

    def __init__(self, image: np.ndarray, labels: np.ndarray) -> None:
        self.image, self.labels = image, labels

    def capsule(self, a: np.ndarray, b: np.ndarray, thickness: float, colour: np.ndarray, label: int) -> None:
        width = max(2, int(round(thickness)))
        cv2.line(self.image, _fixed(a), _fixed(b), _colour(colour), width, cv2.LINE_AA, _SHIFT)
        if label:
            cv2.line(self.labels, _fixed(a), _fixed(b), label, width, cv2.LINE_8, _SHIFT)

    def polygon(self, points: np.ndarray, colour: np.ndarray, label: int) -> None:
        fixed = [np.round(points * _ONE).astype(np.int32).reshape(-1, 1, 2)]
        cv2.fillPoly(self.image, fixed, _colour(colour), cv2.LINE_AA, _SHIFT)
        if label:
            cv2.fillPoly(self.labels, fixed, label, cv2.LINE_8, _SHIFT)

    def ellipse(self, center: np.ndarray, axes: tuple[float, float], angle: float, colour: np.ndarray,
                label: int) -> None:
        fixed_axes = (max(1, int(round(axes[0] * _ONE))), max(1, int(round(axes[1] * _ONE))))
        cv2.ellipse(self.image, _fixed(center), fixed_axes, angle, 0, 360, _colour(colour), -1, cv2.LINE_AA, _SHIFT)
        if label:
            cv2.ellipse(self.labels, _fixed(center), fixed_axes, angle, 0, 360, label, -1, cv2.LINE_8, _SHIFT)


def _palette(rng: np.random.Generator) -> dict[str, np.ndarray]:
    skin = _SKIN_TONES[rng.integers(len(_SKIN_TONES))] + rng.uniform(-12, 12, 3)
    shirt = rng.uniform(15, 240, 3)
    trousers = rng.uniform(15, 200, 3)
    return {
        "skin": skin,
        "hair": _HAIR_TONES[rng.integers(len(_HAIR_TONES))] + rng.uniform(-10, 10, 3),
        "upper_arm": shirt,
        "forearm": shirt * 0.92 if rng.random() < 0.5 else skin,
        "torso": shirt,
        "thigh": trousers,
        "shank": trousers * 0.92 if rng.random() < 0.7 else skin,
        "shoe": rng.uniform(10, 90, 3),
        "eye": rng.uniform(10, 50, 3),
    }


def _draw_figure(canvas: _Canvas, geometry: FigureGeometry, pose: FigurePose, palette: dict, label: int) -> None:
    """Far limbs, torso, near leg, neck, head (ears, hair, eyes, nose), near arm."""
    k, h = geometry.keypoints, pose.stature * pose.build
    # (shoulder, elbow, wrist) and (hip, knee, ankle) indices per side (left, right).
    arms = ((13, 14, 15), (12, 11, 10))
    legs = ((3, 4, 5), (2, 1, 0))
    near = 0 if geometry.left_depth >= 0 else 1
    far = 1 - near

    def arm(i: int, shade: float) -> None:
        s, e, w = arms[i]
        canvas.capsule(k[s], k[e], 0.058 * h, palette["upper_arm"] * shade, label)
        canvas.capsule(k[e], k[w], 0.048 * h, palette["forearm"] * shade, label)
        canvas.capsule(k[w], geometry.hand_tips[i], 0.045 * h, palette["skin"] * shade, label)

    def leg(i: int, shade: float) -> None:
        hip, knee, ankle = legs[i]
        canvas.capsule(k[hip], k[knee], 0.088 * h, palette["thigh"] * shade, label)
        canvas.capsule(k[knee], k[ankle], 0.065 * h, palette["shank"] * shade, label)
        canvas.capsule(k[ankle], geometry.toe_tips[i], 0.042 * h, palette["shoe"] * shade, label)

    leg(far, 0.8)
    arm(far, 0.8)
    canvas.polygon(geometry.torso, palette["torso"], label)
    leg(near, 1.0)
    canvas.capsule(k[7], k[8], 0.055 * h, palette["skin"] * 0.95, label)
    ears, eyes, nose = (19, 20), (17, 18), 16
    depth = geometry.face_depth
    ear_axes = (0.014 * pose.stature, 0.024 * pose.stature)
    for ear in ears:
        if depth[ear - 16] > FACE_HIDDEN_DEPTH:
            canvas.ellipse(k[ear], ear_axes, geometry.head_angle, palette["skin"] * 0.88, label)
    canvas.ellipse(geometry.head_center, geometry.head_axes, geometry.head_angle, palette["skin"], label)
    canvas.ellipse(geometry.hair_center, geometry.hair_axes, geometry.head_angle, palette["hair"], label)
    eye_radius = (max(0.8, 0.011 * pose.stature),) * 2
    for eye in eyes:
        if depth[eye - 16] > 0.15:
            canvas.ellipse(k[eye], eye_radius, 0.0, palette["eye"], 0)
    if depth[nose - 16] > 0.2:
        canvas.ellipse(k[nose], (0.012 * pose.stature,) * 2, 0.0, palette["skin"] * 0.8, 0)
    arm(near, 1.0)


def _background(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """``(H, W, 3)`` float32: smooth colour blobs + a ramp + sometimes stripes + fine noise."""
    cells = int(rng.integers(2, 7))
    colours = rng.uniform(0, 255, (cells, cells, 3))
    # Pull the colours towards their grey level so most backgrounds are not a rainbow.
    grey = colours.mean(axis=2, keepdims=True)
    colours = grey + (colours - grey) * rng.uniform(0.2, 1.0)
    image = cv2.resize(colours.astype(np.float32), (width, height), interpolation=cv2.INTER_CUBIC)
    theta = rng.uniform(0, 2 * np.pi)
    ys = np.arange(height, dtype=np.float32) / max(height, width)
    xs = np.arange(width, dtype=np.float32) / max(height, width)
    ramp = np.add.outer(ys * np.float32(np.sin(theta)), xs * np.float32(np.cos(theta)))
    image += ramp[..., None] * rng.uniform(-90, 90, 3).astype(np.float32)
    if rng.random() < 0.4:
        phi = rng.uniform(0, np.pi)
        period = rng.uniform(6, 40) / max(height, width)
        across = np.add.outer(ys * np.float32(np.sin(phi)), xs * np.float32(np.cos(phi)))
        stripes = np.sin(across * np.float32(2 * np.pi / period))
        image += stripes[..., None] * rng.uniform(-40, 40, 3).astype(np.float32)
    coarse = rng.normal(0, rng.uniform(4, 20), (height // 4 + 1, width // 4 + 1, 3)).astype(np.float32)
    image += cv2.resize(coarse, (width, height), interpolation=cv2.INTER_LINEAR)
    image += rng.normal(0, rng.uniform(0, 6), (height, width, 1)).astype(np.float32)
    return image


def _random_shape(canvas: _Canvas, rng: np.random.Generator, center: np.ndarray, size: float, label: int) -> None:
    """A filled rectangle, ellipse, blob polygon or stick of about ``size`` px, random colour."""
    colour = rng.uniform(0, 255, 3)
    kind = rng.integers(4)
    angle = rng.uniform(0, 180)
    if kind == 0:
        box_size = (size * rng.uniform(0.4, 1.2), size * rng.uniform(0.4, 1.2))
        box = ((float(center[0]), float(center[1])), box_size, angle)
        canvas.polygon(cv2.boxPoints(box), colour, label)
    elif kind == 1:
        canvas.ellipse(center, (size * rng.uniform(0.2, 0.6), size * rng.uniform(0.2, 0.6)), angle, colour, label)
    elif kind == 2:
        count = int(rng.integers(5, 10))
        turns = np.sort(rng.uniform(0, 2 * np.pi, count))
        radii = size * rng.uniform(0.2, 0.6, count)
        canvas.polygon(center + np.stack([np.cos(turns), np.sin(turns)], axis=1) * radii[:, None], colour, label)
    else:
        direction = _down(np.deg2rad(angle)) * size * 0.6
        canvas.capsule(center - direction, center + direction, size * rng.uniform(0.1, 0.3), colour, label)


def _texture(image: np.ndarray, mask: np.ndarray, rng: np.random.Generator, strength: float) -> None:
    """Modulate the masked pixels (in place) by smooth multiplicative noise."""
    height, width = mask.shape
    grid = rng.uniform(-strength, strength, (int(rng.integers(3, 9)), int(rng.integers(3, 9)))).astype(np.float32)
    factor = 1.0 + cv2.resize(grid, (width, height), interpolation=cv2.INTER_LINEAR)
    pixels = image[mask].astype(np.float32) * factor[mask][:, None]
    image[mask] = np.clip(pixels, 0, 255).astype(np.uint8)


def joint_occlusion(labels: np.ndarray, keypoints: np.ndarray, label: int) -> tuple[np.ndarray, np.ndarray]:
    """Which points of the figure drawn with ``label`` are inside the image and which are covered.

    ``labels`` (H, W) is the scene's label map, ``keypoints`` (K, 2) 0-based pixels. A point is
    inside when 0 <= x <= W - 1 and 0 <= y <= H - 1; it is covered when the label of its pixel
    (the nearest pixel centre) is larger than ``label``, i.e. a later-drawn figure or an
    occluder. Returns ``(inside (K,), occluded (K,))`` bool.
    """
    height, width = labels.shape
    x, y = keypoints[:, 0], keypoints[:, 1]
    inside = (x >= 0) & (x <= width - 1) & (y >= 0) & (y <= height - 1)
    cols = np.clip(np.floor(x + 0.5), 0, width - 1).astype(np.int64)
    rows = np.clip(np.floor(y + 0.5), 0, height - 1).astype(np.int64)
    return inside, inside & (labels[rows, cols] > label)


def _silhouette(mask: np.ndarray) -> tuple[np.ndarray, int, list[list[float]]]:
    """Box (x, y, w, h), pixel area and outer-contour polygons of a binary mask ``(H, W)`` uint8."""
    area = int(cv2.countNonZero(mask))
    if area == 0:
        return np.zeros(4), 0, []
    x, y, w, h = cv2.boundingRect(mask)
    contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    polygons = []
    for contour in contours:
        simple = cv2.approxPolyDP(contour, 1.0, True).reshape(-1, 2)
        if len(simple) >= 3:
            polygons.append([float(v) for v in simple.ravel()])
    if not polygons:
        right, bottom = x + w - 1, y + h - 1
        polygons = [[float(v) for v in (x, y, right, y, right, bottom, x, bottom)]]
    return np.array([x, y, w, h], dtype=np.float64), area, polygons


def _image_rng(seed: int, split: str, index: int, stream: int) -> np.random.Generator:
    return np.random.default_rng([seed, _SPLIT_CODE[split], index, stream])


def render_scene(seed: int, split: str, index: int) -> Scene:
    """Draw image ``index`` of ``split`` for ``seed`` (the exact image :func:`generate_synthpose` writes)."""
    if split not in _SPLIT_CODE:
        raise ValueError(f"unknown split {split!r}; expected one of {', '.join(SPLITS)}")
    rng = _image_rng(seed, split, index, _SCENE_STREAM)
    height, width = (int(v) for v in rng.choice(IMAGE_SIDES, 2))
    side = min(height, width)
    image = np.clip(_background(rng, height, width), 0, 255).astype(np.uint8)
    labels = np.zeros((height, width), dtype=np.uint8)
    canvas = _Canvas(image, labels)
    for _ in range(int(rng.integers(2, 9))):
        centre = rng.uniform((0, 0), (width, height))
        _random_shape(canvas, rng, centre, side * rng.uniform(0.05, 0.3), BACKGROUND_LABEL)

    count = int(rng.choice([1, 2, 3], p=[0.45, 0.35, 0.2]))
    statures = np.sort(side * (rng.uniform(0.55, 1.15, count) if count == 1 else rng.uniform(0.4, 0.95, count)))
    drawn = []
    for label, stature in enumerate(statures, start=1):
        pelvis = (rng.uniform(0.1, 0.9) * width, rng.uniform(0.3, 0.75) * height)
        pose = sample_pose(rng, stature, pelvis)
        geometry = figure_geometry(pose)
        _draw_figure(canvas, geometry, pose, _palette(rng), label)
        drawn.append((label, pose, geometry))

    for _ in range(int(rng.choice(4, p=[0.35, 0.35, 0.2, 0.1]))):
        if rng.random() < 0.75:
            _, pose, geometry = drawn[int(rng.integers(len(drawn)))]
            center = geometry.keypoints[rng.integers(NUM_JOINTS)] + rng.normal(0, 0.08 * pose.stature, 2)
            size = pose.stature * rng.uniform(0.12, 0.4)
        else:
            center, size = rng.uniform((0, 0), (width, height)), side * rng.uniform(0.1, 0.35)
        _random_shape(canvas, rng, center, size, OCCLUDER_LABEL)
    _texture(image, labels == OCCLUDER_LABEL, rng, 0.25)

    persons = []
    for label, pose, geometry in drawn:
        mask = (labels == label).astype(np.uint8)
        _texture(image, mask.astype(bool), rng, 0.15)
        bbox, area, polygons = _silhouette(mask)
        inside, occluded = joint_occlusion(labels, geometry.keypoints, label)
        face_hidden = np.zeros(NUM_JOINTS, dtype=bool)
        face_hidden[FACE_INDEX] = geometry.face_depth <= FACE_HIDDEN_DEPTH
        persons.append(ScenePerson(
            label=label, pose=pose, keypoints=geometry.keypoints, inside=inside, occluded=occluded,
            face_hidden=face_hidden, headbox=np.round(geometry.headbox, 2), bbox=bbox, area=area,
            segmentation=polygons,
            annotated=bool(inside[MPII_INDEX].sum() >= MIN_INSIDE_JOINTS and area >= MIN_VISIBLE_AREA),
        ))

    if rng.random() < 0.3:
        image = cv2.GaussianBlur(image, (3, 3), 0)
    gain, offset = rng.uniform(0.8, 1.2), rng.uniform(-20, 20)
    image = cv2.convertScaleAbs(image, alpha=gain, beta=offset)
    return Scene(image=image, labels=labels, persons=tuple(persons))


# --------------------------------------------------------------------------- annotation records


def _mpii_entry(person: ScenePerson, file_name: str) -> dict:
    """One person of the MPII JSON form, 1-based (HRNet annot/*.json layout)."""
    joints = person.keypoints[MPII_INDEX]
    annotated = person.inside[MPII_INDEX]
    present = joints[annotated]
    low, high = present.min(axis=0), present.max(axis=0)
    # Rounded up so that 200 x scale still spans the joints after writing 4 decimals.
    scale = np.ceil(max(float((high - low).max()), 0.3 * person.pose.stature) / PIXEL_STD * 1e4) / 1e4
    center = 0.5 * (low + high) - np.array([0.0, 15.0 * scale])
    written = np.where(annotated[:, None], np.round(joints + 1.0, 2), -1.0)
    return {
        "image": file_name,
        "center": np.round(center + 1.0, 2).tolist(),
        "scale": float(scale),
        "joints": written.tolist(),
        "joints_vis": annotated.astype(int).tolist(),
    }


def _coco_annotation(person: ScenePerson, image_id: int, annotation_id: int) -> dict:
    flags = person.coco_flags[COCO_INDEX]
    xy = np.where(flags[:, None] > 0, person.keypoints[COCO_INDEX], 0.0)
    keypoints = np.concatenate([xy, flags[:, None]], axis=1).ravel()
    return {
        "id": annotation_id,
        "image_id": image_id,
        "category_id": 1,
        "keypoints": [int(v) if i % 3 == 2 else float(v) for i, v in enumerate(keypoints)],
        "num_keypoints": int((flags > 0).sum()),
        "bbox": person.bbox.tolist(),
        "area": float(person.area),
        "iscrowd": 0,
        "segmentation": person.segmentation,
    }


def _detections(rng: np.random.Generator, boxes: list[np.ndarray], image_id: int, width: int,
                height: int) -> list[dict]:
    """Jittered ground-truth boxes (score 0.75-1, 5% missed) plus a few low-score false positives."""
    results = []
    for box in boxes:
        if rng.random() < 0.05:
            continue
        x, y, w, h = box
        jitter = rng.normal(0, 0.05, 2) * (w, h)
        grow = np.exp(rng.normal(0, 0.08, 2))
        results.append(([x + jitter[0], y + jitter[1], w * grow[0], h * grow[1]], rng.uniform(0.75, 1.0)))
    for _ in range(int(rng.poisson(1.5))):
        w, h = rng.uniform(0.1, 0.6) * width, rng.uniform(0.15, 0.9) * height
        results.append(([rng.uniform(0, width - w), rng.uniform(0, height - h), w, h], rng.uniform(0.01, 0.35)))
    return [
        {"image_id": image_id, "category_id": 1, "bbox": np.round(np.asarray(b, dtype=np.float64), 2).tolist(),
         "score": round(float(score), 4)}
        for b, score in results
    ]


# --------------------------------------------------------------------------- writing


def _json_bytes(data: object) -> bytes:
    return (json.dumps(data, sort_keys=True, separators=(",", ":"), allow_nan=False) + "\n").encode("utf-8")


def mat_bytes(mdict: dict) -> bytes:
    """A MATLAB v5 file of ``mdict`` (scipy ``savemat``) with the creation-time header replaced by fixed text."""
    buffer = io.BytesIO()
    scipy.io.savemat(buffer, mdict, format="5", do_compression=False, oned_as="column")
    data = bytearray(buffer.getvalue())
    data[: len(_MAT_HEADER)] = _MAT_HEADER
    return bytes(data)


def _ground_truth_mat(entries: list[dict], headboxes: list[np.ndarray]) -> bytes:
    """``gt_valid.mat`` of the val persons, in ``valid.json`` order (layout of HRNet mpii.py ``evaluate``)."""
    names = np.empty((1, len(MAT_JOINT_NAMES)), dtype=object)
    for i, name in enumerate(MAT_JOINT_NAMES):
        names[0, i] = np.array([name])
    count = len(entries)
    joints = np.array([e["joints"] for e in entries], dtype=np.float64).reshape(count, MPII.num_joints, 2)
    visible = np.array([e["joints_vis"] for e in entries], dtype=np.float64).reshape(count, MPII.num_joints)
    boxes = np.asarray(headboxes, dtype=np.float64).reshape(count, 2, 2)
    return mat_bytes({
        "dataset_joints": names,
        "jnt_missing": (1.0 - visible).T,
        "pos_gt_src": np.transpose(joints, (1, 2, 0)),
        "headboxes_src": np.transpose(np.round(boxes + 1.0, 2), (1, 2, 0)),
    })


def _prepare_root(out: Path) -> None:
    """Create ``out``; refuse a non-empty folder that is not SynthPose's, clear old SynthPose images."""
    ours = {"images", "mpii", "coco", "lsp", "synthpose.json"}
    if out.exists():
        if not out.is_dir():
            raise DatasetError(f"SynthPose output {out} exists and is not a directory")
        foreign = sorted(p.name for p in out.iterdir() if p.name not in ours)
        if foreign:
            raise DatasetError(
                f"refusing to write SynthPose into {out}: it holds other files ({', '.join(foreign[:5])}); "
                "choose an empty or new directory"
            )
        images = out / "images"
        if images.is_dir():
            for split in SPLITS:
                for stale in images.glob(f"{split}_*.jpg"):
                    stale.unlink()
    for sub in ("images", "mpii/annot", "coco/annotations", "coco/person_detection_results"):
        (out / sub).mkdir(parents=True, exist_ok=True)


def generate_synthpose(out: Path, num_train: int, num_val: int, seed: int, progress: bool = True) -> SynthPoseFiles:
    """Write SynthPose (``num_train`` + ``num_val`` images, MPII and COCO formats) into ``out``.

    Same arguments give byte-identical files. ``out`` must be new, empty or an earlier SynthPose
    root (its images are replaced). Returns the written paths and the counts.
    """
    for name, value in (("num_train", num_train), ("num_val", num_val), ("seed", seed)):
        if not isinstance(value, (int, np.integer)) or value < 0:
            raise DatasetError(f"SynthPose {name} must be a non-negative integer, got {value!r}")
    out = Path(out)
    _prepare_root(out)
    files = SynthPoseFiles(
        root=out,
        image_dir=out / "images",
        mpii_train=out / "mpii" / "annot" / "train.json",
        mpii_val=out / "mpii" / "annot" / "valid.json",
        mpii_ground_truth=out / "mpii" / "annot" / "gt_valid.mat",
        coco_train=out / "coco" / "annotations" / "person_keypoints_train.json",
        coco_val=out / "coco" / "annotations" / "person_keypoints_val.json",
        detections=out / "coco" / "person_detection_results" / "synthpose_val_detections.json",
        manifest=out / "synthpose.json",
        counts={},
    )
    mpii_paths = {"train": files.mpii_train, "val": files.mpii_val}
    coco_paths = {"train": files.coco_train, "val": files.coco_val}
    counts: dict[str, dict[str, int]] = {}
    with tqdm(total=num_train + num_val, desc="SynthPose", unit="img", disable=not progress) as bar:
        for split, total in (("train", num_train), ("val", num_val)):
            mpii_entries: list[dict] = []
            headboxes: list[np.ndarray] = []
            images: list[dict] = []
            annotations: list[dict] = []
            detections: list[dict] = []
            for index in range(total):
                scene = render_scene(seed, split, index)
                file_name = f"{split}_{index:06d}.jpg"
                ok, encoded = cv2.imencode(".jpg", scene.image, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
                if not ok:
                    raise DatasetError(f"JPEG encoding failed for {file_name}")
                (files.image_dir / file_name).write_bytes(encoded.tobytes())
                height, width = scene.labels.shape
                image_id = index + 1
                images.append({"id": image_id, "file_name": file_name, "width": width, "height": height})
                boxes = []
                for person in scene.persons:
                    if not person.annotated:
                        continue
                    mpii_entries.append(_mpii_entry(person, file_name))
                    headboxes.append(person.headbox)
                    annotations.append(_coco_annotation(person, image_id, len(annotations) + 1))
                    boxes.append(person.bbox)
                if split == "val":
                    rng = _image_rng(seed, split, index, _DETECTION_STREAM)
                    detections.extend(_detections(rng, boxes, image_id, width, height))
                bar.update(1)
            mpii_paths[split].write_bytes(_json_bytes(mpii_entries))
            coco_paths[split].write_bytes(_json_bytes({
                "info": {"description": "SynthPose (PoseBench synthetic data)", "version": GENERATOR_VERSION,
                         "seed": seed},
                "licenses": [{"id": 1, "name": "Apache-2.0 (generated by PoseBench)", "url": ""}],
                "images": images,
                "annotations": annotations,
                "categories": [COCO_CATEGORY],
            }))
            if split == "val":
                files.mpii_ground_truth.write_bytes(_ground_truth_mat(mpii_entries, headboxes))
                files.detections.write_bytes(_json_bytes(detections))
            counts[split] = {"images": total, "persons": len(mpii_entries)}
    annotation_files = [files.mpii_train, files.mpii_val, files.mpii_ground_truth, files.coco_train, files.coco_val,
                        files.detections]
    files.manifest.write_bytes(_json_bytes({
        "generator": "SynthPose",
        "version": GENERATOR_VERSION,
        "seed": seed,
        "counts": counts,
        "joints": list(JOINTS),
        "sha256": {str(p.relative_to(out)): hashlib.sha256(p.read_bytes()).hexdigest() for p in annotation_files},
    }))
    return SynthPoseFiles(**{**files.__dict__, "counts": counts})


# --------------------------------------------------------------------------- the LSP-extended form


def _lsp_joints(person: ScenePerson | None) -> np.ndarray:
    """``(14, 3)`` LSP-extended values of ``person``: x, y 1-based (MATLAB), flag 1 where the joint is inside the
    image and not covered (visible), else 0; every 0 without a person (the loader skips such an image)."""
    if person is None:
        return np.zeros((LSP.num_joints, 3))
    visible = person.inside[LSP_INDEX] & ~person.occluded[LSP_INDEX]
    return np.concatenate([np.round(person.keypoints[LSP_INDEX] + 1.0, 2), visible[:, None].astype(np.float64)],
                          axis=1)


def _earlier_lsp_files(out: Path) -> list[Path] | None:
    """The files of an earlier LSP-extended form in ``out`` (``<split>/joints.mat``, ``<split>/images/im*.jpg``),
    or None when ``out`` holds anything else."""
    files: list[Path] = []
    for split_dir in out.iterdir():
        if split_dir.name not in SPLITS or not split_dir.is_dir():
            return None
        for entry in split_dir.iterdir():
            if entry.name == "joints.mat" and entry.is_file():
                files.append(entry)
            elif entry.name == "images" and entry.is_dir():
                images = list(entry.iterdir())
                if any(not (p.is_file() and p.name.startswith("im") and p.suffix == ".jpg") for p in images):
                    return None
                files += images
            else:
                return None
    return files


def _clear_lsp_root(out: Path) -> None:
    """Refuse an ``out`` that is not new, empty or an earlier LSP-extended form; delete that form's files."""
    if not out.exists():
        return
    earlier = _earlier_lsp_files(out) if out.is_dir() else None
    if earlier is None:
        raise DatasetError(f"refusing to write SynthPose's LSP-extended form into {out}: it is not a new or empty "
                           "directory")
    for path in earlier:
        path.unlink()


def generate_synthpose_lsp(out: Path, num_train: int, num_val: int, seed: int, progress: bool = True) -> dict:
    """Write SynthPose in the LSP-extended layout: ``out/<split>/joints.mat`` (``joints`` 14 x 3 x N) and
    ``out/<split>/images/im00001.jpg`` ..., one root per split that ``datamodules.lsp.load_lsp(..., extended=True)``
    and dataset ``lsp_extended`` read. Returns the counts ``{split: {images, persons}}``.

    Image ``i`` of a split is the scene :func:`generate_synthpose` writes as ``<split>_<i - 1>.jpg`` (same seed,
    same pixels), annotated with one person, as LSP-extended annotates one: the front-most annotated figure
    (figures are drawn smallest first, so the last annotated one is also the largest). Its flag is LSP-extended's
    visibility flag: 1 for a joint inside the image and not covered by an occluder or another figure, 0 otherwise;
    coordinates are written for every joint (the loader ignores those with flag 0). An image without an annotated
    figure gets all-zero values and is skipped by the loader. ``out`` must be new, empty or an earlier LSP-extended
    form of SynthPose (its files are replaced). ``generate_synthpose`` roots keep this form under ``lsp/``.
    """
    for name, value in (("num_train", num_train), ("num_val", num_val), ("seed", seed)):
        if not isinstance(value, (int, np.integer)) or value < 0:
            raise DatasetError(f"SynthPose {name} must be a non-negative integer, got {value!r}")
    out = Path(out)
    _clear_lsp_root(out)
    counts: dict[str, dict[str, int]] = {}
    with tqdm(total=num_train + num_val, desc="SynthPose (LSP)", unit="img", disable=not progress) as bar:
        for split, total in (("train", num_train), ("val", num_val)):
            image_dir = out / split / "images"
            image_dir.mkdir(parents=True, exist_ok=True)
            values = np.zeros((total, LSP.num_joints, 3))
            for index in range(total):
                scene = render_scene(seed, split, index)
                annotated = [person for person in scene.persons if person.annotated]
                values[index] = _lsp_joints(annotated[-1] if annotated else None)
                ok, encoded = cv2.imencode(".jpg", scene.image, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
                if not ok:
                    raise DatasetError(f"JPEG encoding failed for image {index + 1} of {split}")
                (image_dir / f"im{index + 1:05d}.jpg").write_bytes(encoded.tobytes())
                bar.update(1)
            (out / split / "joints.mat").write_bytes(mat_bytes({"joints": np.transpose(values, (1, 2, 0))}))
            counts[split] = {"images": total, "persons": int((values[..., 2] > 0).any(axis=1).sum())}
    return counts
