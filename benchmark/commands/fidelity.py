"""The fidelity table: per paper recipe, every setting that matters, the source's value beside PoseBench's.

``docs/fidelity.md`` is generated here and written by hand nowhere (docs/ holds the
fidelity table). Its facts come from two places:

- the ``fidelity:`` list at the end of each paper recipe (``benchmark/configs/recipe/*.yaml`` except
  ``demo_*``): one row per setting with the source's value in the source's units, the citation (file and
  key of the official code, or the paper's section) and, where PoseBench differs, the reason;
- PoseBench's value, never restated: a dotted key (``optim.lr``) is read from the run config that
  ``python -m benchmark train recipe=NAME`` resolves (``benchmark.config.load_config``); ``model.input_size``
  and ``model.kwargs.NAME`` are what the model is built with (the config's value, else the variant's
  preset, else the constructor's default, as ``models.build`` does). A named setting fixed in code
  (``CODE_SETTINGS``: ``stride``, ``loss``, ``target_weighting``, ``flip_shift``, ``pretrained``) is read from
  the model class; any other name without a dot is a fact of the code stated by the row itself
  (``ours:``) with the file that fixes it (``where:``). Below the tables, each method's "Deviations"
  section is quoted from its model file's docstring.

Rules (``problems`` lists every breach; tests/benchmark/commands/test_fidelity.py fails on any, and when
docs/fidelity.md differs from ``render()``, i.e. a recipe changed without regenerating the table):
a row whose two values differ carries ``deviation:``; a ``deviation`` on equal values is stale; a source
written ``"unverified: ..."`` is not compared; values in the source's iterations (``units: iterations``
with the source's ``batch`` and the ``samples`` of one PoseBench epoch) are converted to epochs and agree
within half an epoch (PoseBench steps its schedule at epoch boundaries); every setting of ``REQUIRED`` has
a row.

The rules and the row format are explained in docs/configuration.md ("Recipes hold only their diffs") and at the
top of docs/fidelity.md; the facts themselves are cited row by row.
"""

from __future__ import annotations

import argparse
import inspect
import math
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from benchmark.config import CONFIG_DIR, MISSING, available, load_config, lookup, to_dict
from benchmark.errors import PoseBenchError

if TYPE_CHECKING:
    from models.base import PoseEstimator

PROJECT_ROOT = Path(__file__).resolve().parents[2]
DOC_PATH = PROJECT_ROOT / "docs" / "fidelity.md"
UNVERIFIED = "unverified"
EPOCH_TOLERANCE = 0.5
UNITS = ("iterations",)


class FidelityError(PoseBenchError):
    """A recipe's ``fidelity:`` block is malformed (names the recipe, the row and the key)."""


@dataclass(frozen=True)
class Row:
    """One line of a recipe's ``fidelity:`` list (keys as in the YAML)."""

    setting: str
    source: Any
    cite: str
    deviation: str | None = None
    ours: Any = None
    where: str | None = None
    units: str | None = None
    batch: int | None = None
    samples: int | None = None


ROW_KEYS = tuple(f.name for f in fields(Row))


@dataclass(frozen=True)
class Context:
    """What PoseBench runs for one recipe: the resolved config, the model class and its constructor arguments."""

    recipe: str
    config: dict[str, Any]
    cls: type[PoseEstimator]
    kwargs: dict[str, Any]
    input_size: list[int]

    @property
    def heatmaps(self) -> bool:
        from models.base import HeatmapEstimator

        return issubclass(self.cls, HeatmapEstimator)


@dataclass(frozen=True)
class Resolved:
    """A row with PoseBench's value: ``ours`` (``found`` False when the key does not resolve) and its origin."""

    row: Row
    ours: Any
    found: bool
    origin: str


# ------------------------------------------------------------------------------- settings fixed in code

