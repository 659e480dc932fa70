"""Prediction galleries: one PNG per run showing its best and worst predicted persons.

A benchmark number says how good a model is; a picture says how it fails. For each run the
runner hands this module the dataset split and the predictions (dataset order, image pixels)
and gets back ONE PNG beside the run record: the top row holds the ``count`` persons with the
lowest error, best first, the bottom row the ``count`` with the highest, worst first. Each tile
is the person's crop taken with the project's own top-down affine (``datamodules.transforms``,
no rotation or flip) with the ground truth underneath (white limbs edged in black, white squares
on the joints), the prediction on top by ``benchmark.drawing.draw_skeleton`` (left blue, right
orange, centre green; every predicted joint is drawn, annotated or not) and a red segment from
each annotated joint's truth to its prediction, so a wrong joint shows as a long red line. The
header says so (``LEGEND``); the caption names the record index, the image file and the error.

Per-person error, one number per person under the dataset's evaluation protocol, so the ranking
agrees with what the benchmark measures: each protocol object (``benchmark.protocols``) defines
``person_errors``, the ground truth drawn with it and the caption name of the error
(docs/protocols.md): MPII the mean annotated-joint error / head size (gt_valid.mat when the split
has it), COCO ``1 - OKS`` against the record's own annotation, LSP the mean annotated-joint error /
torso size. A person with no annotated joint (COCO detection-box records: zero keypoints, nothing
visible) has error NaN and never enters a gallery; so does an LSP person whose torso size is zero.

The PNG is drawn on matplotlib's Agg canvas without pyplot, mapped onto a fixed palette (8-bit
PNG, about 80 kB instead of 600 kB), written atomically (temp file in the same directory, then
``os.replace``) and is byte-identical for identical input: nothing in it depends on time. Its size
is ``gallery_size_px(count, tile_size)``.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
from matplotlib import patheffects
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.collections import LineCollection
from matplotlib.figure import Figure
from PIL import Image

from benchmark.drawing import SIDE_COLOURS, draw_skeleton
from benchmark.files import atomic_write
from benchmark.protocols import get_protocol
from datamodules.datasets import PoseDataset
from datamodules.records import PersonRecord
from datamodules.skeletons import Skeleton
from datamodules.topdown import read_image
from datamodules.transforms import affine_matrix, transform_points

HEADER_PX = 24
"""Height of the strip above the tiles that says which row is which."""
CAPTION_PX = 30
"""Height of the two-line caption strip below every tile."""

_DPI = 100
_GT_COLOUR = "white"
_GT_EDGE = patheffects.withStroke(linewidth=2.6, foreground="black")  # white on black: visible on any background
_ERROR_COLOUR = "red"
LEGEND = "truth: white on black, squares  |  prediction: coloured  |  red: truth -> prediction"
_BACKGROUND = "white"


# --------------------------------------------------------------------------- per-person errors


def person_errors(dataset: PoseDataset, keypoints: np.ndarray) -> np.ndarray:
    """``(N,)`` float64 error of each person under ``dataset.protocol``; NaN where it is undefined.

    ``keypoints`` ``(N, K, 2)`` predicted image pixels in dataset order, ``K`` the skeleton's
    joints; the protocol's ``person_errors`` computes it (module docstring). A wrong shape or a
    non-finite prediction at an annotated joint raises ValueError.
    """
    protocol = get_protocol(dataset.protocol)
    records = dataset.records
    k = dataset.skeleton.num_joints
    pred = np.asarray(keypoints, dtype=np.float64)
    if pred.shape != (len(records), k, 2):
        raise ValueError(
            f"keypoints must have shape ({len(records)}, {k}, 2) for {dataset.name} {dataset.split} "
            f"({len(records)} records, {dataset.skeleton.name} skeleton), got {pred.shape}"
        )
    if not records:
        return np.zeros(0, dtype=np.float64)
    return protocol.person_errors(dataset, pred)


def select_best_worst(errors: np.ndarray, count: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices ``(best, worst)`` of the ``count`` lowest and ``count`` highest finite ``errors`` ``(N,)``.

    ``best`` is in ascending error order, ``worst`` in descending error order; equal errors go
    lower index first in both. Non-finite errors are never chosen. The two sets are disjoint:
    with ``F < 2 * count`` finite errors, ``best`` takes the lowest ``ceil(F / 2)`` and ``worst``
    the remaining ``floor(F / 2)``. Both are int64 ``(<= count,)``.
    """
    err = np.asarray(errors, dtype=np.float64)
    if err.ndim != 1:
        raise ValueError(f"errors must be one-dimensional (N,), got shape {err.shape}")
    if count < 0:
        raise ValueError(f"count must be >= 0, got {count}")
    finite = np.flatnonzero(np.isfinite(err))
    ascending = finite[np.argsort(err[finite], kind="stable")]
    n_best = min(count, (finite.size + 1) // 2)
    n_worst = min(count, finite.size - n_best)
    rest = ascending[n_best:]
    # rest is ordered by index within equal errors; a stable sort on -error keeps that.
    descending = rest[np.argsort(-err[rest], kind="stable")]
    return ascending[:n_best].astype(np.int64), descending[:n_worst].astype(np.int64)


# --------------------------------------------------------------------------- drawing


def gallery_size_px(count: int, tile_size: tuple[int, int]) -> tuple[int, int]:
    """``(width, height)`` of the PNG: ``count`` tiles across, two rows of tile + caption, a header."""
    tile_h, tile_w = tile_size
    return count * tile_w, HEADER_PX + 2 * (tile_h + CAPTION_PX)


def _crop(record: PersonRecord, tile_size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """The person's ``(H, W, 3)`` RGB crop and the ``(2, 3)`` image -> crop matrix (no rotation, no flip)."""
    tile_h, tile_w = tile_size
    matrix = affine_matrix(record.center, record.scale, 0.0, (tile_w, tile_h))
    crop = cv2.warpAffine(
        read_image(record.image), matrix, (tile_w, tile_h),
        flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0,
    )
    return cv2.cvtColor(crop, cv2.COLOR_BGR2RGB), matrix


def _draw_truth(ax: Axes, points: np.ndarray, annotated: np.ndarray, skeleton: Skeleton) -> None:
    """Ground truth ``(K, 2)`` crop px: white limbs edged in black and white squares on the annotated joints,
    a style no prediction uses, so truth and prediction are told apart on any background."""
    limbs = np.asarray(skeleton.limbs, dtype=np.int64).reshape(-1, 2)
    shown = annotated & np.isfinite(points).all(axis=1)
    keep = shown[limbs].all(axis=1)
    ax.add_collection(LineCollection(list(points[limbs[keep]]), colors=[_GT_COLOUR], linewidths=1.2, zorder=2,
                                     path_effects=[_GT_EDGE]))
    ax.scatter(points[shown, 0], points[shown, 1], s=16.0, marker="s", c=[_GT_COLOUR], edgecolors="black",
               linewidths=0.8, zorder=2)


def _draw_errors(ax: Axes, truth: np.ndarray, pred: np.ndarray, annotated: np.ndarray) -> None:
    """A red segment from each annotated joint's truth to its prediction ``(K, 2)`` crop px: the wrong joints
    are the long red lines."""
    shown = annotated & np.isfinite(truth).all(axis=1) & np.isfinite(pred).all(axis=1)
    segments = np.stack([truth[shown], pred[shown]], axis=1)
    # Above the truth, under the prediction markers (draw_skeleton: zorder 3), which stay readable.
    ax.add_collection(LineCollection(list(segments), colors=[_ERROR_COLOUR], linewidths=1.2, zorder=2.5))


def render_gallery(
    dataset: PoseDataset,
    keypoints: np.ndarray,
    out: Path | str,
    *,
    count: int = 4,
    tile_size: tuple[int, int] = (256, 192),
    title: str | None = None,
) -> Path | None:
    """Write the best/worst gallery of ``keypoints`` ``(N, K, 2)`` (image px, dataset order) to ``out``.

    Top row: the ``count`` lowest errors, best first; bottom row: the ``count`` highest, worst
    first (``select_best_worst``; empty slots stay blank). ``tile_size`` is ``(H, W)`` of each
    crop; the PNG is ``gallery_size_px(count, tile_size)`` pixels. ``title`` leads the header.
    Returns ``out`` as a Path, or None (nothing written) when no person has a finite error.
    """
    if count < 1:
        raise ValueError(f"count must be >= 1, got {count}")
    tile_h, tile_w = (int(v) for v in tile_size)
    if tile_h < 1 or tile_w < 1:
        raise ValueError(f"tile_size must be positive (H, W), got {tuple(tile_size)}")
    errors = person_errors(dataset, keypoints)
    best, worst = select_best_worst(errors, count)
    if best.size == 0:
        return None

    protocol = get_protocol(dataset.protocol)
    label = protocol.error_label
    gt, annotated = protocol.ground_truth(dataset)
    pred = np.asarray(keypoints, dtype=np.float64)
    width, height = gallery_size_px(count, (tile_h, tile_w))
    figure = Figure(figsize=(width / _DPI, height / _DPI), dpi=_DPI, facecolor=_BACKGROUND)
    scored = int(np.isfinite(errors).sum())
    header = f"top: best {best.size}, bottom: worst {worst.size} of {scored} by {label}"
    # Left-aligned: on a narrow gallery the ends of the lines are cut, never the title.
    figure.text(4 / width, 1.0 - 2 / height, f"{title}  |  {header}\n{LEGEND}" if title else f"{header}\n{LEGEND}",
                ha="left", va="top", fontsize=7, linespacing=1.1)
    every_joint = np.ones(dataset.skeleton.num_joints, dtype=bool)
    for row, chosen in enumerate((best, worst)):
        top = HEADER_PX + row * (tile_h + CAPTION_PX)
        for column, index in enumerate(chosen.tolist()):
            record = dataset.records[index]
            crop, matrix = _crop(record, (tile_h, tile_w))
            # Axes placed in exact pixels, so the crop is shown 1:1.
            ax = figure.add_axes((column * tile_w / width, 1.0 - (top + tile_h) / height,
                                  tile_w / width, tile_h / height))
            ax.set_axis_off()
            ax.imshow(crop, interpolation="nearest")
            truth, predicted = transform_points(gt[index], matrix), transform_points(pred[index], matrix)
            _draw_truth(ax, truth, annotated[index], dataset.skeleton)
            draw_skeleton(ax, predicted, every_joint, dataset.skeleton, linewidth=1.5)
            _draw_errors(ax, truth, predicted, annotated[index])
            # Joints outside the crop must not zoom the tile out.
            ax.set_xlim(-0.5, tile_w - 0.5)
            ax.set_ylim(tile_h - 0.5, -0.5)
            caption = f"#{index}  {Path(record.image).name}\n{label} {errors[index]:.3f}"
            figure.text((column + 0.5) * tile_w / width, 1.0 - (top + tile_h + 3) / height, caption,
                        ha="center", va="top", fontsize=7, linespacing=1.2)
    out = Path(out)
    canvas = FigureCanvasAgg(figure)
    canvas.draw()
    _write_palette_png(np.asarray(canvas.buffer_rgba())[..., :3], out)
    return out


def _palette() -> Image.Image:
    """The fixed gallery palette: the 6x6x6 colour cube plus the exact skeleton side colours."""
    levels = np.arange(6) * 51
    cube = np.stack(np.meshgrid(levels, levels, levels, indexing="ij"), axis=-1).reshape(-1, 3)
    sides = np.round(SIDE_COLOURS * 255).astype(np.int64)
    colours = np.concatenate([cube, sides]).astype(np.uint8)
    palette = Image.new("P", (1, 1))
    palette.putpalette(colours.reshape(-1).tolist() + [0] * (768 - colours.size))
    return palette


def _write_palette_png(rgb: np.ndarray, out: Path) -> None:
    """Write ``rgb`` ``(H, W, 3)`` uint8 as an 8-bit palette PNG, atomically.

    A gallery is kept beside its record (and committed with it), so it is stored small: the noisy
    crops need about 600 kB as RGB and about 80 kB mapped onto a fixed palette without dithering,
    which keeps the skeleton colours exact and the bytes identical for identical input.
    """
    image = Image.fromarray(np.ascontiguousarray(rgb), "RGB").quantize(palette=_palette(), dither=Image.Dither.NONE)
    atomic_write(out, lambda stream: image.save(stream, format="PNG", optimize=True))
