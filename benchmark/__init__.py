"""PoseBench: the harness that wires datamodules and models into Lightning, scores runs and records them.

Importing it installs the package logger (``benchmark/log.py``), so every module's messages are shown whichever
module is imported first.
"""

from benchmark import log as _log  # noqa: F401 - installs the console handler
