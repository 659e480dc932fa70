"""Codec speed: the vectorised torch codecs against a per-keypoint Python loop, same data, same run.

``python -m benchmark profile codecs`` prints, for heatmap encoding (standard and unbiased) and for
each decoder (argmax, quarter, dark), the time per sample of ``models.codecs`` and of a
straightforward loop over samples and joints written the way the reference code does it (HRNet
``lib/dataset/JointsDataset.py`` generate_target and ``lib/core/inference.py`` get_final_preds;
DarkPose ``lib/dataset/JointsDataset.py`` generate_target and ``lib/core/inference.py``
gaussian_blur / taylor: numpy and ``cv2.GaussianBlur`` per heatmap). The loop is the floor the
vectorised code is measured against; the largest disagreement of the two outputs is printed beside
the times, so the comparison is between equal results. Times are the best of ``repeats``
interleaved runs after one warm-up, on the CPU, with whatever number of torch threads is set
(printed, with the core count and load average).
"""

from __future__ import annotations

import logging
import math
import os

import cv2
import numpy as np
import torch

from benchmark.commands.profile_layouts import best_times
from benchmark.errors import PoseBenchError
from models.codecs import HeatmapCodec, decode_heatmaps

log = logging.getLogger(__name__)

SIGMA = 2.0
STRIDE = 4
BLUR_KERNEL = 11
ROWS = ("encode_standard", "encode_unbiased", "decode_argmax", "decode_quarter", "decode_dark")


