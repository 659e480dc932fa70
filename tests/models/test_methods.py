"""Registry-wide checks: every registered variant is tested here without touching this file.

Tiny variants are trained for real (no NaN, gradients everywhere, the loss at least halves when
overfitting one batch for 25 steps, the step output contract); full-size variants are built on the
meta device (no memory, no download) and checked against the papers' parameter counts. Output shapes
are checked against the codec for the heatmap family (``HeatmapEstimator``) and as ``(B, K, 2)`` per
stage for the coordinate regressors; the number of stages is checked in each method's own file.
"""

from __future__ import annotations

import pytest
import torch

import models
from models.base import HeatmapEstimator

TINY = sorted(name for name, variant in models.VARIANTS.items() if variant.tiny)
FULL = sorted(name for name, variant in models.VARIANTS.items() if not variant.tiny)
PAPER_PARAMS = sorted(name for name, variant in models.VARIANTS.items() if variant.paper_params is not None)


def _offline(name: str) -> dict:
    """Overrides that keep a variant from downloading weights."""
    method = models.METHODS[models.VARIANTS[name].method]
    return {"pretrained": False} if "pretrained" in models.registry.accepted_kwargs(method) else {}


def _stages(outputs: torch.Tensor | list[torch.Tensor]) -> list[torch.Tensor]:
    return outputs if isinstance(outputs, list) else [outputs]


# Dense-field methods (neither the heatmap codec's maps nor coordinates): method -> the (C, h, w) of one output.
FIELD_OUTPUTS = {
    "grmi": lambda model: (3 * model.num_joints, *model.input_size),  # K heatmaps + 2K offsets at crop size
}


def _field_shape(model: models.base.PoseEstimator) -> tuple[int, ...] | None:
    """The ``(C, h, w)`` of a dense-field method's output (``FIELD_OUTPUTS``), None for the other methods."""
    method = next((name for name, cls in models.METHODS.items() if type(model) is cls), None)
    return FIELD_OUTPUTS[method](model) if method in FIELD_OUTPUTS else None


def _heatmap_channels(model: HeatmapEstimator) -> int:
    """K maps, plus the maps a method declares beyond the joints (``extra_maps``: CPM's background map)."""
    return model.num_joints + getattr(model, "extra_maps", 0)


def _random_batch(model: models.base.PoseEstimator, batch: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
    height, width = model.input_size
    keypoints = torch.rand(batch, model.num_joints, 2, generator=generator) * torch.tensor([width - 1.0, height - 1.0])
    visible = (torch.rand(batch, model.num_joints, generator=generator) > 0.2).float()
    return {"image": torch.randn(batch, 3, height, width, generator=generator), "keypoints": keypoints,
            "visible": visible, "index": torch.arange(batch)}


def test_registry_has_tiny_and_full_variants() -> None:
    assert TINY and FULL and PAPER_PARAMS


@pytest.mark.parametrize("name", TINY)
def test_tiny_variant_shapes_gradients_and_overfitting(name: str) -> None:
    torch.manual_seed(0)
    model = models.build(name, **_offline(name), lr=1e-3, optimizer="adam")
    batch = _random_batch(model, 2, torch.Generator().manual_seed(1))
    model.train()
    outputs = model(batch["image"])
    for stage in _stages(outputs):
        assert stage.shape[0] == 2 and torch.isfinite(stage).all()
        if isinstance(model, HeatmapEstimator):
            assert stage.shape[1] == _heatmap_channels(model)
            assert tuple(stage.shape[2:]) == model.codec.heatmap_size
        elif _field_shape(model) is not None:
            assert tuple(stage.shape[1:]) == _field_shape(model)
        else:  # coordinate regressors: one (x, y) per joint and stage (or step)
            assert tuple(stage.shape[1:]) == (model.num_joints, 2)
    loss = model.compute_loss(outputs, batch)
    assert loss.ndim == 0 and torch.isfinite(loss)
    loss.backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not bool((p.grad != 0).any())]
    assert not missing, f"parameters without a gradient: {missing}"
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())

    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    first = float(loss.detach())
    for _ in range(25):
        optimizer.zero_grad()
        loss = model.compute_loss(model(batch["image"]), batch)
        loss.backward()
        optimizer.step()
    last = float(loss.detach())
    assert last < 0.5 * first, f"loss {first:.3g} -> {last:.3g} when overfitting one batch"


