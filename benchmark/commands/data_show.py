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

from pathlib import Path

import cv2
import numpy as np
import torch
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Polygon, Rectangle

from benchmark.drawing import draw_skeleton
from benchmark.files import atomic_write
from benchmark.protocols import get_protocol
from datamodules.datasets import build_dataset
from datamodules.records import PIXEL_STD, DatasetError, PersonRecord
from datamodules.skeletons import Skeleton
from datamodules.topdown import TopDownDataset, read_image
from datamodules.transforms import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    TopDownTransform,
    augmentation_preset,
    normalise_images,
)

FIGURE_SIZE_PX = (1200, 600)
"""(width, height) of the PNG ``show_sample`` writes."""

_DPI = 100


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
        Rectangle((corner[0], corner[1]), *width_height, fill=False, edgecolor="yellow", linewidth=1.5,
                  label="centre/scale box")
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
    atomic_write(out, FigureCanvasAgg(figure).print_png)


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

    ``augment`` applies the reference training augmentation of the dataset's protocol (HRNet's COCO
    or MPII one, ``benchmark.protocols``) at epoch 0, seed 0. The PNG is ``FIGURE_SIZE_PX``
    (1200 x 600). An index outside the records raises ``DatasetError``.
    """
    height, width = (int(v) for v in input_size)
    dataset = build_dataset(data, Path(root), split, aspect_ratio=width / height)
    count = len(dataset.records)
    if not 0 <= index < count:
        raise DatasetError(f"index {index} is out of range: {data} {split} has {count} records (0..{count - 1})")
    record = dataset.records[index]
    augmentation = augmentation_preset(get_protocol(dataset.protocol).augmentation) if augment else None
    transform = TopDownTransform((height, width), dataset.skeleton, augmentation=augmentation, seed=0)
    sample = TopDownDataset(dataset.records, transform)[(0, index)]

    figure = Figure(figsize=(FIGURE_SIZE_PX[0] / _DPI, FIGURE_SIZE_PX[1] / _DPI), dpi=_DPI)
    full_ax, crop_ax = figure.subplots(1, 2, gridspec_kw={"width_ratios": [3, 2]})
    inverse_matrix = np.asarray(sample["inverse_matrix"], dtype=np.float64)
    _draw_full_image(full_ax, record, inverse_matrix, (height, width), dataset.skeleton)
    # The uint8 crop normalised as the model's batch is (colour gains included), then shown de-normalised.
    model_input = normalise_images(sample["image"][None], torch.from_numpy(sample["colour_gain"])[None])[0]
    crop_ax.imshow(_denormalise(model_input.numpy()))
    draw_skeleton(crop_ax, np.asarray(sample["keypoints"]), np.asarray(sample["visible"]), dataset.skeleton)
    crop_ax.set_title(f"crop {height}x{width}" + (" (augmented)" if augment else ""), fontsize=9)
    for ax in (full_ax, crop_ax):
        ax.tick_params(labelsize=7)
    figure.suptitle(f"{data} / {split} / index {index} / image id {record.image_id}", fontsize=11)
    out = Path(out)
    _write_png(figure, out)
    return out
