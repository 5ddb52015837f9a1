"""HDM-CAM's default band weighting (``bands="weighted"``, eqs. 9-11) against an independent re-derivation.

The reference below takes only the activation ``A`` and the gradient ``g = dS/dA`` of the class logit at each
target layer from torch.autograd (forward hooks); every later step is numpy and PyWavelets, written from the
equations of the paper (``shared/spec/methods.md`` part A) as docs/hdm_cam.md reads them, not from hdm's code.
"""
from __future__ import annotations

import numpy as np
import pytest
import pywt
import torch

from hdm.cam import HDMCAM

LAYERS = ["stem", "block", "head.0"]  # SmallCNN: 20x18, 10x9 (post-ReLU) and 10x9 (a conv output, signed)
TARGETS = [0, 2]
BANDS = ("LL", "LH", "HL", "HH")
GAIN = (0.5, 2.0, 1.0, 3.0)  # a non-trivial lambda_b of eq. (9), different for LH and HL
CAM_ATOL = 1e-6  # hdm returns float32 maps of a float64 computation


@pytest.fixture
def batch():
    torch.manual_seed(7)
    return torch.randn(2, 3, 20, 18, dtype=torch.float64)  # non-square, odd-sized maps: orientation, zero padding


def _activations_and_gradients(model, x, targets, layers):
    """``A`` and ``g = dS/dA`` of each image's class logit at each layer, as float64 numpy ``(B, K, h, w)``."""
    store = {}
    hooks = [model.get_submodule(n).register_forward_hook(lambda m, i, o, n=n: store.__setitem__(n, o)) for n in layers]
    try:
        logits = model(x)
        score = logits[torch.arange(len(targets)), torch.tensor(targets)].sum()  # images do not interact
        grads = torch.autograd.grad(score, [store[n] for n in layers])
    finally:
        for h in hooks:
            h.remove()
    return [(store[n].detach().double().numpy(), g.double().numpy()) for n, g in zip(layers, grads)]


def _dwt(x):
    """One Haar level as ``(LL, LH, HL, HH)`` = PyWavelets' ``(cA, cH, cV, cD)`` (docs/hdm_cam.md: LH = horizontal
    detail cH, HL = vertical cV, HH = diagonal cD; odd sizes padded with zeros, mode="zero")."""
    cA, (cH, cV, cD) = pywt.dwt2(x, "haar", mode="zero")
    return cA, cH, cV, cD


def _band_weights(d, J, gain):
    """Eqs. (9)-(10) for one channel's derivative map ``d`` ``(h, w)`` -> ``W`` ``(J, 4)``.

    Level j transforms LL_{j-1} (LL_0 = d); gamma_{j,b} = lambda_b * mean |coefficient| of band b (decision 2 of
    docs/hdm_cam.md); W_{j,b} = gamma_{j,b} / sum_b gamma_{j,b} (a channel with g = 0 gets 0: it has no weight)."""
    W, ll = np.zeros((J, 4)), d
    for j in range(J):
        bands = _dwt(ll)
        ll = bands[0]
        gamma = np.asarray(gain) * np.array([np.abs(b).mean() for b in bands])
        W[j] = gamma / gamma.sum() if gamma.sum() > 0 else 0.0
    return W


def _subbands(x, J):
    """The J-level partition ``{(j, band): coefficients}``: LL_J (level J) and LH_j, HL_j, HH_j, j = 1..J."""
    coeffs = pywt.wavedec2(x, "haar", mode="zero", level=J)  # [cA_J, (cH_J, cV_J, cD_J), ..., (cH_1, cV_1, cD_1)]
    out = {(J, "LL"): coeffs[0]}
    for j, details in zip(range(J, 0, -1), coeffs[1:]):
        out.update({(j, b): c for b, c in zip(BANDS[1:], details)})
    return out


def _inverse(parts, J, shape):
    """Inverse of :func:`_subbands`, cropped to the signal's ``shape`` (the zero padding of odd sizes goes)."""
    coeffs = [parts[(J, "LL")]] + [tuple(parts[(j, b)] for b in BANDS[1:]) for j in range(J, 0, -1)]
    return pywt.waverec2(coeffs, "haar", mode="zero")[: shape[0], : shape[1]]


def _bilinear_matrix(n_in, n_out):
    """``(n_out, n_in)`` linear interpolation with half-pixel centres (hdm's upsampling, docs/hdm_cam.md decision 4:
    source ``(i + 0.5) n_in / n_out - 0.5``, clamped to the first sample, the last sample repeated beyond the end)."""
    m = np.zeros((n_out, n_in))
    for i in range(n_out):
        s = max((i + 0.5) * n_in / n_out - 0.5, 0.0)
        i0 = min(int(np.floor(s)), n_in - 1)
        i1 = min(i0 + 1, n_in - 1)
        m[i, i0] += 1 - (s - i0)
        m[i, i1] += s - i0
    return m


