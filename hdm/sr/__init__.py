"""Super-resolution models: ESRGAN-type generators, the face specialist and their fusion.

Modules: :mod:`.model` (:class:`SRModel`: what an SR model says about itself), :mod:`.archs` (the networks),
:mod:`.convert` (foreign checkpoint layouts -> the networks), :mod:`.loading` (generators by registry name or
file), :mod:`.face_mask` (eq. 2's padded Gaussian face mask and the blend of eqs. 1 and 3), :mod:`.fusion`
(:class:`FaceFusionSR`), :mod:`.onnx_runtime` (exported generators). Upscaling an image with any of them:
:mod:`hdm.upscaling`.
"""
from .archs.rrdbnet import RRDBNet
from .convert import load_rrdbnet
from .fusion import FaceFusionSR, FusionResult
from .loading import load_generator
from .model import SRModel

__all__ = ["SRModel", "RRDBNet", "load_rrdbnet", "load_generator", "FaceFusionSR", "FusionResult"]
