"""Structured run configuration: schemas taken from the constructors they configure, YAML groups, overrides.

A run's config is merged in a fixed order (docs/configuration.md):

1. ``configs/defaults.yaml`` (PoseBench's default of every key, each with a comment),
2. ``configs/data/<data>.yaml``,
3. ``configs/method/<method>.yaml``,
4. ``configs/recipe/<recipe>.yaml`` when ``recipe=NAME`` is given,
5. the command-line dotlist (``trainer.max_epochs=2 data.batch_size=8 ...``).

The group selectors ``data=NAME``, ``method=NAME`` and ``recipe=NAME`` are taken out of the
dotlist first. ``method`` may name a ``method/<name>.yaml`` file or a registered model variant
(``method=hourglass-tiny`` merges ``method/hourglass.yaml`` and sets ``model.variant``). A
recipe file may say which groups it builds on with a top-level ``uses: {data: ..., method: ...}``;
selectors on the command line win over it (``recipe=hourglass8_mpii_256 data=synthpose``). Its top-level
``fidelity:`` list (the source's value of every setting, ``benchmark/commands/fidelity.py``) is documentation: it is
taken out before merging and never reaches the run config.

A section that configures one constructor takes its schema from that constructor's signature, so a key is
written once, as a parameter: ``data:`` is ``PoseDataModule``'s keyword arguments but the few the runner
computes, ``augmentation:`` is ``Augmentation``'s plus ``enabled``, and ``trainer:`` is every ``pl.Trainer``
keyword argument but those the runner sets, plus PoseBench's extras (``TRAINER_EXTRAS``). The schemas are
OmegaConf structured configs: OmegaConf refuses a misspelt key or a value of the wrong type, and ``merge``
reports it as a ``ConfigError`` naming the source (file, recipe or command line), the full key and the
closest valid key.
"""

from __future__ import annotations

import difflib
import hashlib
import inspect
import json
import types
import typing
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field, make_dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Union, cast

import pytorch_lightning as pl
from omegaconf import MISSING as REQUIRED
from omegaconf import OmegaConf
from omegaconf.errors import ConfigKeyError, OmegaConfBaseException

from benchmark.errors import PoseBenchError
from datamodules.datamodule import PoseDataModule
from datamodules.transforms import Augmentation

CONFIG_DIR = Path(__file__).resolve().parent / "configs"
DEFAULTS_PATH = CONFIG_DIR / "defaults.yaml"
GROUPS = ("data", "method", "recipe")
DEFAULT_SELECTION = {"data": "synthpose", "method": "simplebaseline-tiny"}


class ConfigError(PoseBenchError):
    """A config source is invalid: unknown key, wrong type, or unknown group name."""


# ------------------------------------------------------------------------------- schemas from signatures

_CHECKED_TYPES = (bool, int, float, str)


def _config_type(annotation: Any) -> Any:
    """The OmegaConf type of a parameter annotation: bool, int, float or str (optionally None) are checked; a path
    is written as a str; anything else (unions of several types, literals, objects) is ``Any``."""
    if annotation in _CHECKED_TYPES:
        return annotation
    if typing.get_origin(annotation) in (Union, types.UnionType):
        members = [a for a in typing.get_args(annotation) if a is not type(None)]
        if str in members and Path in members:
            members.remove(Path)
        if len(members) == 1 and members[0] in _CHECKED_TYPES:
            nullable = type(None) in typing.get_args(annotation)
            return members[0] | None if nullable else members[0]
    return Any


def signature_fields(function: Callable[..., Any], exclude: Collection[str] = ()) -> list[tuple[str, Any, Any]]:
    """``make_dataclass`` fields of the keyword parameters of ``function`` but ``exclude``: the parameter names are
    the keys, their defaults the defaults (required where the parameter has none) and their annotations the types."""
    hints = typing.get_type_hints(function)
    result = []
    for p in inspect.signature(function).parameters.values():
        if p.name == "self" or p.name in exclude or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            continue
        default = REQUIRED if p.default is p.empty else p.default
        result.append((p.name, _config_type(hints.get(p.name, Any)), field(default=default)))
    return result


