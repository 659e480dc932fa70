"""EpochSampler order/sharding and the PoseDataModule batch contract on a tiny SynthPose set."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
from torch.utils.data import DistributedSampler

from datamodules.datamodule import EpochSampler, LoaderBatch, PoseBatch, PoseDataModule, to_pose_batch
from datamodules.records import DatasetError
from datamodules.synthpose import generate_synthpose
from datamodules.transforms import HRNET_COCO

# --------------------------------------------------------------------------- EpochSampler


def _indices(sampler: EpochSampler) -> list[int]:
    return [index for _, index in sampler]


def test_sampler_yields_epoch_index_tuples():
    sampler = EpochSampler(6, shuffle=True, seed=1)
    sampler.set_epoch(4)
    items = list(sampler)
    assert all(isinstance(item, tuple) and len(item) == 2 for item in items)
    assert {epoch for epoch, _ in items} == {4}
    assert sorted(index for _, index in items) == [0, 1, 2, 3, 4, 5]


def test_sampler_order_depends_on_seed_and_epoch_only():
    a, b = EpochSampler(50, shuffle=True, seed=7), EpochSampler(50, shuffle=True, seed=7)
    assert _indices(a) == _indices(b)
    epoch0 = _indices(a)
    a.set_epoch(1)
    assert _indices(a) != epoch0
    assert _indices(a) == _indices(a)  # iterating again does not advance anything
    assert _indices(EpochSampler(50, shuffle=True, seed=8)) != epoch0


def test_set_epoch_on_fresh_sampler_reproduces_the_epoch():
    # A resumed run builds a fresh sampler and Lightning calls set_epoch(restored epoch).
    running = EpochSampler(40, shuffle=True, seed=3)
    orders = []
    for epoch in range(4):
        running.set_epoch(epoch)
        orders.append(list(running))
    fresh = EpochSampler(40, shuffle=True, seed=3)
    fresh.set_epoch(3)
    assert list(fresh) == orders[3]
    assert orders[3] != orders[0]


def test_unshuffled_order_is_record_order():
    sampler = EpochSampler(5, shuffle=False, seed=0)
    sampler.set_epoch(2)
    assert list(sampler) == [(2, 0), (2, 1), (2, 2), (2, 3), (2, 4)]


def test_sharding_hand_computed():
    # 5 samples over 3 replicas: padded to 6 with the first index; rank r takes r, r + 3.
    shards = [_indices(EpochSampler(5, shuffle=False, seed=0, num_replicas=3, rank=r)) for r in range(3)]
    assert shards == [[0, 3], [1, 4], [2, 0]]
    dropped = [
        _indices(EpochSampler(5, shuffle=False, seed=0, num_replicas=3, rank=r, drop_last=True)) for r in range(3)
    ]
    assert dropped == [[0], [1], [2]]


@pytest.mark.parametrize("length", [0, 1, 2, 7, 10])
@pytest.mark.parametrize("replicas", [1, 2, 3])
@pytest.mark.parametrize("drop_last", [False, True])
def test_unshuffled_shards_match_torch_distributed_sampler(length, replicas, drop_last):
    for rank in range(replicas):
        ours = EpochSampler(length, shuffle=False, seed=0, num_replicas=replicas, rank=rank, drop_last=drop_last)
        torch_sampler = DistributedSampler(
            range(length), num_replicas=replicas, rank=rank, shuffle=False, drop_last=drop_last
        )
        assert _indices(ours) == list(torch_sampler)
        assert len(ours) == len(torch_sampler) == len(list(ours))


def test_shuffled_shards_over_two_replicas_cover_and_pad():
    length = 11
    full = EpochSampler(length, shuffle=True, seed=5)
    full.set_epoch(2)
    order = _indices(full)
    shards = []
    for rank in range(2):
        sampler = EpochSampler(length, shuffle=True, seed=5, num_replicas=2, rank=rank)
        sampler.set_epoch(2)
        assert len(sampler) == 6 == len(list(sampler))
        assert {epoch for epoch, _ in sampler} == {2}
        shards.append(_indices(sampler))
    # Every replica shares the epoch's permutation: interleaving the shards gives it back, padded
    # with its first element (12 = 11 + 1 slots).
    interleaved = [index for pair in zip(*shards, strict=True) for index in pair]
    assert interleaved == order + order[:1]
    assert set(shards[0]) | set(shards[1]) == set(range(length))
    assert set(shards[0]) & set(shards[1]) == {order[0]}
    # drop_last: 5 each, disjoint, one sample left out.
    dropped = [_indices(EpochSampler(length, True, 5, num_replicas=2, rank=r, drop_last=True)) for r in range(2)]
    assert [len(s) for s in dropped] == [5, 5]
    assert not set(dropped[0]) & set(dropped[1])


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(length=-1), "length"),
        (dict(seed=-1), "seed"),
        (dict(num_replicas=0), "num_replicas"),
        (dict(num_replicas=2, rank=2), r"rank must be in \[0, 2\), got 2"),
        (dict(rank=-1), "rank"),
    ],
)
def test_sampler_rejects_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        EpochSampler(**(dict(length=4, shuffle=True, seed=0) | kwargs))

# --------------------------------------------------------------------------- PoseDataModule

INPUT_SIZE = (48, 36)


@pytest.fixture(scope="module")
def synth_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("synthpose")
    generate_synthpose(root, num_train=6, num_val=3, seed=0, progress=False)
    return root


def _module(root: Path, **kwargs) -> PoseDataModule:
    arguments = dict(name="synthpose", root=root, input_size=INPUT_SIZE, batch_size=4, seed=11)
    return PoseDataModule(**(arguments | kwargs))


def _epoch_batches(loader, epoch: int) -> list[dict]:
    loader.sampler.set_epoch(epoch)
    return [to_pose_batch(batch) for batch in loader]


@pytest.mark.parametrize(("data_format", "joints"), [("mpii", 16), ("coco", 17)])
def test_batch_contract(synth_root, data_format, joints):
    module = _module(synth_root, format=data_format, augmentation=HRNET_COCO, val_batch_size=3)
    module.setup("fit")
    assert module.num_joints == joints == module.skeleton.num_joints
    assert module.skeleton.name == data_format
    np.testing.assert_array_equal(module.flip_permutation, module.skeleton.flip_permutation)
    height, width = INPUT_SIZE
    for loader, size in ((module.train_dataloader(), 4), (module.val_dataloader(), 3)):
        loader_batch = next(iter(loader))
        # What the loader hands over: uint8 crops and packed metadata, 3 tensors.
        assert set(loader_batch) == set(LoaderBatch.__annotations__)
        assert loader_batch["image"].shape == (size, 3, height, width) and loader_batch["image"].dtype == torch.uint8
        assert loader_batch["metadata"].shape == (size, 3 * joints + 25)
        assert loader_batch["metadata"].dtype == torch.float32
        assert loader_batch["ids"].shape == (size, 2) and loader_batch["ids"].dtype == torch.int64
        batch = module.pose_batch(loader_batch)
        assert set(batch) == set(PoseBatch.__annotations__)
        expected = {
            "image": ((size, 3, height, width), torch.float32),
            "keypoints": ((size, joints, 2), torch.float32),
            "visible": ((size, joints), torch.float32),
            "index": ((size,), torch.int64),
            "matrix": ((size, 2, 3), torch.float32),
            "inverse_matrix": ((size, 2, 3), torch.float32),
            "center": ((size, 2), torch.float32),
            "scale": ((size, 2), torch.float32),
            "image_id": ((size,), torch.int64),
            "box_score": ((size,), torch.float32),
            "area": ((size,), torch.float32),
            "headbox": ((size, 2, 2), torch.float32),
        }
        for key, (shape, dtype) in expected.items():
            assert tuple(batch[key].shape) == shape, key
            assert batch[key].dtype == dtype, key
        assert set(batch["visible"].unique().tolist()) <= {0.0, 1.0}
    # Every record of the val split appears once, in order.
    order = torch.cat([b["ids"][:, 0] for b in module.val_dataloader()]).tolist()
    assert order == list(range(len(module.val_dataset.records)))


def test_workers_give_bitwise_the_same_batches(synth_root):
    kwargs = dict(augmentation=HRNET_COCO, max_samples=8)
    serial = _module(synth_root, num_workers=0, **kwargs)
    parallel = _module(synth_root, num_workers=2, persistent_workers=True, **kwargs)
    serial.setup("fit")
    parallel.setup("fit")
    serial_loader, parallel_loader = serial.train_dataloader(), parallel.train_dataloader()
    epochs = []
    for epoch in (0, 1):
        expected = _epoch_batches(serial_loader, epoch)
        got = _epoch_batches(parallel_loader, epoch)  # the same persistent workers both epochs
        assert len(expected) == len(got) == 2
        for a, b in zip(expected, got, strict=True):
            for key in a:
                torch.testing.assert_close(a[key], b[key], rtol=0, atol=0, equal_nan=True)
        epochs.append(expected)
    first, second = (torch.cat([b["index"] for b in batches]) for batches in epochs)
    assert sorted(first.tolist()) == sorted(second.tolist()) == list(range(8))
    assert not torch.equal(first, second)
    # The same record is augmented differently in the two epochs.
    images = [{int(i): img for b in batches for i, img in zip(b["index"], b["image"], strict=True)}
              for batches in epochs]
    assert not torch.equal(images[0][0], images[1][0])


def test_inverse_matrix_maps_back_to_record_keypoints(synth_root):
    module = _module(synth_root, format="coco", augmentation=HRNET_COCO)
    module.setup("validate")
    records = module.val_dataset.records
    checked = 0
    for batch in map(module.pose_batch, module.val_dataloader()):
        inverse = batch["inverse_matrix"].double()
        back = torch.einsum("bij,bkj->bki", inverse[:, :, :2], batch["keypoints"].double()) + inverse[:, None, :, 2]
        truth = np.stack([records[i].keypoints for i in batch["index"].tolist()])
        annotated = np.stack([records[i].visible for i in batch["index"].tolist()]).astype(bool)
        error = np.abs(back.numpy() - truth)[annotated]
        assert error.max() < 0.01
        checked += int(annotated.sum())
    assert checked > 0


def test_train_loader_length_and_drop_last(synth_root):
    module = _module(synth_root, max_samples=6)
    module.setup("fit")
    assert len(module.train_dataset.records) == 6
    assert len(module.train_dataloader()) == 2  # 4 + 2
    dropped = _module(synth_root, max_samples=6, drop_last=True)
    dropped.setup("fit")
    assert len(dropped.train_dataloader()) == 1
    assert [len(dropped.pose_batch(b)["index"]) for b in dropped.train_dataloader()] == [4]


def test_loaders_shard_over_the_trainers_world(synth_root):
    module = _module(synth_root, max_samples=5)
    module.setup("fit")
    module.trainer = SimpleNamespace(
        world_size=2, global_rank=1, _accelerator_connector=SimpleNamespace(use_distributed_sampler=False)
    )
    sampler = module.val_dataloader().sampler
    assert (sampler.num_replicas, sampler.rank, len(sampler)) == (2, 1, 3)
    assert [index for _, index in sampler] == [1, 3, 0]
    module.trainer._accelerator_connector.use_distributed_sampler = True
    with pytest.raises(RuntimeError, match="use_distributed_sampler=False"):
        module.train_dataloader()


def test_properties_before_setup_and_bad_arguments(synth_root):
    with pytest.raises(RuntimeError, match="setup"):
        _ = _module(synth_root).val_dataset
    with pytest.raises(DatasetError, match="persistent_workers"):
        _module(synth_root, persistent_workers=True)
    with pytest.raises(DatasetError, match="input_size"):
        _module(synth_root, input_size=(0, 4))
    with pytest.raises(DatasetError, match="unknown format 'h36m'; valid: mpii, coco"):
        _module(synth_root, format="h36m")


def test_prepare_data_generates_synthpose_once_with_the_configured_counts(tmp_path):
    module = _module(tmp_path / "synth", synth_train=3, synth_val=2, synth_seed=4)
    module.prepare_data()
    manifest = json.loads((tmp_path / "synth" / "synthpose.json").read_text())
    before = (tmp_path / "synth" / "synthpose.json").stat().st_mtime_ns
    module.prepare_data()  # already there: nothing is regenerated
    assert (tmp_path / "synth" / "synthpose.json").stat().st_mtime_ns == before
    counts = manifest["counts"]
    assert (manifest["seed"], counts["train"]["images"], counts["val"]["images"]) == (4, 3, 2)


class _Recorder(pl.LightningModule):
    """Records the sample indices and a checksum of the images of every training epoch."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(()))
        self.seen: dict[int, list[tuple[int, float]]] = {}

    def training_step(self, batch, batch_idx):
        assert batch["image"].dtype == torch.float32  # on_after_batch_transfer made the PoseBatch
        sums = batch["image"].double().sum(dim=(1, 2, 3)).tolist()
        self.seen.setdefault(self.current_epoch, []).extend(zip(batch["index"].tolist(), sums, strict=True))
        return self.weight * batch["image"].mean()

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.0)


