"""The face-identity loss of the face/general SR fusion paper: ``L_face = 1 - cos^n``.

The SR face and the HR face go through a face-recognition network; ``cos`` is the cosine similarity
of their descriptors and ``L_face = mean over faces of (1 - cos^n)`` with ``n = 6``, weighted by
``lambda_face = 10`` in the total loss (eq. 4). Compared with ``1 - cos`` (``n = 1``), the power makes
the loss ``n`` times steeper at ``cos = 1`` (slope ``-n``) and flat far from it (``cos^6 < 0.02`` once
``cos < 0.5``): it presses hardest on small identity drifts of a face that is nearly right, and saturates
near 1 for faces that are far apart. (For even ``n`` the loss is also 0 at ``cos = -1``; SR and HR
descriptors of one face are far from opposite, and the face model starts from the general one, so
training never goes there.)

The paper's network is a SENet-50 trained on VGGFace2 (2048-d features of 224-px crops). hdm's default,
``"dlib"``, is dlib's face-recognition ResNet (:mod:`hdm.faces`, shipped): 128-d descriptors of 150-px
chips, trained by dlib on about 3 million faces (99.38 % on LFW by dlib's measure). Training crops are
not aligned chips: the loss describes the whole crop resized to 150 px (square crops around MTCNN's box
with a 30 % margin frame the face about as dlib's chip does, without its rotation to level eyes), which
compares SR and HR of one crop alike. ``"vggface2"`` / ``"casia-webface"`` load facenet-pytorch's
InceptionResnetV1 (512-d, 160-px crops; downloaded, so not offline), and ``"random"`` an untrained
InceptionResnetV1: a named stand-in, for tests and ablations only.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..errors import BadArgument
from ..faces.dlib_resnet import CHIP_SIZE
from ..faces.embedder import WEIGHTS as DLIB_WEIGHTS
from ..faces.embedder import load_face_network
from ..io.weights import cached_download, load_state_dict_file

__all__ = ["face_identity_loss", "FaceIdentityLoss", "FaceDescriber", "load_face_embedder", "FACENET_URLS",
           "EMBEDDERS"]

FACENET_URLS = {
    "vggface2": "https://github.com/timesler/facenet-pytorch/releases/download/v2.2.9/20180402-114759-vggface2.pt",
    "casia-webface": "https://github.com/timesler/facenet-pytorch/releases/download/v2.2.9/20180408-102900-casia-webface.pt",
}
#: The names :func:`load_face_embedder` takes (besides a weights file).
EMBEDDERS = ("dlib", *FACENET_URLS, "random")


def face_identity_loss(e_sr: torch.Tensor, e_hr: torch.Tensor, n: int = 6) -> torch.Tensor:
    """``mean(1 - cos(e_sr, e_hr)^n)`` over the batch; descriptors ``(B, D)``."""
    cos = F.cosine_similarity(e_sr, e_hr, dim=1, eps=1e-8)
    return (1 - cos ** n).mean()


class FaceDescriber(nn.Module):
    """A frozen face network behind its own input convention: face crops ``(B, 3, H, W)`` RGB in [0, 1] are
    resized (bilinear, antialiased) to ``size`` and mapped to ``x * scale + offset`` before ``network``."""

    def __init__(self, network: nn.Module, size: int, scale: float, offset: float):
        super().__init__()
        self.network, self.size, self.scale, self.offset = _frozen(network), int(size), float(scale), float(offset)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-2:] != (self.size, self.size):
            x = F.interpolate(x, size=(self.size, self.size), mode="bilinear", align_corners=False, antialias=True)
        return self.network(x * self.scale + self.offset)


def load_face_embedder(weights: str = "dlib", seed: int = 0) -> tuple[FaceDescriber, str]:
    """A :class:`FaceDescriber` and where its weights came from.

    ``weights``: ``"dlib"`` (the shipped dlib ResNet, 150 px, input in [0, 255]); ``"vggface2"`` or
    ``"casia-webface"`` (facenet-pytorch's InceptionResnetV1, 160 px, ``(255 x - 127.5) / 128``; torch hub
    cache, else downloaded); ``"random"`` (a seeded untrained InceptionResnetV1, a stand-in); or an
    InceptionResnetV1 state-dict file."""
    if weights == "dlib":
        return (FaceDescriber(load_face_network(DLIB_WEIGHTS), CHIP_SIZE, 255.0, 0.0),
                f"dlib face-recognition ResNet ({DLIB_WEIGHTS}, 128-d descriptors of 150-px crops)")
    from facenet_pytorch import InceptionResnetV1  # lazy: the alternative embedders only

    with torch.random.fork_rng():  # a seeded initialisation that leaves the caller's random state alone
        torch.manual_seed(seed)
        model = InceptionResnetV1(pretrained=None, classify=False)
    facenet = {"size": 160, "scale": 255 / 128, "offset": -127.5 / 128}
    if weights in FACENET_URLS:
        path = cached_download(FACENET_URLS[weights], f"the face-recognition weights ({weights}) for the identity loss",
                               "use the shipped weights='dlib', or train without the identity term")
        state, source = torch.load(path, map_location="cpu", weights_only=True), f"facenet-pytorch InceptionResnetV1 ({weights})"
    elif weights == "random":
        return FaceDescriber(model, **facenet), f"random stand-in (untrained InceptionResnetV1, seed {seed})"
    else:
        state, source = load_state_dict_file(weights), f"file: {weights}"
    state = {k: v for k, v in state.items() if not k.startswith("logits.")}  # the classifier head is not needed
    try:
        model.load_state_dict(state)
    except RuntimeError as e:
        raise BadArgument(f"the weights do not fit InceptionResnetV1 (give one of {', '.join(EMBEDDERS)} or an "
                          f"InceptionResnetV1 state dict): {e}") from e
    return FaceDescriber(model, **facenet), source


def _frozen(model: nn.Module) -> nn.Module:
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


class FaceIdentityLoss(nn.Module):
    """``L_face`` on face crops ``(B, 3, H, W)`` in [0, 1], described by ``describer`` (a
    :class:`FaceDescriber`) in float32 even under autocast (``cos`` near 1 is what the loss resolves, finer
    than bfloat16's 3 digits). Gradients flow to ``sr`` only."""

    def __init__(self, describer: FaceDescriber, n: int = 6, source: str = ""):
        super().__init__()
        self.describer, self.n, self.source = describer, int(n), source

    def forward(self, sr: torch.Tensor, hr: torch.Tensor) -> torch.Tensor:
        with torch.autocast(sr.device.type, enabled=False):
            with torch.no_grad():
                e_hr = self.describer(hr.float())
            return face_identity_loss(self.describer(sr.float()), e_hr, self.n)
