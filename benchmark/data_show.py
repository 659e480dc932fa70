"""``python -m benchmark data show``: draw one person sample to a PNG, to check data by eye.

Left panel: the full image with the person's centre/scale box, its bbox (ground truth or
detection), the outline of the crop the transform takes, and the keypoints. Right panel: the
crop exactly as a model sees it (de-normalised), with the skeleton in crop pixels. Drawing uses
matplotlib's Agg canvas directly (no pyplot state, no display needed); ``draw_skeleton`` is
shared with gallery code.

Colours: left limbs/joints blue, right orange, centre green; joints that are not annotated (or
dropped by the transform) and limbs touching them are omitted. Images are shown with
``imshow``'s default extent, so pixel centres sit at integer coordinates, the convention of the
records and of the transform (datamodules/transforms.py).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import cv2
import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.collections import LineCollection
from matplotlib.figure import Figure
from matplotlib.patches import Polygon, Rectangle

from datamodules.datasets import build_dataset
from datamodules.records import PIXEL_STD, DatasetError, PersonRecord
from datamodules.skeletons import Skeleton
from datamodules.topdown import TopDownDataset, read_image
from datamodules.transforms import HRNET_COCO, HRNET_MPII, IMAGENET_MEAN, IMAGENET_STD, TopDownTransform

FIGURE_SIZE_PX = (1200, 600)
"""(width, height) of the PNG ``show_sample`` writes."""

_DPI = 100
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
    segments = LineCollection(keypoints[limbs[keep]], colors=SIDE_COLOURS[limb_side[keep]], linewidths=linewidth)
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


def _denormalise(image: np.ndarray) -> np.ndarray:
    """``(3, H, W)`` ImageNet-normalised RGB -> ``(H, W, 3)`` RGB in [0, 1]."""
    return np.clip(image.transpose(1, 2, 0) * np.asarray(IMAGENET_STD) + np.asarray(IMAGENET_MEAN), 0.0, 1.0)


def _draw_full_image(
    ax: Axes, record: PersonRecord, inverse_matrix: np.ndarray, input_size: tuple[int, int], skeleton: Skeleton
) -> None:
    """The image with the centre/scale box, the bbox, the crop outline (``inverse_matrix`` (2, 3)) and the joints."""
    image = cv2.cvtColor(read_image(record.image), cv2.COLOR_BGR2RGB)
    ax.imshow(image)
    width_height = np.asarray(record.scale, dtype=np.float64) * PIXEL_STD
    corner = np.asarray(record.center, dtype=np.float64) - width_height / 2
    ax.add_patch(
        Rectangle(corner, *width_height, fill=False, edgecolor="yellow", linewidth=1.5, label="centre/scale box")
    )
    if record.bbox is not None:
        x, y, w, h = np.asarray(record.bbox, dtype=np.float64)
        ax.add_patch(Rectangle((x, y), w, h, fill=False, edgecolor="cyan", linestyle="--", linewidth=1.5,
                               label=f"bbox (score {record.box_score:.2f})"))
    height, width = input_size
    # The crop's outer pixel edges mapped back: shows rotation and scale augmentation too.
    crop_corners = np.array([[-0.5, -0.5], [width - 0.5, -0.5], [width - 0.5, height - 0.5], [-0.5, height - 0.5]])
    outline = crop_corners @ inverse_matrix[:, :2].T + inverse_matrix[:, 2]
    ax.add_patch(
        Polygon(outline, closed=True, fill=False, edgecolor="magenta", linestyle=":", linewidth=1.5, label="crop")
    )
    draw_skeleton(ax, record.keypoints, record.visible, skeleton)
    # View the image and everything drawn, even where a box or the crop reaches past the image.
    image_corners = np.array([[-0.5, -0.5], [image.shape[1] - 0.5, image.shape[0] - 0.5]])
    extent = np.concatenate([image_corners, outline, corner[None], (corner + width_height)[None]])
    low, high = extent.min(axis=0), extent.max(axis=0)
    ax.set_xlim(low[0], high[0])
    ax.set_ylim(high[1], low[1])
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.06), ncol=3, fontsize=7, frameon=False)
    ax.set_title("image", fontsize=9)


def _write_png(figure: Figure, out: Path) -> None:
    """Save atomically: a reader never sees a half-written PNG."""
    out.parent.mkdir(parents=True, exist_ok=True)
    handle, temp = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".png", dir=out.parent)
    try:
        with os.fdopen(handle, "wb") as stream:
            FigureCanvasAgg(figure).print_png(stream)
        os.replace(temp, out)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


def show_sample(
    data: str,
    root: Path,
    split: str = "val",
    index: int = 0,
    augment: bool = False,
    input_size: tuple[int, int] = (256, 192),
    out: Path = Path("outputs/sample.png"),
) -> Path:
    """Draw person record ``index`` of ``data``/``split`` and its crop to ``out``; returns ``out``.

    ``augment`` applies HRNet's training augmentation (``HRNET_COCO`` for COCO-17 skeletons,
    ``HRNET_MPII`` otherwise) at epoch 0, seed 0. The PNG is
    ``FIGURE_SIZE_PX`` (1200 x 600). An index outside the records raises ``DatasetError``.
    """
    height, width = (int(v) for v in input_size)
    dataset = build_dataset(data, Path(root), split, aspect_ratio=width / height)
    count = len(dataset.records)
    if not 0 <= index < count:
        raise DatasetError(f"index {index} is out of range: {data} {split} has {count} records (0..{count - 1})")
    record = dataset.records[index]
    augmentation = (HRNET_COCO if dataset.skeleton.name == "coco" else HRNET_MPII) if augment else None
    transform = TopDownTransform((height, width), dataset.skeleton, augmentation=augmentation, seed=0)
    sample = TopDownDataset(dataset.records, transform)[(0, index)]

    figure = Figure(figsize=(FIGURE_SIZE_PX[0] / _DPI, FIGURE_SIZE_PX[1] / _DPI), dpi=_DPI)
    full_ax, crop_ax = figure.subplots(1, 2, gridspec_kw={"width_ratios": [3, 2]})
    inverse_matrix = np.asarray(sample["inverse_matrix"], dtype=np.float64)
    _draw_full_image(full_ax, record, inverse_matrix, (height, width), dataset.skeleton)
    crop_ax.imshow(_denormalise(np.asarray(sample["image"], dtype=np.float32)))
    draw_skeleton(crop_ax, np.asarray(sample["keypoints"]), np.asarray(sample["visible"]), dataset.skeleton)
    crop_ax.set_title(f"crop {height}x{width}" + (" (augmented)" if augment else ""), fontsize=9)
    for ax in (full_ax, crop_ax):
        ax.tick_params(labelsize=7)
    figure.suptitle(f"{data} / {split} / index {index} / image id {record.image_id}", fontsize=11)
    out = Path(out)
    _write_png(figure, out)
    return out
