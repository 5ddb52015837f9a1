"""HaarPSI (Reisenhofer, Bosse, Kutyniok & Wiegand, "A Haar wavelet-based perceptual similarity index
for image quality assessment", Signal Processing: Image Communication 2018): hdm's offline stand-in
for LPIPS.

Why this stand-in: LPIPS needs ImageNet-pretrained backbone weights that cannot be downloaded here.
HaarPSI has no learned weights, correlates with human judgements on the standard IQA databases about
as well as the learned metrics (the paper reports SROCC 0.87-0.96 on LIVE, TID2008/2013 and CSIQ),
and, like LPIPS and unlike PSNR or SSIM, rates a blurred image further from the original than a
noisy one of equal MSE (``tests/test_haarpsi.py``). Every result computed with it says so.

Definition (images in [0, 255] after scaling; colour via YIQ):

1. ``Y``, ``I``, ``Q`` of both images; with ``subsample`` each is 2x2-averaged and decimated
   (the viewing-distance step of the paper);
2. undecimated Haar responses of ``Y`` at scales ``j = 1..3``: correlation with the ``2^j x 2^j`` filter
   ``h_j = 2^-j [[-1...], [+1...]]`` (top half negative) and its transpose, for the horizontal and
   vertical orientation (the metric is defined on these stationary responses, not on the project's
   decimated DWT, so it has its own filters);
3. local similarity per orientation ``o``: ``S_o = mean_{j=1,2} (2 |a_j| |b_j| + C) / (a_j^2 + b_j^2 + C)``
   (``a``, ``b`` the two images' responses), and for colour
   ``S_3 = mean_{I,Q} (2 |a| |b| + C) / (a^2 + b^2 + C)`` on 2x2 means of ``I``, ``Q``;
4. weights ``W_o = max(|a_3|, |b_3|)`` (the coarsest scale: where structure is), ``W_3`` their mean;
5. ``HaarPSI = (logit(sum sigmoid(alpha S) W / sum W) / alpha)^2`` with ``C = 30``, ``alpha = 4.2``.

1 for identical images, lower for more different ones; differentiable almost everywhere.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ..errors import BadArgument

__all__ = ["haarpsi", "haarpsi_distance"]

_YIQ = torch.tensor([[0.299, 0.587, 0.114], [0.5959, -0.2746, -0.3213], [0.2115, -0.5227, 0.3112]])


def _haar_responses(y: torch.Tensor, scales: int) -> list[torch.Tensor]:
    """``(B, 1, H, W)`` -> per scale ``(B, 2, H, W)``: horizontal and vertical undecimated Haar responses
    (``same`` size, the padding of MATLAB's ``conv2(.., 'same')`` for even kernels)."""
    out = []
    for j in range(1, scales + 1):
        k = 2 ** j
        h = torch.full((k, k), 1.0 / k, dtype=y.dtype, device=y.device)
        h[: k // 2] *= -1
        kernels = torch.stack([h, h.t()])[:, None]
        padded = F.pad(y, (k // 2 - 1, k // 2, k // 2 - 1, k // 2))
        out.append(F.conv2d(padded, kernels))
    return out


def _similarity(a: torch.Tensor, b: torch.Tensor, c: float) -> torch.Tensor:
    return (2 * a * b + c) / (a * a + b * b + c)


def haarpsi(x: torch.Tensor, y: torch.Tensor, data_range: float = 1.0, scales: int = 3, subsample: bool = True,
            c: float = 30.0, alpha: float = 4.2) -> torch.Tensor:
    """HaarPSI of ``(B, 3 or 1, H, W)`` images in ``[0, data_range]`` -> ``(B,)`` in (0, 1]."""
    if x.shape != y.shape or x.dim() != 4 or x.shape[1] not in (1, 3):
        raise BadArgument(f"haarpsi needs two (B, 1 or 3, H, W) tensors of one shape, got {tuple(x.shape)}, "
                          f"{tuple(y.shape)}")
    need = 2 ** (scales + 1) if subsample else 2 ** scales
    if min(x.shape[-2:]) < need:
        raise BadArgument(f"haarpsi with {scales} scales needs images of at least {need} px, got {tuple(x.shape[-2:])}")
    x, y = x * (255.0 / data_range), y * (255.0 / data_range)
    colour = x.shape[1] == 3
    if colour:
        m = _YIQ.to(x.device, x.dtype)
        x, y = torch.einsum("kc,bchw->bkhw", m, x), torch.einsum("kc,bchw->bkhw", m, y)
    if subsample:  # 2x2 mean and decimation (odd sides padded with a zero row/column at the end)
        pad = (0, x.shape[-1] % 2, 0, x.shape[-2] % 2)
        x, y = F.avg_pool2d(F.pad(x, pad), 2), F.avg_pool2d(F.pad(y, pad), 2)
    rx, ry = _haar_responses(x[:, :1], scales), _haar_responses(y[:, :1], scales)
    # similarity of the two finest scales' magnitudes, per orientation; weights from the coarsest scale
    sims = [(_similarity(rx[0][:, o].abs(), ry[0][:, o].abs(), c) + _similarity(rx[1][:, o].abs(), ry[1][:, o].abs(), c)) / 2
            for o in range(2)]
    weights = [torch.maximum(rx[-1][:, o].abs(), ry[-1][:, o].abs()) for o in range(2)]
    if colour:
        iq_x = F.avg_pool2d(F.pad(x[:, 1:], (0, 1, 0, 1)), 2, stride=1).abs()
        iq_y = F.avg_pool2d(F.pad(y[:, 1:], (0, 1, 0, 1)), 2, stride=1).abs()
        sims.append(_similarity(iq_x, iq_y, c).mean(dim=1))
        weights.append((weights[0] + weights[1]) / 2)
    s, w = torch.stack(sims, 1), torch.stack(weights, 1)
    eps = torch.finfo(s.dtype).eps
    w_sum = w.sum(dim=(1, 2, 3))
    score = ((torch.sigmoid(alpha * s) * w).sum(dim=(1, 2, 3)) + eps) / (w_sum + eps)
    # images without any structure at the coarsest scale (e.g. both all zero) have no weights: call them
    # equal (score = sigmoid(alpha), HaarPSI = 1) instead of log(1 / 0)
    score = torch.where(w_sum > 0, score, torch.sigmoid(torch.tensor(alpha, dtype=s.dtype, device=s.device)))
    score = score.clamp(eps, 1 - eps)
    return (torch.log(score / (1 - score)) / alpha) ** 2


def haarpsi_distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``mean(1 - HaarPSI(a, b))`` over the batch: a loss / distance for images in [0, 1]."""
    return (1 - haarpsi(a, b)).mean()
