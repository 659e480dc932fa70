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
Each run has a process group of its own; a SIGTERM or SIGINT (Ctrl-C) to the runner is forwarded
to the running runs' groups, the runner waits for them to end, starts no further run and exits
with 128 + the signal number (a second signal kills the runs), so no training is left orphaned.

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

import itertools
import json
import math
import os
import platform
import queue
import random
import re
import shlex
import signal
import statistics
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import yaml

from benchmark import run_record

SELECTOR_PATHS = {"data": "data.name", "method": "model.variant", "recipe": "recipe"}
"""Sweep parameters that are config group selectors, and the resolved config path each sets."""

DEFAULT_COMMAND = ("${env}", "${interpreter}", "${program}", "${args}")
DISTRIBUTIONS = ("constant", "categorical", "int_uniform", "uniform", "q_uniform", "log_uniform",
                 "log_uniform_values", "normal")
_ENVVAR = re.compile(r"\$\{envvar:([A-Z0-9_]*)\}")


class SweepError(ValueError):
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
    low, high = param.get("min"), param.get("max")
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
    normal = statistics.NormalDist(param.get("mu", 0.0), param.get("sigma", 1.0))
    return float(normal.inv_cdf(min(max(u, 1e-12), 1.0 - 1e-12)))


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
                runs.append(dict(zip(names, combo)))
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


_MISSING = object()


def _get(mapping: Any, dotted: str) -> Any:
    for key in dotted.split("."):
        if not isinstance(mapping, dict) or key not in mapping:
            return _MISSING
        mapping = mapping[key]
    return mapping


def _resolve(params: dict[str, Any]) -> tuple[dict[str, Any], str]:
    """``resolved_values(params)`` and the ``results_dir`` the run writes its record into."""
    from benchmark.config import load_config, to_dict

    config = to_dict(load_config(command_args(params)["args_no_hyphens"]))
    paths = [SELECTOR_PATHS.get(name, name) for name in params]
    return {path: json.loads(json.dumps(_get(config, path), default=str)) for path in paths}, config["results_dir"]


def resolved_values(params: dict[str, Any]) -> dict[str, Any]:
    """``{config path: value}`` the run's overrides resolve to, for every sweep parameter.

    Raises ``benchmark.config.ConfigError`` when the overrides do not resolve."""
    return _resolve(params)[0]


def read_configs(records_dir: Path) -> list[tuple[Path, dict[str, Any]]]:
    """``(path, resolved config)`` of every run record in ``records_dir`` (none when it does not exist)."""
    records_dir = Path(records_dir)
    if not records_dir.is_dir():
        return []
    return [(path, run_record.read_record(path)["config"]) for path in sorted(records_dir.glob("*.json"))]


def find_record(expected: dict[str, Any], configs: list[tuple[Path, dict[str, Any]]]) -> Path | None:
    """The first record whose config holds every ``expected`` value (see the module docstring)."""
    for path, config in configs:
        if all(_get(config, key) == value for key, value in expected.items()):
            return path
    return None


# ------------------------------------------------------------------------------ running


_CHILDREN: set[subprocess.Popen] = set()
"""The runs being launched now; a signal to the runner is forwarded to each one's process group."""
_CHILDREN_LOCK = threading.Lock()
_STOP = threading.Event()
"""Set when the runner was told to stop (SIGTERM/SIGINT): no further run starts."""


def launch(command: list[str], env: dict[str, str]) -> int:
    """Run one sweep command to completion; its exit status.

    The run gets a process group of its own (``start_new_session``), so that the runner alone decides
    what reaches it: a SIGTERM or SIGINT to the runner is forwarded to the whole group (the run and its
    DDP ranks and loader workers) and the runner waits for it (``run_sweep``), never orphaning it."""
    with _CHILDREN_LOCK:
        if _STOP.is_set():
            return -signal.SIGTERM
        child = subprocess.Popen(command, env=env, start_new_session=True)
        _CHILDREN.add(child)
    try:
        return child.wait()
    finally:
        with _CHILDREN_LOCK:
            _CHILDREN.discard(child)


def _forward(signum: int, kill: bool) -> None:
    """Send ``signum`` (SIGKILL when ``kill``) to the process group of every live run."""
    with _CHILDREN_LOCK:
        for child in _CHILDREN:
            try:
                os.killpg(child.pid, signal.SIGKILL if kill else signum)
            except (ProcessLookupError, PermissionError):  # it has just exited
                pass


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


