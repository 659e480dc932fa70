"""``python -m benchmark profile data|codecs|model``: speed, measured against a floor measured in the same run.

The work is done in ``profile_data.py``, ``profile_codecs.py`` and ``summary.py`` (``profile_model``)
beside this module, each imported only when its sub-command runs.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

log = logging.getLogger(__name__)

MODEL_SETTINGS = ("method", "batch_size", "steps", "device")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The three sub-commands and their arguments."""
    sub = parser.add_subparsers(dest="profile_command", required=True)

    data = sub.add_parser("data", help="per-sample loader time vs JPEG decode + one warpAffine")
    data.add_argument("--data", default="coco", help="dataset name")
    data.add_argument("--root", type=Path, default=None, help="dataset root (default: the COCO fixtures)")
    data.add_argument("--split", default="train")
    data.add_argument("--input-size", type=int, nargs=2, default=(256, 192), metavar=("H", "W"))
    data.add_argument("--samples", type=int, default=200, help="samples to time")

    codecs = sub.add_parser("codecs", help="encode/decode time per sample, vectorised vs a loop")
    codecs.add_argument("--batch", type=int, default=64)
    codecs.add_argument("--joints", type=int, default=17)
    codecs.add_argument("--height", type=int, default=64)
    codecs.add_argument("--width", type=int, default=48)
    codecs.add_argument("--repeats", type=int, default=5)
    codecs.add_argument("--threads", type=int, default=None,
                        help="torch threads for the vectorised code (default: torch's, all cores; the loop uses one)")

    model = sub.add_parser(
        "model", help="images/s forward and forward+backward, peak memory (method=VARIANT [batch_size=N steps=N])"
    )
    model.add_argument("settings", nargs="*", metavar="key=value",
                       help="method=VARIANT (required), batch_size=8, steps=5, device=cpu|cuda")


def run(args: argparse.Namespace) -> int:
    """Run the sub-command; it prints its own report."""
    if args.profile_command == "data":
        from benchmark.commands.profile_data import profile_data

        profile_data(args.data, args.root, split=args.split, input_size=tuple(args.input_size), samples=args.samples)
        return 0
    if args.profile_command == "codecs":
        import torch

        from benchmark.commands.profile_codecs import profile_codecs

        if args.threads:
            torch.set_num_threads(args.threads)
        profile_codecs(batch=args.batch, joints=args.joints, height=args.height, width=args.width, repeats=args.repeats)
        return 0
    return _profile_model(args.settings)


def _profile_model(settings: list[str]) -> int:
    """``profile model key=value ...``: the report of ``summary.profile_model`` as JSON."""
    from benchmark.commands.summary import profile_model
    from benchmark.errors import PoseBenchError

    usage = f"profile model takes method=VARIANT [batch_size=N steps=N device=D]; got {settings}"
    values = dict(item.split("=", 1) for item in settings if "=" in item)
    unknown = sorted(set(values) - set(MODEL_SETTINGS)) + [s for s in settings if "=" not in s]
    if unknown or "method" not in values:
        raise PoseBenchError(usage)
    try:
        batch_size, steps = int(values.get("batch_size", 8)), int(values.get("steps", 5))
    except ValueError:
        raise PoseBenchError(f"{usage} (batch_size and steps are integers)") from None
    report = profile_model(values["method"], batch_size=batch_size, steps=steps, device=values.get("device"))
    log.info(json.dumps(report, indent=2))
    return 0
