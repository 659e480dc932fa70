"""The multi-task visibility regressor: its four backbones, the two training phases, the loss on visible joints only,
presence probabilities as the predicted scores, and a short training that learns both tasks."""

from __future__ import annotations

from unittest.mock import PropertyMock, patch

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import models
from benchmark import metrics
from models.visreg import VisReg, presence_probability


def _build_meta(name: str) -> VisReg:
    with torch.device("meta"):
        model = models.build(name)
    assert isinstance(model, VisReg)
    return model


def _layers(model: VisReg, kind: type[nn.Module]) -> int:
    return sum(isinstance(m, kind) for m in model.net.backbone.modules())


@pytest.mark.parametrize(("name", "convs", "pools", "features", "hidden"), [
    ("visreg-baseline1", 2, 2, 64 * 14 * 14, 1024),  # 224 -> /2 conv, /2 pool, twice: 14
    ("visreg-baseline2", 3, 3, 128 * 3 * 3, 1024),  # a third block: 14 -> 7 -> 3
    ("visreg-alexnet", 5, 4, 256 * 2 * 2, 4096),  # AlexNet's 3 poolings plus the one after conv4: 55-27-13-6-2
    ("visreg-vgg19", 16, 5, 512 * 7 * 7, 4096),  # VGG-19: 16 convolutions, 5 poolings, 7x7 at 224
])
def test_backbones_and_heads(name: str, convs: int, pools: int, features: int, hidden: int) -> None:
    model = _build_meta(name)
    assert _layers(model, nn.Conv2d) == convs and _layers(model, nn.MaxPool2d) == pools
    shared = model.net.shared[1]
    assert (shared.in_features, shared.out_features) == (features, hidden)
    # One shared FC layer, then two per branch: 3 FC layers on the way to each output.
    for branch, outputs in ((model.net.classifier, 2 * 16), (model.net.regressor, 2 * 16)):
        linear = [m for m in branch if isinstance(m, nn.Linear)]
        assert [(m.in_features, m.out_features) for m in linear] == [(hidden, hidden), (hidden, outputs)]
    logits, coords = model(torch.empty(3, 3, 224, 224, device="meta"))
    assert logits.shape == coords.shape == (3, 16, 2)


def test_alexnet_extra_pooling_follows_conv4() -> None:
    layers = list(_build_meta("visreg-alexnet").net.backbone)
    convs = [i for i, m in enumerate(layers) if isinstance(m, nn.Conv2d)]
    assert isinstance(layers[convs[3] + 2], nn.MaxPool2d)  # conv4, ReLU, pooling
    assert [layers[c].out_channels for c in convs] == [96, 256, 384, 384, 256]  # one tower, not two


def _batch(visible: list[list[float]]) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    vis = torch.tensor(visible)
    return {"image": torch.randn(vis.shape[0], 3, 64, 64, generator=generator),
            "keypoints": torch.rand(*vis.shape, 2, generator=generator) * 63, "visible": vis}


def _tiny(**kwargs) -> VisReg:
    torch.manual_seed(0)
    model = models.build("visreg-tiny", num_joints=3, flip_pairs=[[0, 2]], **kwargs)
    assert isinstance(model, VisReg)
    return model


def test_classification_phase_trains_the_presence_head_alone_then_both() -> None:
    model = _tiny(classification_epochs=2)
    batch = _batch([[1.0, 0.0, 1.0], [1.0, 1.0, 0.0]])
    outputs = model(batch["image"])
    present = batch["visible"].long().reshape(-1)
    classification = F.cross_entropy(outputs[0].reshape(-1, 2), present)
    for epoch, phase in ((0, True), (1, True), (2, False), (5, False)):
        with patch.object(VisReg, "current_epoch", new_callable=PropertyMock, return_value=epoch):
            assert model.classification_phase is phase
            model.zero_grad()
            loss = model.compute_loss(model(batch["image"]), batch)
            loss.backward()
        regression_grads = [p.grad for p in model.net.regressor.parameters()]
        if phase:
            torch.testing.assert_close(loss, classification, rtol=0, atol=0)
            assert all(g is None or not g.any() for g in regression_grads)  # the regression head is not yet there
        else:
            assert loss > classification and all(g is not None and g.any() for g in regression_grads)
        assert all(p.grad is not None and p.grad.any() for p in model.net.classifier.parameters())


