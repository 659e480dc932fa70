"""``rerun``: a run record alone rebuilds its run (same config, seed, data), refuses other data."""

from __future__ import annotations

import json

import pytest
import torch

from benchmark.cli import main
from benchmark.commands.rerun import RerunError, config_from_record, rerun
from benchmark.config import ConfigError, load_config, to_dict
from benchmark.run_record import read_record
from benchmark.train import train
from datamodules.synthpose import generate_synthpose


@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    """A finished one-epoch run on a small SynthPose set, and its record."""
    base = tmp_path_factory.mktemp("rerun")
    root = base / "synth"
    generate_synthpose(root, num_train=6, num_val=4, seed=0, progress=False)
    cfg = load_config([
        "method=hourglass-tiny", "model.input_size=[64,64]", f"data.root={root}", "data.max_samples=8",
        "data.batch_size=4", "trainer.max_epochs=1", "trainer.accelerator=cpu", "trainer.devices=1",
        "trainer.enable_progress_bar=false", "trainer.log_every_n_steps=1", f"output_dir={base / 'outputs'}",
        f"results_dir={base / 'results'}", "seed=5",
    ])
    result = train(cfg)
    return base, result, read_record(result.record_path)


def _as_resolved(record: dict) -> dict:
    """The record's config with ``auto`` speed settings replaced by the values its ``speed`` field says were used."""
    config = json.loads(json.dumps(record["config"]))
    config["trainer"].update({key: record["speed"][key]["value"] for key in ("channels_last", "precision")})
    return config


def test_config_from_record_is_the_recorded_config_with_placement_reset(recorded) -> None:
    _, _, record = recorded
    cfg = config_from_record(record)
    assert to_dict(cfg) == _as_resolved(record)  # nothing to reset in this run; auto pinned to what it resolved to
    cfg = config_from_record(record, ["trainer.max_epochs=3", "run_name=x"])
    assert cfg.trainer.max_epochs == 3 and cfg.run_name == "x" and cfg.seed == 5
    broken = json.loads(json.dumps(record))
    broken["config"]["trainer"]["max_epoch"] = 2
    with pytest.raises(ConfigError, match=r"trainer\.max_epoch"):
        config_from_record(broken)
    with pytest.raises(ConfigError, match="not group selectors"):
        config_from_record(record, ["method=hrnet-tiny"])


def test_a_key_the_record_predates_takes_the_project_default_not_lightnings(recorded) -> None:
    _, _, record = recorded
    old = json.loads(json.dumps(record))
    del old["config"]["trainer"]["num_sanity_val_steps"]  # records before trainer: passed every Trainer argument
    del old["config"]["trainer"]["max_steps"]
    cfg = config_from_record(old)
    # defaults.yaml's 0, what the runner passed before the key existed (Lightning's own default is 2 batches).
    assert cfg.trainer.num_sanity_val_steps == 0 and cfg.trainer.max_steps == -1
    assert to_dict(cfg) == _as_resolved(record)


def test_keys_whose_absence_meant_another_behaviour_take_that_behaviour_not_todays_default(recorded) -> None:
    """Records written before ``data.reduced_decode`` existed decoded every JPEG at full size, and records before
    ``trainer.channels_last``/``precision: auto`` trained contiguous in fp32: a rerun must do the same, whatever
    defaults.yaml now says (true / auto)."""
    _, _, record = recorded
    assert record["config"]["data"]["reduced_decode"] is True
    old = json.loads(json.dumps(record))
    del old["config"]["data"]["reduced_decode"]
    del old["config"]["trainer"]["channels_last"]
    del old["config"]["trainer"]["precision"]
    cfg = config_from_record(old)
    assert cfg.data.reduced_decode is False and cfg.trainer.channels_last is False
    assert cfg.trainer.precision == "32-true"
    assert config_from_record(record).data.reduced_decode is True  # a record that has the key keeps its value
    # Before model.instance_score every COCO run, G-RMI's included, ranked persons by the box rescoring.
    del old["config"]["model"]["instance_score"]
    old["config"]["model"]["variant"] = "grmi-tiny"
    assert config_from_record(old).model.instance_score == "bbox_keypoint"


def test_auto_speed_settings_rerun_as_the_record_resolved_them_not_as_todays_table(recorded, monkeypatch) -> None:
    """``trainer.channels_last``/``precision: auto`` resolve from ``speed_defaults.MEASURED``, which changes as rows
    are measured: a rerun takes the values the record says were used (its ``speed`` field), not today's."""
    from benchmark import speed_defaults

    _, _, record = recorded
    assert record["config"]["trainer"]["precision"] == "auto" and record["speed"]["precision"]["value"] == "32-true"
    assert record["speed"]["channels_last"]["value"] is True  # hourglass's CPU row: on
    monkeypatch.setitem(speed_defaults.MEASURED, ("hourglass", "cpu", "bf16"),
                        speed_defaults.Measurement(0.5, "2026-12-06", "a later measurement"))
    monkeypatch.setitem(speed_defaults.MEASURED, ("hourglass", "cpu", "channels_last"),
                        speed_defaults.Measurement(1.2, "2026-12-06", "a later measurement"))
    cfg = config_from_record(record)
    assert cfg.trainer.precision == "32-true" and cfg.trainer.channels_last is True
    changed = json.loads(json.dumps(record))
    changed["speed"]["precision"]["value"] = "bf16-mixed"
    assert config_from_record(changed).trainer.precision == "bf16-mixed"
    explicit = json.loads(json.dumps(record))
    explicit["config"]["trainer"]["precision"] = "16-mixed"  # a value the config set is kept as it is
    assert config_from_record(explicit).trainer.precision == "16-mixed"


@pytest.mark.slow
def test_rerun_reproduces_the_recorded_metrics_and_weights(recorded) -> None:
    _, result, record = recorded
    again = rerun(result.record_path)
    assert again.record_path != result.record_path and again.run_dir != result.run_dir
    assert again.results == result.results
    first, second = result.run.model.state_dict(), again.run.model.state_dict()
    assert all(torch.equal(first[k], second[k]) for k in first)
    new = read_record(again.record_path)
    assert new["config"] == _as_resolved(record)  # the same config, its auto speed settings stated as they ran
    assert new["speed"]["precision"]["value"] == record["speed"]["precision"]["value"]
    assert new["dataset"]["fingerprint"] == record["dataset"]["fingerprint"]


def test_rerun_on_other_data_stops_naming_the_fingerprints(recorded, capsys) -> None:
    base, result, record = recorded
    other = base / "other"
    generate_synthpose(other, num_train=6, num_val=4, seed=1, progress=False)
    fingerprints = r"\(test: [0-9a-f]{12} here, [0-9a-f]{12} in the record; train: "
    with pytest.raises(RerunError, match=r"is not the one the record was scored on " + fingerprints):
        rerun(result.record_path, [f"data.root={other}"])
    assert main(["rerun", str(result.record_path), f"data.root={other}"]) == 2
    assert "--allow-other-data" in capsys.readouterr().err
    assert to_dict(config_from_record(record, [f"data.root={other}"]))["data"]["root"] == str(other)