def _reference(layers_data, size, *, levels, hessian, gain, beta_of=None, apply_to="channels"):
    """HDM-CAM of each image from the equations -> ``cam`` ``(B, H, W)``, layer maps, and ``W3, W4, beta``.

    ``apply_to="channels"``: eq. (13)'s sum over scales and bands gives one weight per channel, which multiplies
    the channel's activation map (eq. 14 as written); ``"subbands"``: each subband of the channel's activation
    takes its own weight and the inverse DWT rebuilds the map (docs/hdm_cam.md, "Two readings").

    ``beta_of(W3, W4)`` replaces eq. (11)'s band weight (only to show that the comparison notices a wrong one)."""
    beta_of = beta_of or (lambda W3, W4: (W3 + W4) / 2)  # beta_{j,b} = (W^(3) + W^(4)) / 2 (docs/hdm_cam.md eq. 10)
    B = layers_data[0][0].shape[0]
    cams, layer_maps, band_weights = [], [[] for _ in layers_data], [[] for _ in layers_data]
    for i in range(B):
        raw = []  # per layer: {(j, band): (K,) eq. 11 weights}
        for l, (A, G) in enumerate(layers_data):
            g = G[i]
            K, h, w = g.shape
            J = min(levels, pywt.dwt_max_level(min(h, w), 2))
            w2 = (g**2).mean(axis=(1, 2)) if hessian == "diag" else np.ones(K)  # eq. (7), Z = h w; or the ablation
            W3 = np.stack([_band_weights(np.abs(g[k]) ** 3, J, gain) for k in range(K)])  # eq. (8)-(10), (K, J, 4)
            W4 = np.stack([_band_weights(np.abs(g[k]) ** 4, J, gain) for k in range(K)])
            beta = beta_of(W3, W4)
            band_weights[l].append((W3, W4, (W3 + W4) / 2))
            weights = {}
            for k in range(K):
                for (j, b), c in _subbands(g[k], J).items():  # G = DWT(g): the gradient w.r.t. the coefficients
                    trace = w2[k] * c**2  # eq. (6) on the diagonal: tr H_p = w^(2)_k G_p^2
                    weights.setdefault((j, b), np.zeros(K))[k] = beta[k, j - 1, BANDS.index(b)] * (
                        np.maximum(c, 0) * trace).sum()  # eq. (11)
            raw.append((J, weights))
        total = sum(np.abs(v).sum() for _, weights in raw for v in weights.values())  # eq. (12), one sum per image
        cam = np.zeros(size)
        for l, ((A, _), (J, weights)) in enumerate(zip(layers_data, raw)):
            a = A[i]
            M = np.zeros(a.shape[1:])
            for k in range(a.shape[0]):
                if apply_to == "channels":  # eq. (13): H_k = sum_j alpha_j sum_b w, alpha_j = exp(-j); eq. (14)
                    M += sum(np.exp(-j) * weights[(j, b)][k] / total for (j, b) in weights) * a[k]
                    continue
                parts = {(j, b): np.exp(-j) * weights[(j, b)][k] / total * c  # each weighted subband, inverse DWT
                         for (j, b), c in _subbands(a[k], J).items()}
                M += _inverse(parts, J, a.shape[1:])
            layer_maps[l].append(np.maximum(M, 0))
            cam += _bilinear_matrix(M.shape[0], size[0]) @ M @ _bilinear_matrix(M.shape[1], size[1]).T
        cam = np.maximum(cam, 0)  # ReLU of eq. (14), then the min-max normalisation of every CAM (eps 1e-7)
        cam = cam - cam.min()
        cams.append(cam / (cam.max() + 1e-7))
    return np.stack(cams), [np.stack(m) for m in layer_maps], band_weights


CASES = [  # (levels, hessian, band_gain)
    (2, "diag", (1.0, 1.0, 1.0, 1.0)),
    (2, "diag", GAIN),
    (2, "none", GAIN),
    (1, "diag", GAIN),
    (1, "none", (1.0, 1.0, 1.0, 1.0)),
]


@pytest.mark.parametrize("apply_to", ["channels", "subbands"])
@pytest.mark.parametrize("levels, hessian, gain", CASES)
def test_weighted_bands_equal_the_equations(small_cnn, batch, levels, hessian, gain, apply_to):
    data = _activations_and_gradients(small_cnn, batch, TARGETS, LAYERS)
    ref_cam, ref_layers, ref_bands = _reference(data, batch.shape[-2:], levels=levels, hessian=hessian, gain=gain,
                                                apply_to=apply_to)
    method = HDMCAM(small_cnn, LAYERS, levels=levels, hessian=hessian, band_gain=gain,
                    apply_to=apply_to)  # bands="weighted", alpha="exp"
    result = method.explain(batch, TARGETS)
    for l, name in enumerate(LAYERS):
        for key, n in (("W3", 0), ("W4", 1), ("beta", 2)):
            ref = np.stack([ref_bands[l][i][n] for i in range(len(TARGETS))])
            np.testing.assert_allclose(result.band_weights[name][key], ref, atol=1e-6, err_msg=f"{name} {key}")
        peak = np.abs(ref_layers[l]).max()
        assert peak > 0
        np.testing.assert_allclose(result.layer_maps[name], ref_layers[l], atol=1e-6 * peak, err_msg=name)
    np.testing.assert_allclose(result.cam, ref_cam, atol=CAM_ATOL)
    np.testing.assert_allclose(method(batch, TARGETS), ref_cam, atol=CAM_ATOL)  # the chunked path, no kept maps
    assert ref_cam.std() > 0.05  # a map with structure, not a constant


