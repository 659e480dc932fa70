"""The top-down transform: one affine crop per person, its augmentation, and the tensor the model sees.

A person record (centre, scale, keypoints) becomes a fixed-size crop through ONE similarity
transform built from the box centre and width, a rotation, an optional shift and an optional
horizontal flip. The same ``(2, 3)`` matrix warps the image (once, ``cv2.warpAffine``) and the
keypoints, and its exact inverse maps predictions back to image pixels at evaluation.

The warp follows the run's pixel-grid convention (``pixelgrid``: ``aligned``, PoseBench's own and
the default, described next; ``msra`` and ``udp`` reproduce the published checkpoints' pipelines).

Pixel convention (``aligned``): pixel centres sit at integer coordinates, so a crop of width ``W`` spans
``[-0.5, W - 0.5]``. The box centre therefore maps to ``((W - 1) / 2, (H - 1) / 2)`` and the box
edges ``centre.x -/+ w / 2`` map to the crop edges ``-0.5`` and ``W - 0.5``; a horizontal flip of the
crop is ``x' = (W - 1) - x``, a mirror about the box centre. HRNet's ``get_affine_transform``
(lib/utils/transforms.py) maps the centre to ``(W / 2, H / 2)`` instead, a half-pixel shift that
Huang et al. ("The Devil is in the Details: Delving into Unbiased Data Processing for Human Pose
Estimation", CVPR'20) identify as a systematic bias; since evaluation maps back with the inverse
of the very same matrix, the choice is self-consistent either way. As in HRNet, only the box
WIDTH (``scale[0] * 200``) sets the zoom: the box already has the input aspect ratio.
Rotation is in degrees, counter-clockwise on screen positive (the sign of HRNet's
``get_affine_transform`` and of ``cv2.getRotationMatrix2D``).

Augmentation recipes (all draws per sample from ``np.random.default_rng((seed, epoch, index))``):
- HRNet / SimpleBaseline (lib/dataset/JointsDataset.py ``__getitem__``): scale
  ``s *= clip(1 + N(0, sf), 1 - sf, 1 + sf)``; rotation ``clip(N(0, rf), -2 rf, 2 rf)`` with
  probability 0.6; flip with probability 0.5; half-body (``half_body_transform``) when more than
  ``NUM_JOINTS_HALF_BODY`` (8) joints are annotated, with probability ``PROB_HALF_BODY``: the
  upper body is chosen when ``randn() < 0.5`` (HRNet draws a normal there, so the upper body is
  picked with probability 0.69; kept for fidelity) and it has more than 2 visible joints, else the
  lower body if it has more than 2, else the upper; fewer than 2 joints cancels it; the chosen
  joints' box, centred on their mean, is grown to the input aspect ratio and multiplied by 1.5.
  Values from experiments/coco/hrnet/w32_256x192_adam_lr1e-3.yaml (ROT 45, SCALE 0.35, half-body
  0.3), experiments/mpii/hrnet/w32_256x256_adam_lr1e-3.yaml (ROT 30, SCALE 0.25, no half-body),
  experiments/coco/resnet/res50_256x192_d256x3_adam_lr1e-3.yaml (ROT 40, SCALE 0.3, no half-body).
- Stacked Hourglass (princeton-vl/pose-hg-train src/util/pose.lua ``generateSample``, defaults in
  src/opts.lua: scale 0.25, rotate 30): ``s *= 2 ** clip(N(0, 0.25), ±0.5)``; rotation
  ``clip(N(0, 30), ±60)`` kept with probability 0.4 (``if uniform() <= .6 then r = 0``); flip 0.5;
  each colour channel multiplied by ``U(0.6, 1.4)`` and clamped.
- Other draws (``rotation_dist``, ``scale_dist``): mmpose 1.x draws ``factor x truncnorm(-1, 1)``
  (``RandomBBoxTransform``), a truncated normal, where mmpose 0.x and HRNet clip a normal; the CPM
  Caffe data layer draws uniformly (rotation within +-40 degrees, scale 0.7-1.3).
- ``photometric``: not in those recipes; a modest albumentations pipeline (brightness/contrast,
  hue/saturation, blur, noise) on the crop, for users who want it.

The transform hands over the crop as uint8 RGB ``(3, H, W)`` and the sample's colour gains ``(3,)``;
``normalise_images`` turns a batch of them into the model's float32 input on whatever device the batch
is on, after the batch has left the loader worker (a uint8 crop is a quarter of the bytes to move).
Normalisation: ImageNet mean (0.485, 0.456, 0.406) and std (0.229, 0.224, 0.225) on RGB in
``[0, 1]`` (torchvision's ImageNet models, which the backbones are initialised from), or the CPM
Caffe data layer's ``x / 256 - 0.5`` (``NORMALISATIONS``).

Reduced decoding: when the crop samples the image at least every 2 pixels, the JPEG may be decoded at
1/2, 1/4 or 1/8 (``reduction_for``, ``datamodules.topdown``); ``TopDownTransform.crop`` then warps
the reduced image with the sample's matrix composed with ``reduced_to_full``, so the sample's
matrices and keypoints stay in full-image pixels and only pixel values change.
"""

