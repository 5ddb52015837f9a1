"""LPIPS (Zhang et al. 2018) through the ``lpips`` package, or HaarPSI as the named offline stand-in.

The ``lpips`` package ships its learned linear layers, but its VGG16 backbone comes from torchvision's
ImageNet weights, which cannot be downloaded here. :func:`load_lpips` builds the package's model with
an untrained backbone and loads torchvision's VGG16 weights itself (from the torch hub cache, else by
download), so offline it fails with :class:`~hdm.errors.WeightsUnavailable` saying which file to
place where, instead of silently running with random features.

:func:`perceptual_distance` is what the HF error-map loss and the evaluation use: ``"lpips"``,
``"haarpsi"`` (:mod:`hdm.losses.haarpsi`, weight-free), or ``"auto"``: LPIPS when its weights load,
else HaarPSI, with a loud message. It returns the distance and its name, which every result must carry.
"""
from __future__ import annotations

import sys
from typing import Callable

import torch
import torch.nn as nn
import torchvision

from ..errors import BadArgument, WeightsUnavailable
from ..io.weights import torchvision_state_dict
from .haarpsi import haarpsi_distance

__all__ = ["load_lpips", "perceptual_distance", "LPIPS_NAME", "HAARPSI_NAME"]

LPIPS_NAME = "LPIPS (VGG16, lpips 0.1 linear layers)"
HAARPSI_NAME = "1 - HaarPSI (stand-in for LPIPS: its pretrained VGG16 is unavailable)"


def _vgg16_weights():
    return torchvision.models.VGG16_Weights.IMAGENET1K_V1


def load_lpips(device="cpu") -> nn.Module:
    """The ``lpips`` package's VGG16 LPIPS with torchvision's ImageNet backbone, frozen, eval mode.

    Call it as ``model(a, b, normalize=True)`` on images in [0, 1] -> ``(B, 1, 1, 1)`` distances.
    Raises :class:`WeightsUnavailable` when the ``lpips`` package or the VGG16 weights are missing."""
    try:
        import lpips  # optional: the [train] extra
    except ImportError as e:
        raise WeightsUnavailable(f"LPIPS needs the lpips package ({e}): pip install lpips, "
                                 "or use the HaarPSI stand-in") from e

    state = torchvision_state_dict(_vgg16_weights(), "VGG16 ImageNet weights for LPIPS", "use the HaarPSI stand-in")
    model = lpips.LPIPS(net="vgg", pnet_rand=True, verbose=False)
    slices = {i: k for k, (lo, hi) in enumerate(((0, 4), (4, 9), (9, 16), (16, 23), (23, 30)), start=1)
              for i in range(lo, hi)}
    backbone = {}
    for key, value in state.items():
        if key.startswith("features."):
            index, name = key.split(".")[1:3]
            if int(index) in slices:
                backbone[f"slice{slices[int(index)]}.{index}.{name}"] = value
    model.net.load_state_dict(backbone)
    model = model.to(device).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def perceptual_distance(kind: str = "auto", device="cpu") -> tuple[Callable[[torch.Tensor, torch.Tensor], torch.Tensor], str]:
    """``(distance(a, b) -> scalar mean over the batch, name)`` for images in [0, 1]."""
    if kind not in ("auto", "lpips", "haarpsi"):
        raise BadArgument(f"kind must be 'auto', 'lpips' or 'haarpsi', got {kind!r}")
    if kind in ("auto", "lpips"):
        try:
            model = load_lpips(device)
            return (lambda a, b: model(a, b, normalize=True).mean()), LPIPS_NAME
        except WeightsUnavailable as e:
            if kind == "lpips":
                raise
            print(f"\n{'!' * 78}\nLPIPS is unavailable; using its stand-in {HAARPSI_NAME}.\n{e}\n{'!' * 78}\n",
                  file=sys.stderr)
    return haarpsi_distance, HAARPSI_NAME
