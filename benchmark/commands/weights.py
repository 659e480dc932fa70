"""Published weights in and out of PoseBench: ``import-weights`` and ``export-weights``.

``import_weights`` reads a released checkpoint, renames every tensor to PoseBench's network, checks
every name and shape (an unmapped, missing or misshaped key is an error naming it; only absent
BatchNorm ``num_batches_tracked`` counters are filled in, with 0, and listed), and
``write_checkpoint`` stores it as ``benchmark.train`` stores a trained model (``state_dict`` plus the
``posebench`` entry: variant, method, resolved run config) with ``imported`` provenance (source file,
sha256, format, pixel-grid convention). ``export_state_dict`` goes back to a plain network state
dict in PoseBench's, the official or mmpose's key layout. ``benchmark/commands/published.py`` lists the
released checkpoints with their authors' numbers and scores those present in a folder.
docs/checkpoints.md explains the formats.

Sources (facts used here, by repository and file):

- leoxiaobin/deep-high-resolution-net.pytorch ``lib/models/pose_hrnet.py``: module names and layout
  equal to ``models.hrnet.PoseHighResolutionNet`` (``None`` fuse/transition entries hold no
  tensors; ``final_layer`` a 1x1 convolution with bias), so the key mapping is the identity;
  ``tools/train.py`` saves ``model.module.state_dict()`` (no ``module.`` prefix); ``tools/test.py``
  loads with ``strict=False``; ``experiments/*/hrnet/*.yaml`` ``COLOR_RGB: true`` and
  ``experiments/*/resnet/*.yaml`` ``COLOR_RGB: false`` (``lib/dataset/JointsDataset.py`` converts to
  RGB only when set); ``lib/core/function.py`` flip test with ``SHIFT_HEATMAP``; ``lib/core/inference.py``
  quarter-offset decoding (``TEST.POST_PROCESS``); ``README.md``: model zoo links and the COCO val2017 /
  MPII val numbers of ``PUBLISHED``.
- microsoft/human-pose-estimation.pytorch ``lib/models/pose_resnet.py``: torchvision-named ResNet
  (``conv1``, ``bn1``, ``layer1..4``, stride on the 3x3 in the 'pytorch' style), ``deconv_layers``
  (``ConvTranspose2d`` 4x4 without bias, BN, ReLU, three times) and ``final_layer``; ``init_weights``
  unwraps ``{'state_dict': ...}`` and strips ``module.`` (DataParallel); ``README.md``: model zoo
  links, numbers, and only 'pytorch'-style pose models released (the Caffe-style ResNet puts the
  stride on the 1x1 convolution: same names and shapes, another network).
- open-mmlab/mmpose 1.3.2: ``mmpose/models/backbones/hrnet.py`` and ``resnet.py`` (the same module
  names under ``backbone.``, norm layers named ``bn1``...), ``models/heads/heatmap_heads/heatmap_head.py``
  (``deconv_layers``, ``final_layer``), ``models/heads/regression_heads/regression_head.py``
  (``fc = Linear(in, K * 2)``, output ``reshape(-1, K, 2)``), ``models/necks/gap_neck.py``
  (``AdaptiveAvgPool2d(1)``), ``models/pose_estimators/base.py`` (``keypoint_head`` of 0.x files read
  as ``head``; ``data_preprocessor.mean/std`` dropped), ``codecs/regression_label.py``
  (``x / (W, H)``), ``codecs/msra_heatmap.py`` (quarter offset) and ``udp_heatmap.py`` (DARK-UDP), the
  configs' ``data_preprocessor`` (ImageNet mean/std x 255, ``bgr_to_rgb=True``) and ``test_cfg`` (flip test),
  ``models/backbones/cpm.py`` and ``hourglass.py`` (why those are not importable), ``tools/misc/
  publish_model.py`` (released files keep ``meta`` and ``state_dict``), and the model zoo tables
  ``configs/body_2d_keypoint/topdown_{heatmap,regression}/{coco,mpii}/*.md``.
- bearpaw/pytorch-pose ``pose/models/hourglass.py`` (``HourglassNet``; the stem mismatch named in
  ``HOURGLASS_MISMATCH``), ``example/main.py`` (``DataParallel`` checkpoints, flip test only with
  ``-f``, no heatmap shift), ``pose/utils/evaluation.py`` and ``transforms.py`` (Newell's grid),
  ``README.md`` (88.78 PCKh@0.5 of ``hg_s8_b1``); umich-vl/pose-hg-train ``src/models/hg.lua`` and
  ``src/models/layers/Residual.lua`` (the stem PoseBench's hourglass follows:
  ``Residual(64, 128) - pool - Residual(128, 128) - Residual(128, nFeats)``).
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import logging
import pickle
import re
from collections.abc import Callable, Collection, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmark.errors import PoseBenchError
from benchmark.files import atomic_write
from datamodules.transforms import IMAGENET_MEAN, IMAGENET_STD

log = logging.getLogger(__name__)

FORMATS: tuple[str, ...] = ("msra-hrnet", "msra-resnet", "mmpose", "bearpaw-hourglass")
LAYOUTS: tuple[str, ...] = ("posebench", "official", "mmpose")
INPUT_ORDERS: tuple[str, ...] = ("rgb", "bgr")
_SHOWN_PROBLEMS = 60



class WeightsError(PoseBenchError):
    """Weights cannot be imported, exported or verified as asked; the message names the file, key and shapes."""


# ----------------------------------------------------------------------------------------------- key names


@dataclasses.dataclass(frozen=True)
class PrefixNames:
    """Key renaming by prefix pairs ``(source prefix, PoseBench network prefix)``; the longest match wins."""

    rules: tuple[tuple[str, str], ...]

    def forward(self, key: str) -> str | None:
        """The PoseBench network key of source ``key`` (None when no rule applies)."""
        return _swap_prefix(key, self.rules)

    def backward(self, key: str) -> str | None:
        """The source key of PoseBench network ``key`` (None when no rule applies)."""
        return _swap_prefix(key, tuple((b, a) for a, b in self.rules))


def _swap_prefix(key: str, rules: Sequence[tuple[str, str]]) -> str | None:
    matches = [(src, dst) for src, dst in rules if key.startswith(src)]
    if not matches:
        return None
    src, dst = max(matches, key=lambda rule: len(rule[0]))
    return dst + key[len(src):]


_RESNET = tuple((p, f"backbone.{p}") for p in ("conv1.", "bn1.", "layer1.", "layer2.", "layer3.", "layer4."))
NAMES: dict[tuple[str, str], PrefixNames | FunctionNames] = {
    ("msra-hrnet", "hrnet"): PrefixNames((("", ""),)),
    ("msra-resnet", "simplebaseline"): PrefixNames(_RESNET + (("deconv_layers.", "head.deconv."),
                                                              ("final_layer.", "head.final."))),
    ("mmpose", "hrnet"): PrefixNames((("backbone.", ""), ("head.final_layer.", "final_layer."))),
    ("mmpose", "simplebaseline"): PrefixNames((("backbone.", "backbone."), ("head.deconv_layers.", "head.deconv."),
                                               ("head.final_layer.", "head.final."))),
    ("mmpose", "deeppose"): PrefixNames((("backbone.", "stages.0.backbone."), ("head.fc.", "stages.0.head."))),
}
"""Source -> PoseBench network names (``net.`` stripped) per (format, method)."""

_BEARPAW_UNIT = {"bn1": "body.0", "conv1": "body.2", "bn2": "body.3", "conv2": "body.5", "bn3": "body.6",
                 "conv3": "body.8", "downsample.0": "skip"}
_BEARPAW_STEM = {"conv1.": "stem.0.", "bn1.": "stem.1.", "layer1.0.": "stem.3.", "layer2.0.": "stem.5.",
                 "layer3.0.": "stem.6."}
_BEARPAW_SLOT = {"0": "up", "1": "down", "2": "after", "3": "inner"}


def _bearpaw_unit(rest: str) -> str | None:
    """A bearpaw ``Bottleneck`` tensor name -> the ``models.hourglass.Residual`` one."""
    match = re.fullmatch(r"(bn1|conv1|bn2|conv2|bn3|conv3|downsample\.0)\.(\w+)", rest)
    return f"{_BEARPAW_UNIT[match[1]]}.{match[2]}" if match else None


def _bearpaw_forward(key: str) -> str | None:
    """bearpaw ``HourglassNet`` key -> ``StackedHourglassNet`` key: ``hg[s].hg[i]`` is the level of depth
    ``i + 1`` (``[0]`` up, ``[1]`` down, ``[2]`` after, ``[3]`` the innermost residual at ``i = 0``)."""
    for src, dst in _BEARPAW_STEM.items():
        if key.startswith(src):
            tail = key[len(src):]
            return dst + tail if src in ("conv1.", "bn1.") else _join(dst, _bearpaw_unit(tail))
    if match := re.fullmatch(r"hg\.(\d+)\.hg\.(\d)\.(\d)\.0\.(.+)", key):
        stack, level, slot, rest = match.groups()
        path = "inner." * (3 - int(level)) + _BEARPAW_SLOT[slot]
        return _join(f"hourglasses.{stack}.{path}.", _bearpaw_unit(rest))
    if match := re.fullmatch(r"res\.(\d+)\.0\.(.+)", key):
        return _join(f"features.{match[1]}.0.", _bearpaw_unit(match[2]))
    if match := re.fullmatch(r"fc\.(\d+)\.([01])\.(\w+)", key):
        return f"features.{match[1]}.1.{match[2]}.{match[3]}"
    heads = {"score": "heads", "fc_": "remap_features", "score_": "remap_heatmaps"}
    if (match := re.fullmatch(r"(score_|fc_|score)\.(\d+)\.(\w+)", key)):
        return f"{heads[match[1]]}.{match[2]}.{match[3]}"
    return None


def _join(prefix: str, rest: str | None) -> str | None:
    return None if rest is None else prefix + rest


@dataclasses.dataclass(frozen=True)
class FunctionNames:
    """Key renaming by a function (one direction only)."""

    forward: Callable[[str], str | None]

    def backward(self, key: str) -> str | None:
        """Not available: the format is import-only."""
        return None


NAMES[("bearpaw-hourglass", "hourglass")] = FunctionNames(_bearpaw_forward)
Names = PrefixNames | FunctionNames

HOURGLASS_MISMATCH = (
    "bearpaw/pytorch-pose's HourglassNet has another stem than PoseBench's hourglass (which follows "
    "umich-vl/pose-hg-train hg.lua): bearpaw builds layer2 = Bottleneck(128 -> 256, 128 wide, 1x1 projection) and "
    "layer3 = Bottleneck(256 -> 256, 128 wide) because _make_residual(block, self.inplanes, 1) reads inplanes after "
    "layer1 set it to 128, where PoseBench has stem.5 = Residual(128 -> 128, 64 wide) and stem.6 = Residual(128 -> "
    "256, 128 wide, 1x1 projection); everything after the stem matches. It also feeds mean-subtracted, unscaled "
    "pixels (pose/utils/transforms.py color_normalize), not ImageNet-normalised ones"
)
MISMATCH_NOTES: dict[str, str] = {"bearpaw-hourglass": HOURGLASS_MISMATCH}

MMPOSE_NOT_IMPORTABLE: dict[str, str] = {
    "backbone.cpm_stages.": (
        "mmpose's CPM (mmpose/models/backbones/cpm.py) is not PoseBench's cpm: it puts BatchNorm after every "
        "convolution, outputs K maps without the background map, pads its pooling and takes no centre map"),
    "backbone.hourglass_modules.": (
        "mmpose's HourglassNet (hourglass52, mmpose/models/backbones/hourglass.py) is the CornerNet hourglass: "
        "BasicBlock ResLayers, five downsamplings with 256-512 channels, a 3x3 out_conv per stack; PoseBench's "
        "hourglass is Newell's (pre-activation bottlenecks, four poolings, 256 channels)"),
}

# Per method: the PoseBench network's heatmap / coordinate layer (joints = out-features / divisor) and first conv + BN.
OUTPUT_LAYER: dict[str, tuple[str, int]] = {"hrnet": ("final_layer.weight", 1),
                                            "simplebaseline": ("head.final.weight", 1),
                                            "deeppose": ("stages.0.head.weight", 2), "hourglass": ("heads.0.weight", 1)}
FIRST_LAYER: dict[str, tuple[str, str]] = {"hrnet": ("conv1", "bn1"),
                                           "simplebaseline": ("backbone.conv1", "backbone.bn1"),
                                           "deeppose": ("stages.0.backbone.conv1", "stages.0.backbone.bn1")}
FORMAT_METHODS: dict[str, tuple[str, ...]] = {"msra-hrnet": ("hrnet",), "msra-resnet": ("simplebaseline",),
                                              "mmpose": ("hrnet", "simplebaseline", "deeppose"),
                                              "bearpaw-hourglass": ("hourglass",)}
# The input each format's networks were trained on (COLOR_RGB of the official configs; mmpose bgr_to_rgb=True).
DEFAULT_INPUT_ORDER: dict[str, str] = {"msra-hrnet": "rgb", "msra-resnet": "bgr", "mmpose": "rgb",
                                       "bearpaw-hourglass": "rgb"}


# ----------------------------------------------------------------------------------------------- reading


def file_sha256(path: Path) -> str:
    """sha256 hex of the file at ``path``."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _numpy_globals() -> list[Any]:
    """numpy array and dtype reconstruction, allowed in ``weights_only`` loads (mmengine ``meta`` holds arrays)."""
    core = np._core.multiarray  # type: ignore[attr-defined]  # numpy 2's _core is not in numpy's stubs
    names = [(getattr(core, name), f"numpy.{package}.multiarray.{name}")
             for name in ("_reconstruct", "scalar") for package in ("core", "_core")]
    return names + [np.ndarray, np.dtype] + [type(np.dtype(code)) for code in "?bhilqBHILQefdgFDGSUV"]


