"""ImageNet weights (models/pretrained.py): a clear error within seconds offline, cached weights loaded as before."""

from __future__ import annotations

import dataclasses
import json
import os
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import safetensors.torch
import timm
import torch
import torchvision

import models
from models import pretrained
from models.pretrained import (
    PretrainedWeightsUnavailable,
    create_timm_model,
    network_problem,
)

PROJECT_ROOT = Path(__file__).resolve().parents[2]
COMMIT = "0123456789abcdef0123456789abcdef01234567"
TINY_TIMM = "test_resnet.r160_in1k"  # timm's 0.4 M-parameter test ResNet (Hub id timm/test_resnet.r160_in1k)

# One variant per method with ImageNet weights: (variant, text naming the model, the weights, what was looked for).
OFFLINE_CASES = [
    ("hrnet-w32", "hrnet-w32", "hrnet_w32.ms_in1k", "timm/hrnet_w32.ms_in1k"),
    ("simplebaseline-res50", "simplebaseline", "resnet50.tv_in1k", "resnet50-0676ba61.pth"),
    ("deeppose-res50", "deeppose", "resnet50.tv_in1k", "timm/resnet50.tv_in1k"),
    ("ief", "ief (googlenet)", "GoogLeNet_Weights.IMAGENET1K_V1", "googlenet-1378be20.pth"),
]


