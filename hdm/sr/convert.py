"""Foreign checkpoint layouts -> hdm's networks (:mod:`hdm.sr.archs`), in the manner of spandrel: a layout is
recognised by its state dict's keys and renamed; the network files know nothing of loading.

RRDB generators: :class:`~hdm.sr.archs.rrdbnet.RRDBNet` is BasicSR / Real-ESRGAN's ``RRDBNet``, parameter name
for parameter name, so their ``.pth`` files load as they are. Checkpoints of the official ESRGAN repository come in two older
naming layouts; :func:`convert_state_dict` renames all three to this module's names::

    this module (BasicSR, Real-ESRGAN)   ESRGAN, new arch                ESRGAN, old arch (architecture.py)
    conv_first                           conv_first                      model.0
    body.{i}.rdb{k}.conv{n}              RRDB_trunk.{i}.RDB{k}.conv{n}   model.1.sub.{i}.RDB{k}.conv{n}.0
    conv_body                            trunk_conv                      model.1.sub.{num_block}
    conv_up1, conv_up2                   upconv1, upconv2                model.3, model.6
    conv_hr                              HRconv                          model.8
    conv_last                            conv_last                       model.10

The old arch is one ``nn.Sequential`` built by ``block.sequential``, which flattens nested
sequentials: ``conv, ShortcutBlock(sub=[RRDB x num_block, conv]), upsample, conv, lrelu, upsample,
conv, lrelu, conv, lrelu, conv`` - hence indices 0, 1, 3, 6, 8 and 10, and ``.0`` after each RDB
conv (a ``conv_block`` is ``Sequential(conv[, lrelu])``). Old-arch x2/x1 models have a different
tail (one or no upsampling step, no pixel-unshuffle) that this network cannot run; they are refused.

Checkpoints cannot be downloaded here: :func:`load_rrdbnet` takes a file the user supplies.
"""
from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

import torch
import torch.nn as nn

from ..errors import BadArgument, MissingFile
from ..formats.ncnn import Graph, Layer, read_ncnn
from ..io.weights import load_state_dict_file
from .archs.rrdbnet import UNSHUFFLE, RRDBNet
from .archs.srvgg import SRVGGNetCompact
from .spandrel_model import load_spandrel

__all__ = ["convert_state_dict", "infer_config", "load_rrdbnet", "srvgg_config", "load_srvgg", "is_rrdb", "is_srvgg",
           "load_sr_checkpoint", "load_ncnn"]

_P = r"\.(weight|bias)$"  # a conv's parameter name: the last group of every pattern
#: Each layout: (pattern, replacement) for every key; a key that matches none is foreign.
_LAYOUTS: dict[str, list[tuple[re.Pattern[str], str]]] = {
    "basicsr": [
        (re.compile(r"^(conv_first|conv_body|conv_up1|conv_up2|conv_hr|conv_last)" + _P), r"\1.\2"),
        (re.compile(r"^body\.(\d+)\.rdb([123])\.conv([1-5])" + _P), r"body.\1.rdb\2.conv\3.\4"),
    ],
    "esrgan": [
        (re.compile(r"^conv_first" + _P), r"conv_first.\1"),
        (re.compile(r"^RRDB_trunk\.(\d+)\.RDB([123])\.conv([1-5])" + _P), r"body.\1.rdb\2.conv\3.\4"),
        (re.compile(r"^trunk_conv" + _P), r"conv_body.\1"),
        (re.compile(r"^upconv1" + _P), r"conv_up1.\1"),
        (re.compile(r"^upconv2" + _P), r"conv_up2.\1"),
        (re.compile(r"^HRconv" + _P), r"conv_hr.\1"),
        (re.compile(r"^conv_last" + _P), r"conv_last.\1"),
    ],
    "esrgan-old": [
        (re.compile(r"^model\.0" + _P), r"conv_first.\1"),
        (re.compile(r"^model\.1\.sub\.(\d+)\.RDB([123])\.conv([1-5])\.0" + _P), r"body.\1.rdb\2.conv\3.\4"),
        (re.compile(r"^model\.1\.sub\.\d+" + _P), r"conv_body.\1"),  # index checked in convert_state_dict
        (re.compile(r"^model\.3" + _P), r"conv_up1.\1"),
        (re.compile(r"^model\.6" + _P), r"conv_up2.\1"),
        (re.compile(r"^model\.8" + _P), r"conv_hr.\1"),
        (re.compile(r"^model\.10" + _P), r"conv_last.\1"),
    ],
}


