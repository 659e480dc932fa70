"""Pose estimation methods (one file each), their codecs and the registry.

Importing the package imports every module in it, so a method file registers itself with
``@register_method`` / ``register_variant`` and nothing else needs editing (docs/adding-a-method.md).
"""

import importlib
import pkgutil

from models.registry import METHODS, VARIANTS, Variant, build, build_random, register_method, register_variant

__all__ = ["METHODS", "VARIANTS", "Variant", "build", "build_random", "register_method", "register_variant"]

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")
