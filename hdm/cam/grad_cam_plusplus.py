"""Grad-CAM++ (Chattopadhyay et al., WACV 2018), in the closed form of its eq. (19)."""
from __future__ import annotations

import torch

from .channel_cam import ChannelWeightedCAM

__all__ = ["GradCAMPlusPlus", "gradcampp_weights"]

#: The stabiliser of pytorch-grad-cam 1.5.x, kept so that both give the same maps.
GRADCAMPP_EPS = 1e-6


def gradcampp_weights(activations: torch.Tensor, grads: torch.Tensor, eps: float = GRADCAMPP_EPS) -> torch.Tensor:
    """Grad-CAM++ channel weights ``(B, K)`` from ``A`` and ``g = dS/dA`` ``(B, K, h, w)``.

    With ``Y = exp(S)`` the paper's derivatives are ``exp(S) g^n`` and ``exp(S)`` cancels::

        alpha_ij = g_ij^2 / (2 g_ij^2 + sum_ab A_ab g_ij^3 + eps)      (0 where g_ij = 0)
        w_k      = sum_ij alpha_ij ReLU(g_ij)

    The HDM paper's eq. (1), ``alpha_k = sum_ij d2y/dA_ij^2 ReLU(dy/dA_ij)``, is a shorthand of this
    that drops the denominator; see docs/hdm_cam.md.
    """
    g2 = grads**2
    g3 = g2 * grads
    sum_a = activations.sum(dim=(2, 3), keepdim=True)
    alpha = g2 / (2 * g2 + sum_a * g3 + eps)
    alpha = torch.where(grads != 0, alpha, torch.zeros_like(alpha))
    return (alpha * grads.clamp_min(0)).sum(dim=(2, 3))


class GradCAMPlusPlus(ChannelWeightedCAM):
    """Grad-CAM++: ``L = ReLU(sum_k w_k A^k)`` with :func:`gradcampp_weights`."""

    def channel_weights(self, activations: torch.Tensor, grads: torch.Tensor) -> torch.Tensor:
        return gradcampp_weights(activations, grads)
