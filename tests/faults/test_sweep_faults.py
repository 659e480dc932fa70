"""Sweep and launch fault cases: no command touches the network, a signal to the sweep runner
reaches its runs and waits for them, a sweep's ``results_dir`` is where resuming looks, and a wandb sweep keeps
each run's resolved config and runs in the project's environment exactly as ``wandb agent`` expands it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from benchmark import run_record
from benchmark.commands.launch import forward_signal, launch, start_preload_server
from benchmark.commands.sweep import expand_sweep, run_sweep
from benchmark.config import load_config, to_dict

REPO = Path(__file__).resolve().parents[2]
SWEEPS = sorted((REPO / "benchmark" / "configs" / "sweeps").glob("*.yaml"))
WANDB_SWEEPS = [path for path in SWEEPS
                if yaml.safe_load(path.read_text())["parameters"].get("logger") == {"value": "wandb"}]

# Runs before any PoseBench import: every DNS lookup or connection is recorded and refused. With arguments it
# runs them as a CLI command; it prints the calls and albumentations' update-check switch as the process saw it.
NO_NETWORK = """
import json, os, socket, sys
calls = []
def blocked(name):
    def call(*args, **kwargs):
        calls.append(name + repr(args[:2]))
        raise OSError("network blocked by the test: " + name)
    return call
socket.getaddrinfo = blocked("getaddrinfo")
socket.create_connection = blocked("create_connection")
socket.socket.connect = blocked("socket.connect")
import datamodules, datamodules.transforms
code = 0
if sys.argv[1:]:
    from benchmark.cli import main
    code = main(sys.argv[1:])
