"""ncnn's model files, read and written here: ``.param`` (the graph, text) and ``.bin`` (the weights).

``.param``: the magic ``7767517``; ``<layer count> <blob count>``; then one line per layer,
``<type> <name> <inputs> <outputs> <input blobs...> <output blobs...> <k=v...>``, where a key ``k`` is an int and
a negative key ``-233xx`` holds an array ``n,v1,...,vn``. Values are ints or floats.

``.bin``: the weights of the layers in graph order, with no header. A Convolution's kernel is a *flagged* array:
a 4-byte tag, ``0x01306B47`` for float16 values (padded to 4 bytes) or ``0`` for float32, then the values; its
bias (``5=1``) and a PReLU's slopes are raw float32. Every other layer hdm reads (Input, Split, Concat, Eltwise,
BinaryOp, Interp, PixelShuffle) has no weights.

The reader is strict: an unknown layer type, a line that does not parse, counts that disagree, a weight array
that runs past the end of the file or a file with bytes left over is an :class:`~hdm.errors.BadArgument` that
names the line or the byte offset.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import BadArgument, MissingFile

__all__ = ["MAGIC", "FP16_TAG", "LAYER_TYPES", "Layer", "Graph", "read_param", "read_weights", "read_ncnn",
           "write_ncnn"]

MAGIC = 7767517
FP16_TAG = 0x01306B47
#: The layer types hdm reads and writes (those of ESRGAN-type and compact SR networks).
LAYER_TYPES = ("Input", "Convolution", "PReLU", "Split", "Concat", "Eltwise", "BinaryOp", "Interp", "PixelShuffle")


@dataclass
class Layer:
    """One line of a ``.param`` file: ``params`` maps keys to an int, a float or a list (array keys);
    ``weights`` the layer's arrays from the ``.bin`` (``"weight"``, ``"bias"``, ``"slope"``), float32."""

    type: str
    name: str
    inputs: list[str]
    outputs: list[str]
    params: dict[int, int | float | list] = field(default_factory=dict)
    weights: dict[str, np.ndarray] = field(default_factory=dict)

    def param(self, key: int, default=0):
        return self.params.get(key, default)


@dataclass
class Graph:
    """An ncnn network: its layers in file order."""

    layers: list[Layer]

    def of_type(self, kind: str) -> list[Layer]:
        return [layer for layer in self.layers if layer.type == kind]

    @property
    def blobs(self) -> set[str]:
        return {b for layer in self.layers for b in layer.outputs}


def _value(text: str, where: str):
    try:
        return int(text)
    except ValueError:
        try:
            return float(text)
        except ValueError:
            raise BadArgument(f"{where}: {text!r} is not a number") from None


def _params(tokens: list[str], where: str) -> dict:
    params = {}
    for token in tokens:
        key, sep, value = token.partition("=")
        if not sep:
            raise BadArgument(f"{where}: {token!r} is not key=value")
        k = _value(key, where)
        if not isinstance(k, int):
            raise BadArgument(f"{where}: key {key!r} is not an integer")
        if k <= -23300:  # an array: n,v1,...,vn
            parts = [_value(p, where) for p in value.split(",")]
            if not parts or parts[0] != len(parts) - 1:
                raise BadArgument(f"{where}: array {token!r} does not hold the count it states")
            params[-k - 23300] = parts[1:]
        else:
            params[k] = _value(value, where)
    return params


def read_param(path) -> Graph:
    """The graph of a ``.param`` file (see the module docstring)."""
    path = Path(path)
    if not path.is_file():
        raise MissingFile(f"no ncnn .param file at {path}")
    try:
        lines = [line.split() for line in path.read_text(encoding="ascii").splitlines()]
    except UnicodeDecodeError as e:
        raise BadArgument(f"{path.name} is not an ncnn .param file (not text: {e})") from e
    lines = [tokens for tokens in lines if tokens]
    if not lines or lines[0] != [str(MAGIC)]:
        raise BadArgument(f"{path.name}, line 1: not an ncnn .param file (the first line must be {MAGIC})")
    if len(lines) < 2 or len(lines[1]) != 2:
        raise BadArgument(f"{path.name}, line 2: expected '<layer count> <blob count>'")
    n_layers, n_blobs = (_value(v, f"{path.name}, line 2") for v in lines[1])
    if len(lines) - 2 != n_layers:
        raise BadArgument(f"{path.name}: the header states {n_layers} layers, the file has {len(lines) - 2}")
    layers = []
    for number, tokens in enumerate(lines[2:], start=3):
        where = f"{path.name}, line {number}"
        if len(tokens) < 4:
            raise BadArgument(f"{where}: a layer needs a type, a name and its input and output counts")
        kind, name = tokens[0], tokens[1]
        if kind not in LAYER_TYPES:
            raise BadArgument(f"{where}: layer type {kind!r} is not one hdm reads ({', '.join(LAYER_TYPES)})")
        n_in, n_out = _value(tokens[2], where), _value(tokens[3], where)
        if not (isinstance(n_in, int) and isinstance(n_out, int) and n_in >= 0 and n_out >= 0
                and len(tokens) >= 4 + n_in + n_out):
            raise BadArgument(f"{where}: the input and output counts do not fit the line")
        blobs = tokens[4:4 + n_in + n_out]
        layers.append(Layer(kind, name, blobs[:n_in], blobs[n_in:], _params(tokens[4 + n_in + n_out:], where)))
    graph = Graph(layers)
    made = [b for layer in layers for b in layer.outputs]
    if len(set(made)) != len(made) or len(made) != n_blobs:
        raise BadArgument(f"{path.name}: the header states {n_blobs} blobs, the layers make {len(set(made))} "
                          f"({len(made) - len(set(made))} made twice)")
    seen: set[str] = set()
    for layer in layers:
        missing = [b for b in layer.inputs if b not in seen]
        if missing:
            raise BadArgument(f"{path.name}: layer {layer.name} reads {missing[0]!r} before any layer makes it")
        seen.update(layer.outputs)
    return graph


