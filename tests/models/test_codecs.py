"""Tests for models/codecs.py: heatmap and regression codecs, the decoders, the flip helpers.

Truth comes from closed-form Gaussians, hand-computed values, and an independent per-keypoint
re-implementation of DarkPose's post-processing (numpy + cv2.GaussianBlur, as its
lib/core/inference.py does it).
"""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest
import torch

from datamodules.skeletons import COCO, MPII
from models.codecs import (
    DECODE_METHODS,
    HeatmapCodec,
    RegressionCodec,
    blur_kernel_for_sigma,
    decode_heatmaps,
    flip_coordinates,
    flip_heatmaps_back,
)

H, W = 64, 48  # heatmap (H, W) of a 256x192 crop
STRIDE = 4


def _gaussians(centres: np.ndarray, sigma: float, height: int = H, width: int = W) -> np.ndarray:
    """Closed-form untruncated Gaussians ``(N, K, height, width)`` float32 centred at ``centres`` (N, K, 2)."""
    xs = np.arange(width)[None, None, None, :]
    ys = np.arange(height)[None, None, :, None]
    cx = centres[..., 0][..., None, None]
    cy = centres[..., 1][..., None, None]
    return np.exp(-((xs - cx) ** 2 + (ys - cy) ** 2) / (2 * sigma**2)).astype(np.float32)


