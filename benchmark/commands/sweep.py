"""Sweeps: one wandb sweep file, run by wandb agents on many machines or locally by ``python -m benchmark sweep``.

A sweep file (``configs/sweeps/*.yaml``) is in wandb's sweep format: ``program``, ``method``
(``grid`` or ``random``), ``parameters`` and a block-style ``command`` such as
``.venv/bin/python -m benchmark train ${args_no_hyphens}``, so each run's values arrive as
``key=value`` overrides on the ``train`` command line (``method=hourglass-8 seed=1 data=mpii``).
The interpreter is named as the project's ``.venv/bin/python`` (relative: start ``wandb agent`` and
``python -m benchmark sweep`` in the checkout), because the agent fills ``${interpreter}`` with a bare
``python``, whatever is first on ``PATH``, not the environment PoseBench is installed in.

With wandb: ``wandb sweep FILE`` prints a sweep id; ``wandb agent ENTITY/PROJECT/ID`` on every
machine (one agent per GPU: ``CUDA_VISIBLE_DEVICES=1 wandb agent ...``) pulls runs until the grid
is done. wandb sweeps need a wandb server: the controller lives there, so they fail offline.
Under DDP only rank 0 has a wandb run, so the run's hyper-parameters must come from the command
line (they do: ``${args_no_hyphens}``), never from ``wandb.config``.

Locally, ``run_sweep(FILE)`` expands the runs as wandb's controller would and launches each
command itself: ``dry_run`` prints them (one shell command line each; runs already done appear
as ``# done`` comments), ``gpus=[0, 1, ...]`` runs one run per GPU in parallel (a worker thread per
GPU pulls the next run and launches it with ``CUDA_VISIBLE_DEVICES`` set to its GPU), and
``WANDB_MODE=offline`` is set for the runs when no ``WANDB_API_KEY`` is (unless ``WANDB_MODE`` is
set already), so ``logger=wandb`` runs log into ``wandb/`` for a later ``wandb sync``.
``jobs=N`` runs N runs at a time on the CPU instead, each with ``cores // N`` torch threads
(``OMP_NUM_THREADS``; small models gain more from parallel runs than from threads); a run whose
command is this interpreter's ``-m benchmark ...`` is then forked from a server process that imported
the training code once (benchmark/commands/launch.py), so a minute-long CPU run does not spend seconds
starting. With
``logs_dir`` (``--jobs`` defaults it to ``outputs/sweeps/<file name>``) each run's output goes to
its own log file, ``<values of the swept parameters>.log``, and a progress bar counts the runs.
``key=value`` overrides on the command line (``overrides``; ``--results-dir DIR`` is
``results_dir=DIR``) become constant parameters of every run.
Local additions to wandb's format: a ``values`` item holding ``{method}`` stands for one item per
registered method (``models.METHODS``; ``recipe: {values: [demo_{method}]}`` in ``sweeps/demo.yaml``),
so a sweep over the registry picks up a new method without an edit (``fill_methods``).
Each run has a process group of its own (benchmark/commands/launch.py); a SIGTERM or SIGINT (Ctrl-C)
to the runner is forwarded to the running runs' groups, the runner waits for them to end, starts no
further run and exits with 128 + the signal number (a second signal kills the runs), so no training
is left orphaned.

Resuming: a run is *done* when the directory its record goes into (the ``results_dir`` its
overrides resolve to: a ``results_dir`` parameter of the sweep, else the config default; or
``records_dir`` when one is given) holds a run record whose resolved config has, for every parameter of the sweep
(swept or constant), the value the run's overrides resolve to: the overrides are resolved with
``benchmark.config.load_config`` and compared key by key with ``record["config"]``; the group
selectors compare resolved paths (``data`` -> ``data.name``, ``method`` -> ``model.variant``,
``recipe`` -> ``recipe``), every other parameter its own dotted path. Done runs are skipped, so
an interrupted sweep resumes where it stopped. A run whose overrides do not resolve gets a
warning and is launched anyway, so that ``train`` reports the error in its own log.

Expansion follows wandb's sweep controller (github.com/wandb/sweeps, ``src/sweeps/params.py``,
``grid_search.py``, ``random_search.py``):

- parameters are taken in sorted name order (``HyperParameterSet.from_config`` sorts them);
- ``grid``: the cartesian product (``itertools.product``) of the parameters' values in that
  order, so the last name varies fastest; ``value`` is a constant, ``int_uniform`` becomes
  ``range(min, max + 1)``, ``q_uniform`` ``numpy.arange(min, max, q)``; repeated combinations
  are proposed once; any other distribution is an error, as in wandb;
- ``random``: ``run_cap`` runs (required locally; wandb's random sweeps run forever without
  it), each drawing one uniform number per parameter in name order and mapping it through the
  parameter's inverse CDF (``HyperParameter.ppf``). wandb's server draws unseeded; here one
  ``random.Random(seed)`` makes the list reproducible.

Distributions (docs.wandb.ai, "Sweep configuration options"): ``value``; ``values`` (with
``probabilities`` in random sweeps); ``min``/``max`` (integers -> ``int_uniform``, else
``uniform``); ``distribution`` one of ``constant categorical int_uniform uniform q_uniform
log_uniform`` (bounds are exponents) ``log_uniform_values`` ``normal`` (``mu``, ``sigma``).
Nested ``parameters`` are not supported (PoseBench uses dotted keys such as
``trainer.max_epochs``).

Command macros are filled as the wandb agent fills them (``wandb/wandb_agent.py``,
``wandb/sdk/launch/sweeps/utils.py::create_sweep_command_args``): ``${env}`` ->
``/usr/bin/env`` (nothing on Windows), ``${interpreter}`` -> ``python``, a bare name looked up
on ``PATH`` (here: the ``python`` argument, default the running interpreter), ``${program}`` -> the
``program`` value as written, ``${args}`` (``--k=v``),
``${args_no_hyphens}`` (``k=v``), ``${args_no_equals}`` (``--k v``), ``${args_no_boolean_flags}``,
``${args_json}``, ``${args_append_hydra}`` (``+k=v``), ``${args_override_hydra}`` (``++k=v``) and
``${envvar:NAME}``; a value is written with Python's ``str``, as the agent does.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import logging
import math
import os
import platform
import queue
import random
import re
import shlex
import signal
import statistics
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml
from tqdm import tqdm

from benchmark import run_record
from benchmark.commands.launch import STOP, benchmark_args, cpu_cores, forward_signal, launch, start_preload_server
from benchmark.errors import PoseBenchError

log = logging.getLogger(__name__)

SELECTOR_PATHS = {"data": "data.name", "method": "model.variant", "recipe": "recipe"}
"""Sweep parameters that are config group selectors, and the resolved config path each sets."""

DEFAULT_COMMAND = ("${env}", "${interpreter}", "${program}", "${args}")
DISTRIBUTIONS = ("constant", "categorical", "int_uniform", "uniform", "q_uniform", "log_uniform",
                 "log_uniform_values", "normal")
_ENVVAR = re.compile(r"\$\{envvar:([A-Z0-9_]*)\}")
METHOD_PLACEHOLDER = "{method}"
"""In a ``values`` item, stands for each registered method (``fill_methods``)."""


class SweepError(PoseBenchError):
    """A sweep file or parameter is invalid; the message names the file or parameter."""


# ------------------------------------------------------------------------------ reading


def load_sweep(path: Path) -> dict[str, Any]:
    """The sweep spec in ``path`` (YAML), checked for ``method`` and ``parameters``."""
    path = Path(path)
    try:
        spec = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as error:
        raise SweepError(f"{path}: cannot read the sweep file ({error})") from None
    if not isinstance(spec, dict):
        raise SweepError(f"{path}: a sweep file must be a mapping with 'method' and 'parameters'")
    if spec.get("method") not in ("grid", "random"):
        raise SweepError(f"{path}: 'method' must be grid or random for local sweeps, got {spec.get('method')!r}")
    if not isinstance(spec.get("parameters"), dict) or not spec["parameters"]:
        raise SweepError(f"{path}: 'parameters' must be a non-empty mapping")
    if "command" in spec and not isinstance(spec["command"], list):
        raise SweepError(f"{path}: 'command' must be a list (block style, one item per argument)")
    return spec


def fill_methods(spec: dict[str, Any], methods: Sequence[str] | None = None) -> dict[str, Any]:
    """``spec`` with every ``values`` item holding ``{method}`` replaced by one item per method of
    ``methods`` (default: every registered method, ``models.METHODS``, sorted): ``demo_{method}`` ->
    ``demo_cpm``, ``demo_deeppose``, ... So a sweep over the registry needs no edit when a method joins."""

    def placeholder(item: Any) -> bool:
        return isinstance(item, str) and METHOD_PLACEHOLDER in item

    listed = {name: param["values"] for name, param in spec["parameters"].items()
              if isinstance(param, dict) and isinstance(param.get("values"), list)}
    if not any(placeholder(item) for values in listed.values() for item in values):
        return spec
    if methods is None:
        from models import METHODS

        methods = sorted(METHODS)
    chosen = list(methods)

    def expand(item: Any) -> list[Any]:
        return [item.replace(METHOD_PLACEHOLDER, method) for method in chosen] if placeholder(item) else [item]

    filled = dict(spec["parameters"])
    for name, values in listed.items():
        filled[name] = {**filled[name], "values": [value for item in values for value in expand(item)]}
    return {**spec, "parameters": filled}


def with_overrides(spec: dict[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """``spec`` with each ``key=value`` of ``overrides`` as a constant parameter (replacing a parameter of
    that name): every run gets it, and a finished run's record must hold it to count as done."""
    params = dict(spec["parameters"])
    for item in overrides:
        key, equals, value = item.partition("=")
        if not equals or not key:
            raise SweepError(f"override {item!r} is not key=value (e.g. trainer.max_epochs=2)")
        params[key] = {"value": value}
    return {**spec, "parameters": params}