DATA_RUNNER_ARGUMENTS = ("input_size", "augmentation", "seed", "convention")
"""``PoseDataModule`` arguments the runner computes (``model.input_size`` or the variant's, ``augmentation:``,
``seed``, ``model.convention``); every other argument is a ``data:`` key."""

if TYPE_CHECKING:  # built at run time from signatures, so a type checker cannot list their fields
    DataConfig: Any
    AugmentationConfig: Any
    TrainerConfig: Any
else:
    DataConfig = make_dataclass("DataConfig",
                                signature_fields(PoseDataModule.__init__, exclude=DATA_RUNNER_ARGUMENTS))
    DataConfig.__doc__ = """``data:``: ``PoseDataModule``'s keyword arguments (keys explained in defaults.yaml)."""
    AugmentationConfig = make_dataclass(
        "AugmentationConfig", [("enabled", bool, field(default=True)), *signature_fields(Augmentation)])
    AugmentationConfig.__doc__ = """``augmentation:``: ``Augmentation``'s fields, and ``enabled`` (false: none)."""

TRAINER_RUNNER_ARGUMENTS: dict[str, str] = {
    "logger": "choose it with the top-level logger=csv|wandb",
    "callbacks": "the runner's checkpoints, evaluation and records",
    "default_root_dir": "the run directory under output_dir",
    "use_distributed_sampler": "PoseDataModule shards its own data, so it is always false",
}
"""``pl.Trainer`` arguments the runner sets itself, and why a config cannot."""

TRAINER_EXTRAS: list[tuple[str, Any, Any]] = [
    ("channels_last", Any, field(default=False)),
    ("compile", bool, field(default=False)),
]
"""PoseBench's ``trainer:`` keys that are not ``pl.Trainer`` arguments: train in channels-last memory format (true,
false, or ``auto``: the measured default of benchmark/speed_defaults.py), ``torch.compile`` the model.
(``deterministic`` and ``precision`` are Lightning's, with PoseBench's extra value ``auto``.)"""

if not TYPE_CHECKING:
    TrainerConfig = make_dataclass(
        "TrainerConfig", [*signature_fields(pl.Trainer.__init__, exclude=TRAINER_RUNNER_ARGUMENTS), *TRAINER_EXTRAS])
    TrainerConfig.__doc__ = """``trainer:``: every ``pl.Trainer`` keyword argument the runner does not set (their
    defaults are Lightning's; configs/defaults.yaml holds PoseBench's), plus ``TRAINER_EXTRAS``."""


@dataclass
class ModelConfig:
    """``model:``: the registry variant, input size, extra constructor kwargs, test-time decoding and the person
    score COCO ranks by."""

    variant: str = "simplebaseline-tiny"
    input_size: list[int] | None = None
    kwargs: dict[str, Any] = field(default_factory=dict)
    flip_test: bool = True
    convention: str = "aligned"
    decoder: str = "dark"
    all_protocols: bool = True
    instance_score: str = "bbox_keypoint"


MODEL_RUNNER_KEYS = ("variant", "input_size", "kwargs", "instance_score")
"""``model:`` keys the runner resolves itself (``instance_score`` goes to the evaluation callback); the others are
``PoseEstimator`` arguments of the same name."""


@dataclass
class OptimConfig:
    """``optim:``: optimiser and learning-rate schedule, passed to the model as keyword arguments, and the
    batch rule that keeps the LR paired with ``total_batch`` (applied by the runner, benchmark/batch_rule.py)."""

    optimizer: str = "adam"
    lr: float = 1e-3
    weight_decay: float = 0.0
    momentum: float = 0.9
    schedule: str = "multistep"
    milestones: list[int] = field(default_factory=list)
    gamma: float = 0.1
    warmup_epochs: float = 0.0
    total_batch: int | None = None
    batch_rule: str = "accumulate"


OPTIM_RUNNER_KEYS = ("total_batch", "batch_rule")
"""``optim:`` keys of the batch rule; the others are ``PoseEstimator`` arguments of the same name."""


@dataclass
class ReferenceConfig:
    """``reference:``: the published number a recipe reproduces, with its source and tolerance."""

    metric: str | None = None
    value: float | None = None
    tolerance: float | None = None
    split: str = "val"
    source: str = ""
    note: str = ""


