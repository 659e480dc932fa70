"""Structured config: merge order, group selection, misspelt keys, types, hashing, YAML comments."""

from __future__ import annotations

import re

import pytest

from benchmark.config import (
    CONFIG_DIR,
    ConfigError,
    RunConfig,
    available,
    config_hash,
    load_config,
)


def test_defaults_give_the_tiny_simplebaseline_on_synthpose():
    cfg = load_config([])
    assert isinstance(cfg, RunConfig)
    assert (cfg.data.name, cfg.model.variant) == ("synthpose", "simplebaseline-tiny")


def test_merge_order_defaults_data_method_recipe_command_line():
    # defaults: batch 32; method/hourglass.yaml: batch 6 and rmsprop; the command line wins over both.
    assert load_config(["method=hourglass-tiny"]).data.batch_size == 6
    cfg = load_config(["method=hourglass-tiny", "data.batch_size=3", "optim.lr=0.5"])
    assert (cfg.data.batch_size, cfg.optim.lr, cfg.optim.optimizer) == (3, 0.5, "rmsprop")
    assert cfg.model.variant == "hourglass-tiny"  # a variant name selects its method file and itself
    # data/coco.yaml sets detections; method/simplebaseline.yaml sets milestones; defaults keep the seed.
    cfg = load_config(["data=coco", "method=simplebaseline"])
    assert (cfg.data.val_boxes, cfg.optim.milestones, cfg.seed) == ("detections", [90, 120], 0)
    assert cfg.model.variant == "simplebaseline-res50"


def test_recipe_merges_after_method_and_before_the_command_line():
    cfg = load_config(["recipe=hourglass8_mpii_256"])
    # uses: data mpii, method hourglass; the recipe's milestones beat the method file's empty list.
    assert (cfg.data.name, cfg.model.variant, cfg.optim.schedule, cfg.optim.milestones) == (
        "mpii", "hourglass-8", "multistep", [60, 90])
    assert cfg.reference.metric == "test/PCKh/Mean" and cfg.reference.value == 88.78
    assert cfg.recipe == "hourglass8_mpii_256"
    scaled = load_config(["recipe=hourglass8_mpii_256", "data=synthpose", "method=hourglass-tiny",
                          "model.input_size=[128,128]"])
    assert (scaled.data.name, scaled.model.variant) == ("synthpose", "hourglass-tiny")
    assert scaled.model.input_size == [128, 128]
    assert scaled.optim.milestones == [60, 90]


def test_misspelt_key_names_the_valid_keys():
    with pytest.raises(ConfigError) as error:
        load_config(["trainer.max_epoch=2"])
    message = str(error.value)
    assert "command line" in message and "'trainer.max_epoch'" in message
    assert "max_epochs" in message and "sync_batchnorm" in message
    with pytest.raises(ConfigError, match=r"unknown key 'optimm'; valid keys: seed, .*optim"):
        load_config(["optimm.lr=1"])


def test_wrong_type_and_unknown_group_are_clear_errors():
    wrong_type = r"command line: trainer.max_epochs: Value 'abc' .* could not be converted to Integer"
    with pytest.raises(ConfigError, match=wrong_type):
        load_config(["trainer.max_epochs=abc"])
    with pytest.raises(ConfigError, match=r"unknown data 'mpi'.*available: coco, lsp, mpii, synthpose"):
        load_config(["data=mpi"])
    with pytest.raises(ConfigError, match=r"unknown method 'hourglas'.*variants: .*hourglass-8"):
        load_config(["method=hourglas"])
    with pytest.raises(ConfigError, match="key=value"):
        load_config(["trainer.max_epochs"])


def test_model_kwargs_take_any_key_and_the_hash_sees_every_value():
    a = load_config(["model.kwargs.sigma=1.5"])
    assert a.model.kwargs == {"sigma": 1.5}
    assert config_hash(a) == config_hash(load_config(["model.kwargs.sigma=1.5"]))
    assert config_hash(a) != config_hash(load_config(["model.kwargs.sigma=2.0"]))


RUN_CONFIG_FILES = sorted([CONFIG_DIR / "defaults.yaml", *(p for g in ("data", "method", "recipe")
                                                          for p in (CONFIG_DIR / g).glob("*.yaml"))])


@pytest.mark.parametrize("path", RUN_CONFIG_FILES, ids=lambda p: str(p.relative_to(CONFIG_DIR)))
def test_every_yaml_key_has_a_comment(path):
    for number, line in enumerate(path.read_text().splitlines(), 1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        top_level_section = not line.startswith(" ") and stripped.endswith(":")
        assert re.search(r"\s#\s", line) or top_level_section, f"{path.name}:{number} has no comment: {line!r}"


def test_every_recipe_and_group_file_loads():
    for name in available("recipe"):
        reference = load_config([f"recipe={name}"]).reference
        # Paper recipes carry the number they reproduce; the demo presets (SynthPose) carry none.
        assert (reference.tolerance is None) == name.startswith("demo_"), name
    for name in available("data"):
        assert load_config([f"data={name}"]).data.name == name
