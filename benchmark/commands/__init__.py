"""The commands of ``python -m benchmark``: the one table of their names, modules and one-line help.

Each command lives in one module of this package, which defines its arguments and its handler:
``add_arguments(parser: argparse.ArgumentParser) -> None`` and ``run(args: argparse.Namespace) -> int``
(the exit status). A module holding several commands (``train``/``evaluate``, ``import-weights``/
``export-weights``) names each one's pair in its ``Command`` entry. ``benchmark/cli.py`` builds the
top-level parser from ``COMMANDS`` alone, so ``python -m benchmark --help`` imports no command module
(nor torch); a command's module is imported only when that command runs or its ``--help`` is asked.
A new command is one module plus one line here.
"""

from __future__ import annotations

from typing import NamedTuple


class Command(NamedTuple):
    """Where one command lives: its module, the help line, and the names of its two functions there."""

    module: str
    help: str
    add_arguments: str = "add_arguments"
    run: str = "run"


_PACKAGE = "benchmark.commands"

COMMANDS: dict[str, Command] = {
    "data": Command(f"{_PACKAGE}.data", "generate, inspect, validate and download datasets"),
    "profile": Command(f"{_PACKAGE}.profile", "measure speed against a floor measured in the same run"),
    "gpu-check": Command(f"{_PACKAGE}.gpu_check", "measure training, evaluation and loading speed on one GPU "
                         "(--dry-run: every path on the CPU)"),
    "train": Command(f"{_PACKAGE}.train", "train and test a method: train method=NAME data=NAME [key=value ...]",
                     "add_train_arguments", "run_train"),
    "evaluate": Command(f"{_PACKAGE}.train", "test a checkpoint: evaluate ckpt=PATH [key=value ...]",
                        "add_evaluate_arguments", "run_evaluate"),
    "summary": Command(f"{_PACKAGE}.summary", "parameters and GFLOPs of every model variant at its input size"),
    "rerun": Command(f"{_PACKAGE}.rerun", "train a run again from its run record (same config and seed)"),
    "leaderboard": Command(f"{_PACKAGE}.leaderboard",
                           "regenerate LEADERBOARD.md, leaderboard.csv and the plot from run records"),
    "fidelity": Command(f"{_PACKAGE}.fidelity", "the fidelity table (docs/fidelity.md): each paper recipe's "
                        "settings beside its source's, from the recipes' fidelity blocks"),
    "demo": Command(f"{_PACKAGE}.demo", "train the tiny preset of every method on SynthPose (CPU) and write "
                    "results/demo/LEADERBOARD.md"),
    "sweep": Command(f"{_PACKAGE}.sweep", "run a wandb-format sweep file locally (grid or random), resuming"),
    "import-weights": Command(f"{_PACKAGE}.weights", "write a PoseBench checkpoint from a published weights file",
                              "add_import_arguments", "run_import"),
    "export-weights": Command(f"{_PACKAGE}.weights", "write the plain network state_dict of a PoseBench checkpoint",
                              "add_export_arguments", "run_export"),
    "verify-checkpoints": Command(f"{_PACKAGE}.published", "score the published checkpoints found in --weights and "
                                  "compare with their authors' numbers"),
}
"""Command name -> where it lives; the order is the order of ``python -m benchmark --help``."""