def _kind(name: str, param: Any) -> str:
    """The distribution of parameter ``name`` as wandb infers it."""
    if not isinstance(param, dict):
        raise SweepError(f"parameter {name!r} must be a mapping (value, values, min/max, distribution), got {param!r}")
    if "parameters" in param:
        raise SweepError(f"parameter {name!r}: nested parameters are not supported; use dotted keys")
    kind = param.get("distribution")
    if kind is None:
        if "value" in param:
            kind = "constant"
        elif "values" in param:
            kind = "categorical"
        elif "min" in param and "max" in param:
            bounds = (param["min"], param["max"])
            kind = "int_uniform" if all(isinstance(b, int) and not isinstance(b, bool) for b in bounds) else "uniform"
        else:
            raise SweepError(f"parameter {name!r} needs value, values, min/max or a distribution: {param!r}")
    if kind not in DISTRIBUTIONS:
        raise SweepError(f"parameter {name!r}: distribution {kind!r} is not supported; use one of "
                         f"{', '.join(DISTRIBUTIONS)}")
    needed = {"constant": ("value",), "categorical": ("values",), "normal": ()}.get(kind, ("min", "max"))
    missing = [k for k in needed if k not in param]
    if kind == "q_uniform" and "q" not in param:
        missing.append("q")
    if missing:
        raise SweepError(f"parameter {name!r} ({kind}) lacks {', '.join(missing)}")
    if kind == "categorical" and (not isinstance(param["values"], list) or not param["values"]):
        raise SweepError(f"parameter {name!r}: 'values' must be a non-empty list")
    return kind


