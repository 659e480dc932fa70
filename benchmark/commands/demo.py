"""``make demo`` / ``python -m benchmark demo``: every registered method, trained and scored on a laptop.

The demo generates SynthPose once (``data/synthpose-demo``), trains the tiny preset of every
method in the registry on the CPU in each SynthPose format (MPII: 16 joints scored with PCKh;
COCO: 17 joints scored with COCO AP), tests each under its protocol with every decoder and flip
test, and writes ``results/demo/LEADERBOARD.md`` (+ CSV and the accuracy-versus-GFLOPs plot) from
the run records in ``results/demo/runs/``; every run also leaves its prediction gallery there.

A method's preset is the recipe ``benchmark/configs/recipe/demo_<method>.yaml`` (tiny variant,
input size, a CPU-sized optimiser and epoch count); a method without one is an error naming the
missing file, so a new method joins the demo with its YAML. Runs go to ``jobs`` worker processes
(default: one per core, one torch thread each; tiny models gain more from parallel runs than from
threads) and a single progress bar counts their training epochs. A run whose record is already
in ``results/demo/runs`` with the same setting (``leaderboard.setting_hash``) and seed is reused, so
an interrupted demo resumes; delete ``results/demo`` to start over.

``check_demo_leaderboard`` is what CI runs after the demo: every registered method must have a
row with a number in both SynthPose tables (PCKh@0.5 and AP).
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import dataclasses
import math
import multiprocessing
import os
import queue
import re
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytorch_lightning as pl

FORMATS: tuple[str, ...] = ("mpii", "coco")
PRIMARY_COLUMN = {"mpii": "PCKh@0.5", "coco": "AP"}
"""The number every method must have in each SynthPose table of the demo leaderboard."""
TABLE_TITLES = {"mpii": "### SynthPose (MPII format)", "coco": "### SynthPose (COCO format)"}
DATA_ROOT = Path("data/synthpose-demo")
OUT_DIR = Path("results/demo")
RUNS_DIR = Path("outputs/demo")
SYNTH_TRAIN = 500
SYNTH_VAL = 100
SYNTH_SEED = 0
TITLE = "PoseBench demo: every method, tiny presets, SynthPose, CPU"


class DemoError(RuntimeError):
    """The demo cannot run as asked (a method without a preset, ...); the message says why."""


@dataclasses.dataclass(frozen=True)
class DemoRun:
    """One training run of the demo: a method's preset in one SynthPose format."""

    method: str
    data_format: str
    overrides: tuple[str, ...]
    epochs: int
    log: Path

    @property
    def label(self) -> str:
        return f"{self.method} ({self.data_format})"


def preset_path(method: str) -> Path:
    """The demo recipe of ``method``: ``benchmark/configs/recipe/demo_<method>.yaml``."""
    from benchmark.config import CONFIG_DIR

    return CONFIG_DIR / "recipe" / f"demo_{method}.yaml"


def plan_demo(
    methods: list[str] | None = None,
    formats: tuple[str, ...] = FORMATS,
    data_root: Path = DATA_ROOT,
    out_dir: Path = OUT_DIR,
    runs_dir: Path = RUNS_DIR,
    extra: tuple[str, ...] = (),
) -> list[DemoRun]:
    """The demo's runs: every method of the registry (or ``methods``) x ``formats``, in that order."""
    from benchmark.config import load_config
    from models import METHODS

    chosen = sorted(METHODS) if not methods else list(methods)
    unknown = sorted(set(chosen) - set(METHODS))
    if unknown:
        raise DemoError(f"unknown method(s) {unknown}; registered: {', '.join(sorted(METHODS))}")
    missing = [str(preset_path(method)) for method in chosen if not preset_path(method).is_file()]
    if missing:
        raise DemoError(f"no demo preset for {len(missing)} method(s): write {', '.join(missing)} "
                        "(a recipe with the tiny variant; see recipe/demo_hourglass.yaml)")
    bad = sorted(set(formats) - set(FORMATS))
    if bad:
        raise DemoError(f"unknown SynthPose format(s) {bad}; valid: {', '.join(FORMATS)}")
    runs = []
    for method in chosen:
        for data_format in formats:
            overrides = (
                f"recipe=demo_{method}", "data=synthpose", f"data.format={data_format}", f"data.root={data_root}",
                f"data.synth_train={SYNTH_TRAIN}", f"data.synth_val={SYNTH_VAL}", f"data.synth_seed={SYNTH_SEED}",
                f"results_dir={out_dir / 'runs'}", f"output_dir={runs_dir}", f"run_name=demo_{method}_{data_format}",
                "trainer.accelerator=cpu", "trainer.devices=1", "trainer.enable_progress_bar=false", *extra,
            )
            epochs = load_config(list(overrides)).trainer.max_epochs
            runs.append(DemoRun(method, data_format, overrides, epochs, Path(runs_dir) / f"demo_{method}_{data_format}.log"))
    return runs