def test_regression_loss_ignores_invisible_joints() -> None:
    model = _tiny()
    batch = _batch([[1.0, 0.0, 1.0], [0.0, 1.0, 1.0]])
    outputs = model(batch["image"])
    loss = model.compute_loss(outputs, batch)
    moved = dict(batch, keypoints=torch.where(batch["visible"][..., None] > 0, batch["keypoints"], -500.0))
    torch.testing.assert_close(model.compute_loss(outputs, moved), loss, rtol=0, atol=0)
    # By hand: box-normalised targets (x - 31.5) / 64 on the aligned grid, squared error summed over the visible
    # joints, divided by the batch of 2; plus the mean cross-entropy over the 6 joints.
    targets = (batch["keypoints"] - 31.5) / 64.0
    squared = ((outputs[1] - targets) ** 2).sum(-1) * batch["visible"]
    expected = F.cross_entropy(outputs[0].reshape(-1, 2), batch["visible"].long().reshape(-1)) + squared.sum() / 2
    torch.testing.assert_close(loss, expected, rtol=1e-6, atol=0)


def test_scores_are_the_presence_probabilities_flip_averaged() -> None:
    model = _tiny().eval()
    image = _batch([[1.0, 1.0, 1.0]] * 2)["image"]
    with torch.no_grad():
        plain, mirrored = model(image), model(image.flip(-1))
        protocols = model.predict_protocols(image)
    probability = torch.softmax(plain[0], dim=-1)[..., 1]
    torch.testing.assert_close(presence_probability(plain), probability)
    torch.testing.assert_close(protocols[("regression", False)][1], probability, rtol=0, atol=0)
    swapped = presence_probability(mirrored)[:, [2, 1, 0]]  # joints 0 and 2 are a left/right pair
    torch.testing.assert_close(protocols[("regression", True)][1], 0.5 * (probability + swapped), rtol=0, atol=0)


def _scene(count: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
    """Images with a bright 5x5 square at each present joint (joint j in channel j); absent joints are not drawn."""
    keypoints = torch.randint(4, 60, (count, 3, 2), generator=generator).float()
    visible = (torch.rand(count, 3, generator=generator) > 0.3).float()
    image = torch.zeros(count, 3, 64, 64)
    for i in range(count):
        for j in range(3):
            if visible[i, j]:
                x, y = keypoints[i, j].long().tolist()
                image[i, j, y - 2:y + 3, x - 2:x + 3] = 1.0
    return {"image": image, "keypoints": keypoints, "visible": visible}


def test_short_training_learns_presence_and_position() -> None:
    torch.set_num_threads(1)
    model = _tiny(classification_epochs=0, lr=2e-3)
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-3)
    generator = torch.Generator().manual_seed(1)
    model.train()
    for _ in range(150):  # fresh images each step: this is learning, not memorising
        batch = _scene(16, generator)
        optimizer.zero_grad()
        model.compute_loss(model(batch["image"]), batch).backward()
        optimizer.step()
    test = _scene(64, torch.Generator().manual_seed(99))
    model.eval()
    with torch.no_grad():
        keypoints, scores = model.predict_crop(test["image"])
    visible = test["visible"].bool().numpy()
    accuracy = metrics.visibility_accuracy(scores.numpy(), visible)
    majority = 100.0 * max(visible.mean(), 1 - visible.mean())  # always answering the commoner class
    assert accuracy > majority + 8.0, (accuracy, majority)  # measured: 82.8 against 70.8
    error = metrics.mean_pixel_error(keypoints.numpy(), test["keypoints"].numpy(), visible)
    blind = metrics.mean_pixel_error(torch.full_like(test["keypoints"], 31.5).numpy(), test["keypoints"].numpy(),
                                     visible)  # the crop centre, which an image-blind regressor would learn
    assert error < 0.7 * blind, (error, blind)  # measured: 11.7 px against 21.0 px
