"""ImageNet weights for the backbones: from the local cache, else a download, else a clear error within seconds.

timm and torchvision download missing weights themselves; with no network huggingface_hub retries each
file with backoff for about 25 s and then raises a generic ``LocalEntryNotFoundError``. The helpers here
look in the caches first (a hit is loaded from the cached file, without a network call) and, on a miss,
connect to the server for at most ``PROBE_TIMEOUT_S`` seconds, so an offline run fails at once with
``PretrainedWeightsUnavailable`` naming the model, the weights and places looked in, and the switch to
turn them off.

Sources:

- timm ``create_model`` (``pretrained_cfg_overlay``: replace keys of the pretrained config, here ``file``)
  and pretrained configs (``hf_hub_id``, ``hf_hub_filename``, ``url``):
  https://huggingface.co/docs/timm/reference/models; the order timm tries (``load_pretrained`` and
  ``load_state_dict_from_hf`` in ``timm/models/_builder.py``, ``_hub.py``): the Hub id before the URL, the
  Hub's ``model.safetensors`` before ``pytorch_model.bin``.
- huggingface_hub ``try_to_load_from_cache`` and the cache under ``HF_HUB_CACHE`` (``$HF_HOME/hub``):
  https://huggingface.co/docs/huggingface_hub/guides/manage-cache; ``HF_HUB_OFFLINE``, ``HF_ENDPOINT``:
  https://huggingface.co/docs/huggingface_hub/package_reference/environment_variables (read once at
  import there, so the environment is read again here).
- torch.hub ``load_state_dict_from_url`` (used by torchvision and for timm URLs) keeps files as
  ``<torch.hub.get_dir()>/checkpoints/<URL file name>`` (``$TORCH_HOME/hub``): https://pytorch.org/docs/stable/hub.html
"""

from __future__ import annotations

import os
import socket
import threading
import urllib.parse
import urllib.request
from typing import Any

import timm
import torch
from huggingface_hub import constants as hub_constants
from huggingface_hub import try_to_load_from_cache
from timm.models import get_pretrained_cfg
from torch import nn
from torchvision.models import WeightsEnum

PROBE_TIMEOUT_S = 3.0
OFF_SWITCH = "model.kwargs.pretrained=false on the command line, or pretrained=False in models.build(...)"
# The Hub files timm loads when the pretrained config names none, in the order it tries them.
HUB_FILES: tuple[str, ...] = ("model.safetensors", "pytorch_model.bin")


class PretrainedWeightsUnavailable(RuntimeError):
    """ImageNet weights are neither in the local cache nor downloadable now; the message says what to do."""


def timm_num_features(model: nn.Module) -> int:
    """Channels of a timm model's output features (its ``num_features``, an int on every timm model)."""
    width = model.num_features
    if not isinstance(width, int):
        raise TypeError(f"{type(model).__name__}.num_features is {width!r}, not a timm model's channel count")
    return width


def create_timm_model(name: str, *, pretrained: bool, owner: str, **kwargs: Any) -> nn.Module:
    """``timm.create_model(name, pretrained=pretrained, **kwargs)``; cached weights load from their file.

    ``owner`` names the PoseBench model in the error (e.g. ``"hrnet-w32"``). Weights neither cached nor
    reachable -> ``PretrainedWeightsUnavailable`` within ``PROBE_TIMEOUT_S`` seconds.
    """
    cfg = get_pretrained_cfg(name) if pretrained else None
    if cfg is None or "pretrained_cfg" in kwargs or "pretrained_cfg_overlay" in kwargs:
        # Not pretrained, a name timm has no weights for (timm says so), or the caller picks the source.
        return timm.create_model(name, pretrained=pretrained, **kwargs)
    cache_dir = kwargs.get("cache_dir")
    looked, server = [], ""
    if cfg.hf_hub_id:
        repo, _, revision = cfg.hf_hub_id.partition("@")
        files = (cfg.hf_hub_filename,) if cfg.hf_hub_filename else HUB_FILES
        for filename in files:
            hit = try_to_load_from_cache(repo, filename, cache_dir=cache_dir, revision=revision or None)
            if isinstance(hit, str):
                return timm.create_model(name, pretrained=True, pretrained_cfg_overlay={"file": hit}, **kwargs)
        looked.append(f"Hugging Face Hub '{cfg.hf_hub_id}' ({', '.join(files)}) in "
                      f"{cache_dir or hub_constants.HF_HUB_CACHE}")
        server = f"{hub_constants.ENDPOINT}/{repo}"
    if cfg.url:
        # timm's url is a URL or a (URL, cache file name) pair (timm/models/_hub.py check_cached_file).
        url, file_name = cfg.url, None
        if isinstance(url, tuple):
            url, file_name = url
        cached = torch_hub_file(url, cache_dir, file_name)
        if os.path.isfile(cached):
            return timm.create_model(name, pretrained=True, pretrained_cfg_overlay={"file": cached}, **kwargs)
        looked.append(f"{url} as {cached}")
        server = server or url
    if server:
        _require_download(owner, f"timm '{cfg.architecture}.{cfg.tag}'", looked, server, hub=bool(cfg.hf_hub_id))
    return timm.create_model(name, pretrained=True, **kwargs)