@dataclass
class RunConfig:
    """The whole run: top-level keys plus the sections; configs/defaults.yaml comments every key PoseBench sets."""

    seed: int = 0
    recipe: str | None = None
    run_name: str | None = None
    output_dir: str = "outputs"
    results_dir: str = "results/runs"
    logger: str = "csv"
    wandb_project: str = "posebench"
    resume: str | None = None
    ckpt: str | None = None
    test_after_fit: bool = True
    write_record: bool = True
    data: DataConfig = field(default_factory=DataConfig)
    augmentation: AugmentationConfig = field(default_factory=AugmentationConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    reference: ReferenceConfig = field(default_factory=ReferenceConfig)


# ------------------------------------------------------------------------------- merging and its errors


def valid_keys(section: str) -> list[str]:
    """The keys of the schema under the dotted ``section`` (``""``: the top level)."""
    node = OmegaConf.structured(RunConfig)
    for part in section.split(".") if section else []:
        node = node[part]
    return [str(key) for key in node.keys()]


def _unknown_key(where: str, full_key: str) -> str:
    section, _, key = full_key.rpartition(".")
    if section == "trainer" and key in TRAINER_RUNNER_ARGUMENTS:
        return f"{where}: trainer.{key} is set by PoseBench, not by the config ({TRAINER_RUNNER_ARGUMENTS[key]})"
    valid = valid_keys(section)
    prefix = f"{section}." if section else ""
    close = difflib.get_close_matches(key, valid, n=1)
    hint = f" (did you mean '{prefix}{close[0]}'?)" if close else ""
    level = f" under '{section}'" if section else ""
    return f"{where}: unknown key '{full_key}'{hint}; valid keys{level}: {', '.join(valid)}"


def _merge_error(where: str, error: OmegaConfBaseException) -> ConfigError:
    """One line naming the source, the full key and what is wrong with it."""
    key = getattr(error, "full_key", None) or ""
    if isinstance(error, ConfigKeyError) and key:
        return ConfigError(_unknown_key(where, key))
    reason = (getattr(error, "msg", None) or str(error)).splitlines()[0]
    return ConfigError(f"{where}: {key + ': ' if key else ''}{reason}")


def merge(sources: list[tuple[str, Any]]) -> RunConfig:
    """Merge ``(where, values)`` sources in order onto the schema; a bad key or value raises ``ConfigError`` naming
    ``where``."""
    merged = OmegaConf.structured(RunConfig)
    for where, values in sources:
        if not isinstance(values, Mapping):
            raise ConfigError(f"{where}: the config must be a mapping of keys, got {values!r}")
        try:
            merged = OmegaConf.merge(merged, values)
        except OmegaConfBaseException as error:
            raise _merge_error(where, error) from None
    try:
        return cast(RunConfig, OmegaConf.to_object(merged))
    except OmegaConfBaseException as error:  # a required key (data.name, data.root) no source set
        raise _merge_error("config", error) from None


# ------------------------------------------------------------------------------- sources


def available(group: str) -> list[str]:
    """Names of the YAML files of ``group`` (data, method or recipe)."""
    return sorted(p.stem for p in (CONFIG_DIR / group).glob("*.yaml"))


def read_yaml(path: Path) -> dict[str, Any]:
    """The mapping in the YAML file ``path`` (empty for an empty file); ``ConfigError`` names the file otherwise."""
    try:
        loaded = cast(Any, OmegaConf.to_container(OmegaConf.load(path)))
    except (OmegaConfBaseException, OSError, ValueError) as error:
        raise ConfigError(f"{path}: cannot read YAML: {error}") from None
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise ConfigError(f"{path}: top level must be a mapping of keys")
    return loaded


def dotlist_source(dotlist: list[str]) -> tuple[str, dict[str, Any]]:
    """``("command line", values)`` of ``key=value`` overrides."""
    try:
        return "command line", cast(dict[str, Any], OmegaConf.to_container(OmegaConf.from_dotlist(dotlist)))
    except OmegaConfBaseException as error:
        raise ConfigError(f"command line: cannot parse {dotlist}: {error}") from None


def _group_file(group: str, name: str) -> Path:
    path = CONFIG_DIR / group / f"{name}.yaml"
    if not path.is_file():
        raise ConfigError(f"unknown {group} {name!r}: no {path}; available: {', '.join(available(group))}")
    return path


def _method_file(name: str) -> tuple[Path, str | None]:
    """The method YAML for ``name`` and the variant to set (when ``name`` is a registered variant)."""
    path = CONFIG_DIR / "method" / f"{name}.yaml"
    if path.is_file():
        return path, None
    from models import VARIANTS

    if name in VARIANTS:
        return _group_file("method", VARIANTS[name].method), name
    raise ConfigError(
        f"unknown method {name!r}: neither {path} nor a registered variant; method files: "
        f"{', '.join(available('method'))}; variants: {', '.join(sorted(VARIANTS))}"
    )


def split_selectors(overrides: list[str]) -> tuple[dict[str, str], list[str]]:
    """``(selectors, dotlist)``: ``data=``/``method=``/``recipe=`` entries and the rest."""
    selectors: dict[str, str] = {}
    rest: list[str] = []
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r} must look like key=value (e.g. trainer.max_epochs=2)")
        key, value = item.split("=", 1)
        if key in GROUPS:
            selectors[key] = value
        else:
            rest.append(item)
    return selectors, rest