# The loss and target weighting of each ``compute_loss`` implementation (``[kind]``: its ``loss`` argument).
# A method that overrides ``compute_loss`` is missing here until its loss is described (KeyError names it).
LOSSES: dict[str, tuple[str, str]] = {
    "HeatmapEstimator.compute_loss": (
        "0.5 x MSE of the heatmaps (JointsMSELoss), summed over the outputs",
        "annotated joints whose Gaussian reaches the heatmap: 1, others: 0"),
    "ConvolutionalPoseMachine.compute_loss": (
        "Euclidean: sum of squared errors / (2 x batch) over the K + 1 maps, summed over the stages",
        "none: an unannotated joint's empty map counts like any other"),
    "DeepPose.compute_loss[l2]": (
        "L2: squared error of box-normalised coordinates, summed over joints, mean over the batch, summed over "
        "the stages",
        "annotated joints: 1, others: 0"),
    "DeepPose.compute_loss[smooth_l1]": (
        "SmoothL1 (beta 1) of normalised coordinates, mean over elements",
        "annotated joints: 1, others: 0"),
    "IterativeErrorFeedback.compute_loss": (
        "squared Euclidean distance of the bounded correction (units of L), mean over joints and steps",
        "annotated joints: 1, others: 0"),
    "Tompson.compute_loss": (
        "0.5 x MSE of the coarse (and spatial-model) heatmaps + fine_weight x 0.5 x MSE of the fine heatmaps",
        "annotated joints whose Gaussian reaches the heatmap (fine: its window): 1, others: 0"),
    "GRMI.compute_loss": (
        "4 x logistic loss of the disk heatmaps (mean over pixels) + 1 x Huber loss of the offset error (units of "
        "R) inside the disks",
        "annotated joints: 1, others: 0; offsets: disk pixels only"),
    "VisReg.compute_loss": (
        "cross-entropy of the (absent, present) logits, mean over the B x K joints, plus (after "
        "classification_epochs) L2 of box-normalised coordinates summed over joints, mean over the batch",
        "regression: annotated joints 1, others 0; classification: every joint"),
}


def _loss_entry(ctx: Context) -> tuple[str, str]:
    key = ctx.cls.compute_loss.__qualname__
    if "loss" in ctx.kwargs:
        key += f"[{ctx.kwargs['loss']}]"
    if key not in LOSSES:
        raise KeyError(f"benchmark/commands/fidelity.py LOSSES does not describe {key}: add its loss and target "
                       f"weighting")
    return LOSSES[key]


def _stride(ctx: Context) -> Any:
    from models.base import HeatmapEstimator

    return ctx.cls.output_stride if issubclass(ctx.cls, HeatmapEstimator) else "none (coordinate regression)"


def _flip_shift(ctx: Context) -> str:
    from pixelgrid import get_convention

    if not ctx.heatmaps:
        return "coordinates mirrored as x' = W - 1 - x"
    return "1 px right" if get_convention(ctx.config["model"]["convention"]).flip_shift else "none"


def _pretrained(ctx: Context) -> Any:
    return ctx.kwargs.get("pretrained", False)


CODE_SETTINGS: dict[str, Callable[[Context], Any]] = {
    "stride": _stride,
    "loss": lambda ctx: _loss_entry(ctx)[0],
    "target_weighting": lambda ctx: _loss_entry(ctx)[1],
    "flip_shift": _flip_shift,
    "pretrained": _pretrained,
}
"""Named settings whose PoseBench value is read from the model class (``pretrained``: False when the class
takes no such argument, i.e. it always starts from random weights)."""

