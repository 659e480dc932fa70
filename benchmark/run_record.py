"""Run records: one JSON per finished run in ``results/runs/``, the leaderboard's only input.

A record holds every metric (per joint too), the resolved
config and its hash, the seed, the git commit and whether the tree was dirty, package versions,
the dataset fingerprint, the hardware, wall time and device-hours; and (schema 2) the model's
size and cost, the input size, the evaluation protocol (boxes, with the detection file's sha256;
decoder; flip test) and the metrics under every other decoder x flip-test protocol, the world
size and effective batch, the measured throughput and peak memory, the checkpoint's path and
sha256, the wandb run (id, URL) when there was one and the file name of the prediction gallery
(``<run_id>_gallery.png`` beside the record, benchmark/gallery.py); optionally (still schema 2) the
batch rule that paired the recipe's LR with its total batch (``batch_rule``, benchmark/batch_rule.py;
null or absent when the run had no ``optim.total_batch``); optionally (still schema 2; records before it lack it) the
``speed`` settings the run trained with, ``channels_last`` and ``precision``, each ``{value, source}``: ``config``
or the measured default ``auto`` resolved to (benchmark/speed_defaults.py). It is written atomically
(temp file in the same directory, then ``os.replace``), so a reader never sees half a record.
``validate_record`` checks a record against ``SCHEMA`` (field -> type) and the nested fields
other code reads; the runner validates on write, the leaderboard on read. It also rejects values the
writer can never produce, naming the field: a non-finite number (the writer turns NaN / inf into
null, which stays allowed) in a metric table or in ``model`` / ``reference``; a negative metric; a
percentage metric (``PCKh/``, ``PCK/``, ``PCP/``: MPII, LSP) above 100; a pycocotools fraction
(``AP*``, ``AR*``) above 1 or below 0 other than COCOeval's -1 ("no objects of that size"); and an
``input_size`` that is not ``[H, W]``, two positive integers.
"""

from __future__ import annotations

import importlib.metadata
import json
import math
import os
import platform
import subprocess
from pathlib import Path
from typing import Any

from benchmark.errors import PoseBenchError
from benchmark.files import atomic_write_text


class RecordError(PoseBenchError, ValueError):
    """A run record is unreadable or breaks the schema; the message names the file or the field at fault. Also a
    ``ValueError``, what the readers of records caught before this class existed."""


