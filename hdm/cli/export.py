"""``hdm export <onnx|ncnn|tensorrt|bench>``: deployment builds of hdm's SR generators. Each parses its
arguments and calls the library (:mod:`hdm.export`); hdm's errors end as one line (:func:`hdm.cli.main`)."""
from __future__ import annotations

import tempfile
from pathlib import Path

import torch

from ..bench import report
from ..bench.ncnn import ncnn_parity
from ..errors import BadArgument
from ..export import speed
from ..export.tensorrt_engine import TensorRTSR, build_engine, tensorrt_status
from ..export.to_ncnn import export_ncnn
from ..export.to_onnx import check_parity, export_onnx, load_exportable
from ..formats.onnx_metadata import read_metadata
from ..io.cards import sha256
from ..io.registry import DEFAULTS, exported_file
from ..io.weights import resolve_weights
from ..sr.loading import load_generator

__all__ = ["add_parsers"]

#: ``--model`` names of the shipped generators (``all``: every one).
MODELS = ("general", "face", "diffusion")


def _generators(which: str) -> list[tuple[str, Path]]:
    """``(name, weights)`` for ``general``, ``face``, ``diffusion`` (the one-step student), ``all`` (those
    three), a shipped model's registry name or a file."""
    names = MODELS if which == "all" else (which,)
    return [(name, resolve_weights(DEFAULTS.get(name, name))) for name in names]


def _models(which: str):
    """``[(name, weights, model)]`` for ``--model``."""
    return [(name if name in MODELS else Path(name).stem, weights, load_exportable(weights))
            for name, weights in _generators(which)]


def _cmd_onnx(args) -> int:
    precisions = [False, True] if args.fp16 == "both" else [args.fp16 == "yes"]
    out = Path(args.out)
    count = (len(MODELS) if args.model == "all" else 1) * len(precisions)
    if out.suffix == ".onnx" and count > 1:
        raise BadArgument(f"--out {out} names one file, but --model {args.model} --fp16 {args.fp16} makes {count} "
                          "files: give a folder, or one --model and --fp16 yes or no")
    failed = False
    for name, weights, model in _models(args.model):
        for fp16 in precisions:
            file = exported_file(name, fp16) if name in MODELS else f"{name}_x{model.scale}_{'fp16' if fp16 else 'fp32'}.onnx"
            path = out if out.suffix == ".onnx" else out / file
            export_onnx(model, path, name, model.scale, sha256(weights), fp16=fp16)
            check = check_parity(model, path, fp16=fp16)
            worst = max(check.max_abs.values())
            verdict = "ok" if check.passed else "FAILED"
            bound = f"<= {check.tolerance:g}" if check.tolerance is not None else "(reported)"
            print(f"{path}: onnx.checker ok; ONNX Runtime vs torch max |diff| {worst:.2e} {bound} on "
                  f"{', '.join(check.max_abs)}: {verdict}")
            failed |= not check.passed
    return 1 if failed else 0


#: The largest max |ncnn - torch| that ``hdm export ncnn --check`` accepts (float32 weights and arithmetic).
NCNN_TOLERANCE = 1e-4


def _cmd_ncnn(args) -> int:
    names = ("general", "face") if args.model == "all" else (args.model,)
    failed = False
    for name in names:
        model = load_generator(name)
        stem = name if name in DEFAULTS else Path(name).stem
        param, weights = export_ncnn(model, Path(args.out) / f"{stem}_x{model.scale}")
        line = f"wrote {param} and {weights.name}"
        if args.check:
            worst = ncnn_parity(model, param, weights)
            ok = worst <= NCNN_TOLERANCE
            line += f"; ncnn runtime vs torch max |diff| {worst:.1e} <= {NCNN_TOLERANCE:g}: {'ok' if ok else 'FAILED'}"
            failed |= not ok
        print(line)
    return 1 if failed else 0


def _cmd_tensorrt(args) -> int:
    read_metadata(args.onnx)  # an ONNX file written by `hdm export onnx`, else a clear error
    ok, why = tensorrt_status()
    if not ok:
        print(f"TensorRT engines cannot be built here: {why}. Nothing was done.")
        return 0
    size = lambda s: (1, 3, *(int(v) for v in s.split("x")))  # noqa: E731
    path = build_engine(args.onnx, args.out, size(args.min), size(args.opt), size(args.max), fp16=not args.fp32)
    print(f"wrote {path}")
    return 0


