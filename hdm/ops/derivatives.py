"""Higher-order derivatives of a class score, and the Hessian weights of HDM-CAM (paper eqs. 4-8).

The target (spec decision 1)
----------------------------
A ReLU network is piecewise linear in an intermediate activation ``A`` (ReLU, max/avg pooling,
linear and convolution layers, batch norm in eval mode), so every 2nd or higher derivative of a
logit ``S`` with respect to ``A`` is exactly zero almost everywhere. HDM-CAM therefore follows
Grad-CAM++ and explains ``Y = exp(S)``. With ``g = dS/dA`` and ``d2S/dA2 = 0`` the derivatives of
``Y`` have closed forms (exact for a piecewise-linear head, checked against torch.autograd in
``tests/test_derivatives.py``)::

    d^n Y / dA_p^n            = exp(S) * g_p^n                 (n = 1, 2, 3, 4)
    d^2 Y / dA_p dA_q         = exp(S) * g_p * g_q             (any two positions, e.g. neighbours)

so one forward and one backward pass give every quantity of the paper. All HDM-CAM weights are
normalised (eqs. 10 and 12), and ``exp(S) > 0`` is one factor per image shared by all of them, so
the functions below that feed the CAM work with the *scale-free* maps ``|g|^n`` (the derivative
divided by ``exp(S)``), which also keeps them finite for large logits.

Shapes: ``grad`` is ``(B, K, H, W)`` (batch, channels, height, width) unless said otherwise;
``score`` is ``(B,)``.
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F

__all__ = [
    "exp_score_derivative",
    "exp_score_neighbour_mixed",
    "derivative_map",
    "neighbour_product",
    "gaussian_kernel1d",
    "gaussian_blur_matrix",
    "gaussian_blur2d",
    "sym2x2_eigvals",
    "hessian_abs_entries",
    "hessian_strength_eigen",
    "hessian_weight",
]


def _expand(score: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return score.reshape(score.shape + (1,) * (like.dim() - score.dim()))


def exp_score_derivative(score: torch.Tensor, grad: torch.Tensor, order: int) -> torch.Tensor:
    """``d^n exp(S) / dA_p^n = exp(S) * (dS/dA_p)^n`` at every position (signed).

    Exact when ``S`` is piecewise linear in ``A``. Args: ``score`` ``(B,)`` = S, ``grad`` ``(B, ...)``
    = dS/dA, ``order`` n >= 1. Returns ``grad``'s shape.
    """
    if order < 1:
        raise ValueError(f"order must be >= 1, got {order}")
    return torch.exp(_expand(score, grad)) * grad**order


def neighbour_product(grad: torch.Tensor) -> torch.Tensor:
    """``g[..., i, j] * g[..., i, j + 1]``, zero in the last column (no right neighbour there).

    Scale-free off-diagonal entry of eq. (4). ``(..., H, W) -> (..., H, W)``.
    """
    right = F.pad(grad[..., :, 1:], (0, 1))
    return grad * right


def exp_score_neighbour_mixed(score: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
    """``d^2 exp(S) / (dA_ij dA_i,j+1) = exp(S) * g_ij * g_i,j+1`` (eq. 4 off-diagonal), zero in the
    last column. Exact when ``S`` is piecewise linear in ``A``."""
    return torch.exp(_expand(score, grad)) * neighbour_product(grad)


def derivative_map(grad: torch.Tensor, order: int) -> torch.Tensor:
    """Scale-free absolute derivative map ``|d^n Y/dA^n| / exp(S) = |g|^n`` (stage 1 of the paper)."""
    if order < 1:
        raise ValueError(f"order must be >= 1, got {order}")
    magnitude = grad.abs()
    out = magnitude
    for _ in range(order - 1):  # repeated products: much faster than pow on CPU
        out = out * magnitude
    return out


def gaussian_kernel1d(sigma: float, truncate: float = 3.0, *, dtype=torch.float32, device=None) -> torch.Tensor:
    """Normalised 1-D Gaussian of radius ``int(truncate * sigma + 0.5)`` (scipy.ndimage's rule)."""
    if sigma <= 0:
        raise ValueError(f"sigma must be > 0, got {sigma}")
    radius = int(truncate * float(sigma) + 0.5)
    x = torch.arange(-radius, radius + 1, dtype=dtype, device=device)
    k = torch.exp(-0.5 * (x / sigma) ** 2)
    return k / k.sum()


def gaussian_blur_matrix(n: int, sigma: float, truncate: float = 3.0, *, dtype=torch.float32, device=None) -> torch.Tensor:
    """``(n, n)`` matrix ``M`` with ``M @ v`` = Gaussian smoothing of a length-``n`` signal ``v`` with
    edge replication (samples beyond the ends repeat the end sample)."""
    k = gaussian_kernel1d(sigma, truncate, dtype=dtype, device=device)
    r = (k.numel() - 1) // 2
    rows = torch.arange(n, device=device).view(-1, 1)
    cols = (rows + torch.arange(-r, r + 1, device=device).view(1, -1)).clamp(0, n - 1)
    m = torch.zeros(n, n, dtype=dtype, device=device)
    return m.scatter_add_(1, cols, k.expand(n, -1).contiguous())


def gaussian_blur2d(x: torch.Tensor, sigma: float | Sequence[float], truncate: float = 3.0) -> torch.Tensor:
    """Separable Gaussian smoothing of ``(..., H, W)`` maps with edge replication.

    Equals ``scipy.ndimage.gaussian_filter(x, sigma, mode="nearest", truncate=truncate)`` applied to
    each map. Replication (not reflection) works for any map size, even 1x1 and kernels wider than
    the map (layer4 of ResNet-50 is 7x7 at 224 px input). Computed as ``M_H x M_W^T`` with
    :func:`gaussian_blur_matrix` (matrix products: much faster than a one-channel convolution on CPU).

    ``sigma`` may be a sequence of ``S`` scales: the result is then ``(S, ..., H, W)``, sharing the
    pass along W.
    """
    sigmas = [float(s) for s in sigma] if isinstance(sigma, (list, tuple)) else [float(sigma)]
    h, w = x.shape[-2:]
    opts = dict(dtype=x.dtype, device=x.device)
    mw = torch.cat([gaussian_blur_matrix(w, s, truncate, **opts) for s in sigmas])  # (S*W, W)
    rows = (x.reshape(-1, w) @ mw.T).reshape(-1, h, len(sigmas), w)  # along W, every sigma at once
    out = torch.stack([gaussian_blur_matrix(h, s, truncate, **opts) @ rows[:, :, i] for i, s in enumerate(sigmas)])
    out = out.reshape((len(sigmas),) + tuple(x.shape))
    return out if isinstance(sigma, (list, tuple)) else out[0]


def sym2x2_eigvals(a: torch.Tensor, b: torch.Tensor, d: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Eigenvalues ``(lambda_1 >= lambda_2)`` of the symmetric matrices ``[[a, b], [b, d]]``, elementwise.

    ``lambda = (a + d)/2 +- sqrt(((a - d)/2)^2 + b^2)``.
    """
    mean = (a + d) / 2
    rad = torch.sqrt(((a - d) / 2) ** 2 + b**2)
    return mean + rad, mean - rad


def hessian_abs_entries(grad: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Entries ``(a, b, d)`` of the 2x2 matrix of eq. (4) at every position, before smoothing::

        [ |d2Y/dA_ij^2|             d2Y/dA_ij dA_i,j+1 ]  =  exp(S) * [ g_ij^2        g_ij g_i,j+1 ]
        [ d2Y/dA_i,j+1 dA_ij        |d2Y/dA_i,j+1^2|   ]              [ g_ij g_i,j+1  g_i,j+1^2    ]

    returned scale-free (divided by exp(S)). The right neighbour of the last column does not exist;
    its derivatives are taken as 0 (zero padding).
    """
    a = grad**2
    d = F.pad(a[..., :, 1:], (0, 1))
    b = neighbour_product(grad)
    return a, b, d


def hessian_strength_eigen(a: torch.Tensor, b: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
    """``|lambda_1| + |lambda_2|`` of ``[[a, b], [b, d]]`` elementwise, from the closed-form eigenvalues."""
    l1, l2 = sym2x2_eigvals(a, b, d)
    return l1.abs() + l2.abs()


def hessian_weight(
    grad: torch.Tensor,
    sigmas: Sequence[float] = (0.5, 1.0, 2.0),
    mode: str = "eigen",
) -> torch.Tensor:
    """Per-channel Hessian weight ``w_k^(2)`` (scale-free: the true weight is ``exp(S)`` times this).

    ``mode="eigen"`` is eqs. (4)-(5)::

        w_k^(2) = 1/(H W) sum_ij max_sigma ( |lambda_1(i,j;sigma)| + |lambda_2(i,j;sigma)| )

    with the eq. (4) matrix entries smoothed by :func:`gaussian_blur2d` at each ``sigma`` (in
    feature-map pixels). ``mode="diag"`` is the cheap form of eq. (7), ``w_k^(2) = 1/(H W) sum_ij
    |d2Y/dA_ij^2|`` (Z = number of positions).

    For the exp target the smoothed eq. (4) matrix is a Gram matrix: with Gaussian weights
    ``G_t >= 0``, ``b_s^2 = (sum_t G_t g_t g'_t)^2 <= (sum_t G_t g_t^2)(sum_t G_t g'_t^2) = a_s d_s``
    (Cauchy-Schwarz), so both eigenvalues are >= 0 and ``|lambda_1| + |lambda_2| = a_s + d_s``, the
    smoothed trace, which is linear: ``Gaussian(g_ij^2 + g_i,j+1^2)``. The "eigen" mode uses that
    identity (one blur per sigma instead of three plus an eigen-solve);
    ``tests/test_derivatives.py`` checks it against :func:`hessian_strength_eigen`.

    Args: ``grad`` ``(B, K, H, W)``. Returns ``(B, K)``.
    """
    g2 = grad * grad
    if mode == "diag":
        return g2.mean(dim=(-2, -1))
    if mode != "eigen":
        raise ValueError(f"hessian mode must be 'eigen' or 'diag', got {mode!r}")
    if len(sigmas) == 0:
        raise ValueError("hessian_weight needs at least one sigma")
    trace = g2 + F.pad(g2[..., :, 1:], (0, 1))  # a + d of eq. (4), before smoothing
    return gaussian_blur2d(trace, [float(s) for s in sigmas]).amax(dim=0).mean(dim=(-2, -1))