# ------------------------------------------------------------------------------ expansion


def _grid_values(name: str, param: dict[str, Any]) -> list[Any]:
    kind = _kind(name, param)
    if kind == "constant":
        return [param["value"]]
    if kind == "categorical":
        if "probabilities" in param:
            raise SweepError(f"parameter {name!r}: probabilities are not allowed in a grid sweep")
        return list(param["values"])
    if kind == "int_uniform":
        return list(range(int(param["min"]), int(param["max"]) + 1))
    if kind == "q_uniform":
        import numpy as np

        return np.arange(param["min"], param["max"], param["q"]).tolist()
    raise SweepError(f"parameter {name!r}: a {kind} distribution cannot be swept on a grid "
                     "(grid allows value, values, int_uniform, q_uniform)")


def _quantise(value: float, q: Any) -> float | int:
    rounded = round(value / q) * q
    return int(rounded) if isinstance(q, int) else float(rounded)


def _sample(name: str, param: dict[str, Any], u: float) -> Any:
    """The value at quantile ``u`` in [0, 1) of parameter ``name`` (wandb's ``HyperParameter.ppf``)."""
    kind = _kind(name, param)
    if kind == "constant":
        return param["value"]
    if kind == "categorical":
        values = param["values"]
        weights = param.get("probabilities") or [1.0] * len(values)
        if len(weights) != len(values) or any(w < 0 for w in weights) or sum(weights) <= 0:
            raise SweepError(f"parameter {name!r}: probabilities must be {len(values)} non-negative weights")
        cumulative = list(itertools.accumulate(w / sum(weights) for w in weights))
        return values[next((i for i, c in enumerate(cumulative) if u < c), len(values) - 1)]
    if kind == "normal":
        normal = statistics.NormalDist(param.get("mu", 0.0), param.get("sigma", 1.0))
        return float(normal.inv_cdf(min(max(u, 1e-12), 1.0 - 1e-12)))
    low, high = param["min"], param["max"]  # every other distribution has both (_kind checks)
    if kind == "int_uniform":
        return int(low) + min(int(u * (int(high) - int(low) + 1)), int(high) - int(low))
    if kind == "uniform":
        return float(low + u * (high - low))
    if kind == "q_uniform":
        return _quantise(low + u * (high - low), param["q"])
    if kind == "log_uniform":
        return float(math.exp(low + u * (high - low)))
    if kind == "log_uniform_values":
        if low <= 0 or high <= 0:
            raise SweepError(f"parameter {name!r}: log_uniform_values needs positive min and max")
        return float(math.exp(math.log(low) + u * (math.log(high) - math.log(low))))
    raise AssertionError(f"distribution {kind} has no sampler")  # _kind admits only DISTRIBUTIONS


