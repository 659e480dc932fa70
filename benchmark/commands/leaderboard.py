"""The leaderboard: ``LEADERBOARD.md``, ``leaderboard.csv`` and ``leaderboard.png`` from run records alone.

``generate_leaderboard(records_dir, out_dir)`` reads every ``*.json`` run record of
``records_dir`` (benchmark/run_record.py validates each; a malformed one is an error naming the
file and the field), groups runs that differ only in their seed, and writes:

- one table per dataset (MPII, COCO, LSP; SynthPose in its own section, one table per format,
  never mixed with real-dataset rows): method, variant (faithful / modernized, tiny), input size,
  params, GFLOPs, the evaluation protocol, the primary metrics as mean ± sample std (ddof=1) over
  the runs with n (no ± when n = 1), the published number the recipe targets, the delta and a
  verdict (within the recipe's tolerance or not; "no reference" without one, and always for
  SynthPose, which has no published numbers); where adjacent rows both have n >= 2, a "vs above" column marks
  with "~" each row whose mean ranking metric is within the spread of the row above (``within_spread``:
  |mean_a - mean_b| <= std_a + std_b), a difference these seeds do not establish;
- per-joint tables (MPII's Head ... Ankle, LSP's 14 joints), a decoding / flip-test ablation
  table when records carry per-protocol metrics, the training cost (device-hours, hardware);
- an accuracy-versus-GFLOPs plot (matplotlib Agg) embedded in the markdown;
- provenance footnotes per row: every run's id, seed, git commit (+ dirty), config hash and the
  fingerprint of the scored dataset split.

Which runs form a row: same dataset (and SynthPose format), variant, scored stage and *setting*, the sha256 of the
record's resolved config without the keys that do not change results (``RUN_ONLY_KEYS``: the seed, paths, logging)
and without keys added later while they hold what every earlier run did (``run_record.BEFORE_THE_KEY``), with
``trainer.channels_last``/``precision: auto`` replaced by what the run resolved them to (``run_record.config_as_run``):
seeds trained in bf16-mixed on one CPU and in fp32 on another are two rows, and a row that did not train in fp32
names its precision in the evaluation cell, as a COCO row ranked by another person score than the box rescoring
(``model.instance_score``) names it. Runs are scored on their ``test`` stage (``val`` when a run has none). Rows are
ranked by the first primary metric, ties by name.

Which records count (``select_runs``): a row's n is its number of distinct seeds, and a ± is only
ever computed over distinct seeds (``group_rows`` refuses a row with a seed twice). A run's
*identity* is (setting, seed, dataset fingerprint, git commit, checkpoint sha256 when the record
has one, and the sha256 of published weights it scored, ``imported``, when it has them). In this order:

1. Records with the same identity are the same run (a copied record, a record written twice): the
   one with the latest ``finished_at`` is kept (ties: the last file name).
2. An ``evaluate`` record (``config.ckpt`` set) whose checkpoint sha256 is the checkpoint (or best
   checkpoint) of a training record is the same model: it is neither a second row nor a second seed;
   the training record is kept.
3. Records of one row with the same seed but another identity (a ``benchmark rerun`` on another
   commit or data, a re-evaluation) are not new seeds: the latest ``finished_at`` is kept.

Every record set aside is named, with the record kept in its place, in one warning per group on
stderr (``generate_leaderboard``) and in a list under the markdown's record count.

Which columns a table has, what ranks it, the display scale and the per-joint table are the
dataset protocol's (``benchmark.protocols``, docs/protocols.md): MPII ``PCKh/Mean`` (PCKh@0.5),
``PCKh/Mean@0.1``, ``PCKh/AUC`` (percent); COCO ``AP AP50 AP75 APM APL AR`` as pycocotools'
fractions, shown here in percent; LSP ``PCK/Mean`` (PCK@0.2, torso; percent). A record's protocol is
its dataset's name (SynthPose: its format); tables follow the protocols' ``table_order``. The
reference a record is compared with is the one its recipe wrote into ``record["reference"]``
(configs/recipe/*.yaml ``reference:`` value, tolerance, source), judged by ``benchmark.reference.compare``.

Same records, same bytes: records are read in sorted order, every table is sorted, numbers have
a fixed precision, nothing depends on the time or the absolute paths, and the PNG is saved
without the ``Software`` metadata (matplotlib writes no timestamp into PNGs). All three files are
written atomically (temp file in the same directory + ``os.replace``).

Optional values inside a record (``model.paper_gflops``, a metric that is null, ...) show as "–".
The fields read beyond the metrics: ``model`` {params, gflops, paper_gflops, modernized, tiny},
``input_size`` [H, W], ``protocol`` {boxes, flip_test, decoder} and ``protocols`` [{stage,
decoder, flip_test, metrics}] (the decoding / flip-test ablation).
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import datetime
import hashlib
import io
import json
import logging
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from benchmark import run_record
from benchmark.config import lookup
from benchmark.errors import PoseBenchError
from benchmark.files import atomic_write_bytes
from benchmark.metrics import DEFAULT_INSTANCE_SCORE
from benchmark.protocols import PROTOCOLS, Protocol, get_protocol, leaderboard_protocols
from benchmark.protocols.base import VISIBILITY_ACCURACY
from benchmark.reference import REFERENCE_SPLITS, compare
from datamodules.datasets import FORMATS as SYNTHPOSE_FORMATS
from models.codecs import DECODE_METHODS

log = logging.getLogger(__name__)

MARKDOWN_NAME = "LEADERBOARD.md"
CSV_NAME = "leaderboard.csv"
PLOT_NAME = "leaderboard.png"

SYNTHETIC = "synthpose"
RUN_ONLY_KEYS = ("seed", "run_name", "output_dir", "results_dir", "resume", "ckpt", "logger", "wandb_project",
                 "test_after_fit", "write_record", "data.root", "data.num_workers", "data.persistent_workers",
                 "data.pin_memory", "trainer.enable_progress_bar", "trainer.log_every_n_steps")
"""Config keys that do not change a run's result: runs differing only here share a row."""

