"""Sampling: the multi-step teacher (ResShift's ancestral sampler, or SinSR's deterministic one) and
the one-step student, on LR images, seeded, tile by tile for large images.

Every network evaluation goes through :func:`hdm.sr.tiling.tiled_forward` on the whole LR-sized
state; the updates between evaluations are pointwise. So tiling is exact whenever the tile pad covers
the denoiser's receptive radius (the default), for the teacher as for the student. Noise comes from
one ``torch.Generator`` seeded with ``seed`` and drawn for the whole image, step after step: a seed
gives the same result with or without tiles.
"""
from __future__ import annotations

import torch
import torch.nn as nn

from ..sr.degradations import bicubic_upsample
from ..sr.tiling import tiled_forward
from .denoiser import Denoiser, from_space, to_space
from .schedule import ResShiftSchedule

__all__ = ["DiffusionSR"]


class _Evaluation(nn.Module):
    """``Denoiser`` at one step as a one-input model ``cat(z_t, z_y) -> z0_hat``, for tiling."""

    def __init__(self, model: Denoiser, t: int):
        super().__init__()
        self.model, self.t, self.c = model, t, model.channels * model.scale ** 2
        self.input_multiple, self.receptive_radius = 2, model.receptive_radius

    def forward(self, zz: torch.Tensor) -> torch.Tensor:
        t = torch.full((zz.shape[0],), self.t, dtype=torch.long, device=zz.device)
        return self.model(zz[:, : self.c], zz[:, self.c:], t)


class DiffusionSR:
    """``DiffusionSR(model, schedule)(lr, seed=0) -> sr``: ``(B, 3, h, w)`` in [0, 1] -> ``(B, 3, s h, s w)``.

    Args:
        model: the denoiser.
        schedule: its ResShift schedule (``T`` steps).
        one_step: the SinSR student: a single evaluation at ``t = T - 1`` from the prior sample.
        deterministic: teacher only: SinSR's deterministic step instead of ResShift's ancestral one.
        tile, tile_pad: tiled evaluation in LR pixels (``None``: whole image; pad: receptive radius).
    """

    def __init__(self, model: Denoiser, schedule: ResShiftSchedule, one_step: bool = False, deterministic: bool = False,
                 tile: int | None = None, tile_pad: int | None = None):
        self.model, self.schedule = model, schedule
        self.one_step, self.deterministic, self.tile, self.tile_pad = one_step, deterministic, tile, tile_pad
        self.scale = model.scale

    @property
    def evaluations(self) -> int:
        """Network evaluations per image: 1 for the student, ``T`` for the teacher."""
        return 1 if self.one_step else self.schedule.steps

    def _eval(self, z: torch.Tensor, z_y: torch.Tensor, t: int) -> torch.Tensor:
        return tiled_forward(_Evaluation(self.model, t), torch.cat([z, z_y], dim=1), 1, self.tile, self.tile_pad)

    @torch.no_grad()
    def __call__(self, lr: torch.Tensor, seed: int = 0, return_trajectory: bool = False):
        """``return_trajectory``: also return the list of ``z0_hat`` of every evaluation (space of
        :func:`~hdm.diffusion.denoiser.to_space`)."""
        s = self.scale
        h, w = lr.shape[-2:]
        if h % 2 or w % 2:
            raise ValueError(f"LR sides must be even (the denoiser halves them once), got {h}x{w}")
        z_y = to_space(bicubic_upsample(lr, s), s)
        gen = torch.Generator(device="cpu").manual_seed(int(seed))

        def noise():
            return torch.randn(z_y.shape, generator=gen, dtype=z_y.dtype).to(z_y.device)

        z = self.schedule.prior_sample(z_y, noise())
        trajectory = []
        steps = [self.schedule.steps - 1] if self.one_step else range(self.schedule.steps - 1, -1, -1)
        for t in steps:
            z0 = self._eval(z, z_y, t)
            trajectory.append(z0)
            if t == 0 or self.one_step:
                break
            if self.deterministic:
                z = self.schedule.ddim_step(z, z0, z_y, t)
            else:
                mean, std = self.schedule.posterior_mean_std(z, z0, t)
                z = mean + std * noise()
        sr = from_space(z0, s).clamp(0, 1)
        return (sr, trajectory) if return_trajectory else sr
