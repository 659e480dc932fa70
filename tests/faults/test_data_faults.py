"""Data faults that must never be trained on silently: each on a damaged copy of real sample data.

Every test builds its own copy of the MPII or COCO sample files in ``tmp_path`` (images copied,
not linked, so damaging one never touches ``../shared/fixtures``), breaks one thing, and checks
that the loader, the DataModule, ``data check`` and ``train`` stop with a message naming the
file and the record, and that nothing already on disk changed.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import cv2
import pytest

from benchmark.cli import main
from datamodules.datamodule import PoseDataModule
from datamodules.datasets import build_dataset
from datamodules.records import DatasetError
from datamodules.topdown import TopDownDataset, read_image
from tests.builders import HEADBOXES, write_gt_valid


def _mpii_copy(root: Path, fixtures: Path) -> Path:
    """MPII layout with copied images: annot/{train,valid}.json (the 5 sample persons), gt_valid.mat."""
    (root / "annot").mkdir(parents=True)
    (root / "images").mkdir()
    for name in ("train.json", "valid.json"):
        shutil.copy(fixtures / "test_mpii.json", root / "annot" / name)
    write_gt_valid(root / "annot" / "gt_valid.mat", json.loads((fixtures / "test_mpii.json").read_text()), HEADBOXES)
    for image in sorted(fixtures.glob("*.jpg")):
        shutil.copy(image, root / "images" / image.name)
    return root


def _coco_copy(root: Path, fixtures: Path) -> Path:
    """COCO layout with train2017 and val2017 both holding the sample annotations and copied images."""
    (root / "annotations").mkdir(parents=True)
    for split in ("train2017", "val2017"):
        shutil.copy(fixtures / "test_coco.json", root / "annotations" / f"person_keypoints_{split}.json")
        (root / split).mkdir()
        for image in sorted(fixtures.glob("*.jpg")):
            shutil.copy(image, root / split / image.name)
    return root


def _snapshot(*roots: Path) -> dict[str, str]:
    """sha256 of every file under ``roots`` (what a command must leave as it found it)."""
    return {
        str(path): hashlib.sha256(path.read_bytes()).hexdigest()
        for root in roots if root.exists() for path in sorted(root.rglob("*")) if path.is_file()
    }


def _edit_json(path: Path, edit) -> None:
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data))  # json writes NaN as the bare token NaN, which json.load reads back


@pytest.fixture()
def mpii(tmp_path: Path, mpii_fixture_dir: Path) -> Path:
    return _mpii_copy(tmp_path / "mpii", mpii_fixture_dir)


@pytest.fixture(scope="module", autouse=True)
def shared_fixtures_untouched(fixtures_dir: Path):
    """The faults below damage copies only: the shared sample data is byte-identical afterwards."""
    before = _snapshot(fixtures_dir)
    yield
    assert _snapshot(fixtures_dir) == before


def _datamodule(root: Path, name: str = "mpii") -> PoseDataModule:
    return PoseDataModule(name=name, root=root, input_size=(64, 48), batch_size=2)


def test_truncated_jpeg_names_the_file(mpii: Path, capsys: pytest.CaptureFixture[str]) -> None:
    image = mpii / "images" / "005808361.jpg"
    image.write_bytes(image.read_bytes()[: image.stat().st_size * 6 // 10])
    before = _snapshot(mpii)

    with pytest.raises(DatasetError, match=r"truncated JPEG") as error:
        read_image(str(image))
    assert str(image) in str(error.value) and "\n" not in str(error.value)

    datamodule = _datamodule(mpii)
    datamodule.setup("fit")
    dataset: TopDownDataset = datamodule._loaded["train"]
    first = next(i for i, r in enumerate(dataset.records) if r.image == str(image))
    with pytest.raises(DatasetError, match=str(image)):
        dataset[first]

    assert main(["data", "check", "--data", "mpii", "--root", str(mpii)]) == 1
    out = capsys.readouterr().out
    assert f"truncated JPEG, no end-of-image marker): {image}" in out
    assert _snapshot(mpii) == before


def test_empty_train_split_is_refused(mpii: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    train_json = mpii / "annot" / "train.json"
    train_json.write_text("[]")
    before = _snapshot(mpii)

    with pytest.raises(DatasetError) as error:
        _datamodule(mpii).setup("fit")
    message = str(error.value)
    assert "\n" not in message and "train" in message and str(train_json) in message and "0 persons" in message

    results = tmp_path / "results"
    code = main(["train", "method=hourglass-tiny", "data=mpii", f"data.root={mpii}", "model.input_size=[64,64]",
                 "trainer.accelerator=cpu", "trainer.max_epochs=1", f"output_dir={tmp_path / 'outputs'}",
                 f"results_dir={results}"])
    err = capsys.readouterr().err
    assert code == 2 and str(train_json) in err
    assert not results.exists() or not any(results.rglob("*.json"))  # no record of an untrained model

    assert main(["data", "check", "--data", "mpii", "--root", str(mpii)]) == 1
    out = capsys.readouterr().out
    assert "[train] 0 persons" in out and str(train_json) in out and "result: FAILED" in out
    assert _snapshot(mpii) == before


def test_empty_val_split_is_refused(tmp_path: Path, coco_fixture_dir: Path) -> None:
    root = _coco_copy(tmp_path / "coco", coco_fixture_dir)
    val_json = root / "annotations" / "person_keypoints_val2017.json"
    _edit_json(val_json, lambda data: data.__setitem__("annotations", []))
    with pytest.raises(DatasetError, match=r"val split .*0 persons") as error:
        _datamodule(root, "coco").setup("validate")
    assert str(val_json) in str(error.value)


def test_missing_train_json_fails_the_default_data_check(mpii: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (mpii / "annot" / "train.json").unlink()
    before = _snapshot(mpii)
    assert main(["data", "check", "--data", "mpii", "--root", str(mpii)]) == 1
    out = capsys.readouterr().out
    assert str(mpii / "annot" / "train.json") in out and "result: FAILED (1 problem(s))" in out
    assert "val: 5 images, 5 persons" in out  # the present split is still checked
    assert _snapshot(mpii) == before


def test_nan_centre_names_the_file_and_entry(mpii: Path, capsys: pytest.CaptureFixture[str]) -> None:
    train_json = mpii / "annot" / "train.json"
    _edit_json(train_json, lambda persons: persons[2]["center"].__setitem__(1, float("nan")))
    before = _snapshot(mpii)

    with pytest.raises(DatasetError, match=r"entry 2 .*center") as error:
        build_dataset("mpii", mpii, "train")
    assert str(train_json) in str(error.value)
    with pytest.raises(DatasetError, match=r"entry 2 .*center"):
        _datamodule(mpii).setup("fit")

    assert main(["data", "check", "--data", "mpii", "--root", str(mpii)]) == 1
    out = capsys.readouterr().out
    assert f"[train] {train_json}: entry 2" in out and "center" in out
    assert _snapshot(mpii) == before


def test_nan_in_valid_json_is_found_before_training(mpii: Path, capsys: pytest.CaptureFixture[str]) -> None:
    valid = mpii / "annot" / "valid.json"
    # joint 3 of person 1 is annotated (joints_vis 1) in the sample data
    _edit_json(valid, lambda persons: persons[1]["joints"][3].__setitem__(0, float("nan")))
    assert json.loads(valid.read_text())[1]["joints_vis"][3] == 1
    before = _snapshot(mpii)

    with pytest.raises(DatasetError, match=r"entry 1 .*joint") as error:
        _datamodule(mpii).setup("fit")  # load time, not after a training epoch
    assert str(valid) in str(error.value) and "\n" not in str(error.value)

    assert main(["data", "check", "--data", "mpii", "--root", str(mpii)]) == 1
    assert f"[val] {valid}: entry 1" in capsys.readouterr().out
    assert _snapshot(mpii) == before


def test_coco_nan_box_and_keypoint_name_the_annotation(tmp_path: Path, coco_fixture_dir: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    root = _coco_copy(tmp_path / "coco", coco_fixture_dir)
    train_json = root / "annotations" / "person_keypoints_train2017.json"
    val_json = root / "annotations" / "person_keypoints_val2017.json"

    def nan_box(data: dict) -> None:
        next(a for a in data["annotations"] if a["id"] == 198196)["bbox"][2] = float("nan")

    def nan_keypoint(data: dict) -> None:
        ann = next(a for a in data["annotations"] if a["id"] == 442619)
        assert ann["keypoints"][2] > 0  # the nose is labelled
        ann["keypoints"][0] = float("nan")

    _edit_json(train_json, nan_box)
    _edit_json(val_json, nan_keypoint)
    before = _snapshot(root)
    with pytest.raises(DatasetError, match=r"annotation id 198196 .*bbox") as error:
        build_dataset("coco", root, "train")
    assert str(train_json) in str(error.value)
    with pytest.raises(DatasetError, match=r"annotation id 442619 .*keypoint") as error:
        build_dataset("coco", root, "val")
    assert str(val_json) in str(error.value)

    assert main(["data", "check", "--data", "coco", "--root", str(root)]) == 1
    out = capsys.readouterr().out
    assert f"[train] {train_json}: annotation id 198196" in out and f"[val] {val_json}: annotation id 442619" in out
    assert _snapshot(root) == before


def test_fingerprint_covers_image_content(mpii: Path, tmp_path: Path, mpii_fixture_dir: Path) -> None:
    clean = build_dataset("mpii", mpii, "train").fingerprint()
    assert build_dataset("mpii", _mpii_copy(tmp_path / "copy", mpii_fixture_dir), "train").fingerprint() == clean

    image = mpii / "images" / "051423444.jpg"
    pixels = cv2.imread(str(image))
    cv2.imwrite(str(image), cv2.resize(pixels, (pixels.shape[1] // 2, pixels.shape[0] // 2)))  # same name
    resized = build_dataset("mpii", mpii, "train").fingerprint()
    assert resized != clean

    image.write_bytes(image.read_bytes()[:-100])  # damaged: truncated
    assert build_dataset("mpii", mpii, "train").fingerprint() not in (clean, resized)

