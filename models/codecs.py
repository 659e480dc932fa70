"""Keypoint codecs: keypoints in crop pixels <-> training targets, and predictions back to keypoints.

Each codec owns both directions of one representation (the mmpose codec idea: mmpose/codecs/):
``HeatmapCodec`` (Gaussian heatmaps; standard or DARK-unbiased encoding; argmax / quarter / DARK
decoding) and ``RegressionCodec`` (DeepPose box-normalised coordinates). Everything is batched torch,
runs on the tensors' device, and has no Python loop over samples or joints. ``decode_heatmaps`` is a
public contract (docs/conventions.md) and also accepts numpy.

Sources, fact by fact:

- Crop <-> heatmap pixels: pixel centres sit at integers in both grids (the project convention:
  the crop spans ``[-0.5, W - 0.5]``, see ``datamodules/transforms.py``), so heatmap pixel ``j`` covers
  crop pixels ``[j s - 0.5, (j + 1) s - 0.5]`` and ``hm = (x + 0.5) / s - 0.5``, ``x = (hm + 0.5) s - 0.5``
  with stride ``s`` = input / heatmap size per axis. Deviation from HRNet, which uses ``hm = x / s``
  and so shifts every prediction by ``(s - 1) / 2`` crop px; that half-pixel bias is what the UDP
  paper (Huang et al., CVPR'20, Sec. 3) analyses and what HRNet's one-pixel flip shift partly
  compensates. With aligned grids the mirrored heatmap is exact and the shift is not needed.
- Standard encoding: HRNet official code (leoxiaobin/deep-high-resolution-net.pytorch),
  ``lib/dataset/JointsDataset.py`` ``generate_target``: centre rounded to the nearest heatmap pixel
  (``mu = floor(hm + 0.5)``; HRNet writes ``int(x / stride + 0.5)``), a window of
  ``6 * sigma + 1`` pixels around ``mu`` holding ``exp(-d^2 / (2 sigma^2))`` (1 at the centre), zero
  elsewhere; weight 0 when ``ul = floor(mu - 3 sigma) >= size`` or ``br = floor(mu + 3 sigma + 1) < 0`` on
  either axis, weight = visibility otherwise. For a non-integer ``3 sigma`` the reference crops an
  asymmetric window; here the window is always the symmetric ``|p - mu| <= 3 sigma`` (identical for
  sigma 2 and 3, the values HRNet uses).
- Unbiased encoding: DARK, Zhang et al. CVPR'20, Sec. 3.2 (coordinate encoding), and the DarkPose
  code (ilovepose/DarkPose) ``lib/dataset/JointsDataset.py`` ``generate_target`` /
  ``adjust_target_weight``: the Gaussian is centred at the exact (unrounded) ``hm`` and evaluated over the
  whole heatmap (no window, no truncation); the weight test is the same ``ul``/``br`` test with the
  unrounded centre.
- ``argmax``: HRNet ``lib/core/inference.py`` ``get_max_preds``: first maximum, score = peak value,
  coordinates set to (0, 0) where the peak is not positive.
- ``quarter``: HRNet ``lib/core/inference.py`` ``get_final_preds`` (``TEST.POST_PROCESS``): move the
  argmax 0.25 px toward the higher neighbour, per axis, by ``sign(right - left)``. Deviation: the
  reference requires ``1 < px < W - 1 and 1 < py < H - 1`` jointly; here each axis is shifted wherever
  both its neighbours exist (``0 < px < W - 1``), so peaks in row/column 1 or on the other axis's border
  are refined too.
- ``dark``: DARK paper Sec. 3.1 (distribution modulation with a Gaussian of the training sigma, log
  transform, second-order Taylor expansion at the maximum) and DarkPose ``lib/core/inference.py``
  ``gaussian_blur``, ``taylor``, ``get_final_preds``: each map is zero-padded by ``(k - 1) / 2``, blurred
  with ``cv2.GaussianBlur(map, (k, k), 0)`` (sigma from the cv2 default ``0.3 * ((k - 1) / 2 - 1) + 0.8``,
  fixed tables for k <= 7: the kernel is taken from ``cv2.getGaussianKernel``), rescaled to its original
  maximum, clipped at 1e-10 and logged; at the argmax ``(px, py)`` with ``1 < px < W - 2`` and
  ``1 < py < H - 2``, derivatives ``dx = (f[x+1] - f[x-1]) / 2``, ``dxx = (f[x+2] - 2 f[x] + f[x-2]) / 4``,
  ``dxy = (f[x+1,y+1] - f[x+1,y-1] - f[x-1,y+1] + f[x-1,y-1]) / 4`` and the offset ``-H^-1 g`` is added
  unless ``det H == 0``. Scores are the peaks of the unblurred maps. Only the blurred 5x5 window
  around each peak is computed (see ``_dark_log_values`` for why that is exact). The released configs use
  ``BLUR_KERNEL: 11`` (also at 384x288 with sigma 3); ``HeatmapCodec`` instead matches the kernel to
  its sigma as the paper says (11 for sigma 2, 17 for sigma 3) unless ``blur_kernel`` is given.
- Flip test: HRNet ``lib/utils/transforms.py`` ``flip_back`` (mirror the width axis, swap left/right
  channels) and ``lib/core/function.py`` ``validate`` (``TEST.SHIFT_HEATMAP``: the flipped heatmap is
  shifted one pixel right, ``output_flipped[:, :, :, 1:] = output_flipped.clone()[:, :, :, 0:-1]``).
  Coordinate flip in crop pixels follows the project convention ``x' = (W - 1) - x`` (docs/conventions.md).
- Regression: DeepPose, Toshev & Szegedy CVPR'14, Sec. 3 ("Pose vectors"): ``N(y; b) = (y - b_c) / b_size``
  per axis with ``b`` the person box; the box is the crop, spanning ``[-0.5, W - 0.5]`` in crop pixels
  (centre ``(W - 1) / 2``, size ``W``).
"""

