"""SynthPose: determinism, the real MPII/COCO file formats, the project loaders, and the labels' meaning."""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
import scipy.io
from pycocotools.coco import COCO as CocoApi

from datamodules.coco import load_coco_detection_records, load_coco_records
from datamodules.datasets import build_dataset
from datamodules.lsp import load_lsp
from datamodules.mpii import (
    attach_ground_truth,
    load_mpii_annotations,
    load_mpii_ground_truth,
)
from datamodules.records import DatasetError
from datamodules.skeletons import COCO, LSP, MPII
from datamodules.synthpose import (
    COCO_INDEX,
    FACE_HIDDEN_DEPTH,
    JOINTS,
    OCCLUDER_LABEL,
    FigurePose,
    figure_geometry,
    generate_synthpose,
    generate_synthpose_lsp,
    joint_occlusion,
    render_scene,
)

SEED, NUM_TRAIN, NUM_VAL = 7, 16, 14
J = {name: i for i, name in enumerate(JOINTS)}


def _generate(root: Path, seed: int = SEED, num_train: int = NUM_TRAIN, num_val: int = NUM_VAL) -> Path:
    generate_synthpose(root, num_train=num_train, num_val=num_val, seed=seed, progress=False)
    return root


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _load(path: Path) -> object:
    return json.loads(path.read_text())


