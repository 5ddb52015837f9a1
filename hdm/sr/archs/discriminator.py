"""Real-ESRGAN's U-Net discriminator with spectral normalisation (Wang et al., ICCVW 2021).

Why this one rather than ESRGAN's VGG-style discriminator:

* **Per-pixel feedback.** It returns a realness logit for every pixel, ``(B, 1, H, W)``, not one number
  per image, so the generator learns *where* its output looks fake - at the textures and edges the
  project's high-frequency losses care about - instead of sharing one score over the whole patch.
* **Any input size divisible by 8.** The paper trains on 120 px HR patches; ESRGAN's VGG128
  discriminator has a fixed 128 x 128 input (its linear layer expects 4 x 4 x 512 features), which
  120 px patches do not fit. This network is fully convolutional.
* **Stability.** A U-Net is a much stronger discriminator than VGG128 and makes GAN training unstable;
  spectral norm on every inner conv bounds its Lipschitz constant, which stabilises training with the
  project's relativistic average GAN loss (and, as Real-ESRGAN reports, curbs over-sharpening artifacts).

Parameter names follow Real-ESRGAN (``conv0`` .. ``conv9``, spectral norm through
``torch.nn.utils.spectral_norm``: ``convN.weight_orig``, ``weight_u``, ``weight_v``), so its
``net_d`` checkpoints load with ``load_state_dict``.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.utils import spectral_norm

from ...errors import BadArgument

__all__ = ["UNetDiscriminatorSN"]


class UNetDiscriminatorSN(nn.Module):
    """U-Net discriminator: three stride-2 convs down, three bilinear x2 upsamplings each followed by a
    conv (with additive skips from the encoder when ``skip_connection``), two more convs and a 1-channel
    head. Spectral norm on ``conv1`` .. ``conv8``; ``conv0`` and the head ``conv9`` are plain.

    Args:
        in_ch: image channels.
        num_feat: width of the first level (64 in Real-ESRGAN); the deepest level has ``8 * num_feat``.
        skip_connection: add encoder features to the decoder's (Real-ESRGAN: True).

    Input ``(B, in_ch, H, W)``, images in [0, 1], ``H`` and ``W`` multiples of 8; output
    ``(B, 1, H, W)`` realness logits (no sigmoid).
    """

    def __init__(self, in_ch: int = 3, num_feat: int = 64, skip_connection: bool = True):
        super().__init__()
        if in_ch < 1 or num_feat < 1:
            raise BadArgument(f"UNetDiscriminatorSN: in_ch and num_feat must be positive, got {in_ch}, {num_feat}")
        self.in_ch, self.skip_connection = in_ch, skip_connection
        f = num_feat
        self.conv0 = nn.Conv2d(in_ch, f, 3, 1, 1)
        # down: H -> H/2 -> H/4 -> H/8
        self.conv1 = spectral_norm(nn.Conv2d(f, 2 * f, 4, 2, 1, bias=False))
        self.conv2 = spectral_norm(nn.Conv2d(2 * f, 4 * f, 4, 2, 1, bias=False))
        self.conv3 = spectral_norm(nn.Conv2d(4 * f, 8 * f, 4, 2, 1, bias=False))
        # up: H/8 -> H/4 -> H/2 -> H
        self.conv4 = spectral_norm(nn.Conv2d(8 * f, 4 * f, 3, 1, 1, bias=False))
        self.conv5 = spectral_norm(nn.Conv2d(4 * f, 2 * f, 3, 1, 1, bias=False))
        self.conv6 = spectral_norm(nn.Conv2d(2 * f, f, 3, 1, 1, bias=False))
        # extra convs and the head
        self.conv7 = spectral_norm(nn.Conv2d(f, f, 3, 1, 1, bias=False))
        self.conv8 = spectral_norm(nn.Conv2d(f, f, 3, 1, 1, bias=False))
        self.conv9 = nn.Conv2d(f, 1, 3, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or x.shape[1] != self.in_ch:
            raise BadArgument(f"UNetDiscriminatorSN expects (B, {self.in_ch}, H, W), got shape {tuple(x.shape)}")
        h, w = x.shape[-2:]
        if h % 8 or w % 8:
            raise BadArgument(f"UNetDiscriminatorSN downsamples by 8: H and W must be multiples of 8, got {h}x{w}")
        x0 = _lrelu(self.conv0(x))
        x1 = _lrelu(self.conv1(x0))
        x2 = _lrelu(self.conv2(x1))
        x3 = _lrelu(self.conv3(x2))

        x4 = _lrelu(self.conv4(_up(x3)))
        if self.skip_connection:
            x4 = x4 + x2
        x5 = _lrelu(self.conv5(_up(x4)))
        if self.skip_connection:
            x5 = x5 + x1
        x6 = _lrelu(self.conv6(_up(x5)))
        if self.skip_connection:
            x6 = x6 + x0

        out = _lrelu(self.conv7(x6))
        out = _lrelu(self.conv8(out))
        return self.conv9(out)


def _lrelu(x: torch.Tensor) -> torch.Tensor:
    return F.leaky_relu(x, 0.2)


def _up(x: torch.Tensor) -> torch.Tensor:
    return F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
