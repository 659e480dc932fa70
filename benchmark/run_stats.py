"""What a run cost, for its record: steady-state throughput, peak memory, checkpoint digests.

``ThroughputCallback`` times the interval between consecutive batch ends of each training and
test epoch, so the time counts the whole step (data loading, forward, backward, optimiser,
logging) but not the first batch of an epoch, which also pays for starting loader workers and
warming caches. Images per second are the batch sizes of every process (``world_size`` x the
local batch) over that time. Peak memory is the accelerator's ``max_memory_allocated`` on a GPU
and the process's peak resident set size (``getrusage``) on the host, both of rank 0.
"""

from __future__ import annotations

import hashlib
import resource
import sys
import time
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch


class ThroughputCallback(pl.Callback):
    """Images per second of training and testing, from the time between consecutive batch ends.

    ``summary()`` gives ``{"train_images_per_s", "test_images_per_s", "train_batches_timed",
    "test_batches_timed"}`` (rates None when fewer than two batches of an epoch ran).
    """

    def __init__(self) -> None:
        self._images = {"train": 0, "test": 0}
        self._seconds = {"train": 0.0, "test": 0.0}
        self._batches = {"train": 0, "test": 0}
        self._last: float | None = None

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._last = None

    def on_test_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._last = None

    def _batch_end(self, trainer: pl.Trainer, stage: str, batch: Any) -> None:
        now = time.perf_counter()
        if self._last is not None:
            self._seconds[stage] += now - self._last
            self._images[stage] += int(batch["image"].shape[0]) * int(trainer.world_size)
            self._batches[stage] += 1
        self._last = now

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:  # noqa: D102
        self._batch_end(trainer, "train", batch)

    def on_validation_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:  # noqa: D102
        # Validation runs inside the training epoch: the next training batch does not follow it.
        self._last = None

    def on_test_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:  # noqa: D102
        self._batch_end(trainer, "test", batch)

    def summary(self) -> dict[str, Any]:
        """Measured rates (images/s over all processes) and how many batch intervals they rest on."""
        out: dict[str, Any] = {}
        for stage in ("train", "test"):
            seconds = self._seconds[stage]
            out[f"{stage}_images_per_s"] = self._images[stage] / seconds if seconds > 0 else None
            out[f"{stage}_batches_timed"] = self._batches[stage]
        return out


def peak_memory() -> dict[str, int | None]:
    """``{"gpu_allocated_bytes", "host_rss_bytes"}``: this process's peaks (GPU None without CUDA)."""
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # Linux reports kilobytes, macOS bytes (getrusage(2)).
    host = int(rss if sys.platform == "darwin" else rss * 1024)
    gpu = int(torch.cuda.max_memory_allocated()) if torch.cuda.is_available() and torch.cuda.is_initialized() else None
    return {"gpu_allocated_bytes": gpu, "host_rss_bytes": host}


def file_sha256(path: Path | str) -> str:
    """sha256 hex digest of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def file_entry(path: Path | str | None) -> dict[str, Any] | None:
    """``{"path", "sha256", "bytes"}`` of an existing file (a checkpoint, a detection file); None otherwise."""
    if path is None or not Path(path).is_file():
        return None
    path = Path(path)
    return {"path": str(path), "sha256": file_sha256(path), "bytes": path.stat().st_size}
