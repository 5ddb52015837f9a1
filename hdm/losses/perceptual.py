"""ESRGAN's perceptual loss: distances between VGG19 features taken *before* the activation.

ESRGAN (Wang et al. 2018, sec. 3.3) compares ``conv5_4`` outputs before their ReLU: after it, the
features are sparse and carry weaker supervision. Inputs are RGB in [0, 1]; they are normalised
with the ImageNet mean and std that VGG19 was trained with.

Weights: torchvision's ``VGG19_Weights.IMAGENET1K_V1`` (from the torch hub cache, else downloaded).
Offline they cannot be had: :func:`load_vgg19` then raises :class:`~hdm.errors.WeightsUnavailable`
saying which file to place where. ``weights="random"`` builds a seeded, randomly initialised VGG19:
an explicit stand-in whose "perceptual" distance is only that of random convolutional features, and
which every result trained with it must name (``PerceptualLoss.source``).
"""
from __future__ import annotations

from typing import Mapping, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision

from ..errors import BadArgument
from ..io.images import IMAGENET_MEAN, IMAGENET_STD
from ..io.weights import load_state_dict_file, torchvision_state_dict

__all__ = ["VGG19_LAYERS", "load_vgg19", "VGGFeatures", "PerceptualLoss"]

#: Names of ``torchvision.models.vgg19().features`` modules, in order.
VGG19_LAYERS = tuple(
    name
    for block, convs in enumerate((2, 2, 4, 4, 4), start=1)
    for name in [f"{kind}{block}_{i}" for i in range(1, convs + 1) for kind in ("conv", "relu")] + [f"pool{block}"]
)


def _vgg19_weights():
    return torchvision.models.VGG19_Weights.IMAGENET1K_V1


def load_vgg19(weights: str = "imagenet", seed: int = 0) -> tuple[nn.Sequential, str]:
    """VGG19's ``features`` (eval mode, frozen) and a description of where its weights came from.

    ``weights``: ``"imagenet"`` (torchvision), ``"random"`` (seeded stand-in) or a state-dict file
    of a whole VGG19 (``features.N.*`` keys) or of its features alone (``N.*``)."""
    model = torchvision.models.vgg19()
    if weights == "imagenet":
        model.load_state_dict(torchvision_state_dict(
            _vgg19_weights(), "VGG19 ImageNet weights for the perceptual loss",
            "pass weights='random' for a named stand-in, or train without the perceptual term"))
        source = "imagenet (torchvision VGG19 IMAGENET1K_V1)"
    elif weights == "random":
        with torch.random.fork_rng():  # seeded, leaving the caller's random state alone
            torch.manual_seed(seed)
            model = torchvision.models.vgg19()
        source = f"random stand-in (untrained VGG19, seed {seed})"
    else:
        state = load_state_dict_file(weights)
        features = {k.removeprefix("features."): v for k, v in state.items() if not k.startswith("classifier.")}
        try:
            model.features.load_state_dict(features)
        except RuntimeError as e:
            raise BadArgument(f"{weights} does not hold VGG19 features: {e}") from e
        source = f"file: {weights}"
    features = model.features.eval()
    for p in features.parameters():
        p.requires_grad_(False)
    return features, source


class VGGFeatures(nn.Module):
    """Named VGG19 features of RGB images in [0, 1]: ``forward(x) -> {name: (B, C, h, w)}``.

    ``conv*`` names give pre-activation outputs, ``relu*`` the activated ones. The network is cut
    after the deepest requested layer."""

    def __init__(self, layers: Sequence[str], weights: str | nn.Sequential = "imagenet"):
        super().__init__()
        unknown = [n for n in layers if n not in VGG19_LAYERS]
        if unknown or not layers:
            raise BadArgument(f"unknown VGG19 layers {unknown or layers}; choose from {VGG19_LAYERS}")
        if isinstance(weights, nn.Sequential):
            features, self.source = weights, "given module"
        else:
            features, self.source = load_vgg19(weights)
        self.layers = list(layers)
        last = max(VGG19_LAYERS.index(n) for n in layers)
        self.body = features[: last + 1]
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        out, h = {}, (x - self.mean) / self.std
        wanted = set(self.layers)
        for name, module in zip(VGG19_LAYERS, self.body):
            # ReLUs of torchvision's VGG are in place: copy a pre-activation output before its ReLU runs
            h = module(h)
            if name in wanted:
                out[name] = h.clone() if name.startswith("conv") else h
        return out


class PerceptualLoss(nn.Module):
    """``sum_l weight_l * criterion(phi_l(sr), phi_l(hr))`` (ESRGAN: ``{"conv5_4": 1}``, L1).

    ``sr``, ``hr`` ``(B, 3, H, W)`` in [0, 1]; ``hr`` needs no gradient. ``source`` says which VGG19
    weights are in use (name it in any result)."""

    def __init__(self, layer_weights: Mapping[str, float] | None = None, weights: str | nn.Sequential = "imagenet",
                 criterion: str = "l1"):
        super().__init__()
        self.layer_weights = dict(layer_weights or {"conv5_4": 1.0})
        if criterion not in ("l1", "l2"):
            raise BadArgument(f"criterion must be 'l1' or 'l2', got {criterion!r}")
        self.criterion = F.l1_loss if criterion == "l1" else F.mse_loss
        self.features = VGGFeatures(list(self.layer_weights), weights)
        self.source = self.features.source

    def forward(self, sr: torch.Tensor, hr: torch.Tensor) -> torch.Tensor:
        f_sr = self.features(sr)
        with torch.no_grad():
            f_hr = self.features(hr)
        return sum(w * self.criterion(f_sr[n], f_hr[n]) for n, w in self.layer_weights.items())