def _layout(state: Mapping[str, torch.Tensor]) -> str | None:
    if "model.0.weight" in state:
        return "esrgan-old"
    if any(k.startswith("RRDB_trunk.") for k in state) or "trunk_conv.weight" in state:
        return "esrgan"
    if "conv_first.weight" in state:
        return "basicsr"
    return None


def _describe(keys, n: int = 6) -> str:
    keys = sorted(keys)
    more = f", ... ({len(keys)} keys)" if len(keys) > n else ""
    return ", ".join(keys[:n]) + more


def convert_state_dict(state: Mapping) -> dict[str, torch.Tensor]:
    """Rename an RRDB generator's state dict to :class:`RRDBNet`'s parameter names.

    Accepts BasicSR / Real-ESRGAN state dicts (also wrapped as ``{"params_ema": ...}`` and/or
    ``{"params": ...}``, as Real-ESRGAN saves them; ``params_ema`` is preferred), the official ESRGAN
    repository's new-arch names and its old-arch ``model.N`` names (table in the module docstring), with
    or without DataParallel ``module.`` prefixes. Tensors are returned as they are (not copied).

    Raises:
        BadArgument: the keys fit none of the layouts, or some keys do not belong to the detected one
            (named in the message), or the state is an old-arch x2/x1 model.
    """
    for wrapper in ("params_ema", "params"):
        if isinstance(state, Mapping) and isinstance(state.get(wrapper), Mapping):
            state = state[wrapper]
            break
    if not isinstance(state, Mapping):
        raise BadArgument(f"expected a state dict (str -> tensor), got {type(state).__name__}")
    odd = [repr(k) for k, v in state.items() if not (isinstance(k, str) and isinstance(v, torch.Tensor))]
    if odd:
        raise BadArgument(f"expected a state dict (str -> tensor); entries that are not: {_describe(odd)}")
    state = {k.removeprefix("module."): v for k, v in state.items()}

    layout = _layout(state)
    if layout is None:
        raise BadArgument(
            "not an RRDB generator state dict: no conv_first (BasicSR / Real-ESRGAN), RRDB_trunk (ESRGAN) "
            f"or model.0 (old ESRGAN) keys; found {_describe(state)}"
        )
    if layout == "esrgan-old" and "model.10.weight" not in state:
        convs = sorted({k.split(".")[1] for k in state if re.match(r"^model\.\d+\.(weight|bias)$", k)}, key=int)
        raise BadArgument(
            "old-arch ESRGAN state dict without model.10 (conv_last of the x4 layout); its convs outside the "
            f"trunk are {', '.join(f'model.{i}' for i in convs)}: an old-arch x2/x1 model, which RRDBNet "
            "(x4 body, pixel-unshuffle for x2/x1) cannot run"
        )

    out: dict[str, torch.Tensor] = {}
    foreign = []
    for key, value in state.items():
        for pattern, repl in _LAYOUTS[layout]:
            if pattern.match(key):
                out[pattern.sub(repl, key)] = value
                break
        else:
            foreign.append(key)
    if foreign:
        raise BadArgument(f"keys that do not belong to the {layout} RRDB layout: {_describe(foreign)}")
    if layout == "esrgan-old":  # the conv after the last RRDB is model.1.sub.{num_block}
        num_block = len({k.split(".")[3] for k in state if ".RDB" in k})
        body_conv = {k.split(".")[3] for k in state if re.match(r"^model\.1\.sub\.\d+\.(weight|bias)$", k)}
        if body_conv != {str(num_block)}:
            raise BadArgument(
                f"old-arch ESRGAN state dict with {num_block} RRDBs should have its trunk conv at "
                f"model.1.sub.{num_block}, found {', '.join(f'model.1.sub.{i}' for i in sorted(body_conv, key=int))}"
            )
    return out