SCHEMA_VERSION = 2
SCHEMA: dict[str, type | tuple[type, ...]] = {
    "schema_version": int,
    "run_id": str,
    "name": str,
    "variant": str,
    "method": str,
    "dataset": dict,
    "recipe": (str, type(None)),
    "metrics": dict,
    "best": dict,
    "reference": dict,
    "config": dict,
    "config_hash": str,
    "seed": int,
    "git": dict,
    "packages": dict,
    "hardware": dict,
    "started_at": str,
    "finished_at": str,
    "wall_time_s": float,
    "device_hours": float,
    "checkpoint": (dict, type(None)),
    "model": dict,
    "input_size": list,
    "protocol": dict,
    "protocols": list,
    "world_size": int,
    "effective_batch": int,
    "throughput": dict,
    "peak_memory": dict,
    "wandb": (dict, type(None)),
    "gallery": (str, type(None)),
}
NESTED: dict[str, tuple[str, ...]] = {
    "dataset": ("name", "fingerprint"),
    "git": ("commit", "dirty"),
    "model": ("params", "gflops"),
    "protocol": ("boxes", "decoder", "flip_test"),
    "checkpoint": ("path", "sha256"),
    "wandb": ("id", "url"),
}
"""Keys a record's nested objects must have (when the object is not null)."""
PROTOCOL_ENTRY = ("stage", "decoder", "flip_test", "metrics")
CONVENTIONS = ("aligned", "msra", "udp")
"""``protocol.convention`` (pixelgrid); records written before it existed were all ``aligned``."""
IMPORTED = ("format", "source_file", "sha256")
"""Keys of ``imported``: set when the scored weights came from ``import-weights`` (a published checkpoint)."""
BEFORE_THE_KEY: dict[str, dict[str, Any]] = {
    "data": {"reduced_decode": False},  # JPEGs were decoded at full size
    "trainer": {"channels_last": False, "precision": "32-true"},  # contiguous fp32, before the measured defaults
    "model": {"instance_score": "bbox_keypoint"},  # every COCO run ranked persons by the box rescoring
}
"""What a run did before these config keys existed: a record that predates one of them is rerun as it ran
(benchmark/commands/rerun.py), and on the leaderboard it shares a row with a new run that set the same value."""
SPEED_VALUES: dict[str, type] = {"channels_last": bool, "precision": str}
"""``speed``: each setting's value type; each is ``{"value": ..., "source": str}``."""
BATCH_RULE_INTS = ("total_batch", "per_device", "world_size", "accumulate", "effective")
BATCH_RULE_NUMBERS = ("lr", "lr_scale")
BATCH_RULE_MODES = ("accumulate", "scale_lr", "off", "none")
"""``batch_rule``: positive integers, positive numbers and what was done (``batch_rule.APPLIED``); plus ``note``."""
NUMBERS: dict[str, tuple[str, ...]] = {
    "model": ("params", "gflops", "paper_gflops"),
    "reference": ("value", "tolerance"),
}
"""Nested values that must be numbers or null (the leaderboard computes with them)."""
PERCENT_PREFIXES = ("PCKh/", "PCK/", "PCP/")
"""Metric names in percent, 0 to 100 (benchmark/evaluation.py: MPII PCKh, LSP PCK@0.2 and strict PCP)."""
FRACTION_METRICS = ("AP", "AP50", "AP75", "APM", "APL", "AR", "AR50", "AR75", "ARM", "ARL")
"""pycocotools' ``COCOeval.stats`` (benchmark/metrics.py ``COCO_STAT_NAMES``): fractions 0 to 1, or -1 where
COCOeval had no data (e.g. no large person in a small subset)."""
COCO_NO_DATA = -1.0
PACKAGES = ("torch", "pytorch-lightning", "timm", "numpy", "albumentations", "opencv-python-headless",
            "pycocotools", "omegaconf", "scipy", "wandb", "posebench")


def git_state(root: Path | None = None) -> dict[str, Any]:
    """``{"commit": sha or None, "dirty": bool or None}`` of the checkout containing ``root``."""
    cwd = Path(root or Path(__file__).resolve().parents[1])
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True,
                                check=True, timeout=10).stdout.strip()
        status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=cwd,
                                capture_output=True, text=True, check=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}
    return {"commit": commit, "dirty": bool(status.strip())}


def package_versions() -> dict[str, str | None]:
    """Installed versions of the packages a result depends on (None when absent)."""
    versions: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    import torch

    versions["torch"] = torch.__version__  # carries the build tag (e.g. +cu130) that metadata drops
    versions["python"] = platform.python_version()
    return versions


