"""G-RMI (models/grmi.py): atrous output stride 8, the 3K-channel fields at crop size, the loss and its masks,
the flip test of the fused maps, and a short SynthPose fit.

Truth: the paper's architecture and loss (Papandreou et al., CVPR'17, Sec. 3.2: output stride 8 with atrous
convolution, a 1x1 layer with 3K outputs upsampled to the crop, ``4 L_h + L_o`` with the logistic loss over the
maps and the Huber loss inside the disk), with every loss value worked out by hand.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
from torch import nn

import models
from datamodules.datamodule import PoseDataModule
from datamodules.skeletons import MPII
from datamodules.synthpose import generate_synthpose
from datamodules.transforms import Augmentation
from models.grmi import GRMI, huber


def _small(input_size: tuple[int, int], radius: float, joints: int = 2) -> GRMI:
    model = models.build("grmi-tiny", input_size=list(input_size), radius=radius, num_joints=joints,
                         flip_pairs=[[0, 1]] if joints == 2 else [])
    assert isinstance(model, GRMI)
    return model


def test_backbone_runs_at_output_stride_8_with_atrous_convolution() -> None:
    model = models.build("grmi-tiny")
    backbone = model.net.backbone
    image = torch.zeros(1, 3, 97, 73)
    with torch.no_grad():
        assert tuple(backbone(image).shape[-2:]) == (13, 10)  # ceil(97 / 8), ceil(73 / 8)
        assert tuple(model(image).shape) == (1, 3 * 17, 97, 73)
    # torchvision's replace_stride_with_dilation=[False, True, True]: layer3 and layer4 keep the resolution and
    # dilate by 2 and 4 after their first block.
    for layer, dilation in ((backbone.layer3, 2), (backbone.layer4, 4)):
        assert all(conv.stride == (1, 1) for conv in layer.modules() if isinstance(conv, nn.Conv2d))
        assert layer[-1].conv2.dilation == (dilation, dilation)
    assert backbone.layer2[0].conv1.stride == (2, 2)


def test_paper_variant_is_resnet101_with_a_3k_1x1_head_at_353x257() -> None:
    with torch.device("meta"):
        model = models.build("grmi-r101", pretrained=False)
        features = model.net.backbone(torch.empty(1, 3, 353, 257))
        fields = model(torch.empty(1, 3, 353, 257))
    assert tuple(features.shape) == (1, 2048, 45, 33)  # 353 = 8 x 44 + 1, 257 = 8 x 32 + 1
    assert tuple(fields.shape) == (1, 51, 353, 257)
    head = model.net.head
    assert head.kernel_size == (1, 1) and (head.in_channels, head.out_channels) == (2048, 51)
    assert model.codec.radius == 25.0 and models.VARIANTS["grmi-r101"].input_size == (353, 257)
    assert (model.hparams["heatmap_loss_weight"], model.hparams["offset_loss_weight"]) == (4.0, 1.0)


def test_huber_is_quadratic_then_linear_in_the_norm() -> None:
    # u = 0.5: 0.5 u^2 = 0.125; u = 3: u - 0.5 = 2.5 (delta 1).
    torch.testing.assert_close(huber(torch.tensor([0.0, 0.25, 1.0, 9.0])), torch.tensor([0.0, 0.125, 0.5, 2.5]))


def test_loss_of_zero_outputs_is_hand_computed() -> None:
    # Joint 0 at pixel (4, 4), R = 1: the disk is (4, 4) and its 4 neighbours, at offsets 0 and 1 R. Zero logits
    # give ln 2 at every pixel; zero offsets give Huber 0 at the centre and 0.5 at each neighbour: mean 0.4.
    # Joint 1 is not annotated and takes no part.
    model = _small((9, 9), radius=1.0)
    batch = {"keypoints": torch.tensor([[[4.0, 4.0], [1.0, 1.0]]]), "visible": torch.tensor([[1.0, 0.0]])}
    loss = model.compute_loss(torch.zeros(1, 6, 9, 9), batch)
    torch.testing.assert_close(loss, torch.tensor(4 * math.log(2) + 0.4))


def test_offsets_count_only_inside_the_disk_and_unannotated_joints_not_at_all() -> None:
    model = _small((9, 9), radius=1.5)
    batch = {"keypoints": torch.tensor([[[3.5, 4.0], [1.0, 1.0]]]), "visible": torch.tensor([[1.0, 0.0]])}
    targets = model.codec.encode(batch["keypoints"], batch["visible"])
    inside = targets.heatmaps[0, 0].bool()
    generator = torch.Generator().manual_seed(0)
    outputs = torch.randn(1, 6, 9, 9, generator=generator) * 5  # garbage everywhere, then the truth in place
    outputs[0, 0] = torch.where(inside, 30.0, -30.0)
    offsets = outputs[0, 2:].view(2, 2, 9, 9)
    offsets[0][:, inside] = targets.offsets[0, 0][:, inside]
    assert float(model.compute_loss(outputs, batch)) < 1e-9
    # One disk pixel off by (0.3, 0.4) R: Huber 0.5 x 0.25 = 0.125, averaged over the disk's pixels.
    row, column = inside.nonzero()[0].tolist()
    offsets[0][:, row, column] += torch.tensor([0.3, 0.4])
    torch.testing.assert_close(model.compute_loss(outputs, batch), 0.125 / inside.sum(), rtol=1e-5, atol=1e-9)


class _BrightPixel(nn.Module):
    """Mirror-equivariant stand-in network: every joint's heatmap is on at the image's bright pixels, offsets 0."""

    def __init__(self, joints: int) -> None:
        super().__init__()
        self.joints = joints

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        logits = (image[:, :1] > 0).float() * 40.0 - 20.0
        offsets = torch.zeros(image.shape[0], 2 * self.joints, *image.shape[-2:])
        return torch.cat([logits.expand(-1, self.joints, -1, -1), offsets], dim=1)


def test_flip_test_mirrors_the_fused_maps_back_onto_the_crop() -> None:
    model = _small((9, 7), radius=1.0).eval()
    model.net = _BrightPixel(2)
    image = -torch.ones(1, 3, 9, 7)
    image[0, :, 5, 1] = 1.0  # one bright pixel at (x 1, y 5), off the mirror axis x = 3
    predicted = model.predict_protocols(image)
    plain, flipped = predicted[("hough", False)], predicted[("hough", True)]
    assert plain[0].tolist() == [[[1.0, 5.0], [1.0, 5.0]]]
    # A wrong mirror would split the mass between x 1 and x 5 and halve the score.
    torch.testing.assert_close(flipped[0], plain[0])
    torch.testing.assert_close(flipped[1], plain[1])
    torch.testing.assert_close(plain[1], torch.full((1, 2), torch.sigmoid(torch.tensor(20.0)).item() / math.pi))


def test_a_short_synthpose_fit_learns_the_keypoints(tmp_path: Path) -> None:
    # 8 SynthPose people at 65x49, R 5 px: after 30 Adam steps on them the voted keypoints sit clearly closer to
    # the truth than the best image-blind guess, the mean crop pose (observed: 4.4 px against 6.9 px), and the
    # loss falls by far more than half (3.1 -> 0.32).
    generate_synthpose(tmp_path, num_train=8, num_val=2, seed=0, progress=False)
    datamodule = PoseDataModule(name="synthpose", root=tmp_path, input_size=(65, 49), batch_size=8, seed=0,
                                augmentation=Augmentation())
    datamodule.setup("fit")
    batches = [datamodule.on_after_batch_transfer(batch, 0) for batch in datamodule.train_dataloader()]
    torch.manual_seed(0)
    model = models.build("grmi-tiny", input_size=[65, 49], radius=5.0, num_joints=MPII.num_joints,
                         flip_pairs=[list(pair) for pair in MPII.flip_pairs])
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for step in range(30):
        batch = batches[step % len(batches)]
        loss = model.compute_loss(model(batch["image"]), batch)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    model.eval()
    keypoints = torch.cat([b["keypoints"] for b in batches])
    visible = torch.cat([b["visible"] for b in batches]) > 0
    with torch.no_grad():
        predicted = torch.cat([model.predict_protocols(b["image"], protocols=[("hough", False)])[("hough", False)][0]
                               for b in batches])
    mean_pose = (keypoints * visible[..., None]).sum(0) / visible[..., None].sum(0)
    trained_error = (predicted - keypoints).norm(dim=-1)[visible].mean()
    blind_error = (mean_pose - keypoints).norm(dim=-1)[visible].mean()
    assert losses[-1] < 0.5 * losses[0]
    assert trained_error < 0.8 * blind_error, f"error {trained_error:.2f} px vs mean pose {blind_error:.2f} px"
