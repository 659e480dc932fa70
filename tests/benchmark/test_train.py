"""The runner end to end on tiny SynthPose: run record, resume == uninterrupted, evaluate, RNG state."""

from __future__ import annotations

import hashlib
import random

import cv2
import numpy as np
import pytest
import pytorch_lightning as pl
import torch

from benchmark.config import config_hash, load_config
from benchmark.gallery import gallery_size_px
from benchmark.run_record import read_record
from benchmark.train import (
    RunError,
    build_run,
    collect_rng_state,
    evaluate,
    restore_rng_state,
    train,
)
from datamodules.datasets import build_dataset
from datamodules.synthpose import generate_synthpose


@pytest.fixture(scope="module")
def synth_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("synthpose")
    generate_synthpose(root, num_train=6, num_val=4, seed=0, progress=False)
    return root


def _overrides(root, tmp_path, *extra: str) -> list[str]:
    return [
        "method=simplebaseline-tiny", f"data.root={root}", "data.max_samples=7", "data.batch_size=4",
        "trainer.accelerator=cpu", "trainer.devices=1", "trainer.enable_progress_bar=false",
        "trainer.log_every_n_steps=1", f"output_dir={tmp_path / 'runs'}", f"results_dir={tmp_path / 'results'}",
        "seed=3", *extra,
    ]


class _StopAfterFirstEpoch(pl.Callback):
    """Interrupts fitting at the end of epoch 0, after its checkpoint is written."""

    def on_train_epoch_end(self, trainer, pl_module):
        trainer.should_stop = True


def _weights(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def test_data_and_trainer_sections_reach_their_constructors_unchanged(synth_root, tmp_path):
    cfg = load_config(_overrides(synth_root, tmp_path, "trainer.max_steps=3", "trainer.limit_test_batches=2",
                                 "trainer.max_epochs=10", "trainer.check_val_every_n_epoch=10", "data.drop_last=true",
                                 "data.normalisation=centred"))
    run = build_run(cfg)
    assert (run.trainer.max_steps, run.trainer.limit_test_batches, run.trainer.num_sanity_val_steps) == (3, 2, 0)
    data = run.datamodule
    assert (data.batch_size, data.drop_last, data.normalisation, data.max_samples, data.seed) == (4, True, "centred",
                                                                                                  7, 3)
    run.trainer.fit(run.model, datamodule=data)
    # 7 samples, batches of 4, the last dropped: one step per epoch, so max_steps=3 ends the fit after 3 of 10 epochs.
    assert (run.trainer.global_step, run.trainer.current_epoch) == (3, 3)


def test_rng_state_round_trips_and_survives_weights_only(tmp_path):
    random.seed(5), np.random.seed(5), torch.manual_seed(5)
    state = collect_rng_state()
    expected = (random.random(), np.random.rand(), torch.rand(1).item())
    torch.save({"rng_state": state}, tmp_path / "s.pt")
    loaded = torch.load(tmp_path / "s.pt", weights_only=True)["rng_state"]
    random.seed(0), np.random.seed(0), torch.manual_seed(0)
    restore_rng_state(loaded)
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == expected


@pytest.mark.slow
def test_resumed_run_equals_uninterrupted_run_and_writes_records(synth_root, tmp_path):
    # A loader worker process: the resumed epoch must still get its own shuffle and augmentation.
    workers = "data.num_workers=1"
    full = train(load_config(_overrides(synth_root, tmp_path, "run_name=full", "trainer.max_epochs=2", workers)))
    first = train(load_config(_overrides(synth_root, tmp_path, "run_name=cut", "trainer.max_epochs=2", workers,
                                         "test_after_fit=false")), extra_callbacks=(_StopAfterFirstEpoch(),))
    assert first.run.trainer.current_epoch == 1  # it really stopped after one of two epochs
    resumed = train(load_config(_overrides(synth_root, tmp_path, "run_name=cut", "trainer.max_epochs=2", workers,
                                           "resume=last")))
    assert resumed.run_dir == first.run_dir
    assert resumed.run.trainer.global_step == full.run.trainer.global_step
    a, b, c = _weights(full.run.model), _weights(resumed.run.model), _weights(first.run.model)
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)  # one epoch less is a different model
    assert resumed.results == full.results
    assert 0.0 <= full.results["test"]["PCKh/Mean"] <= 100.0

    # The run record: schema-valid, with the config hash, seed, metrics and dataset fingerprint.
    record = read_record(full.record_path)
    cfg = load_config(_overrides(synth_root, tmp_path, "run_name=full", "trainer.max_epochs=2", workers))
    assert record["config_hash"] == config_hash(cfg)
    assert record["seed"] == 3 and record["method"] == "simplebaseline" and record["variant"] == "simplebaseline-tiny"
    assert record["metrics"]["test"]["PCKh/Mean"] == full.results["test"]["PCKh/Mean"]
    assert "PCKh/l_wrist" in record["metrics"]["val"]
    val = build_dataset("synthpose", synth_root, "val", format="mpii")
    assert record["dataset"]["sizes"]["val"] == min(7, len(val))
    assert record["best"]["metric"] == "val/PCKh/Mean"
    assert record["input_size"] == [128, 96] and record["protocol"]["decoder"] == "quarter"
    assert record["model"]["params"] == sum(p.numel() for p in full.run.model.parameters())
    assert record["wall_time_s"] > 0 and record["device_hours"] == pytest.approx(record["wall_time_s"] / 3600)
    assert set(record["git"]) == {"commit", "dirty"} and record["packages"]["torch"] == torch.__version__
    assert record["world_size"] == 1 and record["effective_batch"] == 4
    assert record["throughput"]["train_images_per_s"] > 0 and record["throughput"]["test_images_per_s"] > 0
    assert record["peak_memory"]["host_rss_bytes"] > 10**7 and record["peak_memory"]["gpu_allocated_bytes"] is None
    last_ckpt = full.run_dir / "checkpoints" / "last.ckpt"
    digest = hashlib.sha256(last_ckpt.read_bytes()).hexdigest()
    assert record["checkpoint"] == {"path": str(last_ckpt), "sha256": digest, "bytes": last_ckpt.stat().st_size}
    assert record["wandb"] is None  # logger=csv
    # The prediction gallery beside the record: best row and worst row of the test split.
    gallery = full.record_path.parent / record["gallery"]
    assert gallery.name == f"{record['run_id']}_gallery.png"
    height, width = cv2.imread(str(gallery)).shape[:2]
    assert (width, height) == gallery_size_px(4, (256, 192))
    # Every decoder x flip-test protocol, scored from the test pass; the configured one is the headline.
    protocols = {(p["decoder"], p["flip_test"]): p for p in record["protocols"]}
    assert sorted(protocols) == [(d, f) for d in ("argmax", "dark", "quarter") for f in (False, True)]
    assert {p["stage"] for p in record["protocols"]} == {"test"}
    assert protocols[("quarter", True)]["metrics"] == record["metrics"]["test"]

    # evaluate: the checkpoint's own model reproduces the test metrics; another method fails clearly.
    ckpt = full.run_dir / "checkpoints" / "last.ckpt"
    assert torch.load(ckpt, weights_only=True)["epoch"] == 1  # refreshed every epoch, not only on a new best
    scored = evaluate(_overrides(synth_root, tmp_path, f"ckpt={ckpt}")[1:])
    assert scored.results["test"] == full.results["test"]
    # A protocol scored in the one pass equals a separate evaluation configured with that protocol.
    alone = evaluate(_overrides(synth_root, tmp_path, f"ckpt={ckpt}", "model.decoder=argmax", "model.flip_test=false",
                                "model.all_protocols=false")[1:])
    assert alone.results["test"] == protocols[("argmax", False)]["metrics"]
    assert alone.run.evaluation.protocol_results == {}
    with pytest.raises(RunError, match=r"holds a 'simplebaseline' model .* method=hourglass-tiny"):
        evaluate(_overrides(synth_root, tmp_path, f"ckpt={ckpt}", "method=hourglass-tiny"))


