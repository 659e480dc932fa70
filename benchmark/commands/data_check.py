"""``python -m benchmark data check``: validate a whole dataset and list every problem found.

For each split the dataset has (and, for SynthPose, each of its two formats) it loads the
records through the real loaders (``datamodules.datasets.build_dataset``), then reports counts
(images, persons, annotated joints), a missing annotation file, a split with 0 persons,
malformed annotation entries (e.g. a wrong number of joints, a non-finite centre, scale, box or
annotated keypoint), missing images, corrupt images, annotated joints outside their image, and
the dataset fingerprint that run records carry. Val splits whose protocol scores on detected
person boxes (``benchmark.protocols``: COCO format) also get their person-detection file
checked. A dataset with no split present at all is one problem that says where to get it.

Every image is decoded with OpenCV (threads; cv2 releases the GIL) because that is the only
way to find a corrupt file, and the decoded size gives the bounds for the joint check.
OpenCV 4 decodes a truncated JPEG with only a warning (libjpeg pads the missing rows; OpenCV 5
refuses it), so the file is first checked as training reads it
(``datamodules.topdown.truncation_problem``: a JPEG needs an end-of-image marker after its
last scan, a PNG its IEND chunk), which also names the fault precisely.

Bounds: a joint is outside when x < -1, x > W, y < -1 or y > H (pixel centres at integers,
so the image spans [-0.5, W - 0.5]; the extra half pixel absorbs datasets whose keypoints use
pixel corners, as COCO's may reach x = W).
"""

from __future__ import annotations

import os
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from benchmark.protocols import get_protocol
from datamodules.datasets import (
    DATASETS,
    FORMATS,
    HOW_TO_GET,
    LAYOUTS,
    SPLITS,
    DatasetNotFoundError,
    PoseDataset,
    build_dataset,
)
from datamodules.records import DatasetError
from datamodules.topdown import truncation_problem

_BOUNDS_MARGIN = 1.0


@dataclass
class SplitCheck:
    """What was found for one split: counts and fingerprints when present, why not otherwise."""

    label: str
    present: bool
    images: int = 0
    persons: int = 0
    annotated_joints: int = 0
    fingerprint: str | None = None
    notes: list[str] = field(default_factory=list)


@dataclass
class CheckReport:
    """The result of :func:`check_dataset`; ``ok`` is false when any problem was found."""

    dataset: str
    root: Path
    splits: list[SplitCheck]
    problems: list[str]

    @property
    def ok(self) -> bool:
        return not self.problems

    def format(self) -> str:
        lines = [f"data check: {self.dataset} at {self.root}"]
        for split in self.splits:
            if not split.present:
                lines.append(f"  {split.label}: not present")
            else:
                lines.append(
                    f"  {split.label}: {split.images} images, {split.persons} persons, "
                    f"{split.annotated_joints} annotated joints"
                )
                lines.append(f"      fingerprint {split.fingerprint}")
            lines.extend(f"      {note}" for note in split.notes)
        if self.problems:
            lines.append(f"{len(self.problems)} problem(s):")
            lines.extend(f"  - {problem}" for problem in self.problems)
            lines.append(f"result: FAILED ({len(self.problems)} problem(s))")
        else:
            lines.append("result: OK")
        return "\n".join(lines)


@dataclass(frozen=True)
class _ImageStatus:
    size: tuple[int, int] | None
    problem: str | None


def _inspect_image(path: str) -> _ImageStatus:
    """Size (W, H) of a decodable image and what is wrong with it, if anything."""
    file = Path(path)
    if not file.is_file():
        return _ImageStatus(None, f"missing image: {path}")
    data = file.read_bytes()
    truncated = truncation_problem(data)
    image = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_COLOR)
    size = None if image is None else (int(image.shape[1]), int(image.shape[0]))
    if truncated is not None:
        return _ImageStatus(size, f"corrupt image ({truncated}): {path}")
    if image is None:
        return _ImageStatus(None, f"corrupt image (cannot be decoded): {path}")
    return _ImageStatus(size, None)


def _inspect_images(paths: list[str], label: str, progress: bool) -> list[_ImageStatus]:
    workers = max(1, min(8, os.cpu_count() or 1))
    with ThreadPoolExecutor(max_workers=workers) as pool:
        statuses = pool.map(_inspect_image, paths)
        return list(tqdm(statuses, total=len(paths), desc=f"{label} images", unit="img", disable=not progress))


def _record_problems(dataset: PoseDataset, label: str) -> list[str]:
    """Records whose joint count or box is wrong (the loaders reject most of these already)."""
    problems = []
    expected = dataset.skeleton.num_joints
    for index, record in enumerate(dataset.records):
        if record.keypoints.shape != (expected, 2) or record.visible.shape != (expected,):
            problems.append(
                f"[{label}] record {index} ({record.image}): {record.keypoints.shape[0]} joints, expected {expected}"
            )
        elif not (np.isfinite(record.scale).all() and (record.scale > 0).all()):
            problems.append(f"[{label}] record {index} ({record.image}): box scale {record.scale.tolist()} "
                            "is not positive")
    return problems


