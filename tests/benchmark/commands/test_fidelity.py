"""The fidelity table (benchmark/commands/fidelity.py): generated from the recipes, complete, and consistent with
them."""

from __future__ import annotations

import pytest

from benchmark.cli import main
from benchmark.commands import fidelity
from benchmark.commands.fidelity import FidelityError, Row
from benchmark.config import load_config, to_dict

PAPER_RECIPES = fidelity.paper_recipes()


@pytest.fixture(scope="module")
def hrnet() -> fidelity.Context:
    return fidelity.context("hrnet_w32_coco_256x192")


def test_the_committed_table_is_what_the_recipes_generate():
    assert fidelity.DOC_PATH.read_text() == fidelity.render(), (
        "docs/fidelity.md is stale: a recipe or a model docstring changed; run make fidelity")


@pytest.mark.parametrize("name", PAPER_RECIPES)
def test_every_paper_recipe_has_a_complete_and_consistent_block(name: str) -> None:
    assert fidelity.problems([name]) == []


def test_paper_recipes_are_every_recipe_but_the_demo_presets():
    assert "hourglass8_mpii_256" in PAPER_RECIPES and len(PAPER_RECIPES) == 13
    assert not [name for name in PAPER_RECIPES if name.startswith("demo_")]


def test_the_block_is_kept_out_of_the_run_config():
    assert fidelity.read_rows("hrnet_w32_coco_256x192")
    assert "fidelity" not in to_dict(load_config(["recipe=hrnet_w32_coco_256x192"]))


def test_values_that_differ_need_a_reason_and_equal_ones_refuse_one(hrnet):
    assert fidelity.row_problems(Row("optim.lr", 1e-3, "yaml"), hrnet) == []
    differs = fidelity.row_problems(Row("optim.lr", 2e-3, "yaml"), hrnet)
    assert differs == ["PoseBench's 0.001 differs from the source's 0.002: give the reason as 'deviation'"]
    assert fidelity.row_problems(Row("optim.lr", 2e-3, "yaml", deviation="ours"), hrnet) == []
    stale = fidelity.row_problems(Row("optim.lr", 1e-3, "yaml", deviation="ours"), hrnet)
    assert stale == ["stale deviation: PoseBench's 0.001 equals the source's; remove 'deviation'"]


def test_unverified_sources_are_not_compared(hrnet):
    for deviation in (None, "PoseBench's choice"):
        assert fidelity.row_problems(Row("optim.lr", "unverified: not published", "paper", deviation), hrnet) == []


def test_a_key_must_resolve_and_only_code_facts_state_their_value(hrnet):
    assert "does not resolve" in fidelity.row_problems(Row("optim.learning_rate", 1e-3, "yaml"), hrnet)[0]
    assert "does not resolve" in fidelity.row_problems(Row("model.kwargs.no_such_argument", 1, "yaml"), hrnet)[0]
    written = fidelity.row_problems(Row("optim.lr", 1e-3, "yaml", ours=1e-3, where="benchmark/config.py"), hrnet)
    assert written == ["'ours'/'where' are only for settings fixed in code; PoseBench's value is read, not written"]
    assert "needs 'ours'" in fidelity.row_problems(Row("input_order", "RGB", "code", ours="RGB"), hrnet)[0]
    assert "names no file" in fidelity.row_problems(Row("input_order", "RGB", "code", ours="RGB", where="nope.py"),
                                                    hrnet)[0]
    assert fidelity.row_problems(Row("input_order", "RGB", "code", ours="RGB", where="datamodules/mpii.py"),
                                 hrnet) == []


def test_code_settings_are_read_from_the_model_class(hrnet):
    cpm, deeppose = fidelity.context("cpm_mpii_368"), fidelity.context("deeppose_mpii")
    value = {name: lambda ctx, n=name: fidelity.resolve(Row(n, None, "x"), ctx).ours for name in fidelity.CODE_SETTINGS}
    assert (value["stride"](hrnet), value["stride"](cpm), value["stride"](deeppose)) == (
        4, 8, "none (coordinate regression)")
    assert value["flip_shift"](hrnet) == "1 px right"  # msra: HRNet's SHIFT_HEATMAP
    assert value["flip_shift"](cpm) == "none"
    assert value["loss"](deeppose).startswith("SmoothL1")  # the variant preset's loss="smooth_l1"
    assert value["loss"](cpm).startswith("Euclidean") and value["pretrained"](cpm) is False
    assert value["pretrained"](hrnet) == "imagenet"
    assert fidelity.resolve(Row("stride", 4, "x"), hrnet).origin == "models/hrnet.py"


