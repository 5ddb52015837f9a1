"""Export an SR generator to ONNX, self-described and checked against torch.

Graph: input ``lr`` ``(N, 3, h, w)`` float RGB in [0, 1] (NCHW), output ``sr`` ``(N, 3, s h, s w)``,
not clamped (as the torch model; the diffusion student clamps to [0, 1]); batch, height and width are
dynamic. The one-step diffusion student
(:class:`hdm.diffusion.sampler.OneStepSR`) has a second input, ``noise`` ``(N, 3 s^2, h, w)``: its
standard-normal draw (zeros give the prior's mean). An exportable model is an :class:`hdm.sr.model.SRModel`
(its ``scale``, ``input_multiple``, ``receptive_radius`` and ``dtypes`` are read as they are) that also
names its inputs in ``input_names``, makes examples with ``example_inputs(h, w, n, generator)`` and
describes its architecture in ``config``: :class:`~hdm.sr.archs.rrdbnet.RRDBNet` and ``OneStepSR``.

Opset 17: every op these generators need (convolutions, LeakyReLU, nearest ``Resize``, the
``Reshape``/``Transpose`` of pixel-(un)shuffle) exists since opset 13; 17 is inside the range that
torch's exporter tests most, that TensorRT 8.6+ and 10 parse, and that ONNX Runtime 1.14+ optimises,
and old enough that every current runtime reads it.

Metadata: hdm's keys in ``metadata_props`` (:mod:`hdm.formats.onnx_metadata`).

fp16: the weights and the graph's arithmetic in half precision, with float32 ``lr``/``sr`` at the
boundary (a ``Cast`` after the input and before the output), so callers need not change.
"""
from __future__ import annotations

import copy
import json
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from .. import __version__
from ..diffusion.denoiser import ARCH
from ..diffusion.sampler import DiffusionSR, OneStepSR
from ..errors import BadArgument
from ..formats.onnx_metadata import read_metadata, write_metadata
from ..io.weights import resolve_weights, safetensors_metadata
from ..sr.convert import load_rrdbnet
from ..sr.model import check_sr_model

__all__ = ["OPSET", "ExportCheck", "load_exportable", "export_onnx", "read_metadata", "check_parity", "input_names",
           "example_inputs"]

OPSET = 17
#: Sizes (h, w) of the parity check: square, odd and non-square.
CHECK_SIZES = ((16, 16), (23, 17), (32, 48))


class _Half(nn.Module):
    """``model`` in fp16 with float32 inputs and output."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model.half()

    def forward(self, *xs):
        return self.model(*(x.half() for x in xs)).float()


def load_exportable(path) -> nn.Module:
    """An exportable model from weights (a file or a registry name): an RRDBNet (hdm, Real-ESRGAN, ESRGAN)
    or, for an hdm diffusion student, its one-step graph :class:`hdm.diffusion.sampler.OneStepSR`."""
    path = resolve_weights(path)
    meta = safetensors_metadata(path) if path.suffix == ".safetensors" else {}
    if meta.get("arch") == ARCH:
        if meta.get("stage") != "student":
            raise BadArgument(f"{path} is a multi-step teacher: only the one-step student is exported")
        sampler = DiffusionSR.from_pretrained(path, one_step=True)
        return OneStepSR(sampler.model, sampler.schedule).eval()
    return load_rrdbnet(path)


def input_names(model: nn.Module) -> tuple[str, ...]:
    """The graph's inputs: ``("lr",)`` for a generator, ``("lr", "noise")`` for the diffusion student."""
    return tuple(model.input_names)


def example_inputs(model: nn.Module, h: int, w: int, n: int = 1, generator=None) -> tuple[torch.Tensor, ...]:
    """Random inputs of LR size ``h x w`` in the order of :func:`input_names`."""
    return tuple(model.example_inputs(h, w, n, generator))


def export_onnx(model: nn.Module, path, name: str, scale: int, sha256: str = "", fp16: bool = False,
                config: dict | None = None) -> Path:
    """Write ``model`` (``lr -> sr``; see the module docstring) to ``path`` as ONNX with dynamic
    batch/height/width and metadata; ``fp16`` needs ``torch.float16`` in the model's ``dtypes``."""
    import onnx  # noqa: F401 - optional: the [export] extra, checked before a long export

    check_sr_model(model)
    if fp16 and torch.float16 not in model.dtypes:
        raise BadArgument(f"{type(model).__name__} does not run in float16 (its dtypes: {model.dtypes})")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    net = copy.deepcopy(model).float().eval()
    if fp16:
        net = _Half(net)
    multiple = int(model.input_multiple)
    names = input_names(model)
    example = example_inputs(model, 8 * multiple, 8 * multiple)
    # torch's TorchScript exporter (dynamo=False): the torch.export-based one needs the onnxscript package and
    # has no gain for these plain conv nets; its deprecation notice and the tracer's notes on the models'
    # input checks (Python-level, constant per call) are expected here
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        warnings.filterwarnings("ignore", message="Constant folding - Only steps=1")  # a strided slice stays a Slice
        axes = {name: {0: "batch", 2: "height", 3: "width"} for name in names}
        torch.onnx.export(net, example, str(path), opset_version=OPSET, input_names=list(names), output_names=["sr"],
                          dynamic_axes={**axes, "sr": {0: "batch", 2: "out_height", 3: "out_width"}}, dynamo=False)
    meta = {"hdm.model": name, "hdm.scale": str(scale), "hdm.input": "float32 RGB in [0, 1], NCHW",
            "hdm.inputs": json.dumps(list(names)),
            "hdm.version": __version__, "hdm.checkpoint_sha256": sha256, "hdm.precision": "fp16" if fp16 else "fp32",
            "hdm.config": json.dumps(config or model.config),
            "hdm.input_multiple": str(multiple), "hdm.receptive_radius": str(int(model.receptive_radius))}
    return write_metadata(path, meta)




@dataclass
class ExportCheck:
    """The parity check of one exported file: worst absolute difference per input size, and the bound."""

    max_abs: dict
    tolerance: float | None

    @property
    def passed(self) -> bool:
        return self.tolerance is None or max(self.max_abs.values()) <= self.tolerance


def check_parity(model: nn.Module, path, fp16: bool = False, sizes=CHECK_SIZES, seed: int = 0,
                 tolerance: float | None = 1e-4) -> ExportCheck:
    """Run the file with ONNX Runtime (CPU) and ``model`` in torch on random inputs of ``sizes`` (made
    to fit the model's ``input_multiple``); fp16 files are reported (``tolerance`` not applied)."""
    import onnxruntime as ort  # optional: the [export] extra

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    multiple = int(model.input_multiple)
    gen = torch.Generator().manual_seed(seed)
    worst = {}
    for h, w in sizes:
        h, w = -(-h // multiple) * multiple, -(-w // multiple) * multiple
        xs = example_inputs(model, h, w, 2, gen)
        with torch.no_grad():
            ref = model.float().eval()(*xs).numpy()
        out = session.run(None, {name: x.numpy() for name, x in zip(input_names(model), xs)})[0]
        worst[f"{h}x{w}"] = float(np.abs(out - ref).max())
    return ExportCheck(worst, None if fp16 else tolerance)
