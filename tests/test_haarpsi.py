"""HaarPSI, the offline LPIPS stand-in: equal to the piq package's implementation, 1 for identical
images, and, like LPIPS, farther for blur than for noise of equal MSE."""
from __future__ import annotations

import numpy as np
import piq  # the reference implementation (requirements-dev.txt)
import pytest
import torch
from skimage import data

from hdm.cam.metrics import gaussian_blur2d
from hdm.losses.haarpsi import haarpsi, haarpsi_distance


def _img(a):
    a = a.astype(np.float32) / 255
    a = a if a.ndim == 3 else a[..., None]
    return torch.from_numpy(a.copy()).permute(2, 0, 1)[None]


@pytest.mark.parametrize("subsample", [True, False])
def test_equals_piq(subsample):
    torch.manual_seed(0)
    for x in (_img(data.astronaut()[:96, 100:197]), _img(data.camera()[:65, :80])):  # odd sizes, colour and grey
        y = (x + 0.08 * torch.randn_like(x)).clamp(0, 1)
        ours = haarpsi(x, y, subsample=subsample)
        ref = piq.haarpsi(x, y, data_range=1.0, subsample=subsample, reduction="none")
        torch.testing.assert_close(ours, ref, rtol=1e-5, atol=1e-6)
    assert haarpsi(x, x).item() == pytest.approx(1.0, abs=1e-5)
    zero = torch.zeros(1, 3, 32, 32)
    assert haarpsi(zero, zero).item() == pytest.approx(1.0, abs=1e-5)  # no structure at all: equal, not inf


def test_blur_is_farther_than_noise_of_equal_mse_and_differentiable():
    torch.manual_seed(1)
    for crop in (data.astronaut()[:128, 128:256], data.coffee()[100:228, 200:328], data.chelsea()[:128, :128]):
        x = _img(crop)
        blur = gaussian_blur2d(x, 1.5)
        noisy = x + torch.randn_like(x) * ((blur - x) ** 2).mean().sqrt()  # not clipped: equal MSE
        assert abs(((noisy - x) ** 2).mean() / ((blur - x) ** 2).mean() - 1) < 0.05
        assert haarpsi_distance(blur, x) > haarpsi_distance(noisy, x)
    sr = noisy.clone().requires_grad_(True)
    haarpsi_distance(sr, x).backward()
    assert torch.isfinite(sr.grad).all() and sr.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="at least"):
        haarpsi(x[..., :10, :10], x[..., :10, :10])
