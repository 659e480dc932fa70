"""The method-agnostic ``PoseDataModule``: crops, crop-pixel keypoints and metadata for every method.

One DataModule serves all seven methods (the codecs build targets on the device, models/codecs.py): it yields the
crop, the keypoints in crop pixels, visibility, the affine matrices and the record
metadata evaluation needs; each method's codec builds its own targets on the device.
Loader workers hand over uint8 crops and packed metadata (``LoaderBatch``, three tensors); the crops are
normalised on the device (``on_after_batch_transfer``), where the batch becomes a ``PoseBatch``.

Reproducibility rests on ``EpochSampler``: it lives in the main process and yields
``(epoch, index)`` tuples, so the augmentation of a sample depends only on (seed, epoch, index)
whatever the number of workers, and the epoch reaches worker processes even when they are
persistent (a worker's copy of the dataset never sees ``set_epoch``). Lightning traps it avoids:

- Lightning calls ``set_epoch`` on ``dataloader.sampler`` at the start of every training epoch
  with ``fit_loop.epoch_progress.current.processed`` (pytorch_lightning/loops/fit_loop.py,
  ``on_advance_start``; lightning_fabric/utilities/data.py, ``_set_sampler_epoch``), which is
  the restored epoch after a resume. The shuffle is a pure function of (seed, epoch), so a
  resumed run replays the order of the epoch it resumes at, not epoch 0's order, which is what
  happens to any shuffle whose epoch is not taken from the trainer. Loader workers prefetch at
  ``iter()``, which Lightning calls before that ``set_epoch``, so ``train_dataloader`` sets the
  same epoch itself; Lightning builds the loader after restoring the loops, as long as nothing
  builds it earlier (models/base.py sizes the LR schedule from a loader of its own).
- Under DDP Lightning replaces a custom sampler by ``DistributedSamplerWrapper``
  (pytorch_lightning/trainer/connectors/data_connector.py, ``_get_distributed_sampler``); its
  ``set_epoch`` never reaches the wrapped sampler, so every epoch would replay epoch 0's
  augmentations. ``EpochSampler`` shards itself instead and the Trainer must run with
  ``use_distributed_sampler=False`` (checked; a clear error otherwise).
- Sharding follows ``torch.utils.data.DistributedSampler`` (torch/utils/data/distributed.py):
  pad by repeating the first indices up to a multiple of the number of replicas, rank ``r`` takes
  every ``num_replicas``-th index from ``r``. Evaluation drops the repeats by ``index``.
- A DataLoader draws its worker base seed from ``loader.generator`` at every ``iter()``
  (torch/utils/data/dataloader.py, ``_BaseDataLoaderIter.__init__``); with no generator it
  draws from the global torch RNG, so data loading would shift the model's random stream. The
  loaders here own a seeded generator.
"""

from __future__ import annotations

import logging
import os
import random
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TypedDict

import numpy as np
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Sampler

from datamodules.datasets import DATASETS, FORMATS, PoseDataset, build_dataset, dataset_skeleton
from datamodules.records import DatasetError
from datamodules.skeletons import Skeleton
from datamodules.topdown import TopDownDataset
from datamodules.transforms import NORMALISATIONS, Augmentation, TopDownTransform, normalise_images
from pixelgrid import DEFAULT_CONVENTION, get_convention

log = logging.getLogger(__name__)

# Separates the shuffle's random stream from the per-sample augmentation streams (seed, epoch, index).
_SHUFFLE_STREAM = 0x5348_5546
_WORKER_STREAM = 0x574F_524B
SYNTH_WAIT_S = 600
"""How long a process of local rank > 0 waits for local rank 0 to generate SynthPose."""


