"""Upscaling images: the one pipeline behind ``hdm.upscale``, ``hdm upscale`` and the app.

>>> import hdm
>>> big = hdm.upscale("photo.png", "fusion")  # doctest: +SKIP

:mod:`.pipeline` (:func:`upscale`, :class:`Upscaler` over every mode: general, face, fusion and the diffusion
models), :mod:`.folder` (folders to folders, under ``torchrun`` too).
"""
from .pipeline import MODES, Upscaler, UpscaleResult, upscale

__all__ = ["MODES", "Upscaler", "UpscaleResult", "upscale"]
