"""Export hdm's SR generators to ncnn (``.param`` + ``.bin``), the format of the Vulkan upscalers
(realesrgan-ncnn-vulkan, Upscayl, chaiNNer's ncnn nodes).

The graph is written layer by layer from the network, in the layout of Real-ESRGAN's own ncnn files: input
blob ``data`` (RGB in [0, 1], CHW), output blob ``output`` (not clamped), float32 weights. A blob read by
several layers goes through a ``Split``, as ncnn requires. x4 RRDB generators
(:class:`~hdm.sr.archs.rrdbnet.RRDBNet`) and compact ones (:class:`~hdm.sr.archs.srvgg.SRVGGNetCompact`) are
exported; RRDBNet x2/x1 (a pixel-unshuffle first) are refused.
"""
from __future__ import annotations

from collections import Counter
from pathlib import Path

import torch.nn as nn

from ..errors import BadArgument
from ..formats.ncnn import Graph, Layer, write_ncnn
from ..sr.archs.rrdbnet import RRDBNet
from ..sr.archs.srvgg import SRVGGNetCompact

__all__ = ["INPUT", "OUTPUT", "ncnn_graph", "export_ncnn"]

INPUT, OUTPUT = "data", "output"


class _Builder:
    """Layers in order; each call returns its output blob. :meth:`graph` inserts the Splits."""

    def __init__(self):
        self.layers: list[Layer] = [Layer("Input", "input", [], [INPUT])]
        self.count = 0

    def add(self, kind: str, inputs: list[str], params: dict | None = None, weights: dict | None = None,
            output: str | None = None) -> str:
        self.count += 1
        out = output or f"b{self.count}"
        self.layers.append(Layer(kind, f"{kind.lower()}_{self.count}", list(inputs), [out], params or {},
                                 weights or {}))
        return out

    def conv(self, conv: nn.Conv2d, x: str, leaky: bool = False, output: str | None = None) -> str:
        if conv.kernel_size != (3, 3) or conv.stride != (1, 1) or conv.padding != (1, 1) or conv.groups != 1:
            raise BadArgument("only 3x3 convolutions with stride 1 and padding 1 are exported")
        w = conv.weight.detach().float().cpu().numpy()
        params = {0: w.shape[0], 1: 3, 4: 1, 5: int(conv.bias is not None), 6: int(w.size)}
        if leaky:
            params.update({9: 2, 10: [0.2]})
        weights = {"weight": w}
        if conv.bias is not None:
            weights["bias"] = conv.bias.detach().float().cpu().numpy()
        return self.add("Convolution", [x], params, weights, output)

    def graph(self) -> Graph:
        uses = Counter(b for layer in self.layers for b in layer.inputs)
        layers = []
        for layer in self.layers:
            layers.append(layer)
            for blob in layer.outputs:
                n = uses.get(blob, 0)
                if n > 1:
                    copies = [f"{blob}_split_{i}" for i in range(n)]
                    layers.append(Layer("Split", f"split_{blob}", [blob], copies))
                    pending = iter(copies)
                    for later in self.layers[self.layers.index(layer) + 1:]:
                        later.inputs = [next(pending) if b == blob else b for b in later.inputs]
        return Graph(layers)


def _rrdbnet(model: RRDBNet, b: _Builder) -> None:
    if model.scale != 4:
        raise BadArgument(f"only x4 RRDB generators are exported to ncnn (this one is x{model.scale}: its input "
                          "is pixel-unshuffled first)")
    feat = b.conv(model.conv_first, INPUT)
    x = feat
    for block in model.body:
        skip = x
        for rdb in (block.rdb1, block.rdb2, block.rdb3):
            parts = [x]
            for i in range(1, 5):
                inp = parts[0] if i == 1 else b.add("Concat", parts)
                parts.append(b.conv(getattr(rdb, f"conv{i}"), inp, leaky=True))
            x5 = b.conv(rdb.conv5, b.add("Concat", parts))
            x = b.add("Eltwise", [x5, parts[0]], {0: 1, 1: [0.2, 1.0]})
        x = b.add("Eltwise", [x, skip], {0: 1, 1: [0.2, 1.0]})
    feat = b.add("BinaryOp", [feat, b.conv(model.conv_body, x)], {0: 0})
    for conv in (model.conv_up1, model.conv_up2):
        feat = b.conv(conv, b.add("Interp", [feat], {0: 1, 1: 2.0, 2: 2.0}), leaky=True)
    b.conv(model.conv_last, b.conv(model.conv_hr, feat, leaky=True), output=OUTPUT)


def _srvgg(model: SRVGGNetCompact, b: _Builder) -> None:
    x = INPUT
    for layer in model.body:
        if isinstance(layer, nn.Conv2d):
            x = b.conv(layer, x)
        else:
            x = b.add("PReLU", [x], {0: model.num_feat}, {"slope": layer.weight.detach().float().cpu().numpy()})
    x = b.add("PixelShuffle", [x], {0: model.scale})
    base = b.add("Interp", [INPUT], {0: 1, 1: float(model.scale), 2: float(model.scale)})
    b.add("BinaryOp", [x, base], {0: 0}, output=OUTPUT)


def ncnn_graph(model: nn.Module) -> Graph:
    """The ncnn graph of an hdm generator (see the module docstring)."""
    b = _Builder()
    if isinstance(model, RRDBNet):
        _rrdbnet(model, b)
    elif isinstance(model, SRVGGNetCompact):
        _srvgg(model, b)
    else:
        raise BadArgument(f"{type(model).__name__} cannot be exported to ncnn: only RRDBNet (x4) and "
                          "SRVGGNetCompact can")
    return b.graph()


def export_ncnn(model: nn.Module, out) -> tuple[Path, Path]:
    """Write ``model`` as ``<out>.param`` and ``<out>.bin`` (``out`` without a suffix, or either file name)."""
    out = Path(out)
    stem = out.with_suffix("") if out.suffix in (".param", ".bin") else out
    return write_ncnn(ncnn_graph(model), stem.with_name(stem.name + ".param"), stem.with_name(stem.name + ".bin"))