from __future__ import annotations

import contextlib
import functools
import math
from collections.abc import Callable, Sequence
from typing import ParamSpec, TypeVar

import cv2
import numpy as np
import torch

from pixelgrid import DEFAULT_CONVENTION, Convention, get_convention

DECODE_METHODS: tuple[str, ...] = ("argmax", "quarter", "dark")

Array = TypeVar("Array", np.ndarray, torch.Tensor)

# DarkPose clips the modulated heatmaps here before the log (lib/core/inference.py get_final_preds).
_LOG_FLOOR = 1e-10


_P = ParamSpec("_P")
_R = TypeVar("_R")


def full_precision(function: Callable[_P, _R]) -> Callable[_P, _R]:
    """``function`` run with autocast off (CPU and CUDA): under bf16-mixed, matrix products inside autocast round to
    bf16 (8 significant bits, 1 px steps at 128-256 px), which decoding and coordinate maps must not."""

    @functools.wraps(function)
    def in_fp32(*args: _P.args, **kwargs: _P.kwargs) -> _R:
        with contextlib.ExitStack() as stack:
            for device in ("cpu", "cuda"):
                if torch.is_autocast_enabled(device):
                    stack.enter_context(torch.autocast(device, enabled=False))
            return function(*args, **kwargs)

    return in_fp32


def blur_kernel_for_sigma(sigma: float) -> int:
    """Odd kernel size whose cv2 default sigma best matches ``sigma``: 11 for 2, 17 for 3 (min 3)."""
    # cv2 derives sigma = 0.3 * ((k - 1) / 2 - 1) + 0.8 from the kernel size; solve for k.
    exact = 2.0 * ((sigma - 0.8) / 0.3 + 1.0) + 1.0
    return max(3, 2 * round((exact - 1.0) / 2.0) + 1)


@functools.lru_cache(maxsize=16)
def _cv2_gaussian_kernel(size: int) -> np.ndarray:
    """``(size,)`` float64 1-D kernel that ``cv2.GaussianBlur(..., (size, size), 0)`` applies per axis."""
    return cv2.getGaussianKernel(size, 0).ravel()


def _to_tensor(values: np.ndarray | torch.Tensor, name: str) -> torch.Tensor:
    """Tensor view of ``values`` (numpy shares its memory); anything else is a TypeError naming ``name``."""
    if isinstance(values, np.ndarray):
        return torch.from_numpy(values)
    if isinstance(values, torch.Tensor):
        return values
    raise TypeError(f"{name} must be a numpy array or a torch tensor, got {type(values).__name__}")


def _like_input(values: torch.Tensor, like: Array) -> Array:
    """``values`` in the type ``like`` came in as: numpy (on the CPU) for numpy input, else the tensor."""
    if isinstance(like, np.ndarray):
        return values.cpu().numpy()
    return values


def _float(values: torch.Tensor) -> torch.Tensor:
    """float64 stays float64 (exact comparisons in tests); everything else computes in float32."""
    return values if values.dtype == torch.float64 else values.float()


def _check_blur_kernel(blur_kernel: int) -> None:
    if isinstance(blur_kernel, bool) or not isinstance(blur_kernel, int) or blur_kernel < 1 or blur_kernel % 2 == 0:
        raise ValueError(f"blur_kernel must be a positive odd integer, got {blur_kernel!r}")


