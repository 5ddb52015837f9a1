"""dlib's model file ``dlib_face_recognition_resnet_model_v1.dat`` read without dlib, and its conversion to
safetensors.

dlib serialises a network from the loss layer inwards: each layer writes a version number and then its inner
network, and only then its own details, so the file holds the outer layers' version numbers first, then the
input layer, then every layer's details from the input to the output. The encodings (``dlib/serialize.h``,
``dlib/float_details.h``, ``dlib/cuda/tensor.h``):

* an integer is a control byte (the number of bytes that follow in its low 4 bits, ``0x80`` for a negative
  signed value) and that many little-endian bytes;
* a string is its length (an integer) and its bytes; a bool the character ``'0'`` or ``'1'``;
* a float is two signed integers, ``mantissa`` and ``exponent``: the value ``mantissa * 2**exponent``;
* a tensor is a version (2), four integer dimensions ``(n, k, rows, cols)`` and the values as little-endian
  float32; an ``alias_tensor`` (a view into a layer's parameters) a version (1) and its four dimensions.

:func:`read_dlib_model` follows that grammar for exactly the network of :mod:`hdm.faces.dlib_resnet` and checks
every version string, layer geometry and tensor shape on the way: anything else, or a file that ends early,
is a :class:`~hdm.errors.BadArgument` naming the byte offset. :func:`convert` writes the weights as a
self-describing safetensors file; :func:`write_card` its model card.
"""
from __future__ import annotations

import importlib.metadata
import importlib.util
import json
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file

from ..errors import BadArgument, MissingFile
from ..io.cards import sha256, write_model_card
from ..io.weights import count_parameters, safetensors_metadata
from .dlib_resnet import CHIP_SIZE, DESCRIPTOR_SIZE, STAGES

__all__ = ["read_dlib_model", "convert", "write_card", "default_dat_path", "DlibModel", "ARCH", "DAT_NAME",
           "SOURCE_PACKAGE", "LICENCE", "LFW_ACCURACY"]

#: The ``arch`` metadata of the converted file.
ARCH = "dlib_face_recognition_resnet_model_v1"
#: The model file's name in the ``face-recognition-models`` package.
DAT_NAME = "dlib_face_recognition_resnet_model_v1.dat"
#: The PyPI package that ships the model file (``models/`` inside it).
SOURCE_PACKAGE = "face-recognition-models"
#: The model file's licence (the package's and dlib's statement for the model).
LICENCE = "CC0-1.0"
#: dlib's reported accuracy on LFW, in dlib's words (``examples/dnn_face_recognition_ex.cpp``).
LFW_ACCURACY = "This model has a 99.38% accuracy on the standard LFW face recognition benchmark"


class DlibModel(dict):
    """The state dict of :class:`~hdm.faces.dlib_resnet.DlibFaceResNet` read from a ``.dat`` file, with the
    loss layer's ``margin`` and ``distance_threshold`` (the distance below which two descriptors are one person)."""

    margin: float
    distance_threshold: float


class _Reader:
    """dlib's encodings over the bytes of a file; every failure names the byte offset."""

    def __init__(self, data: bytes, name: str):
        self.data, self.pos, self.name = data, 0, name

    def fail(self, what: str):
        raise BadArgument(f"{self.name} is not dlib's face recognition model {DAT_NAME} "
                          f"(at byte {self.pos} of {len(self.data)}: {what})")

    def take(self, n: int) -> bytes:
        if self.pos + n > len(self.data):
            self.fail(f"the file ends early, {n} more bytes expected: a truncated file")
        out = self.data[self.pos:self.pos + n]
        self.pos += n
        return out

    def integer(self, signed: bool = True) -> int:
        control = self.take(1)[0]
        size = control & (0x0F if signed else 0x8F)
        if size == 0 or size > 8:
            self.fail(f"bad integer control byte 0x{control:02x}")
        value = int.from_bytes(self.take(size), "little")
        return -value if signed and control & 0x80 else value

    def real(self) -> float:
        mantissa, exponent = self.integer(), self.integer()
        if exponent >= 32000:  # dlib's codes for inf, -inf, nan
            return (float("inf"), float("-inf"), float("nan"))[min(exponent - 32000, 2)]
        return float(mantissa) * 2.0 ** exponent

    def boolean(self) -> bool:
        c = self.take(1)
        if c not in (b"0", b"1"):
            self.fail(f"a bool ('0' or '1') expected, found {c!r}")
        return c == b"1"

    def string(self) -> str:
        n = self.integer(signed=False)
        if n > 64:
            self.fail(f"a version string expected, found a length of {n}")
        return self.take(n).decode("latin-1")

    def version(self, *expected: str) -> str:
        at, found = self.pos, self.string()
        if found not in expected:
            self.pos = at
            self.fail(f"expected {' or '.join(repr(e) for e in expected)}, found {found!r}")
        return found

    def number(self, expected: int, what: str, signed: bool = True) -> int:
        at, found = self.pos, self.integer(signed)
        if found != expected:
            self.pos = at
            self.fail(f"{what} {expected} expected, found {found}")
        return found

    def tensor(self) -> np.ndarray:
        self.number(2, "tensor version")
        shape = tuple(self.integer() for _ in range(4))
        if min(shape) < 0:
            self.fail(f"a tensor of shape {shape}")
        count = int(np.prod(shape))
        return np.frombuffer(self.take(4 * count), "<f4").reshape(shape)

    def alias(self) -> tuple[int, ...]:
        self.number(1, "alias_tensor version")
        return tuple(self.integer() for _ in range(4))

    def expect_shape(self, found, expected, what: str):
        if tuple(found) != tuple(expected):
            self.fail(f"{what} of shape {tuple(expected)} expected, found {tuple(found)}")


