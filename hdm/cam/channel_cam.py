"""Channel-weighted CAMs: a weight per channel, ``L = ReLU(sum_k w_k A^k)`` per layer.

Several layers are combined as pytorch-grad-cam does: each layer map is min-max normalised and
resized to the input, the maps are averaged, and the mean is normalised again.
"""
from __future__ import annotations

import torch

from .base import BaseCAM, CAMResult, normalize_maps, upsample_maps

__all__ = ["ChannelWeightedCAM", "combine_layer_maps"]


def combine_layer_maps(layer_maps: list[torch.Tensor], size: tuple[int, int]) -> torch.Tensor:
    """pytorch-grad-cam's multi-layer aggregation of ReLU'd ``(B, h_l, w_l)`` maps -> ``(B, H, W)``."""
    scaled = [upsample_maps(normalize_maps(m), size) for m in layer_maps]
    return normalize_maps(torch.stack(scaled).clamp_min(0).mean(dim=0))


class ChannelWeightedCAM(BaseCAM):
    """A CAM defined by :meth:`channel_weights` ``(A, g) -> (B, K)``."""

    def channel_weights(self, activations: torch.Tensor, grads: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def compute(self, activations, gradients, scores, input_size, keep_maps) -> CAMResult:
        layer_maps, weights = {}, {}
        for name, a, g in zip(self.layer_names, activations, gradients):
            w = self.channel_weights(a, g)
            weights[name] = w
            layer_maps[name] = torch.einsum("bk,bkhw->bhw", w, a).clamp_min(0)
        cam = combine_layer_maps(list(layer_maps.values()), input_size)
        extras = {"channel_weights": {k: v.float().cpu().numpy() for k, v in weights.items()}} if keep_maps else {}
        return self._result(cam, layer_maps, **extras)
