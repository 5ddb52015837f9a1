"""hdm: image restoration and explainability - HDM-CAM, high-frequency SR losses, face/general SR fusion.

>>> import hdm
>>> big = hdm.upscale("photo.png")  # doctest: +SKIP

``big`` is ``photo.png`` x4 (a PIL image), the fusion of the shipped general and face models. Front doors:
:func:`upscale` (:mod:`hdm.sr`), :class:`hdm.cam.HDMCAM`, ``from_pretrained`` on
:class:`hdm.sr.FaceFusionSR`, :class:`hdm.diffusion.DiffusionSR` and :class:`hdm.cam.classifiers.Classifier`.
"""
__version__ = "0.1.0"

from .errors import BadArgument, HDMError, ImageError, MissingFile, TrainingError, WeightsUnavailable  # noqa: E402
from .upscaling import upscale  # noqa: E402

__all__ = ["__version__", "upscale", "HDMError", "ImageError", "WeightsUnavailable", "BadArgument", "MissingFile", "TrainingError"]
