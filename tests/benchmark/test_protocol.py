"""Golden agreement with mmpose 1.3.2 on real COCO images: crops, targets, decoding, rescoring, AP.

Truth: ``../shared/fixtures/reference/`` holds mmpose's own outputs of its dataset classes,
``TopdownAffine``, ``MSRAHeatmap`` / ``UDPHeatmap``, flip test and ``CocoMetric`` on the COCO
fixtures (its README lists the conventions with their mmpose source lines). Every check below goes
through PoseBench's real loaders and public functions, under the ``msra`` and ``udp`` conventions.
MPII has no golden files; its checks restate mmpose's formulas independently (per keypoint, as the
mmpose source writes them) on the real MPII fixtures and MPII-shaped heatmaps.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import pytorch_lightning as pl
import torch

from benchmark import metrics
from benchmark.evaluation import EvaluationCallback
from benchmark.protocol import image_keypoints, merge_flipped
from benchmark.protocols.coco import coco_results
from datamodules.coco import load_coco_records
from datamodules.datamodule import PoseDataModule
from datamodules.datasets import build_dataset
from datamodules.mpii import load_mpii_annotations
from datamodules.skeletons import COCO, MPII
from datamodules.topdown import TopDownDataset, read_image, warp_matrix
from datamodules.transforms import TopDownTransform
from models.base import HeatmapEstimator, flip_permutation
from models.codecs import HeatmapCodec
from tests.builders import make_coco_root

COCO_INPUT = (256, 192)
MPII_INPUT = (256, 256)
PAIRS = {"coco": [list(p) for p in COCO.flip_pairs], "mpii": [list(p) for p in MPII.flip_pairs]}
# (fixture name, convention, decoder) of the decode files.
DECODES = [("msra", "msra", "quarter"), ("msra_dark", "msra", "dark"), ("udp", "udp", "dark")]


@pytest.fixture(scope="module")
def reference(fixtures_dir: Path) -> Path:
    path = fixtures_dir / "reference"
    if not path.is_dir():
        pytest.fail(f"golden reference files missing: {path}")
    return path


def _load(reference: Path, name: str) -> dict[str, np.ndarray]:
    with np.load(reference / f"{name}.npz", allow_pickle=False) as data:
        return dict(data)


@pytest.fixture(scope="module")
def coco_records(coco_fixture_dir: Path) -> list:
    return load_coco_records(coco_fixture_dir / "test_coco.json", coco_fixture_dir, 192 / 256, box_rule="mmpose")


# --- crops and warp matrices ---------------------------------------------------------------------


@pytest.mark.parametrize("convention", ["msra", "udp"])
def test_loader_boxes_warp_matrices_and_crops_equal_mmpose(convention: str, reference: Path,
                                                           coco_records: list) -> None:
    golden = _load(reference, f"crops_coco_{convention}")
    assert [r.extras["annotation_id"] for r in coco_records] == golden["ann_ids"].tolist()
    for i, record in enumerate(coco_records):
        size = record.scale * 200.0
        # The mmpose box rule gives mmpose's float32 centre and size exactly.
        assert record.center.tolist() == golden["input_center"][i].astype(np.float64).tolist()
        np.testing.assert_allclose(size, golden["input_scale"][i], rtol=0, atol=1e-12)
        matrix = warp_matrix(record.center, size, COCO_INPUT, convention)
        assert matrix.dtype == np.float64 and matrix.shape == (2, 3)
        np.testing.assert_allclose(matrix, golden["warp_mat"][i], rtol=0, atol=1e-6)
        image = read_image(record.image)
        assert hashlib.md5(image.tobytes()).hexdigest() == str(golden["img_md5"][i]), "JPEG decoder differs"
        crop = cv2.warpAffine(image, matrix, COCO_INPUT[::-1], flags=cv2.INTER_LINEAR)
        differing = np.argwhere(crop != golden["crops"][i])
        assert differing.size == 0, f"person {i}: {len(differing)} crop bytes differ, first at {differing[:3].tolist()}"


@pytest.mark.parametrize("convention", ["msra", "udp"])
def test_dataset_samples_hold_mmpose_crops_and_keypoints(convention: str, reference: Path, coco_records: list) -> None:
    golden = _load(reference, f"crops_coco_{convention}")
    dataset = TopDownDataset(coco_records, TopDownTransform(COCO_INPUT, COCO, convention=convention))
    for i in range(len(coco_records)):
        sample = dataset[i]
        # The sample holds the crop as uint8 RGB (normalised on the device): mmpose's BGR crop, byte for byte.
        np.testing.assert_array_equal(sample["image"].numpy(), golden["crops"][i][..., ::-1].transpose(2, 0, 1))
        labelled = golden["keypoints_visible"][i] > 0
        np.testing.assert_allclose(sample["keypoints"][labelled], golden["transformed_keypoints"][i][labelled],
                                   rtol=0, atol=1e-4)
        assert sample["visible"].tolist() == labelled.astype(np.float32).tolist()


def test_detection_boxes_frame_as_mmpose(coco_fixture_dir: Path, tmp_path: Path) -> None:
    # mmpose reads a detection as float32 x, y, w, h, adds the corners in float32, pads by 1.25 and fixes the aspect.
    root = make_coco_root(tmp_path / "coco", coco_fixture_dir)
    dataset = build_dataset("coco", root, "val", aspect_ratio=0.75, boxes="detections", box_rule="mmpose")
    detections = json.loads((coco_fixture_dir / "test_coco_det_AP_H_56.json").read_text())
    assert len(dataset.records) == len(detections)
    for record, det in zip(dataset.records, detections, strict=True):
        x, y, w, h = np.asarray(det["bbox"], dtype=np.float32)
        x2, y2 = x + w, y + h
        center = np.array([(x + x2) * np.float32(0.5), (y + y2) * np.float32(0.5)], dtype=np.float32)
        sw, sh = (x2 - x) * np.float32(1.25), (y2 - y) * np.float32(1.25)
        size = [sw, sw / np.float32(0.75)] if sw > sh * np.float32(0.75) else [sh * np.float32(0.75), sh]
        assert record.center.tolist() == center.astype(np.float64).tolist()
        np.testing.assert_allclose(record.scale * 200.0, np.asarray(size, dtype=np.float32), rtol=0, atol=1e-12)


# --- targets -------------------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "convention", "unbiased"),
                         [("msra", "msra", False), ("msra_unbiased", "msra", True), ("udp", "udp", False)])
def test_encoded_targets_equal_mmpose(name: str, convention: str, unbiased: bool, reference: Path) -> None:
    golden = _load(reference, f"encode_coco_{name}")
    codec = HeatmapCodec(COCO_INPUT, (64, 48), float(golden["sigma"]), unbiased=unbiased, convention=convention)
    heatmaps, weights = codec.encode(torch.from_numpy(golden["transformed_keypoints"]),
                                     torch.from_numpy(golden["keypoints_visible"]))
    np.testing.assert_allclose(heatmaps.numpy(), golden["heatmaps"], rtol=0, atol=1e-6)
    assert weights.numpy().tolist() == golden["keypoint_weights"].tolist()


# --- flip merge, decoding, back to the image -----------------------------------------------------


@pytest.mark.parametrize(("name", "convention", "decoder"), DECODES)
@pytest.mark.parametrize("flip", [True, False], ids=["flip", "noflip"])
def test_image_keypoints_equal_mmpose(name: str, convention: str, decoder: str, flip: bool, reference: Path) -> None:
    golden = _load(reference, f"decode_coco_{name}")
    suffix = "" if flip else "_noflip"
    keypoints, scores = image_keypoints(
        golden["heatmaps_plain"], golden["heatmaps_flipped"] if flip else None, center=golden["input_center"],
        size=golden["input_scale"], input_size=COCO_INPUT, convention=convention, decoder=decoder,
        flip_pairs=PAIRS["coco"])
    assert keypoints.shape == golden["keypoints" + suffix].shape
    np.testing.assert_allclose(keypoints, golden["keypoints" + suffix], rtol=0, atol=1e-4)
    assert scores.tolist() == golden["keypoint_scores" + suffix].tolist()


@pytest.mark.parametrize(("name", "convention", "decoder"), DECODES)
def test_flip_merge_and_crop_keypoints_equal_mmpose(name: str, convention: str, decoder: str, reference: Path) -> None:
    golden = _load(reference, f"decode_coco_{name}")
    assert golden["flip_indices"].tolist() == flip_permutation(PAIRS["coco"], 17)
    assert bool(golden["shift_heatmap"]) == (convention == "msra")
    merged = merge_flipped(torch.from_numpy(golden["heatmaps_plain"]), torch.from_numpy(golden["heatmaps_flipped"]),
                           PAIRS["coco"], shift=bool(golden["shift_heatmap"]))
    assert torch.equal(merged, torch.from_numpy(golden["heatmaps_merged"]))
    codec = HeatmapCodec(COCO_INPUT, (64, 48), 2.0, convention=convention)
    crop, _ = codec.decode(golden["heatmaps_merged"], decoder)
    # mmpose's UDP decode leaves keypoints in "input" units of input_size / (heatmap_size - 1) per
    # heatmap px (udp_heatmap.py), W / (W - 1) times PoseBench's crop px; both map to the same image px.
    units = np.array([192 / 191, 256 / 255]) if convention == "udp" else np.ones(2)
    np.testing.assert_allclose(crop.astype(np.float64) * units, golden["keypoints_input"], rtol=0, atol=1e-4)


# --- rescoring, OKS-NMS and COCO AP --------------------------------------------------------------


def test_rescoring_nms_and_ap_equal_mmpose_coco_metric(reference: Path, coco_fixture_dir: Path, tmp_path: Path) -> None:
    golden_eval = json.loads((reference / "coco_eval_fixture.json").read_text())
    golden = _load(reference, "decode_coco_msra")
    root = make_coco_root(tmp_path / "coco", coco_fixture_dir)
    dataset = build_dataset("coco", root, "val", aspect_ratio=0.75, box_rule="mmpose")
    assert [r.extras["annotation_id"] for r in dataset.records] == golden["ann_ids"].tolist()
    centers = np.stack([r.center for r in dataset.records])
    sizes = np.stack([r.scale for r in dataset.records]) * 200.0
    keypoints, scores = image_keypoints(golden["heatmaps_plain"], golden["heatmaps_flipped"], center=centers,
                                        size=sizes, input_size=COCO_INPUT, convention="msra", decoder="quarter",
                                        flip_pairs=PAIRS["coco"])
    predictions = golden_eval["predictions"]
    np.testing.assert_allclose(keypoints, [p["keypoints"] for p in predictions], rtol=0, atol=1e-4)
    results = coco_results(dataset, keypoints, scores)
    expected = golden_eval["results_after_rescore_nms"]
    assert len(results) == len(expected) == 12  # OKS-NMS removes nothing here, as in mmpose
    by_score = {(r["image_id"], r["score"]) for r in results}
    assert by_score == {(r["image_id"], r["score"]) for r in expected}  # every rescored score, exactly
    ours = metrics.coco_keypoint_ap(root / "annotations" / "person_keypoints_val2017.json", results)
    names = {"AP": "coco/AP", "AP50": "coco/AP .5", "AP75": "coco/AP .75", "APM": "coco/AP (M)",
             "APL": "coco/AP (L)", "AR": "coco/AR", "AR50": "coco/AR .5", "AR75": "coco/AR .75",
             "ARM": "coco/AR (M)", "ARL": "coco/AR (L)"}
    for key, theirs in names.items():
        assert ours[key] == pytest.approx(golden_eval["metrics"][theirs], abs=1e-12), key


# --- MPII: the same rules with its own sizes and flip pairs --------------------------------------


def _mmpose_warp(center: np.ndarray, size: np.ndarray, width: int, height: int) -> np.ndarray:
    """mmpose ``get_warp_matrix`` at rotation 0, as its source writes it."""
    src = np.zeros((3, 2), dtype=np.float32)
    dst = np.zeros((3, 2), dtype=np.float32)
    src[0], src[1] = center, center + np.array([size[0] * -0.5, 0.0])
    dst[0], dst[1] = [width * 0.5, height * 0.5], [0.0, height * 0.5]
    for pts in (src, dst):
        direction = pts[0] - pts[1]
        pts[2] = pts[1] + np.r_[-direction[1], direction[0]]
    return cv2.getAffineTransform(src, dst)


def test_mpii_boxes_and_warp_follow_mmpose(mpii_fixture_dir: Path) -> None:
    # mpii_dataset.py: scale = s * 200, centre y += 15 s, centre -= 1; GetBBoxCenterScale pads by 1.25.
    entries = json.loads((mpii_fixture_dir / "test_mpii.json").read_text())
    records = load_mpii_annotations(mpii_fixture_dir / "test_mpii.json", mpii_fixture_dir)
    for entry, record in zip(entries, records, strict=True):
        center = np.asarray(entry["center"], dtype=np.float64) + [0.0, 15.0 * entry["scale"]] - 1.0
        size = np.full(2, entry["scale"] * 200.0 * 1.25)
        np.testing.assert_allclose(record.center, center, rtol=0, atol=1e-9)
        np.testing.assert_allclose(record.scale * 200.0, size, rtol=0, atol=1e-9)
        np.testing.assert_allclose(warp_matrix(record.center, record.scale * 200.0, MPII_INPUT, "msra"),
                                   _mmpose_warp(record.center, record.scale * 200.0, 256, 256), rtol=0, atol=1e-6)


def _reference_decode(maps: np.ndarray, convention: str, decoder: str) -> np.ndarray:
    """mmpose's ``get_heatmap_maximum`` + ``refine_keypoints`` / ``refine_keypoints_dark`` /
    ``refine_keypoints_dark_udp`` (blur 11) on ``(K, H, W)`` float32 maps, per keypoint as its source loops."""
    k, height, width = maps.shape
    flat = maps.reshape(k, -1)
    ys, xs = np.unravel_index(flat.argmax(axis=1), (height, width))
    points = np.stack([xs, ys], axis=-1).astype(np.float32)
    points[flat.max(axis=1) <= 0] = -1
    if decoder == "quarter":
        for j in range(k):
            x, y = points[j].astype(int)
            dx = maps[j, y, x + 1] - maps[j, y, x - 1] if 1 < x < width - 1 and 0 < y < height else 0.0
            dy = maps[j, y + 1, x] - maps[j, y - 1, x] if 1 < y < height - 1 and 0 < x < width else 0.0
            points[j] += np.sign([dx, dy], dtype=np.float32) * 0.25
        return points
    blurred = np.empty_like(maps)
    for j in range(k):
        padded = np.zeros((height + 10, width + 10), dtype=np.float32)
        padded[5:-5, 5:-5] = maps[j]
        blurred[j] = cv2.GaussianBlur(padded, (11, 11), 0)[5:-5, 5:-5]
        blurred[j] *= maps[j].max() / blurred[j].max()
    if convention == "udp":
        f = np.pad(np.log(np.clip(blurred, 1e-3, 50.0)), ((0, 0), (1, 1), (1, 1)), mode="edge")
        for j in range(k):
            x, y = points[j].astype(int) + 1
            dx, dy = 0.5 * (f[j, y, x + 1] - f[j, y, x - 1]), 0.5 * (f[j, y + 1, x] - f[j, y - 1, x])
            dxx = f[j, y, x + 1] - 2 * f[j, y, x] + f[j, y, x - 1]
            dyy = f[j, y + 1, x] - 2 * f[j, y, x] + f[j, y - 1, x]
            dxy = 0.5 * (f[j, y + 1, x + 1] - f[j, y, x + 1] - f[j, y + 1, x] + 2 * f[j, y, x] - f[j, y, x - 1]
                         - f[j, y - 1, x] + f[j, y - 1, x - 1])
            hessian = np.array([[dxx, dxy], [dxy, dyy]]) + np.finfo(np.float32).eps * np.eye(2)
            points[j] -= np.linalg.inv(hessian) @ np.array([dx, dy])
        return points
    f = np.log(np.maximum(blurred, 1e-10))
    for j in range(k):
        x, y = points[j].astype(int)
        if 1 < x < width - 2 and 1 < y < height - 2:
            dx, dy = 0.5 * (f[j, y, x + 1] - f[j, y, x - 1]), 0.5 * (f[j, y + 1, x] - f[j, y - 1, x])
            dxx = 0.25 * (f[j, y, x + 2] - 2 * f[j, y, x] + f[j, y, x - 2])
            dyy = 0.25 * (f[j, y + 2, x] - 2 * f[j, y, x] + f[j, y - 2, x])
            dxy = 0.25 * (f[j, y + 1, x + 1] - f[j, y - 1, x + 1] - f[j, y + 1, x - 1] + f[j, y - 1, x - 1])
            if dxx * dyy - dxy**2 != 0:
                points[j] -= np.linalg.inv(np.array([[dxx, dxy], [dxy, dyy]])) @ np.array([dx, dy])
    return points


def _mpii_heatmaps(rng: np.random.Generator, count: int) -> np.ndarray:
    """MPII-shaped ``(N, 16, 64, 64)`` network-like maps: one noisy blob per joint, some at the border."""
    ys, xs = np.mgrid[0:64, 0:64]
    centres = rng.uniform(-1.0, 64.0, size=(count, 16, 2))
    amps = rng.uniform(0.1, 1.0, size=(count, 16))
    d2 = (xs - centres[..., :1, None]) ** 2 + (ys - centres[..., 1:, None]) ** 2
    maps = amps[..., None, None] * np.exp(-d2 / 8.0) + rng.uniform(-0.01, 0.01, size=(count, 16, 64, 64))
    return np.round(np.clip(maps, 0, None) * 4096) / 4096


@pytest.mark.parametrize(("convention", "decoder"), [("msra", "quarter"), ("msra", "dark"), ("udp", "dark")])
def test_mpii_shaped_decoding_equals_mmpose_formulas(convention: str, decoder: str) -> None:
    rng = np.random.default_rng(3)
    plain = _mpii_heatmaps(rng, 6).astype(np.float32)
    flipped = _mpii_heatmaps(rng, 6).astype(np.float32)
    center = rng.uniform(100, 600, size=(6, 2))
    size = np.repeat(rng.uniform(150, 500, size=(6, 1)), 2, axis=1)
    keypoints, scores = image_keypoints(plain, flipped, center=center, size=size, input_size=MPII_INPUT,
                                        convention=convention, decoder=decoder, flip_pairs=PAIRS["mpii"])
    flip_indices = [5, 4, 3, 2, 1, 0, 6, 7, 8, 9, 15, 14, 13, 12, 11, 10]  # mmpose's MPII flip_indices
    for n in range(6):
        back = flipped[n, flip_indices, :, ::-1].copy()
        if convention == "msra":
            back[..., 1:] = back[..., :-1].copy()
        merged = ((plain[n] + back) * np.float32(0.5)).astype(np.float32)
        points = _reference_decode(merged, convention, decoder).astype(np.float64)
        units = points / 63.0 * 256.0 if convention == "udp" else points * 4.0
        expected = units / 256.0 * size[n] + center[n] - 0.5 * size[n]
        np.testing.assert_allclose(keypoints[n], expected, rtol=0, atol=1e-4)
        assert scores[n].tolist() == merged.reshape(16, -1).max(axis=1).tolist()


# --- the whole evaluation path: DataModule, LightningModule test step, callback, COCO AP ----------


class GoldenHeatmapNetwork(HeatmapEstimator):
    """Returns mmpose's golden heatmaps for the crop it is shown: the plain pass's for a person's crop,
    the mirrored pass's for its mirror (found by exact comparison with the crops given)."""

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        maps = []
        for crop in image:
            plain = [i for i, known in enumerate(self.crops) if torch.equal(crop, known)]
            if plain:
                maps.append(self.plain[plain[0]])
                continue
            mirrored = [i for i, known in enumerate(self.crops) if torch.equal(crop, known.flip(-1))]
            assert mirrored, "a crop the golden files do not cover"
            maps.append(self.mirrored[mirrored[0]])
        return torch.stack(maps)


