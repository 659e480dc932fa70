"""Structured config: merge order, group selection, misspelt keys, types, schemas tied to the constructors they
configure, hashing, YAML comments."""

from __future__ import annotations

import dataclasses
import inspect
import re

import pytest
import pytorch_lightning as pl
from omegaconf import MISSING as OMEGACONF_MISSING
from omegaconf import OmegaConf

from benchmark.config import (
    CONFIG_DIR,
    DATA_RUNNER_ARGUMENTS,
    MODEL_RUNNER_KEYS,
    OPTIM_RUNNER_KEYS,
    TRAINER_EXTRAS,
    TRAINER_RUNNER_ARGUMENTS,
    ConfigError,
    DataConfig,
    ModelConfig,
    OptimConfig,
    RunConfig,
    available,
    config_hash,
    load_config,
    merge,
    valid_keys,
)
from benchmark.train import trainer_arguments
from datamodules.datamodule import PoseDataModule
from models.base import PoseEstimator


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


def test_misspelt_key_names_the_source_the_key_its_closest_match_and_the_valid_keys():
    with pytest.raises(ConfigError) as error:
        load_config(["trainer.max_epoch=2"])
    message = str(error.value)
    assert message.startswith("command line: unknown key 'trainer.max_epoch' (did you mean 'trainer.max_epochs'?)")
    assert "valid keys under 'trainer': " in message and "sync_batchnorm" in message and "\n" not in message
    with pytest.raises(ConfigError, match=r"unknown key 'optimm' \(did you mean 'optim'\?\); valid keys: seed, "):
        load_config(["optimm.lr=1"])
    with pytest.raises(ConfigError, match=r"^recipe/x.yaml: unknown key 'data.batch_sise' \(did you mean 'data.batch_"):
        merge([("recipe/x.yaml", {"data": {"batch_sise": 3}})])
    with pytest.raises(ConfigError, match=r"^recipe/x.yaml: unknown key 'augmentation.zzz'; valid keys under"):
        merge([("recipe/x.yaml", {"augmentation": {"zzz": 1}})])


def test_trainer_takes_every_lightning_argument_straight_through():
    cfg = load_config(["trainer.max_steps=3", "trainer.limit_val_batches=2", "trainer.profiler=simple"])
    arguments = trainer_arguments(cfg)
    assert (arguments["max_steps"], arguments["limit_val_batches"], arguments["profiler"]) == (3, 2, "simple")
    assert "channels_last" not in arguments and "compile" not in arguments  # PoseBench's extras stay with the runner
    accepted = set(inspect.signature(pl.Trainer).parameters)
    assert set(arguments) == accepted - set(TRAINER_RUNNER_ARGUMENTS)
    assert not {name for name, _, _ in TRAINER_EXTRAS} & accepted
    with pytest.raises(ConfigError, match=r"^command line: trainer.callbacks is set by PoseBench"):
        load_config(["trainer.callbacks=[]"])


def test_data_section_is_the_datamodule_signature():
    # Every data: key is a PoseDataModule keyword argument with the same default (or none: defaults.yaml gives it);
    # the runner supplies the rest.
    parameters = {p.name: p for p in inspect.signature(PoseDataModule).parameters.values()}
    schema = {f.name: f.default for f in dataclasses.fields(DataConfig)}
    assert set(parameters) == set(schema) | set(DATA_RUNNER_ARGUMENTS)
    for name, default in schema.items():
        expected = parameters[name].default
        assert default == (OMEGACONF_MISSING if expected is inspect.Parameter.empty else expected), name


@pytest.mark.parametrize(("schema", "runner_keys"),
                         [(OptimConfig, OPTIM_RUNNER_KEYS), (ModelConfig, MODEL_RUNNER_KEYS)])
def test_optim_and_model_keys_are_estimator_arguments_with_its_defaults(schema, runner_keys):
    parameters = inspect.signature(PoseEstimator).parameters
    for f in dataclasses.fields(schema):
        if f.name in runner_keys:
            continue
        default = f.default if f.default_factory is dataclasses.MISSING else f.default_factory()
        assert f.name in parameters and default == type(default)(parameters[f.name].default), f.name


def test_defaults_yaml_sets_every_key_but_lightnings_own_trainer_defaults():
    defaults = OmegaConf.to_container(OmegaConf.load(CONFIG_DIR / "defaults.yaml"))
    for section, keys in defaults.items():
        if isinstance(keys, dict) and section != "trainer":
            assert set(keys) == set(valid_keys(section)), section
    assert set(defaults) == set(valid_keys(""))
    assert set(defaults["trainer"]) < set(valid_keys("trainer"))


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


def test_channels_last_and_precision_are_auto_from_the_method_file_until_set():
    # method/<m>.yaml leaves both to benchmark/speed_defaults.py; a later source's true/false or precision wins.
    assert (load_config([]).trainer.channels_last, load_config([]).trainer.precision) == ("auto", "auto")
    cfg = load_config(["trainer.channels_last=false", "trainer.precision=bf16-mixed"])
    assert (cfg.trainer.channels_last, cfg.trainer.precision) == (False, "bf16-mixed")
