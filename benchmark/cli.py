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
    codecs.add_argument("--threads", type=int, default=None,
                        help="torch threads for the vectorised code (default: torch's, all cores; the loop uses one)")

    model = profile_sub.add_parser(
        "model", help="images/s forward and forward+backward, peak memory (method=VARIANT [batch_size=N steps=N])"
    )
    model.add_argument("settings", nargs="*", metavar="key=value",
                       help="method=VARIANT (required), batch_size=8, steps=5, device=cpu|cuda")


def _run_parsers(sub: argparse._SubParsersAction) -> None:
    train = sub.add_parser("train", help="train and test a method: train method=NAME data=NAME [key=value ...]")
    train.add_argument("overrides", nargs="*", metavar="key=value",
                       help="group selectors (method=, data=, recipe=) and config overrides (trainer.max_epochs=2)")
    evaluate = sub.add_parser("evaluate", help="test a checkpoint: evaluate ckpt=PATH [key=value ...]")
    evaluate.add_argument("overrides", nargs="*", metavar="key=value", help="ckpt=PATH and config overrides")
    summary = sub.add_parser("summary", help="parameters and GFLOPs of every model variant at its input size")
    summary.add_argument("--json", action="store_true", help="print JSON instead of a Markdown table")
    summary.add_argument("--variant", action="append", help="only these variants (repeatable)")

    rerun = sub.add_parser("rerun", help="train a run again from its run record (same config and seed)")
    rerun.add_argument("record", type=Path, help="a run record, e.g. results/runs/<run_id>.json")
    rerun.add_argument("overrides", nargs="*", metavar="key=value", help="e.g. data.root=/datasets/mpii")
    rerun.add_argument("--allow-other-data", action="store_true",
                       help="run even when the dataset's fingerprint differs from the record's")

    board = sub.add_parser("leaderboard", help="regenerate LEADERBOARD.md, leaderboard.csv and the plot from run records")
    board.add_argument("--records", type=Path, default=Path("results/runs"), help="directory of run records")
    board.add_argument("--out", type=Path, default=Path("results"), help="where the leaderboard goes")
    board.add_argument("--title", default="PoseBench leaderboard")

    fidelity = sub.add_parser("fidelity", help="the fidelity table (docs/fidelity.md): each paper recipe's settings "
                              "beside its source's, from the recipes' fidelity blocks")
    fidelity.add_argument("--write", action="store_true", help="write docs/fidelity.md instead of printing it")

    demo = sub.add_parser("demo", help="train the tiny preset of every method on SynthPose (CPU) and write "
                          "results/demo/LEADERBOARD.md")
    demo.add_argument("--method", action="append", help="only these methods (repeatable; default: the registry)")
    demo.add_argument("--format", action="append", choices=["mpii", "coco"], help="SynthPose format(s) (default both)")
    demo.add_argument("--jobs", type=int, default=None, help="parallel training processes (default: one per core)")
    demo.add_argument("--out", type=Path, default=Path("results/demo"), help="records, galleries and leaderboard")
    demo.add_argument("--check", action="store_true",
                      help="train nothing: exit 1 unless the demo leaderboard has every method's PCKh and AP")
    demo.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides for every run")

    sweep = sub.add_parser("sweep", help="run a wandb-format sweep file locally (grid or random), resuming")
    sweep.add_argument("file", type=Path, help="sweep YAML, e.g. benchmark/configs/sweeps/architectures.yaml")
    sweep.add_argument("--dry-run", action="store_true", help="print the runs, start nothing")
    sweep.add_argument("--gpus", default=None, help="comma-separated GPU ids: one run per GPU in parallel")
    sweep.add_argument("--records-dir", type=Path, default=None,
                       help="where the runs write their records (finished combinations are skipped); "
                            "default: each run's results_dir")
    sweep.add_argument("--seed", type=int, default=0, help="seed of a random sweep's draws")