def infer_config(state: Mapping[str, torch.Tensor], *, scale: int | None = None) -> dict[str, int]:
    """:class:`RRDBNet`'s constructor arguments from a state dict in its names (see
    :func:`convert_state_dict`).

    Widths come from the weight shapes, ``num_block`` from the ``body.{i}`` indices. The scale comes
    from ``conv_first``'s input channels ``c``, taking ``in_ch = out_ch``: ``c = out_ch`` is x4,
    ``4 * out_ch`` x2 and ``16 * out_ch`` x1 (3, 12, 48 for RGB). Pass ``scale`` for a model whose input
    and output channels differ; ``in_ch`` then follows from ``c``.

    Raises:
        BadArgument: a required weight is missing, or the channels fit no scale.
    """
    need = ("conv_first.weight", "conv_last.weight", "body.0.rdb1.conv1.weight")
    missing = [k for k in need if k not in state]
    if missing:
        raise BadArgument(f"cannot infer the RRDBNet config: missing {missing}; found {_describe(state)}")
    num_feat, c = state["conv_first.weight"].shape[:2]
    out_ch = state["conv_last.weight"].shape[0]
    num_grow_ch = state["body.0.rdb1.conv1.weight"].shape[0]
    num_block = len({k.split(".")[1] for k in state if k.startswith("body.")})
    if scale is None:
        fits = [s for s, f in UNSHUFFLE.items() if c == out_ch * f * f]
        if not fits:
            raise BadArgument(
                f"conv_first takes {c} channels and conv_last gives {out_ch}: no scale fits with in_ch = out_ch "
                f"(x4: {out_ch}, x2: {4 * out_ch}, x1: {16 * out_ch}); pass scale="
            )
        scale = fits[0]
    elif scale not in UNSHUFFLE or c % UNSHUFFLE[scale] ** 2:
        raise BadArgument(f"conv_first takes {c} channels, which does not fit scale={scale!r}")
    return dict(in_ch=int(c) // UNSHUFFLE[scale] ** 2, out_ch=int(out_ch), scale=scale, num_feat=int(num_feat),
                num_block=num_block, num_grow_ch=int(num_grow_ch))


def load_rrdbnet(path_or_state: str | Path | Mapping, *, scale: int | None = None) -> RRDBNet:
    """An :class:`RRDBNet` in eval mode from a checkpoint file or an in-memory state dict.

    Args:
        path_or_state: a ``.pth`` / ``.pt`` file (read with ``torch.load(weights_only=True)``), a
            ``.safetensors`` file (both through :func:`hdm.io.weights.load_state_dict_file`, which casts
            to float32), or a state dict; any layout :func:`convert_state_dict` accepts. The project
            cannot download Real-ESRGAN / ESRGAN checkpoints: the user supplies the file.
        scale: only for models whose scale cannot be read off (see :func:`infer_config`).

    Raises:
        MissingFile: no file at the path (a ``FileNotFoundError``).
        BadArgument: the state dict is not an RRDB generator, or its shapes do not fit one (a ``ValueError``).
    """
    if isinstance(path_or_state, Mapping):
        state, source = path_or_state, "state dict"
    else:
        path = Path(path_or_state)
        if not path.is_file():
            raise MissingFile(
                f"no RRDBNet checkpoint at {path}: place the .pth or .safetensors file there "
                "(the official Real-ESRGAN x4plus file is downloaded by the app's model hub when online)"
            )
        state, source = load_state_dict_file(path), str(path)
    state = convert_state_dict(state)
    config = infer_config(state, scale=scale)
    model = RRDBNet(**config)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as e:
        raise BadArgument(f"{source} does not fit RRDBNet({config}): {e}") from e
    return model.eval()


# ------------------------------------------------------------------------------------------ compact (SRVGG)

def srvgg_config(state: Mapping[str, torch.Tensor]) -> dict[str, int]:
    """:class:`~hdm.sr.archs.srvgg.SRVGGNetCompact`'s arguments from its state dict (Real-ESRGAN's names:
    ``body.{2k}`` convolutions, ``body.{2k+1}`` PReLU slopes). The scale comes from the last convolution's
    ``out_ch * scale^2`` channels with ``out_ch = in_ch``."""
    convs = sorted(int(k.split(".")[1]) for k in state if re.fullmatch(r"body\.\d+\.weight", k)
                   and state[k].ndim == 4)
    if len(convs) < 2 or convs != list(range(0, 2 * len(convs), 2)):
        raise BadArgument(f"not an SRVGGNetCompact state dict (convolutions body.0, body.2, ...); found {_describe(state)}")
    first, last = state["body.0.weight"], state[f"body.{convs[-1]}.weight"]
    in_ch, num_feat = int(first.shape[1]), int(first.shape[0])
    scale = round((last.shape[0] / in_ch) ** 0.5)
    if scale < 1 or in_ch * scale * scale != last.shape[0]:
        raise BadArgument(f"the last convolution makes {last.shape[0]} channels: not in_ch * scale^2 for in_ch {in_ch}")
    return dict(in_ch=in_ch, out_ch=in_ch, num_feat=num_feat, num_conv=len(convs) - 2, scale=scale)