def finished_record(run: DemoRun, records_dir: Path) -> Path | None:
    """A record in ``records_dir`` of the same setting and seed as ``run`` (resume), else None."""
    from benchmark import run_record
    from benchmark.commands.leaderboard import setting_hash
    from benchmark.config import load_config, to_dict

    config = to_dict(load_config(list(run.overrides)))
    wanted = (setting_hash(config), config["seed"])
    for path in sorted(Path(records_dir).glob("*.json")):
        record = run_record.read_record(path)
        if (setting_hash(record["config"]), record["seed"]) == wanted:
            return path
    return None


class _EpochReporter(pl.Callback):
    """Puts ``(label, epoch)`` on a queue after every training epoch (the demo's progress bar)."""

    def __init__(self, channel: Any, label: str) -> None:
        self.channel = channel
        self.label = label

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:  # noqa: D102
        self.channel.put((self.label, trainer.current_epoch + 1))


@contextlib.contextmanager
def _output_to(path: Path) -> Iterator[None]:
    """Send this process's stdout and stderr (file descriptors 1 and 2, so Lightning's and the C
    libraries' output too) to ``path`` while the block runs: the parent shows one progress bar."""
    path.parent.mkdir(parents=True, exist_ok=True)
    sys.stdout.flush(), sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    with path.open("ab") as log:
        os.dup2(log.fileno(), 1), os.dup2(log.fileno(), 2)
        try:
            yield
        finally:
            sys.stdout.flush(), sys.stderr.flush()
            os.dup2(saved[0], 1), os.dup2(saved[1], 2)
            os.close(saved[0]), os.close(saved[1])


def _train_one(run: DemoRun, channel: Any, threads: int) -> dict[str, Any]:
    """Worker: train and test one demo run (its output in ``run.log``); headline metric and record path."""
    import torch

    from benchmark.config import load_config
    from benchmark.train import train

    torch.set_num_threads(threads)
    started = time.perf_counter()
    with _output_to(run.log):
        result = train(load_config(list(run.overrides)), extra_callbacks=(_EpochReporter(channel, run.label),))
    test = result.results.get("test", {})
    metric = "PCKh/Mean" if run.data_format == "mpii" else "AP"
    return {"value": test.get(metric), "record": str(result.record_path), "seconds": time.perf_counter() - started}


def _headline(run: DemoRun, value: float | None) -> str:
    if value is None:
        return "no number"
    return f"PCKh@0.5 {value:.1f}" if run.data_format == "mpii" else f"AP {100 * value:.1f}"


