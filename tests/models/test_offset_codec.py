"""The heatmap + offset codec (models/offset_codec.py) on hand-computed cases.

Truth: the paper's definitions (Papandreou et al., CVPR'17, Sec. 3.2): ``h_k`` is 1 within the disk of radius R,
``F_k(x_i) = l_k - x_i``, and ``f_k(x_i) = sum_j 1 / (pi R^2) G(x_j + F_k(x_j) - x_i) h_k(x_j)`` with G the
bilinear kernel ``max(0, 1 - |dx|) max(0, 1 - |dy|)``; every expected map below is worked out by hand.
"""

from __future__ import annotations

import math

import pytest
import torch

from models.offset_codec import OffsetCodec, decode_offsets, fused_maxima, hough_vote


def _fields(height: int, width: int, voters: list[tuple[int, int, float, float, float]]) -> tuple[torch.Tensor, ...]:
    """One map ``(1, 1, H, W)`` of heatmaps and ``(1, 1, 2, H, W)`` offsets: voters (x, y, h, dx, dy)."""
    heatmaps = torch.zeros(1, 1, height, width, dtype=torch.float64)
    offsets = torch.zeros(1, 1, 2, height, width, dtype=torch.float64)
    for x, y, h, dx, dy in voters:
        heatmaps[0, 0, y, x] = h
        offsets[0, 0, :, y, x] = torch.tensor([dx, dy], dtype=torch.float64)
    return heatmaps, offsets


def test_a_single_voter_spreads_its_vote_bilinearly_over_four_pixels() -> None:
    # Voter at (1, 1) pointing by (1.5, 0.25) to (2.5, 1.25): x weights 0.5 / 0.5 on columns 2 / 3,
    # y weights 0.75 / 0.25 on rows 1 / 2; R = 1 so each weight is divided by pi.
    heatmaps, offsets = _fields(4, 5, [(1, 1, 1.0, 1.5, 0.25)])
    expected = torch.zeros(4, 5, dtype=torch.float64)
    expected[1, 2] = expected[1, 3] = 0.375 / math.pi
    expected[2, 2] = expected[2, 3] = 0.125 / math.pi
    torch.testing.assert_close(hough_vote(heatmaps, offsets, 1.0)[0, 0], expected, rtol=0, atol=1e-15)


def test_two_voters_on_the_same_point_add_up() -> None:
    # (0, 0) with h 0.5 points by (2, 1) and (4, 3) with h 1 by (-2, -2): both land exactly on (2, 1).
    heatmaps, offsets = _fields(4, 5, [(0, 0, 0.5, 2.0, 1.0), (4, 3, 1.0, -2.0, -2.0)])
    radius = 2.0
    fused = hough_vote(heatmaps, offsets, radius)
    expected = torch.zeros(1, 1, 4, 5, dtype=torch.float64)
    expected[0, 0, 1, 2] = 1.5 / (math.pi * 4.0)
    torch.testing.assert_close(fused, expected, rtol=0, atol=1e-15)
    coords, scores = decode_offsets(heatmaps, offsets, radius)
    assert coords.tolist() == [[[2.0, 1.0]]]
    torch.testing.assert_close(scores, torch.tensor([[1.5 / (4.0 * math.pi)]], dtype=torch.float64))


def test_vote_weight_falling_outside_the_map_is_dropped() -> None:
    # (4, 0) -> (4.5, 0): half on (4, 0), half on column 5 (outside a 5-wide map).
    # (0, 2) -> (-0.25, 2): 0.75 on (0, 2), 0.25 on column -1 (outside).
    # (2, 2) -> (12, 12): entirely outside.
    heatmaps, offsets = _fields(3, 5, [(4, 0, 1.0, 0.5, 0.0), (0, 2, 1.0, -0.25, 0.0), (2, 2, 1.0, 10.0, 10.0)])
    expected = torch.zeros(3, 5, dtype=torch.float64)
    expected[0, 4] = 0.5 / math.pi
    expected[2, 0] = 0.75 / math.pi
    torch.testing.assert_close(hough_vote(heatmaps, offsets, 1.0)[0, 0], expected, rtol=0, atol=1e-15)


def test_encode_of_a_keypoint_near_the_crop_border() -> None:
    # Keypoint (0.2, 3.0) on a 4x6 crop, R = 1.5: squared distances <= 2.25 only at (0, 2), (0, 3), (1, 2),
    # (1, 3) (0.04 + 1, 0.04, 0.64 + 1, 0.64); (2, 3) is 3.24 away, (0, 1) 4.04. The second joint is not annotated.
    codec = OffsetCodec((4, 6), radius=1.5)
    targets = codec.encode(torch.tensor([[[0.2, 3.0], [2.0, 1.0]]]), torch.tensor([[1.0, 0.0]]))
    disk = torch.zeros(4, 6)
    disk[2:4, 0:2] = 1.0
    torch.testing.assert_close(targets.heatmaps[0, 0], disk, rtol=0, atol=0)
    assert targets.weights.tolist() == [[1.0, 0.0]]
    assert not targets.heatmaps[0, 1].any()
    # The offset is (l - x) / R: at pixel (1, 2), ((0.2 - 1) / 1.5, (3 - 2) / 1.5).
    torch.testing.assert_close(targets.offsets[0, 0, :, 2, 1], torch.tensor([-0.8 / 1.5, 1.0 / 1.5]))
    torch.testing.assert_close(targets.offsets[0, 0, :, 0, 5], torch.tensor([-4.8 / 1.5, 3.0 / 1.5]))


def test_perfect_fields_vote_the_disk_onto_the_keypoint() -> None:
    # Keypoint (3, 2), R = 2: the 13 lattice points with dx^2 + dy^2 <= 4 all vote on (3, 2): f = 13 / (4 pi).
    codec = OffsetCodec((6, 7), radius=2.0)
    targets = codec.encode(torch.tensor([[[3.0, 2.0]]]), torch.ones(1, 1))
    assert int(targets.heatmaps.sum()) == 13
    coords, scores = codec.decode(targets.heatmaps, targets.offsets * codec.radius)
    assert coords.tolist() == [[[3.0, 2.0]]]
    torch.testing.assert_close(scores, torch.tensor([[13 / (4 * math.pi)]]))


def test_a_sub_pixel_keypoint_decodes_to_the_pixel_with_the_largest_bilinear_share() -> None:
    # Every vote lands on (2.6, 1.2): shares 0.48 on (3, 1), 0.32 on (2, 1), 0.12 on (3, 2), 0.08 on (2, 2).
    codec = OffsetCodec((5, 6), radius=1.5)
    targets = codec.encode(torch.tensor([[[2.6, 1.2]]]), torch.ones(1, 1))
    fused = hough_vote(targets.heatmaps, targets.offsets * codec.radius, codec.radius)
    mass = targets.heatmaps.sum() / (math.pi * 1.5**2)
    torch.testing.assert_close(fused[0, 0, 1:3, 2:4], mass * torch.tensor([[0.32, 0.48], [0.08, 0.12]]))
    coords, _ = fused_maxima(fused)
    assert coords.tolist() == [[[3.0, 1.0]]]


def test_shapes_are_checked() -> None:
    with pytest.raises(ValueError, match="offsets"):
        hough_vote(torch.zeros(1, 2, 3, 4), torch.zeros(1, 2, 3, 4), 1.0)
    with pytest.raises(ValueError, match="radius"):
        OffsetCodec((4, 4), radius=0.0)
