"""``train`` fault cases: a kill between validations loses at most one
epoch, a bad model key / precision / model name stops in one line before anything is built, written files
honour the umask, and a record names the CPU model and the instruction-set level torch dispatches to."""

from __future__ import annotations

import json
import os
import platform
from pathlib import Path

import numpy as np
import pytest
import pytorch_lightning as pl
import torch

from benchmark.cli import main
from benchmark.config import load_config
from benchmark.gallery import _write_palette_png
from benchmark.protocols.base import write_json, write_pred_mat
from benchmark.run_record import hardware, read_record, validate_record, write_record
from benchmark.train import train

EXAMPLE = Path(__file__).parents[1] / "benchmark" / "data" / "leaderboard" / "records" / "hourglass-8_mpii_s0.json"


def _overrides(root: Path, out: Path, *extra: str) -> list[str]:
    return [
        "method=simplebaseline-tiny", f"data.root={root}", "data.max_samples=8", "data.batch_size=4",
        "model.input_size=[64,64]", "trainer.accelerator=cpu", "trainer.devices=1",
        "trainer.enable_progress_bar=false", f"output_dir={out / 'runs'}", f"results_dir={out / 'results'}",
        "seed=3", *extra,
    ]


@pytest.fixture(scope="module")
def small_root(tmp_path_factory) -> Path:
    from datamodules.synthpose import generate_synthpose

    root = tmp_path_factory.mktemp("synthpose")
    generate_synthpose(root, num_train=8, num_val=4, seed=0, progress=False)
    return root


class _StopAfterFirstEpoch(pl.Callback):
    """A kill after epoch 0's checkpoints: the next validation (epoch 1) never comes."""

    def on_train_epoch_end(self, trainer, pl_module):
        trainer.should_stop = True


@pytest.mark.slow  # three tiny training segments: about 20 s on 2 CPU cores
def test_last_ckpt_is_written_between_validations_and_resumes_exactly(small_root, tmp_path):
    every = ("trainer.max_epochs=2", "trainer.check_val_every_n_epoch=2", "test_after_fit=false",
             "model.all_protocols=false")
    full = train(load_config(_overrides(small_root, tmp_path, "run_name=full", *every)))
    cut = train(load_config(_overrides(small_root, tmp_path, "run_name=cut", *every)),
                extra_callbacks=(_StopAfterFirstEpoch(),))
    checkpoints = cut.run_dir / "checkpoints"
    assert sorted(p.name for p in checkpoints.iterdir()) == ["last.ckpt"]  # no validation yet: no best.ckpt
    assert torch.load(checkpoints / "last.ckpt", weights_only=True)["epoch"] == 0
    resumed = train(load_config(_overrides(small_root, tmp_path, "run_name=cut", *every, "resume=last")))
    assert resumed.run_dir == cut.run_dir and resumed.run.trainer.global_step == full.run.trainer.global_step
    a, b = full.run.model.state_dict(), resumed.run.model.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert resumed.results == full.results
    # best.ckpt keeps its behaviour: written at the validation epoch, and last.ckpt carries its score.
    best = torch.load(checkpoints / "best.ckpt", weights_only=True)
    last = torch.load(checkpoints / "last.ckpt", weights_only=True)
    assert best["epoch"] == last["epoch"] == 1
    (state,) = [v for k, v in last["callbacks"].items() if "'monitor': 'val/" in k]
    assert state["best_model_score"] is not None
    record = read_record(resumed.record_path)
    assert record["hardware"]["cpu_capability"] == torch.backends.cpu.get_cpu_capability()


@pytest.mark.parametrize(("override", "expected"), [
    ("model.kwargs.sigmaa=2", ["model.kwargs.sigmaa", "accepted: ", "sigma", "deconv_channels"]),
    ("trainer.precision=64", ["trainer.precision=64", "32-true, 16-mixed, bf16-mixed"]),
    ("model.variant=nosuch", ["model.variant='nosuch'", "neither a method nor a variant",
                              "methods: ", "hrnet", "variants: ", "simplebaseline-tiny"]),
])
def test_a_bad_model_key_precision_or_name_stops_in_one_line_before_building(override, expected, tmp_path, capsys):
    data = tmp_path / "synth"  # empty: SynthPose would be generated (small here, in case it is)
    code = main(["train", *_overrides(data, tmp_path, override, "data.synth_train=4", "data.synth_val=2")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.startswith("error: ") and "\n" not in err and "Traceback" not in err
    for part in expected:
        assert part in err
    assert not data.exists() and not (tmp_path / "runs").exists() and not (tmp_path / "results").exists()


@pytest.mark.parametrize("umask", [0o022, 0o027])
def test_records_predictions_and_galleries_honour_the_umask(umask, tmp_path):
    previous = os.umask(umask)
    try:
        record = write_record(json.loads(EXAMPLE.read_text()), tmp_path / "records")
        predictions = write_pred_mat(tmp_path / "pred.mat", np.zeros((2, 16, 2)))
        keypoints = write_json(tmp_path / "keypoints.json", [{"image_id": 1}])
        gallery = tmp_path / "gallery.png"
        _write_palette_png(np.zeros((4, 4, 3), np.uint8), gallery)
    finally:
        os.umask(previous)
    for path in (record, predictions, keypoints, gallery):
        assert oct(path.stat().st_mode & 0o777) == oct(0o666 & ~umask), path.name


def test_hardware_names_the_cpu_model_and_isa_level_and_old_records_stay_valid():
    info = hardware("cpu", 1, 1)
    cpuinfo = Path("/proc/cpuinfo")
    names = [line.split(":", 1)[1].strip() for line in cpuinfo.read_text().splitlines()
             if line.startswith("model name")] if cpuinfo.is_file() else []
    assert info["cpu_model"] == (names[0] if names else platform.processor() or platform.machine())
    assert info["cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    assert info["cpu_capability"] in ("DEFAULT", "AVX2", "AVX512", "NO AVX", "ZVECTOR", "SVE256", "VSX") or info[
        "cpu_capability"].startswith("SVE")
    assert info["torch_threads"] == torch.get_num_threads()
    old = json.loads(EXAMPLE.read_text())
    assert "cpu_model" not in old["hardware"]
    validate_record(old)  # records from before the fields are still valid