def _trainer(max_epochs: int, root: Path) -> pl.Trainer:
    return pl.Trainer(
        max_epochs=max_epochs, accelerator="cpu", devices=1, logger=False, enable_progress_bar=False,
        enable_model_summary=False, enable_checkpointing=False, limit_val_batches=0, default_root_dir=root,
    )


@pytest.mark.filterwarnings("ignore:You passed in a `val_dataloader` but have no `validation_step`")
@pytest.mark.parametrize("workers", [0, 1])
def test_resumed_run_replays_the_resumed_epoch(synth_root, tmp_path, workers):
    # The Lightning trap: a resumed run must see epoch 2's order and augmentations, not epoch 0's;
    # with a worker the loader prefetches at iter(), before Lightning's set_epoch.
    kwargs = dict(augmentation=HRNET_COCO, max_samples=6, batch_size=3, num_workers=workers)
    straight = _Recorder()
    _trainer(3, tmp_path).fit(straight, datamodule=_module(synth_root, **kwargs))
    interrupted = _Recorder()
    trainer = _trainer(2, tmp_path)
    trainer.fit(interrupted, datamodule=_module(synth_root, **kwargs))
    checkpoint = tmp_path / "epoch2.ckpt"
    trainer.save_checkpoint(checkpoint)
    resumed = _Recorder()
    _trainer(3, tmp_path).fit(resumed, datamodule=_module(synth_root, **kwargs), ckpt_path=checkpoint)
    assert list(resumed.seen) == [2]
    assert resumed.seen[2] == straight.seen[2]
    assert [i for i, _ in straight.seen[2]] != [i for i, _ in straight.seen[0]]
    assert dict(straight.seen[2]) != dict(straight.seen[0])  # augmentations follow the epoch too
    assert interrupted.seen[1] == straight.seen[1]


def test_loading_leaves_the_global_torch_rng_alone(synth_root):
    # A DataLoader without its own generator draws worker seeds from the global RNG at every iter().
    module = _module(synth_root, max_samples=4)
    module.setup("fit")
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    list(module.train_dataloader())
    assert torch.equal(torch.rand(3), expected)