DASH = "–"


class LeaderboardError(PoseBenchError):
    """A run record cannot be placed on the leaderboard; the message names the file and the field."""


@dataclasses.dataclass(frozen=True)
class Entry:
    """One run record as the leaderboard reads it."""

    path: Path
    record: dict[str, Any]
    synthetic: bool
    protocol: Protocol
    stage: str
    setting: str

    @property
    def metrics(self) -> dict[str, float | None]:
        return self.record["metrics"][self.stage]

    @property
    def imported(self) -> bool:
        """Scored published weights (``import-weights``), not a model trained here."""
        return self.record.get("imported") is not None


@dataclasses.dataclass
class Row:
    """Runs of one setting (seeds): a line of a dataset table."""

    synthetic: bool
    protocol: Protocol
    entries: list[Entry]

    @property
    def first(self) -> dict[str, Any]:
        return self.entries[0].record

    def values(self, metric: str) -> list[float]:
        return [v for v in (e.metrics.get(metric) for e in self.entries) if v is not None]

    def mean(self, metric: str) -> float | None:
        return mean_std(self.values(metric))[0]


# ------------------------------------------------------------------------------ statistics


def mean_std(values: Iterable[float]) -> tuple[float | None, float | None, int]:
    """``(mean, sample std (ddof=1) or None when n < 2, n)``; ``(None, None, 0)`` for no values."""
    data = [float(v) for v in values]
    n = len(data)
    if n == 0:
        return None, None, 0
    mean = sum(data) / n
    if n == 1:
        return mean, None, 1
    return mean, (sum((v - mean) ** 2 for v in data) / (n - 1)) ** 0.5, n


def fmt(value: float | None, digits: int = 2, sign: bool = False) -> str:
    """Fixed-precision text; "–" for None; never "-0.00"."""
    if value is None:
        return DASH
    text = f"{value:+.{digits}f}" if sign else f"{value:.{digits}f}"
    if float(text) == 0.0:
        text = f"{0.0:+.{digits}f}" if sign else f"{0.0:.{digits}f}"
    return text


def fmt_stat(values: list[float], scale: float) -> str:
    """``mean ± std`` (``mean`` alone when n = 1) of ``values`` times ``scale``."""
    mean, std, n = mean_std(v * scale for v in values)
    if n == 0:
        return DASH
    return fmt(mean) if std is None else f"{fmt(mean)} ± {fmt(std)}"


# ------------------------------------------------------------------------------ reading


def setting_hash(config: dict[str, Any]) -> str:
    """sha256 of ``config`` without ``RUN_ONLY_KEYS``, and without the keys of ``run_record.BEFORE_THE_KEY`` that
    hold what runs did before the key existed (canonical JSON, sorted keys)."""
    reduced = json.loads(json.dumps(config))
    before = {f"{section}.{key}": value for section, keys in run_record.BEFORE_THE_KEY.items()
              for key, value in keys.items()}
    for dotted in (*RUN_ONLY_KEYS, *before):
        *parents, last = dotted.split(".")
        node = lookup(reduced, ".".join(parents), None) if parents else reduced
        if isinstance(node, dict) and (dotted in RUN_ONLY_KEYS or (last in node and node[last] == before[dotted])):
            node.pop(last, None)
    return hashlib.sha256(json.dumps(reduced, sort_keys=True).encode()).hexdigest()


def read_entry(path: Path) -> Entry:
    """Read and check one record; ``LeaderboardError`` names ``path`` and the field at fault."""
    try:
        record = run_record.read_record(path)
    except json.JSONDecodeError as error:
        raise LeaderboardError(f"{path}: not valid JSON ({error})") from None
    except ValueError as error:
        raise LeaderboardError(str(error) if str(path) in str(error) else f"{path}: {error}") from None
    name = record["dataset"]["name"]
    synthetic = name == SYNTHETIC
    if synthetic:
        protocol = record["dataset"].get("format") or lookup(record["config"], "data.format", None)
        if protocol not in SYNTHPOSE_FORMATS:
            raise LeaderboardError(f"{path}: field 'dataset.format' must be "
                                   f"{' or '.join(repr(f) for f in SYNTHPOSE_FORMATS)} for SynthPose, got {protocol!r}")
    elif name in PROTOCOLS:
        protocol = name
    else:
        raise LeaderboardError(f"{path}: field 'dataset.name' is {name!r}; the leaderboard knows "
                               f"{', '.join(sorted([*PROTOCOLS, SYNTHETIC]))}")
    metrics = record["metrics"]
    stage = "test" if metrics.get("test") else "val"
    if not metrics.get(stage):
        raise LeaderboardError(f"{path}: field 'metrics' has neither a 'test' nor a 'val' table")
    primary = get_protocol(protocol).ranking_metric
    if metrics[stage].get(primary) is None:
        raise LeaderboardError(f"{path}: field 'metrics.{stage}' lacks the primary metric {primary!r}")
    # Records from before reference.split existed all had val references.
    split = (record["reference"] or {}).get("split") or "val"
    if split not in REFERENCE_SPLITS:
        raise LeaderboardError(f"{path}: field 'reference.split' must be one of {', '.join(REFERENCE_SPLITS)}, "
                               f"got {split!r}")
    return Entry(path, record, synthetic, get_protocol(protocol), stage, setting_hash(run_record.config_as_run(record)))


