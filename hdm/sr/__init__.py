"""Super-resolution: ESRGAN-type generators, a face-specialist model and their fusion.

>>> import hdm
>>> big = hdm.upscale("photo.png", "fusion")  # doctest: +SKIP

Modules: :mod:`.model` (:class:`SRModel`: what an SR model says about itself), :mod:`.rrdbnet` (the
generator and checkpoint loading), :mod:`.loading` (generators by name or file), :mod:`.discriminator`,
(MTCNN: :mod:`hdm.faces.detect`), :mod:`.face_mask` (eq. 2's padded Gaussian face mask and the blend of eqs. 1 and 3),
:mod:`.fusion` (:class:`FaceFusionSR`), :mod:`.pipeline` (:func:`upscale`, :class:`Upscaler`),
:mod:`.folder` (folders, under ``torchrun`` too), :mod:`.onnx_runtime` (exported generators).
"""
from .fusion import FaceFusionSR, FusionResult
from .loading import SHIPPED, load_generator
from .model import SRModel
from .pipeline import MODES, Upscaler, UpscaleResult, upscale
from .rrdbnet import RRDBNet, load_rrdbnet

__all__ = ["SRModel", "RRDBNet", "load_rrdbnet", "SHIPPED", "load_generator", "FaceFusionSR", "FusionResult",
           "MODES", "Upscaler", "UpscaleResult", "upscale"]