def load_weights_file(path: Path, trust_pickle: bool = False) -> Any:
    """The object stored in ``path``: tensors, plain containers and numpy arrays only, unless ``trust_pickle``."""
    if not Path(path).is_file():
        raise WeightsError(f"{path}: no such weights file")
    try:
        with torch.serialization.safe_globals(_numpy_globals()):
            return torch.load(path, map_location="cpu", weights_only=not trust_pickle)
    except pickle.UnpicklingError as error:
        reason = next((line.strip() for line in str(error).splitlines() if "GLOBAL" in line), str(error)[:200])
        raise WeightsError(f"{path}: holds Python objects beyond tensors and plain containers ({reason}); if you "
                           "trust where the file comes from, pass --trust-pickle") from None
    except Exception as error:  # noqa: BLE001 - any reader failure means the same to the user
        raise WeightsError(f"{path}: cannot read it as a torch file ({type(error).__name__}: {error})") from None


def state_dict_of(loaded: Any, where: str) -> dict[str, torch.Tensor]:
    """The tensors of a loaded file: ``loaded['state_dict']`` when present, else ``loaded``; a ``module.``
    prefix on every key (DataParallel) is stripped."""
    state = loaded.get("state_dict", loaded) if isinstance(loaded, Mapping) else loaded
    if not isinstance(state, Mapping) or not state:
        raise WeightsError(f"{where}: no state dict (expected a mapping of names to tensors, or one under "
                           "'state_dict')")
    bad = [str(key) for key, value in state.items() if not isinstance(value, torch.Tensor)]
    if bad:
        raise WeightsError(f"{where}: entries that are not tensors: {', '.join(bad[:5])}")
    prefixed = [key.startswith("module.") for key in state]
    if any(prefixed) and not all(prefixed):
        odd = next(key for key in state if not key.startswith("module."))
        raise WeightsError(f"{where}: some keys carry the DataParallel prefix 'module.' and some do not (e.g. {odd})")
    return {key[len("module."):] if all(prefixed) else key: value for key, value in state.items()}


