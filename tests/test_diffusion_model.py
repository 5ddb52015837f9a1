"""The diffusion denoiser and samplers: shapes, value range, determinism, tiling, and a training step
that lowers the loss."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from hdm.diffusion.denoiser import Denoiser, from_space, to_space
from hdm.diffusion.sampler import DiffusionSR
from hdm.diffusion.schedule import ResShiftSchedule


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    m = Denoiser(width=16, blocks=1).eval()
    with torch.no_grad():  # a non-trivial network: the zero-initialised convs (block outputs, last conv) too
        for name, p in m.named_parameters():
            if p.dim() == 4 and p.abs().max() == 0:
                p.normal_(0, 0.05)
    return m


def test_space_to_depth_is_lossless_and_the_untrained_model_returns_y0():
    x = torch.rand(2, 3, 32, 48)
    z = to_space(x, 4)
    assert z.shape == (2, 48, 8, 12) and z.min() >= -1 and z.max() <= 1
    torch.testing.assert_close(from_space(z, 4), x)
    fresh = Denoiser(width=16, blocks=1)
    torch.testing.assert_close(fresh(z, z, torch.tensor([3, 0])), z)
    with pytest.raises(ValueError, match="even"):
        fresh(z[..., :7, :], z[..., :7, :], 0)


@pytest.mark.parametrize("one_step,deterministic", [(False, False), (False, True), (True, False)])
def test_samplers_shapes_range_determinism_and_tiling(model, one_step, deterministic):
    schedule = ResShiftSchedule.resshift(steps=4)
    lr = torch.rand(1, 3, 44, 52)
    sampler = DiffusionSR(model, schedule, one_step=one_step, deterministic=deterministic)
    sr, trajectory = sampler(lr, seed=3, return_trajectory=True)
    assert sr.shape == (1, 3, 176, 208) and sr.min() >= 0 and sr.max() <= 1
    assert len(trajectory) == sampler.evaluations == (1 if one_step else 4)
    torch.testing.assert_close(sampler(lr, seed=3), sr)  # deterministic for a seed
    assert not torch.equal(sampler(lr, seed=4), sr)  # and the seed matters
    assert model.receptive_radius == 13  # 14 once on the stride-2 grid: 4 x 4 tiles of 13 -> 14 px cover 44 x 52
    tiled = DiffusionSR(model, schedule, one_step=one_step, deterministic=deterministic, tile=13)(lr, seed=3)
    assert (tiled - sr).abs().max() < 1e-5  # tiles with the receptive radius as pad: the same result
    too_little = DiffusionSR(model, schedule, one_step=one_step, deterministic=deterministic, tile=13, tile_pad=2)
    assert (too_little(lr, seed=3) - sr).abs().max() > 1e-3  # (so the check above can fail)
    assert sampler(torch.rand(1, 3, 11, 13), seed=0).shape == (1, 3, 44, 52)  # odd sides


def test_one_training_step_lowers_the_loss_on_a_fixed_batch():
    torch.manual_seed(0)
    model = Denoiser(width=16, blocks=1)
    schedule = ResShiftSchedule.resshift(steps=4)
    hr = torch.rand(4, 3, 32, 32)
    y = F.interpolate(F.avg_pool2d(hr, 4), scale_factor=4, mode="bicubic", align_corners=False)
    z0, z_y = to_space(hr, 4), to_space(y, 4)
    t = torch.tensor([0, 1, 2, 3])
    noise = torch.randn_like(z0)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)

    def loss():
        return F.mse_loss(model(schedule.q_sample(z0, z_y, t, noise), z_y, t, schedule.input_scale(t, z0)), z0)

    before = loss()
    opt.zero_grad()
    before.backward()
    opt.step()
    assert loss().item() < before.item()
