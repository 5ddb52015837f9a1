"""The two readings of eqs. (13)-(14) behind a global-average-pooled head, and flat maps.

Behind global average pooling the gradient of a class logit with respect to the last layer is the same at every
position of a channel. Then the detail subbands of every derivative map vanish, eqs. (9)-(11) give the detail
bands weight 0, and the reading that weights each subband of ``A`` (``apply_to="subbands"``) keeps only the
coarsest LL band: a constant map on a 4x4 layer. Eqs. (13)-(14) as written (``apply_to="channels"``) sum the band
weights into one weight per channel and keep the layer's spatial detail. Docs: docs/hdm_cam.md, "Two readings".
"""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn as nn
import torchvision

from hdm.cam import HDMCAM, GradCAM, GradCAMPlusPlus, LayerCAM
from hdm.cam.base import FLAT_RTOL, flat_maps, normalize_maps

FC = (2.0, 1.0, -1.0)  # the explained class's weight on each of the three channels


class PooledHead(nn.Module):
    """``feat`` (a fixed 1x1 conv, 3 -> 3 channels) -> global average pooling -> a linear layer: every gradient
    ``dS/dA`` at ``feat`` is ``fc_k / 16`` at each position of a 4x4 map."""

    def __init__(self):
        super().__init__()
        self.feat = nn.Conv2d(3, 3, 1, bias=False)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(3, 2, bias=False)
        with torch.no_grad():
            self.feat.weight.copy_(torch.tensor([[1.0, 0, 0], [0, 1.0, 0], [0, 0, 1.0]])[:, :, None, None])
            self.fc.weight.copy_(torch.tensor([FC, (0.0, 0.0, 1.0)]))

    def forward(self, x):
        return self.fc(self.flatten(self.pool(self.feat(x))))


