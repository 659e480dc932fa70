"""Heatmap + offset fields and their fusion by Hough voting: the codec of G-RMI, beside the Gaussian heatmap codec.

Papandreou et al., "Towards Accurate Multi-person Pose Estimation in the Wild", CVPR'17, Sec. 3.2 (person pose
estimation). For every keypoint ``k`` and crop pixel ``x_i`` the network predicts

- a heatmap ``h_k(x_i)``: the probability that ``x_i`` lies within a disk of radius ``R`` of keypoint ``l_k``
  (target 1 inside the disk, 0 outside);
- an offset field ``F_k(x_i) = l_k - x_i``, the 2-D vector from the pixel to the keypoint, supervised only
  inside the disk;

and the two are fused by Hough voting: every pixel ``x_j`` casts a vote of weight ``h_k(x_j)`` at the point it
points to, spread over the four nearest pixels by the bilinear interpolation kernel ``G``,

    f_k(x_i) = sum_j 1 / (pi R^2) G(x_j + F_k(x_j) - x_i) h_k(x_j),

so a perfect prediction piles the ``pi R^2`` pixels of the disk on the keypoint with total weight 1. The keypoint
is the argmax of ``f_k``, its score ``max f_k``; the pose score is the mean of those maxima over the keypoints
(the paper's eq. 7), which the COCO protocol ranks persons by under ``model.instance_score: keypoint``
(docs/protocols.md).

Pixel grid: targets, offsets and votes live on the full-resolution crop, pixel centres at integer coordinates
(the ``aligned`` convention, docs/conventions.md), so a vote at ``(x, y)`` splits over the pixels
``floor(x) .. floor(x) + 1`` and ``floor(y) .. floor(y) + 1`` and vote weight falling on pixels outside the map is
dropped. Offsets are handed around in crop pixels; the codec's targets are divided by ``R`` (a unit disk),
PoseBench's normalisation (the paper's could not be checked, see models/grmi.py).

``decode_offsets(heatmaps, offsets, radius)`` is the decoder any method with offset outputs can call; the voting
is one batched ``scatter_add`` on the device (no loop over pixels).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import torch

from models.codecs import full_precision

_CORNERS = ((0, 0), (1, 0), (0, 1), (1, 1))
"""The four pixels a bilinear vote reaches: ``(floor(x) + dx, floor(y) + dy)``."""


@dataclasses.dataclass(frozen=True)
class OffsetTargets:
    """Training targets of a batch: ``heatmaps`` ``(B, K, H, W)`` 1 inside each annotated keypoint's disk,
    ``offsets`` ``(B, K, 2, H, W)`` the vector (x, y) to the keypoint divided by ``R``, ``weights`` ``(B, K)``
    1 for annotated keypoints (the others take no part in the loss)."""

    heatmaps: torch.Tensor
    offsets: torch.Tensor
    weights: torch.Tensor


def _pixel_grid(height: int, width: int, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Pixel-centre coordinates ``(H, W)`` each: x then y."""
    ys = torch.arange(height, dtype=like.dtype, device=like.device)
    xs = torch.arange(width, dtype=like.dtype, device=like.device)
    grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")
    return grid_x, grid_y


