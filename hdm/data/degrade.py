"""Low-resolution images made from HR photos: the clean kind (antialiased bicubic x1/s on 8-bit levels, what SR
papers' tables use) and a "real-world" kind, a fixed chain of what a photo goes through before a visitor
upscales it: optical blur, the x1/s downscale, sensor noise and JPEG compression.

The real-world chain (:data:`REAL_WORLD`), in this order: Gaussian blur of ``blur_sigma`` HR pixels; antialiased
bicubic x1/s (:func:`hdm.ops.resize.bicubic_downsample`); Gaussian noise of ``noise_sigma`` (in [0, 1] units),
independent per pixel and channel; rounding to
8 bits; a JPEG round trip at ``jpeg_quality`` (Pillow, 4:2:0 chroma). The noise is seeded per image, so every
method sees the same LR image.
"""
from __future__ import annotations

import io
import zlib

import numpy as np
import torch
from PIL import Image

from ..errors import BadArgument
from ..ops.derivatives import gaussian_blur2d
from ..ops.resize import bicubic_downsample

__all__ = ["LR_KINDS", "REAL_WORLD", "clean_lr", "real_world_lr", "make_lr"]

#: The kinds of LR image :func:`make_lr` makes.
LR_KINDS = ("clean", "real-world")
#: The real-world chain's settings (see the module docstring).
REAL_WORLD = {"blur_sigma": 1.0, "noise_sigma": 4 / 255, "jpeg_quality": 70}


def clean_lr(hr: torch.Tensor, scale: int) -> torch.Tensor:
    """``(1, 3, H, W)`` in [0, 1] -> antialiased bicubic x1/``scale``, on 8-bit levels (not clipped: the
    bicubic's slight overshoot is kept, as the benchmarks always had it)."""
    return (bicubic_downsample(hr, scale) * 255).round() / 255


def real_world_lr(hr: torch.Tensor, scale: int, seed: int) -> torch.Tensor:
    """``(1, 3, H, W)`` in [0, 1] -> the real-world chain's ``(1, 3, H/scale, W/scale)`` on 8-bit levels."""
    blurred = gaussian_blur2d(hr.double(), REAL_WORLD["blur_sigma"]).float()
    lr = bicubic_downsample(blurred, scale)
    noise = torch.randn(lr.shape, generator=torch.Generator().manual_seed(int(seed)))
    lr = (lr + REAL_WORLD["noise_sigma"] * noise).clamp(0, 1)
    pixels = (lr[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=REAL_WORLD["jpeg_quality"], subsampling=2)
    decoded = np.asarray(Image.open(io.BytesIO(buffer.getvalue())).convert("RGB"), dtype=np.float32) / 255
    return torch.from_numpy(decoded).permute(2, 0, 1)[None]


def make_lr(hr: torch.Tensor, scale: int, kind: str = "clean", name: str = "") -> torch.Tensor:
    """The LR image of ``kind`` (:data:`LR_KINDS`) for the HR photo ``hr`` ``(1, 3, H, W)``; the real-world
    noise is seeded by ``name`` (the photo's file name), so a photo always gets the same LR image."""
    if kind == "clean":
        return clean_lr(hr, scale)
    if kind == "real-world":
        return real_world_lr(hr, scale, zlib.crc32(name.encode()))
    raise BadArgument(f"the LR kind must be one of {', '.join(LR_KINDS)}; got {kind!r}")
