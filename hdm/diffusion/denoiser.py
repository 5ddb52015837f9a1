"""The denoiser of hdm's residual-shifting diffusion SR: predicts the HR image from ``(x_t, y0, t)``.

Space: ResShift and SinSR diffuse in a VQGAN latent (x4 smaller, 3 channels). hdm diffuses in pixel
space but computes at the LR resolution through a lossless space-to-depth: an HR-sized image ``x``
``(B, 3, H, W)`` in [0, 1] is represented as ``z = pixel_unshuffle(2 x - 1, scale)``, ``(B, 3 s^2, H/s, W/s)``
in [-1, 1] (the unit scale ResShift's ``kappa`` is meant for). The diffusion, the denoiser and the
losses all work on ``z``; :func:`to_space` and :func:`from_space` convert.
Why: no autoencoder to train or download (its reconstruction error would cap every result, and no
pretrained VQGAN can be loaded offline), the residual ``e0 = y0 - x0`` keeps its exact meaning, and the
network runs at the cost of an LR-resolution model. The price: a pixel-space model spends capacity
on details a latent would have compressed.

Network: a small U-Net at LR resolution (two levels, residual blocks with a per-pixel layer norm and
SiLU, the timestep as a sinusoidal embedding that shifts and scales each block's features), fed with
``z_t / sqrt(kappa^2 eta_t + 1)`` (ResShift's input normalisation: unit variance whatever ``t``; the
sampler and trainer pass the scale) and ``z_y`` side by side. It outputs ``z0_hat = z_y + net(...)``: the HR estimate as a
correction of the upsampled LR image (ResShift's model predicts ``x0``; writing it as a correction of
``y0`` is the same target, easier to learn from scratch; the last conv starts at zero, so an untrained
model returns ``y0``).
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..errors import BadArgument

__all__ = ["Denoiser", "to_space", "from_space", "timestep_embedding", "ARCH"]

#: The ``arch`` metadata of an exported hdm diffusion model (:func:`hdm.diffusion.file.export_diffusion`).
ARCH = "hdm.diffusion.Denoiser"


def to_space(x: torch.Tensor, scale: int) -> torch.Tensor:
    """``(B, 3, H, W)`` in [0, 1] -> ``(B, 3 s^2, H/s, W/s)`` in [-1, 1] (lossless)."""
    return F.pixel_unshuffle(x * 2 - 1, scale)


def from_space(z: torch.Tensor, scale: int) -> torch.Tensor:
    """Inverse of :func:`to_space` (values are not clamped)."""
    return (F.pixel_shuffle(z, scale) + 1) / 2


def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10_000.0) -> torch.Tensor:
    """Sinusoidal embedding ``(B,)`` -> ``(B, dim)`` (transformer / DDPM style)."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    args = t.float()[:, None] * freqs[None]
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=1)
    return F.pad(emb, (0, dim % 2))