def test_model_kwargs_are_what_the_model_is_built_with():
    cpm = fidelity.context("cpm_mpii_368")
    assert fidelity.resolve(Row("model.kwargs.sigma", None, "x"), cpm).ours == 0.875  # the recipe
    assert fidelity.resolve(Row("model.kwargs.stages", None, "x"), cpm).ours == 6  # the variant preset
    assert fidelity.resolve(Row("model.kwargs.centre_sigma", None, "x"), cpm).ours == 21.0  # the constructor
    assert not fidelity.resolve(Row("model.kwargs.flip_test", None, "x"), cpm).found  # a config section's


def test_iterations_are_converted_to_epochs_within_half_an_epoch(hrnet):
    def row(source):
        return Row("trainer.max_epochs", source, "solver", units="iterations", batch=128, samples=149813)

    assert fidelity.in_epochs(row(245796)) == pytest.approx(210.0, abs=0.01)
    assert fidelity.row_problems(row(245796), hrnet) == []  # 210.0 epochs vs 210
    assert fidelity.row_problems(row(246360), hrnet) == []  # 210.49 epochs: within half an epoch
    assert fidelity.row_problems(row(246600), hrnet) == [  # 210.7 epochs
        "PoseBench's 210 differs from the source's 246600 iterations (= 210.7 epochs: batch 128, 149,813 samples "
        "per epoch): give the reason as 'deviation'"]
    assert "'units'" in fidelity.row_problems(Row("trainer.max_epochs", 1, "x", units="iterations"), hrnet)[0]


def test_every_required_setting_needs_a_row(hrnet):
    rows = fidelity.read_rows("hrnet_w32_coco_256x192")
    assert fidelity.missing_settings(rows, hrnet) == []
    without_lr = [row for row in rows if row.setting != "optim.lr"]
    assert fidelity.missing_settings(without_lr, hrnet) == ["no row for LR (optim.lr)"]
    deeppose = fidelity.context("deeppose_mpii")  # coordinates: no stride, sigma or decoder rows needed
    assert fidelity.missing_settings(fidelity.read_rows("deeppose_mpii"), deeppose) == []


def test_a_malformed_row_names_the_recipe_row_and_keys():
    with pytest.raises(FidelityError, match=r"recipe r, fidelity row 3 \(optim.lr\): unknown keys \['sorce'\], "
                                            r"missing keys \['source'\]"):
        fidelity._row("r", 3, {"setting": "optim.lr", "sorce": 1, "cite": "x"})


def test_values_compare_by_type():
    assert fidelity.same([256, 192], (256, 192)) and fidelity.same(2, 2.0)
    assert not fidelity.same(True, 1) and not fidelity.same(0.0, False) and not fidelity.same("msra", "udp")


def test_each_model_docstrings_deviations_are_quoted():
    text = fidelity.render(["hrnet_w32_coco_256x192"])
    assert "### `models/hrnet.py`" in text and fidelity.docstring_deviations(fidelity.context(
        "hrnet_w32_coco_256x192").cls).startswith("Deviations:")
    assert "| `model.kwargs.sigma` | 2 | 2 |" in text


def test_the_command_prints_the_table_and_reports_problems(capsys):
    status = main(["fidelity"])
    captured = capsys.readouterr()
    assert captured.out == fidelity.render()
    problems = fidelity.problems()
    assert status == (1 if problems else 0)
    assert captured.err == "".join(f"error: {problem}\n" for problem in problems)


def test_the_shared_settings_read_each_recipes_value_and_name_the_odd_ones_out(monkeypatch) -> None:
    """The "Settings every recipe shares" rows show PoseBench's value as each recipe's config resolves it: one value
    for all, or each value with the recipes that have it."""
    names = ["hrnet_w32_coco_256x192", "tompson_mpii"]
    lines = fidelity.render(names).splitlines()
    for shared in fidelity.SHARED:
        row = next(line for line in lines if line.startswith(f"| `{shared.key}` |"))
        value = fidelity._fmt(fidelity.lookup(fidelity.context(names[0]).config, shared.key))
        assert row.split(" | ")[2] == value  # the same for both recipes: no names
    original = fidelity.context

    def one_off(name: str) -> fidelity.Context:
        ctx = original(name)
        if name == "tompson_mpii":
            ctx.config["data"]["reduced_decode"] = False
        return ctx

    monkeypatch.setattr(fidelity, "context", one_off)
    row = next(line for line in fidelity.render(names).splitlines() if line.startswith("| `data.reduced_decode` |"))
    assert row.split(" | ")[2] == "false (tompson_mpii); true (hrnet_w32_coco_256x192)"
