"""Training learns: tiny SimpleBaseline and 2-stack Hourglass trained on SynthPose on the CPU.

Each model trains for a few hundred steps through the real DataModule and Lightning Trainer and is
scored with the MPII protocol (``benchmark.metrics.mpii_pckh``, SynthPose's ``gt_valid`` head boxes).
Two baselines make the threshold meaningful: an untrained network (about 1% PCKh@0.5) and the
mean pose of the validation set itself placed in every crop (about 13%), which is what a network
that ignores the image could learn at best. The thresholds sit far above the first and above the
second (checked in the test), so a broken loss, target, optimiser or decoder fails the test.
Observed on SynthPose (300 train / 60 val images, seed 0): SimpleBaseline-tiny about 30%,
Hourglass-tiny 19-23% after 300 steps; training costs about 40-45 s of single-thread CPU time each.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import pytorch_lightning as pl
import torch

import models
from benchmark.metrics import mpii_pckh
from datamodules.datamodule import PoseDataModule
from datamodules.datasets import build_dataset
from datamodules.skeletons import MPII
from datamodules.synthpose import generate_synthpose
from datamodules.transforms import Augmentation
from models.base import crop_to_image

INPUT_SIZE = (128, 128)
STEPS = 300
BATCH = 16


@pytest.fixture(scope="module")
def synthpose_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("synthpose")
    generate_synthpose(root, num_train=300, num_val=60, seed=0, progress=False)
    return root


@pytest.fixture(scope="module")
def val_truth(synthpose_root: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """MPII ground truth of the val split: keypoints (N, 16, 2), annotated (N, 16), head boxes (N, 2, 2)."""
    records = build_dataset("synthpose", synthpose_root, "val").records
    return (np.stack([r.keypoints for r in records]), np.stack([r.visible for r in records]),
            np.stack([r.headbox for r in records]))


def _datamodule(root: Path) -> PoseDataModule:
    return PoseDataModule(name="synthpose", root=root, input_size=INPUT_SIZE, batch_size=BATCH,
                          val_batch_size=64, seed=0, augmentation=Augmentation(flip=True))


def _trainer(tmp_path: Path, **kwargs) -> pl.Trainer:
    return pl.Trainer(accelerator="cpu", devices=1, logger=False, enable_progress_bar=False,
                      enable_model_summary=False, enable_checkpointing=False, use_distributed_sampler=False,
                      default_root_dir=tmp_path, **kwargs)


def _pckh(model: pl.LightningModule, datamodule: PoseDataModule, truth: tuple, tmp_path: Path) -> float:
    outputs = _trainer(tmp_path).predict(model, datamodule=datamodule)
    index = torch.cat([o["index"] for o in outputs]).numpy()
    keypoints = torch.cat([o["keypoints"] for o in outputs]).numpy()
    assert sorted(index.tolist()) == list(range(len(truth[0])))
    pred = np.empty_like(keypoints)
    pred[index] = keypoints
    return mpii_pckh(pred, *truth)["Mean"]


def _mean_pose_pckh(datamodule: PoseDataModule, truth: tuple) -> float:
    """PCKh of the val set's own mean crop pose placed in every crop (an image-blind upper bound)."""
    batches = [datamodule.pose_batch(batch) for batch in datamodule.val_dataloader()]
    keypoints = torch.cat([b["keypoints"] for b in batches])
    visible = torch.cat([b["visible"] for b in batches])[..., None]
    mean = (keypoints * visible).sum(0) / visible.sum(0)
    pred = crop_to_image(mean.expand_as(keypoints).contiguous(), torch.cat([b["inverse_matrix"] for b in batches]))
    index = torch.cat([b["index"] for b in batches]).numpy()
    ordered = np.empty(pred.shape, dtype=np.float32)
    ordered[index] = pred.numpy()
    return mpii_pckh(ordered, *truth)["Mean"]


# Each: variant, overrides, PCKh@0.5 "Mean" threshold after STEPS steps.
CASES = [
    ("simplebaseline-tiny", {"lr": 2e-3}, 22.0),
    ("hourglass-tiny", {"lr": 5e-3}, 17.0),
]


@pytest.mark.slow
@pytest.mark.parametrize(("name", "overrides", "threshold"), CASES, ids=[case[0] for case in CASES])
def test_training_on_synthpose_beats_the_baselines(name: str, overrides: dict, threshold: float,
                                                   synthpose_root: Path, val_truth: tuple, tmp_path: Path) -> None:
    torch.manual_seed(0)
    datamodule = _datamodule(synthpose_root)
    datamodule.setup("fit")
    model = models.build(name, input_size=list(INPUT_SIZE), num_joints=MPII.num_joints,
                         flip_pairs=[list(pair) for pair in MPII.flip_pairs], optimizer="adam",
                         schedule="none", **overrides)
    untrained = _pckh(model, datamodule, val_truth, tmp_path)
    mean_pose = _mean_pose_pckh(datamodule, val_truth)
    assert untrained < 5.0 and mean_pose < threshold - 3.0

    trainer = _trainer(tmp_path, max_steps=STEPS, num_sanity_val_steps=0, limit_val_batches=0)
    trainer.fit(model, datamodule=datamodule)
    trained = _pckh(model, datamodule, val_truth, tmp_path)
    assert trained >= threshold, (
        f"{name}: PCKh@0.5 {trained:.1f} after {STEPS} steps (untrained {untrained:.1f}, mean pose {mean_pose:.1f}, "
        f"needed {threshold})"
    )
