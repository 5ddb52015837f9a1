"""Closed-form higher derivatives of Y = exp(S) against torch.autograd, and the Hessian weights."""
from __future__ import annotations

import numpy as np
import pytest
import scipy.ndimage as ndi
import torch

from hdm.cam import HDMCAM
from hdm.ops.derivatives import (
    exp_score_derivative,
    exp_score_neighbour_mixed,
    gaussian_blur2d,
    hessian_abs_entries,
    hessian_strength_eigen,
    hessian_weight,
    sym2x2_eigvals,
)


def _leaf_activation_model(model, layer, x):
    """Run ``model`` with ``layer``'s output replaced by a leaf tensor; returns (A, S(A) function)."""
    store = {}

    def hook(module, inputs, output):
        if "replacement" in store:
            return store["replacement"]
        store["A"] = output.detach().clone()

    handle = layer.register_forward_hook(hook)
    try:
        with torch.no_grad():
            logits = model(x)
        A = store["A"].requires_grad_(True)
        store["replacement"] = A
        category = int(logits.argmax(dim=1)[0])
        S = model(x)[0, category]
    finally:
        handle.remove()
    return A, S, category


def _autograd_derivatives(A: torch.Tensor, Y: torch.Tensor):
    """Diagonal 2nd/3rd/4th derivatives and the right-neighbour mixed partial, element by element."""
    (g1,) = torch.autograd.grad(Y, A, create_graph=True)
    flat = A.numel()
    d2, d3, d4, mixed = (torch.zeros(flat, dtype=A.dtype) for _ in range(4))
    W = A.shape[-1]
    for p in range(flat):
        (h,) = torch.autograd.grad(g1.flatten()[p], A, create_graph=True)
        d2[p] = h.flatten()[p]
        if (p % W) + 1 < W:
            mixed[p] = h.flatten()[p + 1]
        (t,) = torch.autograd.grad(h.flatten()[p], A, create_graph=True)
        d3[p] = t.flatten()[p]
        (q,) = torch.autograd.grad(t.flatten()[p], A, retain_graph=True)
        d4[p] = q.flatten()[p]
    shape = A.shape
    return tuple(t.detach() for t in (g1, d2.view(shape), d3.view(shape), d4.view(shape), mixed.view(shape)))


