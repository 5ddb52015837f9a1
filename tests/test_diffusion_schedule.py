"""ResShift's schedule and forward process against their closed forms (checked by sampling), and
SinSR's deterministic step."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from hdm.diffusion.schedule import ResShiftSchedule, resshift_etas

N = 100_000  # samples per check: standard errors ~0.3 % of the std


def resshift_reference(T, min_noise_level, etas_end, kappa, power):
    """ResShift's get_named_eta_schedule('exponential'), transcribed from its repository (numpy)."""
    etas_start = min(min_noise_level / kappa, min_noise_level)
    increaser = math.exp(1 / (T - 1) * math.log(etas_end / etas_start))
    base = np.ones([T]) * increaser
    power_timestep = np.linspace(0, 1, T, endpoint=True) ** power
    power_timestep *= (T - 1)
    sqrt_etas = np.power(base, power_timestep) * etas_start
    return sqrt_etas ** 2


@pytest.mark.parametrize("T,kappa,power", [(15, 2.0, 0.3), (4, 1.0, 1.0), (50, 0.5, 0.3)])
def test_schedule_is_resshifts(T, kappa, power):
    etas = resshift_etas(T, kappa, power, 0.04, 0.99)
    np.testing.assert_allclose(etas.numpy(), resshift_reference(T, 0.04, 0.99, kappa, power), rtol=1e-12)
    assert torch.all(etas[1:] > etas[:-1]) and etas[-1] == pytest.approx(0.99 ** 2)
    s = ResShiftSchedule.resshift(T, kappa, power)
    torch.testing.assert_close(s.alpha.cumsum(0), s.eta)


def _moments(x):
    return x.mean().item(), x.std().item()


def test_forward_marginal_and_transition_match_the_closed_form():
    torch.manual_seed(0)
    s = ResShiftSchedule.resshift()
    x0, y0 = torch.full((N,), 0.3, dtype=torch.float64), torch.full((N,), 0.8, dtype=torch.float64)
    for t in range(s.steps):  # every t
        mean, std = s.q_mean_std(x0[:1], y0[:1], t)
        m, sd = _moments(s.q_sample(x0, y0, t))
        eta = s.eta[t].item()
        assert mean.item() == pytest.approx(0.3 + eta * 0.5) and std.item() == pytest.approx(2 * math.sqrt(eta))
        assert abs(m - mean.item()) < 5 * std.item() / math.sqrt(N) and sd == pytest.approx(std.item(), rel=0.01)
    # one transition from t-1 to t lands on the marginal at t
    for t in range(1, s.steps):
        prev = s.q_sample(x0, y0, t - 1)
        a = s.alpha[t].item()
        nxt = prev + a * (y0 - x0) + 2 * math.sqrt(a) * torch.randn_like(prev)
        mean, std = s.q_mean_std(x0[:1], y0[:1], t)
        m, sd = _moments(nxt)
        assert abs(m - mean.item()) < 5 * std.item() / math.sqrt(N) and sd == pytest.approx(std.item(), rel=0.01)


def test_posterior_and_deterministic_step_keep_the_marginals():
    torch.manual_seed(1)
    s = ResShiftSchedule.resshift()
    x0, y0 = torch.full((N,), -0.2, dtype=torch.float64), torch.full((N,), 0.6, dtype=torch.float64)
    for t in range(1, s.steps):
        x_t = s.q_sample(x0, y0, t)
        mean, std = s.q_mean_std(x0[:1], y0[:1], t - 1)
        pm, ps = s.posterior_mean_std(x_t, x0, t)
        sampled = pm + ps * torch.randn_like(x_t)
        m, sd = _moments(sampled)
        assert abs(m - mean.item()) < 5 * std.item() / math.sqrt(N) and sd == pytest.approx(std.item(), rel=0.01)
        stepped = s.ddim_step(x_t, x0, y0, t)
        m, sd = _moments(stepped)
        assert abs(m - mean.item()) < 5 * std.item() / math.sqrt(N) and sd == pytest.approx(std.item(), rel=0.01)
        torch.testing.assert_close(s.ddim_step(x_t, x0, y0, t), stepped)  # deterministic
    # the prior is the marginal at the last step
    prior = s.prior_sample(y0.view(-1, 1))
    mean, std = s.q_mean_std(x0[:1], y0[:1], s.steps - 1)
    m, sd = _moments(prior)
    assert abs(m - 0.6) < 0.01 and sd == pytest.approx(std.item(), rel=0.01)


def test_bad_steps_raise():
    s = ResShiftSchedule.resshift(4)
    with pytest.raises(ValueError, match="t must be"):
        s.q_sample(torch.zeros(2), torch.zeros(2), 4)
    with pytest.raises(ValueError, match="at least 2"):
        resshift_etas(1)
