"""``python -m benchmark rerun RECORD.json``: train a leaderboard row again from its run record.

A record holds the fully resolved config, so the run is rebuilt from it alone (no group files, which may have
changed since), with the same seed; only a key the record predates takes its value from configs/defaults.yaml, or
from ``run_record.BEFORE_THE_KEY`` where the behaviour before the key existed is not today's default, and the speed
settings left to ``auto`` take the values the run resolved them to (``run_record.config_as_run``), not today's
measured table. Before anything trains, the rerun says what differs from the recorded run: another git commit or a dirty
tree, other package versions, and a dataset whose fingerprint (``PoseDataset.fingerprint``) is not the recorded one,
which is an error unless ``--allow-other-data`` (the number would not be comparable). ``key=value`` overrides apply
on top (``data.root=`` for a dataset in another place, ``trainer.devices=`` ...); paths and names that only place
the outputs are reset so the rerun never overwrites the original.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

from benchmark import run_record
from benchmark.config import DEFAULTS_PATH, ConfigError, RunConfig, dotlist_source, merge, read_yaml, split_selectors
from benchmark.errors import PoseBenchError

log = logging.getLogger(__name__)

PLACEMENT_KEYS = ("run_name", "resume", "ckpt")
"""Recorded values that name the original run's files; a rerun starts its own."""


class RerunError(PoseBenchError):
    """The record cannot be rerun as asked; the message says why."""


def config_from_record(record: dict[str, Any], overrides: list[str] | None = None) -> RunConfig:
    """The record's resolved config as a ``RunConfig`` (checked against the schema, over configs/defaults.yaml for
    keys it predates), placement keys reset, then ``overrides`` (plain ``key=value``; group selectors would re-read
    group files)."""
    values = {**run_record.config_as_run(record), **dict.fromkeys(PLACEMENT_KEYS)}
    selectors, dotlist = split_selectors(list(overrides or []))
    if selectors:
        raise ConfigError(f"rerun takes key=value overrides, not group selectors: {sorted(selectors)}")
    sources = [(str(DEFAULTS_PATH), read_yaml(DEFAULTS_PATH)), ("run_record.BEFORE_THE_KEY", run_record.BEFORE_THE_KEY),
               (f"record {record['run_id']} config", values)]
    return merge(sources + ([dotlist_source(dotlist)] if dotlist else []))


def differences(record: dict[str, Any]) -> list[str]:
    """What differs between the recorded run's code and packages and this checkout's."""
    notes = []
    now = run_record.git_state()
    then = record["git"]
    if then.get("commit") and now["commit"] != then["commit"]:
        notes.append(f"git commit {now['commit']} differs from the record's {then['commit']} "
                     f"(git checkout {then['commit']} to run the recorded code)")
    if now["dirty"]:
        notes.append("this checkout has uncommitted changes")
    if then.get("dirty"):
        notes.append("the recorded run came from a checkout with uncommitted changes")
    installed = run_record.package_versions()
    for name, version in sorted(record["packages"].items()):
        if version is not None and installed.get(name) not in (None, version):
            notes.append(f"{name} {installed[name]} installed, the record used {version}")
    return notes


def check_data(cfg: RunConfig, record: dict[str, Any]) -> list[str]:
    """Splits whose dataset fingerprint differs from the record's (empty when all agree)."""
    from benchmark.train import build_datamodule, resolve_input_size

    datamodule = build_datamodule(cfg, resolve_input_size(cfg))
    datamodule.prepare_data()
    datamodule.setup("fit")
    datamodule.setup("test")
    datasets = {"train": datamodule.train_dataset, "val": datamodule.val_dataset, "test": datamodule.test_dataset}
    mismatched = []
    for split, fingerprint in sorted(record["dataset"]["fingerprint"].items()):
        ours = datasets[split].fingerprint()
        if ours != fingerprint:
            mismatched.append(f"{split}: {ours[:12]} here, {fingerprint[:12]} in the record")
    return mismatched


def rerun(path: Path, overrides: list[str] | None = None, allow_other_data: bool = False) -> Any:
    """Train the run of the record at ``path`` again; the ``benchmark.train.RunResult``."""
    from benchmark.train import train

    record = run_record.read_record(path)
    cfg = config_from_record(record, overrides)
    for note in differences(record):
        log.warning(f"note: {note}")
    mismatched = check_data(cfg, record)
    if mismatched and not allow_other_data:
        raise RerunError(f"{path}: the dataset at {cfg.data.root} is not the one the record was scored on ("
                         + "; ".join(mismatched) + "); pass --allow-other-data to run anyway")
    for line in mismatched:
        log.warning(f"note: other data, {line}")
    log.info(f"rerunning {record['run_id']} ({record['variant']} on {record['dataset']['name']}, seed {cfg.seed})")
    return train(cfg)


# ---- command line



def add_arguments(parser: argparse.ArgumentParser) -> None:
    """``rerun RECORD [key=value ...] [--allow-other-data]``."""
    parser.add_argument("record", type=Path, help="a run record, e.g. results/runs/<run_id>.json")
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="e.g. data.root=/datasets/mpii")
    parser.add_argument("--allow-other-data", action="store_true",
                        help="run even when the dataset's fingerprint differs from the record's")


def run(args: argparse.Namespace) -> int:
    """Train the record's run again; 1 when a recipe run lands outside its reference tolerance."""
    import logging

    from benchmark.train import format_results

    result = rerun(args.record, args.overrides, allow_other_data=args.allow_other_data)
    logging.getLogger(__name__).info(format_results(result))
    return 1 if result.verdict and result.verdict["reproduced"] is False else 0