def _loop_encode(keypoints: np.ndarray, visible: np.ndarray, size_hw: tuple[int, int],
                 unbiased: bool) -> tuple[np.ndarray, np.ndarray]:
    """Per-joint Gaussian targets ``(B, K, h, w)`` and weights ``(B, K)`` from keypoints ``(B, K, 2)``."""
    batch, joints = visible.shape
    height, width = size_hw
    radius = 3 * SIGMA
    heatmaps = np.zeros((batch, joints, height, width), dtype=np.float32)
    weights = np.zeros((batch, joints), dtype=np.float32)
    xs = np.arange(width, dtype=np.float32)
    ys = np.arange(height, dtype=np.float32)[:, None]
    size = int(2 * radius + 1)
    window = np.arange(size, dtype=np.float32)
    patch = np.exp(-((window - size // 2) ** 2 + (window[:, None] - size // 2) ** 2) / (2 * SIGMA**2))
    for b in range(batch):
        for k in range(joints):
            if visible[b, k] <= 0:
                continue
            x, y = (keypoints[b, k] + 0.5) / STRIDE - 0.5  # pixel centres at integers in both grids
            if not unbiased:
                x, y = math.floor(x + 0.5), math.floor(y + 0.5)
            ul = (math.floor(x - radius), math.floor(y - radius))
            br = (math.floor(x + radius + 1), math.floor(y + radius + 1))
            if ul[0] >= width or ul[1] >= height or br[0] < 0 or br[1] < 0:
                continue
            weights[b, k] = 1.0
            if unbiased:
                heatmaps[b, k] = np.exp(-((xs - x) ** 2 + (ys - y) ** 2) / (2 * SIGMA**2))
                continue
            x0, x1 = max(0, ul[0]), min(br[0], width)
            y0, y1 = max(0, ul[1]), min(br[1], height)
            heatmaps[b, k, y0:y1, x0:x1] = patch[y0 - ul[1]:y1 - ul[1], x0 - ul[0]:x1 - ul[0]]
    return heatmaps, weights


def _loop_argmax(heatmaps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    batch, joints, _, width = heatmaps.shape
    coords = np.zeros((batch, joints, 2), dtype=np.float32)
    scores = np.zeros((batch, joints), dtype=np.float32)
    for b in range(batch):
        for k in range(joints):
            index = int(np.argmax(heatmaps[b, k]))
            scores[b, k] = heatmaps[b, k].flat[index]
            if scores[b, k] > 0:
                coords[b, k] = (index % width, index // width)
    return coords, scores


def _loop_quarter(heatmaps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    coords, scores = _loop_argmax(heatmaps)
    height, width = heatmaps.shape[2:]
    for b in range(coords.shape[0]):
        for k in range(coords.shape[1]):
            hm = heatmaps[b, k]
            px, py = int(coords[b, k, 0]), int(coords[b, k, 1])
            if 0 < px < width - 1:
                coords[b, k, 0] += 0.25 * np.sign(hm[py, px + 1] - hm[py, px - 1])
            if 0 < py < height - 1:
                coords[b, k, 1] += 0.25 * np.sign(hm[py + 1, px] - hm[py - 1, px])
    return coords, scores


def _loop_dark(heatmaps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    coords, scores = _loop_argmax(heatmaps)
    height, width = heatmaps.shape[2:]
    border = (BLUR_KERNEL - 1) // 2
    for b in range(coords.shape[0]):
        for k in range(coords.shape[1]):
            padded = np.zeros((height + 2 * border, width + 2 * border))
            padded[border:-border, border:-border] = heatmaps[b, k]
            blurred = cv2.GaussianBlur(padded, (BLUR_KERNEL, BLUR_KERNEL), 0)[border:-border, border:-border]
            peak = blurred.max()
            if peak != 0:
                blurred *= heatmaps[b, k].max() / peak
            f = np.log(np.maximum(blurred, 1e-10))
            px, py = int(coords[b, k, 0]), int(coords[b, k, 1])
            if not (1 < px < width - 2 and 1 < py < height - 2):
                continue
            gradient = np.array([0.5 * (f[py, px + 1] - f[py, px - 1]), 0.5 * (f[py + 1, px] - f[py - 1, px])])
            dxx = 0.25 * (f[py, px + 2] - 2 * f[py, px] + f[py, px - 2])
            dyy = 0.25 * (f[py + 2, px] - 2 * f[py, px] + f[py - 2, px])
            dxy = 0.25 * (f[py + 1, px + 1] - f[py - 1, px + 1] - f[py + 1, px - 1] + f[py - 1, px - 1])
            if dxx * dyy - dxy**2 != 0:
                coords[b, k] -= np.linalg.solve(np.array([[dxx, dxy], [dxy, dyy]]), gradient)
    return coords, scores


def _max_difference(vectorised: tuple, loop: tuple) -> float:
    return max(float(np.abs(np.asarray(a) - np.asarray(b)).max()) for a, b in zip(vectorised, loop, strict=True))


def profile_codecs(batch: int = 64, joints: int = 17, height: int = 64, width: int = 48, repeats: int = 5) -> dict:
    """Time encode/decode per sample, vectorised vs loop, on one batch of ``(batch, joints, height, width)``.

    Returns ``{"batch", "joints", "height", "width", "repeats", "threads", "device", "cpus",
    "load_average", "rows"}`` (load_average: 1-minute, when the OS reports it) where
    ``rows[name]`` (names in ``ROWS``) holds ``vectorised_ms`` and ``loop_ms`` (per sample),
    ``speedup`` (loop / vectorised) and ``max_difference`` (largest disagreement of the two outputs).
    """
    if min(batch, joints, height, width, repeats) < 1:
        raise PoseBenchError(f"batch, joints, height, width and repeats must be >= 1, "
                             f"got {batch}, {joints}, {height}, {width}, {repeats}")
    rng = np.random.default_rng(0)
    input_hw = (height * STRIDE, width * STRIDE)
    keypoints = rng.uniform(0, (input_hw[1] - 1, input_hw[0] - 1), size=(batch, joints, 2)).astype(np.float32)
    visible = (rng.random((batch, joints)) < 0.9).astype(np.float32)
    keypoints_t, visible_t = torch.from_numpy(keypoints), torch.from_numpy(visible)
    codecs = {
        "encode_standard": HeatmapCodec(input_hw, (height, width), SIGMA),
        "encode_unbiased": HeatmapCodec(input_hw, (height, width), SIGMA, unbiased=True),
    }
    # Decoders see prediction-like maps: sub-pixel Gaussians of varying height plus noise.
    heatmaps_t, _ = codecs["encode_unbiased"].encode(keypoints_t, torch.ones_like(visible_t))
    heatmaps_t = heatmaps_t * torch.from_numpy(rng.uniform(0.3, 1.0, (batch, joints, 1, 1)).astype(np.float32))
    heatmaps_t = heatmaps_t + torch.from_numpy(rng.normal(0, 0.01, heatmaps_t.shape).astype(np.float32))
    heatmaps = heatmaps_t.numpy()

    jobs = {
        name: (lambda c=codec: c.encode(keypoints_t, visible_t),
               lambda u=codec.unbiased: _loop_encode(keypoints, visible, (height, width), u))
        for name, codec in codecs.items()
    }
    loops = {"argmax": _loop_argmax, "quarter": _loop_quarter, "dark": _loop_dark}
    for method, loop in loops.items():
        jobs[f"decode_{method}"] = (lambda m=method: decode_heatmaps(heatmaps_t, m, blur_kernel=BLUR_KERNEL),
                                    lambda f=loop: f(heatmaps))

    rows = {}
    for name in ROWS:
        vectorised, loop = jobs[name]
        difference = _max_difference(vectorised(), loop())
        times = best_times({"vectorised": vectorised, "loop": loop}, repeats)
        vectorised_s, loop_s = times["vectorised"], times["loop"]
        vectorised_ms, loop_ms = vectorised_s / batch * 1e3, loop_s / batch * 1e3
        rows[name] = {"vectorised_ms": vectorised_ms, "loop_ms": loop_ms, "speedup": loop_ms / vectorised_ms,
                      "max_difference": difference}

    # Load matters: with more runnable processes than cores, multi-threaded torch stalls at every
    # parallel region while the single-threaded loop barely notices, so say what the machine was doing.
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    result = {"batch": batch, "joints": joints, "height": height, "width": width, "repeats": repeats,
              "threads": torch.get_num_threads(), "device": "cpu", "cpus": os.cpu_count(), "load_average": load,
              "rows": rows}
    log.info(f"codecs: batch {batch} x {joints} joints, heatmap {height}x{width}, sigma {SIGMA:g}, "
             f"stride {STRIDE}, blur {BLUR_KERNEL}; cpu ({result['cpus']} cores, load {load:.1f}), "
             f"torch threads {result['threads']}; best of {repeats}")
    log.info(f"{'step':<16} {'vectorised ms/sample':>21} {'loop ms/sample':>15} {'speed-up':>9} {'max |diff|':>11}")
    for name, row in rows.items():
        log.info(f"{name:<16} {row['vectorised_ms']:>21.4f} {row['loop_ms']:>15.4f} {row['speedup']:>8.1f}x "
                 f"{row['max_difference']:>11.2e}")
    return result
