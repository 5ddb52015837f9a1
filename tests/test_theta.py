"""HDM-CAM's per-scale maps rebuild its CAM for any alpha, and theta fitting differentiates through them."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from hdm.cam import HDMCAM
from hdm.cam.hdm_cam import fuse_scale_maps
from hdm.cam.theta import fit_theta, kept_input_loss

LAYERS = ["stem", "block"]


@pytest.fixture
def batch():
    torch.manual_seed(3)
    return torch.randn(3, 3, 16, 16, dtype=torch.float64), [0, 1, 2]


@pytest.mark.parametrize("fusion", ["sum", "mean"])
@pytest.mark.parametrize("alpha", ["exp", "inverse", (0.9, 0.2)])
def test_scale_maps_rebuild_the_cam(small_cnn, batch, alpha, fusion):
    x, targets = batch
    res = HDMCAM(small_cnn, LAYERS, alpha=alpha, layer_fusion=fusion).explain(x, targets)
    comps = [torch.from_numpy(res.scale_maps[n]).double() for n in LAYERS]
    assert comps[0].shape == (3, 2, 16, 16) and comps[1].shape == (3, 2, 8, 8)
    alphas = [torch.from_numpy(res.alpha[n]).double() for n in LAYERS]
    cam = fuse_scale_maps(comps, alphas, (16, 16), fusion)
    np.testing.assert_allclose(cam.numpy(), res.cam, atol=1e-6)
    for n, C, a in zip(LAYERS, comps, alphas):  # M = sum_j alpha_j C_j, then ReLU
        np.testing.assert_allclose(torch.einsum("j,bjhw->bhw", a, C).clamp_min(0).numpy(), res.layer_maps[n], atol=1e-6)


def test_learned_alpha_is_sigmoid_theta(small_cnn, batch):
    x, targets = batch
    theta = [0.3, -1.2]
    learned = HDMCAM(small_cnn, LAYERS, alpha="learned", theta=theta)(x, targets)
    explicit = HDMCAM(small_cnn, LAYERS, alpha=list(torch.sigmoid(torch.tensor(theta)).tolist()))(x, targets)
    np.testing.assert_allclose(learned, explicit, atol=1e-7)


def test_objective_gradient_matches_finite_differences(small_cnn, batch):
    x, targets = batch
    res = HDMCAM(small_cnn, LAYERS, alpha="equal").explain(x, targets, keep_maps=False)
    comps = [torch.from_numpy(res.scale_maps[n]).double() for n in LAYERS]
    y = torch.tensor(targets)
    theta = torch.tensor([0.4, -0.7], dtype=torch.float64, requires_grad=True)
    f = lambda t: kept_input_loss(small_cnn, x, y, comps, torch.sigmoid(t), (16, 16))  # noqa: E731
    assert torch.autograd.gradcheck(f, (theta,), eps=1e-6, atol=1e-5)
    f(theta).backward()
    assert theta.grad.abs().sum() > 0  # alpha really moves the objective


def test_fit_theta_lowers_the_objective(small_cnn, batch):
    x, targets = batch
    batches = [(x, torch.tensor(targets)), (x.flip(-1), torch.tensor(targets))]
    fit = fit_theta(small_cnn, batches, target_layers=LAYERS, epochs=15, lr=0.2, progress=False)
    assert len(fit.theta) == 2 and np.allclose(fit.alpha, 1 / (1 + np.exp(-np.array(fit.theta))))
    assert set(fit.objective) == {"exp", "inverse", "equal", "learned"}
    # theta starts at 0, where alpha is equal across scales: the fit may only improve on that
    assert fit.objective["learned"] <= fit.objective["equal"] + 1e-9
    assert min(fit.history) < fit.history[0]
    assert all(p.requires_grad for p in small_cnn.parameters())  # the model is left as it was
    with pytest.raises(ValueError, match="at least one"):
        fit_theta(small_cnn, [], target_layers=LAYERS, progress=False)
