"""Loading SR generators by name or file: a registry model (:data:`hdm.io.registry.MODELS`, or a role of
:data:`hdm.io.registry.DEFAULTS` such as ``"general"``), checkpoints of RRDB and compact generators (hdm,
Real-ESRGAN, ESRGAN), ncnn files, and exported ``.onnx`` generators (run by ONNX Runtime)."""
from __future__ import annotations

from pathlib import Path

import torch

from ..errors import BadArgument, MissingFile
from ..io.registry import DEFAULTS, GENERATOR_KINDS, MODELS, generator_names
from ..io.weights import package_paths, resolve_weights
from .convert import load_ncnn, load_sr_checkpoint
from .onnx_runtime import OnnxSR

__all__ = ["load_generator"]

def load_generator(weights: str | Path, device="cpu"):
    """A generator in eval mode on ``device``: a role (``"general"`` / ``"face"``), a registry name
    (``"sr_general_x4"``; ``"realesrgan_x4plus"`` and the other models of a package are converted from its ncnn
    files), a checkpoint path (RRDB or compact generators in hdm's, Real-ESRGAN's or ESRGAN's layouts), ncnn
    files (the ``.param``, with its ``.bin`` beside it), or an exported ``.onnx`` file (its ONNX Runtime session
    as an :class:`hdm.sr.model.SRModel`; needs the ``[export]`` extra).

    Raises :class:`~hdm.errors.WeightsUnavailable` (a registry file that cannot be had), :class:`MissingFile`
    and :class:`~hdm.errors.BadArgument` (a file that is not a generator, a registry model of another kind)."""
    name = DEFAULTS.get(str(weights), str(weights)) if str(weights) in ("general", "face") else str(weights)
    if name in MODELS and MODELS[name].kind not in GENERATOR_KINDS:
        raise BadArgument(f"{name} is a {MODELS[name].kind} model, not a generator; the generators are "
                          f"{', '.join(generator_names())}")
    if name in MODELS and MODELS[name].package is not None:
        return load_ncnn(*package_paths(name)).to(torch.device(device)).eval()
    try:
        path = resolve_weights(name if name in MODELS else weights)
    except MissingFile as e:
        raise MissingFile(f"no generator weights at {weights}: give a checkpoint (RRDBNet or SRVGGNetCompact: hdm, "
                          "Real-ESRGAN or ESRGAN), ncnn files (.param), an exported .onnx file, general / face (the shipped ones) or a registry name "
                          f"({', '.join(generator_names())})") from e
    if path.suffix == ".onnx":
        return OnnxSR(path, tile=None).as_generator()
    if path.suffix == ".param":
        return load_ncnn(path, path.with_suffix(".bin")).to(torch.device(device)).eval()
    return load_sr_checkpoint(path).to(torch.device(device)).eval()