def read_entries(records_dir: Path) -> list[Entry]:
    """Every ``*.json`` record of ``records_dir``, in file-name order."""
    if not records_dir.is_dir():
        raise LeaderboardError(f"{records_dir}: no such records directory")
    return [read_entry(path) for path in sorted(records_dir.glob("*.json"))]


# ------------------------------------------------------------------------------ which records count


def identity(entry: Entry) -> tuple[Any, ...]:
    """(setting, seed, dataset fingerprint, git commit, checkpoint sha256, imported weights' sha256; None where
    absent): equal means the same run."""
    r = entry.record
    checkpoint = r["checkpoint"] or {}
    imported = r.get("imported") or {}
    return (entry.setting, r["seed"], json.dumps(r["dataset"]["fingerprint"], sort_keys=True),
            r["git"].get("commit"), checkpoint.get("sha256"), imported.get("sha256"))


def row_key(entry: Entry) -> tuple[Any, ...]:
    """What puts runs on one row: dataset (and format), imported or trained, method, variant, stage, setting."""
    r = entry.record
    return (entry.synthetic, entry.protocol, entry.imported, r["method"], r["variant"], entry.stage, entry.setting)


def _finished(entry: Entry) -> tuple[datetime.datetime, str]:
    try:
        when = datetime.datetime.fromisoformat(entry.record["finished_at"])
    except ValueError:
        raise LeaderboardError(f"{entry.path}: field 'finished_at' is not an ISO 8601 time: "
                               f"{entry.record['finished_at']!r}") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=datetime.timezone.utc)
    return when, entry.path.name


def _names(entries: Iterable[Entry]) -> str:
    return ", ".join(sorted(e.path.name for e in entries))


def _trained_checkpoints(entries: list[Entry]) -> dict[str, Entry]:
    """sha256 -> the training record (no ``config.ckpt``) whose checkpoint or best checkpoint has it."""
    out: dict[str, Entry] = {}
    for e in entries:
        if lookup(e.record["config"], "ckpt", None):
            continue
        for item in (e.record["checkpoint"], lookup(e.record, "best.checkpoint", None)):
            if isinstance(item, dict) and item.get("sha256"):
                out.setdefault(str(item["sha256"]), e)
    return out


def select_runs(entries: list[Entry]) -> tuple[list[Entry], list[str]]:
    """``(records that count, in the given order; one note per group set aside, naming the files)``:
    duplicates of one run, evaluations of a trained checkpoint and same-seed records of one row are
    set aside (module docstring, "Which records count")."""
    notes: list[str] = []
    dropped: set[int] = set()

    def keep_latest(groups: dict[Any, list[Entry]], note: Any) -> None:
        for members in groups.values():
            if len(members) > 1:
                kept = max(members, key=_finished)
                others = [e for e in members if e is not kept]
                dropped.update(id(e) for e in others)
                notes.append(note(kept, others))

    by_identity: dict[tuple[Any, ...], list[Entry]] = {}
    for e in entries:
        by_identity.setdefault(identity(e), []).append(e)
    keep_latest(by_identity, lambda kept, others: (
        f"{_names(others)} and {kept.path.name} are the same run (same setting, seed {kept.record['seed']}, "
        f"dataset fingerprint, git commit and checkpoint): counted once, as {kept.path.name} (latest finished_at)"))

    trained = _trained_checkpoints([e for e in entries if id(e) not in dropped])
    for e in entries:
        sha = (e.record["checkpoint"] or {}).get("sha256")
        source = trained.get(str(sha)) if sha and lookup(e.record["config"], "ckpt", None) else None
        if id(e) not in dropped and source is not None and source is not e:
            dropped.add(id(e))
            notes.append(f"{e.path.name} evaluates the checkpoint of {source.path.name} (sha256 {str(sha)[:12]}): "
                         f"the same model, not a second row or seed; counted as {source.path.name}")

    by_seed: dict[tuple[Any, ...], list[Entry]] = {}
    for e in entries:
        if id(e) not in dropped:
            by_seed.setdefault((*row_key(e), e.record["seed"]), []).append(e)
    keep_latest(by_seed, lambda kept, others: (
        f"{_names([*others, kept])} are seed {kept.record['seed']} of one row (same setting) from other runs "
        f"(another commit, data or checkpoint): one seed, not {len(others) + 1}; counted as {kept.path.name} "
        f"(latest finished_at)"))
    return [e for e in entries if id(e) not in dropped], notes


# ------------------------------------------------------------------------------ rows


def _input_size(record: dict[str, Any]) -> str:
    size = (record.get("input_size") or lookup(record["config"], "model.input_size", None)
            or lookup(record, "model.input_size", None))
    return f"{size[0]}x{size[1]}" if isinstance(size, (list, tuple)) and len(size) == 2 else DASH