def _cmd_bench(args) -> int:
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    jobs = _models(args.model)
    trt_ok, trt_why = tensorrt_status()
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, weights, model in jobs:
            fp32 = export_onnx(model, Path(tmp) / f"{name}_fp32.onnx", name, model.scale)
            fp16 = export_onnx(model, Path(tmp) / f"{name}_fp16.onnx", name, model.scale, fp16=True)

            def engine(size, fp32=fp32):
                if not trt_ok:
                    return None
                shape = (1, 3, size, size)
                return TensorRTSR(build_engine(fp32, None, shape, shape, shape, fp16=True))
            results[f"{name} ({weights.name})"] = speed.bench_model(model, fp32, fp16, tuple(args.sizes), args.repeats,
                                                                  device, engine, weights=weights)
    header = report.header(f"Export speed: SR generators on {device}",
                           "random input of each size, batch 1; " + ("TensorRT fp16 included" if trt_ok
                                                                      else f"no TensorRT: {trt_why}"))
    text = speed.markdown(results, header, speed.matmul_gflops(device), device)
    print(text)
    if args.out:
        print(f"wrote {report.write(args.out, text)}")
    return 0


def add_parsers(parent) -> None:
    """Register ``export`` and its subcommands on ``parent`` (the ``hdm`` subparsers object)."""
    top = parent.add_parser("export", help="ONNX / ncnn / TensorRT builds of the SR generators, checked against torch; "
                                           "speed table",
                            description=__doc__)
    top.set_defaults(func=lambda args: top.print_help() or 0)
    sub = top.add_subparsers(dest="export_command", metavar="<onnx|ncnn|tensorrt|bench>")
    p = sub.add_parser("onnx", help="export SR generators to ONNX and check them against torch",
                       description="Export to ONNX (opset 17, dynamic batch/height/width, hdm metadata), then "
                                   "onnx.checker and ONNX Runtime vs torch on several sizes (fp32: max |diff| <= 1e-4).")
    p.add_argument("--model", default="all",
                   help="general, face, diffusion (the one-step student), all (the shipped ones), a shipped name or "
                        "a checkpoint (RRDBNet or hdm diffusion student)")
    p.add_argument("--out", default="exports", help="output folder, or a .onnx file for one model and one precision "
                                                    "(--model general --fp16 no --out general.onnx)")
    p.add_argument("--fp16", default="both", choices=["no", "yes", "both"], help="precision(s) to export")
    p.set_defaults(func=_cmd_onnx)
    p = sub.add_parser("ncnn", help="export SR generators to ncnn (.param + .bin) for the Vulkan upscalers",
                       description="Write ncnn files of hdm's generators (x4 RRDBNet, SRVGGNetCompact) in the layout of "
                                   "Real-ESRGAN's own: input blob 'data' (RGB in [0, 1]), output blob 'output', float32 "
                                   "weights. realesrgan-ncnn-vulkan, Upscayl and chaiNNer run them. --check compares the "
                                   "ncnn runtime's output with torch's (pip install ncnn).")
    p.add_argument("--model", default="all",
                   help="general, face, all (both), a registry generator or a checkpoint file")
    p.add_argument("--out", default="exports", help="output folder (<name>_x4.param and .bin)")
    p.add_argument("--check", action="store_true", help=f"run the files in ncnn: max |diff| <= {NCNN_TOLERANCE:g}")
    p.set_defaults(func=_cmd_ncnn)
    p = sub.add_parser("tensorrt", help="build a TensorRT fp16 engine from an exported ONNX file (GPU + tensorrt)",
                       description="Build (or load from the cache) a serialised TensorRT engine with one "
                                   "optimisation profile. Without TensorRT or a GPU it says so and exits cleanly.")
    p.add_argument("onnx", help="an ONNX file written by `hdm export onnx`")
    p.add_argument("--out", default=None, help="engine file (default: the cache, ~/.cache/hdm/tensorrt)")
    p.add_argument("--min", default="16x16", help="smallest input HxW of the profile")
    p.add_argument("--opt", default="128x128", help="the input HxW TensorRT optimises for")
    p.add_argument("--max", default="512x512", help="largest input HxW of the profile")
    p.add_argument("--fp32", action="store_true", help="float32 engine instead of fp16")
    p.set_defaults(func=_cmd_tensorrt)
    p = sub.add_parser("bench", help="speed of torch, ONNX Runtime and TensorRT per generator and size (ratios)",
                       description="Median time, peak memory and GFLOP/s of each runtime, as ratios to torch eager "
                                   "fp32 in the same run; writes e.g. docs/results/export.md.")
    p.add_argument("--model", default="all",
                   help="general, face, diffusion (the one-step student), all (the shipped ones), a shipped name or "
                        "a checkpoint (RRDBNet or hdm diffusion student)")
    p.add_argument("--sizes", type=int, nargs="+", default=[64, 128, 256], help="input sides")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda when present)")
    p.add_argument("--out", default=None, help="write the table here (e.g. docs/results/export.md)")
    p.set_defaults(func=_cmd_bench)