from __future__ import annotations

import math
import os
import random
from dataclasses import dataclass

# albumentations checks PyPI for a newer version on import (a 2 s time-out after an unbounded DNS lookup, in every
# DDP rank and loader worker); PoseBench touches the network only for downloads the user asks for. Set before the
# import, in the environment, so that ranks and workers started from here inherit it; a user's own value stands.
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

import albumentations as A  # noqa: E402  (after the switch above)
import cv2
import numpy as np
import scipy.special
import torch

from datamodules.records import PIXEL_STD, PersonRecord
from datamodules.skeletons import Skeleton
from pixelgrid import DEFAULT_CONVENTION, Convention, get_convention

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
NORMALISATIONS: dict[str, tuple[float, tuple[float, ...], tuple[float, ...]]] = {
    "imagenet": (255.0, IMAGENET_MEAN, IMAGENET_STD),
    "centred": (256.0, (0.5, 0.5, 0.5), (1.0, 1.0, 1.0)),
}
"""Input normalisation, ``(x / divisor - mean) / std`` per channel: torchvision's ImageNet statistics, or
``x / 256 - 0.5`` (the CPM Caffe data layer, shihenw/convolutional-pose-machines-release)."""

SCALE_MODES = ("linear", "log2")
DISTRIBUTIONS = ("normal", "truncated", "uniform")
"""How a rotation or scale offset is drawn: ``normal`` clip(N(0, sigma), +-max) (HRNet, mmpose 0.x, Hourglass),
``truncated`` N(0, sigma) truncated to +-max (mmpose 1.x ``truncnorm``), ``uniform`` U(-max, max) (CPM)."""