def detect_format(keys: Collection[str], where: str = "weights") -> str:
    """The format of a state dict, told from its key names (``FORMATS``)."""
    if any(key.startswith(("backbone.", "head.", "keypoint_head.")) for key in keys):
        return "mmpose"
    if any(key.startswith("hg.") for key in keys) and any(key.startswith("score.") for key in keys):
        return "bearpaw-hourglass"
    if "deconv_layers.0.weight" in keys and any(key.startswith("layer4.") for key in keys):
        return "msra-resnet"
    if "final_layer.weight" in keys and any(key.startswith("stage4.") for key in keys):
        return "msra-hrnet"
    shown = ", ".join(sorted(keys)[:6])
    raise WeightsError(f"{where}: cannot tell the format from its keys (first: {shown}); pass --format, one of "
                       f"{', '.join(FORMATS)}")


def normalise_mmpose(state: Mapping[str, torch.Tensor], where: str) -> dict[str, torch.Tensor]:
    """``keypoint_head.`` (mmpose 0.x) read as ``head.``; ``data_preprocessor.mean/std`` checked against the
    ImageNet normalisation PoseBench feeds and then dropped, as mmpose does."""
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if key in ("data_preprocessor.mean", "data_preprocessor.std"):
            statistic = IMAGENET_MEAN if key.endswith("mean") else IMAGENET_STD
            expected = torch.tensor(statistic, dtype=torch.float64) * 255.0
            if value.numel() != 3 or not torch.allclose(value.double().flatten(), expected, atol=1e-3):
                raise WeightsError(f"{where}: {key} is {value.flatten().tolist()}, expected {expected.tolist()} "
                                   "(the ImageNet normalisation PoseBench feeds)")
            continue
        out["head." + key[len("keypoint_head."):] if key.startswith("keypoint_head.") else key] = value
    return out


