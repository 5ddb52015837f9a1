"""hdm's ncnn conversions checked against the ncnn runtime itself (PyPI ``ncnn``, CPU, float32: no Vulkan, no
fp16 or bf16 storage or arithmetic), as the dlib network is checked against dlib."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..errors import HDMError
from ..io.cards import card_text

__all__ = ["SIZES", "ncnn_forward", "ncnn_parity", "ncnn_card"]

#: The input sizes ``(h, w)`` of the parity check.
SIZES = ((24, 32),)


def ncnn_forward(param, weights, x: np.ndarray, input_blob: str = "data", output_blob: str = "output") -> np.ndarray:
    """The ncnn runtime's output ``(C', H', W')`` float32 for one input ``x`` ``(C, H, W)`` float32."""
    try:
        import ncnn  # optional: the dev extra, only to check against ncnn itself
    except ImportError as e:
        raise HDMError("checking against ncnn needs the ncnn package: pip install ncnn (it is in hdm's dev extra)") from e
    net = ncnn.Net()
    for option in ("use_vulkan_compute", "use_fp16_storage", "use_fp16_packed", "use_fp16_arithmetic",
                   "use_bf16_storage"):
        setattr(net.opt, option, False)
    if net.load_param(str(param)) or net.load_model(str(weights)):
        raise HDMError(f"ncnn could not load {Path(param).name} / {Path(weights).name}")
    data = np.ascontiguousarray(x, dtype=np.float32)  # kept alive while ncnn reads it
    extractor = net.create_extractor()
    extractor.input(input_blob, ncnn.Mat(data))
    code, out = extractor.extract(output_blob)
    if code:
        raise HDMError(f"ncnn could not compute {output_blob} of {Path(param).name} (code {code})")
    return np.array(out, dtype=np.float32).copy()


@torch.no_grad()
def ncnn_parity(model: torch.nn.Module, param, weights, sizes=SIZES, seed: int = 0) -> float:
    """max |torch - ncnn| of ``model`` and the ncnn files on a seeded random input in [0, 1] of each size."""
    generator = torch.Generator().manual_seed(seed)
    worst = 0.0
    for h, w in sizes:
        x = torch.rand(1, 3, h, w, generator=generator)
        ours = model(x)[0].float().numpy()
        theirs = ncnn_forward(param, weights, x[0].numpy())
        if theirs.shape != ours.shape:
            raise HDMError(f"ncnn gives {theirs.shape} where torch gives {ours.shape}")
        worst = max(worst, float(np.abs(ours - theirs).max()))
    return worst



def ncnn_card(cfg, parameters: int, parity: float | None, command: str, version: str) -> str:
    """The model card of a registry model read from ncnn files in a package (``cfg``, a
    :class:`hdm.io.registry.ModelCfg`; ``parameters`` its parameter count): source, licence, how hdm reads it,
    the parity with the ncnn runtime (``parity``: max |torch - ncnn|, ``None`` when not measured) and the
    package files' sha256."""
    dist, pinned, _ = cfg.package
    args = ", ".join(f"{k} {v}" for k, v in cfg.arch_args.items())
    lines = [f"# {cfg.name}", "",
             f"{cfg.description}: {cfg.arch} x{cfg.scale} ({args}; {parameters:,} parameters). Load it with "
             f"`hdm.sr.loading.load_generator(\"{cfg.name}\")`, or `hdm upscale --general-weights {cfg.name}`; "
             "inputs RGB in [0, 1].", "",
             f"Licence: {cfg.licence} (Real-ESRGAN's weights); the `{dist}` package that carries the files is MIT.",
             "", "## Source", "",
             f"- {cfg.source}",
             f"- read from the installed `{dist}=={pinned}` (found with `importlib.util.find_spec`, never downloaded "
             "by hdm), each file checked against the sha256 below, and converted to torch on loading "
             "(`hdm.formats.ncnn`, `hdm.sr.convert.load_ncnn`): the graph must be this network layer by layer",
             "- float16 kernels in the file, float32 biases and slopes; computed in float32 by hdm", "",
             "## Parity with the ncnn runtime", "",
             (f"- max |hdm - ncnn| = {parity:.1e} on a seeded random {SIZES[0][0]}x{SIZES[0][1]} input in [0, 1] "
              f"(ncnn {version}, CPU, float32: no Vulkan, no fp16 or bf16)" if parity is not None else
              "- not measured (run the command below with --parity)"),
             f"- command: `{command}`"]
    return card_text(lines, [(f.rsplit("/", 1)[-1], digest) for f, digest in cfg.package_files])