def _layers() -> list[tuple]:
    """The network's dlib layers from the input to the output: ``(kind, state-dict prefix, settings)``; tags and
    skips (``tag1``, ``tag2``, ``skip1``) only route tensors and store nothing but a version."""
    layers = [("con", "conv1", (32, 3, 7, 2)), ("affine", "affine1", 32), ("relu",), ("max_pool", (3, 2))]
    channels, index = 32, 0
    for width, count, down in STAGES:
        for i in range(count):
            p, stride = f"blocks.{index}", 2 if down and i == 0 else 1
            layers += [("tag",), ("con", f"{p}.conv1", (width, channels, 3, stride)), ("affine", f"{p}.affine1", width),
                       ("relu",), ("con", f"{p}.conv2", (width, width, 3, 1)), ("affine", f"{p}.affine2", width)]
            if stride == 2:
                layers += [("tag",), ("skip",), ("avg_pool", (2, 2))]
            layers += [("add_prev",), ("relu",)]
            channels, index = width, index + 1
    return layers + [("avg_pool", (0, 1)), ("fc", "fc", (channels, DESCRIPTOR_SIZE))]


def _con(r: _Reader, prefix: str, settings, state: dict):
    filters, channels, k, stride = settings
    r.version("con_4", "con_5", "con_6")
    params = r.tensor().reshape(-1)
    r.number(filters, "number of filters")
    pad = k // 2 if stride == 1 else 0  # dlib's default padding
    for value, what in ((k, "rows"), (k, "columns"), (stride, "stride y"), (stride, "stride x"), (pad, "padding y"),
                        (pad, "padding x")):
        r.number(value, f"convolution {what}")
    r.expect_shape(r.alias(), (filters, channels, k, k), "filters")
    r.expect_shape(r.alias(), (1, filters, 1, 1), "biases")
    for _ in range(4):  # learning-rate and weight-decay multipliers
        r.real()
    r.expect_shape(params.shape, (filters * channels * k * k + filters,), "convolution parameters")
    state[f"{prefix}.weight"] = params[:-filters].reshape(filters, channels, k, k)
    state[f"{prefix}.bias"] = params[-filters:]
    return params


def _affine(r: _Reader, prefix: str, channels: int, state: dict):
    version = r.version("affine_", "affine_2")
    params = r.tensor().reshape(-1)
    r.expect_shape(r.alias(), (1, channels, 1, 1), "affine gamma")
    r.expect_shape(r.alias(), (1, channels, 1, 1), "affine beta")
    r.number(0, "affine mode (0: per channel)")
    if version == "affine_2" and r.boolean():
        r.fail("a disabled affine layer")
    r.expect_shape(params.shape, (2 * channels,), "affine parameters")
    state[f"{prefix}.weight"], state[f"{prefix}.bias"] = params[:channels], params[channels:]


def _pool(r: _Reader, kind: str, settings):
    size, stride = settings
    r.version(f"{kind}_2")
    for value, what in ((size, "rows"), (size, "columns"), (stride, "stride y"), (stride, "stride x"), (0, "padding y"),
                        (0, "padding x")):
        r.number(value, f"{kind} {what}")


