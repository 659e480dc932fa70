"""The CUDA paths the CPU suite cannot reach: bf16-mixed training, channels_last, decoding, a Lightning fit on a GPU.

Marked ``gpu``: ``make test`` deselects them, ``python -m benchmark gpu-check`` (``make gpu-check``) runs them on a
GPU machine. Without CUDA they fail, naming why, rather than pass without testing anything.
"""

from __future__ import annotations

import math

import pytest
import torch

from benchmark.commands.profile_layouts import build_random, synthetic_batch, train_step
from benchmark.config import load_config
from benchmark.run_record import read_record
from benchmark.train import train
from datamodules.synthpose import generate_synthpose
from models.codecs import DECODE_METHODS, decode_heatmaps

pytestmark = pytest.mark.gpu

BF16_RELATIVE = 2**-8 * 8
"""bf16 keeps 8 significant bits (relative rounding 2**-8); a few layers of rounding compound to a few times that."""


@pytest.fixture(autouse=True)
def cuda() -> torch.device:
    if not torch.cuda.is_available():
        pytest.fail("this test needs a CUDA device (torch.cuda.is_available() is false): run it on a GPU machine "
                    "with `make gpu-check`; `make test` deselects it")
    return torch.device("cuda")


def _tiny(cuda: torch.device, **overrides) -> torch.nn.Module:
    torch.manual_seed(0)
    return build_random("simplebaseline-tiny", input_size=[64, 64], **overrides).to(cuda)


def test_a_bf16_mixed_train_step_gives_a_finite_loss_close_to_fp32(cuda):
    model = _tiny(cuda).train()
    batch = synthetic_batch(model, 4, cuda)
    with torch.no_grad():
        fp32 = float(model.training_step(batch, 0))
    bf16 = train_step(model, batch, lambda: torch.autocast("cuda", dtype=torch.bfloat16))()
    assert math.isfinite(bf16)
    assert abs(bf16 - fp32) <= BF16_RELATIVE * abs(fp32)
    assert all(torch.isfinite(p).all() for p in model.parameters())  # the optimiser step kept the weights finite


def test_channels_last_gives_the_contiguous_outputs_within_bf16_rounding(cuda):
    contiguous = _tiny(cuda).eval()
    channels_last = _tiny(cuda).eval().to(memory_format=torch.channels_last)
    image = torch.randn(4, 3, 64, 64, device=cuda, generator=torch.Generator(cuda).manual_seed(0))
    with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16):
        expected = contiguous(image).float()
        got = channels_last(image.contiguous(memory_format=torch.channels_last)).float()
    assert got.shape == expected.shape
    assert (got - expected).abs().max() <= BF16_RELATIVE * expected.abs().max()


@pytest.mark.parametrize("method", DECODE_METHODS)
def test_heatmap_decoding_on_cuda_equals_the_cpu(cuda, method):
    generator = torch.Generator().manual_seed(0)
    heatmaps = torch.rand(3, 17, 64, 48, generator=generator)
    cpu_coords, cpu_scores = decode_heatmaps(heatmaps, method=method)
    coords, scores = decode_heatmaps(heatmaps.to(cuda), method=method)
    assert coords.device.type == "cuda"
    # Same float32 arithmetic in another order: equal to float32 rounding of a heatmap coordinate (< 64 px).
    torch.testing.assert_close(coords.cpu(), cpu_coords, rtol=0, atol=64 * 2**-20)
    torch.testing.assert_close(scores.cpu(), cpu_scores, rtol=0, atol=2**-20)


def test_a_tiny_lightning_fit_on_one_gpu_writes_its_record(cuda, tmp_path):
    root = tmp_path / "synthpose"
    generate_synthpose(root, num_train=8, num_val=4, seed=0, progress=False)
    cfg = load_config([
        "method=simplebaseline-tiny", f"data.root={root}", "data.batch_size=4", "model.input_size=[64,64]",
        "trainer.accelerator=gpu", "trainer.devices=1", "trainer.precision=bf16-mixed", "trainer.max_steps=2",
        "trainer.max_epochs=1", "trainer.enable_progress_bar=false", f"output_dir={tmp_path / 'runs'}",
        f"results_dir={tmp_path / 'results'}",
    ])
    train(cfg)
    (path,) = (tmp_path / "results").glob("*.json")
    record = read_record(path)
    assert record["hardware"]["accelerator"] == "cuda" and record["global_step"] == 2
    assert record["speed"]["precision"] == {"value": "bf16-mixed", "source": "config"}
    assert all(math.isfinite(v) for v in record["metrics"]["test"].values() if v is not None)