class PixelNorm(nn.Module):
    """Layer norm over the channels of each pixel, with a learned per-channel scale and shift.

    Unlike group norm (which U-Nets usually use), it looks at one pixel only, so a tile of the image
    is normalised exactly as the whole image is, and tiled sampling is exact."""

    def __init__(self, channels: int):
        super().__init__()
        self.norm = nn.LayerNorm(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


class ResBlock(nn.Module):
    """Norm-SiLU-conv twice, the timestep embedding as a per-channel scale and shift in between."""

    def __init__(self, c_in: int, c_out: int, emb_dim: int):
        super().__init__()
        self.norm1, self.conv1 = PixelNorm(c_in), nn.Conv2d(c_in, c_out, 3, padding=1)
        self.emb = nn.Linear(emb_dim, 2 * c_out)
        self.norm2, self.conv2 = PixelNorm(c_out), nn.Conv2d(c_out, c_out, 3, padding=1)
        self.skip = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()
        nn.init.zeros_(self.conv2.weight)  # each block starts as the identity
        nn.init.zeros_(self.conv2.bias)

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        scale, shift = self.emb(emb)[..., None, None].chunk(2, dim=1)
        h = self.norm2(h) * (1 + scale) + shift
        return self.skip(x) + self.conv2(F.silu(h))


class Denoiser(nn.Module):
    """``z0_hat = Denoiser(z_t, z_y, t)``: ``(B, 3 s^2, h, w)`` tensors in the space of :func:`to_space`
    (``h``, ``w`` even), ``t`` ``(B,)`` (or one) 0-indexed steps -> ``(B, 3 s^2, h, w)``.

    Args: ``scale`` of the SR (the space-to-depth factor), ``width`` channels at LR resolution
    (``2 width`` at half of it), ``blocks`` residual blocks per level.
    """

    def __init__(self, scale: int = 4, width: int = 64, blocks: int = 2, channels: int = 3):
        super().__init__()
        if width % 8:
            raise BadArgument(f"width must be a multiple of 8, got {width}")
        self.scale, self.width, self.blocks, self.channels = scale, width, blocks, channels
        c = channels * scale * scale
        emb_dim = 4 * width
        self.emb = nn.Sequential(nn.Linear(width, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim))
        self.conv_in = nn.Conv2d(2 * c, width, 3, padding=1)
        self.down = nn.ModuleList(ResBlock(width, width, emb_dim) for _ in range(blocks))
        self.pool = nn.Conv2d(width, 2 * width, 3, stride=2, padding=1)
        self.mid = nn.ModuleList(ResBlock(2 * width, 2 * width, emb_dim) for _ in range(blocks))
        self.up = nn.ConvTranspose2d(2 * width, width, 2, stride=2)
        self.dec = nn.ModuleList(ResBlock(2 * width if i == 0 else width, width, emb_dim) for i in range(blocks))
        self.norm_out, self.conv_out = PixelNorm(width), nn.Conv2d(width, c, 3, padding=1)
        nn.init.zeros_(self.conv_out.weight)  # starts at z0_hat = z_y
        nn.init.zeros_(self.conv_out.bias)

    @property
    def config(self) -> dict:
        return dict(scale=self.scale, width=self.width, blocks=self.blocks, channels=self.channels)

    @property
    def receptive_radius(self) -> int:
        """A bound on how far (LR pixels) an output sees: the 3x3 convs at full resolution
        (``conv_in``, ``2 blocks`` down, ``2 blocks`` up, ``conv_out``), the stride-2 conv, and the
        half-resolution ones (``2 blocks``, 2 pixels each), plus 2 for the up/down sampling."""
        return 2 + 4 * self.blocks + 1 + 4 * self.blocks + 2

    def forward(self, z_t: torch.Tensor, z_y: torch.Tensor, t, in_scale=None) -> torch.Tensor:
        """``in_scale`` ``(B,)`` or a number: multiplies ``z_t`` at the input (ResShift's
        ``1 / sqrt(kappa^2 eta_t + 1)``, :meth:`hdm.diffusion.schedule.ResShiftSchedule.input_scale`)."""
        if z_t.shape != z_y.shape or z_t.shape[1] != self.channels * self.scale ** 2 or z_t.shape[-2] % 2 or z_t.shape[-1] % 2:
            raise BadArgument(f"z_t {tuple(z_t.shape)} and z_y {tuple(z_y.shape)} must match, with "
                             f"{self.channels * self.scale ** 2} channels and even sides")
        t = torch.as_tensor(t, device=z_t.device).reshape(-1).expand(z_t.shape[0])
        emb = self.emb(timestep_embedding(t, self.width).to(z_t.dtype))
        if in_scale is not None:
            z_t = z_t * torch.as_tensor(in_scale, dtype=z_t.dtype, device=z_t.device).reshape(-1, 1, 1, 1)
        h = self.conv_in(torch.cat([z_t, z_y], dim=1))
        for block in self.down:
            h = block(h, emb)
        skip = h
        h = self.pool(h)
        for block in self.mid:
            h = block(h, emb)
        h = torch.cat([self.up(h), skip], dim=1)
        for block in self.dec:
            h = block(h, emb)
        return z_y + self.conv_out(F.silu(self.norm_out(h)))
