"""Diffusion super-resolution in the ResShift / SinSR family (spec part B).

:mod:`.schedule` holds the residual-shifting forward process, its posterior and the deterministic
(SinSR) sampling step: pure tensor maths, independent of any network.
"""
from .schedule import ResShiftSchedule

__all__ = ["ResShiftSchedule"]
