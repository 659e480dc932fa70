"""``python -m benchmark data check`` on roots built from the real sample data, clean and broken."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmark.cli import main
from benchmark.commands.data_check import check_dataset
from datamodules.datasets import build_dataset
from tests.builders import make_coco_root, make_mpii_root


@pytest.fixture()
def coco_root(tmp_path: Path, coco_fixture_dir: Path) -> Path:
    """val2017 only (no train split)."""
    return make_coco_root(tmp_path / "coco", coco_fixture_dir)


@pytest.fixture()
def full_coco_root(coco_root: Path) -> Path:
    """Both splits: train2017 is a copy of the val2017 annotations and images."""
    annotations = coco_root / "annotations"
    val = (annotations / "person_keypoints_val2017.json").read_bytes()
    (annotations / "person_keypoints_train2017.json").write_bytes(val)
    (coco_root / "train2017").symlink_to(coco_root / "val2017", target_is_directory=True)
    return coco_root


def test_clean_root_is_ok_and_prints_fingerprints(full_coco_root: Path) -> None:
    coco_root = full_coco_root
    report = check_dataset("coco", coco_root, progress=False)
    assert report.ok, report.format()
    text = report.format()
    assert build_dataset("coco", coco_root, "val").fingerprint() in text
    assert build_dataset("coco", coco_root, "val", boxes="detections").fingerprint() in text
    # 181 = the num_keypoints of the 12 labelled persons: 17+14+15+15+15+12+17+16+16+15+16+13
    assert "val: 4 images, 12 persons, 181 annotated joints" in text
    assert "train: 4 images, 12 persons, 181 annotated joints" in text
    assert text.endswith("result: OK")


def test_every_problem_is_listed(coco_root: Path) -> None:
    images = coco_root / "val2017"
    (images / "000000040083.jpg").unlink()  # missing
    jpeg = (images / "000000196141.jpg").resolve().read_bytes()
    (images / "000000196141.jpg").unlink()
    (images / "000000196141.jpg").write_bytes(jpeg[: len(jpeg) * 6 // 10])  # truncated JPEG
    annotations = coco_root / "annotations" / "person_keypoints_val2017.json"
    data = json.loads(annotations.read_text())
    first = next(a for a in data["annotations"] if a["id"] == 442619)
    first["keypoints"][0] = 700.0  # nose beyond the 640-px-wide image 785
    annotations.write_text(json.dumps(data))

    report = check_dataset("coco", coco_root, ["val"], progress=False)
    assert not report.ok
    assert len(report.problems) == 3, report.format()
    missing, truncated, outside = report.problems
    assert "missing image" in missing and str(images / "000000040083.jpg") in missing and "(2 record(s))" in missing
    assert "truncated JPEG" in truncated and str(images / "000000196141.jpg") in truncated
    assert "000000000785.jpg" in outside and "nose (700.0, " in outside and "640x425" in outside
    assert "result: FAILED (3 problem(s))" in report.format()


def test_undecodable_image_and_bad_entry_are_listed(tmp_path: Path, mpii_fixture_dir: Path) -> None:
    root = make_mpii_root(tmp_path / "mpii", mpii_fixture_dir)
    (root / "images" / "052475643.jpg").unlink()
    (root / "images" / "052475643.jpg").write_bytes(b"not an image at all" * 50)
    train = root / "annot" / "train.json"
    persons = json.loads(train.read_text())
    persons[4]["joints"] = persons[4]["joints"][:15]
    train.write_text(json.dumps(persons))

    report = check_dataset("mpii", root, ["train"], progress=False)
    assert len(report.problems) == 2, report.format()
    assert "entry 4" in report.problems[0] and "(15, 2)" in report.problems[0] and str(train) in report.problems[0]
    assert "cannot be decoded" in report.problems[1] and "052475643.jpg" in report.problems[1]
    assert "train: 4 images, 4 persons" in report.format()


def test_absent_split_is_a_problem_by_default(coco_root: Path) -> None:
    report = check_dataset("coco", coco_root, progress=False)
    assert not report.ok and len(report.problems) == 1, report.format()
    assert report.problems[0].startswith("[train]") and "person_keypoints_train2017.json" in report.problems[0]
    assert "val: 4 images, 12 persons" in report.format()  # the present split is still checked


def test_split_with_no_person_is_a_problem(full_coco_root: Path) -> None:
    annotations = full_coco_root / "annotations" / "person_keypoints_train2017.json"
    data = json.loads(annotations.read_text())
    data["annotations"] = []
    annotations.write_text(json.dumps(data))
    report = check_dataset("coco", full_coco_root, progress=False)
    assert report.problems == [f"[train] 0 persons in {annotations}"], report.format()


def test_split_asked_for_but_absent_is_a_problem(coco_root: Path) -> None:
    report = check_dataset("coco", coco_root, ["train", "val"], progress=False)
    assert not report.ok and len(report.problems) == 1
    assert "person_keypoints_train2017.json" in report.problems[0]


def test_cli_exit_codes(full_coco_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    coco_root = full_coco_root
    assert main(["data", "check", "--data", "coco", "--root", str(coco_root)]) == 0
    out = capsys.readouterr().out
    assert build_dataset("coco", coco_root, "val").fingerprint() in out
    assert main(["data", "check", "--data", "coco", "--root", str(tmp_path / "none")]) == 1
    assert "no split of coco found" in capsys.readouterr().out
    assert main(["data", "check", "--data", "flic", "--root", str(coco_root)]) == 2
    assert "unknown dataset 'flic'" in capsys.readouterr().err