# (the setting as docs/fidelity.md names it, the keys that cover it, heatmap methods only)
REQUIRED: tuple[tuple[str, tuple[str, ...], bool], ...] = (
    ("input size", ("model.input_size",), False),
    ("stride", ("stride",), True),
    ("sigma", ("model.kwargs.sigma",), True),
    ("loss", ("loss",), False),
    ("target weighting", ("target_weighting",), False),
    ("optimiser", ("optim.optimizer",), False),
    ("LR", ("optim.lr",), False),
    ("schedule: LR steps", ("optim.milestones",), False),
    ("schedule: length", ("trainer.max_epochs",), False),
    ("total batch", ("optim.total_batch",), False),
    ("rotation range", ("augmentation.rotation_max",), False),
    ("rotation probability", ("augmentation.rotation_prob",), False),
    ("scale range", ("augmentation.scale_max",), False),
    ("flip", ("augmentation.flip",), False),
    ("half-body", ("augmentation.half_body_prob",), False),
    ("colour", ("augmentation.colour_scale",), False),
    ("flip test", ("model.flip_test",), False),
    ("flip shift", ("flip_shift",), False),
    ("boxes", ("data.val_boxes",), False),
    ("decoder", ("model.decoder",), True),
    ("convention", ("model.convention",), False),
    ("pretrained weights", ("pretrained", "model.kwargs.pretrained"), False),
)


# ------------------------------------------------------------------------------- reading recipes


def paper_recipes() -> list[str]:
    """Every recipe but the SynthPose demo presets (``demo_*``)."""
    return [name for name in available("recipe") if not name.startswith("demo_")]


def recipe_path(name: str) -> Path:
    return CONFIG_DIR / "recipe" / f"{name}.yaml"


def read_rows(name: str) -> list[Row]:
    """The recipe's ``fidelity:`` rows (an empty list when it has none); malformed rows raise ``FidelityError``."""
    try:
        loaded = OmegaConf.to_container(OmegaConf.load(recipe_path(name)))
    except (OmegaConfBaseException, OSError, ValueError) as error:
        raise FidelityError(f"recipe {name}: cannot read {recipe_path(name)}: {error}") from None
    block = (loaded.get("fidelity") if isinstance(loaded, dict) else None) or []
    if not isinstance(block, list):
        raise FidelityError(f"recipe {name}: 'fidelity' must be a list of rows, got {type(block).__name__}")
    return [_row(name, number, item) for number, item in enumerate(block, 1)]


def _row(name: str, number: int, item: Any) -> Row:
    where = f"recipe {name}, fidelity row {number}"
    if not isinstance(item, dict):
        raise FidelityError(f"{where}: a row must be a mapping, got {item!r}")
    unknown = sorted(set(item) - set(ROW_KEYS))
    missing = [key for key in ("setting", "source", "cite") if key not in item]
    if unknown or missing:
        raise FidelityError(f"{where} ({item.get('setting')}): unknown keys {unknown}, missing keys {missing}; "
                            f"valid keys: {', '.join(ROW_KEYS)}")
    return Row(**item)


def context(name: str) -> Context:
    """Resolve recipe ``name`` exactly as ``train recipe=NAME`` does, plus the model class and its arguments."""
    from models import METHODS, VARIANTS

    config = to_dict(load_config([f"recipe={name}"]))
    variant = config["model"]["variant"]
    preset = VARIANTS.get(variant)
    cls = METHODS[preset.method if preset else variant]
    kwargs = {**constructor_defaults(cls), **(preset.kwargs if preset else {}), **config["model"]["kwargs"]}
    size = config["model"]["input_size"] or (list(preset.input_size) if preset else None)
    if size is None:
        raise FidelityError(f"recipe {name}: model.input_size is unset and {variant} has no preset size")
    return Context(name, config, cls, kwargs, size)


def constructor_defaults(cls: type[PoseEstimator]) -> dict[str, Any]:
    """Default keyword arguments of ``cls`` and of the bases its ``**kwargs`` reach (the subclass's win), but
    not ``PoseEstimator``'s: those (optimiser, flip test, decoder, ...) come from the run config's sections."""
    from models.base import PoseEstimator

    defaults: dict[str, Any] = {}
    for klass in cls.__mro__:
        if "__init__" not in vars(klass) or klass in (object, PoseEstimator):
            continue
        parameters = inspect.signature(vars(klass)["__init__"]).parameters.values()
        for p in parameters:
            if p.default is not p.empty:
                defaults.setdefault(p.name, p.default)
        if not any(p.kind is p.VAR_KEYWORD for p in parameters):
            break
    return defaults


# ------------------------------------------------------------------------------- PoseBench's values