@dataclass(frozen=True)
class Augmentation:
    """Training augmentation of the top-down transform; the defaults apply none."""

    # Mirror the crop horizontally (and swap left/right joints) with probability 0.5.
    flip: bool = False
    # Standard deviation (degrees) of the Gaussian the rotation is drawn from.
    rotation_sigma: float = 0.0
    # Rotation draws are clipped to [-rotation_max, rotation_max] degrees.
    rotation_max: float = 0.0
    # Probability that a sample is rotated at all (otherwise its rotation is 0).
    rotation_prob: float = 0.0
    # "normal": clip(N(0, sigma), +-max); "truncated": N(0, sigma) truncated to +-max; "uniform": U(-max, max).
    rotation_dist: str = "normal"
    # Standard deviation of the scale draw: of the factor itself ("linear") or of its log2 ("log2").
    scale_sigma: float = 0.0
    # Clip of the scale draw: factor in [1 - max, 1 + max] ("linear") or exponent in [-max, max] ("log2").
    scale_max: float = 0.0
    # "linear": box *= clip(1 + N(0, sigma), 1 - max, 1 + max) (HRNet);
    # "log2": box *= 2 ** clip(N(0, sigma), ±max) (Hourglass).
    scale_mode: str = "linear"
    # How the scale offset (of the factor, or of its log2) is drawn: "normal" (clipped), "truncated" or "uniform".
    scale_dist: str = "normal"
    # Probability of cropping to the upper or lower body only (HRNet half_body_transform).
    half_body_prob: float = 0.0
    # Half-body is tried only when MORE than this many joints are annotated (HRNet NUM_JOINTS_HALF_BODY).
    half_body_min_joints: int = 8
    # Each RGB channel is multiplied by U(1 - c, 1 + c) and clamped to [0, 255] (Hourglass: 0.4).
    colour_scale: float = 0.0
    # Apply the modest albumentations colour/blur/noise pipeline to the crop.
    photometric: bool = False

    def __post_init__(self) -> None:
        if self.scale_mode not in SCALE_MODES:
            raise ValueError(f"Augmentation.scale_mode must be one of {SCALE_MODES}, got {self.scale_mode!r}")
        for name in ("rotation_dist", "scale_dist"):
            if getattr(self, name) not in DISTRIBUTIONS:
                raise ValueError(f"Augmentation.{name} must be one of {DISTRIBUTIONS}, got {getattr(self, name)!r}")
        for name in ("rotation_prob", "half_body_prob"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"Augmentation.{name} must lie in [0, 1], got {value}")
        for name in ("rotation_sigma", "rotation_max", "scale_sigma", "scale_max", "colour_scale"):
            value = getattr(self, name)
            if value < 0.0:
                raise ValueError(f"Augmentation.{name} must be >= 0, got {value}")
        if self.scale_mode == "linear" and self.scale_max >= 1.0:
            raise ValueError(f"Augmentation.scale_max must be < 1 in linear mode (a factor 1 - max > 0), "
                             f"got {self.scale_max}")
        if self.colour_scale > 1.0:
            raise ValueError(f"Augmentation.colour_scale must be <= 1, got {self.colour_scale}")


# HRNet COCO (experiments/coco/hrnet/w32_256x192_adam_lr1e-3.yaml): ROT_FACTOR 45, SCALE_FACTOR 0.35,
# PROB_HALF_BODY 0.3.
HRNET_COCO = Augmentation(
    flip=True, rotation_sigma=45.0, rotation_max=90.0, rotation_prob=0.6,
    scale_sigma=0.35, scale_max=0.35, scale_mode="linear", half_body_prob=0.3, half_body_min_joints=8,
)
# HRNet MPII (experiments/mpii/hrnet/w32_256x256_adam_lr1e-3.yaml): ROT_FACTOR 30, SCALE_FACTOR 0.25, no half-body.
HRNET_MPII = Augmentation(
    flip=True, rotation_sigma=30.0, rotation_max=60.0, rotation_prob=0.6,
    scale_sigma=0.25, scale_max=0.25, scale_mode="linear",
)
# SimpleBaseline COCO (experiments/coco/resnet/res50_256x192_d256x3_adam_lr1e-3.yaml): ROT_FACTOR 40, SCALE_FACTOR 0.3.
SIMPLEBASELINE_COCO = Augmentation(
    flip=True, rotation_sigma=40.0, rotation_max=80.0, rotation_prob=0.6,
    scale_sigma=0.3, scale_max=0.3, scale_mode="linear",
)
# SimpleBaseline MPII (experiments/mpii/resnet/res50_256x256_d256x3_adam_lr1e-3.yaml): same factors as HRNet MPII.
SIMPLEBASELINE_MPII = HRNET_MPII
# Stacked Hourglass MPII (pose-hg-train src/util/pose.lua, src/opts.lua): scale 0.25 (log2), rotate 30 kept
# with p 0.4, colour 0.4.
HOURGLASS_MPII = Augmentation(
    flip=True, rotation_sigma=30.0, rotation_max=60.0, rotation_prob=0.4,
    scale_sigma=0.25, scale_max=0.5, scale_mode="log2", colour_scale=0.4,
)

