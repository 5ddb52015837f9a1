"""HR -> LR pairs for training and evaluating x``s`` super-resolution (bicubic degradation).

``bicubic_downsample`` is the standard "bicubic x4" of SR benchmarks: the cubic convolution kernel
with ``a = -0.5`` (Keys), stretched by the scale factor when shrinking (antialiasing), pixel centres
aligned (``align_corners=False``). MATLAB's ``imresize`` does the same, except at the image border:
MATLAB extends the image symmetrically, while torch (``F.interpolate(..., antialias=True)``, ported
from Pillow) renormalises the kernel weights that fall inside the image. The two therefore agree
exactly except in the outer 2 LR pixels (8 HR pixels at x4), where they differ slightly; the SR
metrics' border crop (``crop = scale`` HR pixels) removes about half of that band. The tests check agreement with Pillow's
``Image.resize(..., BICUBIC)``, an independent implementation of the same kernel and border rule.

The paired transforms (:func:`random_crop_pair`, :func:`augment_pair`) act on ``(C, H, W)`` tensors
and take a ``numpy.random.Generator``, so a data pipeline is reproducible from its seed.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["bicubic_downsample", "bicubic_upsample", "keys_cubic", "mod_crop"]


def bicubic_downsample(hr: torch.Tensor, scale: int) -> torch.Tensor:
    """``(..., C, H, W)`` float in [0, 1] -> ``(..., C, H // scale, W // scale)`` by antialiased bicubic,
    clamped to [0, 1] (the cubic kernel overshoots near edges). ``H`` and ``W`` must be multiples of
    ``scale`` (see :func:`mod_crop`)."""
    if scale < 1 or int(scale) != scale:
        raise ValueError(f"scale must be a positive integer, got {scale}")
    H, W = hr.shape[-2:]
    if H % scale or W % scale:
        raise ValueError(f"image size {H}x{W} is not a multiple of the scale {scale}: mod_crop it first")
    lead = hr.shape[:-3]
    x = hr.reshape(-1, *hr.shape[-3:])
    lr = F.interpolate(x, size=(H // scale, W // scale), mode="bicubic", align_corners=False, antialias=True)
    return lr.clamp(0, 1).reshape(*lead, *lr.shape[-3:])


def keys_cubic(t: np.ndarray, a: float = -0.5) -> np.ndarray:
    """Keys' cubic convolution kernel ``W(t)`` (``a = -0.5``: Pillow, MATLAB, torch's antialiased path)."""
    t = np.abs(np.asarray(t, dtype=np.float64))
    near = ((a + 2) * t - (a + 3)) * t * t + 1
    far = ((t - 5) * t + 8) * t * a - 4 * a
    return np.where(t < 1, near, np.where(t < 2, far, 0.0))


def _upsample_kernel(scale: int, dtype, device) -> torch.Tensor:
    """``(scale^2, 1, 5, 5)``: for output phase ``(p, q)`` the weights of input taps ``i-2 .. i+2``.

    Output pixel ``s i + p`` sits at input coordinate ``i + d_p``, ``d_p = (2p + 1 - s) / (2s)``
    (pixel centres aligned), so tap ``i - 2 + k`` has weight ``W(d_p + 2 - k)``."""
    d = (2 * np.arange(scale) + 1 - scale) / (2 * scale)
    taps = keys_cubic(d[:, None] + 2 - np.arange(5)[None, :])  # (s, 5)
    kernel = taps[:, None, :, None] * taps[None, :, None, :]  # (p, q, ky, kx)
    return torch.as_tensor(kernel.reshape(scale * scale, 1, 5, 5), dtype=dtype, device=device)


def bicubic_upsample(lr: torch.Tensor, scale: int) -> torch.Tensor:
    """The bicubic baseline of SR tables: ``(..., C, h, w)`` -> ``(..., C, scale h, scale w)``, clamped.

    The same interpolation as ``F.interpolate(mode="bicubic", antialias=True)`` (``a = -0.5``, as
    Pillow and MATLAB; torch's plain bicubic uses ``a = -0.75``, as OpenCV), with its border rule (the
    weights of taps inside the image renormalised), written as a polyphase convolution: one 5x5 filter
    per output phase, then pixel shuffle. That form exports to ONNX (torch's antialiased bicubic does
    not), so the diffusion student's graph can start from the LR image."""
    if scale < 1 or int(scale) != scale:
        raise ValueError(f"scale must be a positive integer, got {scale}")
    lead, (C, h, w) = lr.shape[:-3], lr.shape[-3:]
    x = lr.reshape(-1, C, h, w)
    kernel = _upsample_kernel(int(scale), x.dtype, x.device)
    num = F.conv2d(F.pad(x, (2, 2, 2, 2)).reshape(-1, 1, h + 4, w + 4), kernel)  # (N C, s^2, h, w)
    den = F.conv2d(F.pad(torch.ones_like(x[:1, :1]), (2, 2, 2, 2)), kernel)  # the weights inside the image
    up = F.pixel_shuffle(num / den, int(scale)).reshape(x.shape[0], C, h * scale, w * scale)
    return up.clamp(0, 1).reshape(*lead, C, h * scale, w * scale)


def mod_crop(image: np.ndarray | torch.Tensor, scale: int):
    """Crop the bottom/right so that height and width are multiples of ``scale``.

    numpy images are ``(H, W[, C])``; tensors ``(..., H, W)``."""
    if isinstance(image, torch.Tensor):
        H, W = image.shape[-2:]
        return image[..., : H - H % scale, : W - W % scale]
    H, W = image.shape[:2]
    return image[: H - H % scale, : W - W % scale]




