"""benchmark/commands/weights.py on state dicts that carry exactly the official key names and shapes.

The key -> shape tables are generated below from a re-statement of each official model definition
(names, layer order, shapes), for any width or depth, so the tiny PoseBench variants are covered with
the official naming and the paper sizes with the official tables:

- HRNet: leoxiaobin/deep-high-resolution-net.pytorch ``lib/models/pose_hrnet.py`` (``PoseHighResolutionNet``,
  ``HighResolutionModule``, ``_make_transition_layer``, ``_make_fuse_layers``; ``None`` entries hold no tensors).
- SimpleBaseline: microsoft/human-pose-estimation.pytorch ``lib/models/pose_resnet.py`` (``PoseResNet``:
  torchvision ResNet names, ``deconv_layers`` = [ConvTranspose2d(4x4, no bias), BN, ReLU] x 3, ``final_layer``).
- mmpose 1.3.2: ``backbones/hrnet.py``, ``backbones/resnet.py`` (same names under ``backbone.``),
  ``heads/heatmap_heads/heatmap_head.py`` (``head.deconv_layers``, ``head.final_layer``),
  ``heads/regression_heads/regression_head.py`` (``head.fc = Linear(in, K * 2)``); 0.x files: ``keypoint_head.``.
- bearpaw/pytorch-pose ``pose/models/hourglass.py`` (``HourglassNet``: ``conv1``, ``bn1``, ``layer1..3``,
  ``hg[s].hg[i][j]``, ``res``, ``fc``, ``score``, ``fc_``, ``score_``; pre-activation ``Bottleneck`` with biases),
  saved under DataParallel (``example/main.py``).
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import models
from benchmark.cli import main
from benchmark.commands import weights as W
from benchmark.train import CHECKPOINT_KEY, evaluate, load_checkpoint
from datamodules.synthpose import generate_synthpose

Shapes = dict[str, tuple[int, ...]]


# ----------------------------------------------------------------------------- official key schemes (facts)


def bn(name: str, channels: int) -> Shapes:
    return {f"{name}.{p}": (channels,) for p in ("weight", "bias", "running_mean", "running_var")} | {
        f"{name}.num_batches_tracked": ()}


def conv(name: str, out: int, inp: int, kernel: int, bias: bool = False) -> Shapes:
    return {f"{name}.weight": (out, inp, kernel, kernel)} | ({f"{name}.bias": (out,)} if bias else {})


def official_hrnet(joints: int, width: int = 32, stem: int = 64, stage1: int = 64, stage1_blocks: int = 4,
                   modules: tuple[int, ...] = (1, 4, 3), blocks: int = 4) -> Shapes:
    """pose_hrnet.py: stem, layer1 (Bottleneck), transitions 1-3, stages 2-4 (BasicBlock), final_layer."""
    keys = conv("conv1", stem, 3, 3) | bn("bn1", stem) | conv("conv2", stem, stem, 3) | bn("bn2", stem)
    inplanes = stem
    for b in range(stage1_blocks):
        unit = f"layer1.{b}"
        keys |= conv(f"{unit}.conv1", stage1, inplanes, 1) | bn(f"{unit}.bn1", stage1)
        keys |= conv(f"{unit}.conv2", stage1, stage1, 3) | bn(f"{unit}.bn2", stage1)
        keys |= conv(f"{unit}.conv3", 4 * stage1, stage1, 1) | bn(f"{unit}.bn3", 4 * stage1)
        if inplanes != 4 * stage1:
            keys |= conv(f"{unit}.downsample.0", 4 * stage1, inplanes, 1) | bn(f"{unit}.downsample.1", 4 * stage1)
        inplanes = 4 * stage1
    previous = [4 * stage1]
    for stage in (2, 3, 4):
        widths = [width * 2 ** b for b in range(stage)]
        keys |= _transition(f"transition{stage - 1}", previous, widths)
        for m in range(modules[stage - 2]):
            keys |= _hr_module(f"stage{stage}.{m}", widths, blocks, stage < 4 or m < modules[stage - 2] - 1)
        previous = widths
    return keys | conv("final_layer", joints, width, 1, bias=True)


def _transition(name: str, previous: list[int], current: list[int]) -> Shapes:
    keys: Shapes = {}
    for i, width in enumerate(current):
        if i < len(previous) and previous[i] != width:
            keys |= conv(f"{name}.{i}.0", width, previous[i], 3) | bn(f"{name}.{i}.1", width)
        elif i >= len(previous):
            steps = i + 1 - len(previous)
            for j in range(steps):
                out = width if j == steps - 1 else previous[-1]
                keys |= conv(f"{name}.{i}.{j}.0", out, previous[-1], 3) | bn(f"{name}.{i}.{j}.1", out)
    return keys


def _hr_module(name: str, widths: list[int], blocks: int, multi_scale: bool) -> Shapes:
    keys: Shapes = {}
    for b, c in enumerate(widths):
        for k in range(blocks):
            unit = f"{name}.branches.{b}.{k}"
            keys |= conv(f"{unit}.conv1", c, c, 3) | bn(f"{unit}.bn1", c) | conv(f"{unit}.conv2", c, c, 3) | bn(
                f"{unit}.bn2", c)
    for i in range(len(widths) if multi_scale else 1):
        for j in range(len(widths)):
            if j > i:
                keys |= conv(f"{name}.fuse_layers.{i}.{j}.0", widths[i], widths[j], 1) | bn(
                    f"{name}.fuse_layers.{i}.{j}.1", widths[i])
            for k in range(i - j):
                out = widths[i] if k == i - j - 1 else widths[j]
                keys |= conv(f"{name}.fuse_layers.{i}.{j}.{k}.0", out, widths[j], 3) | bn(
                    f"{name}.fuse_layers.{i}.{j}.{k}.1", out)
    return keys


RESNET_LAYERS = {18: (False, (2, 2, 2, 2)), 50: (True, (3, 4, 6, 3)), 101: (True, (3, 4, 23, 3)),
                 152: (True, (3, 8, 36, 3))}


def official_resnet(depth: int, widths: tuple[int, ...] = (64, 128, 256, 512), prefix: str = "") -> Shapes:
    """torchvision / pose_resnet.py / mmpose resnet.py ResNet ('pytorch' style) without the classifier."""
    bottleneck, counts = RESNET_LAYERS[depth]
    keys = conv(f"{prefix}conv1", 64, 3, 7) | bn(f"{prefix}bn1", 64)
    inplanes = 64
    for layer, (width, count) in enumerate(zip(widths, counts, strict=True), start=1):
        out = 4 * width if bottleneck else width
        for b in range(count):
            unit = f"{prefix}layer{layer}.{b}"
            if bottleneck:
                keys |= conv(f"{unit}.conv1", width, inplanes, 1) | bn(f"{unit}.bn1", width)
                keys |= conv(f"{unit}.conv2", width, width, 3) | bn(f"{unit}.bn2", width)
                keys |= conv(f"{unit}.conv3", out, width, 1) | bn(f"{unit}.bn3", out)
            else:
                keys |= conv(f"{unit}.conv1", width, inplanes, 3) | bn(f"{unit}.bn1", width)
                keys |= conv(f"{unit}.conv2", width, width, 3) | bn(f"{unit}.bn2", width)
            if b == 0 and (layer > 1 or inplanes != out):
                keys |= conv(f"{unit}.downsample.0", out, inplanes, 1) | bn(f"{unit}.downsample.1", out)
            inplanes = out
    return keys


def official_pose_resnet(depth: int, joints: int, deconv: tuple[int, ...] = (256, 256, 256),
                         widths: tuple[int, ...] = (64, 128, 256, 512), prefix: str = "", head: str = "") -> Shapes:
    """pose_resnet.py (prefix '' and head '') or mmpose's heatmap model (prefix 'backbone.', head 'head.')."""
    keys = official_resnet(depth, widths, prefix)
    inplanes = widths[-1] * (4 if RESNET_LAYERS[depth][0] else 1)
    for i, channels in enumerate(deconv):
        keys |= {f"{head}deconv_layers.{3 * i}.weight": (inplanes, channels, 4, 4)} | bn(
            f"{head}deconv_layers.{3 * i + 1}", channels)
        inplanes = channels
    return keys | conv(f"{head}final_layer", joints, inplanes, 1, bias=True)