print("RESULT=" + json.dumps({"calls": calls, "switch": os.environ.get("NO_ALBUMENTATIONS_UPDATE")}), flush=True)
sys.exit(code)
"""


def _no_network_result(output: str) -> dict[str, Any]:
    line = next((line for line in output.splitlines() if line.startswith("RESULT=")), None)
    assert line is not None, output
    return json.loads(line[len("RESULT="):])


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "NO_ALBUMENTATIONS_UPDATE"}
    return {**env, "PYTHONPATH": str(REPO), **extra}


def test_importing_the_data_pipeline_makes_no_network_call_and_sets_the_switch_for_children(tmp_path: Path) -> None:
    # albumentations' import-time update check (a PyPI request) was the offender; DDP ranks and loader workers
    # inherit os.environ, so the switch set at the import site reaches them. A CLI command is checked below (sweep).
    done = subprocess.run([sys.executable, "-c", NO_NETWORK], env=_env(), cwd=tmp_path, capture_output=True,
                          text=True, timeout=120)
    assert _no_network_result(done.stdout + done.stderr) == {"calls": [], "switch": "1"}


SLEEPER = """
import os, subprocess, sys, time
from pathlib import Path
worker = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])  # like a loader worker
Path(sys.argv[1], sys.argv[2] + ".pids").write_text(f"{os.getpid()} {worker.pid}")
time.sleep(120)
"""


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state != "Z"


@pytest.mark.parametrize("signum", [signal.SIGTERM, pytest.param(signal.SIGINT, marks=pytest.mark.slow)],
                         ids=["SIGTERM", "SIGINT"])
def test_a_signal_to_the_runner_ends_its_run_and_the_run_s_workers(tmp_path: Path, signum: int) -> None:
    # The runner is the CLI command `benchmark sweep` with the network blocked (case 10 for a whole command).
    (tmp_path / "sleeper.py").write_text(SLEEPER)
    sweep_file = tmp_path / "sweep.yaml"
    sweep_file.write_text(yaml.safe_dump({
        "program": "sleeper.py", "method": "grid", "parameters": {"seed": {"values": [0, 1]}},
        "command": ["${interpreter}", "${program}", str(tmp_path), "${args_no_hyphens}"]}))
    runner = subprocess.Popen([sys.executable, "-c", NO_NETWORK, "sweep", str(sweep_file), "--records-dir",
                               str(tmp_path / "runs")], env=_env(), cwd=tmp_path, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True)
    pids: list[int] = []
    try:
        deadline = time.monotonic() + 60
        while not (pid_file := tmp_path / "seed=0.pids").exists() or not pid_file.read_text():
            assert runner.poll() is None and time.monotonic() < deadline, runner.communicate()[0]
            time.sleep(0.05)
        pids = [int(p) for p in pid_file.read_text().split()]
        runner.send_signal(signum)
        output = runner.communicate(timeout=30)[0]
        assert runner.returncode == 128 + signum, output
        assert [pid for pid in pids if _alive(pid)] == []
        assert not (tmp_path / "seed=1.pids").exists()  # no further run starts
        assert f"stopped by {signal.Signals(signum).name}" in output
        assert _no_network_result(output) == {"calls": [], "switch": "1"}
    finally:
        for pid in [runner.pid, *pids]:  # only what this test started, should a check above have failed
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)


def test_a_signal_reaches_a_preloaded_run_forked_from_the_server(tmp_path: Path) -> None:
    # `data synth` of 100000 images runs for minutes: it is still writing when the signal comes.
    out, log_file = tmp_path / "synth", tmp_path / "run.log"
    command = [sys.executable, "-m", "benchmark", "data", "synth", "--out", str(out), "--train", "100000"]
    start_preload_server()
    codes: list[int] = []
    worker = threading.Thread(target=lambda: codes.append(launch(command, dict(os.environ), log_file, preloaded=True)))
    worker.start()
    deadline = time.monotonic() + 60
    while not (log_file.exists() and "SynthPose" in log_file.read_text()):  # its progress bar, in its own log
        assert worker.is_alive() and time.monotonic() < deadline, log_file.read_text() if log_file.exists() else ""
        time.sleep(0.05)
    forward_signal(signal.SIGTERM, kill=False)
    worker.join(timeout=30)
    assert codes == [-signal.SIGTERM]


def _record(overrides: list[str], run_id: str) -> dict[str, Any]:
    config = load_config(overrides)
    return {"schema_version": run_record.SCHEMA_VERSION, "run_id": run_id, "config": to_dict(config)}


def test_resume_looks_for_records_in_the_sweep_s_results_dir(tmp_path: Path, monkeypatch, capsys) -> None:
    results = tmp_path / "elsewhere"
    results.mkdir()
    done = ["data=synthpose", "method=hourglass-tiny", f"results_dir={results}", "seed=0"]
    (results / "done.json").write_text(json.dumps(_record(done, "done")))
    monkeypatch.setattr(run_record, "read_record", lambda path: json.loads(Path(path).read_text()))
    monkeypatch.chdir(tmp_path)  # where the old default, results/runs, would be looked up: empty
    sweep_file = tmp_path / "sweep.yaml"
    sweep_file.write_text(yaml.safe_dump({
        "program": "x", "method": "grid", "command": ["${interpreter}", "${args_no_hyphens}"],
        "parameters": {"data": {"value": "synthpose"}, "method": {"value": "hourglass-tiny"},
                       "results_dir": {"value": str(results)}, "seed": {"values": [0, 1]}}}))
    assert run_sweep(sweep_file, dry_run=True, python="py") == 0
    assert capsys.readouterr().out.splitlines() == [
        f"# done ({results / 'done.json'}): py data=synthpose method=hourglass-tiny results_dir={results} seed=0",
        f"py data=synthpose method=hourglass-tiny results_dir={results} seed=1",
        "# 2 runs, 1 done, 1 to run",
    ]


class _CapturedWandb:
    kwargs: dict[str, Any] = {}

    def __init__(self, **kwargs: Any) -> None:
        type(self).kwargs = kwargs


@pytest.mark.parametrize("sweep_path", WANDB_SWEEPS, ids=[p.stem for p in WANDB_SWEEPS])
def test_wandb_config_survives_the_sweep_s_locked_parameters(sweep_path: Path, tmp_path: Path, monkeypatch) -> None:
    import pytorch_lightning.loggers

    from benchmark.train import build_loggers

    spec = yaml.safe_load(sweep_path.read_text())
    params = expand_sweep(spec)[0]
    cfg = load_config([f"{k}={v}" for k, v in params.items()])
    monkeypatch.setattr(pytorch_lightning.loggers, "WandbLogger", _CapturedWandb)
    build_loggers(cfg, tmp_path / "run" / "0")
    config = _CapturedWandb.kwargs["config"]
    assert not set(config) & set(spec["parameters"])
    locked = {**config, **params}  # wandb sets the sweep's values as top-level keys and ignores updates to them
    assert locked["posebench"] == to_dict(cfg)


def wandb_agent_command(command: list[str], program: str, params: dict[str, Any], json_file: Path) -> list[str]:
    """``command`` as ``wandb agent`` expands it (docs.wandb.ai "Sweep configuration", wandb/wandb_agent.py):
    ``${env}`` -> /usr/bin/env, ``${interpreter}`` -> python, ``${program}`` -> the program, ``${args}``
    ``--k=v``, ``${args_no_hyphens}`` ``k=v``, ``${args_no_boolean_flags}`` ``--k=v`` with a true flag as ``--k``
    and a false one left out, ``${args_json}`` one JSON argument, ``${args_json_file}`` a file holding it."""
    flags = [f"{k}={v}" for k, v in params.items()]
    json_file.write_text(json.dumps(params))
    macros = {"env": ["/usr/bin/env"], "interpreter": ["python"], "program": [program],
              "args": [f"--{f}" for f in flags], "args_no_hyphens": flags,
              "args_no_boolean_flags": [f"--{k}" if v is True else f"--{k}={v}" for k, v in params.items()
                                        if v is not False],
              "args_json": [json.dumps(params)], "args_json_file": [str(json_file)]}
    argv: list[str] = []
    for chunk in map(str, command):
        argv += macros.get(chunk[2:-1], []) if chunk.startswith("${") and chunk.endswith("}") else [chunk]
    return argv


@pytest.mark.slow  # one tiny training run in a subprocess: about 15 s on 2 CPU cores
def test_architectures_sweep_command_trains_in_the_project_environment(synthpose_root, tmp_path: Path) -> None:
    spec = yaml.safe_load((REPO / "benchmark" / "configs" / "sweeps" / "architectures.yaml").read_text())
    params = {"data": "synthpose", "logger": "wandb", "method": "simplebaseline-tiny", "seed": 0,
              "data.root": str(synthpose_root), "data.max_samples": 8, "data.batch_size": 4,
              "model.input_size": [64, 64], "trainer.max_epochs": 1, "trainer.accelerator": "cpu",
              "trainer.enable_progress_bar": False, "output_dir": str(tmp_path / "out"),
              "results_dir": str(tmp_path / "results")}
    argv = wandb_agent_command(spec["command"], spec["program"], params, tmp_path / "args.json")
    bin_dir = tmp_path / "bin"  # a "python" first on PATH that is not the project's environment
    bin_dir.mkdir()
    (bin_dir / "python").write_text("#!/bin/sh\necho 'not the project python' >&2\nexit 99\n")
    (bin_dir / "python").chmod(0o755)
    # The agent runs in the checkout; this one is the checkout's environment only (so that the offline wandb run
    # writes into tmp_path, not into the repository).
    checkout = tmp_path / "checkout"
    checkout.mkdir()
    (checkout / ".venv").symlink_to(REPO / ".venv")
    env = _env(PATH=f"{bin_dir}:/usr/bin:/bin", WANDB_MODE="offline", WANDB_DIR=str(checkout))
    env.pop("PYTHONPATH")  # the project is importable from its environment alone
    done = subprocess.run(argv, cwd=checkout, env=env, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    (record,) = (tmp_path / "results").glob("*.json")
    assert run_record.read_record(record)["config"]["model"]["variant"] == "simplebaseline-tiny"
    assert list((checkout / "wandb").glob("offline-run-*"))  # logger=wandb ran, offline
