"""Measured speed defaults: ``auto`` resolves from the table per method and accelerator; an explicit value wins."""

from __future__ import annotations

import pytest

from benchmark.config import CONFIG_DIR, available, load_config, read_yaml
from benchmark.speed_defaults import (
    ACCELERATORS,
    FASTER,
    MEASURED,
    OPTIONS,
    Measurement,
    accelerator_of,
    decide,
    resolve,
)
from benchmark.train import RunError, check_run_config, speed_settings, trainer_arguments
from models import METHODS


@pytest.mark.parametrize("method", available("method"))
def test_every_method_file_leaves_both_settings_to_the_measurements(method):
    trainer = read_yaml(CONFIG_DIR / "method" / f"{method}.yaml")["trainer"]
    assert (trainer["channels_last"], trainer["precision"]) == ("auto", "auto")


def test_every_row_names_a_method_an_accelerator_and_an_option():
    assert all(m in METHODS and a in ACCELERATORS and o in OPTIONS for m, a, o in MEASURED)
    assert all(row.ratio > 0 and len(row.date) == 10 for row in MEASURED.values())


def test_an_option_is_on_only_when_measured_at_least_five_percent_faster():
    assert Measurement(FASTER, "2026-12-06", "x").on and not Measurement(0.96, "2026-12-06", "x").on
    assert not Measurement(1.3, "2026-12-06", "x").on  # slower: never a default


def test_auto_resolves_from_the_table_and_unmeasured_is_off(monkeypatch):
    monkeypatch.setitem(MEASURED, ("hourglass", "cpu", "channels_last"), Measurement(0.66, "2026-12-06", "x"))
    monkeypatch.setitem(MEASURED, ("hourglass", "cuda", "bf16"), Measurement(0.5, "2026-12-07", "y"))
    monkeypatch.setitem(MEASURED, ("hrnet", "cpu", "channels_last"), Measurement(1.1, "2026-12-06", "z"))
    monkeypatch.delitem(MEASURED, ("hourglass", "cpu", "bf16"), raising=False)
    cpu = resolve("hourglass", "cpu", "auto", "auto")
    assert cpu["channels_last"] == {"value": True, "source": "speed default: channels_last on for hourglass on cpu "
                                                             "(step x0.66, measured 2026-12-06)"}
    assert cpu["precision"] == {"value": "32-true",
                                "source": "speed default: bf16 unmeasured for hourglass on cpu, off"}
    assert resolve("hourglass", "cuda", "auto", "auto")["precision"]["value"] == "bf16-mixed"
    assert decide("hrnet", "cpu", "channels_last")[0] is False  # measured slower
    assert decide("hourglass", "cuda", "channels_last") == (
        False, "speed default: channels_last unmeasured for hourglass on cuda, off")


def test_an_explicit_setting_wins_over_the_table(monkeypatch):
    monkeypatch.setitem(MEASURED, ("hourglass", "cpu", "channels_last"), Measurement(0.66, "2026-12-06", "x"))
    explicit = resolve("hourglass", "cpu", False, "bf16-mixed")
    assert explicit == {"channels_last": {"value": False, "source": "config"},
                        "precision": {"value": "bf16-mixed", "source": "config"}}


@pytest.mark.parametrize(("setting", "cuda", "expected"), [
    ("cpu", True, "cpu"), ("gpu", False, "cuda"), ("cuda", True, "cuda"),
    ("auto", True, "cuda"), ("auto", False, "cpu"),
])
def test_the_accelerator_is_the_one_the_trainer_will_use(setting, cuda, expected):
    assert accelerator_of(setting, cuda) == expected


def test_the_runner_resolves_a_method_files_auto_and_keeps_a_command_line_value(monkeypatch):
    monkeypatch.setitem(MEASURED, ("hourglass", "cpu", "channels_last"), Measurement(0.66, "2026-12-06", "x"))
    auto = load_config(["method=hourglass-tiny", "trainer.accelerator=cpu"])
    assert (auto.trainer.channels_last, auto.trainer.precision) == ("auto", "auto")
    assert speed_settings(auto)["channels_last"]["value"] is True
    assert trainer_arguments(auto)["precision"] == "32-true"  # Lightning never sees "auto"
    explicit = load_config(["method=hourglass-tiny", "trainer.accelerator=cpu", "trainer.channels_last=false"])
    assert speed_settings(explicit)["channels_last"] == {"value": False, "source": "config"}
    recipe = load_config(["recipe=demo_hourglass", "trainer.accelerator=cpu"])  # a recipe that says nothing: auto
    assert speed_settings(recipe)["channels_last"]["value"] is True


@pytest.mark.parametrize(("override", "message"), [
    ("trainer.channels_last=sometimes", r"trainer.channels_last='sometimes': choose true, false or auto"),
    ("trainer.precision=16-true", r"trainer.precision=16-true: not supported; choose one of 32-true, .* or auto"),
])
def test_a_value_neither_auto_nor_valid_is_refused_naming_the_key(override, message):
    with pytest.raises(RunError, match=message):
        check_run_config(load_config(["method=hourglass-tiny", override]))


def test_cpu_bf16_needs_native_bf16_instructions(monkeypatch, tmp_path):
    """The CPU bf16 rows were measured on a CPU with avx512_bf16; on one without it the default stays fp32."""
    from benchmark import speed_defaults

    with_flag, without = tmp_path / "with", tmp_path / "without"
    with_flag.write_text("processor\t: 0\nflags\t\t: fpu sse avx2 avx512f avx512_bf16 avx512_vnni\n")
    without.write_text("processor\t: 0\nflags\t\t: fpu sse avx2 avx512f avx512bw avx512_vnni\n")
    assert speed_defaults.cpu_has_native_bf16.__wrapped__(str(with_flag)) is True
    assert speed_defaults.cpu_has_native_bf16.__wrapped__(str(without)) is False
    assert speed_defaults.cpu_has_native_bf16.__wrapped__(str(tmp_path / "absent")) is False  # not Linux: off
    monkeypatch.setitem(MEASURED, ("hourglass", "cpu", "bf16"), Measurement(0.5, "2026-12-07", "x"))
    monkeypatch.setattr(speed_defaults, "cpu_has_native_bf16", lambda: True)
    assert resolve("hourglass", "cpu", "auto", "auto")["precision"]["value"] == "bf16-mixed"
    monkeypatch.setattr(speed_defaults, "cpu_has_native_bf16", lambda: False)
    off = resolve("hourglass", "cpu", "auto", "auto")["precision"]
    assert off["value"] == "32-true" and "lacks native bf16" in off["source"] and "x0.50" in off["source"]
    assert resolve("hourglass", "cuda", "auto", "auto")["precision"]["value"] == "32-true"  # unmeasured on cuda
    monkeypatch.setitem(MEASURED, ("hourglass", "cuda", "bf16"), Measurement(0.5, "2026-12-07", "x"))
    assert resolve("hourglass", "cuda", "auto", "auto")["precision"]["value"] == "bf16-mixed"  # no CPU check there