@pytest.fixture
def caches(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Empty Hugging Face and torch.hub caches under ``tmp_path``; Hub offline mode off."""
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    # huggingface_hub reads these at import; the helper and try_to_load_from_cache read the module's values.
    monkeypatch.setattr(pretrained.hub_constants, "HF_HUB_CACHE", str(tmp_path / "hf" / "hub"))
    monkeypatch.setattr(pretrained.hub_constants, "HF_HUB_OFFLINE", False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    return tmp_path


@pytest.fixture
def no_network(caches: Path, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every probe fails, as with no network; returns the URLs probed."""
    probed: list[str] = []

    def unreachable(url: str, timeout: float = pretrained.PROBE_TIMEOUT_S) -> str:
        probed.append(url)
        return "simulated: no network"

    monkeypatch.setattr(pretrained, "network_problem", unreachable)
    return probed


@pytest.fixture
def no_probe(caches: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Any network probe fails the test (a cache hit must not touch the network)."""

    def forbidden(url: str, timeout: float = pretrained.PROBE_TIMEOUT_S) -> str:
        raise AssertionError(f"probed {url} although the weights are cached")

    monkeypatch.setattr(pretrained, "network_problem", forbidden)


def _fake_hub_file(caches: Path, repo: str, state: dict[str, torch.Tensor]) -> Path:
    """``state`` as ``model.safetensors`` of Hub repo ``repo`` in huggingface_hub's cache layout."""
    repo_dir = caches / "hf" / "hub" / f"models--{repo.replace('/', '--')}"
    (repo_dir / "refs").mkdir(parents=True)
    (repo_dir / "refs" / "main").write_text(COMMIT)
    path = repo_dir / "snapshots" / COMMIT / "model.safetensors"
    path.parent.mkdir(parents=True)
    safetensors.torch.save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    return path


def _random_state(name: str, seed: int) -> dict[str, torch.Tensor]:
    torch.manual_seed(seed)
    return timm.create_model(name, pretrained=False).state_dict()


# ------------------------------------------------------------------------------ offline


@pytest.mark.parametrize(("variant", "owner", "weights", "looked_for"), OFFLINE_CASES)
def test_offline_build_fails_fast_naming_model_weights_and_switch(
    no_network: list[str], variant: str, owner: str, weights: str, looked_for: str
) -> None:
    with pytest.raises(PretrainedWeightsUnavailable) as error:
        models.build(variant, pretrained=True)
    message = str(error.value)
    # Fast by construction: one bounded probe, no hub retries (no wall clock asserted).
    assert len(no_network) == 1 and pretrained.PROBE_TIMEOUT_S <= 3.0
    assert message.startswith(owner) and weights in message and looked_for in message
    assert "model.kwargs.pretrained=false" in message and "pretrained=False" in message
    assert len(no_network) == 1  # one probe, no retries


def test_offline_hrnet_w32_names_its_hub_weights_and_cache(no_network: list[str], caches: Path) -> None:
    with pytest.raises(PretrainedWeightsUnavailable) as error:
        models.build("hrnet-w32", num_joints=17, flip_pairs=[[1, 2]], input_size=[256, 192], pretrained=True)
    message = str(error.value)
    assert "hrnet-w32" in message and "timm/hrnet_w32.ms_in1k" in message
    assert str(caches / "hf" / "hub") in message and "pretrained=false" in message
    assert no_network == ["https://huggingface.co/timm/hrnet_w32.ms_in1k"]


def test_hub_offline_mode_fails_without_a_probe(no_probe: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(PretrainedWeightsUnavailable, match="HF_HUB_OFFLINE is set"):
        create_timm_model(TINY_TIMM, pretrained=True, owner="test")


@pytest.mark.slow
def test_offline_subprocess_fails_within_seconds(tmp_path: Path) -> None:
    """As a user runs it: HF_HUB_OFFLINE=1 and empty caches set before Python starts, nothing patched."""
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE")}
    env.update(HF_HOME=str(tmp_path / "hf"), TORCH_HOME=str(tmp_path / "torch"), HF_HUB_OFFLINE="1")
    script = (
        "import json, models\n"

        "try:\n"
        "    models.build('hrnet-w32', num_joints=17, flip_pairs=[[1, 2]], input_size=[256, 192], pretrained=True)\n"
        "    outcome = 'built'\n"
        "except Exception as error:\n"
        "    outcome = f'{type(error).__name__}: {error}'\n"
        "print(json.dumps({'outcome': outcome}))\n"
    )
    done = subprocess.run([sys.executable, "-c", script], cwd=PROJECT_ROOT, env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["outcome"].startswith("PretrainedWeightsUnavailable: hrnet-w32")
    assert "timm/hrnet_w32.ms_in1k" in report["outcome"] and "pretrained=false" in report["outcome"]
    # No hub retries: the offline switch is seen before any download is tried (no wall clock asserted).
    assert "HF_HUB_OFFLINE is set" in report["outcome"]


# ------------------------------------------------------------------------------ cached weights


def test_cached_hub_weights_load_without_network(no_probe: None, caches: Path) -> None:
    state = _random_state("test_resnet", seed=3)
    _fake_hub_file(caches, "timm/test_resnet.r160_in1k", state)
    model = models.build("simplebaseline-tiny", pretrained=True, backbone=TINY_TIMM, backbone_args={})
    loaded = model.net.backbone.state_dict()
    assert loaded.keys() == {k for k in state if not k.startswith("fc.")}
    assert all(torch.equal(loaded[k], state[k]) for k in loaded)

    cascade = models.build("deeppose-tiny", pretrained=True, backbone=TINY_TIMM)
    for stage in cascade.net.stages:
        assert all(torch.equal(v, state[k]) for k, v in stage.backbone.state_dict().items())


def test_cached_url_weights_load_without_network(no_probe: None, caches: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A config with only a URL (timm's torch.hub cache): the file under TORCH_HOME is loaded."""
    url = "https://example.invalid/weights/test_resnet-0000.pth"
    cfg = dataclasses.replace(timm.models.get_pretrained_cfg(TINY_TIMM), hf_hub_id=None, url=url)
    monkeypatch.setattr(pretrained, "get_pretrained_cfg", lambda name: cfg)
    state = _random_state("test_resnet", seed=4)
    path = caches / "torch" / "hub" / "checkpoints" / "test_resnet-0000.pth"
    path.parent.mkdir(parents=True)
    torch.save(state, path)
    assert pretrained.torch_hub_file(url) == str(path)
    model = create_timm_model(TINY_TIMM, pretrained=True, owner="test")
    assert all(torch.equal(v, state[k]) for k, v in model.state_dict().items())


def test_cached_url_pair_weights_load_without_network(no_probe: None, caches: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """timm's ``url`` as a (URL, file name) pair: the file is cached under that name, not the URL's."""
    url = "https://example.invalid/download?weights=test_resnet"
    cfg = dataclasses.replace(timm.models.get_pretrained_cfg(TINY_TIMM), hf_hub_id=None,
                              url=(url, "test_resnet-0007.pth"))
    monkeypatch.setattr(pretrained, "get_pretrained_cfg", lambda name: cfg)
    state = _random_state("test_resnet", seed=7)
    path = caches / "torch" / "hub" / "checkpoints" / "test_resnet-0007.pth"
    path.parent.mkdir(parents=True)
    torch.save(state, path)
    model = create_timm_model(TINY_TIMM, pretrained=True, owner="test")
    assert all(torch.equal(v, state[k]) for k, v in model.state_dict().items())


def test_url_pair_miss_names_the_cache_file(no_network: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    url = "https://example.invalid/download?weights=test_resnet"
    cfg = dataclasses.replace(timm.models.get_pretrained_cfg(TINY_TIMM), hf_hub_id=None,
                              url=(url, "test_resnet-0007.pth"))
    monkeypatch.setattr(pretrained, "get_pretrained_cfg", lambda name: cfg)
    with pytest.raises(PretrainedWeightsUnavailable, match="test_resnet-0007.pth"):
        create_timm_model(TINY_TIMM, pretrained=True, owner="test")
    assert no_network == [url]


def test_cached_googlenet_loads_without_network(no_probe: None, caches: Path) -> None:
    torch.manual_seed(5)
    source = torchvision.models.GoogLeNet(aux_logits=True, init_weights=True, transform_input=False)
    path = Path(pretrained.torch_hub_file(torchvision.models.GoogLeNet_Weights.IMAGENET1K_V1.url))
    assert path == caches / "torch" / "hub" / "checkpoints" / "googlenet-1378be20.pth"
    path.parent.mkdir(parents=True)
    torch.save(source.state_dict(), path)
    net = models.build("ief", pretrained=True).net.regressor.net
    assert net.aux1 is None and net.aux2 is None and not net.transform_input
    assert torch.equal(net.inception5b.branch1.conv.weight, source.inception5b.branch1.conv.weight)
    scale = torch.tensor([s / 0.5 for s in (0.229, 0.224, 0.225)])[None, :, None, None]
    assert torch.equal(net.conv1.conv.weight[:, :3], source.conv1.conv.weight * scale)


def test_cached_hrnet_weights_are_copied(no_probe: None, caches: Path) -> None:
    state = _random_state("hrnet_w32", seed=6)
    _fake_hub_file(caches, "timm/hrnet_w32.ms_in1k", state)
    ours = models.build("hrnet-w32", pretrained=True).net.state_dict()
    shared = [k for k in ours if k in state and not k.startswith("final_layer.")]
    assert len(shared) == 1752
    assert all(torch.equal(ours[k], state[k]) for k in shared)


def test_miss_with_network_defers_to_timm(caches: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    monkeypatch.setattr(pretrained, "network_problem", lambda url, timeout=3.0: None)
    monkeypatch.setattr(timm, "create_model", lambda name, **kwargs: calls.append((name, kwargs)))
    create_timm_model(TINY_TIMM, pretrained=True, owner="test", num_classes=0)
    create_timm_model(TINY_TIMM, pretrained=False, owner="test")
    assert calls == [(TINY_TIMM, {"pretrained": True, "num_classes": 0}), (TINY_TIMM, {"pretrained": False})]


# ------------------------------------------------------------------------------ probe


@pytest.fixture
def direct(monkeypatch: pytest.MonkeyPatch) -> None:
    """No proxy, whatever the environment says."""
    monkeypatch.setattr(pretrained.urllib.request, "getproxies", lambda: {})


def _listening() -> socket.socket:
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    return server


def test_probe_reports_a_listening_server_as_reachable(direct: None) -> None:
    with _listening() as server:
        assert network_problem(f"http://127.0.0.1:{server.getsockname()[1]}/x", timeout=2.0) is None


def test_probe_reports_a_refused_connection(direct: None) -> None:
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    problem = network_problem(f"http://127.0.0.1:{port}/x", timeout=2.0)
    assert problem is not None and problem.startswith(f"127.0.0.1:{port} is unreachable")


def test_probe_gives_up_after_its_timeout(direct: None, monkeypatch: pytest.MonkeyPatch) -> None:
    """A hanging connect (or name lookup, which ignores socket timeouts) costs the timeout, no more."""
    released = threading.Event()

    def hang(*args, **kwargs):
        released.wait(3)  # the test lets it go at the end, so the probe thread never outlives the test
        raise OSError("connection attempt abandoned")

    monkeypatch.setattr(pretrained.socket, "create_connection", hang)
    # The hanging connect is still blocked (released only below): the answer came from the join timeout.
    problem = network_problem("https://huggingface.co/timm/x", timeout=0.2)
    assert not released.is_set()
    assert problem == "huggingface.co:443 did not answer within 0.2 s"
    released.set()


def test_probe_goes_through_the_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    with _listening() as proxy:
        address = f"http://127.0.0.1:{proxy.getsockname()[1]}"
        monkeypatch.setattr(pretrained.urllib.request, "getproxies", lambda: {"https": address})
        monkeypatch.setattr(pretrained.urllib.request, "proxy_bypass", lambda host: False)
        assert network_problem("https://huggingface.co.invalid/x", timeout=2.0) is None