def expand_sweep(spec: dict[str, Any], seed: int = 0) -> list[dict[str, Any]]:
    """The runs of sweep ``spec`` as ``{parameter: value}`` dicts (keys in sorted order), in wandb's order.

    ``grid``: the cartesian product over the sorted parameter names (last name fastest), each
    combination once. ``random``: ``spec["run_cap"]`` draws from ``random.Random(seed)``.
    """
    params = spec.get("parameters")
    if not isinstance(params, dict) or not params:
        raise SweepError("sweep 'parameters' must be a non-empty mapping")
    names = sorted(params)
    if spec.get("method") == "grid":
        runs: list[dict[str, Any]] = []
        seen: set[str] = set()
        for combo in itertools.product(*(_grid_values(name, params[name]) for name in names)):
            key = json.dumps(combo, sort_keys=True, default=str)
            if key not in seen:
                seen.add(key)
                runs.append(dict(zip(names, combo, strict=True)))
        return runs
    if spec.get("method") == "random":
        cap = spec.get("run_cap")
        if not isinstance(cap, int) or isinstance(cap, bool) or cap <= 0:
            raise SweepError(f"a local random sweep needs a positive integer 'run_cap', got {cap!r}")
        rng = random.Random(seed)
        return [{name: _sample(name, params[name], rng.random()) for name in names} for _ in range(cap)]
    raise SweepError(f"sweep 'method' must be grid or random for local sweeps, got {spec.get('method')!r}")


# ------------------------------------------------------------------------------ commands


def command_args(params: dict[str, Any]) -> dict[str, list[str]]:
    """The argument macros of one run, as the wandb agent builds them (values written with ``str``)."""
    flags = [f"{name}={value}" for name, value in params.items()]
    return {
        "args": [f"--{flag}" for flag in flags],
        "args_no_hyphens": flags,
        "args_no_equals": [item for name, value in params.items() for item in (f"--{name}", str(value))],
        "args_no_boolean_flags": [f"--{name}" if value is True else f"--{name}={value}"
                                  for name, value in params.items() if value is not False],
        "args_json": [json.dumps(params)],
        "args_append_hydra": [f"+{flag}" for flag in flags],
        "args_override_hydra": [f"++{flag}" for flag in flags],
    }


def build_command(spec: dict[str, Any], params: dict[str, Any], python: str = sys.executable) -> list[str]:
    """The argv of one run: ``spec["command"]`` (or wandb's default) with its macros filled."""
    macros = {
        **command_args(params),
        "env": [] if platform.system() == "Windows" else ["/usr/bin/env"],
        "interpreter": [python],
        "program": [str(spec["program"])] if "program" in spec else [],
    }
    argv: list[str] = []
    for chunk in spec.get("command") or DEFAULT_COMMAND:
        chunk = _ENVVAR.sub(lambda m: os.environ.get(m.group(1), m.group(1)), str(chunk))
        if chunk.startswith("${") and chunk.endswith("}"):
            name = chunk[2:-1]
            if name not in macros or (name == "program" and not macros[name]):
                raise SweepError(f"sweep command macro {chunk} is not supported here (or 'program' is missing); "
                                 f"known: {', '.join('${' + m + '}' for m in sorted(macros))}")
            argv += macros[name]
        else:
            argv.append(chunk)
    return argv


