"""The sweep runner: wandb's grid and random expansion, command macros, the ``{method}`` placeholder and
command-line overrides, resuming, parallel GPUs and parallel CPU runs with their logs.

Expected run lists are written out by hand from wandb's rules (github.com/wandb/sweeps:
parameters in sorted name order, grid = itertools.product, random = one uniform draw per
parameter through its inverse CDF). No training runs: the launcher is monkeypatched, or the
sweep's command is a ``python -c`` stub.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from benchmark import run_record
from benchmark.commands import sweep
from benchmark.commands.launch import benchmark_args, cpu_cores
from benchmark.commands.sweep import (
    SweepError,
    build_command,
    command_args,
    expand_sweep,
    fill_methods,
    run_environment,
    run_sweep,
    with_overrides,
)
from benchmark.config import config_hash, load_config, to_dict

ARCHITECTURES = Path(__file__).resolve().parents[3] / "benchmark" / "configs" / "sweeps" / "architectures.yaml"


def test_grid_is_the_product_over_sorted_names_last_fastest() -> None:
    spec = {"method": "grid", "parameters": {
        "seed": {"values": [0, 1]},
        "data": {"values": ["mpii", "coco"]},
        "optim.lr": {"value": 0.001},
        "trainer.max_epochs": {"min": 1, "max": 2},  # integer min/max -> int_uniform -> [1, 2]
    }}
    expected = [
        {"data": d, "optim.lr": 0.001, "seed": s, "trainer.max_epochs": e}
        for d, s, e in [("mpii", 0, 1), ("mpii", 0, 2), ("mpii", 1, 1), ("mpii", 1, 2),
                        ("coco", 0, 1), ("coco", 0, 2), ("coco", 1, 1), ("coco", 1, 2)]
    ]
    runs = expand_sweep(spec)
    assert runs == expected
    assert [list(run) for run in runs] == [["data", "optim.lr", "seed", "trainer.max_epochs"]] * 8


def test_grid_proposes_a_repeated_combination_once_and_rejects_continuous_parameters() -> None:
    assert expand_sweep({"method": "grid", "parameters": {"a": {"values": [1, 1, 2]}}}) == [{"a": 1}, {"a": 2}]
    with pytest.raises(SweepError, match="'optim.lr'.*uniform.*grid"):
        expand_sweep({"method": "grid", "parameters": {"optim.lr": {"min": 0.1, "max": 0.2}}})


def test_random_draws_run_cap_runs_from_a_seeded_generator() -> None:
    spec = {"method": "random", "run_cap": 3, "parameters": {
        "c": {"distribution": "uniform", "min": 0.0, "max": 2.0},
        "a": {"values": ["x", "y", "z"]},
        "b": {"min": 1, "max": 4},
    }}
    # random.Random(0).random() gives 0.8444, 0.7580, 0.4206 | 0.2589, 0.5113, 0.4049 | 0.7838, 0.3033, 0.4766;
    # per run a, b, c in name order: a = values[floor(3u)], b = 1 + floor(4u), c = 2u.
    expected = [
        {"a": "z", "b": 4, "c": 2 * 0.420571580830845},
        {"a": "x", "b": 3, "c": 2 * 0.4049341374504143},
        {"a": "z", "b": 2, "c": 2 * 0.4765969541523558},
    ]
    assert expand_sweep(spec, seed=0) == expected
    assert expand_sweep(spec, seed=0) == expand_sweep(spec, seed=0)
    assert expand_sweep(spec, seed=1) != expected
    weighted = {"method": "random", "run_cap": 5,
                "parameters": {"a": {"values": [1, 2, 3], "probabilities": [0, 1, 0]}}}
    assert expand_sweep(weighted) == [{"a": 2}] * 5
    with pytest.raises(SweepError, match="run_cap"):
        expand_sweep({"method": "random", "parameters": {"a": {"values": [1]}}})


def test_command_macros_are_filled_as_the_wandb_agent_fills_them() -> None:
    params = {"flag": True, "off": False, "seed": 3}
    args = command_args(params)
    assert args["args"] == ["--flag=True", "--off=False", "--seed=3"]
    assert args["args_no_hyphens"] == ["flag=True", "off=False", "seed=3"]
    assert args["args_no_boolean_flags"] == ["--flag", "--seed=3"]
    assert args["args_no_equals"] == ["--flag", "True", "--off", "False", "--seed", "3"]
    assert args["args_json"] == ['{"flag": true, "off": false, "seed": 3}']
    spec = {"program": "train.py", "command": ["${interpreter}", "${program}", "${args}"]}
    assert build_command(spec, {"seed": 3}, "py") == ["py", "train.py", "--seed=3"]
    with pytest.raises(SweepError, match=r"\$\{args_json_file\}"):
        build_command({"command": ["${args_json_file}"]}, {}, "py")


def test_architectures_sweep_lists_every_registered_method_in_wandb_format() -> None:
    from models import METHODS, VARIANTS

    spec = yaml.safe_load(ARCHITECTURES.read_text())
    assert spec["method"] == "grid" and "program" in spec
    # The project's interpreter, not wandb's bare "python" (tests/faults/test_sweep_faults.py runs it as the agent
    # does).
    assert spec["command"] == [".venv/bin/python", "-m", "benchmark", "train", "${args_no_hyphens}"]
    presets = spec["parameters"]["method"]["values"]
    covered = {VARIANTS[p].method if p in VARIANTS else p for p in presets}
    assert set(METHODS) <= covered
    runs = expand_sweep(spec)
    params = spec["parameters"]
    assert len(runs) == len(presets) * len(params["seed"]["values"]) * len(params["data"]["values"])
    assert build_command(spec, runs[0], "python") == [
        ".venv/bin/python", "-m", "benchmark", "train", "data=mpii", "logger=wandb", f"method={presets[0]}", "seed=0"]


def _record(overrides: list[str], run_id: str) -> dict[str, Any]:
    config = load_config(overrides)
    return {
        "schema_version": run_record.SCHEMA_VERSION, "run_id": run_id, "name": run_id, "variant": config.model.variant,
        "method": config.model.variant.split("-")[0], "dataset": {"name": "synthpose", "fingerprint": {}},
        "recipe": None, "metrics": {"test": {"PCKh/Mean": 50.0}}, "best": {}, "reference": {},
        "config": to_dict(config), "config_hash": config_hash(config), "seed": config.seed,
        "git": {"commit": None, "dirty": None}, "packages": {}, "hardware": {}, "started_at": "", "finished_at": "",
        "wall_time_s": 1.0, "device_hours": 0.0, "checkpoint": None, "model": {"params": 1, "gflops": 0.1},
        "input_size": [128, 96], "protocol": {"boxes": "gt", "decoder": "dark", "flip_test": True}, "protocols": [],
        "world_size": 1, "effective_batch": 32, "throughput": {}, "peak_memory": {}, "wandb": None, "gallery": None,
    }


def _write_sweep(path: Path, parameters: dict[str, Any], command: list[str]) -> Path:
    path.write_text(yaml.safe_dump({"program": "benchmark/__main__.py", "method": "grid", "parameters": parameters,
                                    "command": command}, sort_keys=False))
    return path


def test_resume_skips_runs_whose_record_exists(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    records = tmp_path / "runs"
    common = ["data=synthpose", "trainer.max_epochs=1"]
    run_record.write_record(_record([*common, "method=hourglass-tiny", "seed=0"], "done"), records)
    # Same method and seed but another constant (max_epochs 2): not this sweep's run.
    run_record.write_record(_record(["data=synthpose", "trainer.max_epochs=2", "method=simplebaseline-tiny", "seed=1"],
                                    "other"), records)
    sweep_file = _write_sweep(tmp_path / "sweep.yaml", {
        "data": {"value": "synthpose"}, "method": {"values": ["hourglass-tiny", "simplebaseline-tiny"]},
        "seed": {"values": [0, 1]}, "trainer.max_epochs": {"value": 1}},
        ["${env}", "${interpreter}", "-m", "benchmark", "train", "${args_no_hyphens}"])
    launched: list[tuple[list[str], dict[str, str]]] = []
    monkeypatch.setattr(sweep, "launch", lambda command, env, output, preloaded: launched.append((command, env)) or 0)

    assert run_sweep(sweep_file, dry_run=True, records_dir=records, python="py") == 0
    printed = capsys.readouterr().out.splitlines()
    train = "/usr/bin/env py -m benchmark train data=synthpose"
    assert printed == [
        f"# done ({records / 'done.json'}): {train} method=hourglass-tiny seed=0 trainer.max_epochs=1",
        f"{train} method=hourglass-tiny seed=1 trainer.max_epochs=1",
        f"{train} method=simplebaseline-tiny seed=0 trainer.max_epochs=1",
        f"{train} method=simplebaseline-tiny seed=1 trainer.max_epochs=1",
        "# 4 runs, 1 done, 3 to run",
    ]
    assert launched == []

    assert run_sweep(sweep_file, records_dir=records, python="py") == 0
    assert [command[-3:] for command, _ in launched] == [
        ["method=hourglass-tiny", "seed=1", "trainer.max_epochs=1"],
        ["method=simplebaseline-tiny", "seed=0", "trainer.max_epochs=1"],
        ["method=simplebaseline-tiny", "seed=1", "trainer.max_epochs=1"],
    ]


def test_gpus_run_in_parallel_with_one_device_each_and_wandb_offline(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    stub = ("import json, os, sys; from pathlib import Path; "
            "Path(os.environ['STUB_DIR'], sys.argv[1] + '.json').write_text(json.dumps("
            "{'gpu': os.environ.get('CUDA_VISIBLE_DEVICES'), 'wandb': os.environ.get('WANDB_MODE')})); "
            "sys.exit(3 if sys.argv[1] == 'seed=3' else 0)")
    sweep_file = _write_sweep(tmp_path / "sweep.yaml", {"seed": {"values": [0, 1, 2, 3]}},
                              ["${interpreter}", "-c", stub, "${args_no_hyphens}"])
    out = tmp_path / "out"
    out.mkdir()
    monkeypatch.setenv("STUB_DIR", str(out))
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.delenv("WANDB_MODE", raising=False)
    assert run_sweep(sweep_file, gpus=[0, 1], records_dir=tmp_path / "runs", python=sys.executable) == 1  # seed=3 fails
    seen = {path.stem: json.loads(path.read_text()) for path in out.glob("*.json")}
    assert sorted(seen) == ["seed=0", "seed=1", "seed=2", "seed=3"]
    assert {v["gpu"] for v in seen.values()} <= {"0", "1"} and {v["wandb"] for v in seen.values()} == {"offline"}


def test_wandb_goes_offline_only_without_an_api_key() -> None:
    assert run_environment({})["WANDB_MODE"] == "offline"
    assert "WANDB_MODE" not in run_environment({"WANDB_API_KEY": "key"})
    assert run_environment({"WANDB_MODE": "disabled"})["WANDB_MODE"] == "disabled"


def test_parse_gpus() -> None:
    assert sweep.parse_gpus("0,1, 3") == [0, 1, 3]
    with pytest.raises(SweepError, match="'0,0'"):
        sweep.parse_gpus("0,0")
    with pytest.raises(SweepError, match="'a'"):
        sweep.parse_gpus("a")


def test_the_method_placeholder_stands_for_each_registered_method() -> None:
    from models import METHODS

    spec = {"method": "grid", "parameters": {"recipe": {"values": ["demo_{method}", "hrnet_w32_mpii_256"]},
                                              "seed": {"values": [0]}}}
    assert fill_methods(spec)["parameters"]["recipe"]["values"] == [
        *(f"demo_{method}" for method in sorted(METHODS)), "hrnet_w32_mpii_256"]
    assert fill_methods(spec, ["hrnet", "cpm"])["parameters"]["recipe"] == {"values": [
        "demo_hrnet", "demo_cpm", "hrnet_w32_mpii_256"]}
    assert spec["parameters"]["recipe"]["values"] == ["demo_{method}", "hrnet_w32_mpii_256"]  # not changed in place
    assert fill_methods({"method": "grid", "parameters": {"seed": {"value": 0}}}, []) == {
        "method": "grid", "parameters": {"seed": {"value": 0}}}


def test_overrides_become_constant_parameters() -> None:
    spec = {"method": "grid", "parameters": {"seed": {"values": [0, 1]}, "data": {"values": ["mpii", "coco"]}}}
    spec = with_overrides(spec, ["data=coco", "trainer.max_epochs=1", "optim.lr=1e-3"])
    assert expand_sweep(spec) == [
        {"data": "coco", "optim.lr": "1e-3", "seed": 0, "trainer.max_epochs": "1"},
        {"data": "coco", "optim.lr": "1e-3", "seed": 1, "trainer.max_epochs": "1"}]
    with pytest.raises(SweepError, match="'max_epochs' is not key=value"):
        with_overrides(spec, ["max_epochs"])


def test_a_finished_run_is_skipped_on_the_next_call(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                     capsys) -> None:
    # The launcher writes the record a finished `train` would write, from the run's own overrides.
    launched: list[list[str]] = []

    def train(command: list[str], env: dict[str, str], output: Path | None, preloaded: bool) -> int:
        overrides = [arg for arg in command if "=" in arg]
        launched.append(overrides)
        run_record.write_record(_record(overrides, f"run{len(launched)}"), load_config(overrides).results_dir)
        return 0

    monkeypatch.setattr(sweep, "launch", train)
    sweep_file = _write_sweep(tmp_path / "sweep.yaml", {
        "data": {"value": "synthpose"}, "method": {"values": ["hourglass-tiny", "simplebaseline-tiny"]}},
        ["${interpreter}", "-m", "benchmark", "train", "${args_no_hyphens}"])
    results = f"results_dir={tmp_path / 'runs'}"
    assert run_sweep(sweep_file, overrides=[results], python="py") == 0
    assert launched == [["data=synthpose", "method=hourglass-tiny", results],
                        ["data=synthpose", "method=simplebaseline-tiny", results]]
    capsys.readouterr()
    assert run_sweep(sweep_file, overrides=[results], python="py") == 0
    assert len(launched) == 2  # nothing launched again
    assert capsys.readouterr().out.splitlines() == [
        f"[1/2] skip, record {tmp_path / 'runs' / 'run1.json'}",
        f"[2/2] skip, record {tmp_path / 'runs' / 'run2.json'}",
        "# 2 runs, 2 done, 0 to run"]
    # Another value of a constant is another run: nothing is skipped.
    assert run_sweep(sweep_file, overrides=[results, "seed=5"], dry_run=True, python="py") == 0
    assert capsys.readouterr().out.splitlines()[-1] == "# 2 runs, 0 done, 2 to run"


def test_jobs_run_on_the_cpu_with_a_share_of_the_cores_and_a_log_each(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    stub = ("import os, sys; print('threads', os.environ.get('OMP_NUM_THREADS'), 'gpu', "
            "os.environ.get('CUDA_VISIBLE_DEVICES'), flush=True); print('oops', file=sys.stderr); "
            "sys.exit(3 if 'seed=2' in sys.argv else 0)")
    sweep_file = _write_sweep(tmp_path / "sweep.yaml", {"seed": {"values": [0, 1, 2]}, "lr": {"value": 1}},
                              ["${interpreter}", "-c", stub, "${args_no_hyphens}"])
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    logs = tmp_path / "logs"
    assert run_sweep(sweep_file, jobs=2, logs_dir=logs, records_dir=tmp_path / "runs", python=sys.executable) == 1
    threads = max(1, cpu_cores() // 2)
    assert sorted(path.name for path in logs.iterdir()) == ["0.log", "1.log", "2.log"]  # the swept values
    for path in logs.iterdir():
        assert path.read_text() == f"threads {threads} gpu None\noops\n"
    out = capsys.readouterr().out
    assert f"# 3 of 3 runs to run, 2 at a time, {threads} torch thread(s) each" in out
    assert "] failed (exit 3) in " in out and f"(log: {logs / '2.log'})" in out
    assert out.splitlines()[-1] == "# 3 runs, 0 done before, 2 ok, 1 failed (3)"
    with pytest.raises(SweepError, match="exclude each other"):
        run_sweep(sweep_file, jobs=2, gpus=[0], records_dir=tmp_path / "runs")
    with pytest.raises(SweepError, match="positive number"):
        run_sweep(sweep_file, jobs=-1, records_dir=tmp_path / "runs")


def test_parallel_cpu_runs_of_this_package_are_forked_preloaded_with_their_threads(tmp_path: Path) -> None:
    # `python -m benchmark profile codecs` prints the torch threads it ran with: the share of the cores.
    sweep_file = _write_sweep(tmp_path / "sweep.yaml", {"batch": {"values": [1, 2]}},
                              ["${interpreter}", "-m", "benchmark", "profile", "codecs", "${args}",
                               "--joints", "2", "--height", "8", "--width", "8", "--repeats", "1"])
    assert benchmark_args([sys.executable, "-m", "benchmark", "profile"]) == ["profile"]
    assert benchmark_args(["/elsewhere/python", "-m", "benchmark", "profile"]) is None
    logs = tmp_path / "logs"
    assert run_sweep(sweep_file, jobs=2, logs_dir=logs, records_dir=tmp_path / "runs") == 0
    threads = max(1, cpu_cores() // 2)
    for batch in (1, 2):
        text = (logs / f"{batch}.log").read_text()
        assert text.startswith(f"codecs: batch {batch} x 2 joints") and f"torch threads {threads};" in text