def cpu_model() -> str:
    """The CPU's model name: ``/proc/cpuinfo``'s "model name" on Linux, else ``platform.processor()``
    (which on Linux says only ``x86_64``)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() == "model name" and value.strip():
                    return value.strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def hardware(accelerator: str, devices: int, num_nodes: int) -> dict[str, Any]:
    """The machine: platform, CPU (model name and the instruction-set level torch dispatches to, e.g. AVX2 or
    AVX512: the same seed gives other numbers on another of either), core and thread count, and the
    accelerator devices the run used. Records written before ``cpu_model`` / ``cpu_capability`` lack them."""
    import torch

    info: dict[str, Any] = {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_model": cpu_model(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "cpu_count": os.cpu_count(),
        "accelerator": accelerator,
        "devices": devices,
        "num_nodes": num_nodes,
        "torch_threads": torch.get_num_threads(),
    }
    if torch.cuda.is_available():
        info["gpus"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
        info["cuda"] = torch.version.cuda
    return info


def validate_record(record: Any) -> None:
    """Raise ``RecordError`` naming the first missing or mistyped field of a run record."""
    if not isinstance(record, dict):
        raise RecordError(f"a run record must be a JSON object, got {type(record).__name__}")
    for key, kind in SCHEMA.items():
        if key not in record:
            raise RecordError(f"run record lacks field {key!r}")
        value = record[key]
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            continue
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise RecordError(f"run record field {key!r} must be {kind}, got {type(value).__name__}")
    if record["schema_version"] != SCHEMA_VERSION:
        raise RecordError(f"run record schema_version {record['schema_version']} != {SCHEMA_VERSION}")
    size = record["input_size"]
    if len(size) != 2 or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in size):
        raise RecordError(f"run record field 'input_size' must be [H, W], two positive integers, got {size!r}")
    for stage, table in record["metrics"].items():
        _check_metric_table(table, f"metrics[{stage!r}]")
    for field, keys in NESTED.items():
        value = record[field]
        missing = [key for key in keys if value is not None and key not in value]
        if missing:
            raise RecordError(f"run record {field} lacks {missing[0]!r}")
    for i, entry in enumerate(record["protocols"]):
        if not isinstance(entry, dict):
            raise RecordError(f"run record protocols[{i}] must be an object with keys {list(PROTOCOL_ENTRY)}")
        missing = [key for key in PROTOCOL_ENTRY if key not in entry]
        if missing:
            raise RecordError(f"run record lacks field 'protocols[{i}].{missing[0]}'")
        if not isinstance(entry["decoder"], str):
            raise RecordError(f"run record field 'protocols[{i}].decoder' must be a string, got {entry['decoder']!r}")
        if not isinstance(entry["flip_test"], bool):
            raise RecordError(f"run record field 'protocols[{i}].flip_test' must be true or false, "
                             f"got {entry['flip_test']!r}")
        _check_metric_table(entry["metrics"], f"protocols[{i}].metrics")
    convention = record["protocol"].get("convention", "aligned")
    if convention not in CONVENTIONS:
        raise RecordError(f"run record field 'protocol.convention' must be one of {', '.join(CONVENTIONS)}, "
                         f"got {convention!r}")
    imported = record.get("imported")
    if imported is not None:
        missing = [key for key in IMPORTED if not isinstance(imported, dict) or key not in imported]
        if missing:
            raise RecordError(f"run record field 'imported' must be null or an object with {list(IMPORTED)}; "
                             f"lacks {missing[0]!r}")
    for field, keys in NUMBERS.items():
        for key in keys:
            value = record[field].get(key)
            if not _number(value):
                raise RecordError(f"run record field '{field}.{key}' must be a number or null, got {value!r}")
            if value is not None and not math.isfinite(value):
                raise RecordError(f"run record field '{field}.{key}' must be a finite number or null, got {value!r}")
    _check_batch_rule(record)
    _check_speed(record.get("speed"))
    # Optional (records before resume accounting lack it): how many segments wall_time_s sums.
    segments = record.get("segments", 1)
    if isinstance(segments, bool) or not isinstance(segments, int) or segments < 1:
        raise RecordError(f"run record field 'segments' must be a positive integer, got {segments!r}")


def _check_batch_rule(record: dict[str, Any]) -> None:
    """``batch_rule`` is absent or null (no rule; records before it), or a rule consistent with the record."""
    rule = record.get("batch_rule")
    if rule is None:
        return
    keys = [*BATCH_RULE_INTS, *BATCH_RULE_NUMBERS, "mode", "note"]
    if not isinstance(rule, dict):
        raise RecordError(f"run record field 'batch_rule' must be null or an object with keys {keys}")
    missing = [key for key in keys if key not in rule]
    if missing:
        raise RecordError(f"run record lacks field 'batch_rule.{missing[0]}'")
    for key in BATCH_RULE_INTS:
        value = rule[key]
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise RecordError(f"run record field 'batch_rule.{key}' must be a positive integer, got {value!r}")
    for key in BATCH_RULE_NUMBERS:
        value = rule[key]
        if value is None or not _number(value) or not value > 0:
            raise RecordError(f"run record field 'batch_rule.{key}' must be a positive number, got {value!r}")
    if rule["mode"] not in BATCH_RULE_MODES:
        raise RecordError(f"run record field 'batch_rule.mode' must be one of {', '.join(BATCH_RULE_MODES)}, "
                         f"got {rule['mode']!r}")
    if not isinstance(rule["note"], str):
        raise RecordError(f"run record field 'batch_rule.note' must be a string, got {rule['note']!r}")
    product = rule["per_device"] * rule["world_size"] * rule["accumulate"]
    if rule["effective"] != product:
        raise RecordError(f"run record field 'batch_rule.effective' must be per_device x world_size x accumulate = "
                         f"{product}, got {rule['effective']}")
    for key, field in (("world_size", "world_size"), ("effective", "effective_batch")):
        if rule[key] != record[field]:
            raise RecordError(f"run record field 'batch_rule.{key}' ({rule[key]}) differs from {field!r} "
                             f"({record[field]})")


def _check_speed(speed: Any) -> None:
    """``speed`` is absent (records before it) or ``{channels_last: {value: bool, source: str}, precision:
    {value: str, source: str}}``."""
    if speed is None:
        return
    if not isinstance(speed, dict):
        raise RecordError(f"run record field 'speed' must be an object with keys {list(SPEED_VALUES)}")
    for key, kind in SPEED_VALUES.items():
        setting = speed.get(key)
        if not isinstance(setting, dict) or not isinstance(setting.get("value"), kind) \
                or not isinstance(setting.get("source"), str):
            raise RecordError(f"run record field 'speed.{key}' must be {{value: {kind.__name__}, source: str}}, "
                             f"got {setting!r}")


def _number(value: Any) -> bool:
    return value is None or (isinstance(value, (int, float)) and not isinstance(value, bool))


def _check_metric_table(table: Any, where: str) -> None:
    """Numbers or null, finite, within what the metric can be (module docstring); errors name the metric."""
    if not isinstance(table, dict) or not all(_number(v) for v in table.values()):
        raise RecordError(f"run record {where} must map metric names to numbers (or null)")
    for name, value in table.items():
        if value is None:
            continue
        field = f"run record field '{where}[{name!r}]'"
        if not math.isfinite(value):
            raise RecordError(f"{field} must be a finite number or null, got {value!r}")
        if name in FRACTION_METRICS:
            if not (0.0 <= value <= 1.0 or value == COCO_NO_DATA):
                why = "is negative" if value < 0 else "is above 1"
                raise RecordError(f"{field} {why}: a pycocotools fraction is 0 to 1 (or -1, no data), got {value!r}")
        elif value < 0:
            raise RecordError(f"{field} is negative, got {value!r}")
        elif name.startswith(PERCENT_PREFIXES) and value > 100.0:
            raise RecordError(f"{field} is a percentage (0 to 100), got {value!r}")


def _finite(value: Any) -> Any:
    """JSON has no NaN: NaN/inf metrics (a joint never annotated) become None."""
    if isinstance(value, float) and value != value or value in (float("inf"), float("-inf")):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


SPEED_KEYS = ("channels_last", "precision")
"""``trainer`` keys a config may leave to ``auto``, resolved per machine (benchmark/speed_defaults.py)."""


def config_as_run(record: dict[str, Any]) -> dict[str, Any]:
    """The record's config with ``trainer.channels_last``/``precision`` that it left to ``auto`` replaced by the values
    the run resolved them to (its ``speed`` field): ``auto`` reads a table that changes as rows are measured and
    differs between CPUs, so the same config may have trained in fp32 on one machine and in bf16 on another. A
    record without ``speed`` (older) or a value the config set keeps the config's value."""
    config = json.loads(json.dumps(record["config"]))
    trainer, speed = config.get("trainer"), record.get("speed") or {}
    if isinstance(trainer, dict):
        for key in SPEED_KEYS:
            if trainer.get(key) == "auto" and isinstance(speed.get(key), dict) and "value" in speed[key]:
                trainer[key] = speed[key]["value"]
    return config


def write_record(record: dict[str, Any], directory: Path | str) -> Path:
    """Validate ``record`` (NaN / inf already null, as written) and write it as ``<directory>/<run_id>.json``
    atomically; returns the path."""
    record = _finite(record)
    validate_record(record)
    payload = json.dumps(record, indent=2, sort_keys=True, allow_nan=False) + "\n"
    return atomic_write_text(Path(directory) / f"{record['run_id']}.json", payload)


def read_record(path: Path | str) -> dict[str, Any]:
    """Load and validate one run record; ``RecordError`` names the file and what is wrong with it."""
    try:
        with Path(path).open() as f:
            record = json.load(f)
    except OSError as error:
        raise RecordError(f"{path}: cannot read the run record ({error.strerror or error})") from None
    except json.JSONDecodeError as error:
        raise RecordError(f"{path}: not valid JSON ({error})") from None
    try:
        validate_record(record)
    except RecordError as error:
        raise RecordError(f"{path}: {error}") from None
    return record
