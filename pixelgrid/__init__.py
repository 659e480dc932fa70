"""Pixel-grid conventions: how image, crop and heatmap pixels relate, decided in one place.

A top-down pipeline maps image pixels to crop pixels (the warp), crop pixels to heatmap pixels
(target encoding), mirrors crops and heatmaps (flip augmentation and flip test), refines the
heatmap peak (decoding) and maps the result back to the image. Published checkpoints were
trained and scored under one fixed set of those choices; scoring them under another loses
accuracy (a 1.5 crop-px bias at stride 4 costs about 1 AP). ``Convention`` holds every choice
of one set, and ``models`` (codecs), ``datamodules`` (warp, boxes) and ``benchmark`` (test-time
protocol) all read it from here, so a run names one convention and gets all of it. This package
imports neither of them. docs/conventions.md explains the three conventions with figures.

- ``aligned`` (PoseBench's own): pixel centres at integers in every grid; a crop of width ``W``
  spans ``[-0.5, W - 0.5]``, so the box centre goes to ``((W - 1) / 2, (H - 1) / 2)`` and heatmap
  px ``= (crop px + 0.5) / stride - 0.5``. A mirrored crop (``x' = W - 1 - x``) maps onto the
  mirrored heatmap exactly, so the flip test needs no shift. The quarter rule refines each axis
  wherever both neighbours exist and the DARK blur kernel follows the training sigma.
- ``msra``: the HRNet / SimpleBaseline official code (leoxiaobin/deep-high-resolution-net.pytorch
  ``lib/utils/transforms.py`` ``get_affine_transform``, ``lib/core/inference.py``) as mmpose 1.3.2
  keeps it (``mmpose/structures/bbox/transforms.py`` ``get_warp_matrix``;
  ``mmpose/codecs/msra_heatmap.py``; ``mmpose/codecs/utils/refinement.py`` ``refine_keypoints``,
  ``refine_keypoints_dark``; ``mmpose/models/heads/heatmap_heads/heatmap_head.py`` flip test;
  ``mmpose/models/pose_estimators/topdown.py`` back to the image). The warp is
  ``cv2.getAffineTransform`` of float32 points, box centre -> ``(W / 2, H / 2)``, zoom from the
  width on both axes; heatmap px ``= crop px / stride``; encoding centres at ``int(hm + 0.5)``
  (truncation toward zero) in a ``2 * 3 sigma + 1`` window; the flipped-back heatmap moves one
  pixel right (column 0 keeps its value); quarter offsets only where ``1 < x < W - 1 and 0 < y < H``
  (x) and ``1 < y < H - 1 and 0 < x < W`` (y); DARK blurs with the released kernel 11; a map with
  no positive value decodes to ``-1``; crop -> image is ``kp / input_size * size + center - size / 2``.
  A training flip mirrors the image, i.e. ``x' = W - x`` in the crop (HRNet ``fliplr_joints`` and
  ``c[0] = width - c[0] - 1``; mmpose ``RandomFlip``).
- ``udp``: Huang et al., "The Devil is in the Details: Delving into Unbiased Data Processing for
  Human Pose Estimation" (CVPR'20), as mmpose 1.3.2 implements it (``get_udp_warp_matrix``,
  ``mmpose/codecs/udp_heatmap.py``, ``refine_keypoints_dark_udp``): the warp scales by
  ``(W - 1) / w`` and ``(H - 1) / h`` about the centre ``((W - 1) / 2, (H - 1) / 2)`` (float32);
  heatmap px ``= crop px * (Wh - 1) / (W - 1)``; the Gaussian sits at the exact sub-pixel point
  inside the window of the rounded one; no flip shift; DARK is DARK-UDP (blur 11, clip to
  ``[1e-3, 50]``, log, edge padding, regularised Newton step everywhere).

COCO ground-truth boxes: ``aligned`` clips as the HRNet code does (``x2 = min(W - 1, x1 +
max(0, w - 1))``, ``lib/dataset/coco.py``); ``msra`` and ``udp`` clip as mmpose does (``x2 =
clip(x + w, 0, W - 1)``, ``base_coco_style_dataset.py``), the pipeline the golden reference
files were made with. The two differ by half a pixel in the box centre; published COCO numbers
use detection boxes, which neither clips.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

CONVENTIONS: tuple[str, ...] = ("aligned", "msra", "udp")
DEFAULT_CONVENTION = "aligned"


def _pair(values: Sequence[float] | np.ndarray, name: str) -> tuple[float, float]:
    array = np.asarray(values, dtype=np.float64).reshape(-1)
    if array.shape != (2,):
        raise ValueError(f"{name} must hold two values, got {np.asarray(values).tolist()}")
    return float(array[0]), float(array[1])


def _aligned_warp(center: tuple[float, float], size: tuple[float, float], input_hw: tuple[int, int],
                  rotation: float) -> np.ndarray:
    """Similarity sending ``center`` to ``((W - 1) / 2, (H - 1) / 2)`` and the box width onto ``W``.

    ``rotation`` degrees turn the content counter-clockwise on screen (HRNet's sign).
    """
    height, width = input_hw
    zoom = width / size[0]
    theta = math.radians(rotation)
    a, b = zoom * math.cos(theta), zoom * math.sin(theta)
    cx, cy = center
    ox, oy = (width - 1) * 0.5, (height - 1) * 0.5
    return np.array([[a, b, ox - a * cx - b * cy], [-b, a, oy + b * cx - a * cy]], dtype=np.float64)


def _msra_warp(center: tuple[float, float], size: tuple[float, float], input_hw: tuple[int, int],
               rotation: float) -> np.ndarray:
    """mmpose ``get_warp_matrix`` (= HRNet ``get_affine_transform``): three float32 point pairs."""
    height, width = input_hw
    theta = np.deg2rad(rotation)
    sn, cs = np.sin(theta), np.cos(theta)
    src_dir = np.array([[cs, -sn], [sn, cs]]) @ np.array([size[0] * -0.5, 0.0])
    src = np.zeros((3, 2), dtype=np.float32)
    dst = np.zeros((3, 2), dtype=np.float32)
    src[0] = center
    src[1] = np.asarray(center) + src_dir
    dst[0] = [width * 0.5, height * 0.5]
    dst[1] = np.array([width * 0.5, height * 0.5]) + np.array([width * -0.5, 0.0])
    for points in (src, dst):
        direction = points[0] - points[1]
        points[2] = points[1] + np.r_[-direction[1], direction[0]]
    return cv2.getAffineTransform(src, dst).astype(np.float64)


def _udp_warp(center: tuple[float, float], size: tuple[float, float], input_hw: tuple[int, int],
              rotation: float) -> np.ndarray:
    """mmpose ``get_udp_warp_matrix``: scales ``(W - 1) / w``, ``(H - 1) / h``, in float32 arithmetic.

    mmpose's boxes are float32, so every product there is a float32 one; the same order of
    operations on float32 scalars gives the same matrix bit for bit. Its rotation turns the
    other way from ``msra``'s (irrelevant for the symmetric rotation draws of training).
    """
    height, width = input_hw
    theta = np.deg2rad(rotation)
    cos, sin = math.cos(theta), math.sin(theta)
    cx, cy = np.float32(2.0 * np.float32(center[0])), np.float32(2.0 * np.float32(center[1]))
    sw, sh = np.float32(size[0]), np.float32(size[1])
    scale_x, scale_y = (width - 1) / sw, (height - 1) / sh
    m = np.zeros((2, 3), dtype=np.float32)
    m[0, 0] = cos * scale_x
    m[0, 1] = -sin * scale_x
    m[0, 2] = scale_x * (-0.5 * cx * cos + 0.5 * cy * sin + 0.5 * sw)
    m[1, 0] = sin * scale_y
    m[1, 1] = cos * scale_y
    m[1, 2] = scale_y * (-0.5 * cx * sin - 0.5 * cy * cos + 0.5 * sh)
    return m.astype(np.float64)


_WARPS = {"aligned": _aligned_warp, "msra": _msra_warp, "udp": _udp_warp}


@dataclass(frozen=True)
class Convention:
    """Every pixel-grid choice of one pipeline (see the module docstring for the sources).

    ``flip_shift``: move flipped-back heatmaps one pixel right. ``training_flip_pivot``: a
    mirrored training crop maps ``x -> W - pivot - x`` (0 for msra, 1 otherwise).
    ``quarter_rule``: ``each_axis`` or ``msra`` border conditions. ``dark``: ``dark`` or
    ``dark_udp``. ``blur_kernel``: DARK's modulation kernel, None = matched to the training sigma.
    ``rounding``: ``nearest`` (floor(x + 0.5)) or ``truncate`` (int(x + 0.5)) for the standard
    target centre. ``subpixel_window``: the windowed Gaussian sits at the exact point (UDP).
    ``empty_peak``: the coordinate decoded from a map with no positive value.
    ``coco_gt_box``: ``hrnet`` or ``mmpose`` clipping of COCO ground-truth boxes.
    """

    name: str
    flip_shift: bool
    training_flip_pivot: int
    quarter_rule: str
    dark: str
    blur_kernel: int | None
    rounding: str
    subpixel_window: bool
    empty_peak: float
    coco_gt_box: str

    def warp_matrix(self, center: Sequence[float] | np.ndarray, size: Sequence[float] | np.ndarray,
                    input_size: Sequence[int], rotation: float = 0.0, flip: bool = False) -> np.ndarray:
        """``(2, 3)`` float64 affine from image to crop pixels; ``input_size`` is ``(H, W)``.

        ``center`` and ``size`` ``(2,)`` are the box the crop covers, in image pixels (after padding
        and the aspect fix); ``flip`` mirrors the crop as this convention's training flip does.
        """
        c, s = _pair(center, "center"), _pair(size, "size")
        if not (s[0] > 0.0 and s[1] > 0.0):
            raise ValueError(f"box size must be positive, got {list(s)}")
        height, width = (int(v) for v in input_size)
        matrix = _WARPS[self.name](c, s, (height, width), float(rotation))
        if flip:
            matrix[0] = -matrix[0]
            matrix[0, 2] += width - self.training_flip_pivot
        return matrix

    def heatmap_stride(self, input_size: Sequence[int], heatmap_size: Sequence[int]) -> tuple[float, float]:
        """Crop px per heatmap px, ``(x, y)``; sizes are ``(H, W)``."""
        (ih, iw), (hh, hw) = input_size, heatmap_size
        if self.name == "udp":
            return (iw - 1) / (hw - 1), (ih - 1) / (hh - 1)
        return iw / hw, ih / hh

    def heatmap_offset(self) -> float:
        """``hm = (crop + offset) / stride - offset``: 0.5 for pixel-centre alignment, else 0."""
        return 0.5 if self.name == "aligned" else 0.0

    def crop_to_image(self, points: np.ndarray, center: np.ndarray, size: np.ndarray,
                      input_size: Sequence[int]) -> np.ndarray:
        """Crop-pixel points ``(N, K, 2)`` -> image pixels ``(N, K, 2)`` float64 for boxes ``(N, 2)``.

        msra uses mmpose's ``kp / input_size * size + center - size / 2``; udp the exact inverse of its
        warp, ``kp / (input_size - 1) * size + center - size / 2`` (mmpose reaches the same point by
        scaling heatmap px by ``input_size / (heatmap_size - 1)`` and then using the msra formula);
        aligned inverts its own warp.
        """
        height, width = (int(v) for v in input_size)
        kp = np.asarray(points, dtype=np.float64)
        c = np.asarray(center, dtype=np.float64)[:, None, :]
        s = np.asarray(size, dtype=np.float64)[:, None, :]
        if self.name == "aligned":
            zoom = s[..., :1] / width
            return (kp - np.array([(width - 1) * 0.5, (height - 1) * 0.5])) * zoom + c
        span = np.array([width - 1, height - 1] if self.name == "udp" else [width, height], dtype=np.float64)
        return kp / span * s + c - 0.5 * s


def _build() -> dict[str, Convention]:
    return {
        "aligned": Convention("aligned", flip_shift=False, training_flip_pivot=1, quarter_rule="each_axis",
                              dark="dark", blur_kernel=None, rounding="nearest", subpixel_window=False,
                              empty_peak=0.0, coco_gt_box="hrnet"),
        "msra": Convention("msra", flip_shift=True, training_flip_pivot=0, quarter_rule="msra", dark="dark",
                           blur_kernel=11, rounding="truncate", subpixel_window=False, empty_peak=-1.0,
                           coco_gt_box="mmpose"),
        "udp": Convention("udp", flip_shift=False, training_flip_pivot=1, quarter_rule="msra", dark="dark_udp",
                          blur_kernel=11, rounding="truncate", subpixel_window=True, empty_peak=-1.0,
                          coco_gt_box="mmpose"),
    }


_REGISTRY = _build()


def get_convention(name: str | Convention) -> Convention:
    """The convention called ``name``; an unknown name raises naming the valid ones."""
    if isinstance(name, Convention):
        return name
    try:
        return _REGISTRY[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown pixel-grid convention {name!r}; valid: {', '.join(CONVENTIONS)}") from None