PRESETS: dict[str, Augmentation] = {
    "none": Augmentation(),
    "hrnet_coco": HRNET_COCO,
    "hrnet_mpii": HRNET_MPII,
    "simplebaseline_coco": SIMPLEBASELINE_COCO,
    "simplebaseline_mpii": SIMPLEBASELINE_MPII,
    "hourglass_mpii": HOURGLASS_MPII,
}


def draw_offset(distribution: str, sigma: float, bound: float, normal: float, uniform: float) -> float:
    """One offset of ``distribution`` (``DISTRIBUTIONS``) from a standard normal and a U(0, 1) draw.

    ``truncated`` maps ``uniform`` through the inverse CDF of N(0, sigma) restricted to [-bound, bound]
    (the inverse-CDF method), so nothing piles up at the bounds as a clip does.
    """
    if distribution == "uniform":
        return bound * (2.0 * uniform - 1.0)
    if distribution == "truncated":
        if sigma <= 0.0 or bound <= 0.0:
            return 0.0
        low = float(scipy.special.ndtr(-bound / sigma))
        return sigma * float(scipy.special.ndtri(low + uniform * (1.0 - 2.0 * low)))
    return min(max(sigma * normal, -bound), bound)


def augmentation_preset(name: str) -> Augmentation:
    """The named recipe's augmentation; an unknown name raises naming the known ones."""
    try:
        return PRESETS[name]
    except KeyError:
        raise KeyError(f"unknown augmentation preset {name!r}; known: {', '.join(sorted(PRESETS))}") from None


def affine_matrix(
    center: np.ndarray | tuple[float, float],
    scale: np.ndarray | tuple[float, float],
    rotation: float,
    output_size_wh: tuple[int, int],
    shift: tuple[float, float] = (0.0, 0.0),
    flip: bool = False,
) -> np.ndarray:
    """The ``(2, 3)`` float64 similarity mapping image pixels to crop pixels.

    The box centre (moved by ``shift`` x box size, in image axes) goes to the crop centre
    ``((W - 1) / 2, (H - 1) / 2)``; the box width ``scale[0] * 200`` spans the crop width ``W``;
    ``rotation`` degrees turn the content counter-clockwise on screen; ``flip`` then mirrors the
    crop, ``x' = (W - 1) - x``.
    """
    width, height = output_size_wh
    box_w = float(scale[0]) * PIXEL_STD
    if not box_w > 0.0:
        raise ValueError(f"box width must be positive, got scale {tuple(np.asarray(scale).tolist())}")
    cx = float(center[0]) + float(shift[0]) * float(scale[0]) * PIXEL_STD
    cy = float(center[1]) + float(shift[1]) * float(scale[1]) * PIXEL_STD
    box = (box_w, float(scale[1]) * PIXEL_STD)
    return get_convention("aligned").warp_matrix((cx, cy), box, (height, width), rotation, flip)


def invert_affine(matrix: np.ndarray) -> np.ndarray:
    """The exact inverse ``(2, 3)`` of an invertible ``(2, 3)`` affine matrix (float64)."""
    m = np.asarray(matrix, dtype=np.float64)
    linear = m[:, :2]
    det = linear[0, 0] * linear[1, 1] - linear[0, 1] * linear[1, 0]
    if det == 0.0:
        raise ValueError("affine matrix is singular and has no inverse")
    inv = np.array([[linear[1, 1], -linear[0, 1]], [-linear[1, 0], linear[0, 0]]]) / det
    return np.concatenate([inv, -(inv @ m[:, 2:])], axis=1)