def check_torchvision_weights(weights: WeightsEnum, *, owner: str) -> None:
    """Return if torchvision's ``weights`` are in torch.hub's cache or their server answers; else raise
    ``PretrainedWeightsUnavailable`` (``owner`` names the PoseBench model)."""
    cached = torch_hub_file(weights.url)
    if not os.path.isfile(cached):
        _require_download(owner, f"torchvision {weights}", [f"{weights.url} as {cached}"], weights.url, hub=False)


def torch_hub_file(url: str, cache_dir: str | os.PathLike[str] | None = None, file_name: str | None = None) -> str:
    """Where ``torch.hub.load_state_dict_from_url(url, model_dir=cache_dir, file_name=file_name)`` keeps
    ``url``'s file (by default under the URL's own file name)."""
    folder = cache_dir or os.path.join(torch.hub.get_dir(), "checkpoints")
    return os.path.join(folder, file_name or os.path.basename(urllib.parse.urlsplit(url).path))


def network_problem(url: str, timeout: float = PROBE_TIMEOUT_S) -> str | None:
    """Why ``url``'s server (or the proxy set for it) takes no TCP connection within ``timeout`` s; None if it does."""
    parts = urllib.parse.urlsplit(url)
    host, port = parts.hostname or "", parts.port or (443 if parts.scheme == "https" else 80)
    proxy = urllib.request.getproxies().get(parts.scheme)
    if proxy and not urllib.request.proxy_bypass(host):
        via = urllib.parse.urlsplit(proxy if "://" in proxy else f"http://{proxy}")
        host, port = via.hostname or "", via.port or (443 if via.scheme == "https" else 80)
    outcome: list[str | None] = []

    def connect() -> None:
        try:
            socket.create_connection((host, port), timeout=timeout).close()
            outcome.append(None)
        except OSError as error:
            outcome.append(str(error) or type(error).__name__)

    # A thread, because name resolution inside create_connection ignores the timeout.
    probe = threading.Thread(target=connect, name="pretrained-weights-probe", daemon=True)
    probe.start()
    probe.join(timeout)
    if not outcome:
        return f"{host}:{port} did not answer within {timeout:g} s"
    return None if outcome[0] is None else f"{host}:{port} is unreachable: {outcome[0]}"


def _hub_offline() -> bool:
    value = os.environ.get("HF_HUB_OFFLINE") or os.environ.get("TRANSFORMERS_OFFLINE") or ""
    return bool(hub_constants.HF_HUB_OFFLINE) or value.upper() in {"1", "ON", "YES", "TRUE"}


def _require_download(owner: str, weights: str, looked: list[str], url: str, *, hub: bool) -> None:
    problem = "HF_HUB_OFFLINE is set" if hub and _hub_offline() else network_problem(url)
    if problem is None:
        return
    raise PretrainedWeightsUnavailable(
        f"{owner}: the ImageNet weights of {weights} are not in the local cache and cannot be downloaded "
        f"({problem}).\nLooked for: {'; '.join(looked)}.\nTo train without them: {OFF_SWITCH}. To use them "
        f"offline, download them once on a machine with a network and copy the cache (HF_HOME, TORCH_HOME)."
    )