def _bounds_problems(dataset: PoseDataset, sizes: dict[str, tuple[int, int]], label: str) -> list[str]:
    """Annotated joints outside their decoded image, and COCO sizes that disagree with the image."""
    problems = []
    names = dataset.skeleton.joints
    for index, record in enumerate(dataset.records):
        size = sizes.get(record.image)
        if size is None or record.keypoints.shape != (len(names), 2):
            continue
        width, height = size
        stated = record.extras.get("image_size")
        if stated is not None and tuple(stated) != size:
            problems.append(f"[{label}] record {index}: annotation says {stated[0]}x{stated[1]} but {record.image} "
                            f"is {width}x{height}")
        x, y = record.keypoints[:, 0], record.keypoints[:, 1]
        inside = (x >= -_BOUNDS_MARGIN) & (x <= width) & (y >= -_BOUNDS_MARGIN) & (y <= height)
        outside = np.flatnonzero(record.visible & ~inside)
        if outside.size:
            joints = ", ".join(f"{names[j]} ({x[j]:.1f}, {y[j]:.1f})" for j in outside)
            problems.append(f"[{label}] record {index} ({record.image}): joint(s) outside the {width}x{height} "
                            f"image: {joints}")
    return problems


def _check_split(
    name: str, root: Path, split: str, fmt: str, label: str, progress: bool
) -> tuple[SplitCheck, list[str]]:
    loader_problems: list[str] = []
    try:
        dataset = build_dataset(name, root, split, format=fmt, problems=loader_problems)
    except DatasetNotFoundError as error:
        check = SplitCheck(label, present=False, notes=[str(error).splitlines()[0]])
        return check, [f"[{label}] {error}"]
    except DatasetError as error:
        # Entries skipped before the failure are often its cause (e.g. valid.json vs gt_valid.mat counts).
        found = [f"[{label}] {p}" for p in loader_problems]
        return SplitCheck(label, present=False), found + [f"[{label}] cannot be loaded: {error}"]
    problems = [f"[{label}] {p}" for p in loader_problems] + _record_problems(dataset, label)
    if not dataset.records:
        problems.append(f"[{label}] 0 persons in {', '.join(str(p) for p in dataset.annotation_files)}")

    images = sorted({r.image for r in dataset.records})
    statuses = _inspect_images(images, f"{name} {label}", progress)
    users = Counter(r.image for r in dataset.records)
    for image, status in zip(images, statuses, strict=True):
        if status.problem:
            problems.append(f"[{label}] {status.problem} ({users[image]} record(s))")
    sizes = {image: status.size for image, status in zip(images, statuses, strict=True) if status.size is not None}
    problems += _bounds_problems(dataset, sizes, label)

    check = SplitCheck(
        label,
        present=True,
        images=len(images),
        persons=len(dataset.records),
        annotated_joints=int(sum(int(r.visible.sum()) for r in dataset.records)),
        fingerprint=dataset.fingerprint(),
    )
    if get_protocol(dataset.protocol).detections and split == "val":
        problems += _check_detections(name, root, fmt, label, check)
    return check, problems


def _check_detections(name: str, root: Path, fmt: str, label: str, check: SplitCheck) -> list[str]:
    """Load the standard person-detection file of a COCO-format val split, if it is there."""
    try:
        detections = build_dataset(name, root, "val", boxes="detections", format=fmt)
    except DatasetNotFoundError as error:
        check.notes.append(f"detections: not present ({str(error).splitlines()[0]})")
        return []
    except DatasetError as error:
        return [f"[{label}] detection file cannot be loaded: {error}"]
    check.notes.append(f"detections: {len(detections)} person boxes, fingerprint {detections.fingerprint()}")
    return []


def check_dataset(name: str, root: Path, splits: list[str] | None = None, *, progress: bool = True) -> CheckReport:
    """Validate dataset ``name`` under ``root`` (every split it has, or ``splits``) and report every problem.

    A split whose annotation file is absent is a problem, and so is a split with 0 persons; when
    no split is present at all, that is reported as one problem saying how to get the dataset.
    SynthPose's LSP-extended form (``lsp/``) is checked where it was written (older roots lack it).
    """
    if name not in DATASETS:
        raise DatasetError(f"unknown dataset {name!r}; valid: {', '.join(DATASETS)}")
    wanted = list(splits) if splits else list(SPLITS)
    unknown = [s for s in wanted if s not in SPLITS]
    if unknown:
        raise DatasetError(f"unknown split(s) {', '.join(unknown)}; valid: {', '.join(SPLITS)}")
    root = Path(root)
    formats = [f for f in FORMATS if f != "lsp" or (root / "lsp").is_dir()] if name == "synthpose" else ["mpii"]
    checks: list[SplitCheck] = []
    problems: list[str] = []
    for split in wanted:
        for fmt in formats:
            label = f"{split} ({fmt})" if name == "synthpose" else split
            check, found = _check_split(name, root, split, fmt, label, progress)
            checks.append(check)
            problems += found
    if not any(c.present for c in checks) and all(c.notes for c in checks):
        problems = [
            f"no split of {name} found under {root}\n    expected layout: {LAYOUTS[name]}\n"
            f"    to get it: {HOW_TO_GET[name]}"
        ]
    return CheckReport(name, root, checks, problems)