class _Reader:
    """Sequential reads from the bytes of a ``.bin`` with the byte offset in every error."""

    def __init__(self, data: bytes, name: str):
        self.data, self.name, self.offset = data, name, 0

    def take(self, n: int, what: str) -> bytes:
        if self.offset + n > len(self.data):
            raise BadArgument(f"{self.name}: {what} needs {n} bytes at byte offset {self.offset}, but the file ends "
                              f"at {len(self.data)} (truncated, or not this graph's weights)")
        chunk = self.data[self.offset:self.offset + n]
        self.offset += n
        return chunk

    def raw(self, count: int, what: str) -> np.ndarray:
        return np.frombuffer(self.take(4 * count, what), dtype="<f4").copy()

    def flagged(self, count: int, what: str) -> np.ndarray:
        start = self.offset
        (tag,) = struct.unpack("<I", self.take(4, what))
        if tag == FP16_TAG:
            values = np.frombuffer(self.take(2 * count, what), dtype="<f2").astype(np.float32)
            self.take((-2 * count) % 4, f"{what} (alignment)")
            return values
        if tag == 0:
            return self.raw(count, what)
        raise BadArgument(f"{self.name}: {what} at byte offset {start} has tag {tag:#010x}, neither float16 "
                          f"({FP16_TAG:#010x}) nor float32 (0): quantised or foreign weights are not read")


def read_weights(graph: Graph, path) -> Graph:
    """Fill each layer's ``weights`` from the ``.bin`` file ``path`` (see the module docstring)."""
    path = Path(path)
    if not path.is_file():
        raise MissingFile(f"no ncnn .bin file at {path}")
    reader = _Reader(path.read_bytes(), path.name)
    for layer in graph.layers:
        if layer.type == "Convolution":
            out, size, bias = layer.param(0), layer.param(6), layer.param(5)
            layer.weights["weight"] = reader.flagged(size, f"the kernel of {layer.name}")
            if bias:
                layer.weights["bias"] = reader.raw(out, f"the bias of {layer.name}")
        elif layer.type == "PReLU":
            layer.weights["slope"] = reader.raw(layer.param(0), f"the slopes of {layer.name}")
    if reader.offset != len(reader.data):
        raise BadArgument(f"{path.name}: {len(reader.data) - reader.offset} bytes are left after the last weights "
                          f"(byte offset {reader.offset}): not this graph's weights")
    return graph


def read_ncnn(param, weights) -> Graph:
    """The graph of ``param`` with its weights from ``weights`` (``.param`` and ``.bin`` paths)."""
    return read_weights(read_param(param), weights)


def _format(value) -> str:
    return f"{value:e}" if isinstance(value, float) else str(value)


def write_ncnn(graph: Graph, param, weights) -> tuple[Path, Path]:
    """Write ``graph`` as ``param`` (text) and ``weights`` (float32 kernels, tag 0): the inverse of
    :func:`read_ncnn` up to the precision of the kernels."""
    param, weights = Path(param), Path(weights)
    lines = [str(MAGIC), f"{len(graph.layers)} {len(graph.blobs)}"]
    chunks = []
    for layer in graph.layers:
        if layer.type not in LAYER_TYPES:
            raise BadArgument(f"layer {layer.name}: type {layer.type!r} is not one hdm writes")
        params = []
        for key, value in layer.params.items():
            if isinstance(value, (list, tuple)):
                params.append(f"{-23300 - key}={','.join([str(len(value)), *map(_format, value)])}")
            else:
                params.append(f"{key}={_format(value)}")
        lines.append(" ".join([f"{layer.type:<24}", f"{layer.name:<24}", str(len(layer.inputs)),
                               str(len(layer.outputs)), *layer.inputs, *layer.outputs, *params]).rstrip())
        if layer.type == "Convolution":
            kernel = np.ascontiguousarray(layer.weights["weight"], dtype="<f4").ravel()
            if kernel.size != layer.param(6):
                raise BadArgument(f"layer {layer.name}: {kernel.size} kernel values, the params say {layer.param(6)}")
            chunks += [struct.pack("<I", 0), kernel.tobytes()]
            if layer.param(5):
                chunks.append(np.ascontiguousarray(layer.weights["bias"], dtype="<f4").tobytes())
        elif layer.type == "PReLU":
            chunks.append(np.ascontiguousarray(layer.weights["slope"], dtype="<f4").tobytes())
    param.parent.mkdir(parents=True, exist_ok=True)
    param.write_text("\n".join(lines) + "\n", encoding="ascii")
    weights.write_bytes(b"".join(chunks))
    return param, weights
