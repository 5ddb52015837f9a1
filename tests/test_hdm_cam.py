"""HDM-CAM's invariants and its API, and the error paths shared by every CAM method."""
from __future__ import annotations

import math

import numpy as np
import pytest
import pywt
import torch
import torch.nn.functional as F
import torchvision
from conftest import spearman

from hdm.cam import HDMCAM, ClassifierOutputTarget, GradCAM, GradCAMPlusPlus
from hdm.cam.hdm_cam import scale_weights

LAYERS = ["layer1", "layer2", "layer3", "layer4"]


@pytest.fixture(scope="module")
def resnet18():
    torch.manual_seed(2)
    return torchvision.models.resnet18(num_classes=10).eval()


def _channel_weighted_reference(model, x, category, layers, levels=2):
    """Independent eq. (11) channel weights with PyWavelets, then ReLU(sum_l up(sum_k w_k A_k))."""
    store = {}
    hooks = [model.get_submodule(n).register_forward_hook(lambda m, i, o, n=n: store.__setitem__(n, o)) for n in layers]
    try:
        S = model(x)[0, category]
        grads = torch.autograd.grad(S, [store[n] for n in layers])
    finally:
        for h in hooks:
            h.remove()
    total, weights = 0.0, {}
    for n, g in zip(layers, grads):
        g = g[0].double().numpy()
        w2 = (g**2).mean(axis=(1, 2))  # eq. (7)
        positive = []
        for k in range(g.shape[0]):
            J = min(levels, pywt.dwt_max_level(min(g.shape[1:]), 2))
            coeffs = pywt.wavedec2(g[k], "haar", mode="zero", level=J)
            flat = [coeffs[0]] + [b for level in coeffs[1:] for b in level]
            positive.append(sum((np.maximum(c, 0) * c**2).sum() for c in flat))
        weights[n] = w2 * np.array(positive)
        total += np.abs(weights[n]).sum() * (3 * J + 1)  # eq. (12): every subband holds that weight
    cam = 0
    for n in layers:
        a = store[n][0].detach().double()
        M = torch.einsum("k,khw->hw", torch.from_numpy(weights[n] / total), a)
        cam = cam + F.interpolate(M[None, None], size=x.shape[-2:], mode="bilinear", align_corners=False)[0, 0]
    cam = cam.clamp_min(0)
    cam = cam - cam.min()
    return (cam / (cam.max() + 1e-7)).numpy()


def test_equal_band_and_scale_weights_reduce_to_channel_weighted_cam(resnet50, photos):
    x = photos[:1]
    ours = HDMCAM(resnet50, LAYERS, bands="equal", alpha="equal")(x, [int(resnet50(x).argmax())])
    ref = _channel_weighted_reference(resnet50, x, int(resnet50(x).argmax()), LAYERS)
    np.testing.assert_allclose(ours[0], ref, atol=1e-4)


def test_band_weighting_changes_the_map(resnet50, photos):
    x = photos[:1]
    equal = HDMCAM(resnet50, LAYERS, bands="equal", alpha="equal")(x)
    weighted = HDMCAM(resnet50, LAYERS)(x)
    assert np.abs(equal - weighted).mean() > 1e-3


def test_not_gradcampp_in_disguise(resnet50, photos):
    ours = HDMCAM(resnet50, LAYERS)(photos)
    ref = GradCAMPlusPlus(resnet50, LAYERS)(photos)
    rhos = [spearman(ours[i], ref[i]) for i in range(len(photos))]
    assert max(rhos) < 0.95, rhos
    assert np.abs(ours - ref).mean() > 0.05


@pytest.mark.parametrize("method", [GradCAM, GradCAMPlusPlus, HDMCAM])
def test_batch_equals_one_by_one(resnet18, method):
    torch.manual_seed(0)
    x = torch.randn(3, 3, 64, 80)
    cam = method(resnet18, LAYERS)
    batch = cam(x, [1, 4, 7])
    single = np.concatenate([cam(x[i : i + 1], [t]) for i, t in enumerate([1, 4, 7])])
    np.testing.assert_allclose(batch, single, atol=2e-5)
    assert batch.dtype == np.float32 and batch.shape == (3, 64, 80)
    assert batch.min() >= 0 and batch.max() <= 1