def _dark_reference(heatmaps: np.ndarray, kernel: int) -> np.ndarray:
    """DarkPose get_final_preds written out per keypoint (float32 maps, as the reference runs it)."""
    n, k, height, width = heatmaps.shape
    border = (kernel - 1) // 2
    coords = np.zeros((n, k, 2))
    for i in range(n):
        for j in range(k):
            hm = heatmaps[i, j]
            index = int(np.argmax(hm))
            px, py = (index % width, index // width) if hm.max() > 0 else (0, 0)
            padded = np.zeros((height + 2 * border, width + 2 * border))
            padded[border:-border, border:-border] = hm
            blurred = cv2.GaussianBlur(padded, (kernel, kernel), 0)[border:-border, border:-border]
            blurred = blurred.astype(np.float32)
            if blurred.max() != 0:
                blurred *= hm.max() / blurred.max()
            f = np.log(np.maximum(blurred, np.float32(1e-10)))
            coords[i, j] = px, py
            if 1 < px < width - 2 and 1 < py < height - 2:
                dx = 0.5 * (f[py, px + 1] - f[py, px - 1])
                dy = 0.5 * (f[py + 1, px] - f[py - 1, px])
                dxx = 0.25 * (f[py, px + 2] - 2 * f[py, px] + f[py, px - 2])
                dyy = 0.25 * (f[py + 2, px] - 2 * f[py, px] + f[py - 2, px])
                dxy = 0.25 * (f[py + 1, px + 1] - f[py - 1, px + 1] - f[py + 1, px - 1] + f[py - 1, px - 1])
                hessian = np.array([[dxx, dxy], [dxy, dyy]], dtype=np.float64)
                if dxx * dyy - dxy**2 != 0:
                    coords[i, j] -= np.linalg.solve(hessian, np.array([dx, dy], dtype=np.float64))
    return coords


def _interior_centres(rng: np.random.Generator, n: int, k: int, margin: float = 4.0) -> np.ndarray:
    return rng.uniform((margin, margin), (W - 1 - margin, H - 1 - margin), size=(n, k, 2))


# --- decoding accuracy ---------------------------------------------------------------------------


def test_decoders_ranked_on_noiseless_subpixel_gaussians() -> None:
    centres = _interior_centres(np.random.default_rng(1), 8, 17)
    maps = _gaussians(centres, sigma=2.0)
    errors = {}
    for method in DECODE_METHODS:
        coords, _ = decode_heatmaps(maps, method)
        errors[method] = np.linalg.norm(coords - centres, axis=-1).mean()
    assert errors["dark"] < 0.05
    assert errors["argmax"] > 0.2
    assert errors["dark"] < errors["quarter"] < errors["argmax"]


def test_unbiased_encode_dark_decode_round_trips() -> None:
    rng = np.random.default_rng(2)
    codec = HeatmapCodec((H * STRIDE, W * STRIDE), (H, W), sigma=2.0, unbiased=True)
    keypoints = torch.tensor(_interior_centres(rng, 8, 17) * STRIDE, dtype=torch.float32)
    heatmaps, weights = codec.encode(keypoints, torch.ones(8, 17))
    decoded, scores = codec.decode(heatmaps, "dark")
    assert torch.all(weights == 1)
    error = (decoded - keypoints).norm(dim=-1)
    assert error.mean() < 0.05  # crop pixels
    assert torch.all(scores <= 1) and torch.all(scores > math.exp(-0.25))  # peak within half a pixel


def test_standard_encode_quarter_decode_round_trips() -> None:
    rng = np.random.default_rng(3)
    codec = HeatmapCodec((H * STRIDE, W * STRIDE), (H, W), sigma=2.0)
    keypoints = torch.tensor(_interior_centres(rng, 8, 17) * STRIDE, dtype=torch.float32)
    heatmaps, _ = codec.encode(keypoints, torch.ones(8, 17))
    decoded, scores = codec.decode(heatmaps, "quarter")
    # An integer-centred Gaussian is symmetric, so quarter has nothing to shift: the round trip
    # returns the rounded heatmap position exactly (pixel centres at integers in both grids:
    # hm = (x + 0.5) / stride - 0.5), within half a heatmap pixel per axis.
    expected = (torch.floor((keypoints + 0.5) / STRIDE - 0.5 + 0.5) + 0.5) * STRIDE - 0.5
    assert torch.equal(decoded, expected)
    assert torch.all(scores == 1)
    per_axis = (decoded - keypoints).abs() / STRIDE  # heatmap pixels
    assert per_axis.max() <= 0.5
    assert per_axis.mean() < 0.3


@pytest.mark.parametrize("method", DECODE_METHODS)
def test_batched_decode_equals_per_sample(method: str) -> None:
    rng = np.random.default_rng(4)
    maps = _gaussians(_interior_centres(rng, 6, 5, margin=-2.0), sigma=2.5) + rng.normal(0, 0.02, (6, 5, H, W))
    maps = torch.tensor(maps, dtype=torch.float32)
    coords, scores = decode_heatmaps(maps, method)
    for i in range(len(maps)):
        one_coords, one_scores = decode_heatmaps(maps[i : i + 1], method)
        torch.testing.assert_close(one_coords[0], coords[i], rtol=0, atol=1e-5)
        assert torch.equal(one_scores[0], scores[i])


@pytest.mark.parametrize("unbiased", [False, True])
def test_batched_encode_equals_per_sample(unbiased: bool) -> None:
    rng = np.random.default_rng(5)
    codec = HeatmapCodec((H * STRIDE, W * STRIDE), (H, W), sigma=2.0, unbiased=unbiased)
    keypoints = torch.tensor(rng.uniform(-40, 280, (5, 17, 2)), dtype=torch.float32)
    visible = torch.tensor(rng.random((5, 17)) < 0.8, dtype=torch.float32)
    heatmaps, weights = codec.encode(keypoints, visible)
    for i in range(5):
        one_maps, one_weights = codec.encode(keypoints[i : i + 1], visible[i : i + 1])
        assert torch.equal(one_maps[0], heatmaps[i])
        assert torch.equal(one_weights[0], weights[i])


def test_dark_matches_per_keypoint_reference_on_realistic_heatmaps() -> None:
    rng = np.random.default_rng(6)
    n, k = 6, 17
    # Predictions look like blurred, scaled Gaussians (wider than the targets) with noise; some
    # peaks sit near or on the border; some maps have a negative background that the 1e-10 floor
    # clips next to the peak; some carry no person at all (all negative).
    centres = rng.uniform((-1.0, -1.0), (W, H), size=(n, k, 2))
    sigmas = rng.uniform(1.5, 3.5, size=(n, k, 1, 1))
    amplitude = rng.uniform(0.2, 1.0, size=(n, k, 1, 1))
    xs, ys = np.arange(W), np.arange(H)[:, None]
    maps = amplitude * np.exp(
        -((xs - centres[..., 0, None, None]) ** 2 + (ys - centres[..., 1, None, None]) ** 2) / (2 * sigmas**2)
    )
    maps += rng.normal(0, 0.01, maps.shape)
    maps[0, :5] -= 0.15  # negative background: partly clipped neighbourhoods
    maps[1, :3] = -np.abs(maps[1, :3])  # no positive peak
    # A spike in a negative pit, a positive blob elsewhere: the whole 5x5 window is clipped,
    # the log is flat there, det H = 0 and the peak is left unrefined.
    maps[2, 0] = 0.0
    maps[2, 0, 22:39, 12:29] = -0.5
    maps[2, 0, 30, 20] = 1.0
    maps[2, 0, 5:10, 35:40] = 0.5
    # The same spike with nothing positive around: the blurred maximum is negative, so the
    # reference's rescaling flips the sign of the whole blurred map (kept, as the reference does).
    maps[2, 1] = -0.5
    maps[2, 1, 30, 20:22] = 1.0, 0.8
    maps = maps.astype(np.float32)

    expected = _dark_reference(maps, kernel=11)
    coords, scores = decode_heatmaps(maps, "dark", blur_kernel=11)
    np.testing.assert_allclose(coords, expected, rtol=0, atol=1e-4)
    np.testing.assert_array_equal(scores, maps.reshape(n, k, -1).max(-1))
    np.testing.assert_array_equal(coords[2, 0], [20.0, 30.0])
    assert np.abs(coords[2, 1] - [20.0, 30.0]).max() > 1e-3
    # The cases above are meant to be exercised: Taylor steps taken, clipped windows, unrefined peaks.
    fraction = np.abs(expected - np.round(expected)).max(-1) > 1e-3
    assert 0.5 < fraction.mean() < 1.0

    # sigma 3 / kernel 17 as well (fewer maps)
    maps3 = maps[:2]
    np.testing.assert_allclose(
        decode_heatmaps(maps3, "dark", blur_kernel=17)[0], _dark_reference(maps3, kernel=17), rtol=0, atol=1e-4
    )


# --- hand-computed values ------------------------------------------------------------------------


def test_standard_encode_hand_values() -> None:
    codec = HeatmapCodec((256, 192), (64, 48), sigma=2.0)
    # crop (41, 61) -> heatmap ((41.5 / 4) - 0.5, (61.5 / 4) - 0.5) = (9.875, 14.875) -> mu = (10, 15)
    heatmaps, weights = codec.encode(torch.tensor([[[41.0, 61.0]]]), torch.ones(1, 1))
    hm = heatmaps[0, 0]
    assert heatmaps.dtype == torch.float32 and weights.dtype == torch.float32
    assert hm[15, 10] == 1.0 and hm.max() == 1.0
    assert hm[15, 11] == pytest.approx(math.exp(-1 / 8), rel=1e-6)  # one pixel: exp(-1 / (2 sigma^2))
    assert hm[16, 11] == pytest.approx(math.exp(-2 / 8), rel=1e-6)
    assert hm[15, 16] == pytest.approx(math.exp(-36 / 8), rel=1e-6)  # window edge: 3 sigma
    assert hm[15, 17] == 0 and hm[22, 10] == 0  # outside the 6 sigma + 1 window
    assert int((hm > 0).sum()) == 13 * 13


def test_unbiased_encode_hand_values() -> None:
    codec = HeatmapCodec((256, 192), (64, 48), sigma=2.0, unbiased=True)
    heatmaps, _ = codec.encode(torch.tensor([[[42.5, 61.5]]]), torch.ones(1, 1))
    hm = heatmaps[0, 0]  # centred at exactly (43 / 4 - 0.5, 62 / 4 - 0.5) = (10.25, 15)
    assert hm[15, 10] == pytest.approx(math.exp(-(0.25**2) / 8), rel=1e-6)
    assert hm[15, 11] == pytest.approx(math.exp(-(0.75**2) / 8), rel=1e-6)
    # No window: far beyond 3 sigma the Gaussian is still there (until float32 underflows).
    assert hm[15, 20] == pytest.approx(math.exp(-(9.75**2) / 8), rel=1e-5)
    assert hm[25, 30] == pytest.approx(math.exp(-(19.75**2 + 10**2) / 8), rel=1e-4)


def test_weights_zero_for_unannotated_and_out_of_range() -> None:
    codec = HeatmapCodec((256, 192), (64, 48), sigma=2.0)
    keypoints = torch.tensor([[
        [100.0, 100.0],  # annotated, inside
        [100.0, 100.0],  # unannotated
        [float("nan"), float("nan")],  # unannotated with no coordinates
        # heatmap x = (x + 0.5) / 4 - 0.5, mu = floor(hm + 0.5)
        [215.4, 100.0],  # hm 53.475, mu_x = 53: ul = 47 < 48 -> kept, only column 47 drawn
        [215.5, 100.0],  # hm 53.5, mu_x = 54: ul = 48 >= 48 -> weight 0
        [-20.0, 100.0],  # hm -5.375, mu_x = -5: window reaches column 1 -> kept
        [-34.0, 100.0],  # hm -8.875, mu_x = -9: br = -2 < 0 -> weight 0
        [100.0, 281.0],  # hm 69.875, mu_y = 70: ul = 64 >= 64 -> weight 0
    ]])
    visible = torch.tensor([[1.0, 0.0, 0.0, 1.0, 1.0, 1.0, 1.0, 1.0]])
    heatmaps, weights = codec.encode(keypoints, visible)
    assert weights.tolist() == [[1.0, 0.0, 0.0, 1.0, 0.0, 1.0, 0.0, 0.0]]
    assert torch.all(heatmaps[0, weights[0] == 0] == 0)
    assert not torch.isnan(heatmaps).any()
    mu_y = 25  # floor(100.5 / 4 - 0.5 + 0.5)
    assert heatmaps[0, 3, mu_y, 47] == pytest.approx(math.exp(-36 / 8), rel=1e-6)
    assert int((heatmaps[0, 3] > 0).sum()) == 13
    assert heatmaps[0, 5, mu_y, 0] == pytest.approx(math.exp(-25 / 8), rel=1e-6)  # 5 px from mu_x = -5
    assert heatmaps[0, 5, mu_y, 1] == pytest.approx(math.exp(-36 / 8), rel=1e-6)
    assert int((heatmaps[0, 5] > 0).sum()) == 2 * 13

    unbiased = HeatmapCodec((256, 192), (64, 48), sigma=2.0, unbiased=True)
    _, weights = unbiased.encode(torch.tensor([[[217.4, 100.0], [217.5, 100.0]]]), torch.ones(1, 2))
    assert weights.tolist() == [[1.0, 0.0]]  # ul = floor(53.975 - 6) = 47 vs floor(54 - 6) = 48


def test_argmax_takes_the_first_maximum_in_row_major_order() -> None:
    # HRNet get_max_preds uses np.argmax over the flattened map: ties go to the lowest (y * W + x).
    maps = np.zeros((2, 3, 6, 5), dtype=np.float32)
    maps[0, 0, 2, 4] = maps[0, 0, 3, 1] = 0.7  # (x, y) = (4, 2) comes first
    maps[0, 1, 5, 0] = maps[0, 1, 5, 4] = 0.4  # same row: (0, 5)
    maps[0, 2] = 0.2  # a plateau: (0, 0)
    maps[1] = maps[0, ::-1]
    coords, scores = decode_heatmaps(torch.from_numpy(maps), "argmax")
    expected = torch.tensor([[4.0, 2.0], [0.0, 5.0], [0.0, 0.0]])
    assert torch.equal(coords, torch.stack([expected, expected.flip(0)]))
    assert torch.equal(scores, torch.tensor([[0.7, 0.4, 0.2], [0.2, 0.4, 0.7]]))
    # A strided view decodes like its contiguous copy (the CPU argmax reads the memory as it lies).
    view = torch.from_numpy(maps).transpose(0, 1)[::2]
    for method in DECODE_METHODS:
        for got, want in zip(decode_heatmaps(view, method), decode_heatmaps(view.contiguous(), method), strict=True):
            assert torch.equal(got, want)


def test_quarter_offset_direction_hand_built() -> None:
    maps = np.zeros((1, 5, 9, 9), dtype=np.float32)
    maps[0, 0, 4, 4] = 1.0
    maps[0, 0, 4, 5], maps[0, 0, 4, 3] = 0.8, 0.5  # right higher -> x + 0.25
    maps[0, 0, 3, 4], maps[0, 0, 5, 4] = 0.7, 0.2  # up higher -> y - 0.25
    maps[0, 1, 4, 4] = 1.0  # equal neighbours -> no shift
    maps[0, 2, 0, 4] = 1.0  # top row: no neighbour above -> y stays; left higher -> x - 0.25
    maps[0, 2, 0, 3] = 0.5
    maps[0, 3, 4, 1] = 1.0  # column 1 has both x neighbours (HRNet's 1 < px would skip it)
    maps[0, 3, 4, 0], maps[0, 3, 4, 2] = 0.9, 0.1
    maps[0, 4, 8, 8] = 1.0  # bottom-right corner: nothing to compare with
    maps[0, 4, 8, 7], maps[0, 4, 7, 8] = 0.9, 0.9
    coords, scores = decode_heatmaps(maps, "quarter")
    np.testing.assert_array_equal(coords[0], [[4.25, 3.75], [4.0, 4.0], [3.75, 0.0], [0.75, 4.0], [8.0, 8.0]])
    np.testing.assert_array_equal(scores[0], [1.0] * 5)
    argmax, _ = decode_heatmaps(maps, "argmax")
    np.testing.assert_array_equal(argmax[0], [[4, 4], [4, 4], [4, 0], [1, 4], [8, 8]])


def test_dark_on_an_exact_log_quadratic_recovers_the_centre() -> None:
    # A Gaussian blurred by a Gaussian stays Gaussian, so its log is an exact quadratic away from
    # the border and one Newton step lands on the centre.
    centre = np.array([[[20.3, 30.6]]])
    coords, scores = decode_heatmaps(_gaussians(centre, 2.0).astype(np.float64), "dark")
    np.testing.assert_allclose(coords, centre, atol=2e-3)
    assert scores[0, 0] == pytest.approx(math.exp(-(0.3**2 + 0.4**2) / 8), rel=1e-7)


# --- degenerate input ----------------------------------------------------------------------------


@pytest.mark.parametrize("method", DECODE_METHODS)
def test_all_zero_heatmaps_give_zero_score(method: str) -> None:
    coords, scores = decode_heatmaps(torch.zeros(2, 3, H, W), method)
    assert torch.equal(scores, torch.zeros(2, 3))
    assert torch.equal(coords, torch.zeros(2, 3, 2))


@pytest.mark.parametrize("method", DECODE_METHODS)
def test_border_peaks_decode_without_index_errors(method: str) -> None:
    peaks = [(0, 0), (W - 1, 0), (0, H - 1), (W - 1, H - 1), (1, 20), (W - 2, 20), (20, 1), (20, H - 2)]
    maps = np.zeros((1, len(peaks), H, W), dtype=np.float32)
    for j, (x, y) in enumerate(peaks):
        maps[0, j] = _gaussians(np.array([[[x, y]]], dtype=float), 2.0)[0, 0]
        maps[0, j, y, x] = 1.5  # a sharp maximum exactly on the border pixel
    coords, scores = decode_heatmaps(maps, method)
    assert np.all(np.isfinite(coords)) and np.all(scores == 1.5)
    # Too close to the border for DARK's 2-px stencil: left where argmax put it.
    if method in ("argmax", "dark"):
        np.testing.assert_array_equal(coords[0], np.array(peaks, dtype=np.float32))


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_heatmaps_raise(bad: float) -> None:
    maps = torch.rand(2, 3, H, W)
    maps[1, 2, 5, 7] = bad
    with pytest.raises(ValueError, match=r"NaN/inf.*\[1, 2, 5, 7\]"):
        decode_heatmaps(maps, "dark")


def test_bad_arguments_raise() -> None:
    maps = np.zeros((1, 1, H, W), dtype=np.float32)
    with pytest.raises(ValueError, match="argmax, quarter, dark"):
        decode_heatmaps(maps, "softargmax")
    with pytest.raises(ValueError, match="odd"):
        decode_heatmaps(maps, "dark", blur_kernel=10)
    with pytest.raises(ValueError, match=r"\(N, K, H, W\)"):
        decode_heatmaps(maps[0], "argmax")
    with pytest.raises(ValueError, match="permutation"):
        flip_heatmaps_back(maps, [0, 0])
    codec = HeatmapCodec((256, 192), (64, 48), sigma=2.0)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        codec.encode(torch.tensor([[[1.0, 2.0], [float("nan"), 3.0]]]), torch.ones(1, 2))
    with pytest.raises(ValueError, match="visible"):
        codec.encode(torch.zeros(2, 3, 2), torch.ones(2, 4))


def test_numpy_in_numpy_out_torch_in_torch_out() -> None:
    maps = _gaussians(_interior_centres(np.random.default_rng(7), 2, 3), 2.0)
    for method in DECODE_METHODS:
        coords, scores = decode_heatmaps(maps, method)
        assert isinstance(coords, np.ndarray) and isinstance(scores, np.ndarray)
        assert coords.shape == (2, 3, 2) and scores.shape == (2, 3) and coords.dtype == np.float32
        t_coords, t_scores = decode_heatmaps(torch.from_numpy(maps), method)
        assert isinstance(t_coords, torch.Tensor) and isinstance(t_scores, torch.Tensor)
        np.testing.assert_array_equal(t_coords.numpy(), coords)
        d_coords, _ = decode_heatmaps(maps.astype(np.float64), method)
        assert d_coords.dtype == np.float64
    assert isinstance(flip_heatmaps_back(maps, [0, 2, 1]), np.ndarray)
    assert isinstance(flip_heatmaps_back(torch.from_numpy(maps), [0, 2, 1]), torch.Tensor)
    assert isinstance(flip_coordinates(coords, W, [0, 2, 1]), np.ndarray)


# --- codec decode and kernel choice --------------------------------------------------------------


def test_codec_decode_uses_stride_and_matched_kernel() -> None:
    assert blur_kernel_for_sigma(2.0) == 11 and blur_kernel_for_sigma(3.0) == 17
    codec = HeatmapCodec((384, 288), (96, 72), sigma=3.0)
    assert codec.blur_kernel == 17 and codec.stride == (4.0, 4.0)
    maps = torch.tensor(_gaussians(np.array([[[30.4, 50.7]]]), 3.0, 96, 72))
    keypoints, scores = codec.decode(maps, "dark")
    coords, same_scores = decode_heatmaps(maps, "dark", blur_kernel=17)
    assert torch.equal(keypoints, (coords + 0.5) * 4 - 0.5) and torch.equal(scores, same_scores)
    assert not torch.equal(coords, decode_heatmaps(maps, "dark", blur_kernel=11)[0])
    # Anisotropic stride (x 4, y 2): heatmap pixel (7, 10) covers crop x in [27.5, 31.5] and
    # y in [19.5, 21.5]; its centre is (29.5, 20.5).
    wide = HeatmapCodec((64, 96), (32, 24), sigma=2.0)
    hm = torch.zeros(1, 1, 32, 24)
    hm[0, 0, 10, 7] = 1.0
    assert wide.decode(hm, "argmax")[0].tolist() == [[[29.5, 20.5]]]


# --- flip ----------------------------------------------------------------------------------------


def test_flip_twice_is_identity() -> None:
    rng = np.random.default_rng(8)
    perm = COCO.flip_permutation
    maps = torch.tensor(rng.random((2, 17, H, W)), dtype=torch.float32)
    assert torch.equal(flip_heatmaps_back(flip_heatmaps_back(maps, perm), perm), maps)
    # On a 1/64 px grid float32 holds (191 - x) exactly, so the round trip must be bit-exact.
    coords = torch.tensor(np.round(rng.uniform(0, 191, (2, 17, 2)) * 64) / 64, dtype=torch.float32)
    assert torch.equal(flip_coordinates(flip_coordinates(coords, 192, perm), 192, perm), coords)
    coords_np = np.round(rng.uniform(0, 255, (3, 16, 2)) * 64) / 64
    np.testing.assert_array_equal(
        flip_coordinates(flip_coordinates(coords_np, 256, MPII.flip_permutation), 256, MPII.flip_permutation), coords_np
    )


def test_flip_hand_computed() -> None:
    perm = COCO.flip_permutation  # 1 = l_eye <-> 2 = r_eye; 0 = nose stays
    coords = torch.zeros(1, 17, 2)
    coords[0, 0] = torch.tensor([0.0, 5.0])
    coords[0, 1] = torch.tensor([10.0, 20.0])
    flipped = flip_coordinates(coords, 192, perm)
    assert flipped[0, 0].tolist() == [191.0, 5.0]
    assert flipped[0, 2].tolist() == [181.0, 20.0]  # the mirrored left eye is the right eye
    assert flipped[0, 1].tolist() == [191.0, 0.0]

    maps = torch.zeros(1, 17, H, W)
    maps[0, 1, 7, 5] = 1.0  # the flipped pass's "l_eye" channel
    back = flip_heatmaps_back(maps, perm)
    assert back[0, 2, 7, W - 1 - 5] == 1.0 and back.sum() == 1.0
    shifted = flip_heatmaps_back(maps, perm, shift=True)
    assert shifted[0, 2, 7, W - 1 - 5 + 1] == 1.0 and shifted.sum() == 1.0
    column0 = torch.zeros(1, 17, H, W)
    column0[0, 0, 3, W - 1] = 2.0  # lands in column 0, which the shift keeps (and copies to column 1)
    shifted0 = flip_heatmaps_back(column0, perm, shift=True)
    assert shifted0[0, 0, 3, 0] == 2.0 and shifted0[0, 0, 3, 1] == 2.0


def test_flip_test_of_a_symmetric_pose_matches_the_unflipped_decode() -> None:
    # Heatmaps of a flipped crop, flipped back, decode to the original heatmap coordinates.
    rng = np.random.default_rng(9)
    perm = COCO.flip_permutation
    centres = _interior_centres(rng, 2, 17)
    mirrored = flip_coordinates(centres, W, perm)
    back = flip_heatmaps_back(_gaussians(mirrored, 2.0), perm)
    coords, _ = decode_heatmaps(back, "dark")
    np.testing.assert_allclose(coords, centres, atol=0.02)


# --- regression ----------------------------------------------------------------------------------


def test_regression_codec_hand_values_and_round_trip() -> None:
    codec = RegressionCodec((256, 192))
    keypoints = torch.tensor([[[95.5, 127.5], [-0.5, -0.5], [191.5, 255.5], [float("nan"), 0.0], [0.0, 0.0]]])
    visible = torch.tensor([[1.0, 1.0, 1.0, 0.0, 1.0]])
    targets, weights = codec.encode(keypoints, visible)
    expected = [[0.0, 0.0], [-0.5, -0.5], [0.5, 0.5], [0.0, 0.0], [-95.5 / 192, -127.5 / 256]]
    torch.testing.assert_close(targets[0], torch.tensor(expected), rtol=0, atol=1e-7)
    assert weights.tolist() == [[1.0, 1.0, 1.0, 0.0, 1.0]]
    decoded = codec.decode(targets)
    torch.testing.assert_close(decoded[0, [0, 1, 2, 4]], keypoints[0, [0, 1, 2, 4]], rtol=0, atol=1e-5)
    np.testing.assert_allclose(codec.decode(np.array([[[0.5, -0.5]]], dtype=np.float32)), [[[191.5, -0.5]]])


# --- pixel-grid conventions (pixelgrid; mmpose 1.3.2 codecs/utils/gaussian_heatmap.py, refinement.py) ---


def _peak(maps: torch.Tensor) -> tuple[int, int]:
    index = int(maps.reshape(-1).argmax())
    return index % maps.shape[-1], index // maps.shape[-1]


def test_convention_target_centres_hand_computed() -> None:
    kp = torch.tensor([[[10.0, 20.0], [-2.5, 20.0], [100.0, 20.0]]])
    visible = torch.ones(1, 3)
    aligned = HeatmapCodec((256, 192), (64, 48), 2.0).encode(kp, visible)[0][0]
    msra = HeatmapCodec((256, 192), (64, 48), 2.0, convention="msra").encode(kp, visible)[0][0]
    udp = HeatmapCodec((256, 192), (64, 48), 2.0, convention="udp").encode(kp, visible)[0][0]
    # x = 10: aligned hm (10.5 / 4 - 0.5) = 2.125 -> 2; msra hm 2.5 -> int(3.0) = 3.
    assert _peak(aligned[0])[0] == 2 and _peak(msra[0])[0] == 3
    # x = -2.5: msra hm -0.625 -> int(-0.125) = 0 (truncation toward zero, mmpose's astype(int)), a full
    # peak in column 0; aligned hm -1.0 -> floor(-0.5) = -1, outside, so column 0 holds exp(-1 / 8).
    assert float(msra[1].amax()) == 1.0 and _peak(msra[1])[0] == 0
    assert float(aligned[1].amax()) == pytest.approx(math.exp(-1 / 8), abs=1e-7)
    # x = 100: udp hm 100 * 47 / 191 = 24.607; the window is the 13 px around int(25.107) = 25, the
    # Gaussian sits at the exact point inside it, and column 18 (outside the window) is 0.
    hx = float(np.float32(100.0) / np.float32(191 / 47))
    hy = float(np.float32(20.0) / np.float32(255 / 63))  # 4.941 -> window rows around int(5.44) = 5
    for column in (19, 25, 31):
        expected = math.exp(-((column - hx) ** 2 + (5 - hy) ** 2) / 8)
        assert float(udp[2, 5, column]) == pytest.approx(expected, rel=1e-6)
    assert float(udp[2, 5, 18]) == 0.0 and float(udp[2, 5, 32]) == 0.0


def test_convention_decoding_rules_hand_computed() -> None:
    maps = torch.zeros(1, 3, 8, 8)
    maps[0, 0, 4, 1] = 1.0  # peak in column 1: msra's x rule needs 1 < x, so no x step there
    maps[0, 0, 4, 2] = 0.5
    maps[0, 1, 0, 5] = 1.0  # peak in row 0: msra refines x (0 < y < H fails), nothing in y
    maps[0, 1, 0, 6] = 0.5
    aligned, _ = decode_heatmaps(maps, "quarter")
    msra, _ = decode_heatmaps(maps, "quarter", convention="msra")
    assert aligned[0, 0].tolist() == [1.25, 4.0] and msra[0, 0].tolist() == [1.0, 4.0]
    assert aligned[0, 1].tolist() == [5.25, 0.0] and msra[0, 1].tolist() == [5.0, 0.0]
    # A map without a positive value: HRNet gives (0, 0), mmpose -1; at stride 4 that is crop -4 under msra.
    assert aligned[0, 2].tolist() == [0.0, 0.0] and msra[0, 2].tolist() == [-1.0, -1.0]
    crop, _ = HeatmapCodec((32, 32), (8, 8), 2.0, convention="msra").decode(maps, "argmax")
    assert crop[0, 2].tolist() == [-4.0, -4.0] and crop[0, 0].tolist() == [4.0, 16.0]
    udp, _ = HeatmapCodec((32, 32), (8, 8), 2.0, convention="udp").decode(maps, "argmax")
    assert udp[0, 0].tolist() == pytest.approx([31 / 7, 4 * 31 / 7])


def test_convention_blur_kernel_defaults() -> None:
    # The released MSRA / UDP configs blur with 11 whatever sigma; PoseBench's grid matches it to sigma.
    assert HeatmapCodec((384, 288), (96, 72), 3.0, convention="msra").blur_kernel == 11
    assert HeatmapCodec((384, 288), (96, 72), 3.0, convention="udp").blur_kernel == 11
    assert HeatmapCodec((384, 288), (96, 72), 3.0).blur_kernel == 17


def test_regression_codec_follows_mmpose_under_msra() -> None:
    codec = RegressionCodec((256, 192), convention="msra")
    kp = torch.tensor([[[96.0, 128.0]]])
    targets, _ = codec.encode(kp, torch.ones(1, 1))
    assert targets.tolist() == [[[0.5, 0.5]]]  # mmpose RegressionLabel: x / input_size
    assert codec.decode(targets).tolist() == kp.tolist()


def test_decoding_and_the_crop_to_image_map_ignore_a_bf16_autocast():
    """A bf16-mixed run evaluates inside autocast, where matrix products round to bf16 (8 bits: 1 px steps at
    128-256 px): the decoders (DARK's blur, the offset vote) and the crop-to-image map run in fp32 regardless."""
    from models.base import crop_to_image
    from models.offset_codec import decode_offsets

    generator = torch.Generator().manual_seed(0)
    maps = torch.rand(2, 3, 16, 12, generator=generator)
    offsets = torch.randn(2, 3, 2, 16, 12, generator=generator)
    points = torch.rand(2, 3, 2, generator=generator) * 255.0
    inverse = torch.tensor([[[1.37, 0.11, 101.3], [-0.07, 1.29, 55.7]]]).expand(2, 2, 3).contiguous()
    exact = {method: decode_heatmaps(maps, method) for method in ("argmax", "quarter", "dark")}
    exact_image = crop_to_image(points, inverse)
    exact_votes = decode_offsets(maps, offsets, 2.0)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        for method, (coords, scores) in exact.items():
            rounded_coords, rounded_scores = decode_heatmaps(maps, method)
            assert rounded_coords.dtype == torch.float32
            torch.testing.assert_close(rounded_coords, coords, rtol=0, atol=0)
            torch.testing.assert_close(rounded_scores, scores, rtol=0, atol=0)
        image = crop_to_image(points, inverse)
        votes = decode_offsets(maps, offsets, 2.0)
    assert image.dtype == torch.float32
    torch.testing.assert_close(image, exact_image, rtol=0, atol=0)
    for got, want in zip(votes, exact_votes, strict=True):
        torch.testing.assert_close(got, want, rtol=0, atol=0)
