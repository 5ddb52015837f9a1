"""The multi-scale high-frequency error-map loss (spec part B): its map against PyWavelets, and the
properties that hold for any distance."""
from __future__ import annotations

import numpy as np
import pytest
import pywt
import torch
from skimage import data

from hdm.losses.hf_error import SCALE_WEIGHTS, SCALES, error_map, hf_error_map_loss


def l1(a, b):
    return (a - b).abs().mean()


@pytest.fixture(scope="module")
def hr():
    return torch.from_numpy(data.astronaut()[:96, 160:256].copy()).permute(2, 0, 1)[None].float() / 255


def test_error_map_against_pywavelets(hr):
    torch.manual_seed(0)
    sr = (hr + 0.05 * torch.randn_like(hr)).clamp(0, 1)
    m = error_map(sr, hr)
    expected = np.zeros((48, 48))
    for c in range(3):
        _, (h1, v1, d1) = pywt.dwt2(sr[0, c].double().numpy(), "haar")
        _, (h2, v2, d2) = pywt.dwt2(hr[0, c].double().numpy(), "haar")
        expected += np.abs(h1 - h2) + np.abs(v1 - v2) + np.abs(d1 - d2)
    expected = np.kron(expected / expected.max(), np.ones((2, 2)))  # each coefficient over its 2x2 block
    assert m.shape == (1, 1, 96, 96)
    np.testing.assert_allclose(m[0, 0].numpy(), expected, atol=1e-5)
    assert not m.requires_grad
    # only detail bands count: a change of the mean (LL only) leaves no error, and no loss
    assert error_map(hr + 0.1, hr).max() < 1e-4
    assert hf_error_map_loss(hr + 0.1, hr, l1).item() < 1e-5
    # small errors are not blown up to full weight
    assert error_map(hr + 1e-5 * torch.randn_like(hr), hr).max() < 0.1
    # odd sizes are cropped back
    assert error_map(sr[..., :95, :93], hr[..., :95, :93]).shape == (1, 1, 95, 93)


def test_loss_is_zero_for_equal_images_and_every_scale_counts(hr):
    assert hf_error_map_loss(hr, hr, l1).item() == 0
    torch.manual_seed(1)
    sr = (hr + 0.05 * torch.randn_like(hr)).clamp(0, 1).requires_grad_(True)
    total, terms = hf_error_map_loss(sr, hr, l1, return_terms=True)
    assert len(terms) == 4 and all(t.item() > 0 for t in terms)
    torch.testing.assert_close(total, sum(w * t for w, t in zip(SCALE_WEIGHTS, terms)))
    assert SCALES == (1.0, 0.5, 0.25, 0.125) and SCALE_WEIGHTS == (0.4, 0.3, 0.2, 0.1)
    total.backward()
    assert torch.isfinite(sr.grad).all() and sr.grad.abs().sum() > 0
    # dropping any one scale changes the loss: each contributes
    for i in range(4):
        w = list(SCALE_WEIGHTS)
        w[i] = 0.0
        assert hf_error_map_loss(sr, hr, l1, weights=w).item() < total.item()


def test_bad_inputs(hr):
    with pytest.raises(ValueError, match="differ"):
        hf_error_map_loss(hr, hr[..., :-2], l1)
    with pytest.raises(ValueError, match="too small"):
        hf_error_map_loss(hr[..., :8, :8], hr[..., :8, :8], l1)
    with pytest.raises(ValueError, match="weights"):
        hf_error_map_loss(hr, hr, l1, weights=(1.0,))


def test_blur_costs_more_than_noise_of_equal_mse_with_the_perceptual_stand_in():
    from hdm.cam.metrics import gaussian_blur2d
    from hdm.losses.haarpsi import haarpsi_distance

    torch.manual_seed(2)
    for crop in (data.astronaut()[:128, 128:256], data.coffee()[100:228, 200:328], data.chelsea()[:128, :128]):
        x = torch.from_numpy(crop.astype(np.float32) / 255).permute(2, 0, 1)[None]
        blur = gaussian_blur2d(x, 1.5)
        noisy = x + torch.randn_like(x) * ((blur - x) ** 2).mean().sqrt()
        total_b, terms_b = hf_error_map_loss(blur, x, haarpsi_distance, return_terms=True)
        assert total_b > hf_error_map_loss(noisy, x, haarpsi_distance)
        assert all(t > 0 for t in terms_b)
    # zero for SR == HR with this distance too (all-zero weighted images), also inside a batch
    assert hf_error_map_loss(x, x, haarpsi_distance).item() == pytest.approx(0, abs=1e-6)
    sr = torch.cat([x, noisy]).requires_grad_(True)
    loss = hf_error_map_loss(sr, torch.cat([x, x]), haarpsi_distance)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(sr.grad).all()
