"""ResShift's residual-shifting diffusion (Yue et al., NeurIPS 2023) and SinSR's deterministic step.

Notation: ``x0`` the HR image (or its latent), ``y0`` the upsampled LR image, ``e0 = y0 - x0`` the
residual. Timesteps are 0-indexed, ``t = 0 .. T-1`` (the paper's ``t = 1 .. T``); ``eta[t]`` grows
from about 0 to about 1, ``alpha[t] = eta[t] - eta[t-1]`` (``alpha[0] = eta[0]``).

- forward marginal (ResShift eq. 2): ``q(x_t | x0, y0) = N(x0 + eta_t e0, kappa^2 eta_t I)``
- transition (eq. 1): ``q(x_t | x_{t-1}, y0) = N(x_{t-1} + alpha_t e0, kappa^2 alpha_t I)``
- posterior (eq. 4): ``q(x_{t-1} | x_t, x0, y0) = N(eta_{t-1}/eta_t x_t + alpha_t/eta_t x0,
  kappa^2 eta_{t-1}/eta_t alpha_t I)``
- prior: ``x_{T-1} ~ N(y0, kappa^2 eta_{T-1} I)`` (``eta_{T-1}`` close to 1: the LR image plus noise)
- SinSR's deterministic step (DDIM-like, no fresh noise): with ``x0_hat`` the model's estimate,
  ``x_{t-1} = k_t x0_hat + m_t x_t + j_t y0``, ``m_t = sqrt(eta_{t-1}/eta_t)``,
  ``j_t = eta_{t-1} - sqrt(eta_{t-1} eta_t)``, ``k_t = 1 - eta_{t-1} - m_t + sqrt(eta_{t-1} eta_t)``;
  if ``x0_hat = x0`` it maps a sample of ``q(x_t | x0)`` to a sample of ``q(x_{t-1} | x0)`` (the noise
  is carried, scaled).

The schedule (ResShift's ``get_named_eta_schedule("exponential")``): ``sqrt(eta_t) = sqrt(eta_1) *
b^(beta_t)`` with ``beta_t = (t / (T-1))^p (T-1)`` and ``b = (sqrt(eta_T) / sqrt(eta_1))^(1 / (T-1))``,
``sqrt(eta_1) = min(min_noise / kappa, min_noise)``, ``sqrt(eta_T) = etas_end``. ResShift's SR
defaults: ``T = 15``, ``kappa = 2``, ``p = 0.3``, ``min_noise = 0.04``, ``etas_end = 0.99``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ..errors import BadArgument

__all__ = ["ResShiftSchedule", "resshift_etas"]


def resshift_etas(steps: int = 15, kappa: float = 2.0, power: float = 0.3, min_noise: float = 0.04,
                  etas_end: float = 0.99) -> torch.Tensor:
    """``eta[0..T-1]`` (float64) of ResShift's exponential schedule (see the module docstring)."""
    if steps < 2:
        raise BadArgument(f"a schedule needs at least 2 steps, got {steps}")
    if kappa <= 0 or not 0 < etas_end < 1:
        raise BadArgument(f"need kappa > 0 and 0 < etas_end < 1, got {kappa}, {etas_end}")
    start = min(min_noise / kappa, min_noise)
    increaser = math.exp(math.log(etas_end / start) / (steps - 1))
    beta = torch.linspace(0, 1, steps, dtype=torch.float64) ** power * (steps - 1)
    return (start * increaser ** beta) ** 2


@dataclass(frozen=True)
class ResShiftSchedule:
    """The process for a given ``eta`` ``(T,)`` and ``kappa``. Tensors ``x0``, ``y0`` ``(B, ...)``;
    ``t`` an int or ``(B,)`` long tensor of 0-indexed steps."""

    eta: torch.Tensor
    kappa: float

    @classmethod
    def resshift(cls, steps: int = 15, kappa: float = 2.0, power: float = 0.3, min_noise: float = 0.04,
                 etas_end: float = 0.99) -> "ResShiftSchedule":
        return cls(resshift_etas(steps, kappa, power, min_noise, etas_end), float(kappa))

    @property
    def steps(self) -> int:
        return len(self.eta)

    @property
    def alpha(self) -> torch.Tensor:
        return torch.cat([self.eta[:1], self.eta[1:] - self.eta[:-1]])

    def _at(self, values: torch.Tensor, t, like: torch.Tensor) -> torch.Tensor:
        t = torch.as_tensor(t, device=values.device).long().reshape(-1)
        if (t < 0).any() or (t >= self.steps).any():
            raise BadArgument(f"t must be in 0..{self.steps - 1}")
        v = values[t].to(like.device, like.dtype)
        return v.view(-1, *([1] * (like.ndim - 1)))

    def input_scale(self, t, like: torch.Tensor) -> torch.Tensor:
        """ResShift's input normalisation ``1 / sqrt(kappa^2 eta_t + 1)`` ``(B,)``: ``x_t`` times it has about
        unit variance at every ``t`` (data of unit scale plus noise of variance ``kappa^2 eta_t``)."""
        return (1 / (self.kappa ** 2 * self._at(self.eta, t, like) + 1).sqrt()).reshape(-1)

    def q_mean_std(self, x0, y0, t) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and standard deviation of ``q(x_t | x0, y0)``."""
        eta = self._at(self.eta, t, x0)
        return x0 + eta * (y0 - x0), self.kappa * eta.sqrt()

    def q_sample(self, x0, y0, t, noise=None) -> torch.Tensor:
        """A sample of ``q(x_t | x0, y0)`` (``noise`` standard normal, default drawn)."""
        mean, std = self.q_mean_std(x0, y0, t)
        return mean + std * (torch.randn_like(x0) if noise is None else noise)

    def prior_sample(self, y0, noise=None) -> torch.Tensor:
        """``x_{T-1}``: ``y0 + kappa sqrt(eta_{T-1}) noise``."""
        t = torch.full((y0.shape[0],), self.steps - 1, dtype=torch.long)
        return y0 + self._at(self.eta, t, y0).sqrt() * self.kappa * (torch.randn_like(y0) if noise is None else noise)

    def posterior_mean_std(self, x_t, x0, t) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and standard deviation of ``q(x_{t-1} | x_t, x0, y0)`` for ``t >= 1`` (eq. 4; ``y0`` enters through ``x_t``)."""
        eta_t, alpha_t = self._at(self.eta, t, x_t), self._at(self.alpha, t, x_t)
        eta_prev = eta_t - alpha_t
        mean = eta_prev / eta_t * x_t + alpha_t / eta_t * x0
        return mean, self.kappa * (eta_prev / eta_t * alpha_t).sqrt()

    def ddim_step(self, x_t, x0_hat, y0, t) -> torch.Tensor:
        """SinSR's deterministic ``x_{t-1}`` from ``x_t`` and the estimate ``x0_hat`` (``t >= 1``)."""
        eta_t = self._at(self.eta, t, x_t)
        eta_prev = eta_t - self._at(self.alpha, t, x_t)
        m = (eta_prev / eta_t).sqrt()
        j = eta_prev - (eta_prev * eta_t).sqrt()
        k = 1 - eta_prev - m + (eta_prev * eta_t).sqrt()
        return k * x0_hat + m * x_t + j * y0