def _eval_label(record: dict[str, Any], scored: Protocol) -> str:
    protocol = record.get("protocol") or {}
    boxes = protocol.get("boxes", lookup(record["config"], "data.val_boxes", None))
    flip = protocol.get("flip_test", lookup(record["config"], "model.flip_test", None))
    decoder = protocol.get("decoder", lookup(record["config"], "model.decoder", None))
    named = {"gt": "GT boxes", "detections": "detected boxes"}
    # Records from before conventions existed were all on PoseBench's aligned grid.
    parts = [DASH if boxes is None else named.get(boxes, f"{boxes} boxes"),
             DASH if flip is None else ("flip" if flip else "no flip"), decoder or DASH,
             f"{protocol.get('convention', 'aligned')} grid"]
    # Records from before model.instance_score ranked persons by the box rescoring, the default.
    instance_score = lookup(record["config"], "model.instance_score", DEFAULT_INSTANCE_SCORE)
    if scored.ranks_persons and instance_score != DEFAULT_INSTANCE_SCORE:  # persons ranked by another score
        parts.append(f"{instance_score} score")
    precision = lookup(run_record.config_as_run(record), "trainer.precision", None)
    if precision not in (None, "32-true", "32", 32):  # a run that did not train in fp32 says so
        parts.append(str(precision))
    return ", ".join(parts)


def _kind(record: dict[str, Any]) -> str:
    model = record.get("model") or {}
    if "modernized" not in model:
        return DASH
    kind = "modernized" if model["modernized"] else "faithful"
    return f"{kind}, tiny" if model.get("tiny") else kind


def _scaled(value: Any, scale: float) -> float | None:
    return None if value is None else float(value) * scale


def group_rows(entries: list[Entry]) -> list[Row]:
    """Rows (runs of one setting), each with entries sorted by seed; a seed twice in a row (entries not
    through ``select_runs``) is an error, never a ± over duplicates."""
    groups: dict[tuple[Any, ...], list[Entry]] = {}
    for entry in entries:
        groups.setdefault(row_key(entry), []).append(entry)
    rows = []
    for (synthetic, protocol, *_), members in groups.items():
        members.sort(key=lambda e: (e.record["seed"], e.record["run_id"]))
        seeds = [e.record["seed"] for e in members]
        twice = sorted({s for s in seeds if seeds.count(s) > 1})
        if twice:
            raise LeaderboardError(f"seed {twice[0]} twice in one row ({_names(members)}): duplicates are not "
                                   "seeds; select_runs sets them aside")
        rows.append(Row(synthetic, protocol, members))
    return rows


def _rows(entries: list[Entry]) -> list[Row]:
    return group_rows(select_runs(entries)[0])


def rank(rows: list[Row]) -> list[Row]:
    """Best first by the first primary metric; ties by method, variant, setting."""
    def key(row: Row) -> tuple[Any, ...]:
        mean = row.mean(row.protocol.ranking_metric)
        return (-(mean if mean is not None else float("-inf")), row.first["method"], row.first["variant"],
                row.entries[0].stage, row.entries[0].setting)

    return sorted(rows, key=key)


def reference(row: Row) -> dict[str, Any] | None:
    """The row's published reference: ``{label, metric, paper, ours, delta, tolerance, verdict, source}`` (display
    units), or None (no reference, or SynthPose data)."""
    if row.synthetic:
        return None
    ref = row.first.get("reference") or {}
    if ref.get("metric") is None or ref.get("value") is None:
        return None
    stage, _, name = str(ref["metric"]).partition("/")
    values = [v for v in (e.record["metrics"].get(stage, {}).get(name) for e in row.entries) if v is not None]
    tolerance = ref.get("tolerance")
    # Records from before reference.split existed all had val references (read_entry checks the value).
    split = ref.get("split") or "val"
    verdict = compare(ref["value"], mean_std(values)[0], tolerance, split)
    scale = row.protocol.display_scale
    label = next((lab for lab, key in row.protocol.primary if key == name), name)
    tol = DASH if tolerance is None else fmt(tolerance * scale)
    if not verdict["comparable"]:
        text = f"not comparable ({split}-split reference)"
    else:
        text = f"{'reproduced' if verdict['reproduced'] else 'not reproduced'} (±{tol})"
    return {
        "label": label, "metric": ref["metric"], "paper": ref["value"] * scale, "ours": _scaled(verdict["ours"], scale),
        "delta": _scaled(verdict["delta"], scale) if verdict["comparable"] else None,
        "tolerance": _scaled(tolerance, scale), "verdict": text, "source": ref.get("source") or "",
    }


# ------------------------------------------------------------------------------ markdown