WRONG_BETAS = {
    "W3 only": lambda W3, W4: W3,
    "W4 only": lambda W3, W4: W4,
    "uniform (bands ignored)": lambda W3, W4: np.full_like(W3, 0.25),
    "LH and HL swapped": lambda W3, W4: ((W3 + W4) / 2)[..., [0, 2, 1, 3]],
}


def test_the_comparison_notices_a_wrong_beta(small_cnn, batch):
    """Each plausible mistake in beta moves the map far outside the tolerance of the test above."""
    data = _activations_and_gradients(small_cnn, batch, TARGETS, LAYERS)
    ours = HDMCAM(small_cnn, LAYERS, band_gain=GAIN)(batch, TARGETS)
    for what, beta_of in WRONG_BETAS.items():
        wrong = _reference(data, batch.shape[-2:], levels=2, hessian="diag", gain=GAIN, beta_of=beta_of)[0]
        assert np.abs(ours - wrong).max() > 1000 * CAM_ATOL, what
    ignored = _reference(data, batch.shape[-2:], levels=2, hessian="diag", gain=(1.0, 1.0, 1.0, 1.0))[0]
    assert np.abs(ours - ignored).max() > 1000 * CAM_ATOL, "band_gain ignored"


def test_band_gain_rescales_the_band_weights_as_eq_9_10_predict(small_cnn, batch):
    """W'_{j,b} = lambda_b W_{j,b} / sum_b lambda_b W_{j,b}: the gain multiplies eq. (9), eq. (10) renormalises."""
    plain = HDMCAM(small_cnn, LAYERS).explain(batch, TARGETS)
    gained = HDMCAM(small_cnn, LAYERS, band_gain=GAIN).explain(batch, TARGETS)
    lam = np.asarray(GAIN)
    for name in LAYERS:
        predicted = {}
        for key in ("W3", "W4"):
            W = plain.band_weights[name][key].astype(np.float64) * lam
            predicted[key] = W / W.sum(axis=-1, keepdims=True)
            np.testing.assert_allclose(gained.band_weights[name][key], predicted[key], atol=1e-6, err_msg=name)
        np.testing.assert_allclose(gained.band_weights[name]["beta"], (predicted["W3"] + predicted["W4"]) / 2,
                                   atol=1e-6, err_msg=name)
        assert np.abs(gained.band_weights[name]["beta"] - plain.band_weights[name]["beta"]).max() > 0.05


def test_gain_on_one_band_keeps_only_that_part_of_the_map(small_cnn, batch):
    """With the weights on the subbands: lambda = (1, 0, 0, 0): every detail band has beta = 0, so only LL_J is
    weighted and each layer map is constant on the 2^J x 2^J blocks of the Haar tree. lambda = (0, 1, 1, 1): LL_J
    has beta = 0 (eq. 11), so each layer map (before the ReLU) sums to zero over those blocks (the Haar details
    have zero mean)."""
    J = 2
    only_ll = HDMCAM(small_cnn, LAYERS, levels=J, band_gain=(1.0, 0.0, 0.0, 0.0), apply_to="subbands"
                     ).explain(batch, TARGETS)
    no_ll = HDMCAM(small_cnn, LAYERS, levels=J, band_gain=(0.0, 1.0, 1.0, 1.0), apply_to="subbands"
                   ).explain(batch, TARGETS)
    n = 2**J
    for name in LAYERS:
        assert only_ll.levels[name] == J
        keep = np.einsum("j,bjhw->bhw", only_ll.alpha[name], only_ll.scale_maps[name])  # M of eq. (13)-(14)
        drop = np.einsum("j,bjhw->bhw", no_ll.alpha[name], no_ll.scale_maps[name])
        h, w = keep.shape[-2:]
        assert np.abs(keep).max() > 0 and np.abs(drop).max() > 0
        for r in range(0, h, n):
            for c in range(0, w, n):
                block = keep[:, r:r + n, c:c + n]
                constant = block[:, :1, :1] * np.ones_like(block)
                np.testing.assert_allclose(block, constant, atol=1e-6 * np.abs(keep).max())
                if r + n <= h and c + n <= w:  # whole blocks only (a cropped, zero-padded one need not sum to 0)
                    sums = drop[:, r:r + n, c:c + n].sum(axis=(-2, -1))
                    np.testing.assert_allclose(sums, 0, atol=1e-5 * np.abs(drop).max())
