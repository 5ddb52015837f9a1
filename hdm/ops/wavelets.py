"""The project's one 2-D Haar discrete wavelet transform (DWT), in torch.

Used by HDM-CAM (subband weights), the high-frequency error-map loss and the app's subband view.

Conventions
-----------
* Input ``x`` has shape ``(..., H, W)``; any leading dimensions are batched. Works on any device
  and dtype, and is differentiable (it is made of slicing, additions and padding only).
* Orthonormal Haar filters ``lo = (1, 1)/sqrt(2)``, ``hi = (1, -1)/sqrt(2)`` along each axis. For a
  2x2 block ``[[a, b], [c, d]]`` (row ``2i``: ``a b``, row ``2i+1``: ``c d``)::

      LL = (a + b + c + d) / 2     structure (local mean)
      LH = (a + b - c - d) / 2     horizontal detail: low-pass along W, high-pass along H
                                   (responds to horizontal edges)  == PyWavelets cH
      HL = (a - b + c - d) / 2     vertical detail: high-pass along W  == PyWavelets cV
      HH = (a - b - c + d) / 2     diagonal detail                     == PyWavelets cD

  so ``haar_dwt2(x)`` equals ``pywt.dwt2(x, "haar", mode="zero")`` with ``(LH, HL, HH) = (cH, cV, cD)``.
* Odd sizes: a dimension of odd length is padded with one zero at its end (bottom row / right
  column) before the transform, which is PyWavelets' ``mode="zero"`` for Haar. The band then has
  ``ceil(N / 2)`` samples. Zero padding keeps the transform orthonormal (energy is preserved
  exactly) and the inverse crops the padding away (perfect reconstruction), given the original
  size.
* Multi-level: level ``j`` transforms the LL band of level ``j - 1``, as ``pywt.wavedec2``. Levels
  are numbered 1 (finest) .. J (coarsest).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

__all__ = [
    "BANDS",
    "HaarPyramid",
    "haar_dwt2",
    "haar_idwt2",
    "haar_wavedec2",
    "haar_waverec2",
    "max_level",
]

#: Band names in the order every function of this module returns them.
BANDS = ("LL", "LH", "HL", "HH")


def max_level(height: int, width: int) -> int:
    """Deepest useful level for an ``(height, width)`` map: ``floor(log2(min(height, width)))``.

    Same as ``pywt.dwt_max_level(min(height, width), 2)``; 0 for maps smaller than 2 pixels.
    """
    n = min(int(height), int(width))
    return int(math.floor(math.log2(n))) if n >= 2 else 0


def haar_dwt2(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """One level of the 2-D Haar DWT.

    Args:
        x: ``(..., H, W)`` real tensor, ``H, W >= 1``.
    Returns:
        ``(LL, LH, HL, HH)``, each ``(..., ceil(H/2), ceil(W/2))``.
    """
    if x.dim() < 2:
        raise ValueError(f"haar_dwt2 needs a tensor with at least 2 dimensions (..., H, W), got shape {tuple(x.shape)}")
    h, w = x.shape[-2:]
    if h % 2 or w % 2:
        x = F.pad(x, (0, w % 2, 0, h % 2))  # zero at the end: PyWavelets mode="zero"
    a = x[..., 0::2, 0::2]
    b = x[..., 0::2, 1::2]
    c = x[..., 1::2, 0::2]
    d = x[..., 1::2, 1::2]
    s, t = a + b, c + d  # horizontal pair sums of the top and bottom rows
    u, v = a - b, c - d  # horizontal pair differences
    return (s + t) / 2, (s - t) / 2, (u + v) / 2, (u - v) / 2


def haar_idwt2(
    ll: torch.Tensor,
    lh: torch.Tensor,
    hl: torch.Tensor,
    hh: torch.Tensor,
    size: tuple[int, int] | None = None,
) -> torch.Tensor:
    """Inverse of :func:`haar_dwt2`.

    Args:
        ll, lh, hl, hh: ``(..., h, w)`` bands of the same shape.
        size: ``(H, W)`` of the signal before the forward transform; the zero padding is cropped
            away. ``None`` gives ``(2h, 2w)``.
    Returns:
        ``(..., H, W)`` tensor.
    """
    if not (ll.shape == lh.shape == hl.shape == hh.shape):
        raise ValueError(
            f"haar_idwt2: bands must share one shape, got LL {tuple(ll.shape)}, LH {tuple(lh.shape)}, "
            f"HL {tuple(hl.shape)}, HH {tuple(hh.shape)}"
        )
    s, t = ll + lh, ll - lh  # = a + b, c + d
    u, v = hl + hh, hl - hh  # = a - b, c - d
    a, b = (s + u) / 2, (s - u) / 2
    c, d = (t + v) / 2, (t - v) / 2
    h, w = ll.shape[-2:]
    top = torch.stack((a, b), dim=-1).reshape(*ll.shape[:-1], 2 * w)
    bottom = torch.stack((c, d), dim=-1).reshape(*ll.shape[:-1], 2 * w)
    out = torch.stack((top, bottom), dim=-2).reshape(*ll.shape[:-2], 2 * h, 2 * w)
    if size is not None:
        H, W = int(size[0]), int(size[1])
        if not (2 * h - 1 <= H <= 2 * h and 2 * w - 1 <= W <= 2 * w):
            raise ValueError(f"haar_idwt2: size {(H, W)} does not fit bands of shape {(h, w)}")
        out = out[..., :H, :W]
    return out


@dataclass
class HaarPyramid:
    """A multi-level Haar decomposition, the layout of ``pywt.wavedec2``.

    Attributes:
        ll: coarsest approximation ``LL_J``, ``(..., h_J, w_J)``.
        details: ``details[j - 1] = (LH_j, HL_j, HH_j)`` for levels ``j = 1 (finest) .. J``.
        sizes: ``sizes[j - 1]`` = ``(H, W)`` of the signal that level ``j`` transformed (needed to
            crop odd sizes on the way back).
    """

    ll: torch.Tensor
    details: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]
    sizes: list[tuple[int, int]]

    @property
    def levels(self) -> int:
        return len(self.details)

    def bands(self) -> list[tuple[int, str, torch.Tensor]]:
        """Every subband of the partition as ``(level, name, tensor)``: ``LL_J`` then the details
        of each level, finest first. The subbands together hold exactly the signal's energy."""
        out = [(self.levels, "LL", self.ll)]
        for j, (lh, hl, hh) in enumerate(self.details, start=1):
            out += [(j, "LH", lh), (j, "HL", hl), (j, "HH", hh)]
        return out

    def map_bands(self, fn) -> "HaarPyramid":
        """A pyramid of the same layout with ``fn(level, name, band)`` applied to every subband."""
        J = self.levels
        details = [
            (fn(j, "LH", lh), fn(j, "HL", hl), fn(j, "HH", hh))
            for j, (lh, hl, hh) in enumerate(self.details, start=1)
        ]
        return HaarPyramid(fn(J, "LL", self.ll), details, list(self.sizes))

    def to_pywt(self) -> list:
        """The coefficient list ``[cA_J, (cH_J, cV_J, cD_J), ..., (cH_1, cV_1, cD_1)]`` of PyWavelets."""
        return [self.ll] + [tuple(d) for d in reversed(self.details)]