def mmpose_hrnet(joints: int, head: str = "head.", **kwargs) -> Shapes:
    """mmpose HRNet + HeatmapHead(deconv_out_channels=None): the official names under backbone. / head."""
    keys = official_hrnet(joints, **kwargs)
    return {(head if k.startswith("final_layer") else "backbone.") + k: v for k, v in keys.items()}


def mmpose_deeppose(depth: int, joints: int, widths: tuple[int, ...] = (64, 128, 256, 512)) -> Shapes:
    """mmpose ResNet + GlobalAveragePooling + RegressionHead(fc = Linear(C, 2K))."""
    features = widths[-1] * (4 if RESNET_LAYERS[depth][0] else 1)
    return official_resnet(depth, widths, "backbone.") | {"head.fc.weight": (2 * joints, features),
                                                           "head.fc.bias": (2 * joints,)}


def _bearpaw_bottleneck(name: str, inplanes: int, planes: int) -> Shapes:
    keys = bn(f"{name}.bn1", inplanes) | conv(f"{name}.conv1", planes, inplanes, 1, True) | bn(f"{name}.bn2", planes)
    keys |= conv(f"{name}.conv2", planes, planes, 3, True) | bn(f"{name}.bn3", planes)
    keys |= conv(f"{name}.conv3", 2 * planes, planes, 1, True)
    return keys | (conv(f"{name}.downsample.0", 2 * planes, inplanes, 1, True) if inplanes != 2 * planes else {})


