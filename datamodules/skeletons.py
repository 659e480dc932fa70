"""Skeleton definitions for MPII-16, COCO-17 and LSP-14: joint order, flip pairs, limbs, body split.

Sources: joint orders and flip pairs from the MPII Human Pose annotation description
(Andriluka et al., CVPR'14) and the HRNet reference code (lib/dataset/mpii.py, coco.py);
COCO OKS sigmas from pycocotools' cocoeval.py; LSP order from the LSP dataset README
(Johnson & Everingham, BMVC'10). Joint names are shared across datasets (``r_ankle`` ...) so
correspondences follow from the names; LSP's ``neck`` is MPII's ``upper_neck``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class Skeleton:
    """One dataset's keypoint layout; every index refers to ``joints``."""

    name: str
    joints: tuple[str, ...]
    flip_pairs: tuple[tuple[int, int], ...]
    limbs: tuple[tuple[int, int], ...]
    upper_body: tuple[int, ...]
    lower_body: tuple[int, ...]
    pcp_limbs: dict[str, tuple[tuple[int, int], ...]] = field(default_factory=dict)
    oks_sigmas: tuple[float, ...] | None = None

    @property
    def num_joints(self) -> int:
        return len(self.joints)

    def index(self, joint: str) -> int:
        """Index of a joint by name; unknown names raise a KeyError listing the valid ones."""
        try:
            return self.joints.index(joint)
        except ValueError:
            raise KeyError(f"{self.name} has no joint {joint!r}; joints: {', '.join(self.joints)}") from None

    @property
    def flip_permutation(self) -> np.ndarray:
        """``(K,)`` index array: joint ``i`` of a mirrored person is joint ``perm[i]`` of the original."""
        perm = np.arange(self.num_joints)
        for a, b in self.flip_pairs:
            perm[a], perm[b] = b, a
        return perm


# Joint names that mean the same body point in different datasets.
_ALIASES = {"neck": "upper_neck"}


def _canonical(name: str) -> str:
    return _ALIASES.get(name, name)


MPII = Skeleton(
    name="mpii",
    joints=(
        "r_ankle", "r_knee", "r_hip", "l_hip", "l_knee", "l_ankle", "pelvis", "thorax",
        "upper_neck", "head_top", "r_wrist", "r_elbow", "r_shoulder", "l_shoulder", "l_elbow",
        "l_wrist",
    ),
    flip_pairs=((0, 5), (1, 4), (2, 3), (10, 15), (11, 14), (12, 13)),
    limbs=(
        (0, 1), (1, 2), (2, 6), (6, 3), (3, 4), (4, 5), (6, 7), (7, 8), (8, 9),
        (10, 11), (11, 12), (12, 7), (7, 13), (13, 14), (14, 15),
    ),
    upper_body=(7, 8, 9, 10, 11, 12, 13, 14, 15),
    lower_body=(0, 1, 2, 3, 4, 5, 6),
    pcp_limbs={
        "Head": ((8, 9),),
        "Torso": ((6, 7),),
        "Upper arm": ((12, 11), (13, 14)),
        "Lower arm": ((11, 10), (14, 15)),
        "Upper leg": ((2, 1), (3, 4)),
        "Lower leg": ((1, 0), (4, 5)),
    },
)

COCO = Skeleton(
    name="coco",
    joints=(
        "nose", "l_eye", "r_eye", "l_ear", "r_ear", "l_shoulder", "r_shoulder", "l_elbow",
        "r_elbow", "l_wrist", "r_wrist", "l_hip", "r_hip", "l_knee", "r_knee", "l_ankle", "r_ankle",
    ),
    flip_pairs=((1, 2), (3, 4), (5, 6), (7, 8), (9, 10), (11, 12), (13, 14), (15, 16)),
    # pycocotools' person skeleton (1-based in the annotation file), made 0-based.
    limbs=(
        (15, 13), (13, 11), (16, 14), (14, 12), (11, 12), (5, 11), (6, 12), (5, 6), (5, 7),
        (6, 8), (7, 9), (8, 10), (1, 2), (0, 1), (0, 2), (1, 3), (2, 4), (3, 5), (4, 6),
    ),
    upper_body=tuple(range(0, 11)),
    lower_body=tuple(range(11, 17)),
    pcp_limbs={
        "Upper arm": ((6, 8), (5, 7)),
        "Lower arm": ((8, 10), (7, 9)),
        "Upper leg": ((12, 14), (11, 13)),
        "Lower leg": ((14, 16), (13, 15)),
    },
    # pycocotools' cocoeval.py writes them as tenths (``.26 / 10``); same floats, bit for bit.
    oks_sigmas=tuple(
        s / 10.0
        for s in (.26, .25, .25, .35, .35, .79, .79, .72, .72, .62, .62, 1.07, 1.07, .87, .87, .89, .89)
    ),
)

LSP = Skeleton(
    name="lsp",
    joints=(
        "r_ankle", "r_knee", "r_hip", "l_hip", "l_knee", "l_ankle", "r_wrist", "r_elbow",
        "r_shoulder", "l_shoulder", "l_elbow", "l_wrist", "neck", "head_top",
    ),
    flip_pairs=((0, 5), (1, 4), (2, 3), (6, 11), (7, 10), (8, 9)),
    limbs=(
        (0, 1), (1, 2), (2, 3), (3, 4), (4, 5), (6, 7), (7, 8), (8, 12), (12, 9), (9, 10),
        (10, 11), (12, 13), (8, 2), (9, 3),
    ),
    upper_body=(6, 7, 8, 9, 10, 11, 12, 13),
    lower_body=(0, 1, 2, 3, 4, 5),
    pcp_limbs={
        "Head": ((12, 13),),
        "Upper arm": ((8, 7), (9, 10)),
        "Lower arm": ((7, 6), (10, 11)),
        "Upper leg": ((2, 1), (3, 4)),
        "Lower leg": ((1, 0), (4, 5)),
    },
)

SKELETONS: dict[str, Skeleton] = {s.name: s for s in (MPII, COCO, LSP)}


def get_skeleton(name: str) -> Skeleton:
    """The skeleton registered under ``name``; an unknown name raises naming the valid ones."""
    try:
        return SKELETONS[name]
    except KeyError:
        raise KeyError(f"unknown skeleton {name!r}; known: {', '.join(sorted(SKELETONS))}") from None


def correspondence(source: Skeleton, target: Skeleton) -> tuple[np.ndarray, np.ndarray]:
    """Index arrays ``(src_idx, dst_idx)`` of the joints both skeletons share, in target order.

    ``target_keypoints[:, dst_idx] = source_keypoints[:, src_idx]`` converts what can be converted.
    """
    source_index = {_canonical(n): i for i, n in enumerate(source.joints)}
    pairs = [(source_index[_canonical(n)], j) for j, n in enumerate(target.joints) if _canonical(n) in source_index]
    src, dst = zip(*pairs, strict=True) if pairs else ((), ())
    return np.asarray(src, dtype=np.int64), np.asarray(dst, dtype=np.int64)
