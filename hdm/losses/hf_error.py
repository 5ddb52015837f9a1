"""The multi-scale high-frequency error-map loss (spec part B, eq. 1).

At each scale ``s`` in (1, 0.5, 0.25, 0.125) with weight ``W_s`` in (0.4, 0.3, 0.2, 0.1):

1. resize SR and HR by ``s`` (antialiased bicubic; scale 1 is the images themselves);
2. one level of the project's Haar DWT (:func:`hdm.ops.wavelets.haar_dwt2`) of both, per channel;
3. error map from the detail bands only:
   ``E = sum_{channels} (|LH_sr - LH_hr| + |HL_sr - HL_hr| + |HH_sr - HH_hr|)``, one value per 2x2 block,
   brought to the scale's image size by repeating each value over its block (nearest upsampling:
   exactly the support of the Haar coefficient it came from);
4. normalised per image by its maximum, ``E / max(max E, floor)`` with ``floor = 1/255``: the map is
   in [0, 1], so the weighted images stay in the range the perceptual network expects; the floor
   keeps errors below one 8-bit grey level (and float rounding) from being blown up to full weight.
   The map is detached: it says *where* to look; gradients flow through the images, not through the
   choice of where;
5. ``L_s = distance(E * SR_s, E * HR_s)``;

and ``L = sum_s W_s L_s``. ``distance`` is LPIPS in the paper; any callable ``(a, b) -> scalar``
works, which is how the tests check the construction. Where SR equals HR the map
is 0 and so is the loss.
"""
from __future__ import annotations

from typing import Callable, Sequence

import torch
import torch.nn.functional as F

from ..errors import BadArgument
from ..ops.wavelets import haar_dwt2

__all__ = ["SCALES", "SCALE_WEIGHTS", "error_map", "hf_error_map_loss"]

SCALES = (1.0, 0.5, 0.25, 0.125)
SCALE_WEIGHTS = (0.4, 0.3, 0.2, 0.1)


def error_map(sr: torch.Tensor, hr: torch.Tensor, floor: float = 1 / 255) -> torch.Tensor:
    """Steps 2-4: ``(B, C, H, W)`` images -> ``(B, 1, H, W)`` map in [0, 1] (detached).

    Odd sizes: the DWT pads one zero row/column at the end; the map is cropped back to ``(H, W)``."""
    with torch.no_grad():
        _, lh_s, hl_s, hh_s = haar_dwt2(sr)
        _, lh_h, hl_h, hh_h = haar_dwt2(hr)
        e = ((lh_s - lh_h).abs() + (hl_s - hl_h).abs() + (hh_s - hh_h).abs()).sum(dim=1, keepdim=True)
        e = e.repeat_interleave(2, dim=-2).repeat_interleave(2, dim=-1)[..., : sr.shape[-2], : sr.shape[-1]]
        peak = e.amax(dim=(-2, -1), keepdim=True)
        return e / peak.clamp_min(floor)


def _resize(x: torch.Tensor, s: float) -> torch.Tensor:
    if s == 1:
        return x
    return F.interpolate(x, scale_factor=s, mode="bicubic", align_corners=False, antialias=True)


def hf_error_map_loss(sr: torch.Tensor, hr: torch.Tensor, distance: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
                      scales: Sequence[float] = SCALES, weights: Sequence[float] = SCALE_WEIGHTS,
                      return_terms: bool = False):
    """Eq. (1): ``sum_s W_s distance(E_s * SR_s, E_s * HR_s)`` for ``(B, C, H, W)`` images in [0, 1].

    ``return_terms``: also return the list of per-scale ``L_s`` (unweighted)."""
    if len(scales) != len(weights):
        raise BadArgument(f"{len(scales)} scales but {len(weights)} weights")
    if sr.shape != hr.shape:
        raise BadArgument(f"SR {tuple(sr.shape)} and HR {tuple(hr.shape)} differ in shape")
    smallest = min(scales) * min(sr.shape[-2:])
    if smallest < 2:
        raise BadArgument(f"images of {tuple(sr.shape[-2:])} are too small for scale {min(scales)} "
                          "(need >= 2 px there)")
    terms = []
    for s in scales:
        a, b = _resize(sr, s), _resize(hr.detach(), s)
        m = error_map(a, b)
        terms.append(distance(a * m, b * m))
    total = sum(w * t for w, t in zip(weights, terms))
    return (total, terms) if return_terms else total