def _table(header: list[str], lines: list[list[str]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(cells) + " |" for cells in lines]
    return out + [""]


def _hardware(record: dict[str, Any]) -> str:
    hw = record["hardware"]
    count = int(hw.get("devices") or 1) * int(hw.get("num_nodes") or 1)
    if hw.get("gpus") and hw.get("accelerator") in ("cuda", "gpu"):
        return f"{count}x {hw['gpus'][0]}"
    return f"CPU {hw.get('processor') or DASH} ({hw.get('cpu_count') or DASH} cores)"


def _fingerprint(entry: Entry) -> str:
    fingerprint = entry.record["dataset"]["fingerprint"]
    if isinstance(fingerprint, dict):
        if entry.stage in fingerprint and fingerprint[entry.stage]:
            return str(fingerprint[entry.stage])[:12]
        return " ".join(f"{k}:{str(v)[:12]}" for k, v in sorted(fingerprint.items()))
    return str(fingerprint)[:12]


def _footnote(number: int, row: Row) -> str:
    first = row.entries[0]
    head = (f"[^{number}]: `{first.record['variant']}`, {first.stage} stage, recipe "
            f"{first.record['recipe'] or DASH}, setting `{first.setting[:12]}`: ")
    runs = []
    for e in row.entries:
        r = e.record
        commit = (r["git"].get("commit") or DASH)[:12] + (" (dirty)" if r["git"].get("dirty") else "")
        source = ""
        if e.imported:
            weights = r["imported"]
            source = (f" weights imported from `{Path(str(weights['source_file'])).name}` ({weights['format']}, "
                      f"sha256 `{str(weights['sha256'])[:12]}`)")
        runs.append(f"seed {r['seed']} run `{r['run_id']}` commit `{commit}` config `{r['config_hash'][:12]}` "
                    f"data `{_fingerprint(e)}`{source}")
    return head + "; ".join(runs) + "."


def within_spread(upper: Row, lower: Row) -> bool:
    """Whether two rows' ranking metrics differ by no more than the sum of their sample standard deviations (both
    rows need n >= 2): their runs do not establish which is better."""
    metric = upper.protocol.ranking_metric
    mean_a, std_a, _ = mean_std(upper.values(metric))
    mean_b, std_b, _ = mean_std(lower.values(metric))
    if mean_a is None or mean_b is None or std_a is None or std_b is None:
        return False
    return abs(mean_a - mean_b) <= std_a + std_b


SPREAD_MARK = "~"


def _spread_note(label: str) -> str:
    return (f"{SPREAD_MARK} in \"vs above\": the row's mean {label} is within the spread of the row above "
            "(|difference of the means| ≤ the sum of the two sample standard deviations), so these seeds do not "
            "order the two rows.")


def _main_table(rows: list[Row], footnotes: list[str], floor: float | None = None) -> list[str]:
    """The ranked rows; with ``floor`` (the mean pose's ranking metric) a column gives each row's multiple of it;
    when two adjacent rows have a spread, a column marks each row within the spread of the row above it."""
    protocol = rows[0].protocol
    ratio = [f"x mean pose ({protocol.primary[0].label})"] if floor else []
    pairs = list(zip(rows, rows[1:], strict=False))
    marks = [""] + [SPREAD_MARK if within_spread(above, row) else "" for above, row in pairs]
    spread = any(min(len(row.values(protocol.ranking_metric)) for row in pair) > 1 for pair in pairs)
    header = ["method", "variant", "kind", "input", "params (M)", "GFLOPs (paper)", "evaluation",
              *[label for label, _ in protocol.primary], *ratio, "n", *(["vs above"] if spread else []), "paper",
              "Δ", "verdict"]
    lines = []
    for row, mark in zip(rows, marks, strict=True):
        r = row.first
        model = r.get("model") or {}
        params = model.get("params")
        gflops = fmt(model.get("gflops")) + f" ({fmt(model.get('paper_gflops'), 1)})"
        footnotes.append(_footnote(len(footnotes) + 1, row))
        ref = reference(row)
        metrics = []
        for _, key in protocol.primary:
            values = row.values(key)
            text = fmt_stat(values, protocol.display_scale)
            metrics.append(text if len(values) in (0, len(row.entries)) else f"{text} (n={len(values)})")
        if floor:
            mean = row.mean(protocol.ranking_metric)
            metrics.append(DASH if mean is None else f"{mean / floor:.2f}")
        lines.append([
            r["method"], f"{r['variant']}[^{len(footnotes)}]", _kind(r), _input_size(r),
            DASH if params is None else fmt(params / 1e6), gflops, _eval_label(r, protocol), *metrics,
            str(len(row.entries)),
            *([mark] if spread else []), DASH if ref is None else f"{fmt(ref['paper'])} ({ref['label']})",
            DASH if ref is None else fmt(ref["delta"], sign=True),
            "no reference" if ref is None else ref["verdict"],
        ])
    return _table(header, lines) + ([_spread_note(protocol.primary[0].label), ""] if spread else [])


def _per_joint_table(rows: list[Row]) -> list[str]:
    protocol = rows[0].protocol
    keys = protocol.per_joint
    if not any(row.values(k) for row in rows for k in keys[:-1]):
        return []
    labels = [k.split("/", 1)[1] for k in keys]
    lines = [[row.first["method"], row.first["variant"], *[fmt(row.mean(k)) for k in keys]] for row in rows]
    return [f"Per joint ({protocol.primary[0].label}, mean over runs):", "",
            *_table(["method", "variant", *labels], lines)]


def _presence_table(rows: list[Row]) -> list[str]:
    """Joint-presence accuracy of the rows whose method predicts it (a visibility head), where the protocol's
    own columns do not show it already (its value is in percent under every protocol)."""
    protocol = rows[0].protocol
    if any(key == VISIBILITY_ACCURACY for _, key in protocol.primary):
        return []
    lines = [[row.first["method"], row.first["variant"], fmt_stat(row.values(VISIBILITY_ACCURACY), 1.0),
              str(len(row.values(VISIBILITY_ACCURACY)))]
             for row in rows if row.values(VISIBILITY_ACCURACY)]
    if not lines:
        return []
    return ["Joint presence (methods with a visibility head; present = score > 0.5 against the annotation, "
            "all joints, in percent):", "", *_table(["method", "variant", "visibility accuracy", "n"], lines)]


def _protocol_means(row: Row, metric: str) -> dict[tuple[str, bool], tuple[float | None, int]]:
    cells: dict[tuple[str, bool], list[float]] = {}
    for e in row.entries:
        for item in e.record.get("protocols") or []:
            value = (item.get("metrics") or {}).get(metric)
            if item.get("stage", e.stage) == e.stage and value is not None:
                cells.setdefault((str(item["decoder"]), bool(item["flip_test"])), []).append(value)
    return {key: mean_std(values)[::2] for key, values in cells.items()}


def _ablation_table(rows: list[Row]) -> list[str]:
    protocol = rows[0].protocol
    label, metric = protocol.primary[0]
    lines = []
    for row in rows:
        cells = _protocol_means(row, metric)
        decoders = sorted({d for d, _ in cells}, key=lambda d: (
            DECODE_METHODS.index(d) if d in DECODE_METHODS else len(DECODE_METHODS), d))
        for decoder in decoders:
            texts = []
            for flip in (False, True):
                mean, n = cells.get((decoder, flip), (None, 0))
                texts.append(DASH if mean is None else f"{fmt(protocol.display(mean))} (n={n})")
            lines.append([row.first["method"], row.first["variant"], decoder, *texts])
    if not lines:
        return []
    return [f"Decoding and flip test ({label}, mean over runs, same forward passes):", "",
            *_table(["method", "variant", "decoder", "flip off", "flip on"], lines)]


def _references_for(rows: list[Row], references: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The reference rows scored on the data of ``rows`` (same dataset name and SynthPose format), or None."""
    data = rows[0].first.get("dataset") or {}
    for payload in references:
        if (payload["dataset"].get("name"), payload["dataset"].get("format")) == (data.get("name"), data.get("format")):
            return payload
    return None


def _reference_table(rows: list[Row], payload: dict[str, Any]) -> list[str]:
    """The floor (mean pose) and ceiling (oracle) rows under a table, scored by the same protocol."""
    protocol = rows[0].protocol
    lines = [[str(ref["label"]), str(ref["kind"]),
              *[fmt_stat([] if ref["metrics"].get(key) is None else [float(ref["metrics"][key])],
                         protocol.display_scale) for _, key in protocol.primary]]
             for ref in payload["rows"]]
    fingerprints = {str(lookup(e.record, "dataset.fingerprint.test", "")) for row in rows for e in row.entries}
    same = fingerprints == {str(payload["dataset"].get("fingerprint"))}
    note = ("Reference rows, scored on the same split by the same protocol (`benchmark/baselines.py`): the floor "
            "sees the box but not the image; the ceiling is the ground truth quantised to the heatmap grid and decoded."
            + ("" if same else " Their data fingerprint differs from the runs' test split: compare with care."))
    return [note, "", *_table(["reference", "kind", *[label for label, _ in protocol.primary]], lines)]


def _dataset_section(title: str, rows: list[Row], footnotes: list[str], level: str,
                     references: list[dict[str, Any]] | None = None) -> list[str]:
    payload = _references_for(rows, references or [])
    floor = None
    if payload is not None:
        floors = [ref["metrics"].get(rows[0].protocol.ranking_metric) for ref in payload["rows"]
                  if ref["kind"] == "floor"]
        floor = floors[0] if floors and floors[0] else None
    return [f"{level} {title}", "", *_main_table(rows, footnotes, floor),
            *([] if payload is None else _reference_table(rows, payload)), *_per_joint_table(rows),
            *_presence_table(rows), *_ablation_table(rows)]


def _cost_table(tables: list[tuple[str, list[Row]]]) -> list[str]:
    lines = []
    for title, rows in tables:
        for row in rows:
            hours = [float(e.record["device_hours"]) for e in row.entries]
            hardware = sorted({_hardware(e.record) for e in row.entries})
            lines.append([title, row.first["method"], row.first["variant"], str(len(hours)), fmt(sum(hours), 3),
                          fmt(sum(hours) / len(hours), 3), "; ".join(hardware)])
    return ["## Training cost", "",
            *_table(["dataset", "method", "variant", "runs", "device-hours", "per run", "hardware"], lines)]


def synthpose_title(protocol: Protocol) -> str:
    """The heading of the SynthPose table in ``protocol``'s format, e.g. ``SynthPose (MPII format)``."""
    return f"SynthPose ({protocol.title} format)"


def _tables(rows: list[Row]) -> list[tuple[str, list[Row]]]:
    """``(title, ranked rows)`` per table: real datasets first, then SynthPose per format."""
    out = []
    for protocol in leaderboard_protocols():
        chosen = [r for r in rows if not r.synthetic and r.protocol is protocol and not r.entries[0].imported]
        if chosen:
            out.append((protocol.title, rank(chosen)))
        # Published checkpoints scored here are a table of their own, never ranked among trained models.
        chosen = [r for r in rows if not r.synthetic and r.protocol is protocol and r.entries[0].imported]
        if chosen:
            out.append((f"{protocol.title}: published checkpoints (imported weights)", rank(chosen)))
    for protocol in leaderboard_protocols():
        chosen = [r for r in rows if r.synthetic and r.protocol is protocol]
        if chosen:
            out.append((synthpose_title(protocol), rank(chosen)))
    return out


INTRO = (
    "Metrics are the mean ± sample standard deviation over runs (seeds) with n runs; no ± when n = 1. "
    "Each run is scored on its test stage (val when it has none); all metrics are in percent "
    "(COCO AP/AR from pycocotools' fractions). GFLOPs are multiply-accumulates counted by "
    "`torch.utils.flop_counter` at the input size, with the paper's own figure in parentheses. "
    "\"paper\" is the published number the run's recipe targets (benchmark/configs/recipe), "
    "Δ = ours − paper, and the verdict says whether the mean is within the recipe's tolerance; a reference "
    "measured on a test server is \"not comparable\" with PoseBench's val runs (no Δ, no verdict). "
    "\"evaluation\" names the boxes, the flip test, the decoder and the pixel grid, the person score COCO ranks by "
    "where it is not the box rescoring (keypoint: G-RMI's mean keypoint score; docs/protocols.md), and the "
    "training precision where it was not fp32 (bf16-mixed: the speed default of benchmark/speed_defaults.py). "
    "Footnotes give every run's provenance: run id, git commit, config hash, dataset fingerprint."
)


def _galleries(tables: list[tuple[str, list[Row]]], records_link: str) -> list[str]:
    """One collapsible prediction gallery per row (its first run that has one), linked relative to
    the markdown through ``records_link`` (the records directory as seen from the markdown)."""
    out = []
    for table_title, rows in tables:
        for row in rows:
            entry = next((e for e in row.entries if e.record.get("gallery")), None)
            if entry is None:
                continue
            link = entry.record["gallery"] if records_link in ("", ".") else f"{records_link}/{entry.record['gallery']}"
            out += [f"<details><summary>{table_title}: {row.first['variant']} (run {entry.record['run_id']})"
                    "</summary>", "", f"![{row.first['variant']} best and worst]({link})", "", "</details>", ""]
    if not out:
        return []
    return ["## Prediction galleries", "",
            "Best (top row) and worst (bottom row) test predictions of one run per row, by the protocol's "
            "per-person error; the ground truth is drawn thin and white under the prediction.", "", *out]


def render_markdown(entries: list[Entry], title: str, records_link: str = "runs",
                    references: list[dict[str, Any]] | None = None) -> str:
    """The whole ``LEADERBOARD.md`` text for ``entries``; galleries are linked through ``records_link``; a table
    with ``references`` (``benchmark.baselines.read_references``) for its data shows them under it."""
    counted, notes = select_runs(entries)
    tables = _tables(group_rows(counted))
    out = [f"# {title}", "",
           "<!-- Generated by `python -m benchmark leaderboard` from the run records; do not edit by hand. -->", "",
           f"{len(counted)} run records, {sum(len(rows) for _, rows in tables)} rows.", ""]
    if notes:
        aside = len(entries) - len(counted)
        out += [f"{aside} more {'record is' if aside == 1 else 'records are'} set aside, not counted: duplicates "
                "of a counted run or of its seed (see the module docstring of benchmark/commands/leaderboard.py).", "",
                *[f"- {note}." for note in notes], ""]
    out += [INTRO, "", f"![accuracy versus GFLOPs]({PLOT_NAME})", ""]
    footnotes: list[str] = []
    real = [(t, rows) for t, rows in tables if not rows[0].synthetic]
    synthetic = [(t, rows) for t, rows in tables if rows[0].synthetic]
    for table_title, rows in real:
        out += _dataset_section(table_title, rows, footnotes, "##", references)
    if synthetic and not real:
        titles = ", ".join(protocol.title for protocol in leaderboard_protocols())
        out += [f"No run on a real dataset ({titles}) has been recorded yet: the rows below are SynthPose runs only.",
                ""]
    if synthetic:
        out += ["## SynthPose", "",
                "Synthetic data generated by PoseBench (`python -m benchmark data synth`): a sanity check of "
                "the pipeline, never compared with published numbers or with the real-dataset rows.", ""]
        for table_title, rows in synthetic:
            out += _dataset_section(table_title, rows, footnotes, "###", references)
    if tables:
        out += _cost_table(tables)
        out += _galleries(tables, records_link)
        out += ["## Provenance", "", *footnotes, ""]
    else:
        out += ["No run records yet.", ""]
    return "\n".join(out).rstrip("\n") + "\n"


# ------------------------------------------------------------------------------ CSV and plot


CSV_COLUMNS = ("section", "dataset", "protocol", "stage", "method", "variant", "kind", "input_size", "params_m",
               "gflops", "paper_gflops", "evaluation", "setting", "metric", "mean", "std", "n", "paper", "delta",
               "verdict", "device_hours", "run_ids", "commits", "config_hashes")


def render_csv(entries: list[Entry]) -> str:
    """``leaderboard.csv``: one line per (row, primary metric), metrics in percent, 4 decimals."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for title, rows in _tables(_rows(entries)):
        for row in rows:
            r = row.first
            model = r.get("model") or {}
            ref = reference(row)
            for label, key in row.protocol.primary:
                mean, std, n = mean_std(row.protocol.display(v) for v in row.values(key))
                own_ref = ref if ref is not None and ref["metric"].partition("/")[2] == key else None
                writer.writerow([
                    "synthpose" if row.synthetic else "real", title, row.protocol.name, row.entries[0].stage,
                    r["method"], r["variant"], _kind(r).replace(DASH, ""), _input_size(r).replace(DASH, ""),
                    "" if model.get("params") is None else fmt(model["params"] / 1e6, 4),
                    "" if model.get("gflops") is None else fmt(model["gflops"], 4),
                    "" if model.get("paper_gflops") is None else fmt(model["paper_gflops"], 4),
                    _eval_label(r, row.protocol), row.entries[0].setting[:12], label,
                    "" if mean is None else fmt(mean, 4), "" if std is None else fmt(std, 4), n,
                    "" if own_ref is None else fmt(own_ref["paper"], 4),
                    "" if own_ref is None or own_ref["delta"] is None else fmt(own_ref["delta"], 4, sign=True),
                    "" if own_ref is None else own_ref["verdict"],
                    fmt(sum(float(e.record["device_hours"]) for e in row.entries), 4),
                    ";".join(e.record["run_id"] for e in row.entries),
                    ";".join(e.record["git"].get("commit") or "" for e in row.entries),
                    ";".join(e.record["config_hash"] for e in row.entries),
                ])
    return buffer.getvalue()


def plot_panels(entries: list[Entry]) -> list[tuple[str, str, list[tuple[float, float, float, str]]]]:
    """What ``render_plot`` draws: per table ``(title, metric label, [(GFLOPs, mean, std, variant)])``, the
    first primary metric in percent; rows without GFLOPs or a mean are left out."""
    panels = []
    for title, rows in _tables(_rows(entries)):
        protocol = rows[0].protocol
        label, key = protocol.primary[0]
        points = []
        for row in rows:
            gflops = (row.first.get("model") or {}).get("gflops")
            mean, std, _ = mean_std(protocol.display(v) for v in row.values(key))
            if gflops is not None and gflops > 0 and mean is not None:
                points.append((float(gflops), mean, std or 0.0, row.first["variant"]))
        panels.append((title, label, points))
    return panels


def render_plot(entries: list[Entry]) -> bytes:
    """PNG bytes: first primary metric (mean ± std) versus our GFLOPs, one panel per table (``plot_panels``)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    panels = plot_panels(entries)
    columns = min(2, max(1, len(panels)))
    grid_rows = max(1, -(-len(panels) // columns))
    figure = Figure(figsize=(5.5 * columns, 4.0 * grid_rows), dpi=100)
    FigureCanvasAgg(figure)
    if not panels:
        figure.text(0.5, 0.5, "no run records", ha="center", va="center")
    for i, (title, label, points) in enumerate(panels):
        axes = figure.add_subplot(grid_rows, columns, i + 1)
        axes.set_title(title)
        axes.set_xlabel("GFLOPs (multiply-accumulates)")
        axes.set_ylabel(f"{label} (%)")
        if not points:
            axes.text(0.5, 0.5, "no GFLOPs in the records", ha="center", va="center", transform=axes.transAxes)
            continue
        xs, ys, errors, _ = zip(*points, strict=True)
        axes.errorbar(xs, ys, yerr=errors, fmt="o", capsize=3)
        for x, y, _, name in sorted(points, key=lambda p: (p[3], p[0], p[1])):
            axes.annotate(name, (x, y), textcoords="offset points", xytext=(4, 4), fontsize=7)
        axes.set_xscale("log")
        axes.grid(True, which="both", alpha=0.3)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", metadata={"Software": None})
    return buffer.getvalue()


# ------------------------------------------------------------------------------ writing


def generate_leaderboard(records_dir: Path, out_dir: Path, *, title: str = "PoseBench leaderboard") -> Path:
    """Regenerate ``LEADERBOARD.md``, ``leaderboard.csv`` and ``leaderboard.png`` in ``out_dir`` from the
    records in ``records_dir``; returns the markdown path. Every file is built before any is written.
    Each group of records set aside (``select_runs``) is one ``warning:`` line on stderr."""
    records_dir, out_dir = Path(records_dir), Path(out_dir)
    entries = read_entries(records_dir)
    for note in select_runs(entries)[1]:
        log.warning(f"warning: {records_dir}: {note}")
    records_link = Path(os.path.relpath(records_dir.resolve(), out_dir.resolve())).as_posix()
    from benchmark.baselines import read_references

    markdown = render_markdown(entries, title, records_link, read_references(records_dir)).encode("utf-8")
    table = render_csv(entries).encode("utf-8")
    plot = render_plot(entries)
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(out_dir / PLOT_NAME, plot)
    atomic_write_bytes(out_dir / CSV_NAME, table)
    atomic_write_bytes(out_dir / MARKDOWN_NAME, markdown)
    return out_dir / MARKDOWN_NAME


# ---- command line



def add_arguments(parser: argparse.ArgumentParser) -> None:
    """``leaderboard [--records DIR] [--out DIR] [--title TEXT]``."""
    parser.add_argument("--records", type=Path, default=Path("results/runs"), help="directory of run records")
    parser.add_argument("--out", type=Path, default=Path("results"), help="where the leaderboard goes")
    parser.add_argument("--title", default="PoseBench leaderboard")


def run(args: argparse.Namespace) -> int:
    """Regenerate the leaderboard files and say where the Markdown went."""
    log.info(f"wrote {generate_leaderboard(args.records, args.out, title=args.title)}")
    return 0
