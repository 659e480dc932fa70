"""The ``python -m benchmark`` command line: the parser built from the command table, and the one error path.

The commands and their modules are listed in ``benchmark/commands/__init__.py`` (``COMMANDS``); a
command's module is imported only when it runs or its ``--help`` is asked, so ``--help`` is fast.
A user error (``benchmark.errors.user_errors()``: bad input, named in its message) prints
``error: <message>`` and exits 2; any other exception is a bug and propagates with its traceback.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from typing import Any

from benchmark.commands import COMMANDS, Command
from benchmark.log import set_verbosity

log = logging.getLogger(__name__)


class _CommandParser(argparse.ArgumentParser):
    """The parser of one command: its module adds the arguments the first time it parses or shows help."""

    def __init__(self, *args: Any, command: Command | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._command = command

    def _load(self) -> None:
        if self._command is None:
            return
        command, self._command = self._command, None
        module = importlib.import_module(command.module)
        getattr(module, command.add_arguments)(self)
        self.set_defaults(handler=getattr(module, command.run))

    def parse_known_args(self, *args: Any, **kwargs: Any) -> Any:
        self._load()
        return super().parse_known_args(*args, **kwargs)

    def format_help(self) -> str:
        self._load()
        return super().format_help()


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser: ``--quiet`` and one sub-parser per entry of ``COMMANDS`` (arguments added lazily)."""
    parser = argparse.ArgumentParser(
        prog="python -m benchmark",
        description="PoseBench: train, score and compare 2D human pose estimation methods under one protocol. "
                    "'python -m benchmark COMMAND --help' shows a command's arguments; README.md and docs/ say more.")
    parser.add_argument("--quiet", action="store_true", help="print warnings and errors only")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_CommandParser)
    for name, command in COMMANDS.items():
        sub.add_parser(name, help=command.help, description=command.help, command=command)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Parse ``argv`` and run the command; a user error prints its message and exits 2, a bug raises."""
    args = build_parser().parse_args(argv)
    set_verbosity(quiet=args.quiet)
    from benchmark.errors import user_errors

    try:
        return args.handler(args)
    except user_errors() as error:
        log.error(f"error: {error}")
        return 2


if __name__ == "__main__":
    sys.exit(main())
