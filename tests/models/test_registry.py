"""The method registry: registration, duplicates, lookups and override checking."""

from __future__ import annotations

import pytest

import models
from datamodules.skeletons import COCO, MPII
from models import registry
from models.base import HeatmapEstimator
from models.hourglass import StackedHourglass
from models.simple_baseline import SimpleBaseline


@pytest.fixture
def scratch_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    """Empty copies of the registry dicts, so test registrations never leak into other tests."""
    monkeypatch.setattr(registry, "METHODS", dict(registry.METHODS))
    monkeypatch.setattr(registry, "VARIANTS", dict(registry.VARIANTS))


def test_package_registers_the_methods_and_variants() -> None:
    assert models.METHODS["hourglass"] is StackedHourglass
    assert models.METHODS["simplebaseline"] is SimpleBaseline
    expected = {"hourglass-1", "hourglass-2", "hourglass-4", "hourglass-8", "hourglass-tiny",
                "simplebaseline-res50", "simplebaseline-res101", "simplebaseline-res152", "simplebaseline-tiny"}
    assert expected <= set(models.VARIANTS)
    assert models.VARIANTS["simplebaseline-res50"].input_size == (256, 192)
    assert models.VARIANTS["simplebaseline-res50"].paper_gflops == 8.9
    assert models.VARIANTS["hourglass-8"].input_size == (256, 256)
    assert models.VARIANTS["hourglass-8"].kwargs["stacks"] == 8


def test_the_presets_skeletons_are_the_datasets_exactly() -> None:
    # models never import datamodules, so the registry restates the two skeletons its presets default to;
    # the harness always passes the dataset's own. Tied here, and every preset that names flip pairs uses them.
    skeletons = {MPII.num_joints: MPII, COCO.num_joints: COCO}
    assert (registry.MPII_JOINTS, registry.MPII_FLIP_PAIRS) == (MPII.num_joints, [list(p) for p in MPII.flip_pairs])
    assert (registry.COCO_JOINTS, registry.COCO_FLIP_PAIRS) == (COCO.num_joints, [list(p) for p in COCO.flip_pairs])
    for name, variant in models.VARIANTS.items():
        if "flip_pairs" in variant.kwargs:
            skeleton = skeletons[variant.kwargs["num_joints"]]
            assert [list(p) for p in variant.kwargs["flip_pairs"]] == [list(p) for p in skeleton.flip_pairs], name


def test_every_method_has_a_tiny_variant() -> None:
    tiny_methods = {variant.method for variant in models.VARIANTS.values() if variant.tiny}
    assert tiny_methods == set(models.METHODS)


@pytest.mark.usefixtures("scratch_registry")
def test_duplicate_method_name_fails_naming_both_classes() -> None:
    already = r"'hourglass' is already registered by models\.hourglass\.StackedHourglass.*Imposter"
    with pytest.raises(ValueError, match=already):
        @registry.register_method("hourglass")
        class Imposter(HeatmapEstimator):
            pass


@pytest.mark.usefixtures("scratch_registry")
def test_duplicate_variant_name_fails() -> None:
    with pytest.raises(ValueError, match="variant 'hourglass-8' is already registered"):
        registry.register_variant("hourglass-8", "hourglass", input_size=(256, 256), stacks=8)


@pytest.mark.usefixtures("scratch_registry")
def test_variant_of_unknown_method_or_with_bad_kwarg_fails() -> None:
    with pytest.raises(KeyError, match="unknown method 'nope'"):
        registry.register_variant("nope-1", "nope", input_size=(64, 64))
    with pytest.raises(TypeError, match="'stackz'.*valid:.*stacks"):
        registry.register_variant("hourglass-x", "hourglass", input_size=(64, 64), stackz=3)


@pytest.mark.usefixtures("scratch_registry")
def test_registered_variant_builds_with_its_kwargs() -> None:
    registry.register_variant("hourglass-scratch", "hourglass", input_size=(64, 64), stacks=1, features=16,
                              num_joints=3, flip_pairs=[[0, 2]])
    model = registry.build("hourglass-scratch")
    assert isinstance(model, StackedHourglass)
    assert model.input_size == (64, 64) and model.num_joints == 3
    assert len(model.net.hourglasses) == 1
    assert model.flip_permutation == [2, 1, 0]


def test_unknown_name_lists_valid_names() -> None:
    with pytest.raises(KeyError) as error:
        models.build("hourglas-8")
    message = str(error.value)
    assert "'hourglas-8'" in message
    assert "hourglass-8" in message and "simplebaseline-res50" in message and "simplebaseline" in message


def test_bad_override_names_the_key_and_the_valid_ones() -> None:
    with pytest.raises(TypeError) as error:
        models.build("hourglass-tiny", stacks=1, learning_rate=0.1)
    message = str(error.value)
    assert "'learning_rate'" in message
    # keys of the subclass and of both bases are listed
    assert "stacks" in message and "sigma" in message and "lr" in message and "flip_pairs" in message


def test_overrides_win_over_the_preset_and_do_not_change_it() -> None:
    model = models.build("hourglass-tiny", stacks=1, num_joints=4, flip_pairs=[[1, 2]], lr=0.5)
    assert len(model.net.hourglasses) == 1 and model.hparams.lr == 0.5 and model.num_joints == 4
    assert models.VARIANTS["hourglass-tiny"].kwargs["stacks"] == 2
    assert models.VARIANTS["hourglass-tiny"].kwargs["num_joints"] == 16


def test_build_by_method_name_requires_the_skeleton() -> None:
    model = models.build("hourglass", input_size=[64, 64], stacks=1, features=16, num_joints=2, flip_pairs=[])
    assert isinstance(model, StackedHourglass)
    with pytest.raises(TypeError, match="num_joints"):
        models.build("hourglass", input_size=[64, 64], stacks=1, features=16, flip_pairs=[])


def test_accepted_kwargs_follow_kwargs_into_the_bases() -> None:
    names = registry.accepted_kwargs(SimpleBaseline)
    assert {"backbone", "pretrained", "deconv_channels", "sigma", "unbiased_encoding", "num_joints", "lr",
            "optimizer", "schedule", "flip_test", "decoder"} <= names
    assert "kwargs" not in names and "self" not in names


def test_build_random_never_downloads_even_when_asked() -> None:
    """``pretrained=False`` wins over the preset and over an override (the weights would need a download); other
    overrides pass through, and a method without a ``pretrained`` argument builds as ``build`` does."""
    model = registry.build_random("simplebaseline-res50", pretrained=True, input_size=[64, 64])
    assert model.hparams["pretrained"] is False and list(model.hparams["input_size"]) == [64, 64]
    assert "pretrained" not in registry.build_random("hourglass-tiny").hparams