def haar_wavedec2(x: torch.Tensor, level: int) -> HaarPyramid:
    """Multi-level 2-D Haar DWT (``pywt.wavedec2(x, "haar", mode="zero", level=level)``).

    Args:
        x: ``(..., H, W)`` tensor.
        level: number of levels ``J >= 0``; at most :func:`max_level` ``(H, W)``. ``0`` returns the
            signal itself as ``LL`` with no details.
    """
    if x.dim() < 2:
        raise ValueError(f"haar_wavedec2 needs a tensor (..., H, W), got shape {tuple(x.shape)}")
    level = int(level)
    limit = max_level(*x.shape[-2:])
    if not 0 <= level <= limit:
        raise ValueError(f"haar_wavedec2: level must be in [0, {limit}] for a {tuple(x.shape[-2:])} map, got {level}")
    details, sizes = [], []
    ll = x
    for _ in range(level):
        sizes.append((ll.shape[-2], ll.shape[-1]))
        ll, lh, hl, hh = haar_dwt2(ll)
        details.append((lh, hl, hh))
    return HaarPyramid(ll, details, sizes)


def haar_waverec2(pyramid: HaarPyramid) -> torch.Tensor:
    """Inverse of :func:`haar_wavedec2`: rebuilds the ``(..., H, W)`` signal exactly."""
    ll = pyramid.ll
    for (lh, hl, hh), size in zip(reversed(pyramid.details), reversed(pyramid.sizes)):
        ll = haar_idwt2(ll, lh, hl, hh, size=size)
    return ll
