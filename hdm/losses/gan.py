"""Relativistic average GAN losses (ESRGAN, Wang et al. 2018, eqs. 1-2).

With raw discriminator logits ``C(x)`` (any shape; a U-Net discriminator gives one per pixel) and
``D_Ra(a, b) = sigmoid(C(a) - mean C(b))`` (the mean over every element of the batch):

- discriminator: ``L_D = -E[log D_Ra(real, fake)] - E[log(1 - D_Ra(fake, real))]``
- generator:     ``L_G = -E[log(1 - D_Ra(real, fake))] - E[log D_Ra(fake, real)]``

written as binary cross-entropies on logits (numerically stable) and halved, as BasicSR does, so
each is the mean of its two terms. The discriminator's loss needs the fake logits detached from the
generator; the generator's needs the real logits detached from the discriminator (the caller passes
``real.detach()``), exactly as in ESRGAN's training step.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["ragan_discriminator_loss", "ragan_generator_loss"]


def _bce(logits: torch.Tensor, target: float) -> torch.Tensor:
    return F.binary_cross_entropy_with_logits(logits, torch.full_like(logits, target))


def ragan_discriminator_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """``L_D`` (scalar): real should look more real than the average fake, and fake less than the average real."""
    return 0.5 * (_bce(real_logits - fake_logits.mean(), 1.0) + _bce(fake_logits - real_logits.mean(), 0.0))


def ragan_generator_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """``L_G`` (scalar): the same with the labels swapped (pass ``real_logits`` detached)."""
    return 0.5 * (_bce(real_logits - fake_logits.mean(), 0.0) + _bce(fake_logits - real_logits.mean(), 1.0))
