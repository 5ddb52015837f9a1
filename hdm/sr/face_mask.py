"""The face mask of the face/general SR fusion (spec part C, eqs. 1-3): pad, smooth, blend.

A detector returns tight face boxes. Each box ``(x0, y0, x1, y1)`` (output-resolution pixels, ``x1``,
``y1`` exclusive) of width ``w`` and height ``h`` becomes a soft mask in three steps:

1. pad: the box grows by ``pad * w`` on the left and right and ``pad * h`` on top and bottom, so the
   hair line, chin and ears that a tight box cuts off still go to the face model;
2. smooth: the padded box's indicator is convolved with the normalised Gaussian of eq. (2),
   ``G(x, y) = exp(-(x^2 / (2 sx^2) + y^2 / (2 sy^2))) / K`` on the integer grid
   ``x in [-w/2, w/2]``, ``y in [-h/2, h/2]``, ``K`` its sum, with ``sx = w / sigma_div`` and
   ``sy = h / sigma_div``;
3. union: the masks of several faces combine by their maximum.

``M_face`` is then in [0, 1], ``M_bg = 1 - M_face`` (eq. 3), and the fused image is
``M_face * I_face + M_bg * I_general`` (eq. 1).

Defaults and why (the paper's sigma values were lost): ``pad = 0.2`` and ``sigma_div = 10``.
The padded edge lies ``0.2 w = 2 sx`` outside the tight box, so the mask is
``Phi(2) = 0.977`` on the tight box's edge and 1 well inside it: the whole detected face comes from
the face model. Outside, it falls to 0.023 at ``0.4 w`` beyond the tight box and is exactly 0 from
``0.7 w`` on (the kernel is cut at ``w / 2 = 5 sx``): the general model keeps the rest of the picture
untouched, with a transition ``3.3 sx = 0.33 w`` wide (5 % to 95 %), wide enough to hide the seam
between two generators and narrow enough to stay on the head.

The Gaussian is separable and the padded box is a product of two intervals, so the convolution is
the product of two 1-D convolutions, computed in closed form from the kernel's cumulative sum. It is
evaluated on the unbounded plane: a face cut by the image border keeps mask 1 up to the border.
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage

from ..errors import BadArgument

__all__ = ["gaussian_kernel_1d", "face_mask", "mask_support", "blend", "map_mask"]


def gaussian_kernel_1d(extent: float, sigma: float) -> np.ndarray:
    """Eq. (2) along one axis: ``exp(-t^2 / (2 sigma^2)) / K`` for integers ``t in [-extent/2, extent/2]``.

    Returns ``(2 r + 1,)`` float64 summing to 1, ``r = floor(extent / 2)`` (at least 0)."""
    if sigma <= 0:
        raise BadArgument(f"sigma must be > 0, got {sigma}")
    r = max(0, int(math.floor(extent / 2)))
    t = np.arange(-r, r + 1, dtype=np.float64)
    g = np.exp(-(t ** 2) / (2 * sigma ** 2))
    return g / g.sum()


def _smoothed_interval(n: int, lo: float, hi: float, kernel: np.ndarray) -> np.ndarray:
    """``(n,)``: the indicator of pixels whose centre ``i + 0.5`` lies in ``[lo, hi)`` (on the whole
    integer line), convolved with the centred ``kernel``, at pixels ``0..n-1``."""
    r = (len(kernel) - 1) // 2
    first, last = math.ceil(lo - 0.5), math.ceil(hi - 0.5) - 1  # pixels inside: first..last
    cdf = np.concatenate([[0.0], np.cumsum(kernel)])  # cdf[k] = sum of kernel[:k]
    i = np.arange(n)
    # (indicator * kernel)(i) = sum_t kernel(t) [first <= i - t <= last] = sum over t in [i - last, i - first]
    t_lo = np.clip(i - last, -r, r + 1)
    t_hi = np.clip(i - first + 1, -r, r + 1)  # exclusive
    return np.where(t_hi > t_lo, cdf[t_hi + r] - cdf[t_lo + r], 0.0)


def face_mask(size: tuple[int, int], boxes: Sequence[Sequence[float]], pad: float = 0.2,
              sigma_div: float = 10.0, origin: tuple[int, int] = (0, 0)) -> np.ndarray:
    """``M_face`` ``(H, W)`` float32 in [0, 1] for ``boxes`` ``(n, >= 4)`` ``x0, y0, x1, y1`` (image pixels,
    exclusive ends; boxes may reach outside the image). See the module docstring.

    ``origin`` ``(y, x)``: compute only the ``size`` window of the image starting there (the fusion
    evaluates the mask on the faces' region only). No boxes -> all zeros."""
    H, W = int(size[0]), int(size[1])
    if H <= 0 or W <= 0:
        raise BadArgument(f"size must be positive, got {size}")
    if pad < 0 or sigma_div <= 0:
        raise BadArgument(f"need pad >= 0 and sigma_div > 0, got pad={pad}, sigma_div={sigma_div}")
    oy, ox = origin
    mask = np.zeros((H, W), dtype=np.float32)
    for box in boxes:
        x0, y0, x1, y1 = (float(v) for v in box[:4])
        w, h = x1 - x0, y1 - y0
        if not (w > 0 and h > 0):
            raise BadArgument(f"a box needs x1 > x0 and y1 > y0, got {tuple(box)}")
        kx = gaussian_kernel_1d(w, w / sigma_div)
        ky = gaussian_kernel_1d(h, h / sigma_div)
        px = _smoothed_interval(W, x0 - pad * w - ox, x1 + pad * w - ox, kx).astype(np.float32)
        py = _smoothed_interval(H, y0 - pad * h - oy, y1 + pad * h - oy, ky).astype(np.float32)
        np.maximum(mask, np.outer(py, px), out=mask)
    return np.clip(mask, 0, 1, out=mask)


def mask_support(box: Sequence[float], pad: float = 0.2) -> tuple[int, int, int, int]:
    """The integer region ``(x0, y0, x1, y1)`` (exclusive ends, possibly outside the image) outside
    which ``face_mask`` of ``box`` is exactly 0: the padded box plus the kernel's half-width."""
    x0, y0, x1, y1 = (float(v) for v in box[:4])
    w, h = x1 - x0, y1 - y0
    rx, ry = math.floor(w / 2), math.floor(h / 2)
    return (math.floor(x0 - pad * w) - rx - 1, math.floor(y0 - pad * h) - ry - 1,
            math.ceil(x1 + pad * w) + rx + 1, math.ceil(y1 + pad * h) + ry + 1)


def blend(face: np.ndarray, general: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Eqs. (1) and (3): ``mask * face + (1 - mask) * general``.

    ``face``, ``general`` ``(H, W, C)`` (or ``(H, W)``) float; ``mask`` ``(H, W)`` in [0, 1]."""
    if face.shape != general.shape or face.shape[:2] != mask.shape:
        raise BadArgument(f"shapes differ: face {face.shape}, general {general.shape}, mask {mask.shape}")
    m = mask.astype(np.result_type(face, general, np.float32))
    if face.ndim == 3:
        m = m[..., None]
    return general + m * (face - general)


def map_mask(saliency: np.ndarray, size: tuple[int, int], threshold: float = 0.5, softness: float = 0.02) -> np.ndarray:
    """A fusion mask from a localisation map instead of face boxes (the paper's point that fusion works
    for any class a localiser finds): ``saliency`` ``(h, w)`` in [0, 1] (e.g. an HDM-CAM class map) is
    resized to ``size`` ``(H, W)`` (bilinear), thresholded at ``threshold`` of its maximum, and the
    region's edge softened with a normalised Gaussian of ``softness * min(H, W)`` pixels (eq. 2's
    smoothing, isotropic). Returns ``(H, W)`` float32 in [0, 1]; an empty map gives zeros."""
    if saliency.ndim != 2:
        raise BadArgument(f"saliency must be (h, w), got {saliency.shape}")
    if not 0 < threshold < 1:
        raise BadArgument(f"threshold must be in (0, 1), got {threshold}")
    peak = float(np.max(saliency)) if saliency.size else 0.0
    if peak <= 0:
        return np.zeros(size, dtype=np.float32)
    up = F.interpolate(torch.from_numpy(np.ascontiguousarray(saliency, dtype=np.float32))[None, None], size=tuple(size),
                       mode="bilinear", align_corners=False)[0, 0].numpy()
    region = (up >= threshold * peak).astype(np.float32)
    sigma = softness * min(size)
    soft = ndimage.gaussian_filter(region, sigma, mode="nearest", truncate=3.0) if sigma > 0 else region
    return np.clip(soft, 0, 1).astype(np.float32)
