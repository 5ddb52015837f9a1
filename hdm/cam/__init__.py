"""Class-activation maps: Grad-CAM, Grad-CAM++, LayerCAM and HDM-CAM behind one base class.

>>> from hdm.cam import HDMCAM
>>> cam = HDMCAM(model)                 # ResNet: layer1..layer4
>>> maps = cam(x)                       # (B, H, W) float32 in [0, 1], top class
>>> details = cam.explain(x, [281])     # per-layer maps, Hessian and band weights, subbands
>>> tuned = HDMCAM(model, **TUNED)      # the settings chosen on the CAM benchmark's validation split
"""
from .base import BaseCAM, CAMResult
from .grad_cam import GradCAM
from .grad_cam_plusplus import GradCAMPlusPlus
from .hdm_cam import HDMCAM, TUNED, HDMResult
from .layer_cam import LayerCAM
from .targets import ClassifierOutputTarget, SimilarityTarget

__all__ = ["BaseCAM", "CAMResult", "ClassifierOutputTarget", "SimilarityTarget", "GradCAM", "GradCAMPlusPlus", "HDMCAM", "HDMResult",
           "LayerCAM", "TUNED"]