@pytest.fixture(scope="module")
def synth(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _generate(tmp_path_factory.mktemp("synth_a"))


@pytest.fixture(scope="module")
def synth_again(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # A different clock: scipy's savemat would write it into the .mat header.
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(time, "asctime", lambda *args: "Mon Jan  1 00:00:00 1990")
        return _generate(tmp_path_factory.mktemp("synth_b"))


@pytest.fixture(scope="module")
def scenes() -> list:
    """Scenes of the module's val split plus more train scenes, for statistics over the labels."""
    return [render_scene(SEED, "val", i) for i in range(NUM_VAL)] + [render_scene(SEED, "train", i) for i in range(80)]


# --------------------------------------------------------------------------- determinism


def test_same_seed_gives_byte_identical_files(synth: Path, synth_again: Path) -> None:
    first, second = _files(synth), _files(synth_again)
    assert sorted(first) == sorted(second)
    assert len(first) == NUM_TRAIN + NUM_VAL + 7
    different = [name for name in first if first[name] != second[name]]
    assert different == []


def test_mat_header_is_fixed_text(synth: Path) -> None:
    header = (synth / "mpii/annot/gt_valid.mat").read_bytes()[:116]
    assert header.startswith(b"MATLAB 5.0 MAT-file")
    assert b"Created on" not in header


def test_different_seed_gives_different_files(synth: Path, tmp_path: Path) -> None:
    other = _files(_generate(tmp_path / "other", seed=SEED + 1))
    first = _files(synth)
    assert sorted(first) == sorted(other)
    same = [name for name in first if name != "synthpose.json" and first[name] == other[name]]
    assert same == []


def test_images_do_not_depend_on_counts(synth: Path, tmp_path: Path) -> None:
    small = _generate(tmp_path / "small", num_train=3, num_val=2)
    for name in ("train_000000.jpg", "train_000002.jpg", "val_000000.jpg", "val_000001.jpg"):
        assert (small / "images" / name).read_bytes() == (synth / "images" / name).read_bytes()
    assert sorted(p.name for p in (small / "images").iterdir()) == [
        "train_000000.jpg", "train_000001.jpg", "train_000002.jpg", "val_000000.jpg", "val_000001.jpg",
    ]


def test_regenerating_replaces_old_images_and_refuses_foreign_folders(tmp_path: Path) -> None:
    root = _generate(tmp_path / "root", num_train=4, num_val=2)
    _generate(root, num_train=2, num_val=1)
    images = sorted(p.name for p in (root / "images").iterdir())
    assert images == ["train_000000.jpg", "train_000001.jpg", "val_000000.jpg"]
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(DatasetError, match="notes.txt"):
        generate_synthpose(foreign, num_train=1, num_val=1, seed=0, progress=False)
    with pytest.raises(DatasetError, match="seed"):
        generate_synthpose(tmp_path / "neg", num_train=1, num_val=1, seed=-1, progress=False)


def test_manifest_counts_and_checksums(synth: Path) -> None:
    manifest = _load(synth / "synthpose.json")
    assert manifest["seed"] == SEED and manifest["generator"] == "SynthPose"
    assert manifest["counts"]["train"]["images"] == NUM_TRAIN
    assert manifest["counts"]["val"]["persons"] == len(_load(synth / "mpii/annot/valid.json"))
    for name, digest in manifest["sha256"].items():
        assert hashlib.sha256((synth / name).read_bytes()).hexdigest() == digest


# --------------------------------------------------------------------------- file formats


def test_mpii_json_has_the_real_layout(synth: Path, mpii_fixture_dir: Path) -> None:
    real = _load(mpii_fixture_dir / "test_mpii.json")
    for split_file in ("train.json", "valid.json"):
        entries = _load(synth / "mpii/annot" / split_file)
        assert len(entries) > 0
        for entry in entries:
            assert set(entry) == set(real[0])
            assert (synth / "images" / entry["image"]).is_file()
            joints = np.array(entry["joints"])
            vis = np.array(entry["joints_vis"])
            assert joints.shape == (16, 2) and vis.shape == (16,)
            assert set(vis.tolist()) <= {0, 1} and all(isinstance(v, int) for v in entry["joints_vis"])
            # Unannotated joints are (-1, -1) as in the real file; annotated ones lie in the image (1-based).
            assert (joints[vis == 0] == -1).all()
            height, width = cv2.imread(str(synth / "images" / entry["image"])).shape[:2]
            assert (joints[vis == 1] >= 1).all()
            assert (joints[vis == 1] <= (width, height)).all()
            assert vis.sum() >= 4
            assert len(entry["center"]) == 2 and entry["scale"] > 0


def test_mpii_center_and_scale_box_holds_all_annotated_joints(synth: Path) -> None:
    for entry in _load(synth / "mpii/annot/train.json") + _load(synth / "mpii/annot/valid.json"):
        # HRNet lib/dataset/mpii.py _get_db: centre y += 15 s, s *= 1.25, then 0-based.
        scale = entry["scale"] * 1.25
        center = np.array(entry["center"]) + (0.0, 15.0 * entry["scale"]) - 1.0
        joints = np.array(entry["joints"])[np.array(entry["joints_vis"]) == 1] - 1.0
        assert (np.abs(joints - center) <= 100.0 * scale).all()
        # ... and is not absurdly large: the joints span most of it (person height / 200 convention).
        span = (joints.max(axis=0) - joints.min(axis=0)).max()
        assert span <= 200.0 * entry["scale"] + 1e-6


def test_gt_valid_mat_has_the_real_layout_and_agrees_with_valid_json(synth: Path) -> None:
    mat = scipy.io.loadmat(str(synth / "mpii/annot/gt_valid.mat"))
    entries = _load(synth / "mpii/annot/valid.json")
    count = len(entries)
    assert {"dataset_joints", "jnt_missing", "pos_gt_src", "headboxes_src"} <= set(mat)
    names = mat["dataset_joints"]
    assert names.shape == (1, 16)
    assert [str(n[0]) for n in names[0]] == [
        "rank", "rkne", "rhip", "lhip", "lkne", "lank", "pelv", "thor", "neck", "head",
        "rwri", "relb", "rsho", "lsho", "lelb", "lwri",
    ]
    # The lookups HRNet's evaluate() does.
    assert np.where(names == "head")[1][0] == 9 and np.where(names == "lsho")[1][0] == 13
    assert mat["jnt_missing"].shape == (16, count)
    assert mat["pos_gt_src"].shape == (16, 2, count)
    assert mat["headboxes_src"].shape == (2, 2, count)
    joints = np.array([e["joints"] for e in entries])
    vis = np.array([e["joints_vis"] for e in entries])
    np.testing.assert_array_equal(mat["jnt_missing"].T, 1 - vis)
    np.testing.assert_array_equal(np.transpose(mat["pos_gt_src"], (2, 0, 1)), joints)
    boxes = np.transpose(mat["headboxes_src"], (2, 0, 1))
    assert (boxes[:, 1] > boxes[:, 0]).all()
    # The head box holds the head top and its 0.6 x diagonal is about the chin-to-crown length.
    head_top, neck = joints[:, 9], joints[:, 8]
    both = (vis[:, 9] == 1) & (vis[:, 8] == 1)
    assert ((head_top >= boxes[:, 0]) & (head_top <= boxes[:, 1])).all(axis=1)[vis[:, 9] == 1].all()
    head_size = 0.6 * np.linalg.norm(boxes[:, 1] - boxes[:, 0], axis=1)
    ratio = head_size[both] / np.linalg.norm(head_top - neck, axis=1)[both]
    assert ratio.size > 0 and (ratio > 0.7).all() and (ratio < 1.3).all()


@pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")  # inside pycocotools' mask code
def test_coco_json_has_the_real_layout(synth: Path, coco_fixture_dir: Path) -> None:
    real = _load(coco_fixture_dir / "test_coco.json")
    for split, count in (("train", NUM_TRAIN), ("val", NUM_VAL)):
        path = synth / f"coco/annotations/person_keypoints_{split}.json"
        data = _load(path)
        assert set(data) == set(real)
        assert data["categories"] == real["categories"]
        assert len(data["images"]) == count
        for image in data["images"]:
            assert {"id", "file_name", "width", "height"} <= set(image) <= set(real["images"][0])
            height, width = cv2.imread(str(synth / "images" / image["file_name"])).shape[:2]
            assert (image["width"], image["height"]) == (width, height)
        for ann in data["annotations"]:
            assert set(ann) == set(real["annotations"][0])
            keypoints = np.array(ann["keypoints"]).reshape(17, 3)
            assert ann["num_keypoints"] == int((keypoints[:, 2] > 0).sum())
            assert (keypoints[keypoints[:, 2] == 0, :2] == 0).all()
            assert ann["iscrowd"] == 0 and ann["category_id"] == 1
            x, y, w, h = ann["bbox"]
            assert w > 0 and h > 0 and ann["area"] <= w * h
        api = CocoApi(str(path))
        assert len(api.getImgIds()) == count
        assert len(api.getAnnIds()) == len(data["annotations"])
        # The polygons are the visible silhouette: their rasterised area is close to ``area``.
        ann = api.loadAnns(api.getAnnIds())[0]
        assert abs(api.annToMask(ann).sum() - ann["area"]) < 0.25 * ann["area"]


def test_coco_and_mpii_list_the_same_persons(synth: Path) -> None:
    for split, mpii_name in (("train", "train.json"), ("val", "valid.json")):
        coco = _load(synth / f"coco/annotations/person_keypoints_{split}.json")
        mpii = _load(synth / "mpii/annot" / mpii_name)
        assert len(coco["annotations"]) == len(mpii)
        names = {image["id"]: image["file_name"] for image in coco["images"]}
        for ann, entry in zip(coco["annotations"], mpii, strict=True):
            assert names[ann["image_id"]] == entry["image"]
            keypoints = np.array(ann["keypoints"]).reshape(17, 3)
            joints = np.array(entry["joints"])
            for coco_index, name in enumerate(COCO.joints):
                if name in MPII.joints and keypoints[coco_index, 2] > 0:
                    np.testing.assert_allclose(joints[MPII.index(name)] - 1.0, keypoints[coco_index, :2], atol=1e-9)


def test_detections_have_the_results_format(synth: Path, coco_fixture_dir: Path) -> None:
    real = _load(coco_fixture_dir / "test_coco_det_AP_H_56.json")
    detections = _load(synth / "coco/person_detection_results/synthpose_val_detections.json")
    assert all(set(d) == set(real[0]) for d in detections)
    scores = np.array([d["score"] for d in detections])
    assert (scores >= 0.75).sum() > 0 and (scores < 0.4).sum() > 0
    api = CocoApi(str(synth / "coco/annotations/person_keypoints_val.json"))
    assert {d["image_id"] for d in detections} <= set(api.getImgIds())
    results = api.loadRes(detections)
    assert len(results.getAnnIds()) == len(detections)


# --------------------------------------------------------------------------- the project's loaders


def test_project_mpii_loaders_read_it(synth: Path) -> None:
    annot = synth / "mpii/annot"
    records = load_mpii_annotations(annot / "valid.json", synth / "images")
    gt = load_mpii_ground_truth(annot / "gt_valid.mat")
    joined = attach_ground_truth(records, gt)
    entries = _load(annot / "valid.json")
    assert len(joined) == len(entries) == len(gt)
    for record, entry in zip(joined, entries, strict=True):
        assert Path(record.image).is_file()
        np.testing.assert_allclose(record.keypoints, np.array(entry["joints"]) - 1.0, atol=1e-9)
        assert record.headbox is not None and (record.headbox[1] > record.headbox[0]).all()
        box_half = 100.0 * record.scale
        inside = np.abs(record.keypoints[record.visible] - record.center) <= box_half
        assert inside.all()
    train = load_mpii_annotations(annot / "train.json", synth / "images")
    assert len(train) == len(_load(annot / "train.json"))


def test_project_coco_loaders_read_it(synth: Path) -> None:
    annotation = synth / "coco/annotations/person_keypoints_val.json"
    records = load_coco_records(annotation, synth / "images", aspect_ratio=0.75)
    anns = _load(annotation)["annotations"]
    assert len(records) == sum(a["num_keypoints"] > 0 for a in anns) > 0
    assert all(Path(r.image).is_file() for r in records)
    detections = synth / "coco/person_detection_results/synthpose_val_detections.json"
    boxes = load_coco_detection_records(annotation, synth / "images", detections, aspect_ratio=0.75)
    assert len(boxes) == len(_load(detections))
    kept = load_coco_detection_records(annotation, synth / "images", detections, 0.75, score_threshold=0.5)
    assert len(kept) < len(boxes)


def test_build_dataset_reads_both_formats(synth: Path) -> None:
    mpii = build_dataset("synthpose", synth, "val", format="mpii")
    coco = build_dataset("synthpose", synth, "val", format="coco", boxes="detections")
    assert mpii.mpii_ground_truth is not None and len(mpii.records) == len(mpii.mpii_ground_truth)
    assert len(coco.records) == len(_load(synth / "coco/person_detection_results/synthpose_val_detections.json"))


# --------------------------------------------------------------------------- what the labels mean


def test_written_flags_are_the_scene_flags(synth: Path) -> None:
    coco = _load(synth / "coco/annotations/person_keypoints_val.json")
    written = [np.array(a["keypoints"]).reshape(17, 3) for a in coco["annotations"]]
    expected = []
    for index in range(NUM_VAL):
        for person in render_scene(SEED, "val", index).persons:
            if person.annotated:
                flags = person.coco_flags[COCO_INDEX]
                labelled = np.where(flags[:, None] > 0, person.keypoints[COCO_INDEX], 0)
                expected.append(np.concatenate([labelled, flags[:, None]], 1))
    assert len(written) == len(expected)
    for a, b in zip(written, expected, strict=True):
        np.testing.assert_array_equal(a, b)


def test_joint_occlusion_hand_made_case() -> None:
    labels = np.zeros((10, 12), dtype=np.uint8)
    labels[2:8, 2:6] = 1  # the figure
    labels[4:8, 4:9] = 2  # a later figure over its lower right
    labels[0:2, 9:12] = OCCLUDER_LABEL
    points = np.array([[3.0, 3.0], [4.6, 5.0], [10.4, 1.4], [7.0, 9.0], [-0.01, 3.0], [11.0, 9.0], [3.0, 9.5]])
    inside, occluded = joint_occlusion(labels, points, label=1)
    assert inside.tolist() == [True, True, True, True, False, True, False]
    assert occluded.tolist() == [False, True, True, False, False, False, False]
    # Seen from figure 2 nothing but the occluder is in front.
    assert joint_occlusion(labels, points, label=2)[1].tolist() == [False, False, True, False, False, False, False]


def test_flags_follow_the_label_map(scenes: list) -> None:
    counts = {"by_figure": 0, "by_occluder": 0, "visible": 0, "outside": 0}
    for scene in scenes:
        height, width = scene.labels.shape
        for person in scene.persons:
            flags = person.coco_flags
            x, y = person.keypoints.T
            inside = (x >= 0) & (x <= width - 1) & (y >= 0) & (y <= height - 1)
            assert (flags[~inside] == 0).all()
            counts["outside"] += int((~inside).sum())
            cols, rows = np.floor(x + 0.5).astype(int), np.floor(y + 0.5).astype(int)
            for j in np.flatnonzero(flags > 0):
                cover = scene.labels[rows[j], cols[j]]
                if flags[j] == 1:
                    assert cover == OCCLUDER_LABEL or cover > person.label
                    counts["by_occluder" if cover == OCCLUDER_LABEL else "by_figure"] += 1
                else:
                    assert cover <= person.label
                    counts["visible"] += 1
                    if j < 16:  # a visible body joint lies on its own drawn silhouette
                        assert cover == person.label
            # Only face points turned away from the camera are unlabelled inside the image.
            assert (np.flatnonzero(inside & (flags == 0)) >= 16).all()
    assert min(counts.values()) > 10, counts


def test_coco_box_and_area_are_the_visible_silhouette(scenes: list) -> None:
    for scene in scenes[:30]:
        for person in scene.persons:
            mask = scene.labels == person.label
            if not person.annotated:
                continue
            rows, cols = np.nonzero(mask)
            assert person.area == mask.sum()
            np.testing.assert_array_equal(
                person.bbox, [cols.min(), rows.min(), cols.max() - cols.min() + 1, rows.max() - rows.min() + 1]
            )
            visible = person.keypoints[person.coco_flags == 2]
            x, y, w, h = person.bbox
            assert (visible >= (x - 0.5, y - 0.5)).all() and (visible <= (x + w - 0.5, y + h - 0.5)).all()


def test_left_and_right_are_the_persons_own_sides() -> None:
    base = {"stature": 200.0, "pelvis": (100.0, 120.0), "shoulders": (0.3, -0.3), "hips": (0.1, -0.1)}
    front = figure_geometry(FigurePose(**base)).keypoints
    # Facing the camera, the person's left is on the viewer's right (larger x).
    for left, right in (("l_shoulder", "r_shoulder"), ("l_hip", "r_hip"), ("l_wrist", "r_wrist"),
                        ("l_ankle", "r_ankle"), ("l_eye", "r_eye"), ("l_ear", "r_ear")):
        assert front[J[left], 0] > front[J[right], 0], left
    assert front[J["r_eye"], 0] < front[J["nose"], 0] < front[J["l_eye"], 0]
    ys = front[[J["head_top"], J["upper_neck"], J["thorax"], J["pelvis"], J["l_knee"], J["l_ankle"]], 1]
    assert (np.diff(ys) > 0).all()
    # Proportions: shoulder height - hip height = 0.288 H (Winter Fig. 4.1) for an upright figure.
    assert front[J["pelvis"], 1] - front[J["thorax"], 1] == pytest.approx(0.288 * 200.0, abs=0.01)

    back_pose = FigurePose(**base, body_yaw=np.pi, head_yaw=np.pi)
    back = figure_geometry(back_pose)
    assert back.keypoints[J["l_shoulder"], 0] < back.keypoints[J["r_shoulder"], 0]
    assert back.keypoints[J["l_hip"], 0] < back.keypoints[J["r_hip"], 0]
    hidden = back.face_depth <= FACE_HIDDEN_DEPTH  # nose, l_eye, r_eye, l_ear, r_ear
    assert hidden.tolist() == [True, True, True, False, False]

    # Facing image +x (yaw +90 degrees) the left side is the far side.
    side = figure_geometry(FigurePose(**base, body_yaw=np.pi / 2, head_yaw=np.pi / 2))
    assert side.left_depth < 0
    assert (side.face_depth <= FACE_HIDDEN_DEPTH).tolist() == [False, True, False, True, False]
    assert side.keypoints[J["nose"], 0] > side.head_center[0]

    # Rotation +90 degrees (clockwise on screen) turns the head towards +x.
    turned = figure_geometry(FigurePose(**base, rotation=np.pi / 2)).keypoints
    assert turned[J["head_top"], 0] - turned[J["pelvis"], 0] == pytest.approx(
        front[J["pelvis"], 1] - front[J["head_top"], 1], abs=0.02
    )


def test_left_right_in_rendered_data(scenes: list) -> None:
    """Face visible: l_shoulder - r_shoulder turns clockwise on screen from 'up' (pelvis -> thorax),
    as in an upright person facing the viewer (left shoulder at larger x); seen from behind, the opposite."""
    signs = {"front": [], "back": []}
    for scene in scenes:
        for person in scene.persons:
            flags, k = person.coco_flags, person.keypoints
            if not person.annotated or (flags[[J["l_shoulder"], J["r_shoulder"], J["l_hip"], J["r_hip"]]] == 0).any():
                continue
            up = k[J["thorax"]] - k[J["pelvis"]]
            across = k[J["l_shoulder"]] - k[J["r_shoulder"]]
            if np.linalg.norm(across) < 0.3 * np.linalg.norm(up):
                continue  # side view: the shoulders overlap
            cross = up[0] * across[1] - up[1] * across[0]
            if flags[J["nose"]] > 0 and flags[J["l_eye"]] > 0 and flags[J["r_eye"]] > 0:
                signs["front"].append(cross > 0)
            elif person.inside[J["nose"]] and flags[J["nose"]] == 0 and (flags[[J["l_ear"], J["r_ear"]]] > 0).all():
                signs["back"].append(cross < 0)
    assert len(signs["front"]) >= 20 and len(signs["back"]) >= 10, {k: len(v) for k, v in signs.items()}
    assert np.mean(signs["front"]) >= 0.95 and np.mean(signs["back"]) >= 0.95


def test_poses_vary(synth: Path) -> None:
    entries = _load(synth / "mpii/annot/train.json") + _load(synth / "mpii/annot/valid.json")
    complete = np.array([e["joints"] for e in entries if all(e["joints_vis"])])
    assert len(complete) >= 20
    up = complete[:, 7] - complete[:, 6]  # pelvis -> thorax
    torso = np.linalg.norm(up, axis=1)
    # Joint positions in a torso-aligned frame, in torso lengths.
    angle = np.arctan2(up[:, 0], -up[:, 1])
    c, s = np.cos(angle), np.sin(angle)
    rel = complete - complete[:, 6:7]
    aligned = np.stack([c[:, None] * rel[..., 0] + s[:, None] * rel[..., 1],
                        -s[:, None] * rel[..., 0] + c[:, None] * rel[..., 1]], axis=-1) / torso[:, None, None]
    spread = aligned.std(axis=0)  # (16, 2)
    for wrist in (10, 15):
        assert spread[wrist].max() > 0.5
    for ankle in (0, 5):
        assert spread[ankle].max() > 0.25

    def limb_angle(a: int, b: int) -> np.ndarray:
        d = aligned[:, b] - aligned[:, a]
        return np.arctan2(d[:, 0], d[:, 1])

    assert np.ptp(limb_angle(12, 11)) > 2.0 and np.ptp(limb_angle(13, 14)) > 2.0  # upper arms
    assert np.ptp(limb_angle(2, 1)) > 0.8 and np.ptp(limb_angle(3, 4)) > 0.8  # thighs
    # Scale and in-plane rotation vary too.
    assert np.ptp(torso) / torso.mean() > 0.5
    assert np.ptp(np.unwrap(angle)) > 0.6


# --------------------------------------------------------------------------- the LSP-extended form


@pytest.fixture(scope="module")
def synth_lsp(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("synth_lsp") / "lsp"
    generate_synthpose_lsp(root, num_train=6, num_val=2, seed=SEED, progress=False)
    return root


def test_lsp_form_has_the_lspet_layout(synth_lsp: Path) -> None:
    for split, count in (("train", 6), ("val", 2)):
        joints = scipy.io.loadmat(str(synth_lsp / split / "joints.mat"))["joints"]
        assert joints.shape == (14, 3, count)  # LSPET README: 14 joints x (x, y, visibility) x images
        assert set(np.unique(joints[:, 2])) <= {0.0, 1.0}
        assert sorted(p.name for p in (synth_lsp / split / "images").iterdir()) == [
            f"im{i:05d}.jpg" for i in range(1, count + 1)]


def test_lsp_form_read_by_the_real_loader_is_the_front_most_figure(synth_lsp: Path) -> None:
    records = load_lsp(synth_lsp / "train" / "joints.mat", synth_lsp / "train" / "images", extended=True)
    assert records
    lsp_rows = [JOINTS.index("upper_neck" if name == "neck" else name) for name in LSP.joints]
    for record in records:
        scene = render_scene(SEED, "train", record.image_id - 1)
        person = [p for p in scene.persons if p.annotated][-1]
        # Flag 1 (visible, annotated) exactly where the joint is inside the image and not covered.
        np.testing.assert_array_equal(record.visible, person.inside[lsp_rows] & ~person.occluded[lsp_rows])
        # Written 1-based to 0.01 px; the loader makes them 0-based.
        np.testing.assert_allclose(record.keypoints[record.visible], person.keypoints[lsp_rows][record.visible],
                                   rtol=0, atol=0.005 + 1e-9)
        written = (synth_lsp / "train" / "images" / f"im{record.image_id:05d}.jpg").read_bytes()
        ok, encoded = cv2.imencode(".jpg", scene.image, [cv2.IMWRITE_JPEG_QUALITY, 90])
        assert ok and written == encoded.tobytes()  # the same scene as the MPII/COCO form's <split>_NNNNNN.jpg
    assert any(not r.visible.all() for r in records)  # some joints are hidden: the flag carries information
    dataset = build_dataset("lsp_extended", synth_lsp / "train", "train")
    assert [r.image_id for r in dataset.records] == [r.image_id for r in records]


def test_lsp_form_refuses_a_non_empty_folder(tmp_path: Path) -> None:
    (tmp_path / "other.txt").write_text("x")
    with pytest.raises(DatasetError, match="not a new or empty directory"):
        generate_synthpose_lsp(tmp_path, num_train=1, num_val=0, seed=0, progress=False)


def test_lsp_form_replaces_an_earlier_one(tmp_path: Path) -> None:
    root = tmp_path / "lsp"
    generate_synthpose_lsp(root, num_train=3, num_val=2, seed=SEED, progress=False)
    generate_synthpose_lsp(root, num_train=2, num_val=1, seed=SEED, progress=False)
    fresh = tmp_path / "fresh"
    generate_synthpose_lsp(fresh, num_train=2, num_val=1, seed=SEED, progress=False)
    assert _files(root) == _files(fresh)  # no stale im00003.jpg, same bytes as a new folder


def test_build_dataset_reads_the_lsp_format(synth_lsp: Path) -> None:
    for split, count in (("train", 6), ("val", 2)):
        dataset = build_dataset("synthpose", synth_lsp.parent, split, format="lsp")
        assert dataset.protocol == "lsp" and dataset.skeleton is LSP
        reference = load_lsp(synth_lsp / split / "joints.mat", synth_lsp / split / "images", extended=True)
        assert [r.image_id for r in dataset.records] == [r.image_id for r in reference]
        assert all(r.image_id <= count and Path(r.image).is_file() for r in dataset.records)


def test_data_synth_command_writes_the_lsp_form_beside_unchanged_mpii_and_coco(tmp_path: Path) -> None:
    from benchmark.cli import main

    out = tmp_path / "cli"
    assert main(["data", "synth", "--out", str(out), "--train", "3", "--val", "2", "--seed", str(SEED)]) == 0
    alone, lsp_alone = tmp_path / "alone", tmp_path / "lsp_alone"
    generate_synthpose(alone, num_train=3, num_val=2, seed=SEED, progress=False)
    generate_synthpose_lsp(lsp_alone, num_train=3, num_val=2, seed=SEED, progress=False)
    written = _files(out)
    assert {k: v for k, v in written.items() if not k.startswith("lsp/")} == _files(alone)
    assert {k[len("lsp/"):]: v for k, v in written.items() if k.startswith("lsp/")} == _files(lsp_alone)
    # Running it again over its own output replaces both forms.
    assert main(["data", "synth", "--out", str(out), "--train", "3", "--val", "2", "--seed", str(SEED)]) == 0
    assert _files(out) == written


def test_prepare_data_generates_only_the_lsp_form_for_format_lsp(tmp_path: Path) -> None:
    from datamodules.datamodule import PoseDataModule

    module = PoseDataModule(name="synthpose", root=tmp_path / "synth", format="lsp", input_size=(64, 64),
                            batch_size=2, synth_train=2, synth_val=1, synth_seed=SEED)
    module.prepare_data()
    expected = tmp_path / "expected"
    generate_synthpose_lsp(expected, num_train=2, num_val=1, seed=SEED, progress=False)
    assert sorted(p.name for p in (tmp_path / "synth").iterdir()) == ["lsp"]
    assert _files(tmp_path / "synth" / "lsp") == _files(expected)


@pytest.mark.slow
def test_visreg_lspet_recipe_trains_and_scores_a_generated_lsp_extended_root(tmp_path: Path, capsys) -> None:
    from benchmark.cli import main
    from benchmark.run_record import read_record

    # 20 images in one LSP-extended root: im00001-im00018 train, im00019-im00020 val.
    generate_synthpose_lsp(tmp_path / "lspet", num_train=20, num_val=0, seed=SEED, progress=False)
    code = main(["train", "recipe=visreg_baseline1_lspet", f"data.root={tmp_path / 'lspet' / 'train'}",
                 "model.input_size=[64,64]", "data.batch_size=4", "trainer.max_epochs=1",
                 "trainer.accelerator=cpu", "trainer.devices=1", "trainer.enable_progress_bar=false",
                 "trainer.log_every_n_steps=1", f"output_dir={tmp_path / 'runs'}",
                 f"results_dir={tmp_path / 'results'}", "seed=3"])
    assert code == 0, capsys.readouterr()
    (path,) = (tmp_path / "results").glob("*.json")
    record = read_record(path)
    assert record["recipe"] == "visreg_baseline1_lspet" and record["dataset"]["name"] == "lsp_extended"
    test = record["metrics"]["test"]
    assert 0.0 <= test["PCK-img/Mean"] <= 100.0 and 0.0 <= test["Visibility/accuracy"] <= 100.0
    assert record["dataset"]["sizes"]["train"] == 18 and record["dataset"]["sizes"]["val"] == 2
