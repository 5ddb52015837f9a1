"""The one Haar DWT against PyWavelets, and its algebra (orthonormality, inverse, gradients)."""
from __future__ import annotations

import numpy as np
import pytest
import pywt
import torch
from skimage import data

from hdm.ops.wavelets import BANDS, haar_dwt2, haar_idwt2, haar_wavedec2, haar_waverec2, max_level

SIZES = [(32, 32), (31, 45), (17, 16), (64, 37)]


def _random(shape, dtype=torch.float64, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(shape, generator=g, dtype=dtype)


def _assert_matches_pywt(x: torch.Tensor, level: int, atol: float):
    pyr = haar_wavedec2(x, level)
    for idx in np.ndindex(*x.shape[:-2]):
        ref = pywt.wavedec2(x[idx].double().numpy(), "haar", mode="zero", level=level)
        ours = pyr.to_pywt()
        np.testing.assert_allclose(ours[0][idx].double().numpy(), ref[0], atol=atol, rtol=0)
        for got, want in zip(ours[1:], ref[1:]):
            for g_band, w_band in zip(got, want):
                np.testing.assert_allclose(g_band[idx].double().numpy(), w_band, atol=atol, rtol=0)


@pytest.mark.parametrize("level", [1, 2, 3, 4])
@pytest.mark.parametrize("size", SIZES)
def test_wavedec2_equals_pywavelets_on_random_batches(level, size):
    x = _random((2, 3) + size)
    _assert_matches_pywt(x, level, atol=1e-12)


@pytest.mark.parametrize("level", [1, 2, 3, 4])
def test_wavedec2_equals_pywavelets_on_real_images_float32(level):
    camera = torch.from_numpy(data.camera()[::3, ::3].astype(np.float32) / 255.0)  # 171 x 171, odd
    astronaut = torch.from_numpy(data.astronaut()[:201, :170].astype(np.float32) / 255.0).permute(2, 0, 1)
    _assert_matches_pywt(camera, level, atol=1e-5)
    _assert_matches_pywt(astronaut, level, atol=1e-5)


def test_band_convention_matches_pywt_names():
    x = torch.arange(16.0, dtype=torch.float64).reshape(4, 4) ** 1.5
    ll, lh, hl, hh = haar_dwt2(x)
    ca, (ch, cv, cd) = pywt.dwt2(x.numpy(), "haar", mode="zero")
    for ours, ref in zip((ll, lh, hl, hh), (ca, ch, cv, cd)):
        np.testing.assert_allclose(ours.numpy(), ref, atol=1e-12)
    assert BANDS == ("LL", "LH", "HL", "HH")
    # A horizontal edge (rows differ) lands in LH only; a vertical edge in HL only.
    horizontal = torch.zeros(4, 4, dtype=torch.float64)
    horizontal[1::2] = 1.0
    _, lh, hl, hh = haar_dwt2(horizontal)
    assert lh.abs().sum() > 0 and hl.abs().sum() == 0 and hh.abs().sum() == 0
    _, lh, hl, hh = haar_dwt2(horizontal.T)
    assert hl.abs().sum() > 0 and lh.abs().sum() == 0 and hh.abs().sum() == 0


@pytest.mark.parametrize("size", SIZES)
def test_idwt2_equals_pywavelets_waverec2(size):
    x = _random(size)
    for level in (1, 3):
        coeffs = pywt.wavedec2(x.numpy(), "haar", mode="zero", level=level)
        ref = pywt.waverec2(coeffs, "haar", mode="zero")[: size[0], : size[1]]
        got = haar_waverec2(haar_wavedec2(x, level))
        np.testing.assert_allclose(got.numpy(), ref, atol=1e-12)


@pytest.mark.parametrize("size", SIZES + [(5, 3), (1, 7)])
def test_perfect_reconstruction_and_energy(size):
    x = _random((3,) + size)
    for level in range(0, max_level(*size) + 1):
        pyr = haar_wavedec2(x, level)
        assert torch.allclose(haar_waverec2(pyr), x, atol=1e-12)
        energy = sum(band.pow(2).sum() for _, _, band in pyr.bands())
        assert torch.allclose(energy, x.pow(2).sum(), rtol=1e-12)


def test_single_level_inverse_with_and_without_size():
    x = _random((2, 6, 8))
    assert torch.allclose(haar_idwt2(*haar_dwt2(x)), x, atol=1e-12)
    y = _random((7, 9))
    assert torch.allclose(haar_idwt2(*haar_dwt2(y), size=(7, 9)), y, atol=1e-12)
    assert haar_idwt2(*haar_dwt2(y)).shape == (8, 10)


def test_gradcheck_float64():
    x = _random((1, 2, 7, 6)).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda t: haar_dwt2(t), (x,))
    bands = [b.detach().requires_grad_(True) for b in haar_dwt2(x.detach())]
    assert torch.autograd.gradcheck(lambda *b: haar_idwt2(*b, size=(7, 6)), tuple(bands))

    def roundtrip(t):
        pyr = haar_wavedec2(t, 2)
        return haar_waverec2(pyr.map_bands(lambda j, name, band: band * (j + 1)))

    assert torch.autograd.gradcheck(roundtrip, (x,))


def test_dtype_and_device_preserved():
    x = torch.rand(1, 1, 8, 8, dtype=torch.float32)
    assert all(b.dtype == torch.float32 and b.device == x.device for b in haar_dwt2(x))
    if torch.cuda.is_available():  # pragma: no cover - no GPU in CI
        xc = x.cuda()
        assert torch.allclose(haar_waverec2(haar_wavedec2(xc, 2)).cpu(), x, atol=1e-6)


def test_max_level_matches_pywt():
    for n in (1, 2, 3, 7, 8, 56, 224, 1000):
        assert max_level(n, n + 5) == pywt.dwt_max_level(n, 2)


def test_errors_are_clear():
    with pytest.raises(ValueError, match="level must be in"):
        haar_wavedec2(torch.zeros(7, 7), 3)
    with pytest.raises(ValueError, match="at least 2 dimensions"):
        haar_dwt2(torch.zeros(5))
    with pytest.raises(ValueError, match="share one shape"):
        haar_idwt2(torch.zeros(2, 2), torch.zeros(2, 2), torch.zeros(2, 3), torch.zeros(2, 2))
    with pytest.raises(ValueError, match="does not fit"):
        haar_idwt2(*haar_dwt2(torch.zeros(4, 4)), size=(9, 4))