def test_missing_dataset_stops_at_once_naming_the_path(tmp_path, capsys):
    from benchmark.cli import main

    missing = tmp_path / "no_mpii"
    assert main(["train", "recipe=hourglass8_mpii_256", f"data.root={missing}", f"output_dir={tmp_path}"]) == 2
    err = capsys.readouterr().err
    assert f"{missing}/annot/train.json" in err and "expected layout" in err and "to get it" in err
    assert not any(tmp_path.rglob("*.ckpt"))


@pytest.mark.slow
def test_cli_recipe_on_synthpose_prints_a_failed_verdict_and_exits_1(synth_root, tmp_path, capsys):
    from benchmark.cli import main

    overrides = [o for o in _overrides(synth_root, tmp_path) if not o.startswith("method=")]
    code = main(["train", "recipe=hourglass8_mpii_256", "data=synthpose", "method=hourglass-tiny",
                 "model.input_size=[64,64]", "trainer.max_epochs=1", "data.batch_size=4", *overrides])
    out = capsys.readouterr().out
    assert code == 1  # an untrained 2-stack hourglass on SynthPose is far from MPII's 88.78
    assert "verdict: NOT REPRODUCED: test/PCKh/Mean" in out and "88.78 +- 1.0" in out
    (path,) = (tmp_path / "results").glob("*.json")
    record = read_record(path)
    assert record["recipe"] == "hourglass8_mpii_256" and record["reference"]["reproduced"] is False
    assert record["reference"]["ours"] == record["metrics"]["test"]["PCKh/Mean"]
    assert record["config"]["model"]["variant"] == "hourglass-tiny"


@pytest.mark.parametrize("limit", ["1.0", "0.5", "1"])
def test_lr_schedule_is_sized_like_lightnings_epoch(synth_root, tmp_path, limit):
    # The schedule is sized from a loader of the data module's own (models/base.py), not Lightning's.
    result = train(load_config(_overrides(synth_root, tmp_path, "trainer.max_epochs=1", "data.batch_size=2",
                                          f"trainer.limit_train_batches={limit}", "test_after_fit=false",
                                          "write_record=false")))
    trainer = result.run.trainer
    schedule = trainer.lr_scheduler_configs[0].scheduler.lr_lambdas[0]
    assert trainer.num_training_batches == {"1.0": 4, "0.5": 2, "1": 1}[limit]  # 7 samples, batches of 2
    assert schedule.steps_per_epoch == trainer.num_training_batches == trainer.global_step


def test_unavailable_imagenet_weights_stop_the_cli_with_one_line(tmp_path, capsys, monkeypatch):
    from benchmark.cli import main
    from models import pretrained

    # No cached weights and the hub offline: one line naming the weights and the switch, exit 2, nothing run.
    monkeypatch.setattr(pretrained.hub_constants, "HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    code = main(["train", "method=simplebaseline-tiny", "model.kwargs.pretrained=true", f"output_dir={tmp_path}",
                 f"data.root={tmp_path / 'synth'}", "data.synth_train=4", "data.synth_val=2"])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: ") and "Traceback" not in err
    assert "resnet18" in err and "model.kwargs.pretrained=false" in err
    assert not any(tmp_path.rglob("*.ckpt"))
