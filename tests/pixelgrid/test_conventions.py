"""The pixel-grid conventions: where each maps the box, the flip, the heatmap grid and the way back.

Truth is hand-computed from each convention's definition (docs/conventions.md): the box centre and
edges land where the source code puts them, and crop -> image inverts image -> crop.
"""

from __future__ import annotations

import numpy as np
import pytest

from datamodules.transforms import affine_matrix
from pixelgrid import CONVENTIONS, get_convention

CENTER = np.array([320.25, 211.5])
SIZE = np.array([150.0, 200.0])  # aspect 0.75, as after the aspect fix
INPUT = (256, 192)  # (H, W)


def _apply(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    return points @ matrix[:, :2].T + matrix[:, 2]


@pytest.mark.parametrize(("name", "centre", "left", "right"), [
    ("aligned", (95.5, 127.5), -0.5, 191.5),  # pixel centres at integers: the crop spans [-0.5, W - 0.5]
    ("msra", (96.0, 128.0), 0.0, 192.0),  # get_warp_matrix: centre -> (W / 2, H / 2), width -> W
    ("udp", (95.5, 127.5), 0.0, 191.0),  # get_udp_warp_matrix: width -> W - 1 about (W - 1) / 2
])
def test_box_centre_and_edges_land_where_the_source_puts_them(name: str, centre: tuple, left: float,
                                                              right: float) -> None:
    matrix = get_convention(name).warp_matrix(CENTER, SIZE, INPUT)
    points = np.array([CENTER, CENTER - [SIZE[0] / 2, 0], CENTER + [SIZE[0] / 2, 0]])
    mapped = _apply(matrix, points)
    np.testing.assert_allclose(mapped[0], centre, atol=2e-5)
    np.testing.assert_allclose(mapped[1:, 0], [left, right], atol=2e-5)


@pytest.mark.parametrize("name", CONVENTIONS)
def test_crop_to_image_inverts_the_warp(name: str) -> None:
    grid = get_convention(name)
    matrix = grid.warp_matrix(CENTER, SIZE, INPUT)
    crop = np.array([[[0.0, 0.0], [191.0, 255.0], [17.25, 100.5]]])
    image = grid.crop_to_image(crop, CENTER[None], SIZE[None], INPUT)
    np.testing.assert_allclose(_apply(matrix, image[0]), crop[0], atol=1e-4)  # msra/udp matrices are float32-made


@pytest.mark.parametrize(("name", "pivot"), [("aligned", 191.0), ("msra", 192.0), ("udp", 191.0)])
def test_training_flip_mirrors_as_the_source(name: str, pivot: float) -> None:
    # msra mirrors the image (HRNet fliplr_joints, c[0] = width - c[0] - 1): x -> W - x in the crop.
    grid = get_convention(name)
    plain, flipped = grid.warp_matrix(CENTER, SIZE, INPUT), grid.warp_matrix(CENTER, SIZE, INPUT, flip=True)
    points = np.array([[300.0, 200.0], [333.3, 150.0]])
    a, b = _apply(plain, points), _apply(flipped, points)
    np.testing.assert_allclose(b[:, 0], pivot - a[:, 0], atol=1e-9)
    np.testing.assert_allclose(b[:, 1], a[:, 1], atol=1e-9)


def test_aligned_is_the_transform_modules_affine() -> None:
    grid = get_convention("aligned")
    for rotation, flip in ((0.0, False), (30.0, True), (-75.0, False)):
        expected = affine_matrix(CENTER, SIZE / 200.0, rotation, (192, 256), flip=flip)
        np.testing.assert_array_equal(grid.warp_matrix(CENTER, SIZE, INPUT, rotation, flip), expected)


def test_heatmap_strides() -> None:
    assert get_convention("msra").heatmap_stride((256, 192), (64, 48)) == (4.0, 4.0)
    assert get_convention("aligned").heatmap_stride((256, 192), (64, 48)) == (4.0, 4.0)
    assert get_convention("udp").heatmap_stride((256, 192), (64, 48)) == (191 / 47, 255 / 63)
    assert [get_convention(n).heatmap_offset() for n in CONVENTIONS] == [0.5, 0.0, 0.0]


def test_bad_names_and_boxes_raise() -> None:
    with pytest.raises(ValueError, match="unknown pixel-grid convention 'hrnet'; valid: aligned, msra, udp"):
        get_convention("hrnet")
    with pytest.raises(ValueError, match="box size must be positive"):
        get_convention("msra").warp_matrix(CENTER, [0.0, 10.0], INPUT)
    with pytest.raises(ValueError, match="center must hold two values"):
        get_convention("udp").warp_matrix([1.0, 2.0, 3.0], SIZE, INPUT)