def mmpose_method(keys: Collection[str], where: str) -> str:
    """The PoseBench method of an mmpose state dict: HRNet, SimpleBaseline or DeepPose ResNet regression."""
    if any(key.startswith("backbone.stage4.") for key in keys):
        return "hrnet"
    if any(key.startswith("head.deconv_layers.") for key in keys):
        return "simplebaseline"
    if "head.fc.weight" in keys:
        return "deeppose"
    for prefix, reason in MMPOSE_NOT_IMPORTABLE.items():
        if any(key.startswith(prefix) for key in keys):
            raise WeightsError(f"{where}: not importable: {reason}")
    heads = sorted({".".join(key.split(".")[:2]) for key in keys if key.startswith("head.")})
    raise WeightsError(f"{where}: an mmpose model PoseBench has no counterpart for (head keys "
                       f"{', '.join(heads) or 'none'}); importable: HRNet and SimpleBaseline heatmap models, DeepPose "
                       "ResNet regression")


# ----------------------------------------------------------------------------------------------- variants


def _resnet_depth(keys: Collection[str], prefix: str) -> int | None:
    """ResNet depth from the block counts of ``layer3`` and the presence of ``conv3`` (bottleneck)."""
    blocks = {key[len(prefix):].split(".")[1] for key in keys if key.startswith(prefix + "layer3.")}
    bottleneck = f"{prefix}layer1.0.conv3.weight" in keys
    depths = {(True, 6): 50, (True, 23): 101, (True, 36): 152, (False, 2): 18, (False, 6): 34}
    return depths.get((bottleneck, len(blocks)))


def infer_variant(fmt: str, method: str, state: Mapping[str, torch.Tensor], where: str) -> str:
    """The registered PoseBench variant a state dict of ``method`` fits (HRNet width, ResNet depth, stacks)."""
    from models import VARIANTS

    if method == "hrnet":
        name = f"hrnet-w{output_weight(state, NAMES[(fmt, method)], method, where).shape[1]}"
    elif method == "hourglass":
        name = f"hourglass-{len({key.split('.')[1] for key in state if key.startswith('hg.')})}"
    else:
        depth = _resnet_depth(state, "" if fmt == "msra-resnet" else "backbone.")
        if depth is None:
            raise WeightsError(f"{where}: cannot tell the ResNet depth from its layer1 / layer3 keys; pass --variant")
        name = f"simplebaseline-res{depth}" if method == "simplebaseline" else f"deeppose-res{depth}"
    if name not in VARIANTS:
        same = sorted(v for v, spec in VARIANTS.items() if spec.method == method)
        raise WeightsError(f"{where}: it looks like {name}, which PoseBench does not register; {method} variants: "
                           f"{', '.join(same)} (pass --variant if one of them fits)")
    return name


def file_input_size(path: Path) -> tuple[int, int] | None:
    """``(H, W)`` from the last ``<H>x<W>`` in a file name (``pose_hrnet_w32_256x192.pth``), else None."""
    found = re.findall(r"(\d{2,4})x(\d{2,4})", Path(path).name)
    return (int(found[-1][0]), int(found[-1][1])) if found else None


def dataset_for(num_joints: int, dataset: str | None, where: str) -> str:
    """``coco`` for 17 joints, ``mpii`` for 16; a given ``dataset`` must agree with the joint count."""
    from datamodules.datasets import dataset_skeleton

    counts = {name: dataset_skeleton(name).num_joints for name in ("coco", "mpii")}
    if dataset is not None:
        if dataset not in counts:
            raise WeightsError(f"unknown dataset {dataset!r}; valid: {', '.join(counts)}")
        if counts[dataset] != num_joints:
            raise WeightsError(f"{where}: its output layer has {num_joints} joints, {dataset} has {counts[dataset]}")
        return dataset
    for name, count in counts.items():
        if count == num_joints:
            return name
    raise WeightsError(f"{where}: {num_joints} output joints match neither COCO (17) nor MPII (16); pass --dataset")


# ----------------------------------------------------------------------------------------------- mapping


def network_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The plain network's tensors of a PoseBench LightningModule (``net.`` keys, prefix stripped)."""
    return {key[4:]: value for key, value in model.state_dict().items() if key.startswith("net.")}