def read_recipe(name: str) -> tuple[dict[str, Any], dict[str, str]]:
    """``(settings, uses)`` of recipe ``name``: its run settings (``fidelity:`` taken out) and the groups it builds
    on."""
    path = _group_file("recipe", name)
    recipe = read_yaml(path)
    uses = recipe.pop("uses", None) or {}
    recipe.pop("fidelity", None)  # read by benchmark/commands/fidelity.py, not a run setting
    if not isinstance(uses, dict) or set(uses) - {"data", "method"}:
        raise ConfigError(f"{path}: 'uses' must map data and/or method to group names, got {uses!r}")
    return {**recipe, "recipe": name}, uses


def load_config(overrides: list[str] | None = None) -> RunConfig:
    """Merge defaults, data, method, recipe and ``overrides`` (a dotlist with selectors) into a ``RunConfig``."""
    selectors, dotlist = split_selectors(list(overrides or []))
    recipe: dict[str, Any] = {}
    uses: dict[str, str] = {}
    recipe_path = ""
    if selectors.get("recipe"):
        recipe_path = str(_group_file("recipe", selectors["recipe"]))
        recipe, uses = read_recipe(selectors["recipe"])
    choice = {**DEFAULT_SELECTION, **uses, **{k: v for k, v in selectors.items() if k != "recipe"}}

    data_path = _group_file("data", choice["data"])
    method_path, variant = _method_file(choice["method"])
    sources: list[tuple[str, Any]] = [
        (str(DEFAULTS_PATH), read_yaml(DEFAULTS_PATH)),
        (str(data_path), read_yaml(data_path)),
        (str(method_path), read_yaml(method_path)),
    ]
    if variant is not None:
        sources.append((f"method={variant}", {"model": {"variant": variant}}))
    if recipe:
        sources.append((recipe_path, recipe))
    if dotlist:
        sources.append(dotlist_source(dotlist))
    if recipe and variant is not None and "variant" in recipe.get("model", {}):
        # An explicit method=<variant> on the command line beats the recipe's variant.
        sources.append((f"method={variant}", {"model": {"variant": variant}}))
    return merge(sources)


def to_dict(config: RunConfig) -> dict[str, Any]:
    """The config as plain nested dicts and lists (JSON-ready)."""
    return cast(dict[str, Any], OmegaConf.to_container(OmegaConf.structured(config), resolve=True))


def config_hash(config: RunConfig) -> str:
    """sha256 hex of the config's canonical JSON (sorted keys)."""
    return hashlib.sha256(json.dumps(to_dict(config), sort_keys=True).encode()).hexdigest()


def to_yaml(config: RunConfig) -> str:
    return OmegaConf.to_yaml(OmegaConf.structured(config))


MISSING = object()
"""``lookup``'s answer for a dotted key that is absent."""


def lookup(mapping: Any, dotted: str, default: Any = MISSING) -> Any:
    """``mapping["a"]["b"]["c"]`` for ``dotted`` ``"a.b.c"`` in nested mappings, or ``default`` where a level is
    missing or not a mapping."""
    node = mapping
    for key in dotted.split("."):
        if not isinstance(node, Mapping) or key not in node:
            return default
        node = node[key]
    return node