def resolve(row: Row, ctx: Context) -> Resolved:
    """PoseBench's value of ``row.setting`` for the recipe of ``ctx``."""
    setting = row.setting
    if setting in CODE_SETTINGS:
        return Resolved(row, CODE_SETTINGS[setting](ctx), True, _source_file(ctx.cls))
    if "." not in setting:
        return Resolved(row, row.ours, row.ours is not None, row.where or "")
    if setting == "model.input_size":
        return Resolved(row, ctx.input_size, ctx.input_size is not None, "config")
    if setting.startswith("model.kwargs."):
        key = setting.removeprefix("model.kwargs.")
        return Resolved(row, ctx.kwargs.get(key), key in ctx.kwargs, "config")
    value = lookup(ctx.config, setting)
    return Resolved(row, None if value is MISSING else value, value is not MISSING, "config")


def _source_file(cls: type) -> str:
    path = Path(inspect.getsourcefile(cls) or sys.modules[cls.__module__].__file__ or "")
    return path.resolve().relative_to(PROJECT_ROOT).as_posix()


def in_epochs(row: Row) -> Any:
    """The source value converted from ``row.units`` to epochs (``value x batch / samples``); as is without units."""
    if row.units is None:
        return row.source
    if not row.samples or not row.batch:
        raise FidelityError(f"fidelity row {row.setting}: units {row.units!r} need 'samples' and 'batch'")
    per_epoch = row.samples / row.batch

    def convert(value: Any) -> Any:
        return value / per_epoch if isinstance(value, (int, float)) and not isinstance(value, bool) else value

    return [convert(v) for v in row.source] if isinstance(row.source, list) else convert(row.source)


def same(source: Any, ours: Any, tolerance: float = 0.0) -> bool:
    """Equal values: numbers to ``tolerance`` (absolute; else 1e-9 relative), lists element-wise, no bool/number mix."""
    if isinstance(source, list) and isinstance(ours, (list, tuple)):
        return len(source) == len(ours) and all(same(s, o, tolerance) for s, o in zip(source, ours, strict=True))
    if isinstance(source, bool) or isinstance(ours, bool):
        return source is ours
    if isinstance(source, (int, float)) and isinstance(ours, (int, float)):
        return abs(source - ours) <= tolerance or math.isclose(source, ours, rel_tol=1e-9, abs_tol=1e-12)
    return source == ours


def unverified(row: Row) -> bool:
    return isinstance(row.source, str) and row.source.startswith(UNVERIFIED)


def agrees(resolved: Resolved) -> bool:
    """True when PoseBench's value equals the source's (after the row's unit conversion)."""
    row = resolved.row
    tolerance = EPOCH_TOLERANCE if row.units else 0.0
    return resolved.found and same(in_epochs(row), resolved.ours, tolerance)


# ------------------------------------------------------------------------------- checks


def problems(names: list[str] | None = None) -> list[str]:
    """Every breach of the rules (module docstring) in the recipes ``names`` (default: every paper recipe)."""
    found: list[str] = []
    for name in names or paper_recipes():
        try:
            rows = read_rows(name)
        except FidelityError as error:
            found.append(str(error))
            continue
        if not rows:
            found.append(f"recipe {name}: no fidelity block (append one; docs/fidelity.md explains the rows)")
            continue
        ctx = context(name)
        found += [f"recipe {name}, {row.setting}: {p}" for row in rows for p in row_problems(row, ctx)]
        found += [f"recipe {name}: {p}" for p in missing_settings(rows, ctx)]
    return found


def row_problems(row: Row, ctx: Context) -> list[str]:
    """What is wrong with one row for the recipe of ``ctx`` (empty when nothing)."""
    out = _form_problems(row)
    if out:
        return out
    resolved = resolve(row, ctx)
    if not resolved.found:
        return [f"'{row.setting}' does not resolve in the run config (a misspelt key, or not a setting yet)"]
    if unverified(row):
        return []
    if agrees(resolved) and row.deviation:
        return [f"stale deviation: PoseBench's {_fmt(resolved.ours)} equals the source's; remove 'deviation'"]
    if not agrees(resolved) and not row.deviation:
        return [f"PoseBench's {_fmt(resolved.ours)} differs from the source's {_source_text(row)}: "
                "give the reason as 'deviation'"]
    return []