def map_to_network(source: Mapping[str, torch.Tensor], names: Names, template: Mapping[str, torch.Tensor], where: str,
                   note: str = "") -> tuple[dict[str, torch.Tensor], list[str]]:
    """``source`` renamed to the network's keys with every name and shape checked against ``template``.

    Returns the tensors and the template keys filled in (absent BatchNorm ``num_batches_tracked``, 0).
    Every problem (unmapped, unknown, misshaped, duplicate or missing key) is collected, then raised at once.
    """
    mapped: dict[str, torch.Tensor] = {}
    problems: list[str] = []
    claimed: set[str] = set()
    for key, value in source.items():
        target = names.forward(key)
        problem = _mapping_problem(key, value, target, template, claimed)
        if problem is not None:
            problems.append(problem)
        else:
            assert target is not None  # _mapping_problem reports an unmapped key
            mapped[target] = value.detach().to(template[target].dtype)
        if target is not None:
            claimed.add(target)
    filled = [key for key in template if key not in claimed and key.endswith("num_batches_tracked")]
    mapped.update({key: template[key].clone() for key in filled})
    problems += [_missing(key, names.backward(key), template[key]) for key in template
                 if key not in claimed and key not in mapped]
    if problems:
        shown = "\n  ".join(problems[:_SHOWN_PROBLEMS])
        more = f"\n  ... and {len(problems) - _SHOWN_PROBLEMS} more" if len(problems) > _SHOWN_PROBLEMS else ""
        raise WeightsError(f"{where}: {len(problems)} key problem(s):\n  {shown}{more}" + (f"\n{note}" if note else ""))
    return mapped, filled


def _missing(key: str, source: str | None, expected: torch.Tensor) -> str:
    shape = tuple(expected.shape)
    if source is None:
        return f"net.{key}: missing, no key of the file maps there (expected shape {shape})"
    return f"{source}: missing (PoseBench net.{key}, expected shape {shape})"


def _mapping_problem(key: str, value: torch.Tensor, target: str | None, template: Mapping[str, torch.Tensor],
                     mapped: Collection[str]) -> str | None:
    if target is None:
        return f"{key}: no PoseBench counterpart (unmapped key)"
    if target not in template:
        return f"{key} -> net.{target}: the PoseBench network has no such tensor"
    if tuple(value.shape) != tuple(template[target].shape):
        return f"{key} -> net.{target}: expected shape {tuple(template[target].shape)}, got {tuple(value.shape)}"
    if target in mapped:
        return f"{key} -> net.{target}: another source key already maps there"
    return None


def map_from_network(network: Mapping[str, torch.Tensor], names: PrefixNames, where: str) -> dict[str, torch.Tensor]:
    """PoseBench network tensors renamed back to a source layout (every key must have a name there)."""
    out = {}
    for key, value in network.items():
        source = names.backward(key)
        if source is None:
            raise WeightsError(f"{where}: net.{key} has no name in that layout")
        out[source] = value.detach().clone()
    return out


# ----------------------------------------------------------------------------------------------- conversions


def _input_affine() -> tuple[torch.Tensor, torch.Tensor]:
    """``(scale, offset)`` ``(3,)`` with ``x_bgr[c] = scale[c] * x_rgb[2 - c] + offset[c]`` for normalised inputs."""
    mean, std = torch.tensor(IMAGENET_MEAN, dtype=torch.float64), torch.tensor(IMAGENET_STD, dtype=torch.float64)
    return std.flip(0) / std, (mean.flip(0) - mean) / std


@torch.no_grad()
def convert_input_order(network: dict[str, torch.Tensor], method: str, to_rgb: bool) -> None:
    """Make a first convolution trained on BGR input read PoseBench's RGB input (``to_rgb``) or back.

    Inputs are normalised per channel with the RGB mean/std in both, so ``x_bgr[c] = s[c] x_rgb[2 - c] + o[c]``:
    the convolution's input channels are reversed and scaled by ``s``, and the constant ``sum W o``
    moves into the following BN's running mean. Exact wherever the convolution sees no zero padding.
    """
    conv, bn = FIRST_LAYER[method]
    scale, offset = _input_affine()
    weight = network[f"{conv}.weight"].double()
    mean = network[f"{bn}.running_mean"].double()
    if to_rgb:
        constant = (weight * offset[None, :, None, None]).sum(dim=(1, 2, 3))
        new_weight, new_mean = (weight * scale[None, :, None, None]).flip(1), mean - constant
    else:
        new_weight = weight.flip(1) / scale[None, :, None, None]
        new_mean = mean + (new_weight * offset[None, :, None, None]).sum(dim=(1, 2, 3))
    network[f"{conv}.weight"] = new_weight.to(network[f"{conv}.weight"].dtype)
    network[f"{bn}.running_mean"] = new_mean.to(network[f"{bn}.running_mean"].dtype)


def regression_offset(input_size: Sequence[int], convention: str, num_joints: int) -> torch.Tensor:
    """``(2K,)`` ``centre / size`` of PoseBench's regression codec: mmpose's ``x / W`` minus PoseBench's value."""
    from models.codecs import RegressionCodec

    codec = RegressionCodec((int(input_size[0]), int(input_size[1])), convention)
    if codec.size != (float(input_size[1]), float(input_size[0])):
        raise WeightsError(f"RegressionCodec size {codec.size} is not the input size (W, H); cannot convert the fc")
    per_joint = torch.tensor([codec.centre[0] / codec.size[0], codec.centre[1] / codec.size[1]], dtype=torch.float64)
    return per_joint.repeat(num_joints)


@torch.no_grad()
def shift_regression_bias(network: dict[str, torch.Tensor], offset: torch.Tensor) -> None:
    """Subtract ``offset`` ``(2K,)`` from the DeepPose output layer's bias (add it with ``-offset``)."""
    key = "stages.0.head.bias"
    network[key] = (network[key].double() - offset).to(network[key].dtype)


