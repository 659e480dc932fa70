"""The test-time path from network heatmaps to image keypoints, under one pixel-grid convention.

``image_keypoints`` is a public contract (docs/conventions.md): flip merge, decoding
and the transform back to the image, each as the convention's source does it. Under ``msra``
and ``udp`` it reproduces mmpose 1.3.2's ``TopdownPoseEstimator`` + ``HeatmapHead.predict`` +
``MSRAHeatmap`` / ``UDPHeatmap`` decode + ``add_pred_to_datasample``
(``mmpose/models/heads/heatmap_heads/heatmap_head.py``: ``(plain + flipped_back) * 0.5`` in
float32; ``mmpose/models/pose_estimators/topdown.py``: ``kp / input_size * input_scale +
input_center - 0.5 * input_scale``), which tests/benchmark/test_protocol.py checks against
mmpose's own outputs on real COCO images.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from models.base import flip_permutation
from models.codecs import DECODE_METHODS, HeatmapCodec, flip_heatmaps_back
from pixelgrid import get_convention

ArrayLike = np.ndarray | torch.Tensor


def _as_tensor(values: ArrayLike, name: str) -> torch.Tensor:
    if isinstance(values, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(values))
    if isinstance(values, torch.Tensor):
        return values.detach()
    raise TypeError(f"{name} must be a numpy array or a torch tensor, got {type(values).__name__}")


def _boxes(values: ArrayLike, name: str, count: int) -> np.ndarray:
    array = values.detach().cpu().numpy() if isinstance(values, torch.Tensor) else np.asarray(values)
    array = array.astype(np.float64)
    if array.shape != (count, 2):
        raise ValueError(f"{name} must have shape ({count}, 2), got {array.shape}")
    return array


def merge_flipped(heatmaps: torch.Tensor, flipped: torch.Tensor, flip_pairs: Sequence[Sequence[int]],
                  shift: bool) -> torch.Tensor:
    """``(plain + flipped back) * 0.5`` ``(N, K, h, w)`` float32; ``flipped`` is the mirrored crop's raw output."""
    if flipped.shape != heatmaps.shape:
        raise ValueError(f"flipped_heatmaps must have the shape of heatmaps {tuple(heatmaps.shape)}, "
                         f"got {tuple(flipped.shape)}")
    perm = flip_permutation(flip_pairs, heatmaps.shape[1])
    return (heatmaps.float() + flip_heatmaps_back(flipped.float(), perm, shift=shift)) * 0.5


def image_keypoints(
    heatmaps: ArrayLike,
    flipped_heatmaps: ArrayLike | None = None,
    *,
    center: ArrayLike,
    size: ArrayLike,
    input_size: Sequence[int],
    convention: str,
    decoder: str,
    flip_pairs: Sequence[Sequence[int]],
    blur_kernel: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Heatmaps ``(N, K, h, w)`` (+ the mirrored crop's) -> keypoints ``(N, K, 2)`` image px, scores ``(N, K)``.

    ``center``, ``size`` ``(N, 2)``: the box each crop covers in image px; ``input_size`` ``(H, W)``;
    ``decoder`` one of ``argmax``, ``quarter``, ``dark`` (DARK-UDP under ``udp``); ``blur_kernel``
    defaults to the convention's (11; ``aligned``: the sigma-2 kernel, 11). Keypoints are float64.
    """
    if decoder not in DECODE_METHODS:
        raise ValueError(f"unknown decoder {decoder!r}; valid: {', '.join(DECODE_METHODS)}")
    grid = get_convention(convention)
    maps = _as_tensor(heatmaps, "heatmaps").float()
    if maps.ndim != 4:
        raise ValueError(f"heatmaps must have shape (N, K, h, w), got {tuple(maps.shape)}")
    if flipped_heatmaps is not None:
        maps = merge_flipped(maps, _as_tensor(flipped_heatmaps, "flipped_heatmaps"), flip_pairs, grid.flip_shift)
    codec = HeatmapCodec((int(input_size[0]), int(input_size[1])), (int(maps.shape[-2]), int(maps.shape[-1])),
                         sigma=2.0, blur_kernel=blur_kernel,
                         convention=grid)
    coords, scores = codec.decode_heatmap_px(maps, decoder)
    crop = codec.heatmap_to_crop(coords.double())
    count = maps.shape[0]
    image = grid.crop_to_image(crop.cpu().numpy(), _boxes(center, "center", count), _boxes(size, "size", count),
                               input_size)
    return image, scores.cpu().numpy()