def test_training_pipeline_under_msra_scores_like_mmpose(reference: Path, coco_fixture_dir: Path,
                                                         tmp_path: Path) -> None:
    # What `evaluate` of an imported MSRA checkpoint runs: the COCO data module with the msra grid, the
    # model's flip test and quarter decoding, the inverse warp back to the image, rescoring, OKS-NMS, AP.
    golden = _load(reference, "decode_coco_msra")
    golden_eval = json.loads((reference / "coco_eval_fixture.json").read_text())
    root = make_coco_root(tmp_path / "coco", coco_fixture_dir)
    datamodule = PoseDataModule(name="coco", root=root, input_size=COCO_INPUT, val_batch_size=5,
                                convention="msra", augmentation=None)
    datamodule.setup("test")
    model = GoldenHeatmapNetwork(num_joints=17, input_size=list(COCO_INPUT), flip_pairs=PAIRS["coco"],
                                 convention="msra", decoder="quarter", flip_test=True, all_protocols=False)
    model.net = torch.nn.Identity()
    loader = datamodule.test_dataloader()
    model.crops = [crop for batch in loader for crop in datamodule.pose_batch(batch)["image"]]
    model.plain = torch.from_numpy(golden["heatmaps_plain"])
    model.mirrored = torch.from_numpy(golden["heatmaps_flipped"])
    evaluation = EvaluationCallback()
    trainer = pl.Trainer(accelerator="cpu", devices=1, callbacks=[evaluation], logger=False,
                         enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)
    trainer.test(model, datamodule=datamodule)
    predicted = evaluation.predictions["test"]["keypoints"]
    # The model path maps back with the inverse of the float64 warp in float32: within 1e-3 px.
    np.testing.assert_allclose(predicted, golden["keypoints"], rtol=0, atol=1e-3)
    for key, theirs in (("AP", "coco/AP"), ("AP75", "coco/AP .75"), ("AR", "coco/AR")):
        assert evaluation.results["test"][key] == pytest.approx(golden_eval["metrics"][theirs], abs=1e-12), key