# ------------------------------------------------------------------------------ resuming


def _resolve(params: dict[str, Any]) -> tuple[dict[str, Any], str]:
    """``({config path: value} the run's overrides resolve to, for every sweep parameter; the results_dir the run
    writes its record into)``. Raises ``benchmark.config.ConfigError`` when the overrides do not resolve."""
    from benchmark.config import load_config, lookup, to_dict

    config = to_dict(load_config(command_args(params)["args_no_hyphens"]))
    paths = [SELECTOR_PATHS.get(name, name) for name in params]
    return {path: json.loads(json.dumps(lookup(config, path), default=str)) for path in paths}, config["results_dir"]


def read_configs(records_dir: Path) -> list[tuple[Path, dict[str, Any]]]:
    """``(path, resolved config)`` of every run record in ``records_dir`` (none when it does not exist)."""
    records_dir = Path(records_dir)
    if not records_dir.is_dir():
        return []
    return [(path, run_record.read_record(path)["config"]) for path in sorted(records_dir.glob("*.json"))]


def find_record(expected: dict[str, Any], configs: list[tuple[Path, dict[str, Any]]]) -> Path | None:
    """The first record whose config holds every ``expected`` value (see the module docstring)."""
    from benchmark.config import lookup

    for path, config in configs:
        if all(lookup(config, key) == value for key, value in expected.items()):
            return path
    return None


@dataclasses.dataclass(frozen=True)
class PlannedRun:
    """One run of a sweep: its number (from 1, in expansion order), parameters, command and finished record."""

    number: int
    params: dict[str, Any]
    command: list[str]
    record: Path | None
    """The record of this run when it is done already (it is skipped), else None."""


def plan_sweep(spec: dict[str, Any], *, records_dir: Path | None = None, python: str = sys.executable,
               seed: int = 0) -> list[PlannedRun]:
    """Every run of ``spec`` with its command and, when it is done, its record (see ``run_sweep``).

    A run whose overrides do not resolve gets a warning and counts as not done: ``train`` reports it."""
    from benchmark.config import ConfigError

    runs = expand_sweep(spec, seed=seed)
    configs: dict[Path, list[tuple[Path, dict[str, Any]]]] = {}
    planned = []
    for number, params in enumerate(runs, start=1):
        command = build_command(spec, params, python)
        try:
            expected, results_dir = _resolve(params)
        except ConfigError as error:
            log.warning(f"[{number}/{len(runs)}] warning: {error} (launched anyway; train reports it)")
            planned.append(PlannedRun(number, params, command, None))
            continue
        where = Path(results_dir) if records_dir is None else Path(records_dir)
        if where not in configs:
            configs[where] = read_configs(where)
        planned.append(PlannedRun(number, params, command, find_record(expected, configs[where])))
    return planned


# ------------------------------------------------------------------------------ running


def parse_gpus(text: str) -> list[int]:
    """``"0,1,3"`` -> ``[0, 1, 3]`` (the ``--gpus`` argument)."""
    try:
        gpus = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise SweepError(f"--gpus takes comma-separated GPU indices such as 0,1; got {text!r}") from None
    if not gpus or len(set(gpus)) != len(gpus) or min(gpus) < 0:
        raise SweepError(f"--gpus takes distinct non-negative GPU indices such as 0,1; got {text!r}")
    return gpus


def run_environment(base: dict[str, str] | None = None) -> dict[str, str]:
    """The runs' environment: ``base`` (default ``os.environ``) with ``WANDB_MODE=offline`` when no
    ``WANDB_API_KEY`` is set and ``WANDB_MODE`` is not set already."""
    env = dict(os.environ if base is None else base)
    if not env.get("WANDB_API_KEY"):
        env.setdefault("WANDB_MODE", "offline")
    return env


def log_name(spec: dict[str, Any], run: PlannedRun) -> str:
    """The log file name of ``run``: the values of the sweep's varying parameters, e.g. ``coco_demo_hrnet.log``."""
    varying = [name for name in sorted(spec["parameters"]) if _kind(name, spec["parameters"][name]) != "constant"]
    slug = "_".join(str(run.params[name]) for name in varying) or f"run{run.number}"
    return re.sub(r"[^A-Za-z0-9._=-]+", "-", slug) + ".log"


