"""Dataset evaluation protocols, one object per dataset family (``mpii``, ``coco``, ``lsp``): docs/protocols.md.

Importing the package imports every module in it, so a protocol file registers itself with
``@register_protocol`` and nothing else needs editing (docs/adding-a-dataset.md).
"""

import importlib
import pkgutil

from benchmark.protocols.base import (
    PROTOCOLS,
    Column,
    EvaluationError,
    Protocol,
    get_protocol,
    leaderboard_protocols,
    register_protocol,
)

__all__ = ["PROTOCOLS", "Column", "EvaluationError", "Protocol", "get_protocol", "leaderboard_protocols",
           "register_protocol"]

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")
