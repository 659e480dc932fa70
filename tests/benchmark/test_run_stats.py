"""Run statistics for the record: throughput from batch-end intervals, file digests, peak memory, wandb."""

from __future__ import annotations

import hashlib
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from benchmark import run_stats
from benchmark.run_stats import ThroughputCallback, file_entry, peak_memory


def test_throughput_counts_intervals_between_batch_ends_over_all_processes(monkeypatch) -> None:
    clock = iter([10.0, 10.5, 11.5, 20.0, 20.25, 30.0, 30.1, 30.3])
    monkeypatch.setattr(run_stats.time, "perf_counter", lambda: next(clock))
    trainer = SimpleNamespace(world_size=2)
    batch = {"image": torch.zeros(4, 3, 8, 8)}
    callback = ThroughputCallback()
    callback.on_train_epoch_start(trainer, None)
    for _ in range(3):  # ends at 10.0, 10.5, 11.5: two intervals, 1.5 s, 2 x 2 x 4 images
        callback.on_train_batch_end(trainer, None, None, batch, 0)
    callback.on_validation_epoch_start(trainer, None)  # validation inside the epoch breaks the chain
    for _ in range(2):  # 20.0, 20.25: one interval
        callback.on_train_batch_end(trainer, None, None, batch, 0)
    callback.on_test_epoch_start(trainer, None)
    for _ in range(3):  # 30.0, 30.1, 30.3: two intervals, 0.3 s
        callback.on_test_batch_end(trainer, None, None, batch, 0)
    summary = callback.summary()
    assert summary["train_images_per_s"] == pytest.approx(24 / 1.75, rel=1e-12)
    assert summary["train_batches_timed"] == 3
    assert summary["test_images_per_s"] == pytest.approx(16 / 0.3, rel=1e-12)
    assert ThroughputCallback().summary() == {"train_images_per_s": None, "train_batches_timed": 0,
                                              "test_images_per_s": None, "test_batches_timed": 0}


def test_file_entry_and_peak_memory(tmp_path: Path) -> None:
    path = tmp_path / "last.ckpt"
    path.write_bytes(b"x" * (3 << 20))
    assert file_entry(path) == {"path": str(path), "sha256": hashlib.sha256(b"x" * (3 << 20)).hexdigest(),
                                "bytes": 3 << 20}
    assert file_entry(tmp_path / "missing.ckpt") is None and file_entry(None) is None
    memory = peak_memory()
    assert memory["host_rss_bytes"] > 50 << 20  # this process holds torch: tens of MB at least
    assert memory["gpu_allocated_bytes"] is None or torch.cuda.is_available()


def test_wandb_run_of_an_offline_logger(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import pytorch_lightning as pl
    from pytorch_lightning.loggers import CSVLogger, WandbLogger

    from benchmark.train import wandb_run

    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    logger = WandbLogger(project="posebench-test", save_dir=str(tmp_path), offline=True)
    trainer = pl.Trainer(logger=[CSVLogger(tmp_path), logger], accelerator="cpu", enable_progress_bar=False,
                         enable_checkpointing=False, default_root_dir=tmp_path)
    try:
        info = wandb_run(trainer)
        assert info == {"id": logger.experiment.id, "url": None, "project": "posebench-test", "offline": True}
        assert isinstance(info["id"], str) and info["id"]
    finally:
        logger.experiment.finish()
    assert wandb_run(pl.Trainer(logger=CSVLogger(tmp_path), accelerator="cpu", enable_progress_bar=False,
                                enable_checkpointing=False, default_root_dir=tmp_path)) is None