def _weights_parsers(sub: argparse._SubParsersAction) -> None:
    """``import-weights``, ``export-weights`` and ``verify-checkpoints`` (benchmark/commands/weights.py, docs/checkpoints.md)."""
    formats = ["msra-hrnet", "msra-resnet", "mmpose", "bearpaw-hourglass"]
    imp = sub.add_parser("import-weights", help="write a PoseBench checkpoint from a published weights file")
    imp.add_argument("file", type=Path, help="e.g. pose_hrnet_w32_256x192.pth (HRNet model zoo)")
    imp.add_argument("--variant", help="registry variant (default: told from the keys, e.g. hrnet-w32)")
    imp.add_argument("--format", choices=formats, help="key layout (default: told from the keys)")
    imp.add_argument("--dataset", choices=["coco", "mpii"], help="default: 17 output joints -> coco, 16 -> mpii")
    imp.add_argument("--input-size", type=int, nargs=2, metavar=("H", "W"),
                     help="default: <H>x<W> in the file name, else the --variant preset (same dataset)")
    imp.add_argument("--convention", choices=["msra", "udp", "aligned"],
                     help="pixel grid it was trained under (default msra; udp for mmpose files named *udp*)")
    imp.add_argument("--input-order", choices=["rgb", "bgr"],
                     help="channel order it was trained on (default: bgr for msra-resnet, else rgb)")
    imp.add_argument("--out", type=Path, help="checkpoint to write (default outputs/imported/<name>.ckpt)")
    imp.add_argument("--trust-pickle", action="store_true",
                     help="load Python objects beyond tensors and containers (only for files from a trusted source)")
    exp = sub.add_parser("export-weights", help="write the plain network state_dict of a PoseBench checkpoint")
    exp.add_argument("checkpoint", type=Path, help="a PoseBench checkpoint (trained or imported)")
    exp.add_argument("--out", type=Path, help="file to write (default <checkpoint>.<layout>.pth)")
    exp.add_argument("--layout", choices=["posebench", "official", "mmpose"], default="posebench",
                     help="key names: PoseBench's network, the HRNet/SimpleBaseline code's, or mmpose's")
    exp.add_argument("--input-order", choices=["rgb", "bgr"],
                     help="input the exported first layer expects (default: bgr for official SimpleBaseline, else rgb)")
    verify = sub.add_parser("verify-checkpoints", help="score the published checkpoints found in --weights and "
                            "compare with their authors' numbers")
    verify.add_argument("--data-root", default="data", help="folder holding coco/ and mpii/ (default data)")
    verify.add_argument("--weights", default="", help="folder holding the downloaded checkpoints")
    verify.add_argument("--out", type=Path, default=Path("outputs/verify-checkpoints"),
                        help="imported checkpoints, run directories and records")
    verify.add_argument("--table", action="store_true", help="print the published-checkpoint table and exit")
    verify.add_argument("overrides", nargs="*", metavar="key=value", help="evaluate overrides (trainer.devices=1)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m benchmark", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    _data_parser(sub)
    _profile_parser(sub)
    _run_parsers(sub)
    _weights_parsers(sub)
    return parser


def _run_data(args: argparse.Namespace) -> int:
    if args.data_command == "synth":
        from datamodules.synthpose import generate_synthpose

        generate_synthpose(args.out, num_train=args.train, num_val=args.val, seed=args.seed, progress=True)
        return 0
    if args.data_command == "show":
        from benchmark.commands.data_show import show_sample

        path = show_sample(
            args.data, args.root, split=args.split, index=args.index, augment=args.augment,
            input_size=tuple(args.input_size), out=args.out,
        )
        print(f"wrote {path}")
        return 0
    if args.data_command == "check":
        from benchmark.commands.data_check import check_dataset

        report = check_dataset(args.data, args.root, splits=args.split)
        print(report.format())
        return 0 if report.ok else 1
    if args.data_command == "fetch":
        from benchmark.commands.fetch import fetch_dataset

        return fetch_dataset(args.dataset, args.root, only=args.only, list_only=args.list)
    raise AssertionError(args.data_command)


def _run_profile(args: argparse.Namespace) -> int:
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
    if args.profile_command == "model":
        return _run_profile_model(args.settings)
    raise AssertionError(args.profile_command)


def _run_profile_model(settings: list[str]) -> int:
    import json

    from benchmark.commands.summary import profile_model

    values = dict(item.split("=", 1) for item in settings if "=" in item)
    unknown = sorted(set(values) - {"method", "batch_size", "steps", "device"}) + [s for s in settings if "=" not in s]
    if unknown or "method" not in values:
        print(f"error: profile model takes method=VARIANT [batch_size=N steps=N device=D]; got {settings}",
              file=sys.stderr)
        return 2
    report = profile_model(values["method"], batch_size=int(values.get("batch_size", 8)),
                           steps=int(values.get("steps", 5)), device=values.get("device"))
    print(json.dumps(report, indent=2))
    return 0


def _run_train(args: argparse.Namespace) -> int:
    from benchmark.train import (
        RunError,
        RunFinished,
        evaluate,
        format_results,
        train_from_overrides,
    )

    try:
        result = train_from_overrides(args.overrides) if args.command == "train" else evaluate(args.overrides)
    except RunError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except RunFinished as finished:  # e.g. a requeue script's resume=last after the run finished
        print(finished)
        return 0
    if result.run.trainer.is_global_zero:
        print(format_results(result))
    # A recipe run outside its reference tolerance is a failed reproduction.
    return 1 if result.verdict and result.verdict["reproduced"] is False else 0


def _run_rerun(args: argparse.Namespace) -> int:
    from benchmark.commands.rerun import RerunError, rerun
    from benchmark.train import RunError, format_results

    try:
        result = rerun(args.record, args.overrides, allow_other_data=args.allow_other_data)
    except (RerunError, RunError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(format_results(result))
    return 1 if result.verdict and result.verdict["reproduced"] is False else 0


def _run_summary(args: argparse.Namespace) -> int:
    from benchmark.commands.summary import run_summary

    print(run_summary(args.variant, args.json))
    return 0


def _run_leaderboard(args: argparse.Namespace) -> int:
    from benchmark.commands.leaderboard import generate_leaderboard

    print(f"wrote {generate_leaderboard(args.records, args.out, title=args.title)}")
    return 0


def _run_fidelity(args: argparse.Namespace) -> int:
    """Print or write the table; every rule it breaks goes to stderr and makes the exit status 1."""
    from benchmark.commands import fidelity

    if args.write:
        print(f"wrote {fidelity.write().relative_to(fidelity.PROJECT_ROOT)}")
    else:
        print(fidelity.render(), end="")
    problems = fidelity.problems()
    for problem in problems:
        print(f"error: {problem}", file=sys.stderr)
    return 1 if problems else 0


def _run_demo(args: argparse.Namespace) -> int:
    from benchmark.commands.demo import (
        FORMATS,
        DemoError,
        check_demo_leaderboard,
        run_demo,
    )

    formats = tuple(args.format or FORMATS)
    if args.check:
        from benchmark.commands.leaderboard import MARKDOWN_NAME
        from models import METHODS

        problems = check_demo_leaderboard(args.out / MARKDOWN_NAME, args.method or sorted(METHODS), formats)
        for problem in problems:
            print(f"error: {problem}", file=sys.stderr)
        if not problems:
            print(f"{args.out / MARKDOWN_NAME}: every method has its PCKh@0.5 and AP")
        return 1 if problems else 0
    try:
        return run_demo(args.method, formats, out_dir=args.out, jobs=args.jobs, extra=tuple(args.overrides))
    except DemoError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


def _run_sweep(args: argparse.Namespace) -> int:
    from benchmark.commands.sweep import parse_gpus, run_sweep

    gpus = parse_gpus(args.gpus) if args.gpus else None
    return run_sweep(args.file, dry_run=args.dry_run, gpus=gpus, records_dir=args.records_dir, seed=args.seed)


def _run_import_weights(args: argparse.Namespace) -> int:
    from benchmark.commands.weights import (
        ImportRequest,
        default_output,
        import_weights,
        write_checkpoint,
    )

    request = ImportRequest(variant=args.variant, format=args.format, dataset=args.dataset,
                            input_size=tuple(args.input_size) if args.input_size else None,
                            convention=args.convention, input_order=args.input_order, trust_pickle=args.trust_pickle)
    imported = import_weights(args.file, request)
    out = write_checkpoint(imported, args.out or default_output(args.file))
    info, model = imported.meta["imported"], imported.meta["config"]["model"]
    print(f"wrote {out}: {imported.meta['variant']} for {info['dataset']} at {model['input_size']}, convention "
          f"{info['convention']}, from {info['format']} ({info['source_tensors']} tensors, "
          f"sha256 {info['sha256'][:12]})")
    for line in info["conversion"]:
        print(f"  converted: {line}")
    if info["filled"]:
        print(f"  filled in (absent from the file, set to 0): {len(info['filled'])} BatchNorm num_batches_tracked")
    return 0


def _run_export_weights(args: argparse.Namespace) -> int:
    from benchmark.commands.weights import export_state_dict, write_state_dict

    state = export_state_dict(args.checkpoint, args.layout, args.input_order)
    out = write_state_dict(state, args.out or args.checkpoint.with_suffix(f".{args.layout}.pth"))
    print(f"wrote {out}: {len(state)} tensors, {args.layout} layout")
    return 0


def _run_verify_checkpoints(args: argparse.Namespace) -> int:
    from benchmark.commands.published import reference_table, verify_checkpoints

    if args.table:
        print(reference_table())
        return 0
    return verify_checkpoints(args.data_root, args.weights, args.out, args.overrides)


def main(argv: list[str] | None = None) -> int:
    """Parse ``argv`` and run the sub-command; bad input exits with its message, not a traceback."""
    from benchmark.config import ConfigError
    from datamodules.records import DatasetError
    from models.pretrained import PretrainedWeightsUnavailable

    args = build_parser().parse_args(argv)
    handlers = {"data": _run_data, "profile": _run_profile, "train": _run_train, "evaluate": _run_train,
                "summary": _run_summary, "leaderboard": _run_leaderboard, "fidelity": _run_fidelity,
                "sweep": _run_sweep, "demo": _run_demo, "rerun": _run_rerun, "import-weights": _run_import_weights,
                "export-weights": _run_export_weights, "verify-checkpoints": _run_verify_checkpoints}
    try:
        return handlers[args.command](args)
    except (DatasetError, ConfigError, FileNotFoundError, KeyError, ValueError, PretrainedWeightsUnavailable) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
