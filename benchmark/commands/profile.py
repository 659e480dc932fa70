"""``python -m benchmark profile data|loader|codecs|model|layouts``: speed, against a floor measured in the same run.

The work is done in ``profile_data.py``, ``profile_loader.py``, ``profile_codecs.py``, ``profile_layouts.py`` and
``summary.py`` (``profile_model``) beside this module, each imported only when its sub-command runs.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

log = logging.getLogger(__name__)

MODEL_SETTINGS = ("method", "batch_size", "steps", "device")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The sub-commands and their arguments."""
    sub = parser.add_subparsers(dest="profile_command", required=True)

    data = sub.add_parser("data", help="per-sample loader time vs JPEG decode + one warpAffine, with and without "
                          "reduced decoding")
    data.add_argument("--data", nargs="+", default=("coco", "mpii", "synthpose"), help="dataset names, one report each")
    data.add_argument("--root", type=Path, default=None,
                      help="dataset root (default: the COCO and MPII fixtures, data/synthpose-demo)")
    data.add_argument("--split", default="train")
    data.add_argument("--input-size", type=int, nargs=2, default=None, metavar=("H", "W"),
                      help="default: 256 192 for COCO, 256 256 for MPII and SynthPose")
    data.add_argument("--samples", type=int, default=200, help="samples to time")

    loader = sub.add_parser("loader", help="train-loader img/s with 0, 1 and 2 workers, ratios to 0 workers")
    loader.add_argument("--data", default="synthpose", help="dataset name")
    loader.add_argument("--root", type=Path, default=Path("data/synthpose-demo"),
                        help="dataset root (SynthPose is generated there when absent)")
    loader.add_argument("--format", default="mpii", help="SynthPose only: mpii or coco")
    loader.add_argument("--input-size", type=int, nargs=2, default=(256, 256), metavar=("H", "W"))
    loader.add_argument("--batch-size", type=int, default=32)
    loader.add_argument("--epochs", type=int, default=3, help="timed epochs per setting (after a warm-up epoch)")
    loader.add_argument("--workers", type=int, nargs="+", default=(0, 1, 2), help="num_workers settings to time")
    loader.add_argument("--reduced-decode", action=argparse.BooleanOptionalAction, default=True,
                        help="decode JPEGs at reduced resolution where the crop allows (PoseDataModule's default)")

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

    layouts = sub.add_parser("layouts", help="CPU train step of every method, channels_last vs contiguous and "
                             "bf16-mixed vs fp32 (the measurements behind benchmark/speed_defaults.py)")
    layouts.add_argument("--paper", nargs="*", default=["simplebaseline-res50"], metavar="VARIANT",
                         help="paper variants to measure too, at batch 4 (bare --paper: none)")
    layouts.add_argument("--method", action="append", default=[], help="only this method's demo variant (repeatable)")
    layouts.add_argument("--repeats", type=int, default=5, help="best of this many alternating steps")
    layouts.add_argument("--threads", type=int, default=1, help="torch threads")


def run(args: argparse.Namespace) -> int:
    """Run the sub-command; it prints its own report."""
    if args.profile_command == "data":
        from benchmark.commands.profile_data import profile_data

        for data in args.data:
            profile_data(data, args.root, split=args.split, samples=args.samples,
                         input_size=None if args.input_size is None else tuple(args.input_size))
        return 0
    if args.profile_command == "loader":
        from benchmark.commands.profile_loader import profile_loader

        profile_loader(args.data, args.root, args.format, tuple(args.input_size), batch_size=args.batch_size,
                       epochs=args.epochs, workers=tuple(args.workers), reduced_decode=args.reduced_decode)
        return 0
    if args.profile_command == "codecs":
        import torch

        from benchmark.commands.profile_codecs import profile_codecs

        if args.threads:
            torch.set_num_threads(args.threads)
        profile_codecs(batch=args.batch, joints=args.joints, height=args.height, width=args.width, repeats=args.repeats)
        return 0
    if args.profile_command == "layouts":
        from benchmark.commands.profile_layouts import profile_layouts

        profile_layouts(tuple(args.paper), repeats=args.repeats, threads=args.threads, methods=tuple(args.method))
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
