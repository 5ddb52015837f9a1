"""Face descriptors as dlib's ``face_recognition_model_v1`` computes them, in torch.

>>> from hdm.faces import FaceEmbedder, face_distance, SAME_PERSON_DISTANCE
>>> embedder = FaceEmbedder.from_pretrained()
>>> chips, boxes = embedder.chips(rgb)          # (N, 150, 150, 3) uint8 aligned chips, (N, 5) MTCNN boxes
>>> descriptors = embedder(chips)                # (N, 128) float32
>>> same = face_distance(descriptors[0], descriptors[1]) < SAME_PERSON_DISTANCE

A descriptor is dlib's: no normalisation (their lengths are close to 1, not equal), compared by Euclidean
distance; dlib calls two faces one person below 0.6. Tensors go through the network differentiably
(:meth:`FaceEmbedder.forward`), for losses and CAMs.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn

from ..errors import BadArgument
from ..io.registry import DEFAULTS
from ..io.weights import load_state_dict_file, resolve_weights, safetensors_metadata
from .chips import CHIP_SIZE, MTCNN_TEMPLATE, ChipDetails, chip_details, extract_chip
from .detect import FaceDetector
from .dlib_format import ARCH, read_dlib_model
from .dlib_resnet import DlibFaceResNet

__all__ = ["FaceEmbedder", "face_distance", "load_face_network", "SAME_PERSON_DISTANCE", "WEIGHTS"]

#: dlib's threshold: two descriptors closer than this are the same person (the ``dist_thresh`` stored in the
#: model file's ``loss_metric`` layer; dlib reports 99.38 % accuracy on LFW with it).
SAME_PERSON_DISTANCE = 0.6
#: The shipped weights' registry name (the ``face_embedder`` role of :data:`hdm.io.registry.DEFAULTS`).
WEIGHTS = DEFAULTS["face_embedder"]


def face_distance(a, b):
    """Euclidean distance between descriptors over the last axis, broadcast (``(128,)``, ``(N, 128)``, ...):
    numpy in, numpy out; tensors in, a differentiable tensor out. Below :data:`SAME_PERSON_DISTANCE`: one person."""
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        return torch.linalg.vector_norm(torch.as_tensor(a) - torch.as_tensor(b), dim=-1)
    return np.linalg.norm(np.asarray(a, np.float64) - np.asarray(b, np.float64), axis=-1)


def load_face_network(weights: str = WEIGHTS) -> DlibFaceResNet:
    """The face network (eval mode, parameters frozen) from a registry name, a converted ``.safetensors``
    file or dlib's own ``.dat`` file."""
    path = resolve_weights(weights)
    if path.suffix == ".dat":
        state = read_dlib_model(path)
    else:
        arch = safetensors_metadata(path).get("arch") if path.suffix == ".safetensors" else None
        if arch != ARCH:
            raise BadArgument(f"{path} is not a converted dlib face network (arch {arch!r}, not {ARCH!r}); "
                              "convert dlib's file with `hdm convert-dlib-face`")
        state = load_state_dict_file(path)
    network = DlibFaceResNet()
    network.load_state_dict(state)
    network.eval()
    for p in network.parameters():
        p.requires_grad_(False)
    return network


class FaceEmbedder(nn.Module):
    """Aligned chips and 128-d descriptors: MTCNN (:class:`~hdm.faces.detect.FaceDetector`) finds faces and
    their 5 landmarks, :mod:`hdm.faces.chips` aligns them in dlib's geometry, :class:`DlibFaceResNet` describes.

    Args:
        network: the face network (see :func:`load_face_network`).
        detector: a :class:`FaceDetector` (made on first use of :meth:`chips` when not given).
    """

    def __init__(self, network: DlibFaceResNet, detector: FaceDetector | None = None):
        super().__init__()
        self.network = network
        self._detector = detector

    @classmethod
    def from_pretrained(cls, weights: str = WEIGHTS, device="cpu", detector: FaceDetector | None = None):
        """The shipped network (``weights``: a registry name, or a ``.safetensors`` / ``.dat`` file) on ``device``."""
        return cls(load_face_network(weights), detector).to(device)

    @property
    def device(self) -> torch.device:
        return self.network.input_mean.device

    @property
    def detector(self) -> FaceDetector:
        if self._detector is None:
            self._detector = FaceDetector(device=self.device)
        return self._detector

    def details(self, image: np.ndarray) -> tuple[list[ChipDetails], np.ndarray]:
        """``(chip details, boxes (N, 5))`` of every face MTCNN finds in an ``(H, W, 3)`` uint8 RGB image, most
        confident first (boxes: ``x0, y0, x1, y1, probability``). The details also drive
        :func:`~hdm.faces.chips.warp_chips`, the differentiable way to cut the same chips from a tensor."""
        boxes, landmarks = self.detector.detect(image)
        return [chip_details(points, MTCNN_TEMPLATE) for points in landmarks], boxes

    def chips(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(chips (N, 150, 150, 3) uint8, boxes (N, 5))`` for an ``(H, W, 3)`` uint8 RGB image."""
        details, boxes = self.details(image)
        chips = [extract_chip(image, d) for d in details]
        return (np.stack(chips) if chips else np.zeros((0, CHIP_SIZE, CHIP_SIZE, 3), np.uint8)), boxes

    def forward(self, chips):
        """Descriptors ``(N, 128)`` float32.

        ``chips``: uint8 numpy ``(N, 150, 150, 3)`` or ``(150, 150, 3)`` (as :meth:`chips` gives them; numpy
        out, no gradient), or a float tensor ``(N, 3, H, W)`` RGB in [0, 1] (tensor out, differentiable with
        respect to ``chips``; ``H = W = 150`` for real descriptors)."""
        if isinstance(chips, torch.Tensor):
            if not chips.is_floating_point():
                raise BadArgument(f"a float tensor in [0, 1] expected, got {chips.dtype} (give uint8 chips as numpy)")
            return self.network(chips.to(self.device, self.network.fc.weight.dtype) * 255)
        chips = np.asarray(chips)
        if chips.ndim == 3:
            chips = chips[None]
        if chips.ndim != 4 or chips.shape[-1] != 3 or chips.dtype != np.uint8:
            raise BadArgument(f"chips must be (N, {CHIP_SIZE}, {CHIP_SIZE}, 3) uint8, got {chips.shape} {chips.dtype}")
        if len(chips) == 0:
            return np.zeros((0, self.network.fc.out_features), np.float32)
        x = torch.from_numpy(np.ascontiguousarray(chips)).to(self.device).permute(0, 3, 1, 2).float()
        with torch.no_grad():
            return self.network(x).cpu().numpy()