def _slots(gpus: list[int] | None, jobs: int | None, pending: int, env: dict[str, str]) -> list[tuple[str, dict]]:
    """``(label, environment)`` of each parallel worker: one per GPU, ``jobs`` CPU workers with
    ``cpu_cores() // jobs`` torch threads each, or one worker with the environment as it is."""
    if gpus and jobs:
        raise SweepError("--gpus (one run per GPU) and --jobs (runs on the CPU) exclude each other; choose one")
    if gpus:
        return [(f" gpu {gpu}", {**env, "CUDA_VISIBLE_DEVICES": str(gpu)}) for gpu in gpus]
    if jobs:
        if jobs < 1:
            raise SweepError(f"--jobs takes a positive number of parallel runs, got {jobs}")
        jobs = min(jobs, max(pending, 1))
        threads = str(max(1, cpu_cores() // jobs))  # torch reads OMP_NUM_THREADS for its intra-op threads
        return [("", {**env, "OMP_NUM_THREADS": threads})] * jobs
    return [("", env)]


def run_sweep(
    sweep: Path | dict[str, Any],
    *,
    dry_run: bool = False,
    gpus: list[int] | None = None,
    jobs: int | None = None,
    records_dir: Path | None = None,
    overrides: Sequence[str] = (),
    methods: Sequence[str] | None = None,
    logs_dir: Path | None = None,
    python: str = sys.executable,
    seed: int = 0,
) -> int:
    """Run the sweep (a file, or a spec as ``load_sweep`` returns it) locally, skipping runs whose record
    exists; 0 when every run succeeded (or was done already), 1 otherwise, 128 + the signal number when a
    SIGTERM or SIGINT stopped it (forwarded to the running runs, which the runner waits for; no further run
    starts; a second signal kills the runs). ``dry_run`` prints the command lines instead.

    ``overrides`` (``key=value``) become constant parameters and ``methods`` fill the ``{method}``
    placeholder (``with_overrides``, ``fill_methods``). ``records_dir``: where the runs' records are
    looked for; None (the default) looks where each run writes its record, the ``results_dir`` its
    overrides resolve to. ``gpus``: one run per listed GPU at a time (``CUDA_VISIBLE_DEVICES``);
    ``jobs``: that many runs at a time on the CPU, each with ``cpu_cores() // jobs`` torch threads
    (``python -m benchmark`` commands forked preloaded, see ``launch``);
    neither runs one at a time with the environment as it is. ``logs_dir``: each run's output goes to
    ``logs_dir/<log_name>`` and a progress bar counts the runs instead. ``seed`` seeds a random sweep's draws."""
    spec = sweep if isinstance(sweep, dict) else load_sweep(sweep)
    spec = with_overrides(fill_methods(spec, methods), overrides)
    planned = plan_sweep(spec, records_dir=records_dir, python=python, seed=seed)
    total = len(planned)
    for run in planned:
        if run.record is not None:
            log.info(f"# done ({run.record}): {shlex.join(run.command)}" if dry_run
                     else f"[{run.number}/{total}] skip, record {run.record}")
        elif dry_run:
            log.info(shlex.join(run.command))
    pending = [run for run in planned if run.record is None]
    if dry_run or not pending:
        log.info(f"# {total} runs, {total - len(pending)} done, {len(pending)} to run")
        return 0
    slots = _slots(gpus, jobs, len(pending), run_environment())
    preloaded = bool(jobs)
    if jobs:
        log.info(f"# {len(pending)} of {total} runs to run, {len(slots)} at a time, "
                 f"{slots[0][1]['OMP_NUM_THREADS']} torch thread(s) each")
        if any(benchmark_args(run.command) for run in pending):
            start_preload_server()  # import the training code now, before the first run asks for it
    return _run_pending(spec, pending, total, slots, logs_dir, preloaded)


def _run_pending(spec: dict[str, Any], pending: list[PlannedRun], total: int, slots: list[tuple[str, dict]],
                 logs_dir: Path | None, preloaded: bool) -> int:
    """Run ``pending`` on the worker ``slots`` (see ``run_sweep``); the sweep's exit status."""
    work: queue.Queue[PlannedRun] = queue.Queue()
    for run in pending:
        work.put(run)
    failures: list[int] = []
    lock = threading.Lock()
    bar = None if logs_dir is None else tqdm(total=len(pending), unit="run", desc="sweep", dynamic_ncols=True)

    def say(message: str) -> None:
        with lock:
            if bar is None:
                log.info(message)
            else:
                with tqdm.external_write_mode():
                    log.info(message)

    def worker(where: str, env: dict[str, str]) -> None:
        while not STOP.is_set():
            try:
                run = work.get_nowait()
            except queue.Empty:
                return
            output = None if logs_dir is None else Path(logs_dir) / log_name(spec, run)
            if output is None:
                say(f"[{run.number}/{total}]{where} start: {shlex.join(run.command)}")
            started = time.monotonic()
            try:
                code = launch(run.command, env, output, preloaded=preloaded)
                outcome = "ok" if code == 0 else f"failed (exit {code})"
            except OSError as error:  # e.g. the interpreter is missing: a failed run, not a dead worker
                code, outcome = -1, f"failed to start ({error})"
            with lock:
                if code != 0:
                    failures.append(run.number)
                if bar is not None:
                    bar.update(1)
            if output is None:
                say(f"[{run.number}/{total}]{where} {outcome}")
            else:
                say(f"[{run.number}/{total}] {outcome} in {time.monotonic() - started:.0f} s: "
                    f"{' '.join(command_args(run.params)['args_no_hyphens'])} (log: {output})")

    received: list[int] = []

    def on_signal(signum: int, _frame: Any) -> None:
        received.append(signum)
        STOP.set()
        forward_signal(signum, kill=len(received) > 1)

    STOP.clear()
    main = threading.current_thread() is threading.main_thread()  # signal handlers live in the main thread only
    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)} if main else {}
    threads = [threading.Thread(target=worker, args=slot, daemon=True) for slot in slots]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            while thread.is_alive():  # a timed join lets the handler run promptly
                thread.join(timeout=0.2)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if bar is not None:
            bar.close()
    if received:
        name = signal.Signals(received[0]).name
        log.warning(f"# stopped by {name}: the running runs were sent {name} and have ended; "
                    f"{work.qsize()} runs not started (rerun the sweep to resume)")
        return 128 + received[0]
    log.info(f"# {total} runs, {total - len(pending)} done before, {len(pending) - len(failures)} ok, "
             f"{len(failures)} failed{' (' + ', '.join(map(str, sorted(failures))) + ')' if failures else ''}")
    return 1 if failures else 0