# ----------------------------------------------------------------------------------------------- import


@dataclasses.dataclass
class Imported:
    """An imported model: the LightningModule with the weights and the checkpoint's ``posebench`` entry."""

    model: Any
    meta: dict[str, Any]


@dataclasses.dataclass(frozen=True)
class ImportRequest:
    """What ``import_weights`` is asked for; None = told from the file (keys, shapes, name) or the format."""

    variant: str | None = None
    format: str | None = None
    dataset: str | None = None
    input_size: tuple[int, int] | None = None
    convention: str | None = None
    input_order: str | None = None
    trust_pickle: bool = False


@dataclasses.dataclass(frozen=True)
class ImportPlan:
    """What a file is and becomes: its format, the PoseBench method and variant, dataset, input, grid."""

    format: str
    method: str
    variant: str
    dataset: str
    input_size: tuple[int, int]
    convention: str
    input_order: str


def plan_import(path: Path, state: dict[str, torch.Tensor],
                request: ImportRequest) -> tuple[ImportPlan, dict[str, torch.Tensor]]:
    """The ``ImportPlan`` of the state dict read from ``path`` (and the state, mmpose names normalised)."""
    where = str(path)
    fmt = request.format or detect_format(state, where)
    if fmt not in FORMATS:
        raise WeightsError(f"unknown format {fmt!r}; valid: {', '.join(FORMATS)}")
    if fmt == "mmpose":
        state = normalise_mmpose(state, where)
    method = mmpose_method(state, where) if fmt == "mmpose" else FORMAT_METHODS[fmt][0]
    variant = _checked_variant(request.variant, fmt, method, state, where)
    dataset = dataset_for(_output_joints(state, NAMES[(fmt, method)], method, where), request.dataset, where)
    input_size = request.input_size or file_input_size(path) or preset_input_size(request.variant, dataset)
    if input_size is None:
        raise WeightsError(f"{where}: its name gives no <H>x<W> input size (nor does a --variant preset for "
                           f"{dataset}); pass --input-size H W")
    convention = request.convention or ("udp" if fmt == "mmpose" and "udp" in path.name.lower() else "msra")
    order = request.input_order or DEFAULT_INPUT_ORDER[fmt]
    plan = ImportPlan(fmt, method, variant, dataset, (int(input_size[0]), int(input_size[1])), convention, order)
    return plan, state


def preset_input_size(variant: str | None, dataset: str) -> tuple[int, int] | None:
    """The input size of a ``--variant`` given by name whose preset is for ``dataset``'s skeleton, else None."""
    from datamodules.datasets import dataset_skeleton
    from models import VARIANTS

    preset = VARIANTS.get(variant) if variant else None
    if preset is None or preset.kwargs.get("num_joints") != dataset_skeleton(dataset).num_joints:
        return None
    return preset.input_size


def import_weights(path: Path, request: ImportRequest = ImportRequest()) -> Imported:
    """Read ``path``, map it onto the PoseBench network and return the model with its checkpoint metadata."""
    path = Path(path)
    plan, state = plan_import(path, state_dict_of(load_weights_file(path, request.trust_pickle), str(path)), request)
    model = build_model(plan.variant, plan.dataset, plan.input_size, plan.convention)
    network, filled = map_to_network(state, NAMES[(plan.format, plan.method)], network_state(model),
                                     f"{path} as {plan.variant} ({plan.format})", MISMATCH_NOTES.get(plan.format, ""))
    conversion = convert_imported(network, plan.format, plan.method, plan.input_order, plan.input_size,
                                  plan.convention, model.num_joints)
    # assign=True: the mapped tensors become the parameters (no second copy of a large network).
    model.net.load_state_dict(network, strict=True, assign=True)
    meta = checkpoint_meta(plan.variant, plan.dataset, plan.input_size, plan.convention, plan.method)
    meta["imported"] = {"source_file": path.name, "sha256": file_sha256(path), "format": plan.format,
                        "convention": plan.convention, "dataset": plan.dataset, "input_order": plan.input_order,
                        "conversion": conversion, "filled": filled, "source_tensors": len(state)}
    return Imported(model, meta)


def _checked_variant(variant: str | None, fmt: str, method: str, state: Mapping[str, torch.Tensor], where: str) -> str:
    from benchmark.train import RunError, method_of

    if variant is None:
        return infer_variant(fmt, method, state, where)
    try:
        given = method_of(variant)
    except RunError as error:
        raise WeightsError(str(error)) from None
    if given != method:
        raise WeightsError(f"{where}: holds a {method} model ({fmt}); --variant {variant} is a {given} variant")
    return variant


def output_weight(state: Mapping[str, torch.Tensor], names: Names, method: str, where: str) -> torch.Tensor:
    """The weight of the heatmap / coordinate output layer (``OUTPUT_LAYER``) in a source state dict."""
    layer = OUTPUT_LAYER[method][0]
    found = [value for key, value in state.items() if names.forward(key) == layer]
    if not found:
        raise WeightsError(f"{where}: no output layer (PoseBench net.{layer}) among its keys")
    return found[0]


def _output_joints(state: Mapping[str, torch.Tensor], names: Names, method: str, where: str) -> int:
    return int(output_weight(state, names, method, where).shape[0]) // OUTPUT_LAYER[method][1]


