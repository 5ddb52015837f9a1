"""LayerCAM (Jiang et al., IEEE TIP 2021): per-position weights ``ReLU(g)`` instead of one per channel."""
from __future__ import annotations

from .base import BaseCAM, CAMResult
from .channel_cam import combine_layer_maps

__all__ = ["LayerCAM"]


class LayerCAM(BaseCAM):
    """``L = ReLU(sum_k ReLU(g_k) * A_k)`` per layer (eq. 5 of the paper, element-wise), layers combined
    as pytorch-grad-cam does (:func:`~hdm.cam.channel_cam.combine_layer_maps`)."""

    def compute(self, activations, gradients, scores, input_size, keep_maps) -> CAMResult:
        layer_maps = {name: (g.clamp_min(0) * a).sum(dim=1).clamp_min(0)
                      for name, a, g in zip(self.layer_names, activations, gradients)}
        return self._result(combine_layer_maps(list(layer_maps.values()), input_size), layer_maps)