class PoseBatch(TypedDict):
    """One batch as models receive it, the contract between the DataModule and every method.

    The loaders yield a ``LoaderBatch``; ``to_pose_batch`` makes this from it on the device (under a Trainer,
    ``PoseDataModule.on_after_batch_transfer``). Shapes (B = batch, K = joints, H x W = input size):

    - ``image`` ``(B, 3, H, W)`` float32, RGB normalised (``normalisation``: the ImageNet mean and std by default).
    - ``keypoints`` ``(B, K, 2)`` float32, (x, y) in crop pixels, pixel centres at integers.
    - ``visible`` ``(B, K)`` float32, 1 where the joint is annotated (and kept by the transform).
    - ``index`` ``(B,)`` int64, the sample's index into the dataset's records; evaluation
      de-duplicates by it (distributed padding repeats samples).
    - ``matrix`` ``(B, 2, 3)`` float32, image -> crop affine matrix.
    - ``inverse_matrix`` ``(B, 2, 3)`` float32, crop -> image; maps predictions back to image pixels.
    - ``center`` ``(B, 2)`` float32, person box centre (x, y) in image pixels.
    - ``scale`` ``(B, 2)`` float32, person box (w, h) / 200.
    - ``image_id`` ``(B,)`` int64; ``box_score`` ``(B,)`` float32; ``area`` ``(B,)`` float32.
    - ``headbox`` ``(B, 2, 2)`` float32, [[x1, y1], [x2, y2]] in image pixels, NaN where absent.

    Every float is float32 (float32 resolves image coordinates to ~1e-4 px; some accelerators,
    e.g. Apple MPS, have no float64). Lightning's true half precision ("16-true", "bf16-true")
    casts every float tensor of a batch, the matrices included, so map predictions back in
    float32 or use mixed precision.
    """

    image: torch.Tensor
    keypoints: torch.Tensor
    visible: torch.Tensor
    index: torch.Tensor
    matrix: torch.Tensor
    inverse_matrix: torch.Tensor
    center: torch.Tensor
    scale: torch.Tensor
    image_id: torch.Tensor
    box_score: torch.Tensor
    area: torch.Tensor
    headbox: torch.Tensor


class LoaderBatch(TypedDict):
    """What the loaders yield (worker side): ``to_pose_batch`` / ``PoseDataModule.pose_batch`` makes the ``PoseBatch``.

    - ``image`` ``(B, 3, H, W)`` uint8 RGB crops, a quarter of the bytes of the float32 input.
    - ``metadata`` ``(B, 3 K + 25)`` float32: per sample ``keypoints``, ``visible``, the colour gains ``(3,)`` of the
      augmentation (ones without), ``matrix``, ``inverse_matrix``, ``center``, ``scale``, ``box_score``, ``area``,
      ``headbox``, flattened in that order.
    - ``ids`` ``(B, 2)`` int64: ``index``, ``image_id``.

    Few tensors, because a worker hands each tensor over through its own shared-memory file descriptor
    (torch.multiprocessing's ``file_descriptor`` strategy): about 0.5 ms of the main process's time per tensor,
    measured with 13 tensors per batch, 3 are left.
    """

    image: torch.Tensor
    metadata: torch.Tensor
    ids: torch.Tensor


