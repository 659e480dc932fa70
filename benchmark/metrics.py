"""Pose-estimation metrics as pure functions of numpy arrays: PCKh, PCK, PCP, PDJ, OKS, COCO AP.

Every function takes arrays (no Lightning, no torch) and returns plain floats, arrays or dicts of
floats, so the evaluation callback, the tests and users' scripts share one implementation.
Percentages are in percent (0-100); the COCO AP statistics are fractions because that is what
pycocotools' COCOeval gives.

Sources of the protocol details:

- MPII PCKh (``mpii_pckh``, ``pckh_per_joint``, ``pckh_curve``, ``pckh_auc``): the MPII benchmark
  evaluator (Andriluka et al., CVPR'14) as ported in HRNet's ``lib/dataset/mpii.py`` ``evaluate``
  (leoxiaobin/deep-high-resolution-net.pytorch): head size = ``SC_BIAS`` 0.6 x the Euclidean norm
  of the head-box diagonal ``headboxes[1] - headboxes[0]``; a joint is correct when
  ``error / head_size <= threshold`` (inclusive); per-joint PCKh = 100 x correct / annotated;
  ``Head`` is ``head_top`` (index 9); the side groups are ``0.5 * (left + right)``; ``Mean`` masks
  pelvis (6) and thorax (7) and weights the other 14 joints (``upper_neck`` included) by their
  annotated counts. The same code prints ``Mean@0.1`` from ``pckAll[11]`` of
  ``np.arange(0, 0.51, 0.01)``, i.e. threshold 0.11; mmpose's ``MpiiPCKAccuracy``
  (mmpose/evaluation/metrics/keypoint_2d_metrics.py) uses ``pckAll[10]``, the true 0.10, and so
  does this module.
- PCK with a torso normaliser and strict PCP: the LSP/FLIC evaluation scripts of Yang et al.,
  CVPR'16 (bearpaw/eval_pose ``utils/eval_pck.m``: "torso height: ||left_shoulder - right hip||",
  LSP 1-based joints 10 and 3, ``dist <= thr``; ``utils/eval_pcp.m``: strict PCP, both endpoints
  within ``0.5 x`` the ground-truth stick length, mean over all limb instances), which the README
  there credits to the MPII evaluation code; PCK itself is Sapp & Taskar, CVPR'13.
- Box-normalised PCK: Yang & Ramanan, TPAMI'13 — correct within ``alpha x max(h, w)`` of the
  person's box; mmpose's ``PCKAccuracy`` likewise uses ``max(w, h)`` of the box.
- PDJ: Toshev & Szegedy, CVPR'14 (DeepPose), Sec. 5: a joint is detected when its error is within
  a fraction of the torso diameter; the torso pair is left shoulder / right hip in
  bearpaw/eval_pose ``demo_eval_lsp.m`` (``reference_joints_pair = [3, 10]``).
- OKS: pycocotools ``cocoeval.py`` ``COCOeval.computeOks``: variances ``(2 sigma)^2``,
  ``e = d^2 / vars / (area + eps) / 2`` with ``eps = np.spacing(1)``, OKS = mean of ``exp(-e)``
  over labelled (``v > 0``) ground-truth joints.
- OKS-NMS and rescoring: ``lib/nms/nms.py`` ``oks_iou`` / ``oks_nms`` and
  ``lib/dataset/coco.py`` ``evaluate`` of microsoft/human-pose-estimation.pytorch, carried
  unchanged into HRNet: sort by score, keep the best, drop the rest whose OKS with it is
  ``> threshold``; the OKS between two predictions uses the mean of their areas and all joints;
  rescored = box score x mean of the keypoint scores ``> 0.2`` (0 when none is).
- Instance score modes: mmpose ``coco_metric.py`` ``score_mode``: ``bbox_keypoint`` (the rescoring above, the
  default), ``keypoint`` (``np.mean`` of the keypoint scores, G-RMI's pose score: Papandreou et al., CVPR'17,
  eq. 7, keypoint-based instead of box-level scoring) and ``bbox`` (the box score).
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from datamodules.skeletons import COCO as COCO_SKELETON
from datamodules.skeletons import Skeleton

# MPII-16 joint indices (order of gt_valid.mat's dataset_joints).
_MPII_NUM_JOINTS = 16
_MPII_PELVIS, _MPII_THORAX = 6, 7
_MPII_HEAD_TOP = 9
MPII_GROUPS: dict[str, tuple[int, ...]] = {
    "Head": (_MPII_HEAD_TOP,),
    "Shoulder": (12, 13),
    "Elbow": (11, 14),
    "Wrist": (10, 15),
    "Hip": (2, 3),
    "Knee": (1, 4),
    "Ankle": (0, 5),
}
"""The columns of the MPII table before ``Mean``: head_top, then (right, left) pairs averaged as the reference does."""
_MPII_MEAN_JOINTS = np.array([j for j in range(_MPII_NUM_JOINTS) if j not in (_MPII_PELVIS, _MPII_THORAX)])
_MPII_SC_BIAS = 0.6
PCKH_DEFAULT_THRESHOLDS = np.arange(51) / 100.0  # 0.00, 0.01, ..., 0.50, each the nearest double

# Written as pycocotools writes them (COCOeval Params.setKpParams), so the doubles are identical;
# datamodules.skeletons.COCO.oks_sigmas holds the same values up to the last bit.
COCO_SIGMAS = np.asarray(COCO_SKELETON.oks_sigmas)  # pycocotools' values, bit for bit
COCO_STAT_NAMES = ("AP", "AP50", "AP75", "APM", "APL", "AR", "AR50", "AR75", "ARM", "ARL")


# --------------------------------------------------------------------------- input checks


def _points(name: str, array: Any, n: int | None = None, k: int | None = None) -> np.ndarray:
    """``array`` as float64 ``(N, K, 2)``; a wrong shape raises naming ``name``."""
    out = np.asarray(array, dtype=np.float64)
    if out.ndim != 3 or out.shape[2] != 2 or (n is not None and out.shape[0] != n) or (
        k is not None and out.shape[1] != k
    ):
        want = f"({n if n is not None else 'N'}, {k if k is not None else 'K'}, 2)"
        raise ValueError(f"{name} must have shape {want}, got {out.shape}")
    return out


def _mask(name: str, array: Any, n: int, k: int) -> np.ndarray:
    """``array`` as bool ``(N, K)``; a wrong shape raises naming ``name``."""
    out = np.asarray(array)
    if out.shape != (n, k):
        raise ValueError(f"{name} must have shape ({n}, {k}), got {out.shape}")
    return out.astype(bool)


def check_keypoints(pred: Any, gt: Any, visible: Any, k: int | None = None) -> tuple[np.ndarray, ...]:
    """``(pred, gt, visible)`` as float64 ``(N, K, 2)``, ``(N, K, 2)`` and bool ``(N, K)``; a wrong shape (or
    ``K != k``) or a non-finite coordinate at an annotated joint raises a ValueError naming the argument."""
    gt_arr = _points("gt", gt, k=k)
    n, k = gt_arr.shape[:2]
    pred_arr = _points("pred", pred, n=n, k=k)
    vis = _mask("visible", visible, n, k)
    for name, arr in (("gt", gt_arr), ("pred", pred_arr)):
        bad = vis & ~np.isfinite(arr).all(axis=2)
        if bad.any():
            i, j = np.argwhere(bad)[0]
            raise ValueError(f"{name} has a non-finite coordinate at annotated joint (sample {i}, joint {j})")
    return pred_arr, gt_arr, vis


def _errors(pred: np.ndarray, gt: np.ndarray, visible: np.ndarray) -> np.ndarray:
    """``(N, K)`` Euclidean errors, 0 where not annotated (so NaN there never leaks)."""
    return np.where(visible, np.linalg.norm(np.where(visible[..., None], pred - gt, 0.0), axis=2), 0.0)


def _percent(correct: np.ndarray, count: np.ndarray) -> np.ndarray:
    """100 x correct / count, NaN where count is 0."""
    correct = np.asarray(correct, dtype=np.float64)
    return np.divide(100.0 * correct, count, out=np.full(correct.shape, np.nan), where=count > 0)


# --------------------------------------------------------------------------- MPII PCKh


def head_size(headboxes: Any) -> np.ndarray:
    """``(N,)`` MPII head size: 0.6 (``SC_BIAS``) x the length of the head-box diagonal of ``(N, 2, 2)``
    boxes ``[[x1, y1], [x2, y2]]``; NaN where a box is NaN."""
    boxes = np.asarray(headboxes, dtype=np.float64)
    if boxes.ndim != 3 or boxes.shape[1:] != (2, 2):
        raise ValueError(f"headboxes must have shape (N, 2, 2) as [[x1, y1], [x2, y2]], got {boxes.shape}")
    return np.linalg.norm(boxes[:, 1] - boxes[:, 0], axis=1) * _MPII_SC_BIAS


def _head_normalised_errors(
    pred: Any, gt: Any, visible: Any, headboxes: Any
) -> tuple[np.ndarray, np.ndarray]:
    """``(N, 16)`` errors / head size and the ``(N, 16)`` annotation mask, inputs checked."""
    pred_arr, gt_arr, vis = check_keypoints(pred, gt, visible, k=_MPII_NUM_JOINTS)
    boxes = np.asarray(headboxes, dtype=np.float64)
    if boxes.shape != (gt_arr.shape[0], 2, 2):
        raise ValueError(
            f"headboxes must have shape ({gt_arr.shape[0]}, 2, 2) as [[x1, y1], [x2, y2]], got {boxes.shape}"
        )
    head_size_px = head_size(boxes)
    # A person without annotated joints never reaches the division, so its box may be anything.
    bad = vis.any(axis=1) & ~(np.isfinite(head_size_px) & (head_size_px > 0))
    if bad.any():
        i = int(np.argmax(bad))
        raise ValueError(f"headboxes[{i}] = {boxes[i].tolist()} gives head size {head_size_px[i]}; it must be > 0")
    safe = np.where(vis.any(axis=1), head_size_px, 1.0)
    return _errors(pred_arr, gt_arr, vis) / safe[:, None], vis


def _pckh_counts(scaled: np.ndarray, vis: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """``(T, 16)`` correct counts: annotated joints with ``scaled <= threshold``."""
    return ((scaled[None] <= thresholds[:, None, None]) & vis[None]).sum(axis=1)


def _mean_over_mpii_joints(correct: np.ndarray, count: np.ndarray) -> np.ndarray:
    """Count-weighted mean PCKh over the 14 non-pelvis/thorax joints; ``correct`` is ``(..., 16)``."""
    total = count[_MPII_MEAN_JOINTS].sum()
    if total == 0:
        raise ValueError("visible has no annotated joint outside pelvis and thorax: nothing to evaluate")
    return 100.0 * correct[..., _MPII_MEAN_JOINTS].sum(axis=-1) / total


def pckh_per_joint(pred: Any, gt: Any, visible: Any, headboxes: Any, threshold: float = 0.5) -> np.ndarray:
    """Per-joint PCKh in percent, ``(16,)`` in MPII joint order; NaN for a joint never annotated.

    ``pred``, ``gt`` ``(N, 16, 2)`` pixels; ``visible`` ``(N, 16)`` bool (annotated);
    ``headboxes`` ``(N, 2, 2)`` as ``[[x1, y1], [x2, y2]]``. A joint is correct when
    ``error / (0.6 x head-box diagonal) <= threshold``.
    """
    scaled, vis = _head_normalised_errors(pred, gt, visible, headboxes)
    correct = _pckh_counts(scaled, vis, np.array([threshold], dtype=np.float64))[0]
    return _percent(correct, vis.sum(axis=0))


def mpii_pckh(pred: Any, gt: Any, visible: Any, headboxes: Any, threshold: float = 0.5) -> dict[str, float]:
    """The MPII PCKh table: ``Head, Shoulder, Elbow, Wrist, Hip, Knee, Ankle, Mean, Mean@0.1`` in percent.

    ``pred``, ``gt`` ``(N, 16, 2)`` pixel coordinates in MPII joint order; ``visible`` ``(N, 16)``
    bool, true where the joint is annotated; ``headboxes`` ``(N, 2, 2)`` ``[[x1, y1], [x2, y2]]``.

    - head size = 0.6 x the head-box diagonal; correct when ``error / head size <= threshold``;
    - ``Head`` is head_top; each other column is ``0.5 * (left + right)`` of the per-joint PCKh;
    - ``Mean`` = correct / annotated pooled over every joint but pelvis and thorax (the per-joint
      PCKh weighted by annotated counts; upper_neck is included), at ``threshold``;
    - ``Mean@0.1`` is the same at threshold exactly 0.10, whatever ``threshold`` is. The HRNet /
      SimpleBaseline / DarkPose code labels its threshold-0.11 value (``pckAll[11]``) "Mean@0.1";
      this one is the true 0.10, as in mmpose.

    A joint with no annotated instance has per-joint PCKh NaN: a column that uses it is NaN (as
    ``0.5 * (left + right)`` is in the reference) and it has weight 0 in ``Mean``. With no
    annotated joint outside pelvis/thorax at all, a ValueError is raised. Shapes, non-finite
    annotated coordinates and non-positive head sizes raise ValueErrors naming the argument.
    """
    scaled, vis = _head_normalised_errors(pred, gt, visible, headboxes)
    count = vis.sum(axis=0)
    correct = _pckh_counts(scaled, vis, np.array([threshold, 0.1], dtype=np.float64))
    per_joint = _percent(correct[0], count)
    table = {name: float(np.mean(per_joint[list(joints)])) for name, joints in MPII_GROUPS.items()}
    means = _mean_over_mpii_joints(correct, count)
    table["Mean"] = float(means[0])
    table["Mean@0.1"] = float(means[1])
    return table


def pckh_curve(
    pred: Any, gt: Any, visible: Any, headboxes: Any, thresholds: Any = None
) -> tuple[np.ndarray, np.ndarray]:
    """``(thresholds (T,), mean_pckh (T,))``: the MPII ``Mean`` (percent) at each threshold.

    Default thresholds are 0.00, 0.01, ..., 0.50 (51 values); inputs as in ``mpii_pckh``.
    """
    ts = PCKH_DEFAULT_THRESHOLDS.copy() if thresholds is None else np.asarray(thresholds, dtype=np.float64)
    if ts.ndim != 1 or ts.size == 0:
        raise ValueError(f"thresholds must be a non-empty 1-D sequence, got shape {ts.shape}")
    scaled, vis = _head_normalised_errors(pred, gt, visible, headboxes)
    return ts, _mean_over_mpii_joints(_pckh_counts(scaled, vis, ts), vis.sum(axis=0))


def pckh_auc(pred: Any, gt: Any, visible: Any, headboxes: Any, thresholds: Any = None) -> float:
    """Area under the ``pckh_curve`` Mean curve, normalised by its threshold span, in percent.

    With the default thresholds this is the trapezoid integral of Mean PCKh over [0, 0.5] on a
    0.01 grid divided by 0.5, so a perfect model scores 100. ``thresholds`` must be increasing
    with at least two values.
    """
    ts, curve = pckh_curve(pred, gt, visible, headboxes, thresholds)
    if ts.size < 2 or np.any(np.diff(ts) <= 0):
        raise ValueError("thresholds must be strictly increasing with at least two values for an AUC")
    area = np.sum(np.diff(ts) * (curve[1:] + curve[:-1]) / 2.0)
    return float(area / (ts[-1] - ts[0]))


# --------------------------------------------------------------------------- PCK, PDJ, PCP


def torso_size(gt: Any, skeleton_or_indices: Skeleton | Sequence[int]) -> np.ndarray:
    """``(N,)`` torso diameter: distance from the left shoulder to the right hip of ``gt`` ``(N, K, 2)``.

    ``skeleton_or_indices`` is a ``Skeleton`` (its ``l_shoulder`` and ``r_hip`` joints are used,
    the person-centric LSP convention of eval_pck.m) or an explicit ``(a, b)`` index pair.
    """
    gt_arr = _points("gt", gt)
    if isinstance(skeleton_or_indices, Skeleton):
        a, b = skeleton_or_indices.index("l_shoulder"), skeleton_or_indices.index("r_hip")
    else:
        pair = tuple(int(i) for i in skeleton_or_indices)
        if len(pair) != 2 or not all(0 <= i < gt_arr.shape[1] for i in pair):
            raise ValueError(
                f"torso indices must be two joint indices below {gt_arr.shape[1]}, got {skeleton_or_indices!r}"
            )
        a, b = pair
    return np.linalg.norm(gt_arr[:, a] - gt_arr[:, b], axis=1)


def bbox_size(gt: Any, visible: Any) -> np.ndarray:
    """``(N,)`` max side ``max(x_max - x_min, y_max - y_min)`` of the tight box of the annotated joints.

    No +1 pixel term is added; a person with no annotated joint gets NaN.
    """
    gt_arr = _points("gt", gt)
    vis = _mask("visible", visible, *gt_arr.shape[:2])
    lo = np.where(vis[..., None], gt_arr, np.inf).min(axis=1)
    hi = np.where(vis[..., None], gt_arr, -np.inf).max(axis=1)
    with np.errstate(invalid="ignore"):
        side = (hi - lo).max(axis=1)
    return np.where(vis.any(axis=1), side, np.nan)


def _joint_table(correct: np.ndarray, count: np.ndarray, joint_names: Sequence[str] | None) -> dict[str, float]:
    """Per-joint percentages keyed by name (``joint_<k>`` by default) plus the pooled ``Mean``."""
    k = count.shape[0]
    names = [f"joint_{j}" for j in range(k)] if joint_names is None else list(joint_names)
    if len(names) != k:
        raise ValueError(f"joint_names has {len(names)} names for {k} joints")
    if "Mean" in names:
        raise ValueError("joint_names may not contain 'Mean'")
    if count.sum() == 0:
        raise ValueError("visible has no annotated joint: nothing to evaluate")
    table = {name: float(v) for name, v in zip(names, _percent(correct, count), strict=True)}
    table["Mean"] = float(100.0 * correct.sum() / count.sum())
    return table


def pck(
    pred: Any,
    gt: Any,
    visible: Any,
    normalizer: Any,
    threshold: float = 0.2,
    joint_names: Sequence[str] | None = None,
) -> dict[str, float]:
    """PCK in percent: a joint is correct when ``error / normalizer <= threshold``.

    ``pred``, ``gt`` ``(N, K, 2)``; ``visible`` ``(N, K)`` bool (annotated); ``normalizer``
    ``(N,)`` per-person size, e.g. ``torso_size`` (LSP PCK@0.2) or ``bbox_size``. Returns one
    entry per joint (named by ``joint_names``, else ``joint_<k>``; NaN for a joint never
    annotated) and ``Mean``, pooled over all annotated joints (count-weighted).
    """
    pred_arr, gt_arr, vis = check_keypoints(pred, gt, visible)
    norm = np.asarray(normalizer, dtype=np.float64)
    if norm.shape != (gt_arr.shape[0],):
        raise ValueError(f"normalizer must have shape ({gt_arr.shape[0]},), got {norm.shape}")
    bad = vis.any(axis=1) & ~(np.isfinite(norm) & (norm > 0))
    if bad.any():
        i = int(np.argmax(bad))
        raise ValueError(f"normalizer[{i}] = {norm[i]}; it must be finite and > 0 for a person with annotated joints")
    scaled = _errors(pred_arr, gt_arr, vis) / np.where(vis.any(axis=1), norm, 1.0)[:, None]
    correct = ((scaled <= threshold) & vis).sum(axis=0)
    return _joint_table(correct, vis.sum(axis=0), joint_names)


def pdj(
    pred: Any,
    gt: Any,
    visible: Any,
    torso_pair: Skeleton | Sequence[int],
    fraction: float = 0.2,
    joint_names: Sequence[str] | None = None,
) -> dict[str, float]:
    """DeepPose's Percent of Detected Joints: detected when ``error <= fraction x torso diameter``.

    The torso diameter is ``torso_size(gt, torso_pair)``; this is PCK with a torso normaliser,
    kept under the name the DeepPose/FLIC literature uses. Output as in ``pck``.
    """
    return pck(pred, gt, visible, torso_size(gt, torso_pair), threshold=fraction, joint_names=joint_names)


def pck_image_height(
    pred: Any,
    gt: Any,
    visible: Any,
    image_heights: Any,
    fraction: float = 1 / 12,
    joint_names: Sequence[str] | None = None,
) -> dict[str, float]:
    """PCK in percent with the threshold a ``fraction`` of each person's image height: correct when
    ``error <= fraction x image_heights[i]`` (inclusive), the multi-task regression study's PCK@1/12.

    ``pred``, ``gt`` ``(N, K, 2)``; ``visible`` ``(N, K)`` bool (annotated); ``image_heights`` ``(N,)``
    pixels of the image each person is in. Output as in ``pck``.
    """
    if not fraction > 0:
        raise ValueError(f"fraction must be > 0, got {fraction}")
    return pck(pred, gt, visible, image_heights, threshold=fraction, joint_names=joint_names)


def visibility_accuracy(scores: Any, visible: Any, threshold: float = 0.5) -> float:
    """Visibility classification accuracy in percent over all ``N x K`` joints: a joint is predicted present
    when its score (a presence probability) is ``> threshold`` and counts as right when that agrees with
    ``visible`` (annotated). ``scores`` and ``visible`` ``(N, K)``."""
    probability = np.asarray(scores, dtype=np.float64)
    if probability.ndim != 2:
        raise ValueError(f"scores must have shape (N, K), got {probability.shape}")
    vis = _mask("visible", visible, *probability.shape)
    if vis.size == 0:
        raise ValueError("no joint to evaluate: scores is empty")
    if not np.isfinite(probability).all():
        i, j = np.argwhere(~np.isfinite(probability))[0]
        raise ValueError(f"scores has a non-finite value at (sample {i}, joint {j})")
    return float(100.0 * ((probability > threshold) == vis).mean())


def pcp(
    pred: Any,
    gt: Any,
    visible: Any,
    limbs: Mapping[str, Sequence[tuple[int, int]]] | Sequence[tuple[int, int]],
    threshold: float = 0.5,
) -> dict[str, float]:
    """Strict PCP in percent: a limb is correct when BOTH predicted endpoints lie within
    ``threshold x`` the ground-truth limb length of their ground-truth endpoints (inclusive).

    ``pred``, ``gt`` ``(N, K, 2)``; ``visible`` ``(N, K)``; ``limbs`` either the ``pcp_limbs``
    dict of a ``Skeleton`` (group name -> ``(a, b)`` pairs, e.g. both upper arms) or a plain
    sequence of ``(a, b)`` pairs (each its own group, named ``"a-b"``). A limb instance counts
    only when both endpoints are annotated. Each group is pooled over its limbs and persons (the
    mean of left and right when both are equally annotated); ``Mean`` is pooled over all limb
    instances, as eval_pcp.m does. A zero-length ground-truth limb is correct only when both
    endpoints are exact. A group with no annotated instance is NaN.
    """
    pred_arr, gt_arr, vis = check_keypoints(pred, gt, visible)
    k = gt_arr.shape[1]
    groups = dict(limbs) if isinstance(limbs, Mapping) else {f"{a}-{b}": ((a, b),) for a, b in limbs}
    if not groups or "Mean" in groups:
        raise ValueError("limbs must name at least one limb group and none may be called 'Mean'")
    errors = _errors(pred_arr, gt_arr, vis)
    table: dict[str, float] = {}
    total_correct = total_count = 0
    for name, pairs in groups.items():
        idx = np.asarray(pairs, dtype=np.int64).reshape(-1, 2)
        if idx.size == 0 or idx.min() < 0 or idx.max() >= k:
            raise ValueError(f"limbs[{name!r}] = {pairs!r} must be (a, b) pairs of joint indices below {k}")
        a, b = idx[:, 0], idx[:, 1]
        length = np.linalg.norm(np.where(vis[:, a, None] & vis[:, b, None], gt_arr[:, a] - gt_arr[:, b], 0.0), axis=2)
        annotated = vis[:, a] & vis[:, b]
        ok = annotated & (errors[:, a] <= threshold * length) & (errors[:, b] <= threshold * length)
        correct, count = int(ok.sum()), int(annotated.sum())
        table[name] = float(_percent(np.array(correct), np.array(count)))
        total_correct += correct
        total_count += count
    if total_count == 0:
        raise ValueError("visible has no limb with both endpoints annotated: nothing to evaluate")
    table["Mean"] = 100.0 * total_correct / total_count
    return table


def mean_normalised_error(pred: Any, gt: Any, visible: Any, normalizer: Any) -> np.ndarray:
    """``(N,)`` per-person mean over the annotated joints of ``error / normalizer[i]`` (e.g. ``head_size``,
    ``torso_size``); NaN for a person with no annotated joint or a normaliser that is not finite and > 0.

    ``pred``, ``gt`` ``(N, K, 2)``; ``visible`` ``(N, K)``; ``normalizer`` ``(N,)``. The prediction gallery
    ranks persons by it (benchmark/gallery.py).
    """
    pred_arr, gt_arr, vis = check_keypoints(pred, gt, visible)
    norm = np.asarray(normalizer, dtype=np.float64)
    if norm.shape != (gt_arr.shape[0],):
        raise ValueError(f"normalizer must have shape ({gt_arr.shape[0]},), got {norm.shape}")
    usable = np.isfinite(norm) & (norm > 0)
    count = vis.sum(axis=1)
    total = (_errors(pred_arr, gt_arr, vis) / np.where(usable, norm, 1.0)[:, None]).sum(axis=1)
    return np.divide(total, count, out=np.full(count.shape, np.nan), where=usable & (count > 0))


def mean_pixel_error(pred: Any, gt: Any, visible: Any) -> float:
    """Mean Euclidean error in pixels over the annotated joints of ``(N, K, 2)`` arrays."""
    pred_arr, gt_arr, vis = check_keypoints(pred, gt, visible)
    if not vis.any():
        raise ValueError("visible has no annotated joint: nothing to evaluate")
    return float(_errors(pred_arr, gt_arr, vis)[vis].mean())


# --------------------------------------------------------------------------- COCO: OKS, NMS, AP


def _sigmas(sigmas: Any, k: int) -> np.ndarray:
    out = np.asarray(sigmas, dtype=np.float64)
    if out.shape != (k,):
        raise ValueError(f"sigmas must have shape ({k},), got {out.shape}")
    return out


def oks(pred: Any, gt: Any, gt_visible: Any, areas: Any, sigmas: Any) -> np.ndarray:
    """``(N,)`` object keypoint similarity of ``pred[i]`` to ``gt[i]``, as pycocotools computes it.

    ``pred``, ``gt`` ``(N, K, 2)``; ``gt_visible`` ``(N, K)`` bool (labelled, ``v > 0``);
    ``areas`` ``(N,)`` ground-truth areas; ``sigmas`` ``(K,)``. OKS = mean over labelled joints of
    ``exp(-d^2 / (2 sigma)^2 / (area + eps) / 2)``. pycocotools scores a ground truth with no
    labelled joint by the distance to its enlarged box, which needs the box; here such a row is NaN.
    """
    gt_arr = _points("gt", gt)
    n, k = gt_arr.shape[:2]
    pred_arr = _points("pred", pred, n=n, k=k)
    vis = _mask("gt_visible", gt_visible, n, k)
    area = np.asarray(areas, dtype=np.float64)
    if area.shape != (n,):
        raise ValueError(f"areas must have shape ({n},), got {area.shape}")
    variances = (_sigmas(sigmas, k) * 2) ** 2
    d2 = ((pred_arr - gt_arr) ** 2).sum(axis=2)
    e = d2 / variances / (area[:, None] + np.spacing(1)) / 2
    count = vis.sum(axis=1)
    total = np.where(vis, np.exp(-e), 0.0).sum(axis=1)
    return np.divide(total, count, out=np.full(n, np.nan), where=count > 0)


def oks_nms(
    keypoints: Any,
    scores: Any,
    areas: Any,
    threshold: float = 0.9,
    sigmas: Any = COCO_SIGMAS,
    visibility_threshold: float | None = None,
) -> list[int]:
    """Greedy OKS non-maximum suppression of one image's poses; returns kept indices, best first.

    ``keypoints`` ``(N, K, 3)`` with per-joint scores in ``[:, :, 2]``; ``scores`` ``(N,)``;
    ``areas`` ``(N,)``. Repeatedly keep the highest-scored remaining pose (ties: lower index
    first) and drop every remaining pose whose OKS with it is ``> threshold``. The OKS between two
    predictions uses the mean of their areas and all joints; with ``visibility_threshold`` only
    joints whose score exceeds it in both poses count (0 when none does). The reference code's
    ``list(vg > t) and list(vd > t)`` keeps only the second pose's mask; this is the intended rule.
    HRNet evaluates COCO without a visibility threshold.
    """
    kpts = np.asarray(keypoints, dtype=np.float64)
    if kpts.size == 0:
        return []
    if kpts.ndim != 3 or kpts.shape[2] != 3:
        raise ValueError(f"keypoints must have shape (N, K, 3), got {kpts.shape}")
    n, k = kpts.shape[:2]
    score = np.asarray(scores, dtype=np.float64)
    area = np.asarray(areas, dtype=np.float64)
    if score.shape != (n,) or area.shape != (n,):
        raise ValueError(f"scores and areas must have shape ({n},), got {score.shape} and {area.shape}")
    variances = (_sigmas(sigmas, k) * 2) ** 2
    order = np.argsort(-score, kind="stable")
    keep: list[int] = []
    while order.size:
        best, rest = order[0], order[1:]
        keep.append(int(best))
        d2 = ((kpts[rest, :, :2] - kpts[best, :, :2]) ** 2).sum(axis=2)
        e = d2 / variances / ((area[best] + area[rest])[:, None] / 2 + np.spacing(1)) / 2
        if visibility_threshold is None:
            overlap = np.exp(-e).mean(axis=1)
        else:
            used = (kpts[rest, :, 2] > visibility_threshold) & (kpts[best, :, 2] > visibility_threshold)
            count = used.sum(axis=1)
            overlap = np.divide(
                np.where(used, np.exp(-e), 0.0).sum(axis=1), count, out=np.zeros(rest.size), where=count > 0
            )
        order = rest[overlap <= threshold]
    return keep


def _person_scores(box_scores: Any, keypoint_scores: Any) -> tuple[np.ndarray, np.ndarray]:
    """``(N,)`` box scores and ``(N, K)`` keypoint scores as float64; a shape mismatch is a ValueError."""
    box = np.asarray(box_scores, dtype=np.float64)
    kps = np.asarray(keypoint_scores, dtype=np.float64)
    if kps.ndim != 2 or box.shape != (kps.shape[0],):
        raise ValueError(f"box_scores (N,) and keypoint_scores (N, K) disagree: {box.shape} vs {kps.shape}")
    return box, kps


def rescore(box_scores: Any, keypoint_scores: Any, threshold: float = 0.2) -> np.ndarray:
    """``(N,)`` COCO rescoring: box score x mean of the keypoint scores ``> threshold``.

    ``box_scores`` ``(N,)``, ``keypoint_scores`` ``(N, K)``; a person with no keypoint score above
    the threshold gets 0 (the reference's ``kpt_score`` stays 0 when ``valid_num`` is 0). As the
    reference code (HRNet ``lib/dataset/coco.py`` ``evaluate``; mmpose ``coco_metric.py``) the sum runs
    in float32, joint by joint, and the product is float32, so the scores (and the OKS-NMS order
    they set) are the reference's bit for bit.
    """
    box, kps = _person_scores(box_scores, keypoint_scores)
    above = kps > threshold
    count = above.sum(axis=1)
    if kps.shape[1] == 0:
        return np.zeros(box.shape)
    # cumsum adds left to right, one joint at a time (np.sum would add pairwise).
    total = np.where(above, kps, 0.0).astype(np.float32).cumsum(axis=1, dtype=np.float32)[:, -1]
    mean = np.divide(total, count.astype(np.float32), out=np.zeros(box.shape, dtype=np.float32), where=count > 0)
    return (box.astype(np.float32) * mean).astype(np.float64)


INSTANCE_SCORES = ("bbox_keypoint", "keypoint", "bbox")
"""The person scores COCO ranks and OKS-NMS orders by (``instance_scores``), named as mmpose's ``score_mode``."""
DEFAULT_INSTANCE_SCORE = "bbox_keypoint"


def instance_scores(box_scores: Any, keypoint_scores: Any, mode: str = DEFAULT_INSTANCE_SCORE,
                    threshold: float = 0.2) -> np.ndarray:
    """``(N,)`` person scores under ``mode``: ``bbox_keypoint`` is ``rescore`` (HRNet, mmpose's default),
    ``keypoint`` the plain mean of the ``(N, K)`` keypoint scores in float32 as mmpose's ``np.mean`` of a row
    (G-RMI's eq. 7), ``bbox`` the ``(N,)`` box scores alone."""
    if mode not in INSTANCE_SCORES:
        raise ValueError(f"unknown instance score mode {mode!r}; valid: {', '.join(INSTANCE_SCORES)}")
    if mode == "bbox_keypoint":
        return rescore(box_scores, keypoint_scores, threshold)
    box, kps = _person_scores(box_scores, keypoint_scores)
    if mode == "bbox":
        return box.copy()
    if kps.shape[1] == 0:
        return np.zeros(box.shape)
    # Row by row, each row contiguous: the same float32 pairwise sum as np.mean of one instance's scores.
    return np.ascontiguousarray(kps, dtype=np.float32).mean(axis=1, dtype=np.float32).astype(np.float64)


def _load_coco(gt: Any, verbose: bool) -> Any:
    """A COCO object the evaluation may mutate: loaded from a path, or a copy of the caller's."""
    from pycocotools.coco import COCO as CocoApi

    with _maybe_quiet(verbose):
        if isinstance(gt, (str, Path)):
            path = Path(gt)
            if not path.is_file():
                raise FileNotFoundError(f"COCO keypoint annotation file not found: {path}")
            return CocoApi(str(path))
        if not isinstance(gt, CocoApi):
            raise TypeError(f"gt must be a path or a pycocotools COCO object, got {type(gt).__name__}")
        # COCOeval writes an 'ignore' flag into each ground-truth annotation dict; copy them.
        copy = CocoApi()
        copy.dataset = dict(gt.dataset)
        copy.dataset["annotations"] = [dict(a) for a in gt.dataset.get("annotations", [])]
        copy.createIndex()
        return copy


def _maybe_quiet(verbose: bool) -> contextlib.AbstractContextManager:
    return contextlib.nullcontext() if verbose else contextlib.redirect_stdout(io.StringIO())


def coco_keypoint_ap(
    gt: Any, results: Sequence[Mapping[str, Any]], *, verbose: bool = False, image_ids: Sequence[int] | None = None
) -> dict[str, float]:
    """pycocotools COCOeval (``iouType='keypoints'``) statistics of ``results`` against ``gt``.

    ``gt`` is a COCO keypoints JSON path or a loaded ``pycocotools.coco.COCO`` (not modified);
    ``results`` a list of ``{image_id, category_id, keypoints (51 floats), score}`` (the dicts
    are copied before pycocotools annotates them; extra keys such as ``bbox`` are passed on, as
    pycocotools would see them in a results file). Returns ``AP, AP50, AP75, APM, APL, AR, AR50,
    AR75, ARM, ARL`` equal to ``COCOeval.stats`` (fractions, -1 where COCOeval has no data).
    pycocotools' printing is suppressed unless ``verbose``. ``image_ids`` restricts the evaluation
    to those images (``COCOeval.params.imgIds``; default: every image of ``gt``), for a debug
    subset of a split. Empty ``results``, a missing key, a wrong keypoint count or an image id not
    in ``gt`` (or not in ``image_ids``) raise ValueErrors.
    """
    from pycocotools.cocoeval import COCOeval

    if len(results) == 0:
        raise ValueError("results is empty: there are no predictions to evaluate")
    copied = []
    for i, r in enumerate(results):
        missing = [key for key in ("image_id", "category_id", "keypoints", "score") if key not in r]
        if missing:
            raise ValueError(f"results[{i}] lacks {', '.join(missing)}")
        if len(r["keypoints"]) != 3 * len(COCO_SIGMAS):
            raise ValueError(
                f"results[{i}]['keypoints'] has {len(r['keypoints'])} values, expected {3 * len(COCO_SIGMAS)}"
            )
        copied.append(dict(r))
    coco_gt = _load_coco(gt, verbose)
    unknown = sorted({r["image_id"] for r in copied} - set(coco_gt.getImgIds()))
    if unknown:
        raise ValueError(f"results refer to image ids not in the ground truth: {unknown[:10]}")
    if image_ids is not None:
        outside = sorted({r["image_id"] for r in copied} - {int(i) for i in image_ids})
        if outside:
            raise ValueError(f"results refer to image ids outside image_ids: {outside[:10]}")
    with _maybe_quiet(verbose):
        coco_dt = coco_gt.loadRes(copied)
        evaluator = COCOeval(coco_gt, coco_dt, iouType="keypoints")
        if image_ids is not None:
            evaluator.params.imgIds = sorted({int(i) for i in image_ids})
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return {name: float(value) for name, value in zip(COCO_STAT_NAMES, evaluator.stats, strict=True)}
