"""Classifier loading: torchvision's ResNet-50 with ImageNet weights, a user's checkpoint, or a stand-in.

Offline (no cache, no network) the ImageNet weights cannot be had; :func:`load_resnet50` then raises
:class:`WeightsUnavailable` naming the file to place and where. Nothing here is needed by the tests.
"""
from __future__ import annotations

import os
from pathlib import Path

import torch

from ..errors import WeightsUnavailable

__all__ = ["load_state_dict_file", "safetensors_metadata", "count_parameters", "torchvision_state_dict", "cached_download", "hub_checkpoint_path"]








#: The shipped weights of a checkout (``weights/`` beside the ``hdm`` package).
CHECKOUT_WEIGHTS = Path(__file__).resolve().parents[2] / "weights"


def hub_checkpoint_path(url: str) -> Path:
    """Where torch's hub cache keeps the file of ``url`` (``$TORCH_HOME/hub/checkpoints/<name>``)."""
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(url)


def torchvision_state_dict(meta, what: str, alternatives: str) -> dict:
    """The state dict of torchvision weights ``meta`` (a ``WeightsEnum`` member, or anything with ``url``
    and ``get_state_dict``) from the torch hub cache, else downloaded; offline, :class:`WeightsUnavailable`
    naming the file to place where (``what`` names the weights, ``alternatives`` says what else to do)."""
    path = hub_checkpoint_path(meta.url)
    try:
        return meta.get_state_dict(progress=False, check_hash=False)
    except Exception as e:  # offline: URLError, socket errors, ...
        raise WeightsUnavailable(
            f"could not load torchvision's {what} ({type(e).__name__}: {e}). Offline, place the file {path.name} "
            f"(from {meta.url}) at {path}, or set TORCH_HOME to a folder holding hub/checkpoints/ with it, "
            f"or {alternatives}."
        ) from e


def cached_download(url: str, what: str, alternatives: str = "") -> Path:
    """The file at ``url``, kept in the torch hub cache (``$TORCH_HOME/hub/checkpoints``) and downloaded
    only once; offline, :class:`WeightsUnavailable` naming where to place the file by hand (and
    ``alternatives``, what else the user can do)."""
    path = hub_checkpoint_path(url)
    if path.is_file():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        torch.hub.download_url_to_file(url, str(path), progress=False)
    except Exception as e:  # offline: URLError, socket errors, HTTP errors ...
        raise WeightsUnavailable(f"could not download {what} from {url} ({type(e).__name__}: {e}). "
                                 f"Offline, place the file {path.name} at {path}"
                                 + (f", or {alternatives}." if alternatives else ".")) from e
    return path




def safetensors_metadata(path: str | Path) -> dict[str, str]:
    """The string metadata of a ``.safetensors`` file (hdm stores ``arch``, ``config``, ``record``, ... there),
    read without loading the tensors; ``{}`` if it has none."""
    from safetensors import safe_open

    with safe_open(str(path), "pt") as f:
        return f.metadata() or {}


def count_parameters(path: str | Path) -> int:
    """The number of values stored in a ``.safetensors`` file, from the tensor shapes alone."""
    import math

    from safetensors import safe_open

    with safe_open(str(path), "pt") as f:
        return sum(math.prod(f.get_slice(k).get_shape()) for k in f.keys())


def load_state_dict_file(path: str | Path) -> dict[str, torch.Tensor]:
    """A state dict from ``.safetensors`` or a torch file (``weights_only=True``), unwrapping the common
    ``{"state_dict": ...}`` / ``{"model": ...}`` nesting and DataParallel ``module.`` prefixes."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no weights file at {path}")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        state = load_file(str(path))
    else:
        state = torch.load(path, map_location="cpu", weights_only=True)
    for key in ("state_dict", "model", "params_ema", "params"):
        if isinstance(state, dict) and key in state and isinstance(state[key], dict):
            state = state[key]
            break
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"{path} does not hold a state dict of tensors")
    return {k.removeprefix("module."): v.float() for k, v in state.items()}