def run_sweep(
    sweep_file: Path,
    *,
    dry_run: bool = False,
    gpus: list[int] | None = None,
    records_dir: Path | None = None,
    python: str = sys.executable,
    seed: int = 0,
) -> int:
    """Run the sweep in ``sweep_file`` locally, skipping runs whose record exists; 0 when every run
    succeeded (or was done already), 1 otherwise, 128 + the signal number when a SIGTERM or SIGINT
    stopped it (forwarded to the running runs, which the runner waits for; no further run starts; a
    second signal kills the runs). ``dry_run`` prints the command lines instead.
    ``records_dir``: where the runs' records are looked for; None (the default) looks where each run
    writes its record, the ``results_dir`` its overrides resolve to (a ``results_dir`` parameter of
    the sweep, else the config default). ``gpus``: one run per listed GPU at a time
    (``CUDA_VISIBLE_DEVICES``); None runs one at a time with the environment as it is. ``seed``
    seeds a random sweep's draws."""
    from benchmark.config import ConfigError

    spec = load_sweep(sweep_file)
    runs = expand_sweep(spec, seed=seed)
    configs: dict[Path, list[tuple[Path, dict[str, Any]]]] = {}
    total = len(runs)
    pending: list[tuple[int, list[str]]] = []
    for number, params in enumerate(runs, start=1):
        command = build_command(spec, params, python)
        try:
            expected, results_dir = _resolve(params)
            where = Path(results_dir) if records_dir is None else Path(records_dir)
            if where not in configs:
                configs[where] = read_configs(where)
            done = find_record(expected, configs[where])
        except ConfigError as error:
            done = None
            print(f"[{number}/{total}] warning: {error} (launched anyway; train reports it)", file=sys.stderr,
                  flush=True)
        if done is not None:
            print(f"# done ({done}): {shlex.join(command)}" if dry_run else f"[{number}/{total}] skip, record {done}",
                  flush=True)
            continue
        if dry_run:
            print(shlex.join(command), flush=True)
        pending.append((number, command))
    if dry_run or not pending:
        print(f"# {total} runs, {total - len(pending)} done, {len(pending)} to run", flush=True)
        return 0

    env = run_environment()
    work: queue.Queue[tuple[int, list[str]]] = queue.Queue()
    for item in pending:
        work.put(item)
    failures: list[int] = []
    lock = threading.Lock()

    def worker(gpu: int | None) -> None:
        run_env = dict(env) if gpu is None else {**env, "CUDA_VISIBLE_DEVICES": str(gpu)}
        where = "" if gpu is None else f" gpu {gpu}"
        while not _STOP.is_set():
            try:
                number, command = work.get_nowait()
            except queue.Empty:
                return
            with lock:
                print(f"[{number}/{total}]{where} start: {shlex.join(command)}", flush=True)
            try:
                code = launch(command, run_env)
                outcome = "ok" if code == 0 else f"failed (exit {code})"
            except OSError as error:  # e.g. the interpreter is missing: a failed run, not a dead worker
                code, outcome = -1, f"failed to start ({error})"
            with lock:
                print(f"[{number}/{total}]{where} {outcome}", flush=True)
                if code != 0:
                    failures.append(number)

    received: list[int] = []

    def on_signal(signum: int, _frame: Any) -> None:
        received.append(signum)
        _STOP.set()
        _forward(signum, kill=len(received) > 1)

    _STOP.clear()
    main = threading.current_thread() is threading.main_thread()  # signal handlers live in the main thread only
    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)} if main else {}
    threads = [threading.Thread(target=worker, args=(gpu,), daemon=True) for gpu in (gpus or [None])]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            while thread.is_alive():  # a timed join lets the handler run promptly
                thread.join(timeout=0.2)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if received:
        name = signal.Signals(received[0]).name
        print(f"# stopped by {name}: the running runs were sent {name} and have ended; "
              f"{work.qsize()} runs not started (rerun the sweep to resume)", file=sys.stderr, flush=True)
        return 128 + received[0]
    print(f"# {total} runs, {total - len(pending)} done before, {len(pending) - len(failures)} ok, "
          f"{len(failures)} failed{' (' + ', '.join(map(str, sorted(failures))) + ')' if failures else ''}", flush=True)
    return 1 if failures else 0
