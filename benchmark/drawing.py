"""Skeleton drawing shared by the gallery and ``data show``: left limbs blue, right orange, centre green.

Drawing uses matplotlib's Agg canvas directly (no pyplot state, no display needed). Joints that are not
annotated (or not finite) and the limbs touching them are omitted.
"""

from __future__ import annotations

import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.collections import LineCollection
from matplotlib.figure import Figure

from datamodules.skeletons import Skeleton

# centre, left, right (matplotlib's tab10 green, blue, orange).
SIDE_COLOURS = np.array([[0.17, 0.63, 0.17], [0.12, 0.47, 0.71], [1.0, 0.50, 0.05]])


def _sides(skeleton: Skeleton) -> tuple[np.ndarray, np.ndarray]:
    """``(K,)`` joint sides and ``(L,)`` limb sides: 0 centre, 1 left, 2 right.

    A limb is left (right) when an end is left (right) and no end is right (left), so a
    shoulder-to-thorax limb takes the shoulder's side and a shoulder-to-shoulder limb is centre.
    """
    names = np.array(skeleton.joints)
    left = np.char.startswith(names, "l_")
    right = np.char.startswith(names, "r_")
    joint_side = np.where(left, 1, np.where(right, 2, 0))
    limbs = np.asarray(skeleton.limbs, dtype=np.int64).reshape(-1, 2)
    limb_left = left[limbs].any(axis=1) & ~right[limbs].any(axis=1)
    limb_right = right[limbs].any(axis=1) & ~left[limbs].any(axis=1)
    limb_side = np.where(limb_left, 1, np.where(limb_right, 2, 0))
    return joint_side, limb_side


def _draw_on_axes(ax: Axes, keypoints: np.ndarray, shown: np.ndarray, skeleton: Skeleton, linewidth: float) -> None:
    joint_side, limb_side = _sides(skeleton)
    limbs = np.asarray(skeleton.limbs, dtype=np.int64).reshape(-1, 2)
    keep = shown[limbs].all(axis=1)
    # An axes showing an image keeps its view: joints outside the image must not rescale it.
    limits = (ax.get_xlim(), ax.get_ylim()) if ax.images else None
    segments = LineCollection(list(keypoints[limbs[keep]]), colors=SIDE_COLOURS[limb_side[keep]], linewidths=linewidth)
    ax.add_collection(segments)
    ax.scatter(
        keypoints[shown, 0], keypoints[shown, 1], s=(2.5 * linewidth) ** 2, c=SIDE_COLOURS[joint_side[shown]],
        edgecolors="white", linewidths=0.5 * linewidth, zorder=3,
    )
    if limits is not None:
        ax.set_xlim(*limits[0])
        ax.set_ylim(*limits[1])


def draw_skeleton(
    target: Axes | np.ndarray,
    keypoints: np.ndarray,
    visible: np.ndarray,
    skeleton: Skeleton,
    *,
    linewidth: float = 2.0,
) -> Axes | np.ndarray:
    """Draw joints and limbs of one person; left blue, right orange, centre green.

    Args:
        target: a matplotlib ``Axes`` (drawn on, returned), or an RGB image ``(H, W, 3)`` uint8
            (left unchanged; a drawn copy ``(H, W, 3)`` uint8 is returned).
        keypoints: ``(K, 2)`` (x, y) in the target's pixel coordinates.
        visible: ``(K,)`` bool or 0/1; joints that are 0 (or not finite) and their limbs are omitted.
        skeleton: the joints' skeleton; ``K`` must equal ``skeleton.num_joints``.
        linewidth: limb width in points (pixels for an image target).
    """
    keypoints = np.asarray(keypoints, dtype=np.float64)
    visible = np.asarray(visible)
    if keypoints.shape != (skeleton.num_joints, 2) or visible.shape != (skeleton.num_joints,):
        raise ValueError(
            f"{skeleton.name} has {skeleton.num_joints} joints: expected keypoints ({skeleton.num_joints}, 2) and "
            f"visible ({skeleton.num_joints},), got {keypoints.shape} and {visible.shape}"
        )
    shown = (visible > 0) & np.isfinite(keypoints).all(axis=1)
    if isinstance(target, Axes):
        _draw_on_axes(target, keypoints, shown, skeleton, linewidth)
        return target
    image = np.asarray(target)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"image target must be (H, W, 3) uint8 RGB, got {image.shape} {image.dtype}")
    height, width = image.shape[:2]
    # At 72 dpi one point is one pixel, so the canvas is exactly the image's size.
    figure = Figure(figsize=(width / 72, height / 72), dpi=72)
    canvas = FigureCanvasAgg(figure)
    ax = figure.add_axes((0.0, 0.0, 1.0, 1.0))
    ax.set_axis_off()
    ax.imshow(image, interpolation="nearest")
    _draw_on_axes(ax, keypoints, shown, skeleton, linewidth)
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3].copy()