def convert_imported(network: dict[str, torch.Tensor], fmt: str, method: str, order: str,
                     input_size: Sequence[int], convention: str, num_joints: int) -> list[str]:
    """Apply the format's value conversions in place; returns what was done, for the checkpoint's provenance."""
    if order not in INPUT_ORDERS:
        raise WeightsError(f"unknown input order {order!r}; valid: {', '.join(INPUT_ORDERS)}")
    done = []
    if order == "bgr":
        convert_input_order(network, method, to_rgb=True)
        done.append("bgr->rgb: first conv input channels reversed and rescaled, offset folded into its BN running_mean")
    if (fmt, method) == ("mmpose", "deeppose"):
        offset = regression_offset(input_size, convention, num_joints)
        shift_regression_bias(network, offset)
        done.append(f"regression bias minus codec centre/size {offset[:2].tolist()} per joint")
    return done


def build_model(variant: str, dataset: str, input_size: Sequence[int], convention: str) -> Any:
    """The variant's LightningModule for ``dataset``'s skeleton, without ImageNet weights."""
    import models
    from datamodules.datasets import dataset_skeleton
    from models.registry import accepted_kwargs

    skeleton = dataset_skeleton(dataset)
    kwargs: dict[str, Any] = {"num_joints": skeleton.num_joints, "flip_pairs": [list(p) for p in skeleton.flip_pairs],
                              "input_size": [int(input_size[0]), int(input_size[1])], "convention": convention}
    if "pretrained" in accepted_kwargs(models.METHODS[models.VARIANTS[variant].method]):
        kwargs["pretrained"] = False
    try:
        return models.build(variant, **kwargs)
    except ValueError as error:  # the model rejects the input size or joints asked for
        raise WeightsError(f"cannot build {variant} for {dataset} at input size {list(input_size)}: {error}") from None


def checkpoint_meta(variant: str, dataset: str, input_size: tuple[int, int], convention: str,
                    method: str) -> dict[str, Any]:
    """The ``posebench`` checkpoint entry ``benchmark.train`` writes: variant, method, resolved run config."""
    from benchmark.config import load_config, to_dict
    from models import METHODS
    from models.registry import accepted_kwargs

    overrides = [f"data={dataset}", f"method={variant}", f"model.input_size=[{input_size[0]},{input_size[1]}]",
                 f"model.convention={convention}", "model.flip_test=true"]
    cfg = load_config(overrides + ([] if method == "deeppose" else ["model.decoder=quarter"]))
    if "pretrained" in accepted_kwargs(METHODS[method]):
        cfg.model.kwargs = {**cfg.model.kwargs, "pretrained": False}
    return {"variant": variant, "method": method, "config": to_dict(cfg)}


def write_checkpoint(imported: Imported, out: Path) -> Path:
    """Write ``imported`` as a PoseBench checkpoint (``weights_only``-loadable) at ``out``, atomically."""
    import pytorch_lightning as pl

    from benchmark.train import CHECKPOINT_KEY

    model = imported.model
    payload = {"state_dict": model.state_dict(), "hyper_parameters": dict(model.hparams), "epoch": 0,
               "global_step": 0, "pytorch-lightning_version": pl.__version__, CHECKPOINT_KEY: imported.meta}
    return _atomic_save(payload, Path(out))


def _atomic_save(payload: Any, out: Path) -> Path:
    return atomic_write(out, lambda stream: torch.save(payload, stream))


def default_output(path: Path) -> Path:
    """``outputs/imported/<file name without .pth/.pth.tar/.pt>.ckpt``."""
    stem = re.sub(r"(\.pth\.tar|\.pth|\.pt|\.tar)$", "", Path(path).name)
    return Path("outputs") / "imported" / f"{stem}.ckpt"


# ----------------------------------------------------------------------------------------------- export


def export_state_dict(checkpoint: Path, layout: str = "posebench",
                      input_order: str | None = None) -> dict[str, torch.Tensor]:
    """The plain network state dict of a PoseBench checkpoint in ``layout`` (``LAYOUTS``).

    ``posebench``: the network's own keys (``net.`` stripped; PoseBench's RGB input); ``official``: the HRNet /
    SimpleBaseline code's names, for SimpleBaseline with BGR input unless ``input_order='rgb'``;
    ``mmpose``: ``backbone.*`` / ``head.*`` (RGB input; DeepPose's bias in mmpose's ``x / W`` coordinates).
    """
    from benchmark.train import CHECKPOINT_KEY, RunError, load_checkpoint

    try:
        loaded = load_checkpoint(Path(checkpoint))
    except RunError as error:
        raise WeightsError(str(error)) from None
    meta = loaded.get(CHECKPOINT_KEY)
    if not isinstance(meta, dict) or "state_dict" not in loaded:
        raise WeightsError(f"{checkpoint}: not a PoseBench checkpoint (no '{CHECKPOINT_KEY}' entry or state_dict)")
    network = {key[4:]: value for key, value in loaded["state_dict"].items() if key.startswith("net.")}
    if layout not in LAYOUTS:
        raise WeightsError(f"unknown layout {layout!r}; valid: {', '.join(LAYOUTS)}")
    if layout == "posebench":
        return network
    return _to_layout(network, meta, layout, input_order, f"{checkpoint} ({meta['variant']}) in the {layout} layout")


LAYOUT_FORMATS: dict[tuple[str, str], str] = {
    ("official", "hrnet"): "msra-hrnet", ("official", "simplebaseline"): "msra-resnet",
    **{("mmpose", method): "mmpose" for method in FORMAT_METHODS["mmpose"]},
}
"""The format whose names a (layout, method) export uses."""