# ---- command line


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """``sweep FILE [key=value ...] [--dry-run] [--gpus IDS | --jobs N] [--records-dir DIR] ...``."""
    parser.add_argument("file", type=Path, help="sweep YAML, e.g. benchmark/configs/sweeps/architectures.yaml")
    parser.add_argument("overrides", nargs="*", metavar="key=value",
                        help="constant parameters added to every run, e.g. trainer.max_epochs=1")
    parser.add_argument("--dry-run", action="store_true", help="print the runs, start nothing")
    parser.add_argument("--gpus", default=None, help="comma-separated GPU ids: one run per GPU in parallel")
    parser.add_argument("--jobs", type=int, default=None,
                        help="N runs in parallel on the CPU, each with cores/N torch threads; their output goes "
                             "to --logs-dir and a progress bar counts the runs")
    parser.add_argument("--logs-dir", type=Path, default=None,
                        help="one log file per run (default with --jobs: outputs/sweeps/<sweep file name>)")
    parser.add_argument("--results-dir", type=Path, default=None,
                        help="the runs write their records there (results_dir=DIR for every run), and finished "
                             "runs are looked for there")
    parser.add_argument("--records-dir", type=Path, default=None,
                        help="where the runs write their records (finished combinations are skipped); "
                             "default: each run's results_dir")
    parser.add_argument("--seed", type=int, default=0, help="seed of a random sweep's draws")


def run(args: argparse.Namespace) -> int:
    """Run (or list) the sweep; see ``run_sweep`` for the exit status."""
    gpus = parse_gpus(args.gpus) if args.gpus else None
    logs_dir = args.logs_dir or (Path("outputs/sweeps") / args.file.stem if args.jobs else None)
    overrides = [*args.overrides, *([f"results_dir={args.results_dir}"] if args.results_dir else [])]
    return run_sweep(args.file, dry_run=args.dry_run, gpus=gpus, jobs=args.jobs, records_dir=args.records_dir,
                     overrides=overrides, logs_dir=logs_dir, seed=args.seed)
