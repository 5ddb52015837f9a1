"""ESRGAN's RRDB generator (Wang et al., ECCVW 2018) and loading of its public checkpoints.

:class:`RRDBNet` is BasicSR / Real-ESRGAN's ``RRDBNet``, parameter name for parameter name, so their
``.pth`` files load as they are. Checkpoints of the official ESRGAN repository come in two older
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
import torch.nn.functional as F

from ..errors import BadArgument, MissingFile
from ..io.weights import load_state_dict_file

__all__ = ["PRESETS", "RRDB", "RRDBNet", "ResidualDenseBlock", "convert_state_dict", "infer_config", "load_rrdbnet"]

#: Named sizes: ``"esrgan"`` is the paper's generator (16,697,987 parameters at x4, RGB), ``"compact"``
#: the project's small one (578,755 parameters; see :meth:`RRDBNet.compact`).
PRESETS: dict[str, dict[str, int]] = {
    "esrgan": dict(num_feat=64, num_block=23, num_grow_ch=32),
    "compact": dict(num_feat=32, num_block=3, num_grow_ch=16),
}

#: Pixel-unshuffle factor of the input by scale: ``conv_first`` takes ``in_ch * factor**2`` channels.
_UNSHUFFLE = {4: 1, 2: 2, 1: 4}


class ResidualDenseBlock(nn.Module):
    """Five densely connected 3x3 convs; returns ``x + 0.2 * conv5(...)``, shape of ``x`` kept."""

    def __init__(self, num_feat: int = 64, num_grow_ch: int = 32):
        super().__init__()
        f, g = num_feat, num_grow_ch
        self.conv1 = nn.Conv2d(f, g, 3, 1, 1)
        self.conv2 = nn.Conv2d(f + g, g, 3, 1, 1)
        self.conv3 = nn.Conv2d(f + 2 * g, g, 3, 1, 1)
        self.conv4 = nn.Conv2d(f + 3 * g, g, 3, 1, 1)
        self.conv5 = nn.Conv2d(f + 4 * g, f, 3, 1, 1)
        # BasicSR's init: Kaiming normal scaled by 0.1, zero bias, so that each block starts close to
        # the identity and the deep trunk trains stably.
        for conv in (self.conv1, self.conv2, self.conv3, self.conv4, self.conv5):
            nn.init.kaiming_normal_(conv.weight)
            with torch.no_grad():
                conv.weight.mul_(0.1)
            nn.init.zeros_(conv.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x1 = _lrelu(self.conv1(x))
        x2 = _lrelu(self.conv2(torch.cat((x, x1), 1)))
        x3 = _lrelu(self.conv3(torch.cat((x, x1, x2), 1)))
        x4 = _lrelu(self.conv4(torch.cat((x, x1, x2, x3), 1)))
        x5 = self.conv5(torch.cat((x, x1, x2, x3, x4), 1))
        return x + 0.2 * x5


class RRDB(nn.Module):
    """Residual in residual dense block: three :class:`ResidualDenseBlock` and a 0.2-scaled skip."""

    def __init__(self, num_feat: int = 64, num_grow_ch: int = 32):
        super().__init__()
        self.rdb1 = ResidualDenseBlock(num_feat, num_grow_ch)
        self.rdb2 = ResidualDenseBlock(num_feat, num_grow_ch)
        self.rdb3 = ResidualDenseBlock(num_feat, num_grow_ch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + 0.2 * self.rdb3(self.rdb2(self.rdb1(x)))


class RRDBNet(nn.Module):
    """ESRGAN's generator: ``conv_first``, ``num_block`` RRDBs and ``conv_body`` with a long skip, then
    two nearest-neighbour x2 upsamplings each followed by a conv, ``conv_hr`` and ``conv_last``.

    The network is x4 natively. As in Real-ESRGAN, x2 and x1 first pixel-unshuffle the input by 2 and 4
    (``conv_first`` then takes ``in_ch * 4`` or ``in_ch * 16`` channels), so all scales share the
    x4 body and tail and the same checkpoint format.

    Args:
        in_ch, out_ch: image channels (3 for RGB).
        scale: 4, 2 or 1.
        num_feat: trunk width (64 in ESRGAN).
        num_block: number of RRDBs (23 in ESRGAN).
        num_grow_ch: growth channels of each dense conv (32 in ESRGAN).

    Input ``(B, in_ch, H, W)`` in [0, 1]; output ``(B, out_ch, scale*H, scale*W)``, not clamped.
    At x2 / x1, ``H`` and ``W`` must be multiples of 2 / 4. An :class:`hdm.sr.model.SRModel`: it says its
    ``scale``, ``input_multiple``, ``receptive_radius`` and ``dtypes``.
    """

    #: Precisions it computes in (cast the model and its input alike): float32, float16 (GPU, ONNX fp16
    #: export), bfloat16 (CPU autocast).
    dtypes = (torch.float32, torch.float16, torch.bfloat16)
    #: Its one input, as an exported graph names it (:mod:`hdm.export.to_onnx`).
    input_names = ("lr",)

    def __init__(self, in_ch: int = 3, out_ch: int = 3, scale: int = 4, num_feat: int = 64,
                 num_block: int = 23, num_grow_ch: int = 32):
        super().__init__()
        if scale not in _UNSHUFFLE:
            raise BadArgument(f"RRDBNet: scale must be 4, 2 or 1, got {scale!r}")
        sizes = dict(in_ch=in_ch, out_ch=out_ch, num_feat=num_feat, num_block=num_block, num_grow_ch=num_grow_ch)
        bad = {k: v for k, v in sizes.items() if not isinstance(v, int) or v < 1}
        if bad:
            raise BadArgument(f"RRDBNet: sizes must be positive integers, got {bad}")
        self.in_ch, self.out_ch, self.scale = in_ch, out_ch, scale
        self.num_feat, self.num_block, self.num_grow_ch = num_feat, num_block, num_grow_ch

        self.conv_first = nn.Conv2d(in_ch * _UNSHUFFLE[scale] ** 2, num_feat, 3, 1, 1)
        self.body = nn.Sequential(*(RRDB(num_feat, num_grow_ch) for _ in range(num_block)))
        self.conv_body = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.conv_up1 = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.conv_up2 = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.conv_hr = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.conv_last = nn.Conv2d(num_feat, out_ch, 3, 1, 1)

    @classmethod
    def compact(cls, scale: int = 4, *, in_ch: int = 3, out_ch: int = 3) -> RRDBNet:
        """The project's small generator, ``PRESETS["compact"]``: 32 features, 3 RRDBs, growth 16.

        578,755 parameters at x4 with RGB in and out (2.3 MB in float32), 3.5 % of ESRGAN's
        16,697,987, and about 0.9 M multiply-adds per low-resolution pixel against ESRGAN's 17.9 M: small
        enough to train on 2 CPU cores and to ship in the repository. Why these sizes: halving the width
        (64 -> 32 features, 32 -> 16 growth channels) quarters each block's parameters, and 3 RRDBs
        still make the trunk 47 3x3 convs deep (45 in the RRDBs): an output pixel sees up to 50 LR
        pixels away (:attr:`receptive_radius`), more than a whole 30 px LR patch (the paper's 120 px HR
        crops at x4). At x2 / x1 only
        ``conv_first`` grows, by 2,592 / 12,960 parameters.
        """
        return cls(in_ch, out_ch, scale, **PRESETS["compact"])

    @property
    def receptive_radius(self) -> int:
        """How far (input pixels) an output pixel can see: ``f (15 num_block + 5)`` with ``f`` the
        pixel-unshuffle factor. 15 3x3 convs per RRDB, ``conv_first`` and ``conv_body``, and at most 3
        more body pixels from the four convs after the two nearest x2 upsamplings (a bound: exact
        tiling needs ``tile_pad`` >= this, :mod:`hdm.ops.tiling`)."""
        return _UNSHUFFLE[self.scale] * (15 * self.num_block + 5)

    @property
    def input_multiple(self) -> int:
        """Input sides must be multiples of this (the pixel-unshuffle factor: 1, 2 or 4)."""
        return _UNSHUFFLE[self.scale]

    def example_inputs(self, h: int, w: int, n: int = 1, generator=None) -> tuple[torch.Tensor]:
        """A random input ``(n, in_ch, h, w)`` in [0, 1] (for export and parity checks)."""
        return (torch.rand(n, self.in_ch, h, w, generator=generator),)

    @property
    def config(self) -> dict[str, int]:
        """The constructor arguments, as :func:`infer_config` returns them for a checkpoint."""
        return dict(in_ch=self.in_ch, out_ch=self.out_ch, scale=self.scale, num_feat=self.num_feat,
                    num_block=self.num_block, num_grow_ch=self.num_grow_ch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or x.shape[1] != self.in_ch:
            raise BadArgument(f"RRDBNet expects (B, {self.in_ch}, H, W), got shape {tuple(x.shape)}")
        factor = _UNSHUFFLE[self.scale]
        if factor > 1:
            h, w = x.shape[-2:]
            if h % factor or w % factor:
                raise BadArgument(
                    f"RRDBNet x{self.scale} pixel-unshuffles its input by {factor}: H and W must be "
                    f"multiples of {factor}, got {h}x{w} (pad or crop the image)"
                )
            x = F.pixel_unshuffle(x, factor)  # same channel order as BasicSR's pixel_unshuffle
        feat = self.conv_first(x)
        feat = feat + self.conv_body(self.body(feat))
        feat = _lrelu(self.conv_up1(F.interpolate(feat, scale_factor=2, mode="nearest")))
        feat = _lrelu(self.conv_up2(F.interpolate(feat, scale_factor=2, mode="nearest")))
        return self.conv_last(_lrelu(self.conv_hr(feat)))


def _lrelu(x: torch.Tensor) -> torch.Tensor:
    # Not in place (BasicSR's is): forward hooks on the convs, as the toolkit's CAMs use, must see the
    # conv outputs unchanged.
    return F.leaky_relu(x, 0.2)


# ---------------------------------------------------------------------------------------- checkpoints

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
        fits = [s for s, f in _UNSHUFFLE.items() if c == out_ch * f * f]
        if not fits:
            raise BadArgument(
                f"conv_first takes {c} channels and conv_last gives {out_ch}: no scale fits with in_ch = out_ch "
                f"(x4: {out_ch}, x2: {4 * out_ch}, x1: {16 * out_ch}); pass scale="
            )
        scale = fits[0]
    elif scale not in _UNSHUFFLE or c % _UNSHUFFLE[scale] ** 2:
        raise BadArgument(f"conv_first takes {c} channels, which does not fit scale={scale!r}")
    return dict(in_ch=int(c) // _UNSHUFFLE[scale] ** 2, out_ch=int(out_ch), scale=scale, num_feat=int(num_feat),
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