def load_srvgg(state: Mapping[str, torch.Tensor], source: str = "state dict") -> SRVGGNetCompact:
    """An :class:`~hdm.sr.archs.srvgg.SRVGGNetCompact` in eval mode from a state dict in Real-ESRGAN's names."""
    config = srvgg_config(state)
    model = SRVGGNetCompact(**config)
    try:
        model.load_state_dict(dict(state), strict=True)
    except RuntimeError as e:
        raise BadArgument(f"{source} does not fit SRVGGNetCompact({config}): {e}") from e
    return model.eval()


def is_rrdb(state: Mapping[str, torch.Tensor]) -> bool:
    """Whether a state dict is an RRDB generator's in one of the layouts :func:`convert_state_dict` reads (its
    first RRDB's first convolution under any of their names)."""
    return any(re.match(r"(module\.)?(body\.0\.rdb1\.conv1|RRDB_trunk\.0\.RDB1\.conv1|model\.1\.sub\.0\.RDB1\.conv1)\.", k)
               for k in state)


def is_srvgg(state: Mapping[str, torch.Tensor]) -> bool:
    """Whether a state dict is a compact generator's: ``body.0`` a convolution, ``body.1`` a PReLU."""
    return "body.0.weight" in state and "body.1.weight" in state and state["body.1.weight"].ndim == 1


def load_sr_checkpoint(path_or_state: str | Path | Mapping) -> nn.Module:
    """An SR model in eval mode from a checkpoint: RRDB generators (:func:`load_rrdbnet`) and compact ones
    (:func:`load_srvgg`), told apart by their keys, and any other architecture spandrel knows
    (:func:`hdm.sr.spandrel_model.load_spandrel`)."""
    if isinstance(path_or_state, Mapping):
        state, source = path_or_state, "state dict"
    else:
        path = Path(path_or_state)
        if not path.is_file():
            raise MissingFile(f"no generator checkpoint at {path}")
        state, source = load_state_dict_file(path), str(path)
    if is_srvgg(state):
        return load_srvgg(state, source)
    if is_rrdb(state):
        return load_rrdbnet(state)
    return load_spandrel(state, source)


# ------------------------------------------------------------------------------------------------- ncnn

def _conv_weights(conv: nn.Conv2d, layer: Layer) -> dict[str, torch.Tensor]:
    """A Convolution layer's arrays shaped as ``conv``'s parameters (refusing a layer of another shape)."""
    w = conv.weight
    if layer.param(0) != w.shape[0] or layer.param(1) != w.shape[2] or layer.weights["weight"].size != w.numel() \
            or bool(layer.param(5)) != (conv.bias is not None):
        raise BadArgument(f"ncnn layer {layer.name} ({layer.param(0)} outputs, {layer.param(1)}x{layer.param(1)} "
                          f"kernel, {layer.weights['weight'].size} values) does not fit {tuple(w.shape)}")
    out = {"weight": torch.from_numpy(layer.weights["weight"]).reshape(w.shape)}
    if conv.bias is not None:
        out["bias"] = torch.from_numpy(layer.weights["bias"])
    return out


def _leaky(layer: Layer) -> bool:
    """Whether a Convolution applies LeakyReLU(0.2) after itself (ncnn's fused activation 9=2)."""
    return layer.param(9) == 2 and abs(float((layer.param(10, [0.0]) or [0.0])[0]) - 0.2) < 1e-6