def test_closed_forms_equal_autograd_higher_derivatives(small_cnn):
    torch.manual_seed(3)
    x = torch.randn(1, 3, 8, 8, dtype=torch.float64)
    A, S, _ = _leaf_activation_model(small_cnn, small_cnn.block, x)  # A: (1, 2, 4, 4)
    Y = torch.exp(S)
    g1, d2, d3, d4, mixed = _autograd_derivatives(A, Y)
    (g,) = torch.autograd.grad(S, A)
    score = S.detach().reshape(1)
    assert g.abs().sum() > 0 and d2.abs().sum() > 0, "the check must see non-zero derivatives"
    torch.testing.assert_close(exp_score_derivative(score, g, 1), g1, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(exp_score_derivative(score, g, 2), d2, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(exp_score_derivative(score, g, 3), d3, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(exp_score_derivative(score, g, 4), d4, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(exp_score_neighbour_mixed(score, g), mixed, rtol=1e-12, atol=1e-14)
    # Eq. (4) entries: |d2Y/dA^2| on the diagonal, the signed neighbour coupling off it.
    a, b, d = (exp_score_derivative(score, torch.ones_like(g), 1) * e for e in hessian_abs_entries(g))
    torch.testing.assert_close(a, d2.abs(), rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(b, mixed, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(d[..., :-1], d2.abs()[..., 1:], rtol=1e-12, atol=1e-14)


def test_hdmcam_exposed_maps_are_the_autograd_derivatives(small_cnn):
    torch.manual_seed(4)
    x = torch.randn(1, 3, 8, 8, dtype=torch.float64)
    A, S, category = _leaf_activation_model(small_cnn, small_cnn.block, x)
    _, d2, d3, d4, _ = _autograd_derivatives(A, torch.exp(S))
    result = HDMCAM(small_cnn, [small_cnn.block]).explain(x, [category])
    maps = result.derivative_maps["block"]
    factor = float(np.exp(result.scores[0]))
    for order, ref in ((2, d2), (3, d3), (4, d4)):
        np.testing.assert_allclose(maps[order][0] * factor, ref.abs()[0].numpy(), rtol=2e-6, atol=1e-30)
    assert result.hessian_weights["block"].shape == (1, 2)


def test_gaussian_blur_equals_scipy_nearest():
    x = torch.rand(2, 3, 9, 13, dtype=torch.float64)
    for sigma in (0.5, 1.0, 2.0, 4.0):
        ref = np.stack([[ndi.gaussian_filter(m, sigma, mode="nearest", truncate=3.0) for m in ch] for ch in x.numpy()])
        np.testing.assert_allclose(gaussian_blur2d(x, sigma).numpy(), ref, atol=1e-12)
    stacked = gaussian_blur2d(x, [0.5, 2.0])
    assert stacked.shape == (2,) + x.shape
    torch.testing.assert_close(stacked[1], gaussian_blur2d(x, 2.0))
    one = torch.rand(1, 1, 1, 1, dtype=torch.float64)
    torch.testing.assert_close(gaussian_blur2d(one, 2.0), one)


def test_sym2x2_eigvals_match_eigvalsh():
    g = torch.Generator().manual_seed(0)
    a, b, d = torch.randn(3, 500, generator=g, dtype=torch.float64)
    l1, l2 = sym2x2_eigvals(a, b, d)
    ref = torch.linalg.eigvalsh(torch.stack([torch.stack([a, b], -1), torch.stack([b, d], -1)], -2))
    torch.testing.assert_close(torch.stack([l2, l1], -1), ref, rtol=1e-10, atol=1e-12)


def _reference_hessian_weight(grad: np.ndarray, sigmas) -> np.ndarray:
    """Eqs. (4)-(5) literally: smooth each entry with scipy, eigen-solve each 2x2 matrix, max, mean."""
    B, K, H, W = grad.shape
    out = np.zeros((B, K))
    for bi in range(B):
        for k in range(K):
            g = grad[bi, k]
            right = np.zeros_like(g)
            right[:, :-1] = g[:, 1:]
            entries = (g * g, g * right, right * right)
            best = np.full((H, W), -np.inf)
            for s in sigmas:
                a, b, d = (ndi.gaussian_filter(e, s, mode="nearest", truncate=3.0) for e in entries)
                mats = np.stack([np.stack([a, b], -1), np.stack([b, d], -1)], -2)
                lam = np.linalg.eigvalsh(mats)
                best = np.maximum(best, np.abs(lam).sum(-1))
            out[bi, k] = best.mean()
    return out


def test_hessian_weight_eigen_equals_literal_eigen_solve():
    g = torch.randn(2, 3, 7, 10, dtype=torch.float64, generator=torch.Generator().manual_seed(5))
    ours = hessian_weight(g, (0.5, 1.0, 2.0), "eigen")
    np.testing.assert_allclose(ours.numpy(), _reference_hessian_weight(g.numpy(), (0.5, 1.0, 2.0)), rtol=1e-10)
    # The identity it relies on: smoothed eq. (4) matrices are PSD, so |l1| + |l2| is their trace.
    a, b, d = (gaussian_blur2d(e, 1.0) for e in hessian_abs_entries(g))
    torch.testing.assert_close(hessian_strength_eigen(a, b, d), a + d, rtol=1e-10, atol=1e-14)
    # Eq. (7): the mean absolute second derivative.
    torch.testing.assert_close(hessian_weight(g, mode="diag"), (g**2).mean(dim=(-2, -1)))


def test_hessian_weight_rejects_bad_mode():
    with pytest.raises(ValueError, match="'eigen' or 'diag'"):
        hessian_weight(torch.zeros(1, 1, 2, 2), mode="full")
