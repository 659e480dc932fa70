"""The one base class of user-facing errors: the command line prints their message and exits 2.

Any other exception is a bug and propagates with its traceback. ``datamodules`` and ``models`` never
import ``benchmark`` (docs/architecture.md), so their user-facing errors have their own bases,
``datamodules.records.DatasetError`` and ``models.pretrained.PretrainedWeightsUnavailable``;
``user_errors()`` is the three together, what the command line catches. It imports those two packages
when called, so defining a ``PoseBenchError`` subclass costs no torch import (``--help`` stays fast).
"""

from __future__ import annotations


class PoseBenchError(Exception):
    """Bad input to the harness (a config key, a run record, a file, a value): the message names it."""


def user_errors() -> tuple[type[Exception], ...]:
    """Every user-facing error base: ``PoseBenchError``, ``DatasetError``, ``PretrainedWeightsUnavailable``."""
    from datamodules.records import DatasetError
    from models.pretrained import PretrainedWeightsUnavailable

    return (PoseBenchError, DatasetError, PretrainedWeightsUnavailable)
