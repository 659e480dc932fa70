"""The ``python -m benchmark`` command line: builds objects from arguments and hands over.

Each sub-command lives in its own module and is imported only when used, so ``--help`` is fast.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def _data_parser(sub: argparse._SubParsersAction) -> None:
    data = sub.add_parser("data", help="generate, inspect, validate and download datasets")
    data_sub = data.add_subparsers(dest="data_command", required=True)

    synth = data_sub.add_parser("synth", help="write the SynthPose data set (MPII and COCO formats)")
    synth.add_argument("--out", type=Path, required=True, help="output directory")
    synth.add_argument("--train", type=int, default=2000, help="number of training images")
    synth.add_argument("--val", type=int, default=500, help="number of validation images")
    synth.add_argument("--seed", type=int, default=0, help="generator seed (same seed, same bytes)")

    show = data_sub.add_parser("show", help="draw one sample (full image with box, and the crop) to a PNG")
    show.add_argument("--data", required=True, help="dataset name (mpii, coco, lsp, synthpose)")
    show.add_argument("--root", type=Path, required=True, help="dataset root directory")
    show.add_argument("--split", default="val", help="train or val")
    show.add_argument("--index", type=int, default=0, help="person record index")
    show.add_argument("--augment", action="store_true", help="apply the training augmentation")
    show.add_argument("--input-size", type=int, nargs=2, default=(256, 192), metavar=("H", "W"))
    show.add_argument("--out", type=Path, default=Path("outputs/sample.png"), help="PNG to write")

    check = data_sub.add_parser("check", help="validate a whole dataset and print its fingerprint")
    check.add_argument("--data", required=True, help="dataset name (mpii, coco, lsp, synthpose)")
    check.add_argument("--root", type=Path, required=True, help="dataset root directory")
    check.add_argument("--split", action="append", help="split(s) to check (default: all present)")

    fetch = data_sub.add_parser("fetch", help="download the publicly downloadable parts of a dataset")
    fetch.add_argument("dataset", choices=["coco", "mpii"])
    fetch.add_argument("--root", type=Path, required=True, help="where the dataset goes")
    fetch.add_argument("--only", action="append", help="fetch only these items (names as listed by --list)")
    fetch.add_argument("--list", action="store_true", help="list the items and their checksums, fetch nothing")


def _profile_parser(sub: argparse._SubParsersAction) -> None:
    profile = sub.add_parser("profile", help="measure speed against a floor measured in the same run")
    profile_sub = profile.add_subparsers(dest="profile_command", required=True)

    data = profile_sub.add_parser("data", help="per-sample loader time vs JPEG decode + one warpAffine")
    data.add_argument("--data", default="coco", help="dataset name")
    data.add_argument("--root", type=Path, default=None, help="dataset root (default: the COCO fixtures)")
    data.add_argument("--split", default="train")
    data.add_argument("--input-size", type=int, nargs=2, default=(256, 192), metavar=("H", "W"))
    data.add_argument("--samples", type=int, default=200, help="samples to time")

    codecs = profile_sub.add_parser("codecs", help="encode/decode time per sample, vectorised vs a loop")
    codecs.add_argument("--batch", type=int, default=64)
    codecs.add_argument("--joints", type=int, default=17)
    codecs.add_argument("--height", type=int, default=64)
    codecs.add_argument("--width", type=int, default=48)
    codecs.add_argument("--repeats", type=int, default=5)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m benchmark", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    _data_parser(sub)
    _profile_parser(sub)
    return parser


def _run_data(args: argparse.Namespace) -> int:
    if args.data_command == "synth":
        from datamodules.synthpose import generate_synthpose

        generate_synthpose(args.out, num_train=args.train, num_val=args.val, seed=args.seed, progress=True)
        return 0
    if args.data_command == "show":
        from benchmark.data_show import show_sample

        path = show_sample(
            args.data, args.root, split=args.split, index=args.index, augment=args.augment,
            input_size=tuple(args.input_size), out=args.out,
        )
        print(f"wrote {path}")
        return 0
    if args.data_command == "check":
        from benchmark.data_check import check_dataset

        report = check_dataset(args.data, args.root, splits=args.split)
        print(report.format())
        return 0 if report.ok else 1
    if args.data_command == "fetch":
        from benchmark.fetch import fetch_dataset

        return fetch_dataset(args.dataset, args.root, only=args.only, list_only=args.list)
    raise AssertionError(args.data_command)


def _run_profile(args: argparse.Namespace) -> int:
    if args.profile_command == "data":
        from benchmark.profile_data import profile_data

        profile_data(args.data, args.root, split=args.split, input_size=tuple(args.input_size), samples=args.samples)
        return 0
    if args.profile_command == "codecs":
        from benchmark.profile_codecs import profile_codecs

        profile_codecs(batch=args.batch, joints=args.joints, height=args.height, width=args.width, repeats=args.repeats)
        return 0
    raise AssertionError(args.profile_command)


def main(argv: list[str] | None = None) -> int:
    """Parse ``argv`` and run the sub-command; bad input exits with its message, not a traceback."""
    from datamodules.records import DatasetError

    args = build_parser().parse_args(argv)
    handlers = {"data": _run_data, "profile": _run_profile}
    try:
        return handlers[args.command](args)
    except (DatasetError, FileNotFoundError, KeyError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
