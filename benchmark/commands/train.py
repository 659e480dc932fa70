"""``python -m benchmark train|evaluate``: train and test a method, or test a checkpoint (benchmark/train.py).

Both exit 1 when a recipe's run lands outside its reference tolerance (a failed reproduction) and 0
otherwise; ``train resume=last`` of a run that already finished says so and exits 0.
"""

from __future__ import annotations

import argparse
import logging
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from benchmark.train import RunResult

log = logging.getLogger(__name__)


def add_train_arguments(parser: argparse.ArgumentParser) -> None:
    """``train [key=value ...]``."""
    parser.add_argument("overrides", nargs="*", metavar="key=value",
                        help="group selectors (method=, data=, recipe=) and config overrides (trainer.max_epochs=2)")


def add_evaluate_arguments(parser: argparse.ArgumentParser) -> None:
    """``evaluate ckpt=PATH [key=value ...]``."""
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="ckpt=PATH and config overrides")


def run_train(args: argparse.Namespace) -> int:
    """Train and test; the exit status of ``_report``."""
    from benchmark.train import RunFinished, train_from_overrides

    try:
        result = train_from_overrides(args.overrides)
    except RunFinished as finished:  # e.g. a requeue script's resume=last after the run finished
        log.info(str(finished))
        return 0
    return _report(result)


def run_evaluate(args: argparse.Namespace) -> int:
    """Test a checkpoint; the exit status of ``_report``."""
    from benchmark.train import evaluate

    return _report(evaluate(args.overrides))


def _report(result: RunResult) -> int:
    """Print the results (rank 0 only) and return 1 for a failed reproduction, else 0."""
    from benchmark.train import format_results

    if result.run.trainer.is_global_zero:
        log.info(format_results(result))
    # A recipe run outside its reference tolerance is a failed reproduction.
    return 1 if result.verdict and result.verdict["reproduced"] is False else 0
