"""Training losses, shared by the GAN SR training (spec part C) and the diffusion SR training (part B).

- :mod:`.perceptual`: ESRGAN's perceptual loss on pre-activation VGG19 features;
- :mod:`.gan`: the relativistic average GAN losses (ESRGAN eqs. 1-2);
- :mod:`.identity`: the face-identity loss ``1 - cos^n`` of the face/general fusion paper;
- :mod:`.hf_error`: the multi-scale high-frequency error-map loss of the diffusion SR paper.

The L1 pixel loss is ``torch.nn.functional.l1_loss``.
"""
from .gan import ragan_discriminator_loss, ragan_generator_loss
from .hf_error import error_map, hf_error_map_loss
from .identity import FaceIdentityLoss, face_identity_loss, load_face_embedder
from .perceptual import VGG19_LAYERS, PerceptualLoss, VGGFeatures, load_vgg19

__all__ = ["error_map", "hf_error_map_loss", "ragan_discriminator_loss", "ragan_generator_loss", "FaceIdentityLoss", "face_identity_loss",
           "load_face_embedder", "VGG19_LAYERS", "PerceptualLoss", "VGGFeatures", "load_vgg19"]