class OffsetCodec:
    """Disk heatmaps and offset fields on a crop of ``input_size`` ``(H, W)`` pixels, disk radius ``radius`` px."""

    def __init__(self, input_size: Sequence[int], radius: float) -> None:
        if len(input_size) != 2 or min(input_size) <= 0:
            raise ValueError(f"input_size must be a positive (H, W), got {list(input_size)}")
        if radius <= 0:
            raise ValueError(f"radius must be positive, got {radius}")
        self.input_size = (int(input_size[0]), int(input_size[1]))
        self.radius = float(radius)

    def encode(self, keypoints: torch.Tensor, visible: torch.Tensor) -> OffsetTargets:
        """Targets of keypoints ``(B, K, 2)`` crop px with annotation flags ``visible`` ``(B, K)``."""
        height, width = self.input_size
        grid_x, grid_y = _pixel_grid(height, width, keypoints.float())
        dx = keypoints[..., 0, None, None].float() - grid_x
        dy = keypoints[..., 1, None, None].float() - grid_y
        weights = (visible > 0).float()
        inside = (dx.square() + dy.square() <= self.radius**2).float() * weights[..., None, None]
        offsets = torch.stack([dx, dy], dim=2) / self.radius
        return OffsetTargets(inside, offsets, weights)

    def decode(self, heatmaps: torch.Tensor, offsets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Keypoints ``(B, K, 2)`` crop px and scores ``(B, K)`` from heatmap probabilities ``(B, K, H, W)`` and
        offsets ``(B, K, 2, H, W)`` in crop px."""
        return decode_offsets(heatmaps, offsets, self.radius)


def hough_vote(heatmaps: torch.Tensor, offsets: torch.Tensor, radius: float) -> torch.Tensor:
    """Fused maps ``f_k`` ``(B, K, H, W)`` of heatmap probabilities ``(B, K, H, W)`` and offsets
    ``(B, K, 2, H, W)`` (x, y in pixels of the same map), each vote weighted ``h / (pi R^2)``."""
    if heatmaps.ndim != 4 or offsets.shape != (*heatmaps.shape[:2], 2, *heatmaps.shape[2:]):
        raise ValueError(f"heatmaps must be (B, K, H, W) and offsets (B, K, 2, H, W); got "
                         f"{tuple(heatmaps.shape)} and {tuple(offsets.shape)}")
    batch, joints, height, width = heatmaps.shape
    grid_x, grid_y = _pixel_grid(height, width, offsets)
    target_x = grid_x + offsets[:, :, 0]
    target_y = grid_y + offsets[:, :, 1]
    left, top = target_x.floor(), target_y.floor()
    frac_x, frac_y = target_x - left, target_y - top
    votes = heatmaps.to(offsets.dtype) / (math.pi * radius**2)
    fused = torch.zeros(batch * joints, height * width, dtype=offsets.dtype, device=offsets.device)
    for dx, dy in _CORNERS:
        column, row = left + dx, top + dy
        weight = (frac_x if dx else 1.0 - frac_x) * (frac_y if dy else 1.0 - frac_y)
        inside = (column >= 0) & (column <= width - 1) & (row >= 0) & (row <= height - 1)
        index = (row.clamp(0, height - 1) * width + column.clamp(0, width - 1)).long()
        fused.scatter_add_(1, index.reshape(batch * joints, -1),
                           (votes * weight * inside).reshape(batch * joints, -1))
    return fused.reshape(batch, joints, height, width)


def fused_maxima(fused: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Argmax pixel ``(B, K, 2)`` (x, y) and maximum ``(B, K)`` of fused maps ``(B, K, H, W)``."""
    width = fused.shape[-1]
    scores, index = fused.flatten(2).max(dim=2)
    coords = torch.stack([index % width, torch.div(index, width, rounding_mode="floor")], dim=-1)
    return coords.to(fused.dtype), scores


@full_precision
def decode_offsets(heatmaps: torch.Tensor, offsets: torch.Tensor, radius: float) -> tuple[torch.Tensor, torch.Tensor]:
    """The G-RMI decoder: Hough voting, then per keypoint the argmax pixel ``(B, K, 2)`` and its activation
    ``(B, K)``; heatmap probabilities ``(B, K, H, W)``, offsets ``(B, K, 2, H, W)`` in pixels of the same map.
    Computed in fp32, or float64 for float64 fields (bf16 outputs of a bf16-mixed run are widened first)."""
    dtype = torch.float64 if heatmaps.dtype == torch.float64 else torch.float32
    return fused_maxima(hough_vote(heatmaps.to(dtype), offsets.to(dtype), radius))