def test_result_exposes_what_the_app_draws(resnet18):
    x = torch.randn(2, 3, 64, 64)
    r = HDMCAM(resnet18).explain(x)  # default layers: layer1..layer4
    assert list(r.layer_maps) == LAYERS
    assert r.cam.shape == (2, 64, 64) and len(r.categories) == 2
    for name, shape in zip(LAYERS, [(64, 16), (128, 8), (256, 4), (512, 2)]):
        K, h = shape
        J = r.levels[name]
        assert J == min(2, int(math.log2(h)))
        assert r.layer_maps[name].shape == (2, h, h)
        assert r.hessian_weights[name].shape == (2, K)
        assert set(r.derivative_maps[name]) == {2, 3, 4}
        assert r.derivative_maps[name][4].shape == (2, K, h, h)
        assert set(r.derivative_subbands[name]) == {2, 3, 4}
        assert len(r.derivative_subbands[name][3]) == J and len(r.derivative_subbands[name][3][0]) == 4
        # Level-1 LL of the 4th-order map is the Haar average of the map itself (scaled by 2).
        d4, ll = r.derivative_maps[name][4], r.derivative_subbands[name][4][0][0]
        np.testing.assert_allclose(ll[..., 0, 0], d4[..., :2, :2].sum(axis=(-2, -1)) / 2, rtol=1e-4)
        for key in ("W3", "W4", "beta"):
            w = r.band_weights[name][key]
            assert w.shape == (2, K, J, 4)
            live = w.sum(-1) > 0
            np.testing.assert_allclose(w.sum(-1)[live], 1.0, atol=1e-5)
        np.testing.assert_allclose(r.alpha[name], np.exp(-np.arange(1, J + 1)), rtol=1e-6)
        assert len(r.subband_weights[name]) == 3 * J + 1
    total = sum(np.abs(w).sum(axis=1) for sw in r.subband_weights.values() for w in sw.values())
    assert np.all(total > 0)


def test_channel_chunking_changes_nothing(resnet18, monkeypatch):
    import hdm.cam.hdm_cam as module

    x = torch.randn(2, 3, 64, 64)
    cam = HDMCAM(resnet18, hessian="eigen")
    whole = cam(x)
    monkeypatch.setattr(module, "_CHUNK_ELEMENTS", 1000)  # 512 elements per channel: chunks of 1 channel
    np.testing.assert_allclose(cam(x), whole, atol=1e-6)
    np.testing.assert_allclose(cam.explain(x).cam, whole, atol=1e-6)


def test_alpha_modes():
    torch.testing.assert_close(scale_weights(3, "exp"), torch.exp(-torch.arange(1.0, 4.0, dtype=torch.float64)))
    torch.testing.assert_close(scale_weights(3, "inverse"), 1 / torch.arange(1.0, 4.0, dtype=torch.float64))
    theta = torch.tensor([0.0, 2.0, -1.0])
    torch.testing.assert_close(scale_weights(2, "learned", theta), torch.sigmoid(theta[:2]).double())
    torch.testing.assert_close(scale_weights(2, [0.2, 0.8]), torch.tensor([0.2, 0.8], dtype=torch.float64))
    torch.testing.assert_close(scale_weights(0, "exp"), torch.ones(1, dtype=torch.float64))
    with pytest.raises(ValueError, match="needs theta"):
        scale_weights(2, "learned")
    with pytest.raises(ValueError, match="one of"):
        scale_weights(2, "fancy")


def test_alpha_modes_give_different_maps(resnet18):
    x = torch.randn(1, 3, 64, 64)
    maps = {mode: HDMCAM(resnet18, alpha=mode, theta=[3.0, -3.0])(x) for mode in ("exp", "inverse", "learned")}
    assert np.abs(maps["exp"] - maps["inverse"]).max() > 1e-3
    assert np.abs(maps["exp"] - maps["learned"]).max() > 1e-3


