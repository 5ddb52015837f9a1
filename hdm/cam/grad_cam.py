"""Grad-CAM (Selvaraju et al., ICCV 2017): channel weights are the spatially averaged gradients."""
from __future__ import annotations

import torch

from .channel_cam import ChannelWeightedCAM

__all__ = ["GradCAM"]


class GradCAM(ChannelWeightedCAM):
    """``w_k = 1/(h w) sum_ij dS/dA^k_ij``;  ``L = ReLU(sum_k w_k A^k)``."""

    def channel_weights(self, activations: torch.Tensor, grads: torch.Tensor) -> torch.Tensor:
        return grads.mean(dim=(2, 3))