def _form_problems(row: Row) -> list[str]:
    literal = "." not in row.setting and row.setting not in CODE_SETTINGS
    out = []
    if literal and (row.ours is None or not row.where):
        out.append("a setting fixed in code needs 'ours' (its value) and 'where' (the file)")
    if not literal and (row.ours is not None or row.where):
        out.append("'ours'/'where' are only for settings fixed in code; PoseBench's value is read, not written")
    if row.where and not (PROJECT_ROOT / row.where).is_file():
        out.append(f"'where' names no file of the project: {row.where}")
    if row.units is not None and (row.units not in UNITS or not row.batch or not row.samples):
        out.append(f"'units' must be one of {UNITS} and come with the source's 'batch' and 'samples' per epoch")
    if not str(row.cite).strip():
        out.append("empty 'cite'")
    return out


def missing_settings(rows: list[Row], ctx: Context) -> list[str]:
    """The ``REQUIRED`` settings that have no row (heatmap-only ones skipped for coordinate regressors)."""
    settings = {row.setting for row in rows}
    return [f"no row for {label} ({' or '.join(accepted)})" for label, accepted, heatmap_only in REQUIRED
            if (ctx.heatmaps or not heatmap_only) and not settings & set(accepted)]


# ------------------------------------------------------------------------------- rendering


def _fmt(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_fmt(v) for v in value) + "]"
    return str(value)


def _cell(text: str) -> str:
    return " ".join(str(text).split()).replace("|", "\\|")


def _source_text(row: Row) -> str:
    text = _fmt(row.source)
    if row.units:
        text += (f" {row.units} (= {_fmt(_rounded(in_epochs(row)))} epochs: batch {row.batch}, "
                 f"{row.samples:,} samples per epoch)")
    return text


def _source_cell(row: Row) -> str:
    return _cell(_source_text(row))


def _rounded(value: Any) -> Any:
    return [_rounded(v) for v in value] if isinstance(value, list) else round(value, 1)


def _ours_cell(resolved: Resolved) -> str:
    if not resolved.found:
        return "(not in the config)"
    text = _fmt(resolved.ours)
    return _cell(text if resolved.origin == "config" else f"{text} (`{resolved.origin}`)")


def _deviation_cell(resolved: Resolved) -> str:
    row = resolved.row
    if unverified(row):
        return _cell("source unverified" + (f"; PoseBench: {row.deviation}" if row.deviation else ""))
    return _cell(f"≠ {row.deviation}") if row.deviation else "—"


def recipe_title(name: str) -> str:
    """The recipe file's leading comment (what it reproduces and from which source), as one paragraph."""
    lines = []
    for line in recipe_path(name).read_text().splitlines():
        if not line.startswith("#"):
            break
        lines.append(line.lstrip("#").strip())
    return _cell(" ".join(lines)) or name


def _reference(ctx: Context) -> str:
    ref = ctx.config["reference"]
    split = f", measured on the {ref['split']} split" if ref.get("split") else ""
    return (f"Reference: {_fmt(ref['value'])} ± {_fmt(ref['tolerance'])} (metric `{ref['metric']}`{split}; "
            f"{_cell(ref['source'])}).")


def render_recipe(ctx: Context, rows: list[Row]) -> list[str]:
    """The section of one recipe: title, model, reference, the table and its deviation count."""
    resolved = [resolve(row, ctx) for row in rows]
    deviations = sum(1 for r in resolved if r.row.deviation)
    lines = [f"## `{ctx.recipe}`", "", recipe_title(ctx.recipe), "",
             f"Model: `{ctx.config['model']['variant']}` (`{_source_file(ctx.cls)}`). {_reference(ctx)} "
             f"{deviations} of {len(resolved)} settings deviate.", "",
             "| setting | source | PoseBench | source citation | deviation |", "|---|---|---|---|---|"]
    lines += [f"| `{r.row.setting}` | {_source_cell(r.row)} | {_ours_cell(r)} | {_cell(r.row.cite)} | "
              f"{_deviation_cell(r)} |" for r in resolved]
    return lines + [""]


