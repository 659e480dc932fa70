"""Structured run configuration: dataclass schemas, YAML groups and command-line overrides.

A run's config is merged in a fixed order (README.md, "Training and evaluation"):

1. ``configs/defaults.yaml`` (every key, each with a comment),
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

The schemas are OmegaConf structured configs, so a value of the wrong type fails, and every
key of every source is checked against the schema first: a misspelt key raises ``ConfigError``
naming the source, the key and the valid keys at that level.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, is_dataclass, make_dataclass
from pathlib import Path
from typing import Any, Optional

from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from datamodules.transforms import Augmentation

CONFIG_DIR = Path(__file__).resolve().parent / "configs"
GROUPS = ("data", "method", "recipe")
DEFAULT_SELECTION = {"data": "synthpose", "method": "simplebaseline-tiny"}


class ConfigError(ValueError):
    """A config source is invalid: unknown key, wrong type, or unknown group name."""


@dataclass
class DataConfig:
    """``data:``: which dataset, where, and how it is loaded (keys explained in configs/defaults.yaml)."""

    name: str = "synthpose"
    root: str = "data/synthpose"
    format: str = "mpii"
    batch_size: int = 32
    val_batch_size: Optional[int] = None
    num_workers: int = 0
    persistent_workers: bool = False
    pin_memory: bool = False
    val_boxes: str = "gt"
    detection_file: Optional[str] = None
    detection_threshold: float = 0.0
    test_split: Optional[str] = None
    max_samples: Optional[int] = None
    shuffle: bool = True
    drop_last: bool = False
    normalisation: str = "imagenet"
    synth_train: int = 2000
    synth_val: int = 500
    synth_seed: int = 0


# ``augmentation:`` is ``datamodules.transforms.Augmentation`` (one source of truth for its fields
# and defaults) plus ``enabled``; OmegaConf needs a mutable dataclass, so it is derived here.
AugmentationConfig = make_dataclass(
    "AugmentationConfig",
    [("enabled", bool, field(default=True))]
    + [(f.name, f.type, field(default=f.default)) for f in fields(Augmentation)],
)


@dataclass
class ModelConfig:
    """``model:``: the registry variant, input size, extra constructor kwargs, test-time decoding."""

    variant: str = "simplebaseline-tiny"
    input_size: Optional[list[int]] = None
    kwargs: dict[str, Any] = field(default_factory=dict)
    flip_test: bool = True
    convention: str = "aligned"
    decoder: str = "dark"
    all_protocols: bool = True


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
    total_batch: Optional[int] = None
    batch_rule: str = "accumulate"


@dataclass
class TrainerConfig:
    """``trainer:``: Lightning Trainer settings (devices, strategy, precision, ...) and GPU options."""

    max_epochs: int = 140
    accelerator: str = "auto"
    devices: Any = "auto"
    strategy: str = "auto"
    num_nodes: int = 1
    precision: str = "32-true"
    sync_batchnorm: bool = False
    gradient_clip_val: Optional[float] = None
    accumulate_grad_batches: int = 1
    log_every_n_steps: int = 50
    check_val_every_n_epoch: int = 1
    limit_train_batches: Any = 1.0
    deterministic: str = "auto"
    benchmark: bool = False
    enable_progress_bar: bool = True
    channels_last: bool = False
    compile: bool = False


@dataclass
class ReferenceConfig:
    """``reference:``: the published number a recipe reproduces, with its source and tolerance."""

    metric: Optional[str] = None
    value: Optional[float] = None
    tolerance: Optional[float] = None
    split: str = "val"
    source: str = ""
    note: str = ""


@dataclass
class RunConfig:
    """The whole run: top-level keys plus the sections; every key is commented in configs/defaults.yaml."""

    seed: int = 0
    recipe: Optional[str] = None
    run_name: Optional[str] = None
    output_dir: str = "outputs"
    results_dir: str = "results/runs"
    logger: str = "csv"
    wandb_project: str = "posebench"
    resume: Optional[str] = None
    ckpt: Optional[str] = None
    test_after_fit: bool = True
    write_record: bool = True
    data: DataConfig = field(default_factory=DataConfig)
    augmentation: AugmentationConfig = field(default_factory=AugmentationConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    reference: ReferenceConfig = field(default_factory=ReferenceConfig)


# ------------------------------------------------------------------------------- key checks


def _schema_fields(schema: type) -> dict[str, Any]:
    return {f.name: f for f in fields(schema)}


def check_keys(values: Any, schema: type = RunConfig, where: str = "config", prefix: str = "") -> None:
    """Raise ``ConfigError`` for the first key of the nested dict ``values`` not in ``schema``.

    The message names ``where`` (the source), the dotted key and the valid keys at that level.
    Dict-typed fields (``model.kwargs``) take any key.
    """
    if not isinstance(values, dict):
        raise ConfigError(f"{where}: {prefix.rstrip('.') or 'the config'} must be a mapping, got {values!r}")
    known = _schema_fields(schema)
    for key, value in values.items():
        if key not in known:
            level = f" under '{prefix.rstrip('.')}'" if prefix else ""
            raise ConfigError(
                f"{where}: unknown key '{prefix}{key}'; valid keys{level}: {', '.join(known)}"
            )
        child = known[key].type
        child_cls = _dataclass_of(child)
        if child_cls is not None and value is not None:
            check_keys(value, child_cls, where, f"{prefix}{key}.")


def _dataclass_of(annotation: Any) -> type | None:
    candidate = globals().get(annotation) if isinstance(annotation, str) else annotation
    return candidate if isinstance(candidate, type) and is_dataclass(candidate) else None


# ------------------------------------------------------------------------------- sources


def available(group: str) -> list[str]:
    """Names of the YAML files of ``group`` (data, method or recipe)."""
    return sorted(p.stem for p in (CONFIG_DIR / group).glob("*.yaml"))


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        loaded = OmegaConf.to_container(OmegaConf.load(path))
    except (OmegaConfBaseException, OSError, ValueError) as error:
        raise ConfigError(f"{path}: cannot read YAML: {error}") from None
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise ConfigError(f"{path}: top level must be a mapping of keys")
    return loaded


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


def load_config(overrides: list[str] | None = None) -> RunConfig:
    """Merge defaults, data, method, recipe and ``overrides`` (a dotlist with selectors) into a ``RunConfig``."""
    selectors, dotlist = split_selectors(list(overrides or []))
    recipe: dict[str, Any] = {}
    recipe_name = selectors.get("recipe")
    uses: dict[str, str] = {}
    if recipe_name:
        recipe_path = _group_file("recipe", recipe_name)
        recipe = _read_yaml(recipe_path)
        uses = recipe.pop("uses", None) or {}
        recipe.pop("fidelity", None)  # read by benchmark/commands/fidelity.py, not a run setting
        if not isinstance(uses, dict) or set(uses) - {"data", "method"}:
            raise ConfigError(f"{recipe_path}: 'uses' must map data and/or method to group names, got {uses!r}")
        check_keys(recipe, where=str(recipe_path))
        recipe["recipe"] = recipe_name
    choice = {**DEFAULT_SELECTION, **uses, **{k: v for k, v in selectors.items() if k != "recipe"}}

    defaults_path = CONFIG_DIR / "defaults.yaml"
    data_path = _group_file("data", choice["data"])
    method_path, variant = _method_file(choice["method"])
    sources: list[tuple[str, dict[str, Any]]] = [
        (str(defaults_path), _read_yaml(defaults_path)),
        (str(data_path), _read_yaml(data_path)),
        (str(method_path), _read_yaml(method_path)),
    ]
    if variant is not None:
        sources.append((f"method={variant}", {"model": {"variant": variant}}))
    if recipe:
        sources.append((f"recipe {recipe_name}", recipe))
    if dotlist:
        try:
            cli = OmegaConf.to_container(OmegaConf.from_dotlist(dotlist))
        except OmegaConfBaseException as error:
            raise ConfigError(f"command line: cannot parse {dotlist}: {error}") from None
        sources.append(("command line", cli))
    if recipe and variant is not None and "model" in recipe and "variant" in recipe["model"]:
        # An explicit method=<variant> on the command line beats the recipe's variant.
        sources.append((f"method={variant}", {"model": {"variant": variant}}))

    merged = OmegaConf.structured(RunConfig)
    for where, values in sources:
        check_keys(values, where=where)
        try:
            merged = OmegaConf.merge(merged, values)
        except OmegaConfBaseException as error:
            key = getattr(error, "full_key", None)
            reason = getattr(error, "msg", None) or str(error)
            raise ConfigError(f"{where}: {key + ': ' if key else ''}{reason}") from None
    return OmegaConf.to_object(merged)


def to_dict(config: RunConfig) -> dict[str, Any]:
    """The config as plain nested dicts and lists (JSON-ready)."""
    return OmegaConf.to_container(OmegaConf.structured(config), resolve=True)


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
