"""The runner behind ``python -m benchmark train`` and ``evaluate``: build objects, fit, test, record.

Only this module seeds (``pl.seed_everything(seed, workers=True)``); models, the DataModule and the Trainer
get keyword arguments from the config, never the config itself: the ``data:`` and ``trainer:`` sections are their
constructors' keyword arguments, passed straight through with the few the runner computes (docs/configuration.md);
the model is the registry's variant (``models.build``; docs/adding-a-method.md). A run lives in
``<output_dir>/<run_name>/<timestamp>/``: ``checkpoints/{last,best}.ckpt``, CSV logs, the
prediction files of the evaluation callback and ``config.yaml``; the finished run's record goes
to ``<results_dir>/<run_id>.json`` (benchmark/run_record.py). ``resume=last|PATH`` checks the checkpoint before
anything else, stops (exit 0) when the run already finished and has its record, and otherwise continues the
run's wall-time account (``WallClock``, kept in the checkpoint): the record sums every segment.

Lightning 2.6.6 behaviour this relies on or works around (pytorch_lightning's callbacks/model_checkpoint.py,
trainer/connectors/data_connector.py and loops/fit_loop.py):

- ``save_last=True`` updates ``last.ckpt`` only when a top-k checkpoint is saved; a second
  unmonitored ``ModelCheckpoint`` writes ``last.ckpt`` every epoch. With ``check_val_every_n_epoch > 1``
  Lightning saves only after validation unless ``save_on_train_epoch_end=True``; ``on_train_epoch_end`` runs
  after that epoch's validation, so ``last.ckpt`` still carries a new best score.
- Checkpoints carry no RNG state unless a callback saves it: ``RNGStateCallback`` stores the
  torch / numpy / Python (and CUDA) generator states as tensors and plain tuples, so the
  checkpoint still loads with ``weights_only=True``, and restores them on resume.
- ``PoseDataModule`` shards its own data (``EpochSampler``), so the Trainer runs with
  ``use_distributed_sampler=False``. A resumed fit starts at the restored epoch's order also with
  loader workers: the data module sets the sampler's epoch when Lightning builds the loader
  (after restoring the loops), and the LR schedule is sized without building it earlier
  (``PoseEstimator._training_batches``).
- Under ``strategy=ddp`` Lightning re-launches this script for the other local ranks; they
  find the run directory in ``POSEBENCH_RUN_DIR`` so every rank writes into the same place.
- The batch rule (benchmark/batch_rule.py) needs the world size, which the Trainer resolves from
  ``devices: auto``; so the Trainer is built before the model, the model gets the rule's LR, and the
  rule's gradient accumulation is set on the built Trainer: Lightning reads
  ``trainer.accumulate_grad_batches`` when it fits (its own ``GradientAccumulationScheduler`` sets it the
  same way), also in the processes ``ddp_spawn`` starts, which get a copy of the Trainer.
"""

from __future__ import annotations

import dataclasses
import datetime
import logging
import math
import os
import random
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import LearningRateMonitor, ModelCheckpoint
from pytorch_lightning.loggers import CSVLogger, Logger

from benchmark import run_record
from benchmark.batch_rule import BatchRule
from benchmark.batch_rule import resolve as resolve_batch_rule
from benchmark.config import (
    MODEL_RUNNER_KEYS,
    OPTIM_RUNNER_KEYS,
    TRAINER_EXTRAS,
    RunConfig,
    config_hash,
    load_config,
    split_selectors,
    to_dict,
    to_yaml,
)
from benchmark.errors import PoseBenchError
from benchmark.evaluation import EvaluationCallback
from benchmark.reference import compare
from benchmark.run_stats import ThroughputCallback, file_entry, peak_memory
from benchmark.speed_defaults import AUTO
from benchmark.speed_defaults import resolve as resolve_speed
from datamodules.datamodule import PoseDataModule
from datamodules.datasets import PoseDataset

if TYPE_CHECKING:
    from models.base import PoseEstimator
from datamodules.transforms import Augmentation

log = logging.getLogger(__name__)

RUN_DIR_ENV = "POSEBENCH_RUN_DIR"
CHECKPOINT_KEY = "posebench"


class RunError(PoseBenchError):
    """A run cannot start as configured (bad checkpoint, nothing to resume, ...); the message says why."""


class RunFinished(Exception):
    """``resume`` names a run that already trained all ``trainer.max_epochs`` and wrote its record: nothing to do.

    Not an error (a requeue script may always pass ``resume=last``); the message says where the run and record are.
    """


# ------------------------------------------------------------------------------ RNG state