def run_demo(
    methods: list[str] | None = None,
    formats: tuple[str, ...] = FORMATS,
    data_root: Path = DATA_ROOT,
    out_dir: Path = OUT_DIR,
    runs_dir: Path = RUNS_DIR,
    jobs: int | None = None,
    extra: tuple[str, ...] = (),
) -> int:
    """Generate SynthPose, train and test every run of ``plan_demo``, write the leaderboard and check
    it; 0 when every run finished and the leaderboard has every method's numbers, 1 otherwise."""
    from tqdm import tqdm

    from benchmark.commands.leaderboard import generate_leaderboard
    from datamodules.synthpose import generate_synthpose

    started = time.perf_counter()
    runs = plan_demo(methods, formats, data_root, out_dir, runs_dir, extra)
    if not (Path(data_root) / "synthpose.json").is_file():
        print(f"Generating SynthPose ({SYNTH_TRAIN} train + {SYNTH_VAL} val images, seed {SYNTH_SEED}) into {data_root}")
        generate_synthpose(data_root, num_train=SYNTH_TRAIN, num_val=SYNTH_VAL, seed=SYNTH_SEED, progress=True)
    records_dir = Path(out_dir) / "runs"
    pending = []
    for run in runs:
        done = finished_record(run, records_dir)
        if done is None:
            pending.append(run)
        else:
            print(f"{run.label}: reusing {done}")
    jobs = max(1, min(jobs or os.cpu_count() or 1, len(pending) or 1))
    threads = max(1, (os.cpu_count() or 1) // jobs)
    print(f"Training {len(pending)} of {len(runs)} runs ({len(methods or []) or 'all'} methods x "
          f"{len(formats)} formats) in {jobs} process(es), {threads} thread(s) each")
    failures = _run_pending(pending, jobs, threads, tqdm)
    path = generate_leaderboard(records_dir, out_dir, title=TITLE)
    problems = check_demo_leaderboard(path, [run.method for run in runs], formats)
    minutes = (time.perf_counter() - started) / 60
    print(f"wrote {path} ({minutes:.1f} min)")
    for problem in failures + problems:
        print(f"error: {problem}", file=sys.stderr)
    return 1 if failures or problems else 0


def _run_pending(pending: list[DemoRun], jobs: int, threads: int, tqdm: Any) -> list[str]:
    """Run ``pending`` in ``jobs`` spawned processes with one progress bar; the failures' messages."""
    if not pending:
        return []
    failures: list[str] = []
    context = multiprocessing.get_context("spawn")
    with context.Manager() as manager, concurrent.futures.ProcessPoolExecutor(jobs, mp_context=context) as pool:
        channel = manager.Queue()
        futures = {pool.submit(_train_one, run, channel, threads): run for run in pending}
        bar = tqdm(total=sum(run.epochs for run in pending), unit="epoch", desc="demo", dynamic_ncols=True)
        waiting = set(futures)
        while waiting:
            done, waiting = concurrent.futures.wait(waiting, timeout=0.5)
            _drain(channel, bar)
            for future in done:
                run = futures[future]
                try:
                    outcome = future.result()
                except Exception as error:  # noqa: BLE001 - a failed run is reported, the others go on
                    failures.append(f"{run.label} failed: {type(error).__name__}: {error} (log: {run.log})")
                    bar.write(f"{run.label}: FAILED ({type(error).__name__}: {error}); log: {run.log}")
                    continue
                bar.write(f"{run.label}: {_headline(run, outcome['value'])} in {outcome['seconds']:.0f} s "
                          f"-> {outcome['record']}")
        _drain(channel, bar)
        bar.close()
    return failures


def _drain(channel: Any, bar: Any) -> None:
    while True:
        try:
            label, epoch = channel.get_nowait()
        except queue.Empty:
            return
        bar.update(1)
        bar.set_postfix_str(f"{label} epoch {epoch}")


# ------------------------------------------------------------------------------ the check


def _table_rows(markdown: str, title: str) -> tuple[list[str], list[list[str]]] | None:
    """Header cells and row cells of the first table under the heading ``title``; None without it."""
    lines = markdown.splitlines()
    if title not in lines:
        return None
    table = []
    for line in lines[lines.index(title) + 1:]:
        if line.startswith("#"):
            break
        if line.startswith("|"):
            table.append([cell.strip() for cell in line.strip().strip("|").split("|")])
        elif table:
            break
    if len(table) < 2:
        return None
    return table[0], table[2:]


_NUMBER = re.compile(r"^-?\d+(\.\d+)?( ± \d+(\.\d+)?)?$")


def check_demo_leaderboard(path: Path | str, methods: list[str], formats: tuple[str, ...] = FORMATS) -> list[str]:
    """Problems of a demo leaderboard: each of ``methods`` needs a row with a finite number in the
    primary column of each format's SynthPose table. An empty list means it is complete."""
    path = Path(path)
    if not path.is_file():
        return [f"{path}: no leaderboard (the demo did not write it)"]
    markdown = path.read_text()
    problems = []
    for data_format in formats:
        title, column = TABLE_TITLES[data_format], PRIMARY_COLUMN[data_format]
        parsed = _table_rows(markdown, title)
        if parsed is None:
            problems.append(f"{path}: no table under '{title}'")
            continue
        header, rows = parsed
        if "method" not in header or column not in header:
            problems.append(f"{path}: the table under '{title}' lacks the column 'method' or '{column}'")
            continue
        values: dict[str, list[str]] = {}
        for row in rows:
            values.setdefault(row[header.index("method")], []).append(row[header.index(column)])
        for method in sorted(set(methods)):
            cells = values.get(method)
            if not cells:
                problems.append(f"{path}: '{title}' has no row for method {method}")
            elif not all(_NUMBER.match(cell) and math.isfinite(float(cell.split()[0])) for cell in cells):
                problems.append(f"{path}: '{title}' row of {method} has no number in {column}: {cells}")
    return problems