def docstring_deviations(cls: type) -> str:
    """The "Deviations" section of the docstring of ``cls``'s module (from its heading to the end)."""
    doc = inspect.cleandoc(sys.modules[cls.__module__].__doc__ or "")
    match = re.search(r"^Deviations\b.*", doc, flags=re.MULTILINE | re.DOTALL)
    return match.group(0).strip() if match else "(the module docstring lists no deviations)"


def _code_sections(classes: set[type]) -> list[str]:
    lines = ["## Deviations written in the model code", "",
             "Quoted from each model file's docstring (the architecture-level deviations the rows above do not "
             "repeat).", ""]
    for cls in sorted(classes, key=_source_file):
        lines += [f"### `{_source_file(cls)}`", "", docstring_deviations(cls), ""]
    return lines


INTRO = """\
# Fidelity: the source's settings beside PoseBench's

Generated by `python -m benchmark fidelity --write` (`make fidelity`) from `benchmark/commands/fidelity.py`; do not
edit by hand. For each paper recipe (`benchmark/configs/recipe/*.yaml`, not `demo_*`):

- **source**: the value in the run the recipe reproduces (its official code, or the paper), in the source's
  units, with the **source citation** (repository, file and key, or paper section). These rows live in the
  `fidelity:` block at the end of the recipe file.
- **PoseBench**: read, never restated. A dotted key (`optim.lr`) is the value of the run config that
  `python -m benchmark train recipe=NAME` resolves; `model.input_size` and `model.kwargs.*` are what the
  model is built with (config, else the variant's preset, else the constructor default). Named settings fixed
  in code show the file they come from: `stride`, `loss`, `target_weighting`, `flip_shift` (under the
  run's `model.convention`) and `pretrained` are read from the model class; other names are facts of the code
  stated in the recipe row with the file that fixes them.
- **deviation** (≠): why PoseBench's value differs. A source written "unverified: ..." could not be
  checked against the source here and is not compared; such a row may still say what PoseBench does.
- Units: a source counted in iterations is converted to PoseBench epochs, iterations x the source's batch /
  the training samples of one PoseBench epoch (MPII train: 22,246 persons); it agrees when within half an
  epoch (PoseBench steps its schedule at epoch boundaries). Input sizes are `[H, W]`; rotations in degrees;
  `scale_max` is the clip of the scale factor (`linear`) or of its log2.

`tests/benchmark/commands/test_fidelity.py` fails when this file differs from what the recipes generate (a recipe
changed without `make fidelity`), when a row's values differ without a deviation or agree with one (stale),
when a dotted key does not resolve, and when a recipe lacks a row for one of the settings that matter (input
size, stride, sigma, loss, target weighting, optimiser, LR, schedule, total batch, augmentation, flip test and
shift, boxes, decoder, convention, pretrained weights).
"""


def _summary(recipes: list[tuple[Context, list[Row]]]) -> list[str]:
    lines = ["| recipe | model | settings | deviations | unverified sources |", "|---|---|---|---|---|"]
    for ctx, rows in recipes:
        lines.append(f"| [`{ctx.recipe}`](#{ctx.recipe}) | `{ctx.config['model']['variant']}` | {len(rows)} | "
                     f"{sum(1 for r in rows if r.deviation)} | {sum(1 for r in rows if unverified(r))} |")
    return lines + [""]


@dataclass(frozen=True)
class SharedSetting:
    """A setting every paper recipe inherits from configs/defaults.yaml or its method file, where PoseBench's
    pipeline departs from (or may depart from) every source at once: one row for all recipes, not one per recipe."""

    key: str
    source: str
    differs: str