class EpochSampler(Sampler[tuple[int, int]]):
    """Yields ``(epoch, index)`` tuples: a (seed, epoch)-determined order, sharded over replicas.

    ``set_epoch(e)`` selects the epoch (Lightning calls it before every epoch); the order of
    epoch ``e`` is the same whether it is reached by counting or set directly, on every replica.
    With ``num_replicas > 1`` the order is padded (not ``drop_last``) or cut (``drop_last``) to a
    multiple of ``num_replicas`` and replica ``rank`` takes positions ``rank, rank + n, ...``.
    """

    def __init__(
        self,
        length: int,
        shuffle: bool,
        seed: int,
        num_replicas: int = 1,
        rank: int = 0,
        drop_last: bool = False,
    ) -> None:
        if length < 0:
            raise ValueError(f"length must be >= 0, got {length}")
        if seed < 0:
            raise ValueError(f"seed must be >= 0, got {seed}")
        if num_replicas < 1:
            raise ValueError(f"num_replicas must be >= 1, got {num_replicas}")
        if not 0 <= rank < num_replicas:
            raise ValueError(f"rank must be in [0, {num_replicas}), got {rank}")
        self.length = length
        self.shuffle = shuffle
        self.seed = seed
        self.num_replicas = num_replicas
        self.rank = rank
        self.drop_last = drop_last
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose order (and augmentation seeds) the next ``iter()`` yields."""
        if epoch < 0:
            raise ValueError(f"epoch must be >= 0, got {epoch}")
        self.epoch = epoch

    @property
    def total_size(self) -> int:
        """Positions over all replicas after padding or cutting."""
        return len(self) * self.num_replicas

    def __len__(self) -> int:
        if self.drop_last:
            return self.length // self.num_replicas
        return -(-self.length // self.num_replicas)

    def order(self, epoch: int) -> np.ndarray:
        """``(length,)`` int64: the full (unsharded, unpadded) order of ``epoch``."""
        if not self.shuffle:
            return np.arange(self.length, dtype=np.int64)
        rng = np.random.default_rng([_SHUFFLE_STREAM, self.seed, epoch])
        return rng.permutation(self.length).astype(np.int64)

    def __iter__(self) -> Iterator[tuple[int, int]]:
        # Built eagerly: a later set_epoch (next epoch) cannot change an iteration in progress.
        epoch = self.epoch
        order = self.order(epoch)
        if self.length > 0 and self.total_size > self.length:
            order = np.resize(order, self.total_size)  # repeats from the start, like DistributedSampler
        shard = order[: self.total_size][self.rank :: self.num_replicas]
        return iter([(epoch, int(i)) for i in shard])


class _WorkerSeeder:
    """``worker_init_fn``: seeds Python, numpy and torch in a worker from (seed, rank, worker id).

    Augmentations do not use these generators (they are seeded per sample), but any library
    code that does then behaves the same in every run. A class, not a closure, so it pickles
    under the ``spawn`` start method.
    """

    def __init__(self, seed: int, rank: int) -> None:
        self.seed = seed
        self.rank = rank

    def __call__(self, worker_id: int) -> None:
        state = np.random.SeedSequence([_WORKER_STREAM, self.seed, self.rank, worker_id]).generate_state(2)
        random.seed(int(state[0]))
        np.random.seed(int(state[0]))
        torch.manual_seed(int(state[0]) << 32 | int(state[1]))


# Per-sample float fields of LoaderBatch.metadata, in column order, with their per-sample shapes ("K" = joints).
_METADATA_FIELDS: tuple[tuple[str, tuple[int | str, ...]], ...] = (
    ("keypoints", ("K", 2)), ("visible", ("K",)), ("colour_gain", (3,)), ("matrix", (2, 3)),
    ("inverse_matrix", (2, 3)), ("center", (2,)), ("scale", (2,)), ("box_score", ()), ("area", ()),
    ("headbox", (2, 2)),
)
_ID_FIELDS = ("index", "image_id")


def _field_shapes(num_joints: int) -> list[tuple[str, tuple[int, ...]]]:
    return [(key, tuple(num_joints if d == "K" else int(d) for d in shape)) for key, shape in _METADATA_FIELDS]


def collate_pose_batch(samples: list[dict]) -> LoaderBatch:
    """Stack sample dicts into a ``LoaderBatch``: three tensors, whatever the number of fields."""
    count = len(samples)
    metadata = np.concatenate(
        [np.stack([sample[key] for sample in samples]).reshape(count, -1) for key, _ in _METADATA_FIELDS],
        axis=1, dtype=np.float32,
    )
    ids = np.array([[sample[key] for key in _ID_FIELDS] for sample in samples], dtype=np.int64)
    # default_collate stacks the crops straight into shared memory inside a worker (no copy when handed over).
    image = torch.utils.data.default_collate([sample["image"] for sample in samples])
    return LoaderBatch(image=image, metadata=torch.from_numpy(metadata), ids=torch.from_numpy(ids))


def to_pose_batch(batch: LoaderBatch, normalisation: str = "imagenet") -> PoseBatch:
    """A ``LoaderBatch``, wherever it now is, as the documented ``PoseBatch``: the uint8 crops normalised to
    float32 (``datamodules.transforms.normalise_images``) and the metadata split into views, on the batch's device."""
    metadata, ids = batch["metadata"], batch["ids"]
    count = metadata.shape[0]
    # Every field but keypoints (K, 2) and visible (K,) has a fixed width: the rest is 3 columns per joint.
    fixed = sum(int(np.prod(shape)) for _, shape in _field_shapes(0))
    fields: dict[str, torch.Tensor] = {}
    column = 0
    for key, shape in _field_shapes((metadata.shape[1] - fixed) // 3):
        width = int(np.prod(shape))
        # Contiguous copies (a few hundred bytes per sample): code may .view() them, as it could before.
        fields[key] = metadata[:, column:column + width].reshape(count, *shape).contiguous()
        column += width
    fields.update({key: ids[:, i].contiguous() for i, key in enumerate(_ID_FIELDS)})
    fields["image"] = normalise_images(batch["image"], fields.pop("colour_gain"), normalisation)
    return PoseBatch(**fields)  # type: ignore[typeddict-item]


class PoseDataModule(pl.LightningDataModule):
    """Top-down pose data for any method: ``PoseBatch`` batches from one named dataset.

    Train batches are augmented with ``augmentation`` (None = no augmentation) and shuffled by
    ``EpochSampler``; val and test batches are unaugmented and in record order. Under DDP the
    loaders shard themselves over ``trainer.world_size`` ranks, so build the Trainer with
    ``use_distributed_sampler=False`` (Lightning would otherwise wrap the sampler and its
    ``set_epoch`` would never reach it; see the module docstring).

    The keyword arguments are the run config's ``data:`` keys (benchmark/config.py takes its schema from this
    signature, docs/configuration.md); the runner adds ``input_size``, ``augmentation``, ``seed`` and ``convention``.

    Hyperparameters are not saved on the DataModule: the runner records the resolved config,
    and Lightning raises when module and DataModule hparams share a key with different values.
    """

    def __init__(
        self,
        *,
        name: str,
        root: str | Path,
        format: str = "mpii",
        input_size: tuple[int, int] = (256, 192),
        augmentation: Augmentation | None = None,
        batch_size: int = 32,
        val_batch_size: int | None = None,
        num_workers: int = 0,
        persistent_workers: bool = False,
        pin_memory: bool = False,
        seed: int = 0,
        test_split: str | None = None,
        val_boxes: str = "gt",
        detection_file: str | Path | None = None,
        detection_threshold: float = 0.0,
        shuffle: bool = True,
        max_samples: int | None = None,
        drop_last: bool = False,
        convention: str = DEFAULT_CONVENTION,
        normalisation: str = "imagenet",
        reduced_decode: bool = True,
        synth_train: int = 2000,
        synth_val: int = 500,
        synth_seed: int = 0,
    ) -> None:
        """
        Args:
            name: dataset name (``datamodules.datasets.DATASETS``).
            root: dataset root directory (layouts in the README).
            format: SynthPose only: "mpii" (16 joints) or "coco" (17 joints).
            input_size: crop size (H, W) in pixels.
            augmentation: training augmentation; None trains on unaugmented crops.
            batch_size: training batch size (per process).
            val_batch_size: validation/test batch size; None = ``batch_size``.
            num_workers: DataLoader worker processes; 0 loads in the main process.
            persistent_workers: keep workers alive between epochs (needs ``num_workers > 0``).
            pin_memory: pin batches for faster host-to-GPU copies.
            seed: drives the shuffle, the per-sample augmentation and the worker seeds.
            test_split: split for ``trainer.test``; None = "val".
            val_boxes: person boxes at val/test: "gt" or "detections" (COCO protocol).
            detection_file: detection results file for ``val_boxes="detections"``; None = the default.
            detection_threshold: drop detections scoring below this.
            shuffle: shuffle the training set (off for overfitting / debugging).
            max_samples: debug subset: keep only the first N records of every split (``val_dataset.records``
                too, so COCO evaluation must restrict COCOeval to those image ids).
            drop_last: drop the last incomplete training batch.
            convention: pixel-grid convention of the crops and COCO boxes (``pixelgrid``; the model's).
            normalisation: input normalisation (``datamodules.transforms.NORMALISATIONS``), applied once the batch
                is on the device (``on_after_batch_transfer``).
            reduced_decode: training crops only: decode a JPEG at 1/2, 1/4 or 1/8 of its resolution when the crop
                samples it at least that sparsely (``datamodules.topdown.TopDownDataset``). On by default: measured
                with ``python -m benchmark profile data`` on the MPII fixtures, 85% of training samples decode
                reduced and a sample costs 0.96x the decode+warp floor instead of 1.20x; the crops differ from full
                decoding by 1.8 intensity levels on average (25 at the 99th percentile), an anti-aliasing of crops
                that sample the image every 2 or more pixels, far below the photometric augmentation's changes.
                Keypoints and matrices are the same bits. Most COCO persons at 256x192 (1% of the fixture samples)
                and all SynthPose persons are too small for it: nothing changes there. Validation and test always
                decode at full resolution, so scores compare with reference pipelines.
            synth_train, synth_val, synth_seed: SynthPose only: the training and validation images and the
                generator seed ``prepare_data`` generates into ``root`` when it holds no SynthPose yet.
        """
        super().__init__()
        height, width = (int(v) for v in input_size)
        if height <= 0 or width <= 0:
            raise DatasetError(f"input_size must be positive (H, W), got {tuple(input_size)}")
        if batch_size < 1 or (val_batch_size is not None and val_batch_size < 1):
            raise DatasetError(f"batch sizes must be >= 1, got batch_size={batch_size}, "
                               f"val_batch_size={val_batch_size}")
        if num_workers < 0:
            raise DatasetError(f"num_workers must be >= 0, got {num_workers}")
        if persistent_workers and num_workers == 0:
            raise DatasetError("persistent_workers=True needs num_workers > 0")
        if name not in DATASETS:
            raise DatasetError(f"unknown dataset {name!r}; valid: {', '.join(DATASETS)}")
        if format not in FORMATS:
            raise DatasetError(f"unknown format {format!r}; valid: {', '.join(FORMATS)}")
        if max_samples is not None and max_samples < 1:
            raise DatasetError(f"max_samples must be >= 1 or None, got {max_samples}")
        if normalisation not in NORMALISATIONS:
            raise DatasetError(f"unknown normalisation {normalisation!r}; valid: {', '.join(NORMALISATIONS)}")
        self.dataset_name = name
        self.root = Path(root)
        self.input_size = (height, width)
        self.augmentation = augmentation
        self.batch_size = batch_size
        self.val_batch_size = val_batch_size or batch_size
        self.num_workers = num_workers
        self.persistent_workers = persistent_workers
        self.pin_memory = pin_memory
        self.seed = seed
        self.test_split = test_split or "val"
        self.val_boxes = val_boxes
        self.detection_file = detection_file
        self.detection_threshold = detection_threshold
        self.data_format = format
        self.shuffle = shuffle
        self.max_samples = max_samples
        self.drop_last = drop_last
        self.convention = get_convention(convention)
        self.normalisation = normalisation
        self.reduced_decode = reduced_decode
        self.synthpose = {"num_train": synth_train, "num_val": synth_val, "seed": synth_seed}
        self._datasets: dict[str, PoseDataset] = {}
        self._loaded: dict[str, TopDownDataset] = {}

    # ----------------------------------------------------------------- datasets
    def prepare_data(self) -> None:
        """Generate SynthPose into ``root`` when it is the dataset and ``root`` holds none yet (Lightning's hook
        for data that must exist before ``setup``). Only local rank 0 generates; other ranks wait for it.

        Format ``lsp`` needs only the LSP-extended form (``root/lsp``, written last: ``lsp/val/joints.mat``), so
        only that form is generated for it; the other formats need the MPII/COCO form (``synthpose.json`` last).
        """
        lsp = self.data_format == "lsp"
        ready = self.root / ("lsp/val/joints.mat" if lsp else "synthpose.json")
        if self.dataset_name != "synthpose" or ready.is_file():
            return
        if int(os.environ.get("LOCAL_RANK", "0")) != 0:
            deadline = time.monotonic() + SYNTH_WAIT_S
            while not ready.is_file():
                if time.monotonic() > deadline:
                    raise DatasetError(f"waited {SYNTH_WAIT_S} s for local rank 0 to generate SynthPose at {self.root}")
                time.sleep(1.0)
            return
        from datamodules.synthpose import generate_synthpose, generate_synthpose_lsp

        log.info(f"SynthPose{' (LSP-extended form)' if lsp else ''} not found at {self.root}: generating "
                 f"{self.synthpose['num_train']} + {self.synthpose['num_val']} images (seed {self.synthpose['seed']})")
        if lsp:
            generate_synthpose_lsp(self.root / "lsp", **self.synthpose, progress=sys.stderr.isatty())
        else:
            generate_synthpose(self.root, **self.synthpose, progress=sys.stderr.isatty())

    def _build(self, split: str, boxes: str) -> PoseDataset:
        height, width = self.input_size
        dataset = build_dataset(
            self.dataset_name, self.root, split, aspect_ratio=width / height, boxes=boxes,
            detection_file=self.detection_file, detection_threshold=self.detection_threshold, format=self.data_format,
            box_rule=self.convention.coco_gt_box,
        )
        if self.max_samples is not None:
            dataset = dataset.head(self.max_samples)
        return dataset

    def _prepare(self, role: str) -> None:
        if role in self._datasets:
            return
        if role == "train":
            dataset = self._build("train", "gt")
            augmentation = self.augmentation
        else:
            dataset = self._build("val" if role == "val" else self.test_split, self.val_boxes)
            augmentation = None
        if not dataset.records:
            # An empty split would train (or score) nothing and still exit 0 with a record.
            files = ", ".join(str(path) for path in dataset.annotation_files)
            raise DatasetError(f"{dataset.split} split of {self.dataset_name} has 0 persons ({role} data): {files}")
        if dataset.skeleton.name != self.skeleton.name:
            raise RuntimeError(f"{self.dataset_name} loaded as {dataset.skeleton.name}, expected {self.skeleton.name}")
        transform = TopDownTransform(self.input_size, dataset.skeleton, augmentation=augmentation, seed=self.seed,
                                     convention=self.convention)
        self._datasets[role] = dataset
        # Evaluation decodes at full resolution: its crops match the reference pipelines' byte for byte.
        self._loaded[role] = TopDownDataset(dataset.records, transform, self.reduced_decode and role == "train")

    def setup(self, stage: str | None = None) -> None:
        """Load the records the stage needs ("fit": train + val, "validate": val, "test": test)."""
        roles = {"fit": ("train", "val"), "validate": ("val",), "test": ("test",), "predict": ("test",),
                 None: ("train", "val")}
        if stage not in roles:
            raise ValueError(f"unknown stage {stage!r}; expected one of fit, validate, test, predict")
        for role in roles[stage]:
            self._prepare(role)

    @property
    def train_dataset(self) -> PoseDataset:
        """The training ``PoseDataset`` (records, skeleton, annotation files)."""
        return self._dataset("train")

    @property
    def val_dataset(self) -> PoseDataset:
        """The validation ``PoseDataset``, for evaluation: records, protocol, COCO GT path, MPII GT."""
        return self._dataset("val")

    @property
    def test_dataset(self) -> PoseDataset:
        """The test ``PoseDataset`` (``test_split``; the val split when None)."""
        return self._dataset("test")

    def _dataset(self, role: str) -> PoseDataset:
        if role not in self._datasets:
            raise RuntimeError(f"PoseDataModule has no {role} dataset yet: call setup() for a stage that loads it")
        return self._datasets[role]

    @property
    def skeleton(self) -> Skeleton:
        """The dataset's skeleton; known without loading (SynthPose: from ``format``), because models are built
        (with ``num_joints``) before Lightning calls ``setup()``."""
        return dataset_skeleton(self.dataset_name, self.data_format)

    @property
    def num_joints(self) -> int:
        return self.skeleton.num_joints

    @property
    def flip_permutation(self) -> np.ndarray:
        """``(K,)`` index array that swaps left and right joints."""
        return self.skeleton.flip_permutation

    # -------------------------------------------------------------- batches
    def pose_batch(self, batch: LoaderBatch) -> PoseBatch:
        """A batch of this DataModule's loaders, moved where it is used, as the ``PoseBatch`` models take
        (``to_pose_batch`` with this DataModule's normalisation). Code that iterates a loader outside a
        Lightning Trainer must call it; under a Trainer ``on_after_batch_transfer`` does."""
        return to_pose_batch(batch, self.normalisation)

    def on_after_batch_transfer(self, batch: LoaderBatch, dataloader_idx: int) -> PoseBatch:
        """Lightning's hook, on the device: normalise there, so workers hand over uint8 crops."""
        return self.pose_batch(batch)

    # -------------------------------------------------------------- dataloaders
    def _replicas(self) -> tuple[int, int]:
        trainer = self.trainer
        if trainer is None or trainer.world_size <= 1:
            return 1, 0
        # Private attribute: the only place Lightning keeps the flag (pytorch_lightning 2.x).
        if getattr(trainer._accelerator_connector, "use_distributed_sampler", False):
            raise RuntimeError(
                "PoseDataModule shards its own data: build the Trainer with use_distributed_sampler=False "
                "(Lightning's DistributedSamplerWrapper would hide set_epoch from EpochSampler)"
            )
        return trainer.world_size, trainer.global_rank

    def _loader(self, role: str, batch_size: int, shuffle: bool, drop_last: bool) -> DataLoader:
        self._prepare(role)
        dataset = self._loaded[role]
        num_replicas, rank = self._replicas()
        sampler = EpochSampler(len(dataset), shuffle=shuffle, seed=self.seed, num_replicas=num_replicas, rank=rank)
        return DataLoader(
            dataset,
            batch_size=batch_size,
            sampler=sampler,
            drop_last=drop_last,
            num_workers=self.num_workers,
            persistent_workers=self.persistent_workers,
            pin_memory=self.pin_memory,
            collate_fn=collate_pose_batch,
            worker_init_fn=_WorkerSeeder(self.seed, rank),
            generator=torch.Generator().manual_seed(self.seed),
        )

    def train_dataloader(self) -> DataLoader:
        loader = self._loader("train", self.batch_size, shuffle=self.shuffle, drop_last=self.drop_last)
        if self.trainer is not None:
            # Loader workers prefetch at iter(), before Lightning's set_epoch for the first epoch of a
            # fit: the sampler must already hold that epoch (the restored one after a resume).
            sampler = loader.sampler
            assert isinstance(sampler, EpochSampler)
            # Lightning declares the tracker as _ReadyCompletedTracker; an epoch loop's is a _ProcessedTracker.
            sampler.set_epoch(self.trainer.fit_loop.epoch_progress.current.processed)  # type: ignore[attr-defined]
        return loader

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", self.val_batch_size, shuffle=False, drop_last=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", self.val_batch_size, shuffle=False, drop_last=False)

    def predict_dataloader(self) -> DataLoader:
        """The test split, as ``test_dataloader``: ``trainer.predict(model, datamodule=...)`` gets ``PoseBatch``
        batches through ``on_after_batch_transfer``, which a loader passed alone would bypass."""
        return self._loader("test", self.val_batch_size, shuffle=False, drop_last=False)