def _fc(r: _Reader, prefix: str, settings, state: dict):
    inputs, outputs = settings
    r.version("fc_2", "fc_3")
    r.number(outputs, "fc outputs", signed=False)
    r.number(inputs, "fc inputs", signed=False)
    params = r.tensor()
    r.expect_shape(r.alias(), (inputs, outputs, 1, 1), "fc weights")
    r.expect_shape(r.alias(), (0, 0, 0, 0), "fc biases (none)")
    r.number(1, "fc bias mode (1: no bias)")
    for _ in range(4):
        r.real()
    r.expect_shape(params.shape, (inputs, outputs, 1, 1), "fc parameters")
    state[f"{prefix}.weight"] = params.reshape(inputs, outputs).T  # dlib computes x @ W, torch x @ W.T


def _details(r: _Reader, layer: tuple, state: dict):
    kind = layer[0]
    if kind == "con":
        _con(r, layer[1], layer[2], state)
    elif kind == "affine":
        _affine(r, layer[1], layer[2], state)
    elif kind == "relu":
        if r.version("relu_", "relu_2") == "relu_2" and r.boolean():
            r.fail("a disabled relu layer")
    elif kind in ("max_pool", "avg_pool"):
        _pool(r, kind, layer[1])
    elif kind == "add_prev":
        r.version("add_prev_")
    elif kind == "fc":
        _fc(r, layer[1], layer[2], state)


def _layer_state(r: _Reader, version: int):
    """What dlib's ``add_layer`` writes after a layer's details: three flags and cached tensors (empty in a
    saved model; read and dropped)."""
    for _ in range(3):
        r.boolean()
    for _ in range(3 if version == 2 else 2):
        r.tensor()


def read_dlib_model(path: str | Path) -> DlibModel:
    """The weights of dlib's face-recognition ResNet from its ``.dat`` file: a state dict of float32 tensors
    for :class:`~hdm.faces.dlib_resnet.DlibFaceResNet` (``input_mean`` included).

    Raises :class:`~hdm.errors.MissingFile` if there is no file, :class:`~hdm.errors.BadArgument` for a file
    that is not this network in dlib's format (another network, another file, a truncated copy)."""
    path = Path(path)
    if not path.is_file():
        raise MissingFile(f"no dlib model file at {path}")
    r = _Reader(path.read_bytes(), str(path))
    r.number(1, "loss layer version")
    if r.version("loss_metric_", "loss_metric_2") == "loss_metric_2":
        margin, threshold = r.real(), r.real()
    else:  # the values dlib hard-coded for the first version
        margin, threshold = 0.1, 0.75
    layers = _layers()
    versions = []
    for layer in reversed(layers[1:]):  # outer layers first: each writes its version, then its inner network
        versions.append(r.integer())
        expected = (1,) if layer[0] in ("tag", "skip") else (1, 2)
        if versions[-1] not in expected:
            r.fail(f"a {layer[0]} layer version in {expected} expected, found {versions[-1]}")
    first = r.integer()  # the layer on the input: add_layer version 2 or 3
    if first not in (2, 3):
        r.fail(f"input layer version 2 or 3 expected, found {first}")
    r.version("input_rgb_image_sized")
    mean = [r.real() for _ in range(3)]
    r.number(CHIP_SIZE, "input rows", signed=False)
    r.number(CHIP_SIZE, "input columns", signed=False)
    state = DlibModel(input_mean=np.array(mean, np.float32))
    _details(r, layers[0], state)
    for _ in range(3):
        r.boolean()
    for _ in range(3):
        r.tensor()
    if first == 3:
        r.integer(signed=False)  # sample expansion factor
    for layer, version in zip(layers[1:], reversed(versions)):
        if layer[0] in ("tag", "skip"):
            continue
        _details(r, layer, state)
        _layer_state(r, version)
    if r.pos != len(r.data):
        r.fail(f"{len(r.data) - r.pos} bytes after the network")
    model = DlibModel({k: torch.from_numpy(np.array(v, np.float32)) for k, v in state.items()})  # copies
    model.margin, model.distance_threshold = float(np.float32(margin)), float(np.float32(threshold))
    return model


def default_dat_path() -> Path:
    """The model file of the installed ``face-recognition-models`` package (found without importing it: its
    ``__init__`` needs ``pkg_resources``, which new setuptools lacks). :class:`~hdm.errors.MissingFile` if the
    package is not installed."""
    spec = importlib.util.find_spec("face_recognition_models")
    path = Path(spec.submodule_search_locations[0]) / "models" / DAT_NAME if spec else None
    if path is None or not path.is_file():
        raise MissingFile(f"no {DAT_NAME}: install the package that ships it (pip install {SOURCE_PACKAGE}) "
                          "or give the file's path")
    return path