def test_eigen_and_diag_hessian_modes_run(resnet18):
    x = torch.randn(1, 3, 64, 64)
    a = HDMCAM(resnet18, hessian="eigen").explain(x)
    b = HDMCAM(resnet18, hessian="diag").explain(x)
    assert not np.allclose(a.hessian_weights["layer1"], b.hessian_weights["layer1"])


def test_other_torchvision_cnn_with_named_layers_warns_about_non_relu():
    torch.manual_seed(0)
    model = torchvision.models.mobilenet_v3_small(num_classes=5).eval()
    with pytest.warns(UserWarning, match="Hardswish"):
        cam = HDMCAM(model, ["features.3", "features.8"])
    out = cam(torch.randn(1, 3, 96, 96))
    assert out.shape == (1, 96, 96) and np.isfinite(out).all()
    with pytest.raises(ValueError, match="pass target_layers explicitly"):
        HDMCAM(model)


def test_odd_input_size_and_custom_score(resnet18):
    x = torch.randn(1, 3, 97, 113)
    out = HDMCAM(resnet18)(x, [ClassifierOutputTarget(2)])
    assert out.shape == (1, 97, 113)
    out2 = GradCAM(resnet18, "layer4")(x, [lambda logits: logits[2] - logits[3]])
    assert out2.shape == (1, 97, 113)


# -- errors and modes, for all methods --------------------------------------------------------------
@pytest.mark.parametrize("method", [GradCAM, GradCAMPlusPlus, HDMCAM])
def test_clear_errors(resnet18, method):
    x = torch.randn(2, 3, 32, 32)
    with pytest.raises(ValueError, match=r"unknown layer 'layer9'; valid layer names: .*layer4"):
        method(resnet18, ["layer9"])
    cam = method(resnet18, ["layer3", "layer4"])
    with pytest.raises(ValueError, match="got 1 targets for a batch of 2 images"):
        cam(x, [1])
    with pytest.raises(ValueError, match=r"class index 10 is out of range: the model has 10 classes"):
        cam(x, [1, 10])
    with pytest.raises(ValueError, match=r"must be 4-D \(B, C, H, W\).*unsqueeze"):
        cam(x[0])
    with pytest.raises(TypeError, match="floating-point"):
        cam(x.to(torch.uint8))
    with pytest.raises(TypeError, match="one entry per image"):
        cam(x, 3)


