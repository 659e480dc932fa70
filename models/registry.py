"""The flat method registry: method names -> LightningModule classes, variant names -> presets.

A method file registers its class with ``@register_method("name")`` and its presets with
``register_variant(...)`` at the bottom of the same file (the timm pattern, docs/adding-a-method.md);
``models/__init__.py`` imports every module of the package, so a new file registers itself.
A duplicate name fails loudly. ``build(name, **overrides)`` accepts a variant or a method name
and checks every override against the constructor signatures of the class and its bases, so a
misspelt key is an error that names it and the valid keys.
"""

from __future__ import annotations

import copy
import dataclasses
import inspect
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from models.base import PoseEstimator

# Default skeletons of the paper variants, as plain lists: models never import datamodules, so these restate
# datamodules/skeletons.py's MPII and COCO (tests/models/test_registry.py ties them exactly). The harness always
# passes ``num_joints`` and ``flip_pairs`` of the dataset it trains on.
MPII_JOINTS = 16
MPII_FLIP_PAIRS: list[list[int]] = [[0, 5], [1, 4], [2, 3], [10, 15], [11, 14], [12, 13]]
COCO_JOINTS = 17
COCO_FLIP_PAIRS: list[list[int]] = [[1, 2], [3, 4], [5, 6], [7, 8], [9, 10], [11, 12], [13, 14], [15, 16]]


@dataclasses.dataclass(frozen=True)
class Variant:
    """A named preset of a method: its input size ``(H, W)``, constructor kwargs and paper figures.

    ``paper_gflops`` and ``paper_params`` (millions) are the paper's own figures where it gives them;
    ``modernized`` marks presets that depart from the paper (e.g. another backbone); ``tiny`` marks
    small presets for tests and the demo.
    """

    name: str
    method: str
    input_size: tuple[int, int]
    kwargs: dict[str, Any]
    paper_gflops: float | None = None
    paper_params: float | None = None
    modernized: bool = False
    tiny: bool = False


METHODS: dict[str, type[PoseEstimator]] = {}
VARIANTS: dict[str, Variant] = {}

Estimator = TypeVar("Estimator", bound=type)


def register_method(name: str) -> Callable[[Estimator], Estimator]:
    """Class decorator: register a ``PoseEstimator`` subclass as method ``name`` (duplicate -> ValueError)."""

    def decorator(cls: Estimator) -> Estimator:
        if name in METHODS:
            existing = METHODS[name]
            raise ValueError(
                f"method {name!r} is already registered by {existing.__module__}.{existing.__qualname__}; "
                f"cannot register {cls.__module__}.{cls.__qualname__} under the same name"
            )
        METHODS[name] = cls
        return cls

    return decorator


def register_variant(
    name: str,
    method: str,
    *,
    input_size: tuple[int, int],
    paper_gflops: float | None = None,
    paper_params: float | None = None,
    modernized: bool = False,
    tiny: bool = False,
    **kwargs: Any,
) -> Variant:
    """Register preset ``name`` of ``method`` with constructor ``kwargs`` (duplicate -> ValueError)."""
    if name in VARIANTS:
        raise ValueError(f"variant {name!r} is already registered (method {VARIANTS[name].method!r})")
    if name in METHODS and name != method:
        raise ValueError(f"variant name {name!r} is already a method name")
    if method not in METHODS:
        raise KeyError(f"variant {name!r} names unknown method {method!r}; registered: {', '.join(sorted(METHODS))}")
    if len(input_size) != 2 or min(input_size) <= 0:
        raise ValueError(f"variant {name!r}: input_size must be a positive (H, W), got {input_size}")
    _check_kwargs(METHODS[method], kwargs, f"variant {name!r}")
    variant = Variant(name, method, (int(input_size[0]), int(input_size[1])), dict(kwargs),
                      paper_gflops, paper_params, modernized, tiny)
    VARIANTS[name] = variant
    return variant


def accepted_kwargs(cls: type) -> set[str]:
    """Keyword names the constructor of ``cls`` accepts, following ``**kwargs`` into its bases."""
    names: set[str] = set()
    for klass in cls.__mro__:
        if "__init__" not in vars(klass) or klass is object:
            continue
        parameters = inspect.signature(vars(klass)["__init__"]).parameters.values()
        names.update(p.name for p in parameters
                     if p.name != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD))
        if not any(p.kind is p.VAR_KEYWORD for p in parameters):
            break
    return names


def _check_kwargs(cls: type, kwargs: dict[str, Any], where: str) -> None:
    valid = accepted_kwargs(cls)
    unknown = sorted(set(kwargs) - valid)
    if unknown:
        raise TypeError(
            f"{where}: unknown argument(s) {', '.join(map(repr, unknown))} for {cls.__qualname__}; "
            f"valid: {', '.join(sorted(valid))}"
        )


def build(name: str, **overrides: Any) -> PoseEstimator:
    """The LightningModule of variant or method ``name``, with ``overrides`` on top of the preset.

    Unknown name -> KeyError listing the valid names; an override the constructor does not take ->
    TypeError naming it and the valid keys.
    """
    if name in VARIANTS:
        variant = VARIANTS[name]
        cls = METHODS[variant.method]
        kwargs = {"input_size": list(variant.input_size), **copy.deepcopy(variant.kwargs)}
    elif name in METHODS:
        cls = METHODS[name]
        kwargs = {}
    else:
        raise KeyError(
            f"unknown model {name!r}; methods: {', '.join(sorted(METHODS))}; "
            f"variants: {', '.join(sorted(VARIANTS))}"
        )
    _check_kwargs(cls, overrides, f"build({name!r})")
    kwargs.update(overrides)
    return cls(**kwargs)


def build_random(name: str, **overrides: Any) -> PoseEstimator:
    """``build(name, **overrides)`` with random weights: ``pretrained=False`` where the method takes it (over any
    override), so nothing is downloaded (for counting, timing and tests; those numbers do not depend on the weights)."""
    cls = METHODS[VARIANTS[name].method] if name in VARIANTS else METHODS.get(name)
    no_download = {"pretrained": False} if cls is not None and "pretrained" in accepted_kwargs(cls) else {}
    return build(name, **{**overrides, **no_download})
