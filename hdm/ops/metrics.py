"""PSNR and SSIM as super-resolution papers report them: on the Y channel, with a border crop.

* Y is ITU-R BT.601 luma on the [16, 235] scale that MATLAB's ``rgb2ycbcr`` uses:
  ``Y = 16 + (65.481 R + 128.553 G + 24.966 B)`` for ``R, G, B`` in [0, 1], kept as a float (as
  BasicSR's ``calculate_psnr(test_y_channel=True)``; MATLAB rounds it to an integer first).
* ``crop`` pixels (the scale factor, by convention) are dropped on every side before measuring.
* PSNR: ``10 log10(255^2 / MSE)``.
* SSIM: Wang et al. (2004): an 11x11 Gaussian window with sigma 1.5 (``truncate = 3.5``), ``K1 = 0.01``,
  ``K2 = 0.03``, ``L = 255``, population (not sample) variances, averaged over the positions where the
  window fits inside the image. This is ``skimage.metrics.structural_similarity(gaussian_weights=True,
  sigma=1.5, use_sample_covariance=False, data_range=255)``, which the tests check to 1e-10.

Inputs are images ``(H, W, 3)`` uint8 (0-255) or float in [0, 1]; an SR result is usually quantised to
uint8 first (:func:`hdm.io.images.to_uint8`), as it is when saved to a PNG.
"""
from __future__ import annotations

import math

import numpy as np
import torch
from scipy import ndimage

__all__ = ["rgb_to_y", "psnr", "ssim", "ssim_map", "psnr_ssim_y", "region_psnr_ssim_y"]


def rgb_to_y(image: np.ndarray) -> np.ndarray:
    """BT.601 luma in [16, 235] (float64) of an ``(H, W, 3)`` RGB image (uint8, or float in [0, 1])."""
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected an (H, W, 3) RGB image, got shape {image.shape}")
    rgb = image.astype(np.float64) / 255.0 if image.dtype == np.uint8 else image.astype(np.float64)
    return 16.0 + rgb @ np.array([65.481, 128.553, 24.966])


def _prepare(a: np.ndarray, b: np.ndarray, crop: int) -> tuple[np.ndarray, np.ndarray]:
    if a.shape != b.shape:
        raise ValueError(f"images differ in shape: {a.shape} vs {b.shape}")
    if crop < 0 or 2 * crop >= min(a.shape[:2]):
        raise ValueError(f"crop {crop} leaves nothing of a {a.shape[:2]} image")
    ya, yb = rgb_to_y(a), rgb_to_y(b)
    if crop:
        ya, yb = ya[crop:-crop, crop:-crop], yb[crop:-crop, crop:-crop]
    return ya, yb


def psnr(a: np.ndarray, b: np.ndarray, data_range: float = 255.0) -> float:
    """``10 log10(data_range^2 / MSE)`` of two same-shape arrays; ``inf`` when they are equal."""
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return math.inf if mse == 0 else 10.0 * math.log10(data_range ** 2 / mse)


def ssim(a: np.ndarray, b: np.ndarray, data_range: float = 255.0, sigma: float = 1.5) -> float:
    """Mean SSIM of two 2-D arrays (Wang et al. 2004; see the module docstring)."""
    return float(ssim_map(a, b, data_range, sigma).mean())


def ssim_map(a: np.ndarray, b: np.ndarray, data_range: float = 255.0, sigma: float = 1.5) -> np.ndarray:
    """The SSIM map at the positions where the window fits: ``(H - 2r, W - 2r)``, ``r = int(3.5 sigma + 0.5)``
    (5 for sigma 1.5); its mean is :func:`ssim`."""
    if a.ndim != 2 or a.shape != b.shape:
        raise ValueError(f"ssim needs two 2-D arrays of one shape, got {a.shape} and {b.shape}")
    radius = int(3.5 * sigma + 0.5)
    if min(a.shape) < 2 * radius + 1:
        raise ValueError(f"images of {a.shape} are smaller than the {2 * radius + 1}-px SSIM window")
    a, b = a.astype(np.float64), b.astype(np.float64)
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2

    def blur(x):
        return ndimage.gaussian_filter(x, sigma, truncate=3.5, mode="reflect")

    mu_a, mu_b = blur(a), blur(b)
    var_a = blur(a * a) - mu_a ** 2
    var_b = blur(b * b) - mu_b ** 2
    cov = blur(a * b) - mu_a * mu_b
    s = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a ** 2 + mu_b ** 2 + c1) * (var_a + var_b + c2))
    return s[radius:-radius, radius:-radius]  # positions where the window fits


def psnr_ssim_y(sr: np.ndarray, hr: np.ndarray, crop: int = 4) -> tuple[float, float]:
    """PSNR (dB) and SSIM on the Y channel of two ``(H, W, 3)`` RGB images, ``crop`` px dropped per side."""
    ya, yb = _prepare(sr, hr, crop)
    return psnr(ya, yb), ssim(ya, yb)


def region_psnr_ssim_y(sr: np.ndarray, hr: np.ndarray, region: np.ndarray, crop: int = 4) -> tuple[float, float]:
    """PSNR and SSIM on the Y channel over the pixels where ``region`` ``(H, W)`` is true (after the
    border crop): PSNR from the MSE over those pixels, SSIM as the mean of the SSIM map over the window
    centres in the region. ``nan`` when the region is empty."""
    ya, yb = _prepare(sr, hr, crop)
    if crop:
        region = region[crop:-crop, crop:-crop]
    if not region.any():
        return math.nan, math.nan
    p = psnr(ya[region], yb[region])
    r = int(3.5 * 1.5 + 0.5)
    inner = region[r:-r, r:-r]
    s = float(ssim_map(ya, yb)[inner].mean()) if inner.any() else math.nan
    return p, s


def psnr_tensor(sr: torch.Tensor, hr: torch.Tensor, crop: int = 0) -> torch.Tensor:
    """Per-image RGB PSNR (dB) of ``(B, 3, H, W)`` tensors in [0, 1] (a training monitor; the
    reported figures use :func:`psnr_ssim_y`)."""
    if crop:
        sr, hr = sr[..., crop:-crop, crop:-crop], hr[..., crop:-crop, crop:-crop]
    mse = ((sr.clamp(0, 1) - hr) ** 2).flatten(1).mean(1).clamp_min(1e-12)
    return 10 * torch.log10(1 / mse)