@pytest.mark.parametrize("name", TINY)
def test_tiny_variant_predict_step_contract(name: str) -> None:
    torch.manual_seed(0)
    model = models.build(name, **_offline(name)).eval()
    batch = _random_batch(model, 3, torch.Generator().manual_seed(2))
    # crop -> image: x_img = 2 x + 5, y_img = 3 y - 1
    batch["inverse_matrix"] = torch.tensor([[2.0, 0.0, 5.0], [0.0, 3.0, -1.0]]).expand(3, 2, 3)
    batch["index"] = torch.tensor([7, 3, 11])
    with torch.no_grad():
        out = model.predict_step(batch, 0)
        crop, scores = model.predict_crop(batch["image"])
    assert set(out) == {"index", "keypoints", "scores"}
    assert out["index"].dtype == torch.int64 and out["index"].tolist() == [7, 3, 11]
    assert out["keypoints"].dtype == torch.float32 and out["keypoints"].shape == (3, model.num_joints, 2)
    assert out["scores"].dtype == torch.float32 and out["scores"].shape == (3, model.num_joints)
    torch.testing.assert_close(out["keypoints"][..., 0], 2 * crop[..., 0] + 5)
    torch.testing.assert_close(out["keypoints"][..., 1], 3 * crop[..., 1] - 1)
    torch.testing.assert_close(out["scores"], scores)
    assert torch.isfinite(out["keypoints"]).all() and torch.isfinite(out["scores"]).all()


@pytest.mark.parametrize("name", TINY)
@pytest.mark.filterwarnings("ignore:You are trying to `self.log\\(\\)`")
def test_every_protocol_in_one_pass_equals_a_model_configured_with_it(name: str) -> None:
    torch.manual_seed(0)
    model = models.build(name, **_offline(name)).eval()
    batch = _random_batch(model, 2, torch.Generator().manual_seed(3))
    batch["inverse_matrix"] = torch.tensor([[1.0, 0.0, 4.0], [0.0, 1.0, 2.0]]).expand(2, 2, 3)
    protocols = model.evaluation_protocols
    assert len(protocols) == 2 * len(model.decoders) and len(set(protocols)) == len(protocols)
    with torch.no_grad():
        step = model.test_step(batch, 0)
        for p, (decoder, flip) in enumerate(protocols):
            alone = models.build(name, **_offline(name), decoder=decoder if decoder in models.codecs.DECODE_METHODS
                                 else "dark", flip_test=flip, all_protocols=False).eval()
            alone.load_state_dict(model.state_dict())
            assert alone.primary_protocol == (decoder, flip)
            out = alone.test_step(batch, 0)
            assert set(out) == {"index", "keypoints", "scores"}
            torch.testing.assert_close(step["protocol_keypoints"][:, p], out["keypoints"], rtol=0, atol=0)
            torch.testing.assert_close(step["protocol_scores"][:, p], out["scores"], rtol=0, atol=0)
    primary = protocols.index(model.primary_protocol)
    torch.testing.assert_close(step["keypoints"], step["protocol_keypoints"][:, primary], rtol=0, atol=0)
    # Flip test changes the estimate of an untrained model on a random image.
    assert not torch.equal(step["protocol_keypoints"][:, 0], step["protocol_keypoints"][:, 1])


@pytest.mark.parametrize("name", FULL)
def test_full_size_variant_output_shapes(name: str) -> None:
    with torch.device("meta"):
        model = models.build(name, **_offline(name))
        height, width = models.VARIANTS[name].input_size
        outputs = model(torch.empty(2, 3, height, width))
    assert all(stage.shape[0] == 2 for stage in _stages(outputs))
    if isinstance(model, HeatmapEstimator):
        expected = (height // model.output_stride, width // model.output_stride)
        assert model.codec.heatmap_size == expected
        assert all(tuple(stage.shape[2:]) == expected for stage in _stages(outputs))
        assert all(stage.shape[1] == _heatmap_channels(model) for stage in _stages(outputs))
    elif _field_shape(model) is not None:
        assert all(tuple(stage.shape[1:]) == _field_shape(model) for stage in _stages(outputs))


@pytest.mark.parametrize("name", PAPER_PARAMS)
def test_parameter_count_matches_the_paper(name: str) -> None:
    with torch.device("meta"):
        model = models.build(name, **_offline(name))
    params = sum(p.numel() for p in model.parameters()) / 1e6
    paper = models.VARIANTS[name].paper_params
    assert abs(params - paper) <= 0.02 * paper, f"{name}: {params:.2f}M parameters, paper {paper}M"
