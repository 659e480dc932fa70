"""The batch rule: its arithmetic, the recipes' total batches, the record field, and 1 vs 2 gloo processes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch

from benchmark import batch_rule, run_record
from benchmark.batch_rule import resolve
from benchmark.config import ConfigError, available, load_config
from benchmark.run_record import read_record, validate_record
from benchmark.train import build_run, train

RECORDS = Path(__file__).parent / "data" / "leaderboard" / "records"


def _rule(total: int | None, mode: str, per_device: int, world: int, accumulate: int = 1, lr: float = 0.5):
    return resolve(total_batch=total, mode=mode, per_device=per_device, world_size=world, accumulate=accumulate,
                   lr=lr)


# ------------------------------------------------------------------------------ arithmetic

# (total, mode, per device, world, configured accumulation) -> (mode done, accumulate, effective, lr_scale);
# LR 0.5, so every scaled LR below is exact in binary.
CASES = [
    ((128, "accumulate", 32, 1, 1), ("accumulate", 4, 128, 1.0)),   # HRNet's 32 x 4 GPUs on one GPU
    ((128, "accumulate", 32, 2, 1), ("accumulate", 2, 128, 1.0)),
    ((128, "accumulate", 32, 1, 2), ("accumulate", 4, 128, 1.0)),   # the configured accumulation is replaced
    ((512, "accumulate", 64, 1, 1), ("accumulate", 8, 512, 1.0)),   # DeepPose's 64 x 8 on one GPU
    ((128, "accumulate", 48, 1, 1), ("scale_lr", 1, 48, 0.375)),    # 128 is no multiple of 48: scale instead
    ((128, "accumulate", 32, 8, 1), ("scale_lr", 1, 256, 2.0)),     # more than the total: no accumulation fits
    ((128, "scale_lr", 32, 1, 1), ("scale_lr", 1, 32, 0.25)),
    ((128, "scale_lr", 32, 1, 2), ("scale_lr", 2, 64, 0.5)),        # the configured accumulation counts
    ((128, "off", 32, 1, 1), ("off", 1, 32, 1.0)),
    ((128, "accumulate", 32, 2, 2), ("none", 2, 128, 1.0)),         # already the recipe's total
    ((6, "scale_lr", 6, 1, 1), ("none", 1, 6, 1.0)),
]


@pytest.mark.parametrize(("given", "expected"), CASES, ids=[str(given) for given, _ in CASES])
def test_the_rule_on_hand_computed_cases(given, expected):
    total, mode, per_device, world, accumulate = given
    rule = _rule(total, mode, per_device, world, accumulate)
    done, steps, effective, scale = expected
    assert (rule.mode, rule.accumulate, rule.effective, rule.lr_scale) == (done, steps, effective, scale)
    assert rule.lr == 0.5 * scale
    assert (rule.total_batch, rule.per_device, rule.world_size) == (total, per_device, world)
    assert rule.effective == rule.per_device * rule.world_size * rule.accumulate


def test_the_printed_line_says_what_was_done():
    head = "batch rule: the recipe assumes a total batch of 128; this run has "
    assert _rule(128, "accumulate", 32, 1, lr=1e-3).message() == (
        head + "32 per device x 1 device(s): accumulating 4 batches per optimiser step (total 128), LR unchanged "
        "(0.001)")
    assert _rule(128, "accumulate", 48, 1, lr=1e-3).message() == (
        head + "48 per device x 1 device(s): 128 is not a multiple of 48 x 1 = 48, so the LR is scaled instead of "
        "accumulating: total 48 instead of 128, LR 0.001 -> 0.000375 (x0.375, linear scaling rule, Goyal et al. "
        "2017); warm-up and LR milestones are in epochs, i.e. samples, so they stay")
    assert _rule(128, "off", 32, 1, lr=1e-3).message() == (
        head + "32 per device x 1 device(s): total 32 instead of 128; optim.batch_rule=off: nothing changed "
        "(LR 0.001, tuned for 128)")
    assert "trainer.accumulate_grad_batches=2 overridden" in _rule(128, "accumulate", 32, 1, 2).note


@pytest.mark.parametrize("mode", batch_rule.MODES)
def test_no_total_batch_means_no_rule(mode):
    assert _rule(None, mode, 32, 4) is None


@pytest.mark.parametrize(
    ("total", "mode", "per_device", "accumulate", "message"),
    [
        (128, "linear", 32, 1, "optim.batch_rule must be one of accumulate, scale_lr, off, got 'linear'"),
        (None, "sqrt", 32, 1, "optim.batch_rule must be one of"),
        (0, "accumulate", 32, 1, "optim.total_batch must be a positive integer, got 0"),
        (128, "accumulate", 0, 1, "data.batch_size must be a positive integer, got 0"),
        (128, "accumulate", 32, 0, "trainer.accumulate_grad_batches must be a positive integer, got 0"),
    ],
)
def test_bad_settings_name_the_key(total, mode, per_device, accumulate, message):
    with pytest.raises(ConfigError, match=message):
        _rule(total, mode, per_device, 1, accumulate)


# ------------------------------------------------------------------------------ recipes


@pytest.mark.parametrize("name", available("recipe"))
def test_paper_recipes_state_a_total_batch_that_one_device_reaches_by_accumulating(name):
    cfg = load_config([f"recipe={name}"])
    if name.startswith("demo_"):
        assert cfg.optim.total_batch is None  # SynthPose presets: nothing to pair the LR with
        return
    rule = _rule(cfg.optim.total_batch, cfg.optim.batch_rule, cfg.data.batch_size, 1, lr=cfg.optim.lr)
    assert rule.mode in ("accumulate", "none") and rule.effective == cfg.optim.total_batch
    assert rule.lr == cfg.optim.lr


# ------------------------------------------------------------------------------ run record


def _record() -> dict[str, Any]:
    """A valid leaderboard test record (world size 1) with the batch rule of 32 per device x 1 x 4 accumulated."""
    record = json.loads((RECORDS / "hourglass-8_mpii_s0.json").read_text())
    record["effective_batch"] = 128
    record["batch_rule"] = _rule(128, "accumulate", 32, 1).as_dict()
    return record


def test_records_with_and_without_a_batch_rule_are_valid():
    assert batch_rule.APPLIED == run_record.BATCH_RULE_MODES
    validate_record(_record())
    old = json.loads((RECORDS / "hourglass-8_mpii_s0.json").read_text())
    assert "batch_rule" not in old
    validate_record(old)
    validate_record({**old, "batch_rule": None})


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda r: r.update(batch_rule=[128]), "field 'batch_rule' must be null or an object with keys"),
        (lambda r: r["batch_rule"].pop("note"), "run record lacks field 'batch_rule.note'"),
        (lambda r: r["batch_rule"].update(accumulate=0),
         "field 'batch_rule.accumulate' must be a positive integer, got 0"),
        (lambda r: r["batch_rule"].update(world_size=True), "field 'batch_rule.world_size' must be a positive integer"),
        (lambda r: r["batch_rule"].update(lr="1e-3"), "field 'batch_rule.lr' must be a positive number, got '1e-3'"),
        (lambda r: r["batch_rule"].update(lr_scale=0.0), "field 'batch_rule.lr_scale' must be a positive number"),
        (lambda r: r["batch_rule"].update(mode="linear"),
         "field 'batch_rule.mode' must be one of accumulate, scale_lr, off, none"),
        (lambda r: r["batch_rule"].update(note=3), "field 'batch_rule.note' must be a string, got 3"),
        (lambda r: r["batch_rule"].update(effective=64),
         "field 'batch_rule.effective' must be per_device x world_size x accumulate = 128, got 64"),
        (lambda r: r["batch_rule"].update(per_device=16, effective=64),
         r"field 'batch_rule.effective' \(64\) differs from 'effective_batch' \(128\)"),
        (lambda r: r["batch_rule"].update(world_size=2, accumulate=2),
         r"field 'batch_rule.world_size' \(2\) differs from 'world_size' \(1\)"),
    ],
)
def test_a_malformed_batch_rule_is_rejected_naming_the_field(change, message, tmp_path):
    record = _record()
    change(record)
    with pytest.raises(ValueError, match=message):
        validate_record(record)
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(record))
    with pytest.raises(ValueError, match=f"{path}: .*{message}"):
        read_record(path)


# ------------------------------------------------------------------------------ runs


def _overrides(root: Path, tmp_path: Path, devices: int, *extra: str) -> list[str]:
    strategy = ["trainer.strategy=ddp_spawn"] if devices > 1 else []
    return [
        "method=simplebaseline-tiny", f"data.root={root}", "data.max_samples=16", "data.batch_size=4",
        "trainer.accelerator=cpu", f"trainer.devices={devices}", *strategy, "trainer.max_epochs=1",
        "trainer.enable_progress_bar=false", "test_after_fit=false", "model.all_protocols=false",
        "optim.total_batch=8", f"run_name=w{devices}", f"output_dir={tmp_path / 'runs'}",
        f"results_dir={tmp_path / 'results'}", *extra,
    ]


def test_the_rule_reaches_the_optimiser_and_the_trainer_before_fit(synthpose_root, tmp_path, capsys):
    run = build_run(load_config(_overrides(synthpose_root, tmp_path, 1, "optim.batch_rule=scale_lr")))
    assert run.batch_rule.mode == "scale_lr" and run.batch_rule.lr_scale == 0.5
    assert run.model.hparams.lr == run.batch_rule.lr == 0.5e-3 and run.trainer.accumulate_grad_batches == 1
    run = build_run(load_config(_overrides(synthpose_root, tmp_path, 1)))
    assert run.model.hparams.lr == 1e-3 and run.trainer.accumulate_grad_batches == 2
    assert capsys.readouterr().out.count("batch rule: ") == 2
    # Testing a checkpoint (evaluate) trains nothing: no rule, nothing printed.
    run = build_run(load_config(_overrides(synthpose_root, tmp_path, 1)), fitting=False)
    assert run.batch_rule is None and run.trainer.accumulate_grad_batches == 1
    assert "batch rule" not in capsys.readouterr().out


def _checkpoint(run_dir: Path) -> dict[str, Any]:
    # Under ddp_spawn the fit ran in child processes; the checkpoint rank 0 wrote holds its loop state.
    return torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)


@pytest.mark.slow
def test_one_process_accumulates_what_two_gloo_processes_batch(synthpose_root, tmp_path, capsys):
    one = train(load_config(_overrides(synthpose_root, tmp_path, 1)))
    two = train(load_config(_overrides(synthpose_root, tmp_path, 2)))
    out = capsys.readouterr().out
    head = "batch rule: the recipe assumes a total batch of 8; this run has 4 per device x "
    assert head + "1 device(s): accumulating 2 batches per optimiser step (total 8), LR unchanged (0.001)\n" in out
    assert head + "2 device(s): total 4 x 2 = 8 as assumed, nothing changed (LR 0.001)\n" in out
    assert out.count("batch rule: ") == 2  # rank zero only; the spawned processes do not build the run

    first, second = read_record(one.record_path), read_record(two.record_path)
    common = {"total_batch": 8, "per_device": 4, "effective": 8, "lr": 1e-3, "lr_scale": 1.0}
    assert first["batch_rule"] == {**common, "world_size": 1, "accumulate": 2, "mode": "accumulate",
                                   "note": "accumulating 2 batches per optimiser step (total 8), LR unchanged (0.001)"}
    assert second["batch_rule"] == {**common, "world_size": 2, "accumulate": 1, "mode": "none",
                                    "note": "total 4 x 2 = 8 as assumed, nothing changed (LR 0.001)"}
    assert first["effective_batch"] == second["effective_batch"] == 8
    assert (first["world_size"], second["world_size"]) == (1, 2)

    # 16 samples, 8 per optimiser step: 2 steps, whether as 4 batches of 4 accumulated in pairs on one
    # process or as 2 batches of 4 on each of two; the LR schedule is sized in the same steps.
    a, b = _checkpoint(one.run_dir), _checkpoint(two.run_dir)
    assert a["global_step"] == b["global_step"] == first["global_step"] == 2
    assert a["lr_schedulers"][0]["lr_lambdas"][0]["steps_per_epoch"] == 2
    assert b["lr_schedulers"][0]["lr_lambdas"][0]["steps_per_epoch"] == 2
    assert a["optimizer_states"][0]["param_groups"][0]["initial_lr"] == 1e-3
    assert a["posebench"]["batch_rule"] == first["batch_rule"] and b["posebench"]["batch_rule"] == second["batch_rule"]

    # A resumed run on the same world size applies the same rule and goes on in the same steps.
    resumed = train(load_config(_overrides(synthpose_root, tmp_path, 1, "resume=last", "trainer.max_epochs=2")))
    assert resumed.run_dir == one.run_dir and resumed.run.batch_rule == one.run.batch_rule
    assert resumed.run.trainer.global_step == 4
