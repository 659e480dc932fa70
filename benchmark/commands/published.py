"""The published checkpoints, their authors' numbers, and ``verify-checkpoints``, which scores them.

``PUBLISHED`` lists the released files PoseBench can import (``benchmark/commands/weights.py``) with the
protocol and number their authors report; docs/checkpoints.md renders it (a test keeps the two
equal). ``verify_checkpoints`` imports each file present in a folder, runs ``evaluate`` under the
authors' protocol and prints whether the number is reproduced within ``TOLERANCE``.

Sources: the model zoo tables of leoxiaobin/deep-high-resolution-net.pytorch ``README.md``,
microsoft/human-pose-estimation.pytorch ``README.md``, bearpaw/pytorch-pose ``README.md`` and
open-mmlab/mmpose ``configs/body_2d_keypoint/topdown_{heatmap,regression}/{coco,mpii}/*.md``.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
from collections.abc import Collection, Mapping, Sequence
from pathlib import Path
from typing import Any

from benchmark.commands.weights import (
    HOURGLASS_MISMATCH,
    MMPOSE_NOT_IMPORTABLE,
    ImportRequest,
    WeightsError,
    default_output,
    import_weights,
    write_checkpoint,
)
from benchmark.protocols import get_protocol
from benchmark.reference import compare

log = logging.getLogger(__name__)

TOLERANCE = 0.1
"""Largest |ours - published| (AP points or PCKh %) that still counts as reproduced."""


# ----------------------------------------------------------------------------------------------- published


HRNET_README = "leoxiaobin/deep-high-resolution-net.pytorch README.md"
SIMPLEBASELINE_README = "microsoft/human-pose-estimation.pytorch README.md"
BEARPAW_README = "bearpaw/pytorch-pose README.md"
HRNET_ZOO = ("HRNet model zoo (README.md): https://drive.google.com/drive/folders/1hOTihvbyIxsm5ygDpbUuJ7O_tzv4oXjC "
             "or https://1drv.ms/f/s!AhIXJn_J-blW231MH2krnmLq5kkQ")
SIMPLEBASELINE_ZOO = ("SimpleBaseline models (README.md): https://1drv.ms/f/s!AhIXJn_J-blW0D5ZE4ArK9wk_fvw "
                      "or https://drive.google.com/drive/folders/13_wJ6nC7my1KKouMkQMqyr9r1ZnLnukP")
BEARPAW_ZOO = ("bearpaw pretrained models (README.md, 'Testing'): https://drive.google.com/drive/folders/"
               "0B63t5HSgY4SQQ2FBRE5rQ2EzbjQ?resourcekey=0-EyrDJs1JYnC5byj5GydbPQ")
_MMPOSE = "https://download.openmmlab.com/mmpose/"
_MMPOSE_MD = "open-mmlab/mmpose configs/body_2d_keypoint/"


@dataclasses.dataclass(frozen=True)
class Published:
    """A released checkpoint and its authors' number (``value``: COCO AP x 100 or MPII PCKh@0.5 Mean, %).

    Protocol: COCO val2017 with the 56.4-AP person detections, MPII val with ground-truth centre and scale.
    ``importable`` is empty, or the ``NOT_IMPORTABLE`` label saying why PoseBench cannot hold the network;
    ``decoder``: the official quarter offset (HRNet ``get_final_preds``, mmpose ``MSRAHeatmap``), ``dark`` (under
    ``udp``: mmpose ``UDPHeatmap``'s DARK-UDP) or ``regression``.
    """

    file: str
    format: str
    variant: str
    dataset: str
    input_size: tuple[int, int]
    value: float | None
    source: str
    download: str
    convention: str = "msra"
    flip_test: bool = True
    importable: str = ""
    note: str = ""
    decoder: str = "quarter"

    @property
    def boxes(self) -> str:
        """Person boxes of the protocol: detections where the dataset's protocol scores on them (COCO)."""
        return "detections" if get_protocol(self.dataset).detections else "gt"

    @property
    def metric(self) -> str:
        """The metric ``value`` is in: the dataset protocol's first primary column (``AP``, ``PCKh@0.5``)."""
        return get_protocol(self.dataset).primary[0].label


def _msra(file: str, variant: str, dataset: str, size: tuple[int, int], value: float | None, zoo: str) -> Published:
    readme = HRNET_README if zoo == HRNET_ZOO else SIMPLEBASELINE_README
    fmt = "msra-hrnet" if variant.startswith("hrnet") else "msra-resnet"
    note = "" if value is not None else "released without a number in the README"
    return Published(file, fmt, variant, dataset, size, value, readme, zoo, note=note)


def _mmpose(url: str, variant: str, dataset: str, size: tuple[int, int], value: float, table: str,
            importable: str = "", convention: str = "msra") -> Published:
    decoder = "regression" if "regression" in table else "dark" if convention == "udp" else "quarter"
    return Published(url.rsplit("/", 1)[1], "mmpose", variant, dataset, size, value, _MMPOSE_MD + table, _MMPOSE + url,
                     convention=convention, importable=importable, decoder=decoder)


_HM_COCO = "v1/body_2d_keypoint/topdown_heatmap/coco/td-hm_"
_REG_COCO = "v1/body_2d_keypoint/topdown_regression/coco/td-reg_"
NOT_IMPORTABLE: dict[str, str] = {
    "bearpaw stem": HOURGLASS_MISMATCH,
    "mmpose CPM": MMPOSE_NOT_IMPORTABLE["backbone.cpm_stages."],
    "mmpose hourglass52": MMPOSE_NOT_IMPORTABLE["backbone.hourglass_modules."],
    "no ResNet-101/152 DeepPose": "PoseBench registers DeepPose with a ResNet-50 only (deeppose-res50)",
}
"""Why a published checkpoint cannot be imported, by the short label ``Published.importable`` carries."""
_CPM, _HG52, _NO_DEEPPOSE = "mmpose CPM", "mmpose hourglass52", "no ResNet-101/152 DeepPose"

PUBLISHED: tuple[Published, ...] = (
    *(_msra(f"pose_hrnet_w{w}_{h}x{wd}.pth", f"hrnet-w{w}", "coco", (h, wd), v, HRNET_ZOO)
      for w, h, wd, v in ((32, 256, 192, 74.4), (32, 384, 288, 75.8), (48, 256, 192, 75.1), (48, 384, 288, 76.3))),
    *(_msra(f"pose_resnet_{d}_{h}x{wd}{ext}", f"simplebaseline-res{d}", "coco", (h, wd), v, zoo)
      for ext, zoo in ((".pth", HRNET_ZOO), (".pth.tar", SIMPLEBASELINE_ZOO))
      for d, h, wd, v in ((50, 256, 192, 70.4), (50, 384, 288, 72.2), (101, 256, 192, 71.4), (101, 384, 288, 73.6),
                          (152, 256, 192, 72.0), (152, 384, 288, 74.3))),
    _msra("pose_hrnet_w32_256x256.pth", "hrnet-w32", "mpii", (256, 256), 90.3, HRNET_ZOO),
    _msra("pose_hrnet_w48_256x256.pth", "hrnet-w48", "mpii", (256, 256), None, HRNET_ZOO),
    *(_msra(f"pose_resnet_{d}_256x256.pth", f"simplebaseline-res{d}", "mpii", (256, 256), v, HRNET_ZOO)
      for d, v in ((50, 88.5), (101, 89.1), (152, 89.6))),
    *(_msra(f"pose_resnet_{d}_{s}x{s}.pth.tar", f"simplebaseline-res{d}", "mpii", (s, s), v, SIMPLEBASELINE_ZOO)
      for d, s, v in ((50, 256, 88.532), (50, 384, 89.066), (101, 256, 89.131), (101, 384, 90.003),
                      (152, 256, 89.620), (152, 384, 90.200))),
    *(_mmpose(f"{_HM_COCO}{name}.pth", variant, "coco", size, v, "topdown_heatmap/coco/" + table)
      for name, variant, size, v, table in (
          ("res50_8xb64-210e_coco-256x192-04af38ce_20220923", "simplebaseline-res50", (256, 192), 71.8,
           "resnet_coco.md"),
          ("res50_8xb64-210e_coco-384x288-7b8db90e_20220923", "simplebaseline-res50", (384, 288), 73.1,
           "resnet_coco.md"),
          ("res101_8xb64-210e_coco-256x192-065d3625_20220926", "simplebaseline-res101", (256, 192), 72.8,
           "resnet_coco.md"),
          ("res152_8xb32-210e_coco-256x192-0345f330_20220928", "simplebaseline-res152", (256, 192), 73.6,
           "resnet_coco.md"),
          ("res152_8xb32-210e_coco-384x288-7fbb906f_20220927", "simplebaseline-res152", (384, 288), 75.0,
           "resnet_coco.md"),
          ("hrnet-w32_8xb64-210e_coco-256x192-81c58e40_20220909", "hrnet-w32", (256, 192), 74.9, "hrnet_coco.md"),
          ("hrnet-w32_8xb64-210e_coco-384x288-ca5956af_20220909", "hrnet-w32", (384, 288), 76.1, "hrnet_coco.md"),
          ("hrnet-w48_8xb32-210e_coco-256x192-0e67c616_20220913", "hrnet-w48", (256, 192), 75.6, "hrnet_coco.md"),
          ("hrnet-w48_8xb32-210e_coco-384x288-c161b7de_20220915", "hrnet-w48", (384, 288), 76.7, "hrnet_coco.md"))),
    *(_mmpose(f"{_HM_COCO}hrnet-{name}.pth", variant, "coco", size, v, "topdown_heatmap/coco/hrnet_udp_coco.md",
              convention="udp")
      for name, variant, size, v in (
          ("w32_udp-8xb64-210e_coco-256x192-73ede547_20220914", "hrnet-w32", (256, 192), 76.2),
          ("w32_udp-8xb64-210e_coco-384x288-9a3f7c85_20220914", "hrnet-w32", (384, 288), 76.8),
          ("w48_udp-8xb32-210e_coco-256x192-3feaef8f_20220913", "hrnet-w48", (256, 192), 76.8),
          ("w48_udp-8xb32-210e_coco-384x288-70d7ab01_20220913", "hrnet-w48", (384, 288), 77.3))),
    *(_mmpose(f"top_down/{folder}/{name}.pth", variant, "mpii", (256, 256), v, "topdown_heatmap/mpii/" + table)
      for folder, name, variant, v, table in (
          ("resnet", "res50_mpii_256x256-418ffc88_20200812", "simplebaseline-res50", 88.2, "resnet_mpii.md"),
          ("resnet", "res101_mpii_256x256-416f5d71_20200812", "simplebaseline-res101", 88.8, "resnet_mpii.md"),
          ("resnet", "res152_mpii_256x256-3ecba29d_20200812", "simplebaseline-res152", 88.9, "resnet_mpii.md"),
          ("hrnet", "hrnet_w32_mpii_256x256-6c4f923f_20200812", "hrnet-w32", 90.0, "hrnet_mpii.md"),
          ("hrnet", "hrnet_w48_mpii_256x256-92cab7bd_20200812", "hrnet-w48", 90.1, "hrnet_mpii.md"))),
    _mmpose(f"{_REG_COCO}res50_8xb64-210e_coco-256x192-72ef04f3_20220913.pth", "deeppose-res50", "coco", (256, 192),
            54.1, "topdown_regression/coco/resnet_coco.md"),
    _mmpose("top_down/deeppose/deeppose_res50_mpii_256x256-c63cd0b6_20210203.pth", "deeppose-res50", "mpii",
            (256, 256), 82.6, "topdown_regression/mpii/resnet_mpii.md"),
    *(_mmpose(f"top_down/deeppose/deeppose_res{d}_{data}_{size[0]}x{size[1]}-{tag}.pth", "deeppose", data, size, v,
              f"topdown_regression/{data}/resnet_{data}.md", _NO_DEEPPOSE)
      for d, data, size, tag, v in ((101, "coco", (256, 192), "2f247111_20210205", 56.2),
                                    (152, "coco", (256, 192), "7df89a88_20210205", 58.4),
                                    (101, "mpii", (256, 256), "87516a90_20210205", 84.1),
                                    (152, "mpii", (256, 256), "15f5e6f9_20210205", 85.0))),
    _mmpose(f"{_HM_COCO}cpm_8xb64-210e_coco-256x192-0e978875_20220920.pth", "cpm", "coco", (256, 192), 62.7,
            "topdown_heatmap/coco/cpm_coco.md", _CPM),
    _mmpose("top_down/cpm/cpm_mpii_368x368-116e62b8_20200822.pth", "cpm", "mpii", (368, 368), 87.6,
            "topdown_heatmap/mpii/cpm_mpii.md", _CPM),
    _mmpose("top_down/hourglass/hourglass52_mpii_256x256-ae358435_20200812.pth", "hourglass", "mpii", (256, 256),
            88.9, "topdown_heatmap/mpii/hourglass_mpii.md", _HG52),
    Published("hg_s8_b1/model_best.pth.tar", "bearpaw-hourglass", "hourglass-8", "mpii", (256, 256), 88.78,
              BEARPAW_README, BEARPAW_ZOO, convention="newell", flip_test=False, importable="bearpaw stem",
              note="its own evaluation (evaluation/eval_PCKh.m); README test command has no -f (flip); that the "
                   "folder holds hg_s8_b1 is unverified"),
)
"""The released checkpoints PoseBench knows, with the number their authors report (sources in ``source``)."""


def _cell(value: Any) -> str:
    return "–" if value in (None, "") else str(value).replace("|", "\\|")


def reference_table() -> str:
    """``PUBLISHED`` as the Markdown table of docs/checkpoints.md."""
    head = ("| file | format | variant | dataset | input | boxes | flip | convention | decoder | metric | published "
            "| source | importable |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    rows = [f"| {_cell(p.file)} | {p.format} | {p.variant} | {p.dataset} | {p.input_size[0]}x{p.input_size[1]} | "
            f"{p.boxes} | {'yes' if p.flip_test else 'no'} | {p.convention} | {p.decoder} | {p.metric} | "
            f"{_cell(p.value)} | "
            f"{_cell(p.source)}{'; ' + p.note if p.note else ''} | {'no: ' + p.importable if p.importable else 'yes'} |"
            for p in PUBLISHED]
    return "\n".join([head, *rows])


# ----------------------------------------------------------------------------------------------- verify


DATA_FILES: dict[str, tuple[str, ...]] = {
    "coco": ("annotations/person_keypoints_train2017.json", "annotations/person_keypoints_val2017.json",
             "person_detection_results/COCO_val2017_detections_AP_H_56_person.json", "val2017"),
    "mpii": ("annot/train.json", "annot/valid.json", "annot/gt_valid.mat", "images"),
}
"""What ``evaluate`` reads per dataset (it loads the train annotations too) under ``<data root>/<dataset>``."""


def present_checkpoints(weights: str | Path) -> list[tuple[Published, Path]]:
    """The ``PUBLISHED`` files found under ``weights`` (by relative path, else by name anywhere below it)."""
    if not str(weights) or not Path(weights).is_dir():
        raise WeightsError(f"weights folder {str(weights) or '(none given)'} does not exist; put the published "
                           f"checkpoints there and pass it (WEIGHTS=DIR):\n{_where_to_get()}")
    files = sorted(path for path in Path(weights).rglob("*") if path.is_file())
    # "hg_s8_b1/model_best.pth.tar" must match its folder too, not any model_best.pth.tar.
    tails = {"/".join(path.parts[-len(Path(p.file).parts):]): path for p in PUBLISHED for path in files}
    present = [(p, tails[p.file]) for p in PUBLISHED if p.file in tails]
    if not present:
        raise WeightsError(f"{weights}: none of the published checkpoints is there; expected file names and "
                           f"where to get them:\n{_where_to_get()}")
    return present


def _where_to_get() -> str:
    """The expected file names (mmpose's: URLs) grouped by download page."""
    pages: dict[str, list[str]] = {}
    for p in PUBLISHED:
        page = p.download if p.format != "mmpose" else "mmpose model zoo (files by URL)"
        pages.setdefault(page, []).append(p.download if p.format == "mmpose" else p.file)
    return "\n".join(f"  {page}:\n    " + "\n    ".join(names) for page, names in pages.items())


def missing_data(data_root: Path, datasets: Collection[str]) -> list[str]:
    """Lines naming each missing dataset file under ``data_root/<dataset>`` and how to get it."""
    from datamodules.datasets import HOW_TO_GET

    lines = []
    for name in sorted(datasets):
        missing = [item for item in DATA_FILES[name] if not (Path(data_root) / name / item).exists()]
        if missing:
            lines.append(f"{name}: missing under {Path(data_root) / name}: {', '.join(missing)}\n"
                         f"  to get it: {HOW_TO_GET[name]}")
    return lines


def evaluate_overrides(entry: Published, checkpoint: Path, data_root: Path, out_dir: Path) -> list[str]:
    """``python -m benchmark evaluate`` arguments scoring ``checkpoint`` under ``entry``'s protocol."""
    decoder = [] if entry.decoder == "regression" else [f"model.decoder={entry.decoder}"]
    return [f"ckpt={checkpoint}", f"data={entry.dataset}", f"data.root={Path(data_root) / entry.dataset}",
            f"data.val_boxes={entry.boxes}", f"model.convention={entry.convention}",
            f"model.flip_test={str(entry.flip_test).lower()}", *decoder,
            f"output_dir={out_dir / 'runs'}", f"results_dir={out_dir / 'records'}"]


def our_value(entry: Published, results: Mapping[str, Mapping[str, float]]) -> float | None:
    """The scored test value of the protocol's ranking metric in the units of ``entry.value`` (AP x 100, PCKh %)."""
    protocol = get_protocol(entry.dataset)
    value = results.get("test", {}).get(protocol.ranking_metric)
    return None if value is None else protocol.display(float(value))


def verdict_line(entry: Published, ours: float | None) -> tuple[bool, str]:
    """``(reproduced, line)`` comparing ``ours`` with the published value within ``TOLERANCE``."""
    if ours is None or entry.value is None:
        published = "no published number" if entry.value is None else f"published {entry.value}"
        return False, f"NOT VERIFIED  {entry.file}: {published}, ours {_cell(ours)}"
    verdict = compare(entry.value, ours, TOLERANCE)
    ok = bool(verdict["reproduced"])
    return ok, (f"{'REPRODUCED' if ok else 'NOT REPRODUCED'}  {entry.file}: {entry.metric} ours {ours:.2f} vs "
                f"{entry.value} ({entry.source}), delta {verdict['delta']:+.2f} (tolerance {TOLERANCE})")


def verify_checkpoints(data_root: str | Path, weights: str | Path, out_dir: Path, extra: Sequence[str] = ()) -> int:
    """Score every published checkpoint present in ``weights`` and log one verdict line each; 0 when all
    reproduce, 1 otherwise.

    Stops before any work (WeightsError) when no checkpoint or a needed dataset file is missing.
    """
    present = present_checkpoints(weights)
    problems = missing_data(Path(data_root), {p.dataset for p, _ in present if not p.importable})
    if problems:
        raise WeightsError("data missing for the checkpoints found:\n" + "\n".join(problems))
    reproduced = []
    for entry, path in present:
        ok, line = _verify_one(entry, path, Path(data_root), Path(out_dir), list(extra))
        reproduced.append(ok)
        log.info(line)
    log.info(f"{sum(reproduced)} of {len(reproduced)} present checkpoint(s) reproduced within {TOLERANCE}")
    return 0 if all(reproduced) else 1


def _verify_one(entry: Published, path: Path, data_root: Path, out_dir: Path, extra: list[str]) -> tuple[bool, str]:
    from benchmark.train import RunError, evaluate

    if entry.importable:
        return False, f"NOT IMPORTABLE  {entry.file}: {NOT_IMPORTABLE[entry.importable]}"
    request = ImportRequest(variant=entry.variant, format=entry.format, dataset=entry.dataset,
                            input_size=entry.input_size, convention=entry.convention)
    checkpoint = write_checkpoint(import_weights(path, request), out_dir / "checkpoints" / default_output(path).name)
    try:
        result = evaluate(evaluate_overrides(entry, checkpoint, data_root, out_dir) + extra)
    except RunError as error:
        raise WeightsError(f"{path}: evaluate failed: {error}") from None
    return verdict_line(entry, our_value(entry, result.results))


# ---- command line



def add_arguments(parser: argparse.ArgumentParser) -> None:
    """``verify-checkpoints [--data-root DIR] [--weights DIR] [--out DIR] [--table] [key=value ...]``."""
    parser.add_argument("--data-root", default="data", help="folder holding coco/ and mpii/ (default data)")
    parser.add_argument("--weights", default="", help="folder holding the downloaded checkpoints")
    parser.add_argument("--out", type=Path, default=Path("outputs/verify-checkpoints"),
                        help="imported checkpoints, run directories and records")
    parser.add_argument("--table", action="store_true", help="print the published-checkpoint table and exit")
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="evaluate overrides (trainer.devices=1)")


def run(args: argparse.Namespace) -> int:
    """Print the table, or score the checkpoints found (exit 1 unless every one reproduces)."""
    if args.table:
        log.info(reference_table())
        return 0
    return verify_checkpoints(args.data_root, args.weights, args.out, args.overrides)