def collect_rng_state() -> dict[str, Any]:
    """torch, CUDA, numpy and Python RNG states as tensors and plain containers (``weights_only``-safe)."""
    _, keys, pos, has_gauss, cached = np.random.get_state(legacy=True)
    version, internal, gauss = random.getstate()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {"keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
        "python": {"version": int(version), "internal": torch.tensor(internal, dtype=torch.int64), "gauss": gauss},
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    """Inverse of ``collect_rng_state``."""
    torch.set_rng_state(state["torch"])
    numpy_state = state["numpy"]
    np.random.set_state(("MT19937", numpy_state["keys"].numpy().astype(np.uint32), numpy_state["pos"],
                         numpy_state["has_gauss"], numpy_state["cached_gaussian"]))
    python_state = state["python"]
    random.setstate((python_state["version"], tuple(int(v) for v in python_state["internal"].tolist()),
                     python_state["gauss"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


class RNGStateCallback(pl.Callback):
    """Saves the global RNG states into every checkpoint and restores them when fitting resumes.

    Rank 0's states are saved; all ranks start from the same seed, so they agree.
    """

    def on_save_checkpoint(self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict) -> None:
        checkpoint["rng_state"] = collect_rng_state()

    def on_load_checkpoint(self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict) -> None:
        if "rng_state" in checkpoint:
            restore_rng_state(checkpoint["rng_state"])


@dataclasses.dataclass
class WallClock:
    """The wall time of a run over all its segments (a resumed run is a new segment of the same run).

    A checkpoint carries the account up to its save (``as_meta``), so a resumed run continues it; time an
    interrupted segment spent after its last checkpoint is not counted.
    """

    started: float  # this segment's start (time.time())
    previous_s: float = 0.0  # earlier segments, each up to its last checkpoint
    segments: int = 1  # this one included
    first_started: float | None = None  # the first segment's start; None: this one

    @property
    def run_started(self) -> float:
        return self.started if self.first_started is None else self.first_started

    def wall_s(self) -> float:
        """Seconds of all segments so far."""
        return self.previous_s + (time.time() - self.started)

    def as_meta(self) -> dict[str, Any]:
        """``{wall_time_s, segments, started}`` for the checkpoint's ``posebench`` entry."""
        return {"wall_time_s": self.wall_s(), "segments": self.segments, "started": self.run_started}


class ProvenanceCallback(pl.Callback):
    """Stores the variant, method and resolved config in every checkpoint (``evaluate`` checks them), and the
    run's wall-time account (``WallClock``) that a resumed run continues."""

    def __init__(self, meta: dict[str, Any], clock: WallClock) -> None:
        self.meta = meta
        self.clock = clock

    def on_save_checkpoint(self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict) -> None:
        checkpoint[CHECKPOINT_KEY] = {**self.meta, **self.clock.as_meta()}


# ------------------------------------------------------------------------------ builders


def build_augmentation(cfg: RunConfig) -> Augmentation | None:
    """The ``Augmentation`` of ``cfg.augmentation`` (None when disabled)."""
    values = dataclasses.asdict(cfg.augmentation)
    if not values.pop("enabled"):
        return None
    return Augmentation(**values)


def resolve_input_size(cfg: RunConfig) -> tuple[int, int]:
    """``model.input_size`` or the variant's; a bare method name needs it set."""
    from models import VARIANTS

    if cfg.model.input_size is not None:
        if len(cfg.model.input_size) != 2:
            raise RunError(f"model.input_size must be [H, W], got {cfg.model.input_size}")
        return int(cfg.model.input_size[0]), int(cfg.model.input_size[1])
    if cfg.model.variant in VARIANTS:
        return VARIANTS[cfg.model.variant].input_size
    raise RunError(f"model.variant={cfg.model.variant!r} is a method, not a variant: set model.input_size=[H,W]")


def method_of(variant: str) -> str:
    """The method name of a registry variant (or the name itself when it is a method)."""
    from models import METHODS, VARIANTS

    if variant in VARIANTS:
        return VARIANTS[variant].method
    if variant in METHODS:
        return variant
    raise RunError(f"model.variant={variant!r} is neither a method nor a variant; "
                   f"methods: {', '.join(sorted(METHODS))}; variants: {', '.join(sorted(VARIANTS))}")


PRECISIONS = ("32-true", "16-mixed", "bf16-mixed")
"""``trainer.precision`` values a run supports (the data and the evaluation are float32; 64-true fails)."""


def check_run_config(cfg: RunConfig) -> None:
    """Raise ``RunError`` (one line naming the key, its value and the valid choices) for a model name that is
    neither a method nor a variant, a ``model.kwargs`` key the method's constructor does not take, or an
    unsupported ``trainer.precision``; checked before anything is generated, built or written."""
    from models import METHODS
    from models.registry import accepted_kwargs

    method = method_of(cfg.model.variant)
    valid = accepted_kwargs(METHODS[method])
    unknown = sorted(set(cfg.model.kwargs) - valid)
    if unknown:
        raise RunError(f"model.kwargs.{unknown[0]}: {METHODS[method].__name__} ({method}) takes no argument "
                       f"{unknown[0]!r}; accepted: {', '.join(sorted(valid))}")
    if str(cfg.trainer.precision) not in (*PRECISIONS, AUTO):
        raise RunError(f"trainer.precision={cfg.trainer.precision}: not supported; choose one of "
                       f"{', '.join(PRECISIONS)} or {AUTO} (benchmark/speed_defaults.py)")
    if cfg.trainer.channels_last not in (True, False, AUTO):
        raise RunError(f"trainer.channels_last={cfg.trainer.channels_last!r}: choose true, false or {AUTO} "
                       f"(benchmark/speed_defaults.py)")


def build_datamodule(cfg: RunConfig, input_size: tuple[int, int]) -> PoseDataModule:
    """The ``PoseDataModule`` of ``cfg.data`` (its keyword arguments) with the run's input size, augmentation, seed
    and pixel-grid convention."""
    return PoseDataModule(**dataclasses.asdict(cfg.data), input_size=input_size, augmentation=build_augmentation(cfg),
                          seed=cfg.seed, convention=cfg.model.convention)


def model_kwargs(cfg: RunConfig, dataset: PoseDataset, input_size: tuple[int, int],
                 lr: float | None = None) -> dict[str, Any]:
    """Constructor arguments for ``models.build``: skeleton from the data, and the ``optim:`` and ``model:`` keys
    named like ``PoseEstimator``'s arguments, then ``model.kwargs``; ``lr`` replaces ``optim.lr`` (the batch
    rule's LR)."""
    optim = {k: v for k, v in dataclasses.asdict(cfg.optim).items() if k not in OPTIM_RUNNER_KEYS}
    model = {k: v for k, v in dataclasses.asdict(cfg.model).items() if k not in MODEL_RUNNER_KEYS}
    return {
        "num_joints": dataset.skeleton.num_joints,
        "flip_pairs": [list(pair) for pair in dataset.skeleton.flip_pairs],
        "input_size": list(input_size),
        **optim, **({} if lr is None else {"lr": lr}), **model,
        **dict(cfg.model.kwargs),
    }


def trainer_arguments(cfg: RunConfig, speed: dict[str, dict[str, Any]] | None = None) -> dict[str, Any]:
    """``trainer:`` as ``pl.Trainer`` keyword arguments: PoseBench's extras left out, ``deterministic: auto`` and
    ``precision: auto`` resolved (from ``speed``, the run's ``speed_settings``, when the caller has them)."""
    extras = {name for name, _, _ in TRAINER_EXTRAS}
    arguments = {k: v for k, v in dataclasses.asdict(cfg.trainer).items() if k not in extras}
    precision = (speed or speed_settings(cfg))["precision"]["value"]
    return {**arguments, "deterministic": _deterministic(cfg), "precision": precision}


def speed_settings(cfg: RunConfig) -> dict[str, dict[str, Any]]:
    """The channels_last and precision a run uses and where each came from (``config``, or the measured default
    of benchmark/speed_defaults.py for ``auto``): the run record's ``speed``."""
    from benchmark.speed_defaults import accelerator_of

    accelerator = accelerator_of(str(cfg.trainer.accelerator), torch.cuda.is_available())
    return resolve_speed(method_of(cfg.model.variant), accelerator, cfg.trainer.channels_last, cfg.trainer.precision)


def _run_name(cfg: RunConfig) -> str:
    if cfg.run_name:
        return cfg.run_name
    data = cfg.data.name + (f"-{cfg.data.format}" if cfg.data.name == "synthpose" else "")
    return f"{cfg.model.variant}_{data}"


def _latest_run_dir(base: Path) -> Path:
    runs = base.glob("*") if base.is_dir() else []
    candidates = sorted(p for p in runs if (p / "checkpoints" / "last.ckpt").is_file())
    if not candidates:
        raise RunError(f"resume=last: no run with checkpoints/last.ckpt under {base} (set run_name or resume=PATH)")
    return candidates[-1]


def resolve_run_dir(cfg: RunConfig) -> tuple[Path, Path | None]:
    """``(run_dir, checkpoint to resume or None)``; the same directory on every DDP rank."""
    base = Path(cfg.output_dir) / _run_name(cfg)
    resume: Path | None = None
    run_dir: Path | None
    if cfg.resume == "last":
        run_dir = _latest_run_dir(base)
        resume = run_dir / "checkpoints" / "last.ckpt"
    elif cfg.resume:
        resume = Path(cfg.resume)
        if not resume.is_file():
            raise RunError(f"resume={cfg.resume}: no such checkpoint file")
        run_dir = resume.parent.parent if resume.parent.name == "checkpoints" else None
    else:
        run_dir = None
    if os.environ.get(RUN_DIR_ENV) and int(os.environ.get("LOCAL_RANK", "0")) > 0:
        return Path(os.environ[RUN_DIR_ENV]), resume
    if run_dir is None:
        stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
        # torchrun starts every rank at once: its run id names the directory on all of them.
        suffix = os.environ.get("TORCHELASTIC_RUN_ID") or uuid.uuid4().hex[:6]
        run_dir = base / (f"torchrun-{suffix}" if "TORCHELASTIC_RUN_ID" in os.environ else f"{stamp}-{suffix}")
    os.environ[RUN_DIR_ENV] = str(run_dir)
    return run_dir, resume


def _epochs_done(checkpoint: dict[str, Any]) -> int:
    """Training epochs a checkpoint has finished, as Lightning's fit loop counts them when it resumes."""
    progress = checkpoint.get("loops", {}).get("fit_loop", {}).get("epoch_progress", {}).get("current", {})
    # last.ckpt is saved at an epoch's end, before Lightning marks the epoch completed; it counts as processed.
    if "processed" in progress:
        return int(progress["processed"])
    return int(checkpoint.get("epoch", -1)) + 1


def resume_clock(cfg: RunConfig, run_dir: Path, resume: Path, started: float) -> WallClock:
    """Check the resume checkpoint (before any data is generated) and continue its wall-time account.

    Raises ``RunError`` when it cannot be loaded and ``RunFinished`` when it already trained
    ``trainer.max_epochs`` and the run's record exists (a raised ``trainer.max_epochs`` resumes).
    """
    checkpoint = load_checkpoint(resume, key="resume")
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint:
        raise RunError(f"resume={resume}: not a training checkpoint (no state_dict)")
    done = _epochs_done(checkpoint)
    record = Path(cfg.results_dir) / f"{_run_id(run_dir)}.json"
    max_epochs = cfg.trainer.max_epochs
    if max_epochs is not None and 0 <= max_epochs <= done and record.is_file():  # -1 or null: Lightning trains on
        raise RunFinished(f"run {run_dir} finished at epoch {done} (trainer.max_epochs={cfg.trainer.max_epochs}); "
                          f"its record is {record}; nothing to resume (raise trainer.max_epochs to train further)")
    meta = checkpoint.get(CHECKPOINT_KEY)
    meta = meta if isinstance(meta, dict) else {}
    # Checkpoints from before the account: their time is unknown (0 s), their segment still counts.
    return WallClock(started=started, previous_s=float(meta.get("wall_time_s", 0.0)),
                     segments=int(meta.get("segments", 1)) + 1, first_started=meta.get("started"))


def _deterministic(cfg: RunConfig) -> bool | str:
    value = cfg.trainer.deterministic
    if value == "auto":
        on_cpu = cfg.trainer.accelerator == "cpu" or not torch.cuda.is_available()
        return True if on_cpu else "warn"
    choices: dict[str, bool | str] = {"true": True, "false": False, "warn": "warn"}
    if str(value).lower() not in choices:
        raise RunError(f"trainer.deterministic must be auto, true, false or warn; got {value!r}")
    return choices[str(value).lower()]


def _has_wandb_key() -> bool:
    if os.environ.get("WANDB_API_KEY"):
        return True
    try:
        import netrc

        return netrc.netrc().authenticators("api.wandb.ai") is not None
    except (OSError, netrc.NetrcParseError):
        return False


def build_loggers(cfg: RunConfig, run_dir: Path) -> list[Logger]:
    """CSV always; with ``logger=wandb`` also a WandbLogger, offline (into ``wandb/``) without an API key."""
    loggers: list[Logger] = [CSVLogger(save_dir=str(run_dir), name="logs")]
    if cfg.logger == "wandb":
        from pytorch_lightning.loggers import WandbLogger

        # The resolved config goes under one "posebench" key: a wandb sweep sets and locks its parameters as
        # top-level config keys, so a parameter named like a group ("data", "method") would replace that section.
        loggers.append(WandbLogger(project=cfg.wandb_project, name=run_dir.parent.name, save_dir=".",
                                   offline=not _has_wandb_key(), config={"posebench": to_dict(cfg)}))
    elif cfg.logger != "csv":
        raise RunError(f"logger must be csv or wandb, got {cfg.logger!r}")
    return loggers


@dataclasses.dataclass
class Run:
    """Everything a run is made of, built but not started."""

    cfg: RunConfig
    run_dir: Path
    resume: Path | None
    datamodule: PoseDataModule
    model: pl.LightningModule
    trainer: pl.Trainer
    evaluation: EvaluationCallback
    checkpoint: ModelCheckpoint
    throughput: ThroughputCallback
    batch_rule: BatchRule | None = None
    clock: WallClock = dataclasses.field(default_factory=lambda: WallClock(started=time.time()))
    speed: dict[str, Any] = dataclasses.field(default_factory=dict)


def apply_batch_rule(cfg: RunConfig, trainer: pl.Trainer) -> BatchRule | None:
    """The batch rule of ``cfg`` for ``trainer``'s world size, with its gradient accumulation set on ``trainer``
    and its line logged (on rank zero); None when ``optim.total_batch`` is null."""
    rule = resolve_batch_rule(total_batch=cfg.optim.total_batch, mode=cfg.optim.batch_rule,
                              per_device=cfg.data.batch_size, world_size=int(trainer.world_size),
                              accumulate=cfg.trainer.accumulate_grad_batches, lr=float(cfg.optim.lr))
    if rule is None:
        return None
    trainer.accumulate_grad_batches = rule.accumulate
    log.info(rule.message())
    return rule


def build_run(cfg: RunConfig, extra_callbacks: tuple[pl.Callback, ...] = (), *, fitting: bool = True,
              started: float | None = None) -> Run:
    """Seed, then build the DataModule, the callbacks, the Trainer and the model of ``cfg``.

    When ``fitting``, the batch rule (``optim.total_batch``) sets the Trainer's gradient accumulation
    or the model's LR for the Trainer's world size; a run that only tests has no rule. ``started``
    (default: now) starts the run's ``WallClock``; a resumed run continues its checkpoint's.
    """
    import models

    check_run_config(cfg)
    if cfg.trainer.sync_batchnorm and (cfg.trainer.accelerator == "cpu" or not torch.cuda.is_available()):
        raise RunError("trainer.sync_batchnorm=true needs GPUs (torch's SyncBatchNorm has no CPU implementation)")
    run_dir, resume = resolve_run_dir(cfg)
    started = time.time() if started is None else started
    clock = resume_clock(cfg, run_dir, resume, started) if resume else WallClock(started=started)
    input_size = resolve_input_size(cfg)
    datamodule = build_datamodule(cfg, input_size)
    datamodule.prepare_data()
    pl.seed_everything(cfg.seed, workers=True)
    datamodule.setup("fit")
    datamodule.setup("test")
    evaluation = EvaluationCallback(datamodule.val_dataset, run_dir / "predictions", datamodule.test_dataset,
                                    instance_score=cfg.model.instance_score)
    checkpoint = ModelCheckpoint(
        dirpath=run_dir / "checkpoints", filename="best", monitor=evaluation.primary_metric("val"), mode="max",
        save_top_k=1, auto_insert_metric_name=False, enable_version_counter=False,
    )
    # Lightning 2.6.6 refreshes save_last=True's last.ckpt only in steps where a top-k checkpoint was
    # saved, so a run whose metric stopped improving would resume from a stale epoch. A second,
    # unmonitored callback overwrites last.ckpt every epoch instead; it comes after the best one so
    # that last.ckpt carries the updated best score. It saves at every training epoch's end, also
    # between validations (check_val_every_n_epoch > 1), so a killed run loses at most one epoch.
    last = ModelCheckpoint(dirpath=run_dir / "checkpoints", filename="last", save_top_k=1,
                           auto_insert_metric_name=False, enable_version_counter=False, save_on_train_epoch_end=True)
    meta: dict[str, Any] = {"variant": cfg.model.variant, "method": method_of(cfg.model.variant),
                            "config": to_dict(cfg)}
    throughput = ThroughputCallback()
    speed = speed_settings(cfg)
    trainer = pl.Trainer(
        **trainer_arguments(cfg, speed), default_root_dir=str(run_dir), logger=build_loggers(cfg, run_dir),
        callbacks=[evaluation, checkpoint, last, RNGStateCallback(),
                   ProvenanceCallback(meta, clock), LearningRateMonitor(logging_interval="epoch"), throughput,
                   *extra_callbacks],
        use_distributed_sampler=False,
    )
    rule = apply_batch_rule(cfg, trainer) if fitting else None
    meta["batch_rule"] = None if rule is None else rule.as_dict()
    # Built after the Trainer (which draws no random numbers), so the model gets the rule's LR.
    lr = None if rule is None else rule.lr
    model = models.build(cfg.model.variant, **model_kwargs(cfg, datamodule.val_dataset, input_size, lr))
    for key, setting in speed.items():
        if setting["source"] != "config":
            log.info(f"trainer.{key}={setting['value']} ({setting['source']})")
    if speed["channels_last"]["value"]:
        model = model.to(memory_format=torch.channels_last)
    if cfg.trainer.compile:
        # torch.compile wraps the module in an OptimizedModule that forwards attributes to it (``_orig_mod``).
        model = cast("PoseEstimator", torch.compile(model))
    return Run(cfg, run_dir, resume, datamodule, model, trainer, evaluation, checkpoint, throughput, rule, clock,
               speed)


# ------------------------------------------------------------------------------ records


def _dataset_info(cfg: RunConfig, datamodule: PoseDataModule, stages: tuple[str, ...]) -> dict[str, Any]:
    datasets = {"train": datamodule.train_dataset, "val": datamodule.val_dataset, "test": datamodule.test_dataset}
    fingerprints = {stage: datasets[stage].fingerprint() for stage in stages}
    sizes = {stage: len(datasets[stage]) for stage in stages}
    return {"name": cfg.data.name, "format": cfg.data.format if cfg.data.name == "synthpose" else None,
            "root": str(Path(cfg.data.root).resolve()), "val_boxes": cfg.data.val_boxes,
            "fingerprint": fingerprints, "sizes": sizes}


def verdict(cfg: RunConfig, results: dict[str, dict[str, float]]) -> dict[str, Any]:
    """``{}`` without a reference; else the reference with ``ours``, ``delta``, ``comparable`` and ``reproduced``.

    A reference measured on another split than the one scored here (a test-server number; PoseBench scores
    the val split) is not comparable: ``reproduced`` is None, neither a success nor a failure.
    """
    ref = cfg.reference
    if ref.metric is None or ref.value is None:
        return {}
    stage, _, name = ref.metric.partition("/")
    return {**dataclasses.asdict(ref), **compare(ref.value, results.get(stage, {}).get(name), ref.tolerance, ref.split)}


def evaluation_protocol(run: Run) -> dict[str, Any]:
    """The scored protocol: boxes (with the detection file and its sha256), decoder, flip test and the
    pixel-grid convention."""
    network = cast("PoseEstimator", getattr(run.model, "_orig_mod", run.model))
    decoder, flip_test = network.primary_protocol
    protocol: dict[str, Any] = {"boxes": run.cfg.data.val_boxes, "decoder": decoder, "flip_test": flip_test,
                                "convention": network.convention.name, "detections": None}
    if run.cfg.data.val_boxes == "detections":
        dataset = run.datamodule.test_dataset
        protocol["detections"] = file_entry(dataset.annotation_files[-1])
    return protocol


def protocol_entries(run: Run) -> list[dict[str, Any]]:
    """``[{stage, decoder, flip_test, metrics}]``: every decoder x flip-test protocol the evaluation scored."""
    return [{"stage": stage, **entry} for stage, entries in sorted(run.evaluation.protocol_results.items())
            for entry in entries]


def wandb_run(trainer: pl.Trainer) -> dict[str, Any] | None:
    """``{id, url, project, offline}`` of the run's wandb run; None without a WandbLogger."""
    from pytorch_lightning.loggers import WandbLogger

    for logger in trainer.loggers:
        if isinstance(logger, WandbLogger):
            experiment = logger.experiment
            offline = experiment.settings.mode in ("offline", "dryrun", "disabled")
            return {"id": experiment.id, "url": None if offline else experiment.url,
                    "project": experiment.project, "offline": offline}
    return None


def _run_id(run_dir: Path) -> str:
    return f"{run_dir.parent.name}_{run_dir.name}"


def run_id(run: Run) -> str:
    """``<run name>_<run directory>``: the record's id and file name."""
    return _run_id(run.run_dir)


def make_record(run: Run, results: dict[str, dict[str, float]], started: float, wall: float,
                stages: tuple[str, ...], checkpoint: str | None, gallery: Path | None = None,
                imported: dict[str, Any] | None = None) -> dict[str, Any]:
    """The run record of a finished run (see benchmark/run_record.py); ``gallery`` is the PNG beside it;
    ``imported`` describes published weights the scored checkpoint was imported from."""
    cfg, trainer = run.cfg, run.trainer
    world = int(trainer.world_size)
    best = {}
    if run.checkpoint.best_model_score is not None:
        best = {"metric": run.checkpoint.monitor, "value": float(run.checkpoint.best_model_score),
                "checkpoint": file_entry(run.checkpoint.best_model_path)}
    accelerator = type(trainer.accelerator).__name__.replace("Accelerator", "").lower()
    input_size = list(resolve_input_size(cfg))
    return {
        **model_summary(cfg, run.model, input_size),
        "input_size": input_size,
        "protocol": evaluation_protocol(run),
        "protocols": protocol_entries(run),
        "world_size": world,
        # After the batch rule: the Trainer's accumulation is the rule's.
        "effective_batch": int(cfg.data.batch_size) * world * int(trainer.accumulate_grad_batches),
        "batch_rule": None if run.batch_rule is None else run.batch_rule.as_dict(),
        "throughput": run.throughput.summary(),
        "peak_memory": peak_memory(),
        "speed": run.speed,
        "wandb": wandb_run(trainer),
        "schema_version": run_record.SCHEMA_VERSION,
        "run_id": run_id(run),
        "gallery": None if gallery is None else gallery.name,
        "name": run.run_dir.parent.name,
        "variant": cfg.model.variant,
        "method": method_of(cfg.model.variant),
        "dataset": _dataset_info(cfg, run.datamodule, stages),
        "recipe": cfg.recipe,
        "metrics": {stage: dict(table) for stage, table in results.items()},
        "best": best,
        "reference": verdict(cfg, results),
        "config": to_dict(cfg),
        "config_hash": config_hash(cfg),
        "seed": int(cfg.seed),
        "git": run_record.git_state(),
        "packages": run_record.package_versions(),
        "hardware": run_record.hardware(accelerator, int(trainer.num_devices), int(trainer.num_nodes)),
        "started_at": datetime.datetime.fromtimestamp(started, datetime.timezone.utc).isoformat(),
        "finished_at": datetime.datetime.now(datetime.timezone.utc).isoformat(),
        "wall_time_s": float(wall),
        # Summed over the segments of a resumed run at this run's world size.
        "device_hours": float(wall * world / 3600.0),
        "segments": int(run.clock.segments),
        "checkpoint": file_entry(checkpoint),
        "epochs": int(trainer.current_epoch),
        "global_step": int(trainer.global_step),
        "run_dir": str(run.run_dir),
        "imported": imported,
    }


def model_summary(cfg: RunConfig, model: torch.nn.Module, input_size: list[int]) -> dict[str, Any]:
    """``{"model": {params, gflops, paper_gflops, modernized, tiny}}`` for the record (the leaderboard reads it)."""
    from benchmark.flops import count_gflops
    from models import VARIANTS

    variant = VARIANTS.get(cfg.model.variant)
    network = getattr(model, "_orig_mod", model)  # the module inside torch.compile's wrapper
    return {"model": {
        "params": int(sum(p.numel() for p in network.parameters())),
        "gflops": count_gflops(network, (input_size[0], input_size[1])),
        "paper_gflops": variant.paper_gflops if variant else None,
        "modernized": variant.modernized if variant else False,
        "tiny": variant.tiny if variant else False,
    }}


@dataclasses.dataclass
class RunResult:
    """What ``train`` / ``evaluate`` hand back: metrics per stage, the record path, the verdict."""

    results: dict[str, dict[str, float]]
    record_path: Path | None
    run_dir: Path
    verdict: dict[str, Any]
    run: Run


def _logged_results(trainer: pl.Trainer) -> dict[str, dict[str, float]]:
    """``{stage: {metric: value}}`` from the Trainer's logged ``val/...`` and ``test/...`` metrics."""
    results: dict[str, dict[str, float]] = {}
    for key, value in trainer.callback_metrics.items():
        stage, _, name = key.partition("/")
        if stage in ("val", "test") and name != "loss" and not name.startswith("protocol/"):
            results.setdefault(stage, {})[name] = float(value)
    return results


def write_gallery(run: Run, path: Path) -> Path | None:
    """The best / worst prediction gallery of the last scored stage (test, else val) as a PNG at
    ``path``, also logged to wandb when the run has a WandbLogger; None when nothing was predicted
    (e.g. ddp_spawn, whose predictions stay in the child processes) or no person is annotated."""
    from pytorch_lightning.loggers import WandbLogger

    from benchmark.gallery import render_gallery

    stage = "test" if "test" in run.evaluation.predictions else "val"
    predictions = run.evaluation.predictions.get(stage)
    if predictions is None:
        return None
    dataset = run.datamodule.test_dataset if stage == "test" else run.datamodule.val_dataset
    title = f"{run.cfg.model.variant} on {dataset.name} {dataset.split}: best (top) and worst (bottom)"
    written = render_gallery(dataset, predictions["keypoints"], path, title=title)
    for logger in run.trainer.loggers:
        if written is not None and isinstance(logger, WandbLogger):
            logger.log_image(key=f"{stage}/gallery", images=[str(written)])
    return written


def _finish(run: Run, stages: tuple[str, ...], checkpoint: str | None,
            imported: dict[str, Any] | None = None) -> RunResult:
    # Under ddp_spawn the callback ran in child processes; only the logged (float32) metrics come back.
    results = {stage: dict(table) for stage, table in run.evaluation.results.items()} or _logged_results(run.trainer)
    started, wall = run.clock.run_started, run.clock.wall_s()
    path = None
    if run.trainer.is_global_zero:
        beside_record = Path(run.cfg.results_dir) / f"{run_id(run)}_gallery.png"
        gallery = write_gallery(run, beside_record if run.cfg.write_record else run.run_dir / "gallery.png")
        if run.cfg.write_record:
            record = make_record(run, results, started, wall, stages, checkpoint, gallery, imported)
            path = run_record.write_record(record, run.cfg.results_dir)
    return RunResult(results, path, run.run_dir, verdict(run.cfg, results), run)


def train(cfg: RunConfig, extra_callbacks: tuple[pl.Callback, ...] = ()) -> RunResult:
    """Fit ``cfg`` (resuming when ``cfg.resume`` is set), test, write the run record."""
    run = build_run(cfg, extra_callbacks, started=time.time())
    run.run_dir.mkdir(parents=True, exist_ok=True)
    if run.trainer.is_global_zero:
        (run.run_dir / "config.yaml").write_text(to_yaml(cfg))
    run.trainer.fit(run.model, datamodule=run.datamodule, ckpt_path=str(run.resume) if run.resume else None)
    stages: tuple[str, ...] = ("train", "val")
    if cfg.test_after_fit:
        run.trainer.test(run.model, datamodule=run.datamodule)
        stages = ("train", "val", "test")
    last = run.run_dir / "checkpoints" / "last.ckpt"
    return _finish(run, stages, str(last) if last.is_file() else None)


# ------------------------------------------------------------------------------ evaluate


def load_checkpoint(path: Path, key: str = "ckpt") -> dict[str, Any]:
    """A training checkpoint loaded with ``weights_only=True``; unreadable files raise ``RunError`` (one line,
    starting ``<key>=<path>:``)."""
    if not path.is_file():
        raise RunError(f"{key}={path}: no such checkpoint file")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 - any unpickling failure means the same thing to the user
        reason = " ".join(str(error).split())  # torch's messages span lines; the CLI prints one
        raise RunError(
            f"{key}={path}: cannot load it as a PoseBench checkpoint ({type(error).__name__}: {reason})"
        ) from None


def evaluate(overrides: list[str]) -> RunResult:
    """Test the checkpoint ``ckpt=PATH`` on the configured split; the model comes from the checkpoint.

    Without ``method=`` the checkpoint's variant and model settings are used; a ``method=`` of a
    different method than the checkpoint's fails, saying which method it holds.
    """
    selectors, dotlist = split_selectors(overrides)
    given = {item.split("=", 1)[0] for item in dotlist}
    cfg = load_config(overrides)
    if not cfg.ckpt:
        raise RunError("evaluate needs ckpt=PATH (a checkpoint written by python -m benchmark train)")
    path = Path(cfg.ckpt)
    checkpoint = load_checkpoint(path)
    meta = checkpoint.get(CHECKPOINT_KEY)
    if not isinstance(meta, dict):
        raise RunError(f"ckpt={path}: not a PoseBench training checkpoint (no '{CHECKPOINT_KEY}' entry)")
    if "method" in selectors:
        wanted = method_of(cfg.model.variant)
        if wanted != meta["method"]:
            raise RunError(
                f"ckpt={path} holds a {meta['method']!r} model (variant {meta['variant']!r}) but method="
                f"{selectors['method']} asks for {wanted!r}; drop method= or pass method={meta['variant']}"
            )
    else:
        saved = meta["config"]["model"]
        cfg.model.variant = saved["variant"]
        cfg.model.input_size = saved["input_size"]
        cfg.model.kwargs = dict(saved["kwargs"])
        if "model.convention" not in given:
            # The pixel grid the weights were trained under (checkpoints from before conventions: aligned).
            cfg.model.convention = saved.get("convention", "aligned")
    from models import METHODS
    from models.registry import accepted_kwargs

    if "pretrained" in accepted_kwargs(METHODS[method_of(cfg.model.variant)]):
        # The checkpoint's weights replace any ImageNet initialisation: do not download it first.
        cfg.model.kwargs = {**cfg.model.kwargs, "pretrained": False}
    cfg.resume = None
    cfg.run_name = cfg.run_name or f"eval_{_run_name(cfg)}"
    run = build_run(cfg, fitting=False, started=time.time())
    try:
        run.model.load_state_dict(checkpoint["state_dict"], strict=True)
    except RuntimeError as error:
        raise RunError(f"ckpt={path}: its weights do not fit {cfg.model.variant} as configured: {error}") from None
    run.trainer.test(run.model, datamodule=run.datamodule)
    return _finish(run, ("test",), str(path), meta.get("imported"))


def train_from_overrides(overrides: list[str]) -> RunResult:
    """``python -m benchmark train key=value ...``."""
    return train(load_config(overrides))


def format_results(result: RunResult) -> str:
    """A short human-readable summary: the headline metrics, the record path and any verdict."""
    lines = []
    for stage, table in result.results.items():
        headline = {k: v for k, v in table.items() if "/" not in k or k.endswith("/Mean") or k.endswith("Mean@0.1")}
        shown = ", ".join(f"{k}={v:.4g}" for k, v in headline.items() if isinstance(v, float) and math.isfinite(v))
        lines.append(f"{stage}: {shown}")
    if result.record_path is not None:
        lines.append(f"run record: {result.record_path}")
    lines.append(f"run directory: {result.run_dir}")
    v = result.verdict
    if v:
        status = {True: "REPRODUCED", False: "NOT REPRODUCED", None: "NOT COMPARABLE"}[v["reproduced"]]
        ours = "missing" if v["ours"] is None else f"{v['ours']:.4f}"
        delta = "" if v["delta"] is None else f", delta {v['delta']:+.4f}"
        split = "" if v["comparable"] else f" (a {v['split']}-split number; this run scores val)"
        lines.append(f"verdict: {status}: {v['metric']} = {ours} vs {v['value']} +- {v['tolerance']}{delta}{split} "
                     f"({v['source']})")
    return "\n".join(lines)
