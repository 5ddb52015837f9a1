"""Loading SR generators by name or file: a registry model (:data:`hdm.io.registry.MODELS`, or a role of
:data:`hdm.io.registry.DEFAULTS` such as ``"general"``), any RRDBNet checkpoint (hdm, Real-ESRGAN, ESRGAN) and
exported ``.onnx`` generators (run by ONNX Runtime)."""
from __future__ import annotations

from pathlib import Path

import torch

from ..errors import BadArgument, MissingFile
from ..io.registry import DEFAULTS, MODELS, names
from ..io.weights import resolve_weights
from .archs.rrdbnet import RRDBNet
from .convert import load_rrdbnet
from .onnx_runtime import OnnxSR

__all__ = ["load_generator"]

_GENERATOR_KINDS = ("sr_general", "sr_face")


def load_generator(weights: str | Path, device="cpu") -> RRDBNet:
    """A generator in eval mode on ``device``: a role (``"general"`` / ``"face"``), a registry name
    (``"sr_general_x4"``, ``"realesrgan_x4plus"``), an RRDBNet checkpoint path, or an exported ``.onnx`` file
    (its ONNX Runtime session as an :class:`hdm.sr.model.SRModel`; needs the ``[export]`` extra).

    Raises :class:`~hdm.errors.WeightsUnavailable` (a registry file that cannot be had), :class:`MissingFile`
    and :class:`~hdm.errors.BadArgument` (a file that is not a generator, a registry model of another kind)."""
    name = DEFAULTS.get(str(weights), str(weights)) if str(weights) in ("general", "face") else str(weights)
    if name in MODELS and MODELS[name].kind not in _GENERATOR_KINDS:
        raise BadArgument(f"{name} is a {MODELS[name].kind} model, not a generator; the generators are "
                          f"{', '.join(names('sr_general') + names('sr_face'))}")
    try:
        path = resolve_weights(name if name in MODELS else weights)
    except MissingFile as e:
        raise MissingFile(f"no generator weights at {weights}: give an RRDBNet checkpoint (hdm, Real-ESRGAN or "
                          "ESRGAN), an exported .onnx file, general / face (the shipped ones) or a registry name "
                          f"({', '.join(names('sr_general') + names('sr_face'))})") from e
    if path.suffix == ".onnx":
        return OnnxSR(path, tile=None).as_generator()
    return load_rrdbnet(path).to(torch.device(device)).eval()
