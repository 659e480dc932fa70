"""The prediction gallery: per-person errors against hand values and pycocotools, the selection, the PNG."""

from __future__ import annotations

import contextlib
import io
import struct
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from benchmark.errors import PoseBenchError
from benchmark.gallery import person_errors, render_gallery, select_best_worst
from benchmark.protocols import EvaluationError
from datamodules.datasets import build_dataset
from datamodules.transforms import affine_matrix, transform_points
from tests.builders import make_coco_root, make_mpii_root, write_lsp

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# data_show's side colours as 8-bit RGB: centre green, left blue, right orange.
GREEN, BLUE, ORANGE = (43, 161, 43), (31, 120, 181), (255, 128, 13)


def _png_size(path: Path) -> tuple[int, int]:
    """(width, height) from the IHDR chunk, which the PNG spec puts right after the signature."""
    header = path.read_bytes()[:24]
    assert header[:8] == PNG_SIGNATURE and header[12:16] == b"IHDR"
    return struct.unpack(">II", header[16:24])


def _rgb(path: Path) -> np.ndarray:
    return cv2.cvtColor(cv2.imread(str(path), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB).astype(np.int64)


@pytest.fixture(scope="module")
def mpii(tmp_path_factory, mpii_fixture_dir: Path):
    """The five real MPII persons with gt_valid.mat head boxes tests/builders.HEADBOXES (1-based)."""
    return build_dataset("mpii", make_mpii_root(tmp_path_factory.mktemp("mpii") / "root", mpii_fixture_dir), "val")


@pytest.fixture(scope="module")
def coco_root(tmp_path_factory, coco_fixture_dir: Path) -> Path:
    return make_coco_root(tmp_path_factory.mktemp("coco") / "root", coco_fixture_dir)


@pytest.fixture(scope="module")
def coco(coco_root: Path):
    return build_dataset("coco", coco_root, "val")


@pytest.fixture(scope="module")
def lsp(tmp_path_factory):
    """LSP val of tests/builders.write_lsp(count=4): records 3 and 4, grey 60 x 80 images."""
    root = tmp_path_factory.mktemp("lsp")
    write_lsp(root, count=4)
    return build_dataset("lsp", root, "val")


def _gt(dataset) -> np.ndarray:
    return np.stack([r.keypoints for r in dataset.records]).astype(np.float64)


# --------------------------------------------------------------------------- person_errors


def test_mpii_errors_are_head_normalised(mpii):
    truth = mpii.mpii_ground_truth
    assert truth is not None and len(mpii) == 5
    # builders.HEADBOXES person i: [[100 + i, 50], [150 + i, 120 + 2 i]], diagonal (50, 70 + 2 i).
    head_size = 0.6 * np.hypot(50.0, 70.0 + 2.0 * np.arange(5))
    exact = truth.joints.copy()
    np.testing.assert_array_equal(person_errors(mpii, exact), np.zeros(5))
    shifted = truth.joints + np.array([3.0, 4.0])
    shifted[truth.missing] = np.nan  # a joint that is not annotated is never looked at
    assert truth.missing.any()
    np.testing.assert_allclose(person_errors(mpii, shifted), 5.0 / head_size, rtol=1e-12, atol=0)


def test_mpii_errors_from_records_without_gt_valid(mpii):
    """Without gt_valid.mat the records' keypoints, visibility and head boxes give the same values."""
    from_records = replace(mpii, mpii_ground_truth=None)
    pred = _gt(mpii) + np.array([3.0, 4.0])
    head_size = 0.6 * np.hypot(50.0, 70.0 + 2.0 * np.arange(5))
    np.testing.assert_allclose(person_errors(from_records, pred), 5.0 / head_size, rtol=1e-12, atol=0)


def test_mpii_person_without_annotated_joint_is_nan(mpii):
    truth = mpii.mpii_ground_truth
    missing = truth.missing.copy()
    missing[1] = True
    dataset = replace(mpii, mpii_ground_truth=replace(truth, missing=missing))
    errors = person_errors(dataset, truth.joints + np.array([3.0, 4.0]))
    head_size = 0.6 * np.hypot(50.0, 70.0 + 2.0 * np.arange(5))
    assert np.isnan(errors[1])
    np.testing.assert_allclose(np.delete(errors, 1), np.delete(5.0 / head_size, 1), rtol=1e-12, atol=0)

    records = list(mpii.records)
    records[2] = replace(records[2], visible=np.zeros(16, dtype=bool), headbox=None)
    errors = person_errors(replace(mpii, records=records, mpii_ground_truth=None), _gt(mpii))
    assert np.isnan(errors[2]) and (np.delete(errors, 2) == 0).all()


def test_mpii_annotated_person_without_head_box_raises(mpii):
    records = list(mpii.records)
    records[3] = replace(records[3], headbox=None)
    with pytest.raises(EvaluationError, match=r"record 3 .*004645041\.jpg.*no head box"):
        person_errors(replace(mpii, records=records, mpii_ground_truth=None), _gt(mpii))


def test_lsp_errors_are_torso_normalised(lsp):
    # builders._person: joint j at (10 + 2 j + offset, 20 + 3 j); LSP l_shoulder = 9, r_hip = 2,
    # so the torso is (14, 21) long in every person.
    assert len(lsp) == 2
    np.testing.assert_array_equal(person_errors(lsp, _gt(lsp)), np.zeros(2))
    np.testing.assert_allclose(
        person_errors(lsp, _gt(lsp) + np.array([3.0, 4.0])), np.full(2, 5.0 / np.hypot(14.0, 21.0)), rtol=1e-12
    )


def test_coco_prediction_equal_to_truth_has_zero_error(coco):
    assert len(coco) == 12  # the 14 fixture persons minus the two with no labelled joint
    np.testing.assert_array_equal(person_errors(coco, _gt(coco)), np.zeros(12))


def test_coco_error_is_one_minus_pycocotools_oks(coco):
    """1 - OKS of each record against pycocotools' COCOeval.computeOks for the same detections."""
    pred = _gt(coco) + np.random.default_rng(0).normal(0.0, 8.0, (len(coco), 17, 2))
    results = [
        {
            "image_id": r.image_id,
            "category_id": 1,
            "keypoints": np.concatenate([pred[i], np.ones((17, 1))], axis=1).reshape(-1).tolist(),
            "score": 1.0 - i / 100.0,  # distinct, decreasing: computeOks keeps this order
        }
        for i, r in enumerate(coco.records)
    ]
    with contextlib.redirect_stdout(io.StringIO()):
        gt_api = COCO(str(coco.coco_annotation))
        evaluator = COCOeval(gt_api, gt_api.loadRes(results), "keypoints")
        evaluator._prepare()
    expected = np.empty(len(coco))
    for image_id in sorted({r.image_id for r in coco.records}):
        ious = np.asarray(evaluator.computeOks(image_id, 1))
        rows = [i for i, r in enumerate(coco.records) if r.image_id == image_id]  # dts in result order
        columns = [ann["id"] for ann in evaluator._gts[image_id, 1]]
        for row, i in enumerate(rows):
            expected[i] = 1.0 - ious[row, columns.index(coco.records[i].extras["annotation_id"])]
    errors = person_errors(coco, pred)
    assert 0.05 < errors.min() and errors.max() < 0.95  # the perturbation is neither negligible nor total
    np.testing.assert_allclose(errors, expected, rtol=0, atol=1e-12)


def test_coco_detection_records_have_nan_error(coco_root):
    detections = build_dataset("coco", coco_root, "val", boxes="detections")
    assert len(detections) > 0
    assert np.isnan(person_errors(detections, np.zeros((len(detections), 17, 2)))).all()


def test_bad_inputs_raise(mpii, coco):
    with pytest.raises(ValueError, match=r"keypoints must have shape \(5, 16, 2\)"):
        person_errors(mpii, np.zeros((5, 17, 2)))
    pred = _gt(coco)
    pred[0, np.flatnonzero(coco.records[0].visible)[0]] = np.nan
    with pytest.raises(ValueError, match="non-finite"):
        person_errors(coco, pred)
    with pytest.raises(PoseBenchError, match="unknown evaluation protocol 'pck'; known: coco, lsp, mpii"):
        person_errors(replace(coco, protocol="pck"), _gt(coco))


# --------------------------------------------------------------------------- select_best_worst


@pytest.mark.parametrize(
    ("errors", "count", "best", "worst"),
    [
        ([0.5, 0.1, 0.9, 0.3, 0.7, 0.2], 2, [1, 5], [2, 4]),
        ([0.5, np.nan, 0.1, np.inf, 0.9, -np.inf, 0.3], 2, [2, 6], [4, 0]),  # non-finite never chosen
        ([0.2, 0.2, 0.2, 0.2, 0.2], 2, [0, 1], [2, 3]),  # ties: lower index first in both
        ([0.4, 0.1, 0.4, 0.1, 0.3], 1, [1], [0]),
        ([0.3, 0.1, 0.2], 4, [1, 2], [0]),  # 3 finite < 2 x 4: best ceil(3/2), worst the rest
        ([np.nan, 0.6, np.nan], 3, [1], []),
        ([np.nan, np.nan], 2, [], []),
        ([], 3, [], []),
        ([0.3, 0.1], 0, [], []),
    ],
)
def test_select_best_worst(errors, count, best, worst):
    got_best, got_worst = select_best_worst(np.asarray(errors, dtype=np.float64), count)
    assert got_best.dtype == np.int64 and got_worst.dtype == np.int64
    assert got_best.tolist() == best and got_worst.tolist() == worst


def test_select_best_worst_rejects_bad_input():
    with pytest.raises(ValueError, match="one-dimensional"):
        select_best_worst(np.zeros((2, 2)), 1)
    with pytest.raises(ValueError, match="count must be >= 0"):
        select_best_worst(np.zeros(3), -1)


# --------------------------------------------------------------------------- render_gallery


def test_gallery_png_size_bytes_and_atomicity(mpii, tmp_path):
    pred = _gt(mpii) + np.arange(5)[:, None, None] * np.array([3.0, 4.0])
    out = tmp_path / "new" / "gallery.png"
    assert render_gallery(mpii, pred, out, title="hrnet mpii seed 0") == out
    # 4 tiles of 192 across; header 24 + 2 x (tile 256 + caption 30).
    assert _png_size(out) == (768, 596)
    assert [p.name for p in out.parent.iterdir()] == ["gallery.png"]  # no temp file left behind
    again = render_gallery(mpii, pred, tmp_path / "again.png", title="hrnet mpii seed 0")
    assert again.read_bytes() == out.read_bytes()
    assert b"tIME" not in out.read_bytes()


def test_gallery_size_follows_count_and_tile(coco, tmp_path):
    out = render_gallery(coco, _gt(coco) + 5.0, tmp_path / "g.png", count=3, tile_size=(128, 96))
    assert _png_size(out) == (3 * 96, 24 + 2 * (128 + 30))


def test_gallery_without_scored_person_writes_nothing(coco_root, tmp_path):
    detections = build_dataset("coco", coco_root, "val", boxes="detections")
    out = tmp_path / "sub" / "gallery.png"
    assert render_gallery(detections, np.zeros((len(detections), 17, 2)), out) is None
    assert not out.parent.exists()


def test_gallery_draws_the_prediction_where_it_is(lsp, tmp_path):
    """On grey LSP images the worst tile shows the prediction's colours at the predicted joints."""
    tile_h, tile_w = 128, 96
    pred = _gt(lsp)
    pred[1] += np.array([6.0, 0.0])  # record 1 is the worse one
    out = render_gallery(lsp, pred, tmp_path / "lsp.png", count=1, tile_size=(tile_h, tile_w))
    image = _rgb(out)
    assert image.shape == (24 + 2 * (tile_h + 30), tile_w, 3)
    best_tile = image[24:24 + tile_h]
    worst_tile = image[24 + tile_h + 30:24 + 2 * tile_h + 30]
    assert (best_tile != worst_tile).any()
    # Joint centres in crop pixels, the tile shown 1:1: head_top (centre, green), r_ankle (right,
    # orange), l_ankle (left, blue) - each the marker colour at its own spot.
    record = lsp.records[1]
    matrix = affine_matrix(record.center, record.scale, 0.0, (tile_w, tile_h))
    points = np.rint(transform_points(pred[1], matrix)).astype(int)
    for joint, colour in ((13, GREEN), (0, ORANGE), (5, BLUE)):
        x, y = points[joint]
        assert 0 <= x < tile_w and 0 <= y < tile_h
        assert np.abs(worst_tile[y, x] - colour).max() <= 12, (joint, worst_tile[y, x])
    # Only the prediction is drawn in side colours (the truth is white): both rows show it.
    for tile in (best_tile, worst_tile):
        assert (np.abs(tile - ORANGE).max(axis=2) <= 12).sum() > 20


def test_a_wrong_joint_is_a_red_line_and_the_truth_is_drawn_in_its_own_style(lsp, tmp_path):
    """Record 1's prediction is 6 px off everywhere: its tile has red truth -> prediction segments; record 0's
    prediction is the truth itself: no red. Both show the truth's white-on-black squares."""
    tile_h, tile_w = 128, 96
    pred = _gt(lsp)
    pred[1] += np.array([6.0, 0.0])
    image = _rgb(render_gallery(lsp, pred, tmp_path / "lsp.png", count=1, tile_size=(tile_h, tile_w)))
    best_tile = image[24:24 + tile_h].astype(int)
    worst_tile = image[24 + tile_h + 30:24 + 2 * tile_h + 30].astype(int)

    def red(tile: np.ndarray) -> int:
        return int(((tile[..., 0] >= 200) & (tile[..., 1] <= 40) & (tile[..., 2] <= 60)).sum())

    assert red(best_tile) == 0
    assert red(worst_tile) > 20
    record = lsp.records[0]
    matrix = affine_matrix(record.center, record.scale, 0.0, (tile_w, tile_h))
    truth = np.rint(transform_points(_gt(lsp)[0], matrix)).astype(int)
    x, y = truth[13]  # head_top: the prediction's marker sits on it in the best tile, so look just beside it
    patch = best_tile[y - 4:y + 5, x - 4:x + 5]
    assert (patch.max(axis=2) <= 40).any(), "the truth's black edge is drawn"