@pytest.fixture
def pooled():
    model = PooledHead().double().eval()
    x = torch.rand(1, 3, 4, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    return model, x


def test_eqs_9_to_14_by_hand_with_a_uniform_gradient(pooled):
    """A 4x4 layer, J = 2, g_k = c_k = fc_k / 16 everywhere (so ``A`` = the input, no resizing).

    The Haar tree of a constant has one non-zero coefficient, ``LL_2 = 4 c_k``; every detail band of ``|g|^3`` and
    ``|g|^4`` is 0, so ``beta = (1, 0, 0, 0)`` at both levels (eqs. 9-10). Eq. (11) with ``w2_k = c_k^2`` (eq. 7):
    ``w_k = c_k^2 ReLU(4 c_k) (4 c_k)^2 = 64 c_k^5`` for ``c_k > 0`` (0 for channel 3, ``c < 0``), on ``LL_2`` only;
    eq. (12) divides by ``T = 64 (c_1^5 + c_2^5)``; eq. (13) multiplies by ``alpha_2 = exp(-2)``.
    Channels (eq. 14 as written): ``M = exp(-2) (c_1^5 A_1 + c_2^5 A_2) / (c_1^5 + c_2^5)``.
    Subbands: ``M = exp(-2) * the same mix of the channel means``, a constant: no spatial evidence."""
    model, x = pooled
    c = np.array(FC) / 16
    mix = np.where(c > 0, c**5, 0) / np.where(c > 0, c**5, 0).sum()
    a = x[0].numpy()
    expected_M = math.exp(-2) * np.einsum("k,khw->hw", mix, a)

    channels = HDMCAM(model, ["feat"]).explain(x, [0])
    r = channels
    assert r.levels["feat"] == 2
    np.testing.assert_allclose(r.hessian_weights["feat"][0], c**2, rtol=1e-6)  # eq. (7), scaled back
    for key in ("W3", "W4", "beta"):
        np.testing.assert_allclose(r.band_weights["feat"][key][0], np.tile([1.0, 0, 0, 0], (3, 2, 1)), atol=1e-7)
    for (j, band), w in r.subband_weights["feat"].items():
        want = math.exp(-2) * mix if (j, band) == (2, "LL") else np.zeros(3)
        np.testing.assert_allclose(w[0], want, atol=1e-7, err_msg=f"{(j, band)}")
    np.testing.assert_allclose(r.layer_maps["feat"][0], np.maximum(expected_M, 0), rtol=1e-6)
    spread = expected_M - expected_M.min()
    np.testing.assert_allclose(r.cam[0], spread / (spread.max() + 1e-7), atol=1e-6)
    assert not r.flat[0]

    subbands = HDMCAM(model, ["feat"], apply_to="subbands").explain(x, [0])
    constant = math.exp(-2) * (mix * a.mean(axis=(1, 2))).sum()
    np.testing.assert_allclose(subbands.layer_maps["feat"][0], np.full((4, 4), constant), rtol=1e-6)
    assert subbands.flat[0] and not subbands.cam.any()  # a constant map is reported, not stretched to [0, 1]


def test_gradient_at_a_resnets_last_layer_is_uniform_and_only_the_subband_reading_collapses():
    """A torchvision ResNet (global average pooling) at 128 px: layer4 is 4x4 and its gradient is uniform in every
    channel. The paper's method (all its default options) gives a real map; the subband reading on layer4 alone
    keeps LL_2 only, a constant, and says so."""
    torch.manual_seed(0)
    model = torchvision.models.resnet18(num_classes=5).eval()
    x = torch.randn(2, 3, 128, 128, generator=torch.Generator().manual_seed(1))
    store = {}
    hook = model.layer4.register_forward_hook(lambda m, i, o: store.__setitem__("a", o))
    try:
        g = torch.autograd.grad(model(x)[:, 0].sum(), store["a"])[0]
    finally:
        hook.remove()
    assert g.shape[-2:] == (4, 4)
    assert (g.amax(dim=(-2, -1)) - g.amin(dim=(-2, -1))).abs().max() == 0  # exactly uniform in space

    paper = HDMCAM(model).explain(x, [0, 0])
    assert not paper.flat.any()
    assert (paper.cam.reshape(2, -1).std(axis=1) > 0.1).all()
    assert not flat_maps(torch.from_numpy(paper.layer_maps["layer4"])).any()

    collapsed = HDMCAM(model, ["layer4"], apply_to="subbands")
    r = collapsed.explain(x, [0, 0])
    assert r.flat.all() and not r.cam.any()
    assert not collapsed(x, [0, 0]).any()
    # with the weights on the channels, layer4 alone is a real (coarse) map
    assert not HDMCAM(model, ["layer4"]).explain(x, [0, 0]).flat.any()


def test_the_two_readings_agree_with_equal_bands_and_scales():
    """Equal band and scale weights: every subband of channel k holds its total weight T_k, so the subband reading
    rebuilds ``T_k A_k`` and the channel reading sums ``(3 J + 1) T_k A_k``: the same map when every layer has the
    same J (sum fusion), and always with a fusion that normalises each layer's map."""
    torch.manual_seed(0)
    model = torchvision.models.resnet18(num_classes=5).eval()
    x = torch.randn(1, 3, 128, 136)  # J = 2 at every layer
    maps = [HDMCAM(model, bands="equal", alpha="equal", apply_to=a)(x, [1]) for a in ("channels", "subbands")]
    np.testing.assert_allclose(maps[0], maps[1], atol=1e-5)
    small = torch.randn(1, 3, 64, 72)  # layer4 2x3: J = 1 there, 2 elsewhere
    maps = [HDMCAM(model, bands="equal", alpha="equal", layer_fusion="product", apply_to=a)(small, [1])
            for a in ("channels", "subbands")]
    np.testing.assert_allclose(maps[0], maps[1], atol=1e-5)
    weighted = [HDMCAM(model, apply_to=a)(x, [1]) for a in ("channels", "subbands")]
    assert np.abs(weighted[0] - weighted[1]).max() > 0.05  # the paper's band and scale weights tell them apart


def test_normalize_maps_never_stretches_rounding_noise():
    g = torch.Generator().manual_seed(0)
    pedestal = torch.full((2, 8, 8), 0.0456)
    noisy = pedestal + 1e-9 * torch.randn(2, 8, 8, generator=g)
    assert flat_maps(noisy).all()
    assert not normalize_maps(noisy).any()
    assert flat_maps(torch.zeros(1, 4, 4)).all() and flat_maps(torch.full((1, 4, 4), -3.0)).all()
    # just above the tolerance a map is real, and normalised as pytorch-grad-cam does
    real = pedestal.clone()
    real[:, 0, 0] += 2 * FLAT_RTOL * 0.0456
    assert not flat_maps(real).any()
    expected = (real - real.amin(dim=(1, 2), keepdim=True))
    expected = expected / (expected.amax(dim=(1, 2), keepdim=True) + 1e-7)
    np.testing.assert_allclose(normalize_maps(real).numpy(), expected.numpy(), atol=1e-6)
    mixed = torch.stack([noisy[0], real[0]])
    assert flat_maps(mixed).tolist() == [True, False]


@pytest.mark.parametrize("method", [GradCAM, GradCAMPlusPlus, LayerCAM, HDMCAM])
def test_every_cam_flags_a_map_without_evidence(method):
    """A class whose logit does not depend on the input (zero weights): every gradient is 0, so every map is 0
    and flagged flat; the other class is explained as usual."""
    model = PooledHead().eval()
    with torch.no_grad():
        model.fc.weight[1].zero_()
    x = torch.rand(2, 3, 4, 4, generator=torch.Generator().manual_seed(0))
    cam = method(model, ["feat"])
    r = cam.explain(x, [1, 0])
    assert r.flat.tolist() == [True, False]
    assert not r.cam[0].any() and r.cam[1].max() > 0.99


def test_flat_note_names_the_methods_without_evidence():
    from hdm.cam.explain import flat_note

    real = np.zeros((4, 4), np.float32)
    real[1, 2] = 1.0
    assert flat_note({"Grad-CAM": real, "HDM-CAM": real}) == ""
    note = flat_note({"Grad-CAM": real, "HDM-CAM": np.zeros((4, 4), np.float32)})
    assert note.startswith("HDM-CAM found no spatial evidence") and "it is shown empty" in note
    assert "they are shown empty" in flat_note({"A": np.zeros((2, 2)), "B": np.zeros((2, 2))})


def test_a_tiny_but_real_map_is_shown_whole_with_eps_zero():
    """A layer with tiny gradients gives a map of range ~1e-9: pytorch-grad-cam's eps (1e-7) dims it to ~1 %,
    ``eps=0`` (the per-layer display) normalises it like any other; neither stretches a flat map."""
    m = torch.zeros(1, 4, 4, dtype=torch.float64)
    m[0, 1, 2] = 1e-9
    assert normalize_maps(m).max() < 0.011
    assert normalize_maps(m, eps=0).max() == 1.0
    assert not normalize_maps(torch.full((1, 4, 4), 1e-9), eps=0).any()
