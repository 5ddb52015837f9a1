"""Run an exported SR generator with ONNX Runtime (no torch model, no checkpoint), with the same tiling
as the torch pipeline (it reuses :func:`hdm.ops.tiling.tiled_forward`, so it needs the ``hdm`` package and
torch installed, not the training code or weights). onnx and onnxruntime are the ``[export]`` extra.

Providers: TensorRT, then CUDA, then CPU - the first that works here; :attr:`OnnxSR.provider` says
which one runs. Without a GPU only the CPU provider is tried (the GPU ones would fall back anyway,
with warnings).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..errors import BadArgument
from ..formats.onnx_metadata import read_metadata
from ..ops.tiling import DEFAULT_TILE, check_tile, tiled_forward

__all__ = ["OnnxSR", "providers_here"]


def providers_here() -> list[str]:
    """The ONNX Runtime providers worth trying on this machine, best first."""
    import onnxruntime as ort  # optional: the [export] extra

    available = ort.get_available_providers()
    gpu = torch.cuda.is_available()
    wanted = (["TensorrtExecutionProvider", "CUDAExecutionProvider"] if gpu else []) + ["CPUExecutionProvider"]
    return [p for p in wanted if p in available]


class OnnxSR:
    """``OnnxSR(path)(lr) -> sr``: ``lr`` ``(N, 3, h, w)`` (or ``(h, w, 3)``) float in [0, 1] -> same layout, x scale.

    Args: ``providers`` (default :func:`providers_here`), ``tile``/``tile_pad`` as the torch pipeline
    (``tile_pad=None``: the receptive radius stored in the file, capped at 64).

    The diffusion student's file also takes ``noise``: ``OnnxSR(path)(lr, seed=0)`` draws it as
    :class:`hdm.diffusion.sampler.DiffusionSR` does (one seeded ``torch.Generator``, odd sides padded),
    so a seed gives the torch student's image; tiles cut the LR image and its noise together."""

    def __init__(self, path, providers: list[str] | None = None, tile: int | None = DEFAULT_TILE,
                 tile_pad: int | None = None):
        import onnxruntime as ort  # optional: the [export] extra

        check_tile(tile, tile_pad)

        self.path, self.meta = Path(path), read_metadata(path)
        self.session = ort.InferenceSession(str(path), providers=providers or providers_here())
        inputs = self.session.get_inputs()
        names = [i.name for i in inputs]
        if names not in (["lr"], ["lr", "noise"]) or (isinstance(inputs[0].shape[1], int) and inputs[0].shape[1] != 3):
            raise BadArgument(f"{self.path.name} does not take an 'lr' input of 3 channels (and, for the diffusion "
                             f"student, 'noise'): {[(i.name, i.shape) for i in inputs]}")
        self.takes_noise = names == ["lr", "noise"]
        self.provider = self.session.get_providers()[0]
        self.scale = int(self.meta["hdm.scale"])
        self.input_multiple = int(self.meta["hdm.input_multiple"])
        self.receptive_radius = int(self.meta["hdm.receptive_radius"])
        #: the precision the graph computes in (its input and output are float32 either way)
        self.dtypes = (torch.float16,) if self.meta.get("hdm.precision") == "fp16" else (torch.float32,)
        self.tile, self.tile_pad = tile, tile_pad

    def as_generator(self) -> "_Runner":
        """This session as a generator for the torch pipelines (``hdm.upscaling.pipeline.Upscaler``, fusion)."""
        if self.takes_noise:
            raise BadArgument(f"{self.path.name} is the diffusion student (it takes noise): call it with a seed "
                              "instead")
        return _Runner(self)

    def _run(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` ``(N, 3, h, w)``, or for the student ``(N, 3 + 3 s^2, h, w)``: the LR image and its noise stacked."""
        channels = 3 + (3 * self.scale ** 2 if self.takes_noise else 0)
        if x.dim() != 4 or x.shape[1] != channels:
            what = f"(N, 3, h, w) RGB and (N, {channels - 3}, h, w) noise" if self.takes_noise else "(N, 3, h, w) RGB"
            raise BadArgument(f"{self.path.name} takes {what}, got a tensor of shape {tuple(x.shape)}")
        x = np.ascontiguousarray(x.numpy(), dtype=np.float32)
        feed = {"lr": x[:, :3], "noise": x[:, 3:]} if self.takes_noise else {"lr": x}
        return torch.from_numpy(self.session.run(None, feed)[0])

    def __call__(self, lr: np.ndarray, seed: int = 0) -> np.ndarray:
        hwc = lr.ndim == 3
        x = torch.from_numpy(np.ascontiguousarray(lr, dtype=np.float32))
        x = x.permute(2, 0, 1)[None] if hwc else x
        h, w = x.shape[-2:]
        if self.takes_noise:  # as DiffusionSR: odd sides repeat their last row/column; noise for the whole image
            x = torch.nn.functional.pad(x, (0, w % 2, 0, h % 2), mode="replicate")
            gen = torch.Generator(device="cpu").manual_seed(int(seed))
            noise = torch.randn((x.shape[0], 3 * self.scale ** 2, *x.shape[-2:]), generator=gen)
            x = torch.cat([x, noise], dim=1)
        runner = _Runner(self)
        sr = tiled_forward(runner, x, self.scale, self.tile, self.tile_pad)[..., : h * self.scale, : w * self.scale]
        sr = sr.numpy()
        return sr[0].transpose(1, 2, 0) if hwc else sr


class _Runner:
    """The session as an :class:`hdm.sr.model.SRModel`, what :func:`hdm.ops.tiling.tiled_forward` and the
    pipelines take: a callable ``(N, 3, h, w)`` tensor -> ``(N, 3, s h, s w)`` with its scale, input multiple,
    reach and precision (and the ``eval``/``to`` of a module, which change nothing here: the session has
    its own provider)."""

    def __init__(self, sr: OnnxSR):
        self.sr, self.scale, self.dtypes = sr, sr.scale, sr.dtypes
        self.input_multiple, self.receptive_radius = sr.input_multiple, sr.receptive_radius

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.sr._run(x.cpu()).to(x.device)

    def eval(self):
        return self

    def to(self, *args, **kwargs):
        return self