def _package_version() -> str:
    try:
        return importlib.metadata.version(SOURCE_PACKAGE)
    except importlib.metadata.PackageNotFoundError:
        return "unknown (file given by path)"


def convert(dat_path: str | Path, out_path: str | Path) -> Path:
    """Convert dlib's ``.dat`` to float32 safetensors at ``out_path``. Metadata: ``arch``, ``source`` (the
    package and version), ``dat_sha256``, ``licence``, ``config`` (JSON: stages, chip size, descriptor size,
    distance threshold, margin). The same ``.dat`` always gives the same tensors and metadata (not the same
    bytes: safetensors writes the metadata keys in no fixed order)."""
    dat_path, out_path = Path(dat_path), Path(out_path)
    model = read_dlib_model(dat_path)
    config = {"stages": [list(s) for s in STAGES], "chip_size": CHIP_SIZE, "descriptor_size": DESCRIPTOR_SIZE,
              "input": "RGB in [0, 255]; (x - input_mean) / 256", "distance_threshold": model.distance_threshold,
              "margin": model.margin}
    meta = {"arch": ARCH, "source": f"{SOURCE_PACKAGE} {_package_version()}: models/{DAT_NAME}",
            "dat_sha256": sha256(dat_path), "licence": LICENCE, "config": json.dumps(config, sort_keys=True)}
    out_path.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in model.items()}, str(out_path), metadata=meta)
    return out_path


def write_card(weights: str | Path, command: str, parity: list[tuple[str, float]] | None = None,
               chip_cost: list[tuple[str, float]] | None = None, reference: str = "dlib") -> Path:
    """Write ``<weights stem>.md``: source, licence, the conversion ``command``, dlib's LFW statement and, when
    measured (against ``reference``, e.g. ``"dlib 20.0.1"``), ``parity`` (``(what, max |ours - dlib|)`` rows) and
    ``chip_cost`` (``(face, distance)`` rows)."""
    weights = Path(weights)
    meta = safetensors_metadata(weights)
    config = json.loads(meta["config"])
    lines = [f"# {weights.name}", "",
             ("dlib's face-recognition ResNet (`dlib_face_recognition_resnet_model_v1`, Davis King) converted to "
             "safetensors for `hdm.faces` (`hdm.faces.FaceEmbedder`): 150 x 150 aligned face chips -> 128-d "
             f"descriptors; two chips show one person when their Euclidean distance is below "
             f"{config['distance_threshold']:.2f} (the threshold stored in the model file). 29 convolutions, "
             f"{count_parameters(weights) - 3:,} parameters; dlib is not needed to run it."), "",
             "## Source", "",
             f"- file: `{DAT_NAME}` from the PyPI package {meta['source']}",
             f"- sha256 of the `.dat`: `{meta['dat_sha256']}`",
             f"- licence: {meta['licence']}: the package's LICENSE file says the models \"were created by Davis King "
             "and are licensed in the public domain CC0 1.0 Universal\" (its metadata's MIT licence is the "
             "packaging's)",
             f"- dlib's statement: \"{LFW_ACCURACY}\" (dlib's figure, not measured here)",
             f"- conversion: `{command}` (`hdm.faces.dlib_format.convert`; reads dlib's binary format itself)", "",
             "## Parity with dlib", ""]
    if parity:
        lines += [(f"Max |our descriptor - {reference}'s `compute_face_descriptor`| (no jitter) on the chips "
                  "`dlib.get_face_chip` makes (dlib's 5-point landmarks) of every detection of dlib's face detector "
                  "(upsampled once) in images that installed packages ship (`hdm.bench.faces.parity`):"), "",
                  "| chips | max abs diff |", "|---|---|"]
        lines += [f"| {what} | {value:.2e} |" for what, value in parity]
    else:
        lines += ["not measured by this conversion (`--parity` needs dlib)"]
    if chip_cost:
        lines += ["", "## MTCNN chips vs dlib chips", "",
                  ("Descriptor distance between the chip `hdm.faces` aligns from MTCNN's 5 landmarks and dlib's own "
                  "chip of the same face (5-point shape predictor), both through this network "
                  "(`hdm.bench.faces.chip_cost`; one person is below 0.6):"), "", "| face | distance |", "|---|---|"]
        lines += [f"| {what} | {value:.3f} |" for what, value in chip_cost]
    return write_model_card(weights, lines)
