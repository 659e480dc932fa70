"""``python -m benchmark data synth|show|check|fetch``: generate, inspect, validate and download datasets.

The work is done in ``datamodules/synthpose.py`` (synth), ``data_show.py``, ``data_check.py`` and
``fetch.py`` beside this module, each imported only when its sub-command runs.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The four sub-commands and their arguments."""
    sub = parser.add_subparsers(dest="data_command", required=True)

    synth = sub.add_parser("synth", help="write the SynthPose data set (MPII, COCO and LSP-extended formats)")
    synth.add_argument("--out", type=Path, required=True, help="output directory")
    synth.add_argument("--train", type=int, default=2000, help="number of training images")
    synth.add_argument("--val", type=int, default=500, help="number of validation images")
    synth.add_argument("--seed", type=int, default=0, help="generator seed (same seed, same bytes)")

    show = sub.add_parser("show", help="draw one sample (full image with box, and the crop) to a PNG")
    show.add_argument("--data", required=True, help="dataset name (mpii, coco, lsp, synthpose)")
    show.add_argument("--root", type=Path, required=True, help="dataset root directory")
    show.add_argument("--split", default="val", help="train or val")
    show.add_argument("--index", type=int, default=0, help="person record index")
    show.add_argument("--augment", action="store_true", help="apply the training augmentation")
    show.add_argument("--input-size", type=int, nargs=2, default=(256, 192), metavar=("H", "W"))
    show.add_argument("--out", type=Path, default=Path("outputs/sample.png"), help="PNG to write")

    check = sub.add_parser("check", help="validate a whole dataset and print its fingerprint")
    check.add_argument("--data", required=True, help="dataset name (mpii, coco, lsp, synthpose)")
    check.add_argument("--root", type=Path, required=True, help="dataset root directory")
    check.add_argument("--split", action="append", help="split(s) to check (default: all present)")

    fetch = sub.add_parser("fetch", help="download the publicly downloadable parts of a dataset")
    fetch.add_argument("dataset", choices=["coco", "mpii"])
    fetch.add_argument("--root", type=Path, required=True, help="where the dataset goes")
    fetch.add_argument("--only", action="append", help="fetch only these items (names as listed by --list)")
    fetch.add_argument("--list", action="store_true", help="list the items and their checksums, fetch nothing")


def run(args: argparse.Namespace) -> int:
    """Run the sub-command; ``check`` exits 1 when the dataset has problems."""
    if args.data_command == "synth":
        from datamodules.synthpose import generate_synthpose, generate_synthpose_lsp

        generate_synthpose(args.out, num_train=args.train, num_val=args.val, seed=args.seed, progress=True)
        generate_synthpose_lsp(args.out / "lsp", num_train=args.train, num_val=args.val, seed=args.seed, progress=True)
        return 0
    if args.data_command == "show":
        from benchmark.commands.data_show import show_sample

        path = show_sample(args.data, args.root, split=args.split, index=args.index, augment=args.augment,
                           input_size=tuple(args.input_size), out=args.out)
        log.info(f"wrote {path}")
        return 0
    if args.data_command == "check":
        from benchmark.commands.data_check import check_dataset

        report = check_dataset(args.data, args.root, splits=args.split)
        log.info(report.format())
        return 0 if report.ok else 1
    from benchmark.commands.fetch import fetch_dataset

    return fetch_dataset(args.dataset, args.root, only=args.only, list_only=args.list)