SHARED: tuple[SharedSetting, ...] = (
    SharedSetting("data.reduced_decode", "every JPEG decoded at full size (each source's cv2/PIL/Torch image read)",
                  "with `true`, a training crop that samples its image at most 1/2, 1/4 or 1/8 as densely decodes it "
                  "at that reduction (libjpeg DCT scaling, folded into the one warp; evaluation always decodes in "
                  "full): the crop is anti-aliased where the source's is aliased, 1.8 grey levels apart on average "
                  "on the MPII fixtures (`python -m benchmark profile data`, docs/architecture.md)"),
    SharedSetting("trainer.precision", "fp32 (no source recipe states mixed precision)",
                  "`auto`: bf16-mixed where `benchmark/speed_defaults.py` measured the method's step faster on the "
                  "accelerator (CPU rows, on CPUs with native bf16 only; no CUDA row yet, so fp32 on a GPU), else "
                  "fp32; decoding and the crop-to-image map stay in fp32; the run record's `speed` field says which "
                  "precision ran"),
    SharedSetting("trainer.channels_last", "contiguous (NCHW) tensors",
                  "`auto`: channels-last memory where measured faster; the same arithmetic in another summation "
                  "order (no change of the computation)"),
)
"""Rows of the "Settings every recipe shares" section; PoseBench's values are read from each recipe's config."""


def _shared_section(recipes: list[tuple[Context, list[Row]]]) -> list[str]:
    """One row per ``SHARED`` setting: the sources' value, PoseBench's as each recipe's config resolves it (grouped
    by value), and how PoseBench's departs."""
    lines = ["## Settings every recipe shares", "",
             "Pipeline settings every paper recipe takes from `benchmark/configs/defaults.yaml` or its method file, "
             "with the same departure from every source; a recipe or the command line may set them back "
             "(`data.reduced_decode=false`, `trainer.precision=32-true`, `trainer.channels_last=false`).", "",
             "| setting | sources | PoseBench (recipes) | how PoseBench departs |", "|---|---|---|---|"]
    for shared in SHARED:
        by_value: dict[str, list[str]] = {}
        for ctx, _ in recipes:
            value = lookup(ctx.config, shared.key)
            by_value.setdefault("(not in the config)" if value is MISSING else _fmt(value), []).append(ctx.recipe)
        ours = "; ".join(f"{value}" + ("" if len(names) == len(recipes) else f" ({', '.join(names)})")
                         for value, names in sorted(by_value.items()))
        lines.append(f"| `{shared.key}` | {_cell(shared.source)} | {_cell(ours)} | {_cell(shared.differs)} |")
    return lines + [""]


def render(names: list[str] | None = None) -> str:
    """The whole of docs/fidelity.md for the recipes ``names`` (default: every paper recipe)."""
    recipes = [(context(name), read_rows(name)) for name in names or paper_recipes()]
    lines = [INTRO, *_summary(recipes), *_shared_section(recipes)]
    for ctx, rows in recipes:
        lines += render_recipe(ctx, rows)
    lines += _code_sections({ctx.cls for ctx, _ in recipes})
    return "\n".join(lines).rstrip("\n") + "\n"


def write(path: Path = DOC_PATH) -> Path:
    """Write ``render()`` to ``path`` (docs/fidelity.md)."""
    path.write_text(render())
    return path


# ---- command line



def add_arguments(parser: argparse.ArgumentParser) -> None:
    """``fidelity [--write]``."""
    parser.add_argument("--write", action="store_true", help="write docs/fidelity.md instead of printing it")


def run(args: argparse.Namespace) -> int:
    """Print or write the table; every rule it breaks is an error line, and makes the exit status 1."""
    import logging

    log = logging.getLogger(__name__)
    if args.write:
        log.info(f"wrote {write().relative_to(PROJECT_ROOT)}")
    else:
        log.info(render().removesuffix("\n"))  # render() ends with its one newline; the logger adds it back
    found = problems()
    for problem in found:
        log.error(f"error: {problem}")
    return 1 if found else 0
