"""The one base class of user-facing errors: the command line prints their message and exits 2.

Any other exception is a bug and propagates with its traceback. ``datamodules`` and ``models`` never
import ``benchmark`` (docs/architecture.md), so their user-facing errors have their own bases,
``datamodules.records.DatasetError`` and ``models.pretrained.PretrainedWeightsUnavailable``;
``USER_ERRORS`` is the three together, what the command line catches.
"""

from __future__ import annotations

from datamodules.records import DatasetError
from models.pretrained import PretrainedWeightsUnavailable


class PoseBenchError(Exception):
    """Bad input to the harness (a config key, a run record, a file, a value): the message names it."""


USER_ERRORS: tuple[type[Exception], ...] = (PoseBenchError, DatasetError, PretrainedWeightsUnavailable)
