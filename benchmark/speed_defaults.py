"""Measured speed defaults: channels-last memory format and bf16-mixed precision, per method and accelerator.

Every ``benchmark/configs/method/<m>.yaml`` sets ``trainer.channels_last: auto`` and ``trainer.precision: auto``;
the runner (``benchmark/train.py``) resolves ``auto`` here, from ``MEASURED``: an option is on for a method on an
accelerator only where a measurement found its training step at most ``FASTER`` of the time without it, and CPU bf16
only on a CPU with native bf16 instructions (``cpu_has_native_bf16``: the rows were measured on one; elsewhere bf16
is emulated and the measured gain does not carry over). An option never measured, or measured slower, is off. A
recipe or the command line that sets ``true``/``false`` or a precision (``trainer.precision=bf16-mixed``) wins; the
run record's ``speed`` field says which value was used and why.

``python -m benchmark profile layouts`` measures the CPU rows (one thread, alternating, best of N,
``benchmark/commands/profile_layouts.py``); ``python -m benchmark gpu-check`` measures the CUDA rows and prints them
in this table's form to paste (docs/configuration.md, "Speed defaults").
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

AUTO = "auto"
FASTER = 0.95
"""An option is a default only when its step takes at most 95% of the time without it: smaller gains are within
the run-to-run noise of a shared machine."""
OPTIONS = ("channels_last", "bf16")
ACCELERATORS = ("cpu", "cuda")
OFF_PRECISION = "32-true"
ON_PRECISION = "bf16-mixed"


@dataclass(frozen=True)
class Measurement:
    """One measured training-step time ratio (with the option / without it) and how it was measured."""

    ratio: float
    date: str
    setting: str

    @property
    def on(self) -> bool:
        return self.ratio <= FASTER


_CPU = ("demo preset's variant, input and batch, 1 thread, alternating (profile layouts); the slower of two runs on "
        "2026-12-06, best of 7 with other jobs on the machine and best of 5 on the idle machine")
_BF16 = ("bf16-mixed / fp32 in the layout of the CPU's channels-last default, demo preset's variant, input and batch, "
         "1 thread, alternating (profile layouts), AMD EPYC with AVX512-BF16; the slower of two runs on 2026-12-06, "
         "best of 5")
MEASURED: dict[tuple[str, str, str], Measurement] = {
    ("cpm", "cpu", "channels_last"): Measurement(0.70, "2026-12-06", f"{_CPU} (0.70, 0.69)"),
    ("deeppose", "cpu", "channels_last"): Measurement(0.89, "2026-12-06", f"{_CPU} (0.89, 0.88)"),
    ("hourglass", "cpu", "channels_last"): Measurement(0.84, "2026-12-06", f"{_CPU} (0.66, 0.84)"),
    ("grmi", "cpu", "channels_last"): Measurement(1.10, "2026-12-06", f"{_CPU} (1.10, 1.09; another run 1.01)"),
    ("hrnet", "cpu", "channels_last"): Measurement(0.79, "2026-12-06", f"{_CPU} (0.75, 0.79)"),
    ("ief", "cpu", "channels_last"): Measurement(0.87, "2026-12-06", f"{_CPU} (0.79, 0.87)"),
    ("simplebaseline", "cpu", "channels_last"):
        Measurement(0.78, "2026-12-06", f"{_CPU} (0.78, 0.73); simplebaseline-res50 256x192 batch 4: 0.83, 0.93"),
    ("tompson", "cpu", "channels_last"): Measurement(1.00, "2026-12-06", f"{_CPU} (0.87, 1.00)"),
    ("visreg", "cpu", "channels_last"): Measurement(0.89, "2026-12-06", f"{_CPU} (0.89, 0.81; another run 0.72)"),
    ("cpm", "cpu", "bf16"): Measurement(0.66, "2026-12-06", f"{_BF16} (0.63, 0.66)"),
    ("deeppose", "cpu", "bf16"): Measurement(0.83, "2026-12-06", f"{_BF16} (0.83, 0.77)"),
    ("grmi", "cpu", "bf16"): Measurement(0.81, "2026-12-06", f"{_BF16} (0.79 channels-last, 0.81)"),
    ("hourglass", "cpu", "bf16"): Measurement(1.06, "2026-12-06", f"{_BF16} (1.06, 1.04)"),
    ("hrnet", "cpu", "bf16"): Measurement(0.69, "2026-12-06", f"{_BF16} (0.69, 0.69)"),
    ("ief", "cpu", "bf16"): Measurement(0.79, "2026-12-06", f"{_BF16} (0.78, 0.79)"),
    ("simplebaseline", "cpu", "bf16"):
        Measurement(0.66, "2026-12-06", f"{_BF16} (0.66, 0.66); simplebaseline-res50 256x192 batch 4: 0.54"),
    ("tompson", "cpu", "bf16"): Measurement(0.78, "2026-12-06", f"{_BF16} (0.78 channels-last, 0.78)"),
    ("visreg", "cpu", "bf16"): Measurement(0.88, "2026-12-06", f"{_BF16} (0.88, 0.86)"),
}
"""``(method, accelerator, option) -> Measurement``; a missing row is unmeasured (off). No CUDA row yet: paste the
rows ``python -m benchmark gpu-check`` prints."""


NATIVE_BF16_FLAGS = ("avx512_bf16", "amx_bf16")
"""CPU flags (Linux ``/proc/cpuinfo``) of native bf16 arithmetic; without them bf16 matmuls and convolutions are
emulated."""


@functools.lru_cache(maxsize=1)
def cpu_has_native_bf16(cpuinfo: str = "/proc/cpuinfo") -> bool:
    """Whether this CPU lists a ``NATIVE_BF16_FLAGS`` flag; False where ``cpuinfo`` cannot be read (not Linux)."""
    try:
        flags = Path(cpuinfo).read_text(errors="replace").split()
    except OSError:
        return False
    return any(flag in flags for flag in NATIVE_BF16_FLAGS)


def accelerator_of(setting: str, cuda_available: bool) -> str:
    """``cpu`` or ``cuda``: the accelerator ``trainer.accelerator`` (cpu, gpu, cuda, auto, ...) trains on."""
    if setting == "cpu":
        return "cpu"
    if setting in ("gpu", "cuda"):
        return "cuda"
    return "cuda" if cuda_available else "cpu"


def decide(method: str, accelerator: str, option: str) -> tuple[bool, str]:
    """``(on, why)`` of the measured default of ``option`` for ``method`` on ``accelerator``."""
    measured = MEASURED.get((method, accelerator, option))
    if measured is None:
        return False, f"speed default: {option} unmeasured for {method} on {accelerator}, off"
    if accelerator == "cpu" and option == "bf16" and measured.on and not cpu_has_native_bf16():
        return False, (f"speed default: bf16 off for {method} on this cpu: it lacks native bf16 instructions "
                       f"({' / '.join(NATIVE_BF16_FLAGS)}); the x{measured.ratio:.2f} was measured on one with them")
    state = "on" if measured.on else "off"
    return measured.on, (f"speed default: {option} {state} for {method} on {accelerator} (step x{measured.ratio:.2f}, "
                         f"measured {measured.date})")


def resolve(method: str, accelerator: str, channels_last: Any, precision: Any) -> dict[str, dict[str, Any]]:
    """``{"channels_last": {"value", "source"}, "precision": {"value", "source"}}``: ``auto`` resolved by
    ``decide``, any other value kept with source ``config``."""
    if channels_last == AUTO:
        on, why = decide(method, accelerator, "channels_last")
        layout = {"value": on, "source": why}
    else:
        layout = {"value": bool(channels_last), "source": "config"}
    if precision == AUTO:
        on, why = decide(method, accelerator, "bf16")
        mixed = {"value": ON_PRECISION if on else OFF_PRECISION, "source": why}
    else:
        mixed = {"value": str(precision), "source": "config"}
    return {"channels_last": layout, "precision": mixed}


def table_row(method: str, accelerator: str, option: str, ratio: float, date: str, setting: str) -> str:
    """One ``MEASURED`` entry as Python source, for gpu-check to print and a maintainer to paste."""
    return (f'    ("{method}", "{accelerator}", "{option}"):\n'
            f'        Measurement({ratio:.2f}, "{date}", "{setting}"),')
