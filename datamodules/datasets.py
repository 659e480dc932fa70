"""The dataset registry: ``build_dataset(name, root, split)`` finds a dataset on disk and loads its records.

Each dataset keeps its own on-disk layout (README, "Datasets"); this module knows where the
files are, which loader reads them and which evaluation protocol applies, and it says exactly
what is missing and how to get it when a file is not there. Only annotation files must exist
at load time; image files are checked by ``python -m benchmark data check`` and when read.

Splits are ``train`` and ``val`` everywhere: MPII val is ``annot/valid.json`` joined with
``annot/gt_valid.mat`` (HRNet ``lib/dataset/mpii.py``); COCO val is ``val2017`` with
ground-truth boxes or the person detections (HRNet ``lib/dataset/coco.py``); LSP's standard
split is the first 1000 images for training and the last 1000 for testing (Johnson &
Everingham, BMVC'10), here the first and second half of ``joints.mat``. LSP-extended ships no
held-out part; PoseBench's split (its own choice: the visreg study its recipes cite states none
we could check) keeps the last 10% of the images by image number for ``val`` and the rest for
``train`` (of the 10,000: im00001-im09000 train, im09001-im10000 val). SynthPose (``python -m
benchmark data synth``) is read in each of its three formats through the MPII, COCO or
LSP-extended loaders.

``PoseDataset.fingerprint()`` identifies the data a run saw: sha256 over the annotation files
(name and bytes, in the dataset's fixed order) and, for each sorted image file name of the
records, the file's size and its first and last 4 KiB (see ``fingerprint`` for what that covers).
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, replace
from pathlib import Path

import scipy.io

from datamodules.coco import load_coco_detection_records, load_coco_records
from datamodules.lsp import load_lsp
from datamodules.mpii import MPIIGroundTruth, attach_ground_truth, load_mpii_annotations, load_mpii_ground_truth
from datamodules.records import DatasetError, PersonRecord
from datamodules.skeletons import COCO, LSP, MPII, Skeleton

DATASETS: tuple[str, ...] = ("mpii", "coco", "lsp", "lsp_extended", "synthpose")
SPLITS: tuple[str, ...] = ("train", "val")
BOXES: tuple[str, ...] = ("gt", "detections")
FORMATS: tuple[str, ...] = ("mpii", "coco", "lsp")

COCO_DETECTION_FILE = "COCO_val2017_detections_AP_H_56_person.json"
SYNTHPOSE_DETECTION_FILE = "synthpose_val_detections.json"

LAYOUTS: dict[str, str] = {
    "mpii": "annot/train.json, annot/valid.json, annot/gt_valid.mat, images/*.jpg",
    "coco": (
        "annotations/person_keypoints_{train2017,val2017}.json, train2017/*.jpg, val2017/*.jpg, "
        f"person_detection_results/{COCO_DETECTION_FILE}"
    ),
    "lsp": "joints.mat (3 x 14 x 2000), images/im0001.jpg ... im2000.jpg",
    "lsp_extended": "joints.mat (14 x 3 x 10000), images/im00001.jpg ... im10000.jpg",
    "synthpose": (
        "images/{train,val}_NNNNNN.jpg, mpii/annot/{train,valid}.json, mpii/annot/gt_valid.mat, "
        "coco/annotations/person_keypoints_{train,val}.json, "
        f"coco/person_detection_results/{SYNTHPOSE_DETECTION_FILE}, synthpose.json, "
        "lsp/{train,val}/joints.mat (14 x 3 x N), lsp/{train,val}/images/im00001.jpg ..."
    ),
}

HOW_TO_GET: dict[str, str] = {
    "mpii": (
        "run `python -m benchmark data fetch mpii --root DIR`, or by hand: images from "
        "http://human-pose.mpi-inf.mpg.de/ and the JSON annotations + gt_valid.mat from "
        "https://github.com/leoxiaobin/deep-high-resolution-net.pytorch#data-preparation"
    ),
    "coco": (
        "run `python -m benchmark data fetch coco --root DIR`, or by hand from https://cocodataset.org/#download "
        "(the person detections from https://github.com/leoxiaobin/deep-high-resolution-net.pytorch#data-preparation)"
    ),
    "lsp": "download lsp_dataset.zip from http://sam.johnson.io/research/lsp.html and unpack it into DIR",
    "lsp_extended": "download lspet_dataset.zip from http://sam.johnson.io/research/lspet.html and unpack it into DIR",
    "synthpose": "run `python -m benchmark data synth --out DIR`",
}


def dataset_skeleton(name: str, format: str = "mpii") -> Skeleton:
    """The skeleton of dataset ``name`` (SynthPose: of its ``format``), known without loading any file."""
    _check_choice("dataset", name, DATASETS)
    _check_choice("format", format, FORMATS)
    if name == "synthpose":
        return {"mpii": MPII, "coco": COCO, "lsp": LSP}[format]
    return {"mpii": MPII, "coco": COCO, "lsp": LSP, "lsp_extended": LSP}[name]


class DatasetNotFoundError(DatasetError):
    """A dataset file is missing; the message says where it looked, the layout and how to get the data."""


@dataclass
class PoseDataset:
    """One split of one dataset: its person records plus what evaluation needs.

    ``protocol`` names the metric family ("mpii" PCKh, "coco" OKS AP, "lsp" PCK);
    ``coco_annotation`` is the keypoint file COCOeval compares with; ``mpii_ground_truth`` is
    the ``gt_valid.mat`` content for MPII-format val splits; ``subset`` marks a debug subset
    (``head``), which COCO evaluation restricts to the subset's images.
    """

    name: str
    split: str
    skeleton: Skeleton
    records: list[PersonRecord]
    annotation_files: tuple[Path, ...]
    image_dir: Path
    protocol: str
    coco_annotation: Path | None = None
    mpii_ground_truth: MPIIGroundTruth | None = None
    subset: bool = False

    def __len__(self) -> int:
        return len(self.records)

    def image_names(self) -> list[str]:
        """Sorted distinct image file names of the records, relative to ``image_dir`` (POSIX separators)."""
        base = str(self.image_dir)
        return sorted({Path(os.path.relpath(r.image, base)).as_posix() for r in self.records})

    def head(self, count: int) -> PoseDataset:
        """The first ``count`` records (a debug subset) with the matching persons of ``gt_valid.mat``."""
        truth = self.mpii_ground_truth
        if truth is not None:
            truth = replace(truth, missing=truth.missing[:count], joints=truth.joints[:count],
                            headboxes=truth.headboxes[:count])
        return replace(self, records=self.records[:count], mpii_ground_truth=truth, subset=count < len(self.records))

    def fingerprint(self) -> str:
        """sha256 hex of the annotation files (name, size, bytes; in order) and of the images.

        Per image (sorted names): its name, size in bytes and first and last ``FINGERPRINT_EDGE``
        bytes, so a resized, re-encoded or truncated copy differs (a resize changes the JPEG's
        frame header and its size); an edit of pixels inside a file of the same size may not.
        Reading 8 KiB per image keeps it cheap on COCO-size data (~123k images). A missing image
        enters as ``missing``. Records of earlier PoseBench versions, whose fingerprint covered the
        annotations and image names only, hold another fingerprint of the same data, so ``rerun``
        of such a record reports other data.
        """
        digest = hashlib.sha256()
        for path in self.annotation_files:
            path = Path(path)
            digest.update(f"file {path.name} {path.stat().st_size}\n".encode())
            with path.open("rb") as f:
                for chunk in iter(lambda: f.read(1 << 20), b""):
                    digest.update(chunk)
        for name in self.image_names():
            digest.update(_image_digest(self.image_dir / name, name))
        return digest.hexdigest()


FINGERPRINT_EDGE = 4096
"""Bytes read from each end of every image file by ``PoseDataset.fingerprint``."""


def _image_digest(path: Path, name: str) -> bytes:
    """What ``fingerprint`` hashes for one image: name, size, first and last ``FINGERPRINT_EDGE`` bytes."""
    try:
        with path.open("rb") as f:
            size = os.fstat(f.fileno()).st_size
            head = f.read(FINGERPRINT_EDGE)
            if size > 2 * FINGERPRINT_EDGE:
                f.seek(size - FINGERPRINT_EDGE)
            tail = f.read(FINGERPRINT_EDGE)
    except FileNotFoundError:
        return f"image {name} missing\n".encode()
    return f"image {name} {size}\n".encode() + head + tail


def _require(path: Path, name: str, root: Path, what: str) -> Path:
    if path.is_file():
        return path
    hint = "" if root.is_dir() else f" (the root directory {root} does not exist)"
    raise DatasetNotFoundError(
        f"{name}: {what} not found at {path}{hint}\n"
        f"  expected layout under {root}: {LAYOUTS[name]}\n"
        f"  to get it: {HOW_TO_GET[name]}"
    )


def _check_choice(kind: str, value: str, valid: tuple[str, ...]) -> None:
    if value not in valid:
        raise DatasetError(f"unknown {kind} {value!r}; valid: {', '.join(valid)}")


def _build_mpii_format(
    name: str, root: Path, annot_dir: Path, image_dir: Path, split: str, problems: list[str] | None
) -> PoseDataset:
    annotations = annot_dir / ("train.json" if split == "train" else "valid.json")
    json_path = _require(annotations, name, root, f"{split} annotations")
    records = load_mpii_annotations(json_path, image_dir, problems=problems)
    if split == "train":
        return PoseDataset(name, split, MPII, records, (json_path,), image_dir, "mpii")
    mat_path = _require(annot_dir / "gt_valid.mat", name, root, "validation ground truth (head boxes)")
    truth = load_mpii_ground_truth(mat_path)
    records = attach_ground_truth(records, truth)
    return PoseDataset(name, split, MPII, records, (json_path, mat_path), image_dir, "mpii", mpii_ground_truth=truth)


def _build_coco_format(
    name: str,
    root: Path,
    annotation_path: Path,
    image_dir: Path,
    split: str,
    aspect_ratio: float,
    detections: Path | None,
    detection_threshold: float,
    problems: list[str] | None,
    box_rule: str,
) -> PoseDataset:
    annotation_path = _require(annotation_path, name, root, f"{split} keypoint annotations")
    if detections is None:
        records = load_coco_records(annotation_path, image_dir, aspect_ratio, problems=problems, box_rule=box_rule)
        files: tuple[Path, ...] = (annotation_path,)
    else:
        detections = _require(detections, name, root, "person detection results")
        records = load_coco_detection_records(annotation_path, image_dir, detections, aspect_ratio, detection_threshold,
                                              box_rule=box_rule)
        files = (annotation_path, detections)
    return PoseDataset(name, split, COCO, records, files, image_dir, "coco", coco_annotation=annotation_path)


LSP_EXTENDED_VAL_FRACTION = 10
"""LSP-extended's ``val`` is the last 1/``LSP_EXTENDED_VAL_FRACTION`` of the images (PoseBench's split)."""


def lsp_train_images(num_images: int, extended: bool) -> int:
    """How many of the ``num_images`` images, counted from image 1, form the ``train`` split; the rest are ``val``.

    LSP: the first half (Johnson & Everingham's first 1000 of 2000); LSP-extended: all but the last 10%
    (PoseBench's choice, see the module doc).
    """
    return num_images - num_images // LSP_EXTENDED_VAL_FRACTION if extended else num_images // 2


def _build_lsp(name: str, root: Path, split: str, extended: bool, joints_mat: Path | None = None) -> PoseDataset:
    """LSP or LSP-extended records of ``split``; ``joints_mat`` (SynthPose) names a file holding that split alone."""
    joints_mat = _require(joints_mat or root / "joints.mat", name, root, "joints.mat")
    image_dir = joints_mat.parent / "images"
    records = load_lsp(joints_mat, image_dir, extended=extended)
    if name == "synthpose":
        return PoseDataset(name, split, LSP, records, (joints_mat,), image_dir, "lsp")
    shapes = {n: s for n, s, _ in scipy.io.whosmat(str(joints_mat))}
    last_train = lsp_train_images(shapes["joints"][-1], extended)
    records = [r for r in records if (r.image_id <= last_train) == (split == "train")]
    return PoseDataset(name, split, LSP, records, (joints_mat,), image_dir, "lsp")


def build_dataset(
    name: str,
    root: Path | str,
    split: str,
    *,
    aspect_ratio: float = 0.75,
    boxes: str = "gt",
    detection_file: Path | str | None = None,
    detection_threshold: float = 0.0,
    format: str = "mpii",
    problems: list[str] | None = None,
    box_rule: str = "hrnet",
) -> PoseDataset:
    """Load split ``split`` of dataset ``name`` stored under ``root``.

    ``aspect_ratio`` (model input W / H) shapes COCO-format boxes; ``boxes="detections"``
    (COCO-format val only) reads ``detection_file`` (default: the dataset's standard detection
    file) keeping boxes with score >= ``detection_threshold``; ``format`` picks SynthPose's
    MPII, COCO or LSP-extended files (``lsp/<split>/joints.mat``, one root per split). With
    ``problems`` given, malformed annotation entries are listed there and skipped instead of
    raising (``python -m benchmark data check`` uses this). ``box_rule``
    (``hrnet`` or ``mmpose``) frames COCO-format boxes as that code base does.
    """
    _check_choice("dataset", name, DATASETS)
    _check_choice("split", split, SPLITS)
    _check_choice("boxes", boxes, BOXES)
    _check_choice("format", format, FORMATS)
    root = Path(root)
    coco_format = name == "coco" or (name == "synthpose" and format == "coco")
    if boxes == "detections" and not coco_format:
        raise DatasetError(f"boxes='detections' needs COCO-format data; {name} uses ground-truth boxes")
    if boxes == "detections" and split != "val":
        raise DatasetError("boxes='detections' is for the val split; training uses ground-truth boxes (HRNet coco.py)")
    detections = Path(detection_file) if detection_file is not None else None

    if name == "mpii":
        return _build_mpii_format(name, root, root / "annot", root / "images", split, problems)
    if name == "coco":
        year_split = "train2017" if split == "train" else "val2017"
        default = root / "person_detection_results" / COCO_DETECTION_FILE
        return _build_coco_format(
            name, root, root / "annotations" / f"person_keypoints_{year_split}.json", root / year_split, split,
            aspect_ratio, (detections or default) if boxes == "detections" else None, detection_threshold, problems,
            box_rule,
        )
    if name in ("lsp", "lsp_extended"):
        return _build_lsp(name, root, split, extended=name == "lsp_extended")
    if format == "lsp":
        return _build_lsp(name, root, split, extended=True, joints_mat=root / "lsp" / split / "joints.mat")
    if format == "mpii":
        return _build_mpii_format(name, root, root / "mpii" / "annot", root / "images", split, problems)
    default = root / "coco" / "person_detection_results" / SYNTHPOSE_DETECTION_FILE
    return _build_coco_format(
        name, root, root / "coco" / "annotations" / f"person_keypoints_{split}.json", root / "images", split,
        aspect_ratio, (detections or default) if boxes == "detections" else None, detection_threshold, problems,
        box_rule,
    )