def _to_layout(network: dict[str, torch.Tensor], meta: Mapping[str, Any], layout: str, input_order: str | None,
               where: str) -> dict[str, torch.Tensor]:
    """``network`` converted (input order, regression bias) and renamed for ``layout``."""
    method = meta["method"]
    fmt = LAYOUT_FORMATS.get((layout, method))
    if fmt is None:
        offered = sorted(m for lay, m in LAYOUT_FORMATS if lay == layout)
        raise WeightsError(f"{where}: no {layout} layout for {method} (available for {', '.join(offered)})")
    network = dict(network)
    order = input_order or DEFAULT_INPUT_ORDER[fmt]
    if order not in INPUT_ORDERS:
        raise WeightsError(f"unknown input order {order!r}; valid: {', '.join(INPUT_ORDERS)}")
    if order == "bgr":
        convert_input_order(network, method, to_rgb=False)
    if method == "deeppose":
        _unshift_regression(network, meta, where)
    names = NAMES[(fmt, method)]
    assert isinstance(names, PrefixNames), f"{fmt} exports by prefix"  # LAYOUT_FORMATS names prefix formats only
    return map_from_network(network, names, where)


def _unshift_regression(network: dict[str, torch.Tensor], meta: Mapping[str, Any], where: str) -> None:
    """Back to mmpose's ``x / W`` output (``shift_regression_bias`` with the opposite sign)."""
    from models import VARIANTS

    if "stages.0.head.bias" not in network or any(key.startswith("stages.1.") for key in network):
        raise WeightsError(f"{where}: mmpose's layout holds one ResNet regressor (deeppose-res50), not this cascade")
    model_cfg = meta["config"]["model"]
    size = model_cfg.get("input_size") or VARIANTS[meta["variant"]].input_size
    # Checkpoints older than the pixel-grid option were trained on PoseBench's aligned grid.
    convention = model_cfg.get("convention", "aligned")
    joints = network["stages.0.head.bias"].numel() // 2
    shift_regression_bias(network, -regression_offset(size, convention, joints))


def write_state_dict(state: Mapping[str, torch.Tensor], out: Path) -> Path:
    """Save a plain state dict (loads with ``torch.load(..., weights_only=True)``), atomically."""
    return _atomic_save({key: value.contiguous() for key, value in state.items()}, Path(out))


# ---- command line


def add_import_arguments(parser: argparse.ArgumentParser) -> None:
    """``import-weights FILE [--variant ...]`` (docs/checkpoints.md)."""
    parser.add_argument("file", type=Path, help="e.g. pose_hrnet_w32_256x192.pth (HRNet model zoo)")
    parser.add_argument("--variant", help="registry variant (default: told from the keys, e.g. hrnet-w32)")
    parser.add_argument("--format", choices=list(FORMATS), help="key layout (default: told from the keys)")
    parser.add_argument("--dataset", choices=["coco", "mpii"], help="default: 17 output joints -> coco, 16 -> mpii")
    parser.add_argument("--input-size", type=int, nargs=2, metavar=("H", "W"),
                        help="default: <H>x<W> in the file name, else the --variant preset (same dataset)")
    parser.add_argument("--convention", choices=["msra", "udp", "aligned"],
                        help="pixel grid it was trained under (default msra; udp for mmpose files named *udp*)")
    parser.add_argument("--input-order", choices=list(INPUT_ORDERS),
                        help="channel order it was trained on (default: bgr for msra-resnet, else rgb)")
    parser.add_argument("--out", type=Path, help="checkpoint to write (default outputs/imported/<name>.ckpt)")
    parser.add_argument("--trust-pickle", action="store_true",
                        help="load Python objects beyond tensors and containers (only for files from a trusted source)")


def run_import(args: argparse.Namespace) -> int:
    """Import the file, write the checkpoint and say what was converted."""
    request = ImportRequest(variant=args.variant, format=args.format, dataset=args.dataset,
                            input_size=tuple(args.input_size) if args.input_size else None,
                            convention=args.convention, input_order=args.input_order, trust_pickle=args.trust_pickle)
    imported = import_weights(args.file, request)
    out = write_checkpoint(imported, args.out or default_output(args.file))
    info, model = imported.meta["imported"], imported.meta["config"]["model"]
    log.info(f"wrote {out}: {imported.meta['variant']} for {info['dataset']} at {model['input_size']}, convention "
             f"{info['convention']}, from {info['format']} ({info['source_tensors']} tensors, "
             f"sha256 {info['sha256'][:12]})")
    for line in info["conversion"]:
        log.info(f"  converted: {line}")
    if info["filled"]:
        log.info(f"  filled in (absent from the file, set to 0): {len(info['filled'])} BatchNorm num_batches_tracked")
    return 0


def add_export_arguments(parser: argparse.ArgumentParser) -> None:
    """``export-weights CHECKPOINT [--layout ...]``."""
    parser.add_argument("checkpoint", type=Path, help="a PoseBench checkpoint (trained or imported)")
    parser.add_argument("--out", type=Path, help="file to write (default <checkpoint>.<layout>.pth)")
    parser.add_argument("--layout", choices=list(LAYOUTS), default="posebench",
                        help="key names: PoseBench's network, the HRNet/SimpleBaseline code's, or mmpose's")
    parser.add_argument("--input-order", choices=list(INPUT_ORDERS),
                        help="input the exported first layer expects (default: bgr for official SimpleBaseline, "
                             "else rgb)")


def run_export(args: argparse.Namespace) -> int:
    """Export the checkpoint's network in the layout asked."""
    state = export_state_dict(args.checkpoint, args.layout, args.input_order)
    out = write_state_dict(state, args.out or args.checkpoint.with_suffix(f".{args.layout}.pth"))
    log.info(f"wrote {out}: {len(state)} tensors, {args.layout} layout")
    return 0