def _rrdbnet_from_ncnn(graph: Graph) -> RRDBNet:
    convs = graph.of_type("Convolution")
    num_block, rest = divmod(len(graph.of_type("Eltwise")), 4)
    first = convs[0]
    num_feat = first.param(0)
    in_ch = first.weights["weight"].size // (num_feat * 9)
    num_grow_ch = convs[1].param(0) if len(convs) > 1 else 0
    if rest or num_block < 1 or len(convs) != 15 * num_block + 6:
        raise BadArgument(f"an RRDB generator has 4 residual sums and 15 convolutions per block, plus 6: this graph "
                          f"has {len(graph.of_type('Eltwise'))} sums and {len(convs)} convolutions")
    interps = graph.of_type("Interp")
    if len(interps) != 2 or any(i.param(0) != 1 or float(i.param(1)) != 2.0 for i in interps):
        raise BadArgument("an x4 RRDB generator upsamples twice, nearest x2 (Interp 0=1 1=2); this graph does not")
    model = RRDBNet(in_ch, convs[-1].param(0), 4, num_feat, num_block, num_grow_ch)
    leaky = [False] + [i % 5 != 4 for i in range(15 * num_block)] + [False, True, True, True, False]
    state = {}
    for (name, conv), layer, act in zip(((n, m) for n, m in model.named_modules() if isinstance(m, nn.Conv2d)),
                                        convs, leaky):
        if _leaky(layer) != act:
            raise BadArgument(f"ncnn layer {layer.name} {'lacks' if act else 'has'} the LeakyReLU that {name} "
                              f"{'has' if act else 'lacks'} in an RRDB generator")
        state.update({f"{name}.{k}": v for k, v in _conv_weights(conv, layer).items()})
    for layer in graph.of_type("Eltwise"):
        if layer.param(0) != 1 or [round(float(c), 6) for c in layer.param(1, [])] != [0.2, 1.0]:
            raise BadArgument(f"ncnn layer {layer.name} is not the residual sum 0.2 x + skip of an RRDB")
    model.load_state_dict(state, strict=True)
    return model.eval()


def _srvgg_from_ncnn(graph: Graph) -> SRVGGNetCompact:
    convs, prelus = graph.of_type("Convolution"), graph.of_type("PReLU")
    shuffles, interps = graph.of_type("PixelShuffle"), graph.of_type("Interp")
    if len(shuffles) != 1 or len(interps) != 1 or len(prelus) != len(convs) - 1 or len(convs) < 2:
        raise BadArgument(f"a compact generator is convolutions with PReLUs, one pixel shuffle and one nearest "
                          f"enlargement; this graph has {len(convs)} convolutions, {len(prelus)} PReLUs, "
                          f"{len(shuffles)} pixel shuffles and {len(interps)} resizes (a model followed by a "
                          "resize, such as realesr-animevideov3's x2 and x3 files, is read from its x4 file)")
    scale = shuffles[0].param(0)
    num_feat = convs[0].param(0)
    in_ch = convs[0].weights["weight"].size // (num_feat * 9)
    if interps[0].param(0) != 1 or float(interps[0].param(1)) != float(scale):
        raise BadArgument(f"the enlargement added to the output must be nearest x{scale} (Interp 0=1)")
    model = SRVGGNetCompact(in_ch, convs[-1].param(0) // (scale * scale), num_feat, len(convs) - 2, scale)
    state = {}
    for i, layer in enumerate(convs):
        state.update({f"body.{2 * i}.{k}": v for k, v in _conv_weights(model.body[2 * i], layer).items()})
    for i, layer in enumerate(prelus):
        if layer.weights["slope"].size != num_feat:
            raise BadArgument(f"ncnn layer {layer.name} has {layer.weights['slope'].size} slopes, not {num_feat}")
        state[f"body.{2 * i + 1}.weight"] = torch.from_numpy(layer.weights["slope"])
    model.load_state_dict(state, strict=True)
    return model.eval()


def load_ncnn(param, weights) -> nn.Module:
    """An hdm generator in eval mode, float32, from ncnn files (``.param`` and ``.bin``): an RRDB generator
    (Real-ESRGAN x4plus, x4plus-anime) as :class:`RRDBNet`, a compact one (realesr-animevideov3) as
    :class:`~hdm.sr.archs.srvgg.SRVGGNetCompact`. The graph must be exactly that network (layer by layer);
    anything else is a :class:`BadArgument` that says what differs."""
    graph = read_ncnn(param, weights)
    if graph.of_type("PReLU") or graph.of_type("PixelShuffle"):
        return _srvgg_from_ncnn(graph)
    if graph.of_type("Eltwise"):
        return _rrdbnet_from_ncnn(graph)
    raise BadArgument(f"{Path(param).name} is neither an RRDB generator nor a compact one")