def transform_points(points: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """Apply a ``(2, 3)`` affine matrix to points ``(..., 2)``; returns ``(..., 2)`` float64."""
    m = np.asarray(matrix, dtype=np.float64)
    return np.asarray(points, dtype=np.float64) @ m[:, :2].T + m[:, 2]


def _photometric_pipeline() -> A.Compose:
    """Cheap colour/blur/noise ops on a uint8 RGB crop (LUT-based ops are the common case)."""
    return A.Compose(
        [
            A.RandomBrightnessContrast(brightness_limit=0.2, contrast_limit=0.2, p=0.5),
            # The dearest ops (two colour-space conversions; float noise) get low probabilities.
            A.HueSaturationValue(hue_shift_limit=10, sat_shift_limit=20, val_shift_limit=0, p=0.1),
            A.GaussianBlur(blur_limit=(3, 5), sigma_limit=(0.3, 1.2), p=0.1),
            # Per-pixel noise shared by the channels; a quarter of GaussNoise's cost on a 256x192 crop.
            A.MultiplicativeNoise(multiplier=(0.92, 1.08), per_channel=False, elementwise=True, p=0.05),
        ],
        p=1.0,
    )


def normalise_images(images: torch.Tensor, colour_gain: torch.Tensor, normalisation: str = "imagenet") -> torch.Tensor:
    """``(B, 3, H, W)`` uint8 RGB crops -> float32 model input (``NORMALISATIONS``), on the crops' device.

    ``colour_gain`` ``(B, 3)`` multiplies each channel first, clamped to [0, 255] as Hourglass does (ones
    where a sample has no colour augmentation). Equal to the float64 table lookup of earlier versions to
    float32 rounding (a few 1e-7).
    """
    if normalisation not in NORMALISATIONS:
        raise ValueError(f"unknown normalisation {normalisation!r}; valid: {', '.join(NORMALISATIONS)}")
    divisor, mean, std = NORMALISATIONS[normalisation]
    device = images.device
    scale = torch.tensor([1.0 / (divisor * s) for s in std], dtype=torch.float32, device=device)
    offset = torch.tensor([-m / s for m, s in zip(mean, std, strict=True)], dtype=torch.float32, device=device)
    gained = torch.clamp_max(images.to(torch.float32) * colour_gain.to(torch.float32)[:, :, None, None], 255.0)
    return gained * scale[None, :, None, None] + offset[None, :, None, None]


REDUCTIONS = (8, 4, 2)
"""Decode reductions libjpeg's DCT scaling offers (OpenCV ``IMREAD_REDUCED_COLOR_2/4/8``), largest first."""


def reduction_for(matrix: np.ndarray) -> int:
    """The largest JPEG decode reduction (8, 4, 2, else 1) that keeps the image at least as dense as the crop.

    ``matrix`` ``(2, 3)`` maps image to crop pixels, augmentation (scale, rotation, flip) included; one
    crop pixel steps ``|A^-1 e_x|`` and ``|A^-1 e_y|`` image pixels along the crop's axes, and a reduced
    pixel spans ``r`` image pixels, so ``r`` must not exceed the shorter step.
    """
    (a, b), (c, d) = np.asarray(matrix, dtype=np.float64)[:, :2].tolist()
    # The columns of A^-1 = [[d, -b], [-c, a]] / det, in Python floats (a per-sample cost: no numpy calls).
    determinant = abs(a * d - b * c)
    shorter = min(math.hypot(d, c), math.hypot(b, a)) / determinant
    return next((r for r in REDUCTIONS if r <= shorter), 1)


def reduced_to_full(matrix: np.ndarray, reduction: int) -> np.ndarray:
    """``matrix`` (image -> crop, full-resolution pixels) composed for an image decoded at ``1 / reduction``.

    Reduced pixel ``j`` averages full pixels ``r j ... r j + r - 1``, centre ``r j + (r - 1) / 2`` (pixel
    centres at integers, docs/conventions.md): measured on the fixture JPEGs, ``IMREAD_REDUCED_COLOR_r``
    matches ``cv2.resize(..., INTER_AREA)`` by ``r`` (0.1-0.5 levels mean difference, least at zero
    shift on a 1/8 px grid) and has ``ceil(W / r)`` columns.
    """
    m = np.asarray(matrix, dtype=np.float64)
    composed = m.copy()
    composed[:, :2] = m[:, :2] * reduction
    composed[:, 2] = m[:, 2] + m[:, :2] @ np.full(2, (reduction - 1) / 2.0)
    return composed


@dataclass(frozen=True)
class CropPlan:
    """One sample's geometry and colour, drawn before the image is read (the decode reduction depends on it).

    ``matrix`` ``(2, 3)`` float64 image -> crop (full-resolution pixels); ``flip`` whether joints swap
    sides; ``colour_gain`` ``(3,)`` float32 RGB gains (ones without colour augmentation); ``rng`` the
    sample's generator (None without augmentation), which the photometric pipeline goes on drawing from.
    """

    matrix: np.ndarray
    flip: bool
    colour_gain: np.ndarray
    rng: np.random.Generator | None


class TopDownTransform:
    """Crop one person to the input size and augment it (training); the crop stays uint8 (``normalise_images``).

    ``augmentation=None`` (evaluation) crops the record's box with no randomness at all.
    Randomness is a pure function of ``(seed, epoch, index)``: outputs do not depend on worker
    count or call order, and a resumed run sees the same augmentations. With ``photometric`` the
    albumentations pipeline is reseeded per call, so one instance must not serve two threads at
    once (loader workers are processes, each with its own copy).
    """

    def __init__(
        self,
        input_size_hw: tuple[int, int],
        skeleton: Skeleton,
        augmentation: Augmentation | None = None,
        seed: int = 0,
        convention: str | Convention = DEFAULT_CONVENTION,
    ) -> None:
        height, width = (int(v) for v in input_size_hw)
        if height <= 0 or width <= 0:
            raise ValueError(f"input_size_hw must be positive, got {tuple(input_size_hw)}")
        self.input_size_hw = (height, width)
        self.skeleton = skeleton
        self.augmentation = augmentation
        self.seed = int(seed)
        self.convention = get_convention(convention)
        self._flip_permutation = skeleton.flip_permutation
        self._upper = np.zeros(skeleton.num_joints, dtype=bool)
        self._upper[list(skeleton.upper_body)] = True
        self._lower = np.zeros(skeleton.num_joints, dtype=bool)
        self._lower[list(skeleton.lower_body)] = True
        self._aspect_ratio = width / height
        self._photometric = _photometric_pipeline() if augmentation is not None and augmentation.photometric else None

    def __call__(self, image_bgr: np.ndarray, record: PersonRecord, index: int, epoch: int = 0) -> dict:
        """Crop the full-resolution ``image_bgr`` ``(H0, W0, 3)`` uint8 around ``record`` (``plan`` + ``crop``)."""
        return self.crop(image_bgr, record, self.plan(record, index, epoch))

    def plan(self, record: PersonRecord, index: int, epoch: int = 0) -> CropPlan:
        """Sample ``(epoch, index)``'s crop matrix, flip and colour gains: every random draw but the photometric."""
        height, width = self.input_size_hw
        center, scale = record.center, record.scale
        rotation, flip, gain, rng = 0.0, False, np.ones(3, dtype=np.float32), None
        if self.augmentation is not None:
            rng = np.random.default_rng((self.seed, int(epoch), int(index)))
            center, scale, rotation, flip, drawn_gain = self._draw(rng, record, self.augmentation)
            if drawn_gain is not None:
                gain = drawn_gain.astype(np.float32)
        matrix = self.convention.warp_matrix(center, np.asarray(scale) * PIXEL_STD, (height, width), rotation, flip)
        return CropPlan(matrix, flip, gain, rng)

    def crop(self, image_bgr: np.ndarray, record: PersonRecord, plan: CropPlan, reduction: int = 1) -> dict:
        """Warp ``image_bgr`` ``(H0, W0, 3)`` uint8, decoded at ``1 / reduction`` of full resolution, by ``plan``.

        Returns ``image`` uint8 tensor ``(3, H, W)`` RGB, ``colour_gain`` ``(3,)`` float32 (for
        ``normalise_images``), ``keypoints`` ``(K, 2)`` float32 crop pixels, ``visible`` ``(K,)`` float32
        0/1, ``matrix`` ``(2, 3)`` float64 image -> crop and ``inverse_matrix`` ``(2, 3)`` float64 crop ->
        image, both in full-resolution image pixels whatever ``reduction``.
        """
        height, width = self.input_size_hw
        matrix = plan.matrix
        warp = matrix if reduction == 1 else reduced_to_full(matrix, reduction)
        crop = cv2.warpAffine(
            image_bgr, warp, (width, height), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0
        )
        if self._photometric is None:
            blue, green, red = cv2.split(crop)
        else:
            assert plan.rng is not None, "the photometric pipeline exists only with augmentation, which draws rng"
            # albumentations 2.x ignores global seeds; hand it this sample's generators.
            self._photometric.set_random_state(plan.rng, random.Random(int(plan.rng.integers(2**63))))
            red, green, blue = cv2.split(self._photometric(image=cv2.cvtColor(crop, cv2.COLOR_BGR2RGB))["image"])

        keypoints = transform_points(record.keypoints, matrix).astype(np.float32)
        visible = np.asarray(record.visible, dtype=np.float32)
        if plan.flip:
            keypoints = keypoints[self._flip_permutation]
            visible = visible[self._flip_permutation]
        return {
            # BGR -> RGB and HWC -> CHW as planes: cv2.split and one stack, half the time of a strided copy.
            "image": torch.from_numpy(np.stack((red, green, blue))),
            "colour_gain": plan.colour_gain,
            "keypoints": keypoints,
            "visible": visible,
            "matrix": matrix,
            "inverse_matrix": invert_affine(matrix),
        }

    def _draw(
        self, rng: np.random.Generator, record: PersonRecord, aug: Augmentation
    ) -> tuple[np.ndarray, np.ndarray, float, bool, np.ndarray | None]:
        """One sample's centre, scale, rotation, flip and colour gains (``None`` when unused) under ``aug``.

        Every draw is made whether or not it is used, so one option never shifts another's values.
        """
        # Python floats: scalar arithmetic on them is several times cheaper than on numpy scalars.
        half_body_draw, rotation_draw, flip_draw = rng.random(3).tolist()
        half_choice, scale_normal, rotation_normal = rng.standard_normal(3).tolist()
        gain = rng.uniform(1.0 - aug.colour_scale, 1.0 + aug.colour_scale, 3)
        # Drawn last, so the draws above keep their values whichever distributions a recipe picks.
        scale_uniform, rotation_uniform = rng.random(2).tolist()

        center, scale = record.center, record.scale
        if aug.half_body_prob > 0.0 and half_body_draw < aug.half_body_prob:
            visible = np.asarray(record.visible, dtype=bool)
            if visible.sum() > aug.half_body_min_joints:
                center, scale = self._half_body(record, visible, half_choice, center, scale)

        offset = draw_offset(aug.scale_dist, aug.scale_sigma, aug.scale_max, scale_normal, scale_uniform)
        factor = 1.0 + offset if aug.scale_mode == "linear" else 2.0**offset
        scale = np.asarray(scale, dtype=np.float64) * factor

        rotation = 0.0
        if rotation_draw < aug.rotation_prob:
            rotation = draw_offset(aug.rotation_dist, aug.rotation_sigma, aug.rotation_max, rotation_normal,
                                   rotation_uniform)
        flip = aug.flip and flip_draw < 0.5
        return center, scale, rotation, flip, (gain if aug.colour_scale > 0.0 else None)

    def _half_body(
        self, record: PersonRecord, visible: np.ndarray, choice: float, center: np.ndarray, scale: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """HRNet's half-body box (see the module docstring); unchanged when too few joints."""
        upper = visible & self._upper
        lower = visible & self._lower
        if choice < 0.5 and upper.sum() > 2:
            selected = upper
        else:
            selected = lower if lower.sum() > 2 else upper
        if selected.sum() < 2:
            return center, scale
        points = np.asarray(record.keypoints, dtype=np.float64)[selected]
        w, h = points.max(axis=0) - points.min(axis=0)
        if w <= 0.0 and h <= 0.0:
            # Coincident joints give no box (HRNet would divide by zero later).
            return center, scale
        if w > self._aspect_ratio * h:
            h = w / self._aspect_ratio
        else:
            w = h * self._aspect_ratio
        return points.mean(axis=0), np.array([w, h]) / PIXEL_STD * 1.5
