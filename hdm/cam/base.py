"""The shared machinery of every CAM method: hooks, input checks, one forward and one backward pass.

A method subclasses :class:`BaseCAM` and implements :meth:`BaseCAM.compute`, which turns the
activations ``A`` and gradients ``dS/dA`` of the target layers into maps. Everything else - layer
lookup, target resolution, eval mode, batching, resizing - lives here once.
"""
from __future__ import annotations

import contextlib
import warnings
from dataclasses import dataclass, field
from typing import Callable, Iterable, Sequence, Union

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from ..errors import BadArgument
from .targets import ClassifierOutputTarget

__all__ = ["RESNET_LAYERS", "BaseCAM", "CAMResult", "LayerSpec", "TargetSpec", "normalize_maps", "flat_maps", "constant_maps",
           "upsample_maps", "eval_mode", "FLAT_RTOL"]

LayerSpec = Union[str, nn.Module]
TargetSpec = Union[int, Callable[[torch.Tensor], torch.Tensor]]

#: pytorch-grad-cam's min-max convention: ``(x - min) / (max - min + 1e-7)``.
#: The four stages of a torchvision ResNet: the layers hdm's CAMs aggregate by default.
RESNET_LAYERS = ("layer1", "layer2", "layer3", "layer4")
NORM_EPS = 1e-7
#: A map whose values spread over less than this fraction of its largest magnitude is flat: no spatial evidence
#: survives the float32 rounding of the channel sums that built it (a sum over 2048 channels may be off by
#: ~2e-4 of its magnitude), so stretching it to [0, 1] would show rounding noise as a picture.
FLAT_RTOL = 1e-3

# Leaf modules through which a score stays piecewise linear in an earlier activation (a module of another
# class says so with a class attribute ``piecewise_linear = True``).
_PIECEWISE_LINEAR = (
    nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.PReLU, nn.Hardtanh, nn.Identity, nn.Flatten, nn.Dropout,
    nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear, nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d,
    nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d, nn.ZeroPad2d,
)


@dataclass
class CAMResult:
    """What a CAM call computed.

    Attributes:
        cam: ``(B, H, W)`` float32 in [0, 1] at input resolution.
        layer_maps: per target layer name, the layer's map ``(B, h, w)`` at feature resolution after
            ReLU and before any normalisation or resizing.
        categories: the explained class per image (``None`` for a custom score function).
        scores: ``(B,)`` explained scores S (e.g. the class logit).
        logits: ``(B, num_classes)`` model outputs.
    """

    cam: np.ndarray
    layer_maps: dict[str, np.ndarray]
    categories: list
    scores: np.ndarray
    logits: np.ndarray
    extras: dict = field(default_factory=dict)

    @property
    def flat(self) -> np.ndarray:
        """``(B,)`` bool: the map has no spatial evidence (it is all zeros: nothing positive, or constant to
        float precision before normalisation, :func:`flat_maps`). Say so rather than show it."""
        return constant_maps(self.cam)


def constant_maps(maps) -> np.ndarray:
    """``(B,)`` bool for finished maps ``(B, H, W)`` (an array): each is one value everywhere. A normalised map
    is constant exactly when it is all zeros, which is how :func:`normalize_maps` returns a flat one."""
    flat = np.asarray(maps).reshape(len(maps), -1)
    return flat.max(axis=1) == flat.min(axis=1)


def flat_maps(maps: torch.Tensor, rtol: float = FLAT_RTOL) -> torch.Tensor:
    """``(B,)`` bool for maps ``(B, h, w)``: ``max - min <= rtol * max |value|`` (all-zero maps included)."""
    flat = maps.reshape(maps.shape[0], -1)
    lo, hi = flat.min(dim=1).values, flat.max(dim=1).values
    return (hi - lo) <= rtol * torch.maximum(hi.abs(), lo.abs())


def normalize_maps(maps: torch.Tensor, eps: float = NORM_EPS) -> torch.Tensor:
    """Min-max normalise each map of ``(B, h, w)`` to [0, 1]: ``(x - min) / (max - min + eps)``; a flat map
    (:func:`flat_maps`) becomes all zeros instead of its rounding noise stretched to [0, 1].

    ``eps = 1e-7`` is pytorch-grad-cam's ``scale_cam_image`` (it dims a map whose range is near 1e-7, e.g. a
    layer with tiny gradients); ``eps = 0`` normalises whatever the map's magnitude (what a display wants)."""
    flat = maps.reshape(maps.shape[0], -1)
    lo = flat.min(dim=1, keepdim=True).values
    out = flat - lo
    hi = out.max(dim=1, keepdim=True).values
    out = out / (hi + eps).clamp_min(torch.finfo(out.dtype).tiny)
    return torch.where(flat_maps(maps)[:, None], torch.zeros_like(out), out).reshape(maps.shape)