class _Twice(torch.nn.Module):
    """Uses one ReLU module twice and has a layer that never runs."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 4, 3)
        self.unused = torch.nn.Conv2d(4, 4, 1)
        self.act = torch.nn.ReLU()
        self.fc = torch.nn.Linear(4, 2)

    def forward(self, x):
        return self.fc(self.act(self.act(self.conv(x))).mean(dim=(2, 3)))


def test_layer_that_does_not_run_or_runs_twice():
    with pytest.raises(ValueError, match="'unused' did not run"):
        GradCAM(_Twice(), ["unused"])(torch.randn(1, 3, 8, 8))
    with pytest.raises(ValueError, match="'act' ran 2 times"):
        GradCAM(_Twice(), ["act"])(torch.randn(1, 3, 8, 8))


def test_training_mode_is_handled_and_restored(resnet18):
    x = torch.randn(2, 3, 32, 32)
    expected = HDMCAM(resnet18)(x)
    resnet18.train()
    resnet18.layer2.eval()  # a user's mixed modes survive too
    try:
        got = HDMCAM(resnet18)(x)
        assert resnet18.training and resnet18.layer1.training and not resnet18.layer2.training
        np.testing.assert_allclose(got, expected, atol=1e-6)
    finally:
        resnet18.eval()


def test_frozen_model_and_no_grad_context(resnet18):
    x = torch.randn(1, 3, 96, 96)
    expected = GradCAMPlusPlus(resnet18, "layer3")(x)
    for p in resnet18.parameters():
        p.requires_grad_(False)
    try:
        with torch.no_grad():
            out = GradCAMPlusPlus(resnet18, "layer3")(x)
        assert out.max() > 0
        np.testing.assert_allclose(out, expected, atol=1e-6)
    finally:
        for p in resnet18.parameters():
            p.requires_grad_(True)


def test_bad_options():
    model = torchvision.models.resnet18(num_classes=3)
    with pytest.raises(ValueError, match="alpha must be one of"):
        HDMCAM(model, alpha="fast")
    with pytest.raises(ValueError, match="needs theta"):
        HDMCAM(model, alpha="learned")
    with pytest.raises(ValueError, match="band_gain"):
        HDMCAM(model, band_gain=(1, 1))
    with pytest.raises(ValueError, match="layer_fusion"):
        HDMCAM(model, layer_fusion="max")
    with pytest.raises(TypeError, match="module or a layer name"):
        GradCAM(model, [3])
    with pytest.raises(ValueError, match="not a submodule"):
        GradCAM(model, [torch.nn.Conv2d(1, 1, 1)])


def test_modulated_bands_are_channel_weight_times_beta(small_cnn):
    torch.manual_seed(5)
    x = torch.randn(2, 3, 16, 16, dtype=torch.float64)
    layers = ["stem", "block"]
    eq = HDMCAM(small_cnn, layers, bands="equal", alpha="equal").explain(x, [0, 2])
    mod = HDMCAM(small_cnn, layers, bands="modulate", alpha="equal").explain(x, [0, 2])
    ratios = []
    for name in layers:
        beta = mod.band_weights[name]["beta"]  # (B, K, J, 4)
        for (j, band), m in mod.subband_weights[name].items():
            b = beta[:, :, max(j, 1) - 1, ["LL", "LH", "HL", "HH"].index(band)]
            e = eq.subband_weights[name][(j, band)]
            ok = e != 0
            ratios.append(np.where(ok, m / np.where(ok, e * 4 * b, 1), np.nan))
    ratios = np.concatenate([r.reshape(2, -1) for r in ratios], axis=1)
    # one constant per image (the two modes' eq. 12 totals differ): m = c * 4 beta * (equal-mode weight)
    np.testing.assert_allclose(ratios / np.nanmean(ratios, axis=1, keepdims=True), 1.0, rtol=1e-4)
    with pytest.raises(ValueError, match="modulate"):
        HDMCAM(small_cnn, layers, bands="nope")


def test_product_fusion_is_refinecams_product_of_normalised_layer_maps(resnet18):
    from pytorch_grad_cam.utils.image import scale_cam_image  # the reference: the grad-cam package

    from hdm.cam.hdm_cam import _fuse_layer_maps

    torch.manual_seed(0)
    maps = [torch.randn(2, s, s) for s in (16, 8, 4)]
    ours = _fuse_layer_maps(maps, (32, 32), "product").numpy()
    # RefineCAM: each single-layer CAM is ReLU -> scale_cam_image to the input (normalise, resize) -> the
    # single-layer mean (scale_cam_image again); the product over layers is normalised once more.
    per_layer = [scale_cam_image(scale_cam_image(np.maximum(m.numpy(), 0), (32, 32))) for m in maps]
    ref = scale_cam_image(np.prod(per_layer, axis=0))
    np.testing.assert_allclose(ours, ref, atol=2e-5)
    # a pixel cold in any layer is cold in the product; the result spans [0, 1]
    assert ours.min() == 0 and ours.max() == pytest.approx(1, abs=1e-6)
    # HDMCAM fuses its own layer maps that way
    x = torch.randn(1, 3, 64, 64)
    r = HDMCAM(resnet18, LAYERS, layer_fusion="product").explain(x, [1])
    per_layer = [scale_cam_image(scale_cam_image(m, (64, 64))) for m in r.layer_maps.values()]
    np.testing.assert_allclose(r.cam, scale_cam_image(np.prod(per_layer, axis=0)), atol=2e-5)


def _autograd_derivatives(model, x, layer, category, position, orders=4):
    """d^n p_c / dA_p^n, n = 1..orders, by torch.autograd through the model: the layer's output gets ``t`` added at
    ``position`` and p_c = softmax(logits)_c is differentiated in t at t = 0."""
    t = torch.zeros((), dtype=torch.float64, requires_grad=True)

    def hook(module, inputs, output):
        e = torch.zeros_like(output)
        e[position] = 1.0
        return output + t * e
    h = model.get_submodule(layer).register_forward_hook(hook)
    try:
        f = torch.softmax(model(x), dim=1)[0, category]
        out, d = [], f
        for _ in range(orders):
            (d,) = torch.autograd.grad(d, t, create_graph=True)
            out.append(float(d.detach()))
    finally:
        h.remove()
    return float(f.detach()), out


def test_softmax_target_derivatives_equal_torch_autograd(small_cnn):
    torch.manual_seed(7)
    x = torch.randn(1, 3, 16, 16, dtype=torch.float64)
    result = HDMCAM(small_cnn, ["block"], target="softmax", levels=1).explain(x, [2])
    maps = result.derivative_maps["block"]  # |d^n p/dA^n| / p_c, n = 2, 3, 4, each (1, K, h, w)
    K, h, w = maps[2].shape[1:]
    checked = 0
    for k in range(K):
        for i, j in ((0, 0), (1, 3), (h - 1, w - 2), (3, 2)):
            p, ref = _autograd_derivatives(small_cnn, x, "block", 2, (0, k, i, j))
            for n in (2, 3, 4):
                np.testing.assert_allclose(maps[n][0, k, i, j], abs(ref[n - 1]) / p, rtol=1e-4,
                                           atol=1e-9 * abs(ref[0]) / p)
            checked += abs(ref[1]) > 0
    assert checked >= 4  # real curvature: a probability is not piecewise linear in A


def test_softmax_score_derivatives_closed_form_on_a_linear_head():
    """Against autograd on p(t) = softmax(S + t u)_c directly, for random S, u and several classes."""
    from hdm.cam.hdm_cam import softmax_score_derivatives

    torch.manual_seed(0)
    S, u = torch.randn(3, 5, dtype=torch.float64), torch.randn(3, 5, 7, dtype=torch.float64)
    classes = torch.tensor([0, 4, 2])
    ours = softmax_score_derivatives(u, torch.softmax(S, 1), classes)
    for b in range(3):
        for pos in range(7):
            t = torch.zeros((), dtype=torch.float64, requires_grad=True)
            f = torch.softmax(S[b] + t * u[b, :, pos], 0)[classes[b]]
            d = f
            for n in (1, 2, 3, 4):
                (d,) = torch.autograd.grad(d, t, create_graph=True)
                assert float(ours[n][b, pos]) == pytest.approx(float((d / f).detach()), rel=1e-9, abs=1e-12)


def test_softmax_target_options_and_errors(small_cnn):
    x = torch.randn(2, 3, 16, 16, dtype=torch.float64)
    layers = ["stem", "block"]
    soft = HDMCAM(small_cnn, layers, target="softmax")(x, [0, 1])
    assert soft.shape == (2, 16, 16) and not np.allclose(soft, HDMCAM(small_cnn, layers)(x, [0, 1]), atol=1e-3)
    # channel chunking changes nothing for this target either
    import hdm.cam.hdm_cam as module
    old = module._CHUNK_ELEMENTS
    module._CHUNK_ELEMENTS = 1
    try:
        np.testing.assert_allclose(HDMCAM(small_cnn, layers, target="softmax")(x, [0, 1]), soft, atol=1e-6)
    finally:
        module._CHUNK_ELEMENTS = old
    with pytest.raises(ValueError, match="target must be"):
        HDMCAM(small_cnn, layers, target="logit")
    with pytest.raises(ValueError, match="eigen"):
        HDMCAM(small_cnn, layers, target="softmax", hessian="eigen")
    with pytest.raises(ValueError, match="class indices"):
        HDMCAM(small_cnn, layers, target="softmax")(x, [lambda out: out[0], 1])
