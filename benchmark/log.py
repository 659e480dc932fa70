"""The package logger: what PoseBench says goes through ``logging``, so it can be silenced or redirected.

``logging.getLogger("benchmark")`` is the parent of every module's ``logging.getLogger(__name__)``; the
``datamodules`` and ``models`` loggers get the same handler.
By default it writes bare messages, INFO and DEBUG to the current ``sys.stdout`` and WARNING and above to
the current ``sys.stderr`` (looked up when each message is written, so output captured by a caller or
by pytest is captured), and only on global rank 0 under DDP, so N processes do not print N copies.
``python -m benchmark --quiet`` keeps warnings and errors only; a program that configures logging itself
can remove the handler with ``logging.getLogger("benchmark").handlers.clear()``.
"""

from __future__ import annotations

import logging
import os
import sys

PACKAGE_LOGGER = "benchmark"
CONSOLE_LOGGERS = (PACKAGE_LOGGER, "datamodules", "models")
"""The loggers given the console handler: the harness's, and those of the packages it wires together (which
cannot import ``benchmark``, so they log under their own names)."""


def global_rank() -> int:
    """This process's global rank: Lightning's once it is set, else the launcher's ``RANK`` variable, else 0."""
    from lightning_utilities.core.rank_zero import rank_zero_only

    rank = getattr(rank_zero_only, "rank", None)
    if rank is not None:
        return int(rank)
    return int(os.environ.get("RANK", os.environ.get("SLURM_PROCID", 0)))


class _RankZeroFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return global_rank() == 0


class _ConsoleHandler(logging.Handler):
    """Bare messages to the current ``sys.stdout`` (below WARNING) or ``sys.stderr``."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            stream = sys.stderr if record.levelno >= logging.WARNING else sys.stdout
            stream.write(self.format(record) + "\n")
            stream.flush()
        except Exception:  # noqa: BLE001 - logging must never raise into the caller
            self.handleError(record)


def _install() -> None:
    for name in CONSOLE_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(h, _ConsoleHandler) for h in logger.handlers):
            handler = _ConsoleHandler()
            handler.setFormatter(logging.Formatter("%(message)s"))
            handler.addFilter(_RankZeroFilter())
            logger.addHandler(handler)
        if logger.level == logging.NOTSET:
            logger.setLevel(logging.INFO)
        logger.propagate = False


def set_verbosity(quiet: bool = False) -> None:
    """INFO and above (the default), or only warnings and errors when ``quiet``."""
    for name in CONSOLE_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING if quiet else logging.INFO)


_install()
