"""Loading SR generators by name or file: the shipped models (:data:`SHIPPED` short names, or their
:data:`hdm.io.weights.REGISTRY` names), any RRDBNet checkpoint (hdm, Real-ESRGAN, ESRGAN) and exported
``.onnx`` generators (run by ONNX Runtime)."""
from __future__ import annotations

from pathlib import Path

import torch

from ..errors import MissingFile
from ..io.weights import resolve_weights
from .onnx_runtime import OnnxSR
from .rrdbnet import RRDBNet, load_rrdbnet

__all__ = ["SHIPPED", "load_generator"]

#: Short name -> the shipped model (a :data:`hdm.io.weights.REGISTRY` name) behind it.
SHIPPED = {"general": "sr_general_x4", "face": "sr_face_x4", "diffusion": "diffusion_student_hf_x4",
           "diffusion-teacher": "diffusion_teacher_hf_x4"}


def load_generator(weights: str | Path, device="cpu") -> RRDBNet:
    """A generator in eval mode on ``device``: ``"general"`` / ``"face"`` (:data:`SHIPPED`), a registry name
    (``"sr_general_x4"``), an RRDBNet checkpoint path, or an exported ``.onnx`` file (its ONNX Runtime
    session as an :class:`hdm.sr.model.SRModel`; needs the ``[export]`` extra).

    Raises :class:`~hdm.errors.WeightsUnavailable` (a shipped file that cannot be had), :class:`MissingFile`
    and :class:`~hdm.errors.BadArgument` (a file that is not a generator)."""
    try:
        path = resolve_weights(SHIPPED.get(str(weights), weights))
    except MissingFile as e:
        raise MissingFile(f"no generator weights at {weights}: give an RRDBNet checkpoint (hdm, Real-ESRGAN or "
                          "ESRGAN), an exported .onnx file, or general / face (sr_general_x4 / sr_face_x4), the "
                          "shipped ones") from e
    if path.suffix == ".onnx":
        return OnnxSR(path, tile=None).as_generator()
    return load_rrdbnet(path).to(torch.device(device)).eval()
