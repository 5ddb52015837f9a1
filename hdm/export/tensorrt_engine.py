"""TensorRT engines from the exported ONNX files (optional: TensorRT 10 on a CUDA machine,
``pip install "tensorrt-cu13>=10.13.2,<11"`` for the pinned torch's CUDA 13; TensorRT 11 dropped the
``BuilderFlag.FP16`` the fp16 engines are built with; docs/export.md).

:func:`build_engine` parses the ONNX file, builds an fp16 engine with one optimisation profile
(``min``/``opt``/``max`` input shapes) and serialises it. Engines only run on the GPU model and the
TensorRT version that built them, so they are cached under a key made of the ONNX file's sha256, the
GPU name, the TensorRT version, the precision and the profile: a second build with the same key loads
the cached file. :class:`TensorRTSR` runs an engine on CUDA tensors (TensorRT 10's tensor API).

Without TensorRT or without a GPU, :func:`tensorrt_status` says which is missing and the command
exits cleanly with that message.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch

from ..errors import BadArgument

__all__ = ["tensorrt_status", "engine_key", "build_engine", "TensorRTSR"]

DEFAULT_CACHE = Path.home() / ".cache" / "hdm" / "tensorrt"


def tensorrt_status() -> tuple[bool, str]:
    """``(usable, why not)``: TensorRT needs the ``tensorrt`` package and a CUDA GPU."""
    try:
        import tensorrt as trt  # optional: a CUDA machine's own install
    except ImportError:
        return False, ("the tensorrt package is not installed (on a machine with a CUDA GPU: pip install "
                       "'tensorrt-cu13>=10.13.2,<11', which fetches NVIDIA's libraries from pypi.nvidia.com)")
    if not torch.cuda.is_available():
        return False, f"TensorRT {trt.__version__} is installed but there is no CUDA GPU here"
    return True, ""


def engine_key(onnx_path, fp16: bool, profile) -> str:
    """The cache key of an engine: ONNX bytes, GPU, TensorRT version, precision and profile."""
    import tensorrt as trt  # optional: a CUDA machine's own install

    h = hashlib.sha256(Path(onnx_path).read_bytes())
    h.update(json.dumps([torch.cuda.get_device_name(), trt.__version__, fp16, [list(s) for s in profile]]).encode())
    return h.hexdigest()[:20]


def build_engine(onnx_path, out=None, min_shape=(1, 3, 16, 16), opt_shape=(1, 3, 128, 128),
                 max_shape=(1, 3, 512, 512), fp16: bool = True, workspace_gb: float = 4.0,
                 cache_dir=DEFAULT_CACHE) -> Path:
    """Build (or load from the cache) a serialised engine for ``onnx_path``; returns its path."""
    import tensorrt as trt  # optional: a CUDA machine's own install

    ok, why = tensorrt_status()
    if not ok:
        raise RuntimeError(why)
    profile_shapes = (tuple(min_shape), tuple(opt_shape), tuple(max_shape))
    key = engine_key(onnx_path, fp16, profile_shapes)
    cache = Path(cache_dir) / f"{Path(onnx_path).stem}-{key}.engine"
    target = Path(out) if out else cache
    if cache.is_file():
        if target != cache:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(cache.read_bytes())
        return target
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)  # explicit batch is the only mode in TensorRT 10
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(Path(onnx_path).read_bytes()):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise BadArgument(f"TensorRT could not parse {onnx_path}: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_gb * (1 << 30)))
    if fp16:
        config.set_flag(trt.BuilderFlag.FP16)
    profile = builder.create_optimization_profile()
    for i in range(network.num_inputs):  # lr, and the student's noise: same batch and size, own channels
        tensor = network.get_input(i)
        channels = tensor.shape[1]
        profile.set_shape(tensor.name, *[(shape[0], channels, *shape[2:]) for shape in profile_shapes])
    config.add_optimization_profile(profile)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise BadArgument(f"TensorRT could not build an engine for {onnx_path} (see its log above)")
    cache.parent.mkdir(parents=True, exist_ok=True)
    partial = cache.with_suffix(".partial")  # a killed build must not leave a corrupt cached engine
    partial.write_bytes(bytes(serialized))
    partial.replace(cache)
    if target != cache:
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(bytes(serialized))
    return target


class TensorRTSR:
    """``TensorRTSR(engine)(lr) -> sr`` on CUDA float32 tensors ``(N, 3, h, w)`` within the engine's profile."""

    def __init__(self, engine_path):
        import tensorrt as trt  # optional: a CUDA machine's own install

        ok, why = tensorrt_status()
        if not ok:
            raise RuntimeError(why)
        self.logger = trt.Logger(trt.Logger.WARNING)
        self.runtime = trt.Runtime(self.logger)  # kept alive as long as the engine
        self.engine = self.runtime.deserialize_cuda_engine(Path(engine_path).read_bytes())
        if self.engine is None:
            raise BadArgument(f"{engine_path} is not an engine this TensorRT and GPU can run (rebuild it)")
        self.context = self.engine.create_execution_context()
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        inputs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        outputs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]
        if inputs not in (["lr"], ["lr", "noise"]) or len(outputs) != 1:
            raise BadArgument(f"expected inputs lr (and noise) and one output, got {inputs} and {outputs}")
        self.input_names, self.output_name = inputs, outputs[0]
        for n in (*self.input_names, self.output_name):
            if self.engine.get_tensor_dtype(n) != trt.float32:
                raise BadArgument(f"tensor {n} is {self.engine.get_tensor_dtype(n)}, expected float32")
        self.stream = torch.cuda.Stream()

    @torch.no_grad()
    def __call__(self, *inputs: torch.Tensor) -> torch.Tensor:
        """``lr`` (and, for the diffusion student, ``noise``) as CUDA float32 tensors."""
        if len(inputs) != len(self.input_names):
            raise BadArgument(f"the engine takes {self.input_names}, got {len(inputs)} tensor(s)")
        inputs = [x.contiguous().float().cuda() for x in inputs]
        for name, x in zip(self.input_names, inputs):
            if not self.context.set_input_shape(name, tuple(x.shape)):
                lo, _, hi = self.engine.get_tensor_profile_shape(name, 0)
                raise BadArgument(f"input {tuple(x.shape)} is outside the engine's profile {tuple(lo)}..{tuple(hi)}: "
                                 "rebuild it with a wider --min/--max or use tiles")
            self.context.set_tensor_address(name, x.data_ptr())
        out = torch.empty(tuple(self.context.get_tensor_shape(self.output_name)), dtype=torch.float32, device="cuda")
        self.context.set_tensor_address(self.output_name, out.data_ptr())
        self.stream.wait_stream(torch.cuda.current_stream())  # lr is ready
        if not self.context.execute_async_v3(self.stream.cuda_stream):
            raise RuntimeError("TensorRT execution failed")
        self.stream.synchronize()
        return out
