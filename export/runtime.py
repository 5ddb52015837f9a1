"""Run an exported SR generator with ONNX Runtime (no torch model, no checkpoint), with the same tiling
as the torch pipeline (it reuses :func:`hdm.sr.tiling.tiled_forward`, so it needs the ``hdm`` package and
torch installed, not the training code or weights).

Providers: TensorRT, then CUDA, then CPU - the first that works here; :attr:`OnnxSR.provider` says
which one runs. Without a GPU only the CPU provider is tried (the GPU ones would fall back anyway,
with warnings).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from .to_onnx import read_metadata

__all__ = ["OnnxSR", "providers_here"]


def providers_here() -> list[str]:
    """The ONNX Runtime providers worth trying on this machine, best first."""
    import onnxruntime as ort

    available = ort.get_available_providers()
    gpu = torch.cuda.is_available()
    wanted = (["TensorrtExecutionProvider", "CUDAExecutionProvider"] if gpu else []) + ["CPUExecutionProvider"]
    return [p for p in wanted if p in available]


class OnnxSR:
    """``OnnxSR(path)(lr) -> sr``: ``lr`` ``(N, 3, h, w)`` (or ``(h, w, 3)``) float in [0, 1] -> same layout, x scale.

    Args: ``providers`` (default :func:`providers_here`), ``tile``/``tile_pad`` as the torch pipeline
    (``tile_pad=None``: the receptive radius stored in the file, capped at 64)."""

    def __init__(self, path, providers: list[str] | None = None, tile: int | None = 512, tile_pad: int | None = None):
        import onnxruntime as ort

        self.path, self.meta = Path(path), read_metadata(path)
        self.session = ort.InferenceSession(str(path), providers=providers or providers_here())
        inputs = self.session.get_inputs()
        if len(inputs) != 1 or inputs[0].name != "lr" or (isinstance(inputs[0].shape[1], int) and inputs[0].shape[1] != 3):
            raise ValueError(f"{self.path.name} does not take one 'lr' input of 3 channels: "
                             f"{[(i.name, i.shape) for i in inputs]}")
        self.provider = self.session.get_providers()[0]
        self.scale = int(self.meta["hdm.scale"])
        self.input_multiple = int(self.meta.get("hdm.input_multiple", 1))
        self.receptive_radius = int(self.meta.get("hdm.receptive_radius", 16))
        self.tile, self.tile_pad = tile, tile_pad

    def as_generator(self) -> "_Runner":
        """This session as a generator for the torch pipelines (``hdm.sr.pipeline.Upscaler``, fusion)."""
        return _Runner(self)

    def _run(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(f"{self.path.name} takes (N, 3, h, w) RGB input, got {tuple(x.shape)}")
        out = self.session.run(None, {"lr": np.ascontiguousarray(x.numpy(), dtype=np.float32)})[0]
        return torch.from_numpy(out)

    def __call__(self, lr: np.ndarray) -> np.ndarray:
        from hdm.sr.tiling import tiled_forward

        hwc = lr.ndim == 3
        x = torch.from_numpy(np.ascontiguousarray(lr, dtype=np.float32))
        x = x.permute(2, 0, 1)[None] if hwc else x
        sr = tiled_forward(self.as_generator(), x, self.scale, self.tile, self.tile_pad).numpy()
        return sr[0].transpose(1, 2, 0) if hwc else sr


class _Runner:
    """What :func:`hdm.sr.tiling.tiled_forward` and the hdm pipelines need of a generator: a callable
    ``(N, 3, h, w)`` tensor -> ``(N, 3, s h, s w)`` with its scale, input multiple and reach (and the
    ``eval``/``to`` of a module, which change nothing here: the session has its own provider)."""

    def __init__(self, sr: OnnxSR):
        self.sr, self.scale = sr, sr.scale
        self.input_multiple, self.receptive_radius = sr.input_multiple, sr.receptive_radius

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.sr._run(x.cpu()).to(x.device)

    def eval(self):
        return self

    def to(self, *args, **kwargs):
        return self