def upsample_maps(maps: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear resize of ``(B, h, w)`` maps to ``size = (H, W)`` (half-pixel centres, as cv2.resize)."""
    if tuple(maps.shape[-2:]) == tuple(size):
        return maps
    return F.interpolate(maps[:, None], size=size, mode="bilinear", align_corners=False)[:, 0]


@contextlib.contextmanager
def eval_mode(model: nn.Module):
    """Put ``model`` in eval mode for the block and restore every submodule's own mode after."""
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield model
    finally:
        for m, training in modes:
            m.training = training


def _layer_names(model: nn.Module) -> list[str]:
    return [name for name, _ in model.named_modules() if name]


def _valid_layers_message(model: nn.Module) -> str:
    names = _layer_names(model)
    if len(names) > 40:  # list the blocks, not every leaf
        names = [n for n, m in model.named_modules() if n and any(True for _ in m.children())]
        return ", ".join(names) + " (and any dotted path of model.named_modules())"
    return ", ".join(names)


def resolve_layers(model: nn.Module, target_layers) -> tuple[list[nn.Module], list[str]]:
    """Turn names or modules into ``(modules, names)``, with a clear error for unknown ones."""
    if target_layers is None or (isinstance(target_layers, (list, tuple)) and len(target_layers) == 0):
        raise BadArgument("target_layers is empty: give at least one layer (a module of the model or its name)")
    if isinstance(target_layers, (str, nn.Module)):
        target_layers = [target_layers]
    module_names = {id(m): n for n, m in model.named_modules()}
    modules, names = [], []
    for layer in target_layers:
        if isinstance(layer, str):
            try:
                module = model.get_submodule(layer)
            except AttributeError:
                module = None
            if module is None or layer == "":
                raise BadArgument(f"unknown layer {layer!r}; valid layer names: {_valid_layers_message(model)}")
            name = layer
        elif isinstance(layer, nn.Module):
            if id(layer) not in module_names:
                raise BadArgument(f"target layer {type(layer).__name__} is not a submodule of the model")
            module, name = layer, module_names[id(layer)] or "<model>"
        else:
            raise TypeError(f"a target layer must be a module or a layer name, got {type(layer).__name__}")
        if name in names:
            raise BadArgument(f"layer {name!r} is listed twice in target_layers")
        modules.append(module)
        names.append(name)
    return modules, names


class _Recorder:
    """Forward hooks that keep each target layer's output (with its graph) for one forward pass."""

    def __init__(self, modules: Sequence[nn.Module], names: Sequence[str]):
        self.names = list(names)
        self.outputs: list[list[torch.Tensor]] = [[] for _ in modules]
        self.handles = [m.register_forward_hook(self._hook(i)) for i, m in enumerate(modules)]

    def _hook(self, i):
        def hook(module, inputs, output):
            self.outputs[i].append(output)

        return hook

    def activations(self) -> list[torch.Tensor]:
        acts = []
        for name, outs in zip(self.names, self.outputs):
            if len(outs) != 1:
                what = "did not run" if not outs else f"ran {len(outs)} times"
                raise BadArgument(f"target layer {name!r} {what} in the forward pass; choose a layer that runs "
                                  "exactly once")
            a = outs[0]
            if not isinstance(a, torch.Tensor) or a.dim() != 4:
                shape = tuple(a.shape) if isinstance(a, torch.Tensor) else type(a).__name__
                raise BadArgument(f"target layer {name!r} must output a (B, K, h, w) tensor, got {shape}")
            acts.append(a)
        return acts

    def remove(self):
        for h in self.handles:
            h.remove()


class BaseCAM:
    """Base of all CAM methods: ``cam = Method(model, target_layers); maps = cam(x, targets)``.

    Args:
        model: a classifier returning ``(B, num_classes)`` scores.
        target_layers: modules of ``model`` or their names (``"layer4"``, ``"layer3.5"``); one or many.
    """

    #: Whether the method's closed forms assume a score piecewise linear in the activations.
    needs_piecewise_linear = False

    def __init__(self, model: nn.Module, target_layers: Iterable[LayerSpec] | LayerSpec):
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        self.model = model
        self.target_layers, self.layer_names = resolve_layers(model, target_layers)
        if self.needs_piecewise_linear:
            self._warn_if_not_piecewise_linear()

    # -- the public API -------------------------------------------------------------------------
    def __call__(self, input_tensor: torch.Tensor, targets: Sequence[TargetSpec] | None = None) -> np.ndarray:
        """Maps ``(B, H, W)`` float32 in [0, 1] for ``input_tensor`` ``(B, C, H, W)``.

        ``targets``: one per image (class index or score callable); ``None`` explains the top class.
        """
        return self.explain(input_tensor, targets, keep_maps=False).cam

    def explain(self, input_tensor: torch.Tensor, targets: Sequence[TargetSpec] | None = None, keep_maps: bool = True) -> CAMResult:
        """Like ``__call__`` but returns a :class:`CAMResult` with the intermediate quantities."""
        x = self._check_input(input_tensor)
        recorder = _Recorder(self.target_layers, self.layer_names)
        try:
            with eval_mode(self.model), torch.enable_grad():
                x = x.detach().clone().requires_grad_(True)  # a graph even for frozen models
                logits = self.model(x)
                if not isinstance(logits, torch.Tensor) or logits.dim() != 2:
                    shape = tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(logits).__name__
                    raise BadArgument(f"the model must return (B, num_classes) scores, got {shape}")
                acts = recorder.activations()
                score_fns, categories = self._resolve_targets(targets, logits)
                scores = torch.stack([self._score(fn, logits[i]) for i, fn in enumerate(score_fns)])
                grads = self._gradients(scores, logits, acts, categories)
        finally:
            recorder.remove()
        acts = [a.detach() for a in acts]
        scores = scores.detach()
        result = self.compute(acts, grads, scores, tuple(x.shape[-2:]), keep_maps)
        result.categories = categories
        result.scores = scores.float().cpu().numpy()
        result.logits = logits.detach().float().cpu().numpy()
        return result

    # -- what a method implements ---------------------------------------------------------------
    def compute(self, activations: list[torch.Tensor], gradients: list[torch.Tensor], scores: torch.Tensor,
                input_size: tuple[int, int], keep_maps: bool) -> CAMResult:
        """Maps from the target layers' activations ``A`` and gradients ``dS/dA`` (each ``(B, K, h, w)``)."""
        raise NotImplementedError

    def _gradients(self, scores: torch.Tensor, logits: torch.Tensor, acts: list[torch.Tensor], categories: list):
        """What :meth:`compute` receives as ``gradients``: ``dS/dA`` ``(B, K, h, w)`` per target layer, detached."""
        return [g.detach() for g in torch.autograd.grad(scores.sum(), acts)]

    # -- helpers --------------------------------------------------------------------------------
    @staticmethod
    def _result(cam: torch.Tensor, layer_maps: dict[str, torch.Tensor], **extras) -> CAMResult:
        return CAMResult(
            cam=cam.float().cpu().numpy().astype(np.float32),
            layer_maps={k: v.float().cpu().numpy() for k, v in layer_maps.items()},
            categories=[], scores=np.zeros(0, np.float32), logits=np.zeros((0, 0), np.float32), extras=extras,
        )

    def _device(self) -> torch.device:
        for p in self.model.parameters():
            return p.device
        return torch.device("cpu")

    def _check_input(self, x) -> torch.Tensor:
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"input_tensor must be a torch.Tensor, got {type(x).__name__}")
        if x.dim() != 4:
            hint = " (add a batch dimension: x.unsqueeze(0))" if x.dim() == 3 else ""
            raise BadArgument(f"input_tensor must be 4-D (B, C, H, W), got shape {tuple(x.shape)}{hint}")
        if x.shape[0] == 0:
            raise BadArgument("input_tensor has an empty batch")
        if not torch.is_floating_point(x):
            raise TypeError(f"input_tensor must be a floating-point tensor, got {x.dtype}")
        return x.to(self._device())

    @staticmethod
    def _resolve_targets(targets, logits: torch.Tensor):
        batch, num_classes = logits.shape
        if targets is None:
            categories = logits.argmax(dim=1).tolist()
            return [ClassifierOutputTarget(c) for c in categories], categories
        if isinstance(targets, (int, np.integer)) or callable(targets):
            raise TypeError("targets must be a list with one entry per image (or None for the top class)")
        targets = list(targets)
        if len(targets) != batch:
            raise BadArgument(f"got {len(targets)} targets for a batch of {batch} images; give exactly one target "
                              "per image")
        fns, categories = [], []
        for t in targets:
            category = t if isinstance(t, (int, np.integer)) else getattr(t, "category", None)
            if isinstance(t, bool) or (category is not None and not isinstance(category, (int, np.integer))):
                raise TypeError(f"a target must be a class index or a score callable, got {t!r}")
            if category is not None and not 0 <= int(category) < num_classes:
                raise BadArgument(f"class index {int(category)} is out of range: the model has {num_classes} classes "
                                  f"(0..{num_classes - 1})")
            if isinstance(t, (int, np.integer)):
                t = ClassifierOutputTarget(int(t))
            elif not callable(t):
                raise TypeError(f"a target must be a class index or a score callable, got {t!r}")
            fns.append(t)
            categories.append(None if category is None else int(category))
        return fns, categories

    @staticmethod
    def _score(fn, output: torch.Tensor) -> torch.Tensor:
        s = fn(output)
        if not isinstance(s, torch.Tensor) or s.numel() != 1:
            raise BadArgument(f"target {fn!r} must return one score per image, got {s!r}")
        return s.reshape(())

    def _warn_if_not_piecewise_linear(self) -> None:
        others = sorted({type(m).__name__ for m in self.model.modules()
                         if not any(True for _ in m.children()) and not isinstance(m, _PIECEWISE_LINEAR)
                         and not getattr(m, "piecewise_linear", False)})
        if others:
            warnings.warn(
                f"{type(self).__name__}: the closed-form higher derivatives are exact when the score is piecewise "
                f"linear in the activations; this model also has {', '.join(others)}, for which they are the "
                "Grad-CAM++ approximation (second derivatives of the score taken as zero).",
                stacklevel=3,
            )
