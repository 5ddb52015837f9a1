"""The face-identity loss of the face/general SR fusion paper: ``L_face = 1 - cos^n``.

The SR face and the HR face go through a face-recognition network; ``cos`` is the cosine similarity
of their embeddings and ``L_face = mean over faces of (1 - cos^n)`` with ``n = 6``, weighted by
``lambda_face = 10`` in the total loss (spec part C, eq. 4). Compared with ``1 - cos`` (``n = 1``),
the power makes the loss ``n`` times steeper at ``cos = 1`` (slope ``-n``) and flat far from it
(``cos^6 < 0.02`` once ``cos < 0.5``): it presses hardest on small identity drifts of a face that is
nearly right, and saturates near 1 for faces that are far apart. (For even ``n`` the loss is also 0 at
``cos = -1``; SR and HR embeddings of one face are far from opposite, and the face model starts from
the general one, so training never goes there.)

The paper's embedder is a SENet-50 trained on VGGFace2; hdm uses facenet-pytorch's
InceptionResnetV1 trained on VGGFace2 (512-d L2-normalised embeddings of 160x160 crops), loaded by
:func:`load_face_embedder`. Its weights come from the package's GitHub release, so offline they
cannot be had: the loader then raises :class:`~hdm.errors.WeightsUnavailable`, and
``weights="random"`` gives a seeded untrained network, an explicit stand-in that a model card must name.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..errors import BadArgument
from ..io.weights import cached_download, load_state_dict_file

__all__ = ["face_identity_loss", "FaceIdentityLoss", "load_face_embedder", "FACENET_URLS"]

FACENET_URLS = {
    "vggface2": "https://github.com/timesler/facenet-pytorch/releases/download/v2.2.9/20180402-114759-vggface2.pt",
    "casia-webface": "https://github.com/timesler/facenet-pytorch/releases/download/v2.2.9/20180408-102900-casia-webface.pt",
}


def face_identity_loss(e_sr: torch.Tensor, e_hr: torch.Tensor, n: int = 6) -> torch.Tensor:
    """``mean(1 - cos(e_sr, e_hr)^n)`` over the batch; embeddings ``(B, D)``."""
    cos = F.cosine_similarity(e_sr, e_hr, dim=1, eps=1e-8)
    return (1 - cos ** n).mean()


def load_face_embedder(weights: str = "vggface2", seed: int = 0) -> tuple[nn.Module, str]:
    """facenet-pytorch's InceptionResnetV1 (eval mode, frozen, embeddings only) and where its weights came from.

    ``weights``: ``"vggface2"`` or ``"casia-webface"`` (torch hub cache, else downloaded), ``"random"``
    (seeded stand-in), or a state-dict file."""
    from facenet_pytorch import InceptionResnetV1  # lazy: imported only when a face embedder is built

    with torch.random.fork_rng():  # a seeded initialisation that leaves the caller's random state alone
        torch.manual_seed(seed)
        model = InceptionResnetV1(pretrained=None, classify=False)
    if weights in FACENET_URLS:
        path = cached_download(FACENET_URLS[weights], f"the face-recognition weights ({weights}) for the identity loss",
                               "use weights='random' (a named stand-in), or train without the identity term")
        state, source = torch.load(path, map_location="cpu", weights_only=True), f"facenet-pytorch InceptionResnetV1 ({weights})"
    elif weights == "random":
        return _frozen(model), f"random stand-in (untrained InceptionResnetV1, seed {seed})"
    else:
        state, source = load_state_dict_file(weights), f"file: {weights}"
    state = {k: v for k, v in state.items() if not k.startswith("logits.")}  # the classifier head is not needed
    try:
        model.load_state_dict(state)
    except RuntimeError as e:
        raise BadArgument(f"the weights do not fit InceptionResnetV1: {e}") from e
    return _frozen(model), source


def _frozen(model: nn.Module) -> nn.Module:
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


class FaceIdentityLoss(nn.Module):
    """``L_face`` on face crops ``(B, 3, H, W)`` in [0, 1] (resized to ``size`` and standardised as
    facenet-pytorch expects: ``(255 x - 127.5) / 128``). Gradients flow to ``sr`` only."""

    def __init__(self, embedder: nn.Module, n: int = 6, size: int = 160, source: str = ""):
        super().__init__()
        self.embedder, self.n, self.size, self.source = embedder, int(n), int(size), source

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-2:] != (self.size, self.size):
            x = F.interpolate(x, size=(self.size, self.size), mode="bilinear", align_corners=False, antialias=True)
        return self.embedder((x * 255 - 127.5) / 128)

    def forward(self, sr: torch.Tensor, hr: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            e_hr = self.embed(hr)
        return face_identity_loss(self.embed(sr), e_hr, self.n)
