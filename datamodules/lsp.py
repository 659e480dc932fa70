"""Leeds Sports Pose (LSP) and LSP-extended loaders: ``joints.mat`` to person-centric records.

Layouts (dataset READMEs, Johnson & Everingham BMVC'10 / CVPR'11): LSP ships a 3 x 14 x 2000
``joints`` matrix (x, y, flag per joint per image, images ``images/im0001.jpg`` ...), LSP-extended
a 14 x 3 x 10000 matrix (10,000 Flickr images scaled so that the person is about 150 px long,
``images/im00001.jpg`` ... ``im10000.jpg``; "14 joint locations and visibility flags", LSPET
README). Joint order: LSP-14 (``datamodules.skeletons.LSP``). A flag other than 0 or 1 is an error
naming the file, the image and the joint. SynthPose writes the LSP-extended layout too
(``datamodules.synthpose.generate_synthpose_lsp``), read by this loader. Splits are made by
``datamodules.datasets``: LSP's first half trains and its second half is ``val`` (Johnson &
Everingham); LSP-extended has no official held-out part, so PoseBench's own choice keeps the last
10% by image number for ``val`` (im09001-im10000) and trains on the rest.

The third value means different things in the two files. The official Convolutional Pose
Machines code (shihenw/convolutional-pose-machines-release, ``training/genJSON.m``, the
'LEEDS' branch; copied into bearpaw/pytorch-pose ``miscs/gen_lsp.m``) turns LSP's flag into a
visibility with ``joints(3,:,:) = 1 - joints(3,:,:)`` but uses LSP-extended's flag as it is,
and treats LSP-extended joints whose flag is 0 as absent (they are left out of the person's
centre). So: in LSP the flag is an *occlusion* flag (1 = occluded) and every one of the 14
joints has an annotated position; in LSP-extended the flag is a *visibility* flag and only
joints with flag 1 are annotated ("annotated with up to 14 visible joint locations", LSPET
README). ``visible`` here means annotated, so it is all true for LSP (where the coordinates
are finite) and ``flag == 1`` for LSP-extended; the raw flags stay in ``extras["flag"]``.

Coordinates: the matrices come from MATLAB, so they are treated as 1-based like MPII's (HRNet
``lib/dataset/mpii.py`` subtracts 1) and made 0-based. The CPM and pytorch-pose code keep them
as they are; the 1 px offset cancels in PCK because predictions are mapped back to the same frame.

Person box (a choice; LSP has none): the box of the annotated joints, squared to its longer
side and padded by 1.25 (HRNet's box padding), stored like MPII's as (s, s) with
s = side / 200. CPM instead centres LSP on the image (its images are person-centred crops) and
LSP-extended on the annotated joints' box. Records whose annotated joints span no area (fewer
than two distinct points) are skipped, since no box can be made for them.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from datamodules.records import PIXEL_STD, DatasetError, PersonRecord, read_mat
from datamodules.skeletons import LSP

NUM_JOINTS = LSP.num_joints
BOX_PADDING = 1.25


def lsp_image_name(number: int, extended: bool) -> str:
    """``im0001.jpg`` (LSP, 4 digits) or ``im00001.jpg`` (LSP-extended, 5 digits); ``number`` is 1-based."""
    return f"im{number:05d}.jpg" if extended else f"im{number:04d}.jpg"


def read_lsp_joints(joints_mat: Path, extended: bool) -> np.ndarray:
    """``(N, 14, 3)`` x, y, flag from ``joints.mat`` as stored (1-based, raw flags)."""
    joints_mat = Path(joints_mat)
    mat = read_mat(joints_mat)
    if "joints" not in mat:
        raise DatasetError(f"{joints_mat}: missing key 'joints'")
    joints = np.asarray(mat["joints"], dtype=np.float64)
    if joints.ndim == 2:
        joints = joints[..., None]
    if extended:
        expected, name = (NUM_JOINTS, 3), "LSP-extended (14 x 3 x N)"
    else:
        expected, name = (3, NUM_JOINTS), "LSP (3 x 14 x N)"
    if joints.ndim != 3 or joints.shape[:2] != expected:
        other = "lsp" if extended else "lsp_extended"
        raise DatasetError(
            f"{joints_mat}: 'joints' has shape {joints.shape}, expected the {name} layout "
            f"(a file of the other layout belongs to dataset {other!r})"
        )
    values = np.transpose(joints, (2, 0, 1)) if extended else np.transpose(joints, (2, 1, 0))
    flags = values[..., 2]
    bad = ~np.isin(flags, (0.0, 1.0))
    if bad.any():
        person, joint = np.argwhere(bad)[0]
        raise DatasetError(
            f"{joints_mat}: 'joints' flag {float(flags[person, joint])} of image {person + 1} "
            f"({lsp_image_name(int(person) + 1, extended)}), joint {int(joint)} ({LSP.joints[joint]}) is not 0 or 1"
        )
    return values


def load_lsp(joints_mat: Path, image_dir: Path, extended: bool = False) -> list[PersonRecord]:
    """Person records, one per image in file order, from an LSP or LSP-extended ``joints.mat``.

    ``image_id`` is the 1-based image number of the file name; see the module doc for the flag
    semantics, the 0-based shift and the person box.
    """
    image_dir = Path(image_dir)
    raw = read_lsp_joints(joints_mat, extended)
    keypoints = raw[..., :2] - 1.0
    flags = raw[..., 2]
    finite = np.isfinite(keypoints[..., 0]) & np.isfinite(keypoints[..., 1])
    visible = finite & (flags == 1) if extended else finite
    masked = np.where(visible[..., None], keypoints, np.nan)
    with warnings.catch_warnings():
        # Persons without annotated joints give all-NaN rows; they are skipped below.
        warnings.filterwarnings("ignore", message="All-NaN slice encountered", category=RuntimeWarning)
        low, high = np.nanmin(masked, axis=1), np.nanmax(masked, axis=1)
    centers = (low + high) / 2.0
    sides = np.max(high - low, axis=-1) * BOX_PADDING / PIXEL_STD
    usable = np.isfinite(sides) & (sides > 0)
    source = str(joints_mat)
    return [
        PersonRecord(
            image=str(image_dir / lsp_image_name(i + 1, extended)),
            image_id=i + 1,
            center=centers[i].copy(),
            scale=np.array([sides[i], sides[i]]),
            keypoints=keypoints[i].copy(),
            visible=visible[i].copy(),
            extras={"annotation_file": source, "flag": flags[i].copy()},
        )
        for i in np.flatnonzero(usable).tolist()
    ]

