"""``hdm export bench``: speed of each SR generator in every available runtime, as ratios to
torch eager float32 measured in the same run, written to ``docs/results/export.md``.

For each model and input size: median seconds over ``repeats`` runs after a warm-up, for torch eager
fp32, torch bf16 (CPU autocast) or fp16 (GPU), ONNX Runtime with each provider that works here, and a
TensorRT fp16 engine when TensorRT and a GPU are present. Also: the model's FLOPs at that size
(``torch.utils.flop_counter``, multiply-add = 2 FLOPs), the achieved GFLOP/s, and the machine's
reference rate (a float32 matmul of 2048 x 2048 on the same device, measured in the same run: a
practical peak, not the vendor's number; half-precision rows are compared with it too, so their
percentages can exceed what their own peak allows; on a GPU, torch's "fp32" convolutions use TF32 by
default). Peak memory: on the GPU, ``torch.cuda.max_memory_allocated`` for the torch rows (ONNX
Runtime's and TensorRT's memory is outside torch's allocator: "-"); on the CPU, each runtime runs once
more in a fresh process (:func:`cpu_peak_mb`) and the row gives how far its peak resident memory rose
above where it stood after loading the model, sizes in ascending order: the working memory of a call
(activations, workspace, output), first-call set-up included. In the timing process itself that
figure would be hidden by memory earlier runtimes freed and the allocator kept. ONNX Runtime GPU
timings include copying the input to the GPU and the output back.
"""
from __future__ import annotations

import copy
import multiprocessing
import statistics
import time
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

from ..sr.onnx_runtime import providers_here
from .to_onnx import example_inputs, input_names, load_exportable

__all__ = ["flops", "matmul_gflops", "bench_model", "cpu_peak_mb", "markdown"]


def flops(model, *xs: torch.Tensor) -> int:
    """FLOPs of one forward pass (multiply-add counted as 2)."""
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model(*xs)
    return int(counter.get_total_flops())


def matmul_gflops(device: str = "cpu", n: int = 2048, repeats: int = 5) -> float:
    a = torch.randn(n, n, device=device)
    b = torch.randn(n, n, device=device)
    times = []
    for _ in range(repeats + 1):
        _sync(device)
        t = time.perf_counter()
        a @ b
        _sync(device)
        times.append(time.perf_counter() - t)
    return 2 * n ** 3 / statistics.median(times[1:]) / 1e9


def _sync(device):
    if str(device).startswith("cuda"):
        torch.cuda.synchronize()


def _time(fn, repeats: int, device: str, warmup: int = 2) -> float:
    for _ in range(warmup):  # lazy initialisation, kernel selection, caches
        fn()
    times = []
    for _ in range(repeats):
        _sync(device)
        t = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def _peaks_in_child(kind: str, path: str, names: list[str], inputs: dict, threads: int) -> dict[int, float]:
    """Run in a fresh process: load one runtime, then call it once per size (ascending); the rise of
    peak resident memory (MB) above its level after loading, per size."""
    torch.set_num_threads(threads)
    if kind.startswith("torch"):
        model = load_exportable(path).eval()

        def run(arrays):
            with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=kind == "torch-bf16"):
                model(*(torch.from_numpy(a) for a in arrays))
    else:
        import onnxruntime as ort  # optional: the [export] extra

        session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])

        def run(arrays):
            session.run(None, dict(zip(names, arrays)))
    base = _proc_status_mb("VmRSS")
    try:  # start the high-water mark here (Linux >= 4.0), so a transient peak while loading is not counted
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        return {}
    if _proc_status_mb("VmHWM") > _proc_status_mb("VmRSS") + 1:  # the reset did not take: the peak would
        return {}                                                # include loading, so none is reported
    peaks = {}
    for size in sorted(inputs):
        run(inputs[size])
        peaks[size] = max(0.0, _proc_status_mb("VmHWM") - base)  # RSS may sit a little under base after reset
    return peaks


