"""The batch rule: a recipe's learning rate belongs to a total batch; keep that pairing on any world size.

A recipe states ``optim.total_batch``, the total batch its learning rate and schedule were tuned
for (the source run's per-device batch x its devices, e.g. HRNet's 32 x 4 GPUs = 128). The
Trainer's ``devices`` defaults to ``auto``, so without a rule the total batch silently becomes
``data.batch_size`` x the visible GPUs while the LR stays the same. ``resolve`` compares the run's
effective batch (per-device batch x world size x gradient accumulation) with the recipe's and,
by ``optim.batch_rule``:

- ``accumulate`` (the default): when ``total_batch`` is a multiple of per-device batch x world size,
  accumulate ``total_batch / (per-device x world)`` batches per optimiser step and keep the LR. The
  optimiser then sees the source run's total batch, and each device's BatchNorm still sees the
  recipe's per-device batch (Goyal et al. keep it fixed for that reason, Sec. 2.3), so nothing the
  recipe tuned changes. Rescaling the LR changes the
  optimisation instead, by a rule derived for SGD (most recipes here use Adam or RMSprop, where it
  is a heuristic, as in mmengine's ``auto_scale_lr``) and approximate even there. When
  ``total_batch`` is not such a multiple it falls back to ``scale_lr`` and says so.
- ``scale_lr``: the linear scaling rule of Goyal et al. 2017 ("Accurate, Large Minibatch SGD:
  Training ImageNet in 1 Hour", Sec. 2.1): LR x effective / total_batch. Its gradual warm-up lasts a
  fixed number of epochs whatever the batch; PoseBench's warm-up and LR milestones are in epochs
  (``models.base.LRFactor``), i.e. a fixed number of samples, so they already follow the rule and
  stay as configured.
- ``off``: nothing changes; the mismatch is still logged and recorded.

The result depends only on the config and the world size, so a resumed run on the same world size
gets the same rule.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from benchmark.config import ConfigError

MODES: tuple[str, ...] = ("accumulate", "scale_lr", "off")
"""Values of ``optim.batch_rule``."""
APPLIED: tuple[str, ...] = ("accumulate", "scale_lr", "off", "none")
"""``BatchRule.mode``: what was done; ``none`` when the run's total batch already is the recipe's."""
CITATION = "linear scaling rule, Goyal et al. 2017"


@dataclasses.dataclass(frozen=True)
class BatchRule:
    """What the rule did to one run; ``as_dict()`` is the run record's ``batch_rule``.

    ``effective = per_device * world_size * accumulate`` is the run's total batch after the rule;
    ``lr`` the learning rate the optimiser gets (the configured one x ``lr_scale``).
    """

    total_batch: int
    per_device: int
    world_size: int
    accumulate: int
    effective: int
    lr: float
    lr_scale: float
    mode: str
    note: str

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def message(self) -> str:
        """The one line the runner logs (on rank zero)."""
        return (f"batch rule: the recipe assumes a total batch of {self.total_batch}; this run has "
                f"{self.per_device} per device x {self.world_size} device(s): {self.note}")


def _positive_int(value: Any, key: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{key} must be a positive integer, got {value!r}")
    return value


def resolve(*, total_batch: int | None, mode: str, per_device: int, world_size: int, accumulate: int,
            lr: float) -> BatchRule | None:
    """The rule for a run of ``per_device`` x ``world_size`` x ``accumulate`` (the configured accumulation)
    under ``optim.total_batch`` and ``optim.batch_rule=mode`` at base LR ``lr``; None without a ``total_batch``.
    """
    if mode not in MODES:
        raise ConfigError(f"optim.batch_rule must be one of {', '.join(MODES)}, got {mode!r}")
    if total_batch is None:
        return None
    total = _positive_int(total_batch, "optim.total_batch")
    b = _positive_int(per_device, "data.batch_size")
    w = _positive_int(world_size, "the world size")
    a = _positive_int(accumulate, "trainer.accumulate_grad_batches")
    effective = b * w * a

    def rule(mode_done: str, accumulate_done: int, scale: float, note: str) -> BatchRule:
        return BatchRule(total_batch=total, per_device=b, world_size=w, accumulate=accumulate_done,
                         effective=b * w * accumulate_done, lr=lr * scale, lr_scale=scale, mode=mode_done, note=note)

    def scaled(prefix: str) -> BatchRule:
        scale = effective / total
        return rule("scale_lr", a, scale,
                    f"{prefix}total {effective} instead of {total}, LR {lr:g} -> {lr * scale:g} (x{scale:g}, "
                    f"{CITATION}); warm-up and LR milestones are in epochs, i.e. samples, so they stay")

    accumulated = f" x {a} accumulated" if a != 1 else ""
    if effective == total:
        return rule("none", a, 1.0, f"total {b} x {w}{accumulated} = {total} as assumed, nothing changed "
                                    f"(LR {lr:g})")
    if mode == "off":
        return rule("off", a, 1.0, f"total {effective} instead of {total}; optim.batch_rule=off: nothing changed "
                                   f"(LR {lr:g}, tuned for {total})")
    if mode == "scale_lr":
        return scaled("")
    if total % (b * w) != 0:
        return scaled(f"{total} is not a multiple of {b} x {w} = {b * w}, so the LR is scaled instead of "
                      f"accumulating: ")
    steps = total // (b * w)
    replaced = f"; trainer.accumulate_grad_batches={a} overridden" if a != 1 else ""
    return rule("accumulate", steps, 1.0, f"accumulating {steps} batches per optimiser step "
                                          f"(total {total}{replaced}), LR unchanged ({lr:g})")
