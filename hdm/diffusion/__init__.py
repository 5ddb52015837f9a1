"""Diffusion super-resolution in the ResShift / SinSR family (spec part B).

- :mod:`.schedule`: the residual-shifting forward process, its posterior and SinSR's deterministic
  step (pure tensor maths);
- :mod:`.denoiser`: the network that predicts the HR image from ``(x_t, y0, t)``, in a lossless
  space-to-depth pixel space;
- :mod:`.sampler`: the multi-step teacher and the one-step student, seeded and tiled.
"""
from .denoiser import Denoiser, from_space, to_space
from .sampler import DiffusionSR
from .schedule import ResShiftSchedule, resshift_etas

__all__ = ["Denoiser", "DiffusionSR", "ResShiftSchedule", "resshift_etas", "from_space", "to_space"]