def bearpaw_hourglass(stacks: int, classes: int) -> Shapes:
    """hourglass.py HourglassNet(Bottleneck, num_stacks, num_blocks=1): layer2 is built with planes = inplanes = 128."""
    keys = conv("conv1", 64, 3, 7, True) | bn("bn1", 64) | _bearpaw_bottleneck("layer1.0", 64, 64)
    keys |= _bearpaw_bottleneck("layer2.0", 128, 128) | _bearpaw_bottleneck("layer3.0", 256, 128)
    for s in range(stacks):
        for i in range(4):
            for j in range(4 if i == 0 else 3):
                keys |= _bearpaw_bottleneck(f"hg.{s}.hg.{i}.{j}.0", 256, 128)
        keys |= _bearpaw_bottleneck(f"res.{s}.0", 256, 128)
        keys |= conv(f"fc.{s}.0", 256, 256, 1, True) | bn(f"fc.{s}.1", 256)
        keys |= conv(f"score.{s}", classes, 256, 1, True)
        if s < stacks - 1:
            keys |= conv(f"fc_.{s}", 256, 256, 1, True) | conv(f"score_.{s}", 256, classes, 1, True)
    return {f"module.{k}": v for k, v in keys.items()}


def random_state(shapes: Shapes, seed: int = 0) -> dict[str, torch.Tensor]:
    """Random tensors of ``shapes`` (positive running variances, integer batch counters), views of one draw."""
    generator = torch.Generator().manual_seed(seed)
    floats = {k: s for k, s in shapes.items() if not k.endswith("num_batches_tracked")}
    sizes = [int(np.prod(s)) for s in floats.values()]
    pool = torch.randn(sum(sizes), generator=generator).mul_(0.05)
    state = {k: chunk.view(s) for (k, s), chunk in zip(floats.items(), pool.split(sizes), strict=True)}
    for key in state:
        if key.endswith("running_var"):
            state[key].abs_().add_(0.5)
    counters = [k for k in shapes if k.endswith("num_batches_tracked")]
    values = torch.randint(1, 10_000, (len(counters),), generator=generator)
    state.update({k: v.clone().reshape(()) for k, v in zip(counters, values, strict=True)})
    return {k: state[k] for k in shapes}


def parameter_count(shapes: Shapes) -> int:
    return sum(int(np.prod(s)) for k, s in shapes.items() if k.endswith(("weight", "bias")))