def _proc_status_mb(field: str) -> float:
    """``VmRSS`` (now) or ``VmHWM`` (peak) of this process in MB. Not ``getrusage``'s ``ru_maxrss``: Linux
    carries that across ``exec``, so a freshly spawned child starts with its parent's peak."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024  # kB
    raise OSError(f"no {field} in /proc/self/status")


def cpu_peak_mb(weights, onnx_fp32, onnx_fp16, inputs: dict, names: list[str]) -> dict[tuple[str, int], float]:
    """``{(runtime, size): MB}`` for the CPU rows, each runtime measured in its own fresh process.
    ``inputs``: ``{size: tuple of numpy arrays}`` (the model's inputs at that size)."""
    if not Path("/proc/self/status").is_file():
        return {}  # not Linux: peak memory is not measured ("-")
    jobs = [("torch eager fp32", "torch", weights), ("torch eager bf16 (autocast)", "torch-bf16", weights),
            ("ONNX Runtime CPU fp32", "onnx", onnx_fp32), ("ONNX Runtime CPU fp16", "onnx", onnx_fp16)]
    context = multiprocessing.get_context("spawn")  # fresh: nothing inherited from this process's allocator
    peaks = {}
    for runtime, kind, path in jobs:
        if path is None:
            continue
        try:
            with ProcessPoolExecutor(1, mp_context=context) as pool:
                found = pool.submit(_peaks_in_child, kind, str(path), names, inputs, torch.get_num_threads()).result()
        except BrokenProcessPool:  # e.g. killed for memory: no figure for this runtime ("-"), the bench goes on
            print(f"peak memory of {runtime}: its process died; not measured")
            continue
        peaks.update({(runtime, size): mb for size, mb in found.items()})
    return peaks


def bench_model(model, onnx_fp32, onnx_fp16, sizes=(64, 128, 256), repeats: int = 5, device: str = "cpu",
                engine_builder=None, weights=None) -> list[dict]:
    """Rows ``{"size", "runtime", "seconds", "peak_mb", "gflops"}`` for one model (see the module docstring).
    ``weights``: the model's file, for the CPU peak memory (measured in fresh processes); ``None``: not measured."""
    import onnxruntime as ort  # optional: the [export] extra

    rows = []
    model = model.to(device).eval()
    inputs = {s: tuple(x.to(device) for x in example_inputs(model, s, s, generator=torch.Generator().manual_seed(0)))
              for s in sizes}
    with torch.no_grad():  # one pass over every size first: the allocator settles (glibc raises its mmap
        for xs in inputs.values():  # threshold after large frees), so the first model measured is not penalised
            model(*xs)
    for size, xs in inputs.items():
        n_flops = flops(model, *xs)
        runs = {}
        with torch.no_grad():
            runs["torch eager fp32"] = lambda: model(*xs)
            if device == "cpu" and torch.bfloat16 in model.dtypes:
                def bf16():
                    with torch.autocast("cpu", dtype=torch.bfloat16):
                        return model(*xs)
                runs["torch eager bf16 (autocast)"] = bf16
            elif device != "cpu" and torch.float16 in model.dtypes:
                half = copy.deepcopy(model).half()
                xhs = tuple(x.half() for x in xs)
                runs["torch eager fp16"] = lambda: half(*xhs)
        # --device cpu compares CPU runtimes only (onnxruntime-gpu would also offer CUDA/TensorRT here)
        for provider in (["CPUExecutionProvider"] if device == "cpu" else providers_here()):
            for label, path in (("fp32", onnx_fp32), ("fp16", onnx_fp16)):
                if path is None:
                    continue
                try:
                    options = ort.SessionOptions()
                    session = ort.InferenceSession(str(path), options, providers=[provider])
                    session.disable_fallback()
                except Exception as e:  # a provider that cannot start here
                    print(f"skipped ONNX Runtime {provider}: {type(e).__name__}: {e}")
                    continue
                if session.get_providers()[0] != provider:  # it fell back: do not label a CPU run as another
                    print(f"skipped ONNX Runtime {provider}: it fell back to {session.get_providers()[0]}")
                    continue
                feed = {name: x.cpu().numpy() for name, x in zip(input_names(model), xs)}
                runs[f"ONNX Runtime {provider.removesuffix('ExecutionProvider')} {label}"] = \
                    lambda s=session, f=feed: s.run(None, f)
        if engine_builder is not None:
            trt = engine_builder(size)
            if trt is not None:
                runs["TensorRT fp16"] = lambda: trt(*xs)
        for name, fn in runs.items():
            if device.startswith("cuda"):
                torch.cuda.reset_peak_memory_stats()
            with torch.no_grad():
                seconds = _time(fn, repeats, device)
            peak = None
            if device.startswith("cuda") and name.startswith("torch"):
                # torch's allocator sees torch's own memory only; ONNX Runtime's and TensorRT's are not in it
                peak = torch.cuda.max_memory_allocated() / 2 ** 20
            rows.append({"size": size, "runtime": name, "seconds": seconds, "peak_mb": peak,
                         "gflops": n_flops / seconds / 1e9, "flops": n_flops})
        if device == "cpu":
            model.float()
    if device == "cpu" and weights is not None:
        arrays = {size: tuple(x.numpy() for x in xs) for size, xs in inputs.items()}
        peaks = cpu_peak_mb(weights, onnx_fp32, onnx_fp16, arrays, input_names(model))
        for row in rows:
            row["peak_mb"] = peaks.get((row["runtime"], row["size"]))
    return rows


def markdown(results: dict, header: list[str], reference_gflops: float, device: str) -> str:
    lines = list(header) + [f"Reference rate on this {device}: {reference_gflops:.0f} GFLOP/s (float32 matmul "
                            "2048 x 2048, median of 5, measured in this run).", ""]
    for model, rows in results.items():
        lines += [f"## {model}", "", "| input | runtime | median s | x torch fp32 | GFLOP/s | % of reference | peak MB |",
                  "|---|---|---|---|---|---|---|"]
        for size in sorted({r["size"] for r in rows}):
            base = next(r for r in rows if r["size"] == size and r["runtime"] == "torch eager fp32")["seconds"]
            for r in (r for r in rows if r["size"] == size):
                peak = "-" if r["peak_mb"] is None else f"{r['peak_mb']:.0f}"
                lines.append(f"| {size}x{size} | {r['runtime']} | {r['seconds']:.4f} | {base / r['seconds']:.2f}x | "
                             f"{r['gflops']:.1f} | {100 * r['gflops'] / reference_gflops:.0f} % | {peak} |")
        lines.append("")
        goals = []
        for size in sorted({r["size"] for r in rows}):
            at = {r["runtime"]: r["seconds"] for r in rows if r["size"] == size}
            base = at["torch eager fp32"]
            ort_cpu = at.get("ONNX Runtime CPU fp32")
            if device == "cpu" and ort_cpu:
                goals.append(f"| {size}x{size}: ONNX Runtime CPU >= 1.2x torch eager CPU | {base / ort_cpu:.2f}x | "
                             f"{'yes' if base / ort_cpu >= 1.2 else 'no'} |")
            if "TensorRT fp16" in at:
                r = base / at["TensorRT fp16"]
                goals.append(f"| {size}x{size}: TensorRT fp16 >= 3x torch fp32 eager (GPU) | {r:.2f}x | {'yes' if r >= 3 else 'no'} |")
        if goals:
            lines += ["| goal | measured | met |", "|---|---|---|", *goals, ""]
    return "\n".join(lines)

