"""The one verdict on a published reference: is our number within its tolerance, and is it comparable?

A reference measured on another split than the one PoseBench scores (a test-server number; PoseBench
scores val) is not comparable: ``reproduced`` is None, neither a success nor a failure. The training
run's record, the leaderboard and ``verify-checkpoints`` all call ``compare``.
"""

from __future__ import annotations

from typing import Any

from benchmark.errors import PoseBenchError

REFERENCE_SPLITS = ("val", "test")
"""Where a published number was measured: ``val`` (comparable) or ``test`` (a test-server number)."""


def compare(value: float, ours: float | None, tolerance: float | None, split: str = "val") -> dict[str, Any]:
    """``{ours, delta, comparable, reproduced}`` for ``ours`` against the published ``value``.

    ``reproduced`` is True when ``|ours - value| <= tolerance``, False when outside it (or when ``ours`` or
    ``tolerance`` is missing), and None when ``split`` is not ``val``. ``delta`` is ``ours - value`` or None.
    """
    if split not in REFERENCE_SPLITS:
        raise PoseBenchError(f"reference.split must be one of {', '.join(REFERENCE_SPLITS)}, got {split!r}")
    comparable = split == "val"
    reproduced = bool(ours is not None and tolerance is not None and abs(ours - value) <= tolerance)
    return {
        "ours": ours,
        "delta": None if ours is None else ours - value,
        "comparable": comparable,
        "reproduced": reproduced if comparable else None,
    }