def _check_finite(maps: torch.Tensor) -> None:
    """Raise a ValueError naming the first NaN/inf entry of ``maps`` (N, K, H, W)."""
    # One cheap reduction on the normal path; the element-wise search only runs when it fails
    # (a non-finite sum can also be an overflow of huge finite values, which is not an error).
    if bool(torch.isfinite(maps.sum(dim=(2, 3))).all()):
        return
    bad = ~torch.isfinite(maps)
    if bool(bad.any()):
        first = torch.nonzero(bad)[0].tolist()
        raise ValueError(
            f"heatmaps contain {int(bad.sum())} NaN/inf value(s), first at [n, k, y, x] = {first}; "
            "decoding needs finite heatmaps (did the model diverge?)"
        )


def _first_peaks(flat: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Value and index of the first maximum of each row of ``flat`` (N, K, H*W) -> ``(N, K)``, ``(N, K)``."""
    if flat.device.type != "cpu":
        return flat.max(dim=-1)
    # On the CPU torch's max-with-index is a scalar loop: at 64 x 17 maps of 64x48 on one thread it takes
    # ~12x longer than numpy's SIMD argmax, which also returns the first maximum (the maps are finite).
    index = torch.from_numpy(np.argmax(flat.numpy(), axis=-1).astype(np.int64, copy=False))
    return flat.gather(-1, index.unsqueeze(-1)).squeeze(-1), index


def _gather(flat: torch.Tensor, px: torch.Tensor, py: torch.Tensor, offsets: Sequence[tuple[int, int]],
            height: int, width: int) -> torch.Tensor:
    """Values of ``flat`` (N, K, H*W) at ``(px + dx, py + dy)`` for each offset -> (N, K, len(offsets)).

    Positions are clamped into the map; callers only use values where the true position exists.
    """
    d = torch.tensor(offsets, dtype=px.dtype, device=px.device)
    xs = (px.unsqueeze(-1) + d[:, 0]).clamp(0, width - 1)
    ys = (py.unsqueeze(-1) + d[:, 1]).clamp(0, height - 1)
    return flat.gather(-1, ys * width + xs)


def _band_matrix(kernel: torch.Tensor, rows: int, columns: int, start: int) -> torch.Tensor:
    """``(rows, columns)`` matrix ``M[i, j] = kernel[j - i - start]`` where that index exists, else 0.

    ``M @ x`` correlates ``x`` (along its first axis) with ``kernel``: with ``start = -radius`` and a
    square matrix it is the zero-padded ("same") blur, with ``start = 0`` the "valid" blur of a patch.
    Banded matrix products are much faster than single-channel ``conv2d`` on CPU and fine on GPU.
    """
    i = torch.arange(rows, device=kernel.device).unsqueeze(1)
    j = torch.arange(columns, device=kernel.device).unsqueeze(0)
    tap = j - i - start
    exists = (tap >= 0) & (tap < kernel.numel())
    return torch.where(exists, kernel[tap.clamp(0, kernel.numel() - 1)], 0.0)


# Neighbourhood of the Taylor step, (dx, dy): centre, x+-1, x+-2, y+-1, y+-2, the four diagonals.
_TAYLOR_OFFSETS = ((0, 0), (1, 0), (-1, 0), (2, 0), (-2, 0), (0, 1), (0, -1), (0, 2), (0, -2),
                   (1, 1), (1, -1), (-1, 1), (-1, -1))
# The same as indices into the flattened 5x5 window centred on the peak.
_TAYLOR_WINDOW_INDEX = tuple((dy + 2) * 5 + dx + 2 for dx, dy in _TAYLOR_OFFSETS)


def _dark_log_values(maps: torch.Tensor, px: torch.Tensor, py: torch.Tensor, interior: torch.Tensor,
                     blur_kernel: int) -> torch.Tensor:
    """DarkPose's modulated log-heatmap at ``_TAYLOR_OFFSETS`` around ``(px, py)`` -> ``(N, K, 13)``.

    DarkPose blurs each whole map (zero padding by the kernel radius, so cv2's border mode never
    matters), rescales it to the original maximum, clips at 1e-10 and takes the log. Only the 5x5
    window around the peak feeds the Taylor step, so only that window is blurred here: a patch of
    ``5 + 2 * radius`` pixels (zeros outside the map) is gathered per joint and blurred "valid".
    The rescaling factor is one constant per map, which cancels in every finite difference of the
    log; it matters only where the clip bites. With a positive peak the factor is >= 1 (a normalised
    non-negative kernel cannot raise the maximum), so windows whose blurred values all stay clear of
    the floor are never clipped, and the whole-map blur is computed only for the other maps.
    """
    n, k, height, width = maps.shape
    kernel = torch.from_numpy(_cv2_gaussian_kernel(blur_kernel)).to(device=maps.device, dtype=maps.dtype)
    radius = (blur_kernel - 1) // 2
    reach = torch.arange(-2 - radius, 3 + radius, device=maps.device)
    xs = px.unsqueeze(-1) + reach
    ys = py.unsqueeze(-1) + reach
    valid = _band_matrix(kernel, 5, reach.numel(), start=0)
    # Zero padding: taps outside the map get weight 0 in per-joint copies of the band matrix (N, K, 5, R),
    # which costs R products per joint instead of masking all R x R patch values. Those taps may then
    # read any pixel, so the flat patch index is only clamped into the map.
    rows = valid * ((ys >= 0) & (ys < height)).unsqueeze(-2)
    columns = valid * ((xs >= 0) & (xs < width)).unsqueeze(-2)
    steps = (reach.unsqueeze(-1) * width + reach).reshape(-1)
    index = ((py * width + px).unsqueeze(-1) + steps).clamp_(0, height * width - 1)
    patches = maps.reshape(n, k, height * width).gather(-1, index).reshape(n, k, reach.numel(), reach.numel())
    window = rows @ patches @ columns.transpose(-1, -2)
    values = window.reshape(n, k, 25)[..., list(_TAYLOR_WINDOW_INDEX)]

    needs_rescale = interior & ~(values.amin(dim=-1) > 10 * _LOG_FLOOR)
    if bool(needs_rescale.any()):
        subset = maps[needs_rescale]
        blurred = _band_matrix(kernel, height, height, -radius) @ subset @ _band_matrix(kernel, width, width, -radius).T
        blurred_max = blurred.amax(dim=(1, 2))
        # An all-zero blur is 0/0 in the reference; such a map stays zero here.
        nonzero = blurred_max != 0
        ratio = torch.where(nonzero, subset.amax(dim=(1, 2)) / torch.where(nonzero, blurred_max, 1), 0)
        values = values.clone()
        values[needs_rescale] = values[needs_rescale] * ratio.unsqueeze(-1)
    return values.clamp_min(_LOG_FLOOR).log()


def _taylor_offsets(values: torch.Tensor, interior: torch.Tensor) -> torch.Tensor:
    """DarkPose ``taylor``: Newton step ``-H^-1 g`` -> (N, K, 2); 0 outside ``interior`` or where det H = 0.

    ``values`` (N, K, 13) are the log-heatmap at ``_TAYLOR_OFFSETS``; derivatives in float64.
    """
    c, xp, xm, xp2, xm2, yp, ym, yp2, ym2, pp, pm, mp, mm = values.double().unbind(-1)
    dx = 0.5 * (xp - xm)
    dy = 0.5 * (yp - ym)
    dxx = 0.25 * (xp2 - 2 * c + xm2)
    dyy = 0.25 * (yp2 - 2 * c + ym2)
    dxy = 0.25 * (pp - pm - mp + mm)
    det = dxx * dyy - dxy * dxy
    usable = interior & (det != 0)
    safe_det = torch.where(usable, det, 1.0)
    offset_x = -(dyy * dx - dxy * dy) / safe_det
    offset_y = -(dxx * dy - dxy * dx) / safe_det
    offsets = torch.stack([offset_x, offset_y], dim=-1)
    return torch.where(usable.unsqueeze(-1), offsets, 0.0)


def _quarter_shifts(flat: torch.Tensor, px: torch.Tensor, py: torch.Tensor, height: int, width: int,
                    rule: str) -> torch.Tensor:
    """The quarter-offset step ``(N, K, 2)``: 0.25 px toward the higher neighbour per axis.

    ``each_axis``: wherever both neighbours on that axis exist. ``msra``: mmpose ``refine_keypoints``'
    conditions, ``1 < x < W - 1 and 0 < y < H`` for x and ``1 < y < H - 1 and 0 < x < W`` for y.
    """
    left, right, up, down = _gather(flat, px, py, ((-1, 0), (1, 0), (0, -1), (0, 1)), height, width).unbind(-1)
    if rule == "msra":
        has_x = (px > 1) & (px < width - 1) & (py > 0) & (py < height)
        has_y = (py > 1) & (py < height - 1) & (px > 0) & (px < width)
    else:
        has_x = (px > 0) & (px < width - 1)
        has_y = (py > 0) & (py < height - 1)
    shift_x = torch.where(has_x, torch.sign(right - left), 0) * 0.25
    shift_y = torch.where(has_y, torch.sign(down - up), 0) * 0.25
    return torch.stack([shift_x, shift_y], dim=-1)


def _blur_whole_maps(maps: torch.Tensor, blur_kernel: int) -> torch.Tensor:
    """mmpose / DarkPose ``gaussian_blur``: each map zero-padded, blurred, rescaled to its own maximum."""
    height, width = maps.shape[-2:]
    kernel = torch.from_numpy(_cv2_gaussian_kernel(blur_kernel)).to(device=maps.device, dtype=maps.dtype)
    radius = (blur_kernel - 1) // 2
    blurred = _band_matrix(kernel, height, height, -radius) @ maps @ _band_matrix(kernel, width, width, -radius).T
    peak = blurred.amax(dim=(-2, -1), keepdim=True)
    nonzero = peak != 0
    ratio = torch.where(nonzero, maps.amax(dim=(-2, -1), keepdim=True) / torch.where(nonzero, peak, 1), 0)
    return blurred * ratio


def _dark_udp_offsets(maps: torch.Tensor, px: torch.Tensor, py: torch.Tensor, blur_kernel: int) -> torch.Tensor:
    """mmpose ``refine_keypoints_dark_udp``: Newton step ``(N, K, 2)`` on the clipped log of the blurred map.

    Blur as DARK, clip to ``[1e-3, 50]``, log, edge padding (so border peaks use replicated values),
    central differences with step 1, and ``(H + eps I)^-1 g`` with float32's eps, at every peak.
    """
    n, k, height, width = maps.shape
    log_maps = _blur_whole_maps(maps, blur_kernel).clamp(1e-3, 50.0).log().reshape(n, k, height * width)
    # Edge padding = clamping the neighbour positions into the map.
    c, xp, xm, yp, ym, pp, mm = _gather(log_maps, px, py, ((0, 0), (1, 0), (-1, 0), (0, 1), (0, -1), (1, 1), (-1, -1)),
                                        height, width).double().unbind(-1)
    dx = 0.5 * (xp - xm)
    dy = 0.5 * (yp - ym)
    dxx = xp - 2 * c + xm
    dyy = yp - 2 * c + ym
    dxy = 0.5 * (pp - xp - yp + c + c - xm - ym + mm)
    eps = float(np.finfo(np.float32).eps)
    a, d = dxx + eps, dyy + eps
    det = a * d - dxy * dxy
    offset_x = (d * dx - dxy * dy) / det
    offset_y = (a * dy - dxy * dx) / det
    return -torch.stack([offset_x, offset_y], dim=-1)


@full_precision
def decode_heatmaps(heatmaps: Array, method: str = "dark", blur_kernel: int = 11,
                    convention: str | Convention = DEFAULT_CONVENTION) -> tuple[Array, Array]:
    """Heatmaps ``(N, K, H, W)`` -> coords ``(N, K, 2)`` as (x, y) heatmap pixels, scores ``(N, K)``.

    Pixel centres are at integers. ``method``: ``argmax`` (the first maximum), ``quarter`` (argmax moved
    0.25 px toward the higher neighbour per axis) or ``dark`` (DarkPose: blur with ``blur_kernel``, log,
    one Taylor step). ``convention`` (``pixelgrid``) sets the quarter rule's border conditions, the
    DARK variant (``udp``: DARK-UDP) and where a map with no positive value decodes to. Scores are the
    peak values of the given maps. numpy in -> numpy out, torch in -> torch out (same device);
    float64 input decodes in float64, anything else in float32.
    """
    if method not in DECODE_METHODS:
        raise ValueError(f"unknown heatmap decode method {method!r}; valid: {', '.join(DECODE_METHODS)}")
    _check_blur_kernel(blur_kernel)
    grid = get_convention(convention)
    tensor = _to_tensor(heatmaps, "heatmaps")
    if tensor.ndim != 4:
        raise ValueError(f"heatmaps must have shape (N, K, H, W), got {tuple(tensor.shape)}")
    # Decoding is not differentiable (argmax); never build a graph.
    maps = _float(tensor.detach())
    _check_finite(maps)
    n, k, height, width = maps.shape
    flat = maps.reshape(n, k, height * width)
    scores, index = _first_peaks(flat)
    positive = scores > 0
    px = torch.where(positive, index % width, 0)
    py = torch.where(positive, index // width, 0)
    coords = torch.stack([px, py], dim=-1).to(maps.dtype)

    if method == "quarter":
        coords = coords + _quarter_shifts(flat, px, py, height, width, grid.quarter_rule)
    elif method == "dark" and grid.dark == "dark_udp":
        step = _dark_udp_offsets(maps, px, py, blur_kernel)
        coords = (coords.double() + torch.where(positive.unsqueeze(-1), step, 0.0)).to(maps.dtype)
    elif method == "dark":
        # DarkPose only steps from peaks at least 2 px inside the map (its derivatives reach 2 px).
        interior = (px > 1) & (px < width - 2) & (py > 1) & (py < height - 2)
        values = _dark_log_values(maps, px, py, interior, blur_kernel)
        coords = (coords.double() + _taylor_offsets(values, interior)).to(maps.dtype)
    if grid.empty_peak != 0.0:
        coords = torch.where(positive.unsqueeze(-1), coords, grid.empty_peak)
    return _like_input(coords, heatmaps), _like_input(scores, heatmaps)


def _permutation(flip_permutation: Sequence[int] | np.ndarray | torch.Tensor, joints: int,
                 device: torch.device) -> torch.Tensor:
    """``(K,)`` long tensor on ``device``; anything that is not a permutation of range(K) is a ValueError."""
    if isinstance(flip_permutation, torch.Tensor):
        perm = flip_permutation.to(device=device, dtype=torch.long)
    else:
        perm = torch.as_tensor(np.asarray(flip_permutation), dtype=torch.long, device=device)
    if perm.shape != (joints,) or not torch.equal(perm.sort().values, torch.arange(joints, device=device)):
        raise ValueError(f"flip_permutation must be a permutation of range({joints}), got {perm.tolist()}")
    return perm


def flip_heatmaps_back(heatmaps: Array, flip_permutation: Sequence[int] | np.ndarray | torch.Tensor,
                       shift: bool = False) -> Array:
    """Heatmaps ``(B, K, h, w)`` of a mirrored crop -> heatmaps of the original crop ``(B, K, h, w)``.

    Mirrors the width axis and swaps left/right joints (``out[:, j] = flipped[:, perm[j]]``); with
    ``shift`` every column moves one pixel right (column 0 keeps its value), as HRNet's SHIFT_HEATMAP.
    """
    maps = _to_tensor(heatmaps, "heatmaps")
    if maps.ndim != 4:
        raise ValueError(f"heatmaps must have shape (B, K, h, w), got {tuple(maps.shape)}")
    out = maps.flip(-1)[:, _permutation(flip_permutation, maps.shape[1], maps.device)]
    if shift:
        out = torch.cat([out[..., :1], out[..., :-1]], dim=-1)
    return _like_input(out, heatmaps)


def flip_coordinates(coords: Array, width: int, flip_permutation: Sequence[int] | np.ndarray | torch.Tensor) -> Array:
    """Coordinates ``(B, K, 2)`` in a crop ``width`` px wide -> mirrored ``(B, K, 2)``.

    x' = (width - 1) - x (pixel centres at integers) and joints swapped: ``out[:, j] = mirrored[:, perm[j]]``.
    """
    points = _to_tensor(coords, "coords")
    if points.ndim != 3 or points.shape[-1] != 2:
        raise ValueError(f"coords must have shape (B, K, 2), got {tuple(points.shape)}")
    mirrored = torch.stack([(width - 1) - points[..., 0], points[..., 1]], dim=-1)
    return _like_input(mirrored[:, _permutation(flip_permutation, points.shape[1], points.device)], coords)


def _check_keypoints(keypoints: torch.Tensor, visible: torch.Tensor) -> torch.Tensor:
    """Validate ``(B, K, 2)`` keypoints and ``(B, K)`` visibility; returns the annotated mask (B, K)."""
    if keypoints.ndim != 3 or keypoints.shape[-1] != 2:
        raise ValueError(f"keypoints must have shape (B, K, 2), got {tuple(keypoints.shape)}")
    if visible.shape != keypoints.shape[:2]:
        raise ValueError(f"visible must have shape {tuple(keypoints.shape[:2])} (B, K), got {tuple(visible.shape)}")
    annotated = visible > 0
    bad = annotated & ~torch.isfinite(keypoints).all(dim=-1)
    if bool(bad.any()):
        raise ValueError(
            f"annotated keypoints must be finite; non-finite at [b, k] = {torch.nonzero(bad)[0].tolist()} (batch row, "
            "joint; the batch's 'index' names the record); the dataset loaders reject non-finite annotations, so "
            "look at the transform or a hand-built batch, and run `python -m benchmark data check` on the data"
        )
    return annotated


class HeatmapCodec:
    """Gaussian heatmaps (standard window or DARK unbiased) and their decoding, in crop pixels.

    ``input_size`` and ``heatmap_size`` are (H, W). ``convention`` (``pixelgrid``) fixes the
    crop <-> heatmap mapping (``aligned``: hm = (crop + 0.5) / stride - 0.5; ``msra``: crop / stride;
    ``udp``: crop (Wh - 1) / (W - 1)), how the target centre is rounded and windowed, the decoding
    rules and the default blur kernel (``msra``/``udp``: the released 11; ``aligned``: matched to sigma).
    """

    def __init__(self, input_size: tuple[int, int], heatmap_size: tuple[int, int], sigma: float,
                 unbiased: bool = False, blur_kernel: int | None = None,
                 convention: str | Convention = DEFAULT_CONVENTION) -> None:
        if len(input_size) != 2 or len(heatmap_size) != 2 or min(*input_size, *heatmap_size) <= 0:
            raise ValueError(f"input_size and heatmap_size must be positive (H, W), got {input_size}, {heatmap_size}")
        if sigma <= 0:
            raise ValueError(f"sigma must be positive, got {sigma}")
        self.convention = get_convention(convention)
        self.input_size = (int(input_size[0]), int(input_size[1]))
        self.heatmap_size = (int(heatmap_size[0]), int(heatmap_size[1]))
        self.sigma = float(sigma)
        self.unbiased = unbiased
        if blur_kernel is None:
            blur_kernel = self.convention.blur_kernel or blur_kernel_for_sigma(sigma)
        self.blur_kernel = blur_kernel
        _check_blur_kernel(self.blur_kernel)
        # (x, y) order, as keypoints; crop = (hm + offset) * stride - offset.
        self.stride = self.convention.heatmap_stride(self.input_size, self.heatmap_size)
        self.offset = self.convention.heatmap_offset()

    def to_heatmap(self, keypoints: torch.Tensor) -> torch.Tensor:
        """Crop px ``(..., 2)`` -> heatmap px ``(..., 2)``, computed in float32 as mmpose divides by its
        float32 ``scale_factor``, returned as float64 (the window arithmetic that follows is exact)."""
        kp = keypoints.float()
        return ((kp + self.offset) / kp.new_tensor(self.stride) - self.offset).double()

    def encode(self, keypoints: torch.Tensor, visible: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Keypoints ``(B, K, 2)`` crop px, visibility ``(B, K)`` -> heatmaps ``(B, K, h, w)``, weights ``(B, K)``.

        Both float32 on the keypoints' device. Weight 0 (and an all-zero map) for unannotated joints and
        for joints whose 3-sigma window lies wholly outside the heatmap.
        """
        kp = torch.as_tensor(keypoints)
        annotated = _check_keypoints(kp, torch.as_tensor(visible, device=kp.device))
        kp = torch.where(annotated.unsqueeze(-1), kp.float(), 0.0)
        exact = self.to_heatmap(kp)
        if self.unbiased:
            dx, dy, inside = self._unbiased_offsets(exact)
        else:
            dx, dy, inside = self._window_offsets(exact)
        weights = (annotated & inside).float()
        two_var = 2.0 * self.sigma**2
        # Offsets outside the window are inf, so their exp is exactly 0.
        gx = torch.exp(-dx * dx / two_var)
        gy = torch.exp(-dy * dy / two_var)
        heatmaps = (gy.float() * weights.unsqueeze(-1)).unsqueeze(-1) * gx.float().unsqueeze(-2)
        return heatmaps, weights

    def _unbiased_offsets(self, exact: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """DARK: the Gaussian at the exact point over the whole map; in range unless its 3-sigma box misses."""
        height, width = self.heatmap_size
        radius = 3.0 * self.sigma
        inside = ((exact - radius < exact.new_tensor((width, height))) & (exact + radius + 1.0 >= 0)).all(dim=-1)
        dx = torch.arange(width, device=exact.device, dtype=exact.dtype) - exact[..., :1]
        dy = torch.arange(height, device=exact.device, dtype=exact.dtype) - exact[..., 1:]
        return dx, dy, inside

    def _window_offsets(self, exact: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Pixel offsets from the Gaussian's centre inside its window (inf outside), and the range test.

        ``aligned``: HRNet's ``generate_target`` window ``|p - mu| <= 3 sigma`` around ``floor(hm + 0.5)``.
        ``msra`` / ``udp``: mmpose ``generate_(udp_)gaussian_heatmaps``: ``mu = int(hm + 0.5)``, the window
        holds ``ceil(6 sigma + 1)`` pixels from ``int(mu - 3 sigma)`` with the centre at index
        ``(6 sigma + 1) // 2`` (for UDP moved by ``hm - mu``); out of range when ``int(mu - 3 sigma) >= size``
        or ``int(mu + 3 sigma + 1) < 0``.
        """
        height, width = self.heatmap_size
        radius = 3.0 * self.sigma
        grid = self.convention
        mu = torch.floor(exact + 0.5) if grid.rounding == "nearest" else torch.trunc(exact + 0.5)
        sizes = exact.new_tensor((width, height))
        if grid.rounding == "nearest":
            start = torch.floor(mu - radius)
            inside = ((start < sizes) & (torch.floor(mu + radius + 1.0) >= 0)).all(dim=-1)
            centre, count = mu, None
        else:
            start = torch.trunc(mu - radius)
            inside = ((start < sizes) & (torch.trunc(mu + radius + 1.0) >= 0)).all(dim=-1)
            size = 2.0 * radius + 1.0
            centre = start + size // 2 + ((exact - mu) if grid.subpixel_window else 0.0)
            count = math.ceil(size)
        offsets = []
        for axis, length in ((0, width), (1, height)):
            p = torch.arange(length, device=exact.device, dtype=exact.dtype)
            d = p - centre[..., axis : axis + 1]
            if count is None:
                window = (p - mu[..., axis : axis + 1]).abs() <= radius
            else:
                first = start[..., axis : axis + 1]
                window = (p >= first) & (p < first + count)
            offsets.append(torch.where(window, d, math.inf))
        return offsets[0], offsets[1], inside

    def decode_heatmap_px(self, heatmaps: Array, method: str = "dark") -> tuple[Array, Array]:
        """``decode_heatmaps`` with this codec's blur kernel and convention: heatmap px ``(B, K, 2)``, scores."""
        return decode_heatmaps(heatmaps, method=method, blur_kernel=self.blur_kernel, convention=self.convention)

    def heatmap_to_crop(self, coords: Array) -> Array:
        """Heatmap px ``(..., 2)`` -> crop px ``(..., 2)``: ``(hm + offset) * stride - offset`` in ``coords``' dtype."""
        (stride_x, stride_y), offset = self.stride, self.offset
        return _scale_xy(coords, self.stride, (offset * stride_x - offset, offset * stride_y - offset))

    def decode(self, heatmaps: Array, method: str = "dark") -> tuple[Array, Array]:
        """Heatmaps ``(B, K, h, w)`` -> keypoints ``(B, K, 2)`` in crop px, scores ``(B, K)``."""
        coords, scores = self.decode_heatmap_px(heatmaps, method)
        return self.heatmap_to_crop(coords), scores


def _scale_xy(coords: Array, scale: tuple[float, float], offset: tuple[float, float]) -> Array:
    """``coords * scale + offset`` per (x, y) for numpy or torch ``(..., 2)``, keeping type and dtype."""
    if isinstance(coords, np.ndarray):
        return coords * np.asarray(scale, dtype=coords.dtype) + np.asarray(offset, dtype=coords.dtype)
    return coords * coords.new_tensor(scale) + coords.new_tensor(offset)


class RegressionCodec:
    """DeepPose box-normalised coordinates: n = (x - box centre) / box size per axis, the box being the crop.

    ``input_size`` is (H, W). ``aligned``: the crop spans [-0.5, W - 0.5] x [-0.5, H - 0.5] in crop
    pixels (centre ``(W - 1) / 2``); ``msra`` / ``udp``: mmpose's ``RegressionLabel``, n = x / W
    (``mmpose/codecs/regression_label.py``), so imported mmpose regressors decode as trained.
    """

    def __init__(self, input_size: tuple[int, int], convention: str | Convention = DEFAULT_CONVENTION) -> None:
        if len(input_size) != 2 or min(input_size) <= 0:
            raise ValueError(f"input_size must be positive (H, W), got {input_size}")
        height, width = input_size
        self.input_size = (int(height), int(width))
        self.convention = get_convention(convention)
        aligned = self.convention.name == "aligned"
        self.centre = ((width - 1) / 2.0, (height - 1) / 2.0) if aligned else (0.0, 0.0)
        self.size = (float(width), float(height))

    def encode(self, keypoints: torch.Tensor, visible: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Keypoints ``(B, K, 2)`` crop px, visibility ``(B, K)`` -> targets ``(B, K, 2)``, weights ``(B, K)``.

        float32; unannotated joints get target 0 and weight 0.
        """
        kp = torch.as_tensor(keypoints)
        annotated = _check_keypoints(kp, torch.as_tensor(visible, device=kp.device))
        kp = kp.float()
        targets = (kp - kp.new_tensor(self.centre)) / kp.new_tensor(self.size)
        targets = torch.where(annotated.unsqueeze(-1), targets, 0.0)
        return targets, annotated.float()

    def decode(self, normalised: Array) -> Array:
        """Normalised ``(B, K, 2)`` -> keypoints ``(B, K, 2)`` in crop px (numpy or torch, type kept)."""
        return _scale_xy(normalised, self.size, self.centre)