def same_tensors(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


TINY_HRNET = {"width": 16, "stem": 16, "stage1": 16, "stage1_blocks": 1, "modules": (1, 1, 1), "blocks": 2}
TINY_RESNET = (16, 32, 64, 128)


def _save(path: Path, payload) -> Path:
    torch.save(payload, path)
    return path


def _export(tmp_path: Path, imported: W.Imported, layout: str, **kwargs) -> dict[str, torch.Tensor]:
    checkpoint = W.write_checkpoint(imported, tmp_path / "imported.ckpt")
    return W.export_state_dict(checkpoint, layout, **kwargs)


# ----------------------------------------------------------------------------- HRNet (official code)


def test_official_hrnet_tables_have_the_papers_parameter_counts():
    # models/hrnet.py: 28,536,113 and 63,595,745 parameters with 17 joints; the README says 28.5M and 63.6M.
    assert parameter_count(official_hrnet(17, 32)) == 28_536_113
    assert parameter_count(official_hrnet(17, 48)) == 63_595_745


def test_hrnet_tiny_official_keys_import_run_and_round_trip(tmp_path):
    source = random_state(official_hrnet(17, **TINY_HRNET))
    path = _save(tmp_path / "pose_hrnet_tiny_128x96.pth", source)
    imported = W.import_weights(path, W.ImportRequest(variant="hrnet-tiny"))
    model = imported.model.eval()
    with torch.no_grad():
        heatmaps = model(torch.randn(2, 3, 128, 96))
    assert heatmaps.shape == (2, 17, 32, 24) and torch.isfinite(heatmaps).all()
    meta = imported.meta
    assert (meta["variant"], meta["method"]) == ("hrnet-tiny", "hrnet")
    assert meta["config"]["model"]["input_size"] == [128, 96]
    assert meta["config"]["model"]["convention"] == "msra" and meta["config"]["data"]["name"] == "coco"
    assert meta["imported"]["format"] == "msra-hrnet" and meta["imported"]["filled"] == []
    assert same_tensors(_export(tmp_path, imported, "official"), source)
    # mmpose's names for the same tensors, and back in from them.
    as_mmpose = _export(tmp_path, imported, "mmpose")
    assert as_mmpose.keys() == mmpose_hrnet(17, **TINY_HRNET).keys()
    again = W.import_weights(_save(tmp_path / "hrnet_tiny_coco-128x96.pth", {"state_dict": as_mmpose}),
                             W.ImportRequest(variant="hrnet-tiny"))
    assert same_tensors(W.network_state(again.model), W.network_state(model))


def test_hrnet_w32_paper_size_is_inferred_from_keys_and_file_name(tmp_path):
    source = random_state(official_hrnet(17, 32), seed=1)
    path = _save(tmp_path / "pose_hrnet_w32_256x192.pth", source)
    imported = W.import_weights(path)
    meta = imported.meta
    assert (meta["variant"], meta["config"]["model"]["input_size"], meta["imported"]["dataset"]) == (
        "hrnet-w32", [256, 192], "coco")
    assert meta["imported"]["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert meta["imported"]["source_file"] == "pose_hrnet_w32_256x192.pth"
    names = W.NAMES[("msra-hrnet", "hrnet")]
    assert same_tensors(W.map_from_network(W.network_state(imported.model), names, "w32"), source)


# ----------------------------------------------------------------------------- SimpleBaseline (official code)


def _first_layer_official(state: dict[str, torch.Tensor], image_bgr: torch.Tensor) -> torch.Tensor:
    """pose_resnet.py conv1 -> bn1 (eval) on the BGR-ordered normalised input."""
    out = F.conv2d(image_bgr, state["conv1.weight"], stride=2, padding=3)
    return F.batch_norm(out, state["bn1.running_mean"], state["bn1.running_var"], state["bn1.weight"],
                        state["bn1.bias"], training=False)


def test_simplebaseline_pth_tar_with_module_prefix_and_bgr_input(tmp_path):
    source = random_state(official_pose_resnet(18, 17, (64, 64, 64), TINY_RESNET), seed=2)
    wrapped = {"epoch": 140, "state_dict": {f"module.{k}": v for k, v in source.items()}, "perf": 0.7}
    imported = W.import_weights(_save(tmp_path / "pose_resnet_tiny_128x96.pth.tar", wrapped),
                                W.ImportRequest(variant="simplebaseline-tiny"))
    assert imported.meta["imported"]["input_order"] == "bgr" and imported.meta["imported"]["conversion"]
    model = imported.model.eval()
    # The official network reads BGR (COLOR_RGB: false) normalised with the RGB mean/std; PoseBench reads RGB.
    pixels = torch.rand(1, 3, 64, 64)
    mean, std = torch.tensor(W.IMAGENET_MEAN)[:, None, None], torch.tensor(W.IMAGENET_STD)[:, None, None]
    rgb, bgr = (pixels - mean) / std, (pixels.flip(1) - mean) / std
    with torch.no_grad():
        ours = model.net.backbone.bn1(model.net.backbone.conv1(rgb))
        heatmaps = model(rgb)
    theirs = _first_layer_official(source, bgr)
    # Equal wherever conv1 (7x7, stride 2, padding 3) sees no padding: output rows/columns 2 .. size - 3.
    torch.testing.assert_close(ours[..., 2:-2, 2:-2], theirs[..., 2:-2, 2:-2], rtol=1e-5, atol=1e-5)
    assert heatmaps.shape == (1, 17, 16, 16) and torch.isfinite(heatmaps).all()
    back = _export(tmp_path, imported, "official")
    folded = {"conv1.weight", "bn1.running_mean"}
    assert back.keys() == source.keys()
    assert all(torch.equal(back[k], source[k]) for k in source if k not in folded)
    for key in folded:
        torch.testing.assert_close(back[key], source[key], rtol=1e-6, atol=1e-6)


def test_simplebaseline_rgb_input_round_trips_exactly(tmp_path):
    source = random_state(official_pose_resnet(18, 16, (64, 64, 64), TINY_RESNET), seed=3)
    imported = W.import_weights(_save(tmp_path / "pose_resnet_tiny_128x128.pth", source),
                                W.ImportRequest(variant="simplebaseline-tiny", input_order="rgb"))
    assert imported.meta["imported"]["dataset"] == "mpii" and imported.meta["imported"]["conversion"] == []
    assert same_tensors(_export(tmp_path, imported, "official", input_order="rgb"), source)


def test_simplebaseline_res50_paper_size(tmp_path):
    source = random_state(official_pose_resnet(50, 16), seed=4)
    imported = W.import_weights(_save(tmp_path / "pose_resnet_50_256x256.pth", source))
    assert (imported.meta["variant"], imported.meta["imported"]["dataset"]) == ("simplebaseline-res50", "mpii")
    back = _export(tmp_path, imported, "official")
    assert back.keys() == source.keys()
    assert all(torch.equal(back[k], source[k]) for k in source if k not in ("conv1.weight", "bn1.running_mean"))


# ----------------------------------------------------------------------------- mmpose


def test_mmpose_simplebaseline_and_old_keypoint_head_names(tmp_path):
    shapes = official_pose_resnet(18, 17, (64, 64, 64), TINY_RESNET, prefix="backbone.", head="head.")
    source = random_state(shapes, seed=5)
    # An mmpose 0.x file: 'keypoint_head.' (mmpose/models/pose_estimators/base.py renames it to 'head.').
    old = {k.replace("head.", "keypoint_head.", 1) if k.startswith("head.") else k: v for k, v in source.items()}
    old["data_preprocessor.mean"] = torch.tensor([123.675, 116.28, 103.53]).view(3, 1, 1)
    old["data_preprocessor.std"] = torch.tensor([58.395, 57.12, 57.375]).view(3, 1, 1)
    path = _save(tmp_path / "res18_coco_128x96.pth", {"meta": {"epoch": 210}, "state_dict": old})
    imported = W.import_weights(path, W.ImportRequest(variant="simplebaseline-tiny"))
    assert imported.meta["imported"]["format"] == "mmpose" and imported.meta["imported"]["input_order"] == "rgb"
    assert same_tensors(_export(tmp_path, imported, "mmpose"), source)


def test_mmpose_udp_files_get_the_udp_convention(tmp_path):
    source = random_state(mmpose_hrnet(17, **TINY_HRNET), seed=13)
    path = _save(tmp_path / "td-hm_hrnet-tiny_udp-8xb64-210e_coco-128x96.pth", {"state_dict": source})
    imported = W.import_weights(path, W.ImportRequest(variant="hrnet-tiny"))
    assert imported.meta["imported"]["convention"] == imported.meta["config"]["model"]["convention"] == "udp"
    assert imported.model.convention.name == "udp"


def test_mmpose_other_normalisation_is_refused(tmp_path):
    source = random_state(mmpose_hrnet(17, **TINY_HRNET), seed=6)
    source["data_preprocessor.mean"] = torch.zeros(3, 1, 1)
    with pytest.raises(W.WeightsError, match=r"data_preprocessor\.mean is \[0\.0, 0\.0, 0\.0\]"):
        W.import_weights(_save(tmp_path / "hrnet_128x96.pth", source), W.ImportRequest(variant="hrnet-tiny"))


@pytest.mark.parametrize("convention", ["msra", "aligned"])
def test_mmpose_deeppose_decodes_to_mmposes_crop_pixels(convention):
    model = models.build("deeppose-res50", backbone="resnet18", backbone_args={"channels": list(TINY_RESNET)},
                         pretrained=False, input_size=[64, 48], num_joints=17, flip_pairs=[[1, 2]],
                         convention=convention).eval()
    source = random_state(mmpose_deeppose(18, 17, TINY_RESNET), seed=7)
    network, filled = W.map_to_network(source, W.NAMES[("mmpose", "deeppose")], W.network_state(model), "test")
    W.convert_imported(network, "mmpose", "deeppose", "rgb", (64, 48), convention, 17)
    model.net.load_state_dict(network, strict=True)
    image = torch.randn(2, 3, 64, 48)
    with torch.no_grad():
        ours = model.crop_coordinates(model(image))
        features = model.net.stages[0].backbone(image)  # GlobalAveragePooling: (B, C)
    # mmpose: RegressionHead fc -> reshape (B, K, 2), RegressionLabel.decode: * (W, H).
    theirs = F.linear(features, source["head.fc.weight"], source["head.fc.bias"]).view(2, 17, 2) * torch.tensor(
        [48.0, 64.0])
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-4)
    assert filled == []


def test_mmpose_deeppose_res50_paper_size_with_numpy_meta(tmp_path):
    source = random_state(mmpose_deeppose(50, 17), seed=8)
    meta = {"dataset_meta": {"sigmas": np.full(17, 0.05), "flip_indices": [0, 2, 1]}, "epoch": np.int64(210)}
    name = "td-reg_res50_8xb64-210e_coco-256x192-72ef04f3_20220913.pth"
    imported = W.import_weights(_save(tmp_path / name, {"meta": meta, "state_dict": source}))
    assert (imported.meta["variant"], imported.meta["config"]["model"]["input_size"]) == ("deeppose-res50", [256, 192])
    assert same_tensors(_export(tmp_path, imported, "mmpose"), source)
    # The plain network: PoseBench's own keys; the cascade's training statistics (error_*) stay behind.
    plain = W.export_state_dict(tmp_path / "imported.ckpt", "posebench")
    assert same_tensors(plain, W.network_state(imported.model))
    left = set(imported.model.state_dict()) - {f"net.{k}" for k in plain}
    assert left == {"error_mean", "error_cov", "error_batches"}
    with pytest.raises(W.WeightsError, match=r"no official layout for deeppose \(available for hrnet, simplebaseline"):
        W.export_state_dict(tmp_path / "imported.ckpt", "official")


@pytest.mark.parametrize("prefix, reason", [("backbone.cpm_stages.0.model.0.conv.weight", "mmpose's CPM"),
                                            ("backbone.hourglass_modules.0.up1.0.conv1.weight", "CornerNet")])
def test_mmpose_models_without_a_posebench_twin_are_refused(tmp_path, prefix, reason):
    path = _save(tmp_path / "x_256x256.pth", {"state_dict": {prefix: torch.zeros(1), "head.x.weight": torch.zeros(1)}})
    with pytest.raises(W.WeightsError, match=f"not importable: .*{reason}"):
        W.import_weights(path)


# ----------------------------------------------------------------------------- bearpaw Stacked Hourglass


def test_bearpaw_hg8_is_refused_naming_the_stem_mismatch(tmp_path):
    shapes = bearpaw_hourglass(8, 16)
    assert "module.hg.0.hg.0.0.0.bn1.weight" in shapes and "module.score_.6.weight" in shapes
    checkpoint = {"epoch": 200, "arch": "hg", "best_acc": 0.8878, "state_dict": random_state(shapes, seed=9)}
    with pytest.raises(W.WeightsError) as error:
        W.import_weights(_save(tmp_path / "model_best.pth.tar", checkpoint), W.ImportRequest(input_size=(256, 256)))
    message = str(error.value)
    assert ("layer2.0.conv1.weight -> net.stem.5.body.2.weight: expected shape (64, 128, 1, 1), "
            "got (128, 128, 1, 1)") in message
    assert "layer2.0.downsample.0.weight -> net.stem.5.skip.weight: the PoseBench network has no such tensor" in message
    assert "net.stem.6.skip.weight: missing, no key of the file maps there (expected shape (256, 128, 1, 1))" in message
    assert "bearpaw/pytorch-pose's HourglassNet has another stem" in message
    # Only the stem differs: every problem concerns bearpaw's layer2 / layer3 or PoseBench's stem.6.
    problems = [line.strip() for line in message.splitlines() if line.startswith("  ") and "more" not in line]
    assert problems and all(re.search(r"layer[23]\.0\.|stem\.6\.", line) for line in problems)


def test_bearpaw_names_reach_every_hourglass_unit():
    shapes = {k[len("module."):]: v for k, v in bearpaw_hourglass(2, 16).items()}
    net = W.network_state(models.build("hourglass-2", convention="msra"))
    names = W.NAMES[("bearpaw-hourglass", "hourglass")]
    targets = {names.forward(k): s for k, s in shapes.items() if not k.startswith(("layer2.", "layer3."))}
    assert None not in targets
    assert all(tuple(net[t].shape) == s for t, s in targets.items())
    assert set(net) - set(targets) == {k for k in net if k.startswith(("stem.5.", "stem.6."))}


# ----------------------------------------------------------------------------- errors


def _tiny_hrnet_file(tmp_path: Path, edit) -> Path:
    state = random_state(official_hrnet(17, **TINY_HRNET))
    edit(state)
    return _save(tmp_path / "pose_hrnet_tiny_128x96.pth", state)


def test_missing_extra_and_misshaped_keys_are_named(tmp_path):
    key = "stage2.0.branches.1.0.conv2.weight"
    cases = [
        (lambda s: s.pop(key),
         rf"{re.escape(key)}: missing \(PoseBench net\.{re.escape(key)}, expected shape \(32, 32, 3, 3\)\)"),
        (lambda s: s.update({"extra.weight": torch.zeros(3)}),
         r"extra\.weight -> net\.extra\.weight: the PoseBench network has no such tensor"),
        (lambda s: s.update({key: torch.zeros(32, 32, 1, 1)}),
         rf"{re.escape(key)} -> net\.{re.escape(key)}: expected shape \(32, 32, 3, 3\), got \(32, 32, 1, 1\)"),
    ]
    for edit, pattern in cases:
        with pytest.raises(W.WeightsError, match=pattern):
            W.import_weights(_tiny_hrnet_file(tmp_path, edit), W.ImportRequest(variant="hrnet-tiny"))


def test_unmapped_key_of_a_prefix_format_is_named(tmp_path):
    source = random_state(official_pose_resnet(18, 17, (64, 64, 64), TINY_RESNET))
    source["fc.weight"] = torch.zeros(1000, 128)  # the ImageNet classifier, which pose_resnet.py never has
    with pytest.raises(W.WeightsError, match=r"fc\.weight: no PoseBench counterpart \(unmapped key\)"):
        W.import_weights(_save(tmp_path / "pose_resnet_128x96.pth", source),
                         W.ImportRequest(variant="simplebaseline-tiny"))


def test_missing_batch_counters_are_filled_and_listed(tmp_path):
    path = _tiny_hrnet_file(tmp_path, lambda s: [s.pop(k) for k in list(s) if k.endswith("num_batches_tracked")])
    imported = W.import_weights(path, W.ImportRequest(variant="hrnet-tiny"))
    filled = imported.meta["imported"]["filled"]
    assert filled and all(k.endswith("num_batches_tracked") for k in filled)
    assert len(filled) == sum(k.endswith("num_batches_tracked") for k in W.network_state(imported.model))


def test_unknown_format_wrong_variant_and_malformed_files(tmp_path):
    with pytest.raises(W.WeightsError, match=r"cannot tell the format from its keys \(first: foo\.weight\)"):
        W.import_weights(_save(tmp_path / "a_256x192.pth", {"foo.weight": torch.zeros(1)}))
    path = _tiny_hrnet_file(tmp_path, lambda s: None)
    with pytest.raises(W.WeightsError, match=r"unknown format 'caffe'; valid: msra-hrnet"):
        W.import_weights(path, W.ImportRequest(format="caffe"))
    with pytest.raises(W.WeightsError, match=r"holds a hrnet model \(msra-hrnet\); --variant hourglass-8 is a hour"):
        W.import_weights(path, W.ImportRequest(variant="hourglass-8"))
    with pytest.raises(W.WeightsError, match=r"its output layer has 17 joints, mpii has 16"):
        W.import_weights(path, W.ImportRequest(variant="hrnet-tiny", dataset="mpii"))
    mixed = _save(tmp_path / "b_256x192.pth", {"module.conv1.weight": torch.zeros(1), "bn1.weight": torch.zeros(1)})
    with pytest.raises(W.WeightsError, match=r"some keys carry the DataParallel prefix 'module\.'.*bn1\.weight"):
        W.import_weights(mixed)
    with pytest.raises(W.WeightsError, match=r"entries that are not tensors: conv1\.weight"):
        W.import_weights(_save(tmp_path / "c_256x192.pth", {"conv1.weight": [1.0]}))
    with pytest.raises(W.WeightsError, match=r"no such weights file"):
        W.import_weights(tmp_path / "absent.pth")


def test_input_size_comes_from_the_flag_the_name_or_a_matching_preset(tmp_path):
    path = _save(tmp_path / "weights.pth", random_state(official_hrnet(17, **TINY_HRNET)))
    imported = W.import_weights(path, W.ImportRequest(variant="hrnet-tiny"))  # a COCO preset: its 128x96
    assert imported.meta["config"]["model"]["input_size"] == [128, 96]
    imported = W.import_weights(path, W.ImportRequest(variant="hrnet-tiny", input_size=(64, 64)))
    assert imported.meta["config"]["model"]["input_size"] == [64, 64]
    mpii = _save(tmp_path / "mpii_weights.pth", random_state(official_hrnet(16, **TINY_HRNET)))
    with pytest.raises(W.WeightsError, match=r"mpii_weights\.pth: its name gives no <H>x<W> input size \(nor does a "
                                             r"--variant preset for mpii\); pass --input-size"):
        W.import_weights(mpii, W.ImportRequest(variant="hrnet-tiny"))


# ----------------------------------------------------------------------------- checkpoints, export, CLI


@pytest.fixture(scope="module")
def synth_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("synthpose")
    generate_synthpose(root, num_train=2, num_val=3, seed=0, progress=False)
    return root


def test_imported_checkpoint_is_scored_by_evaluate(tmp_path, synth_root):
    source = random_state(official_hrnet(17, **TINY_HRNET), seed=10)
    path = _save(tmp_path / "pose_hrnet_tiny_128x96.pth", source)
    checkpoint = W.write_checkpoint(W.import_weights(path, W.ImportRequest(variant="hrnet-tiny")), tmp_path / "t.ckpt")
    loaded = torch.load(checkpoint, weights_only=True)
    assert loaded[CHECKPOINT_KEY]["imported"]["format"] == "msra-hrnet"
    result = evaluate([f"ckpt={checkpoint}", "data=synthpose", "data.format=coco", f"data.root={synth_root}",
                       "data.max_samples=2", "model.all_protocols=false",
                       "trainer.accelerator=cpu", "trainer.devices=1",
                       "trainer.enable_progress_bar=false", f"output_dir={tmp_path / 'runs'}",
                       f"results_dir={tmp_path / 'records'}"])
    assert 0.0 <= result.results["test"]["AP"] <= 1.0
    assert same_tensors(W.network_state(result.run.model), source)
    # The checkpoint's grid reaches the model and the crops without model.convention on the command line.
    assert result.run.model.convention.name == "msra" and result.run.datamodule.convention.name == "msra"
    record = json.loads(result.record_path.read_text())
    assert record["protocol"]["convention"] == "msra"
    assert record["imported"]["format"] == "msra-hrnet" and record["imported"]["sha256"] == W.file_sha256(path)


def test_a_deeppose_cascade_has_no_mmpose_layout(tmp_path):
    model = models.build("deeppose-tiny")
    meta = W.checkpoint_meta("deeppose-tiny", "mpii", (96, 96), "aligned", "deeppose")
    checkpoint = W.write_checkpoint(W.Imported(model, meta), tmp_path / "cascade.ckpt")
    with pytest.raises(W.WeightsError, match="mmpose's layout holds one ResNet regressor"):
        W.export_state_dict(checkpoint, "mmpose")
    assert same_tensors(W.export_state_dict(checkpoint), W.network_state(model))


def test_cli_choices_are_the_modules_names():
    import argparse

    options = {}
    for name, add_arguments in (("import-weights", W.add_import_arguments), ("export-weights", W.add_export_arguments)):
        parser = argparse.ArgumentParser()
        add_arguments(parser)
        options.update({(name, a.dest): a.choices for a in parser._actions if a.choices})
    assert tuple(options[("import-weights", "format")]) == W.FORMATS
    assert tuple(options[("export-weights", "layout")]) == W.LAYOUTS
    assert tuple(options[("import-weights", "input_order")]) == W.INPUT_ORDERS


def test_cli_import_and_export(tmp_path, capsys):
    source = random_state(official_hrnet(17, **TINY_HRNET), seed=12)
    path = _save(tmp_path / "pose_hrnet_tiny_128x96.pth", source)
    ckpt, plain = tmp_path / "c.ckpt", tmp_path / "plain.pth"
    assert main(["import-weights", str(path), "--variant", "hrnet-tiny", "--out", str(ckpt)]) == 0
    assert load_checkpoint(ckpt)[CHECKPOINT_KEY]["imported"]["sha256"] == W.file_sha256(path)
    assert main(["export-weights", str(ckpt), "--out", str(plain), "--layout", "official"]) == 0
    assert same_tensors(torch.load(plain, weights_only=True), source)
    assert main(["import-weights", str(tmp_path / "none.pth"), "--variant", "hrnet-tiny"]) == 2
    assert "no such weights file" in capsys.readouterr().err


# ----------------------------------------------------------------------------- published table, verify
