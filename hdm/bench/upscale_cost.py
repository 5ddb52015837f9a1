"""What ``hdm upscale`` costs here: wall time and peak memory of one model on square inputs, whole and tiled.

Each case runs in a fresh process (``python -m hdm.bench.upscale_cost --case ...``), so its peak resident memory
(``os.wait4``'s ``ru_maxrss``) is its own: the interpreter, torch, the model and the run. The time is that of
the upscaling alone (:class:`hdm.upscaling.Upscaler` on a seeded random image, after the model is loaded), the
load time apart.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

from ..errors import HDMError
from ..upscaling.pipeline import Upscaler

__all__ = ["Case", "run_case", "measure", "markdown"]

Case = tuple[int, int | None]  # (input side, tile side or None)


def run_case(model: str, side: int, tile: int | None, device: str = "cpu") -> dict:
    """Upscale one random ``side x side`` image with ``model`` in this process: ``{"load_s", "seconds"}``."""
    start = time.perf_counter()
    upscaler = Upscaler(model, tile=tile, device=device)
    load = time.perf_counter() - start
    image = np.random.default_rng(0).random((side, side, 3), dtype=np.float32)
    start = time.perf_counter()
    result = upscaler(image)
    seconds = time.perf_counter() - start
    return {"load_s": load, "seconds": seconds, "output": list(result.rgb.shape[:2])}


def measure(model: str, cases: list[Case], device: str = "cpu", log=print) -> list[dict]:
    """Each case in a fresh process: ``{"side", "tile", "load_s", "seconds", "peak_mb"}``."""
    rows = []
    for side, tile in cases:
        cmd = [sys.executable, "-m", "hdm.bench.upscale_cost", "--model", model, "--side", str(side),
               "--tile", "none" if tile is None else str(tile), "--device", device]
        with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
            proc = subprocess.Popen(cmd, stdout=out, stderr=err, text=True)
            _, status, usage = os.wait4(proc.pid, 0)  # the child's own resource usage
            out.seek(0), err.seek(0)
            stdout, stderr = out.read(), err.read()
        if os.waitstatus_to_exitcode(status):
            last = stderr.strip().splitlines()[-1] if stderr.strip() else f"exit {os.waitstatus_to_exitcode(status)}"
            raise HDMError(f"the {side} px case failed: {last}")
        row = {"side": side, "tile": tile, **json.loads(stdout.strip().splitlines()[-1])}
        row["peak_mb"] = usage.ru_maxrss * 1024 / 1e6  # Linux reports KiB
        log(f"{side}x{side}, tile {tile or 'none'}: {row['seconds']:.1f} s, peak {row['peak_mb']:.0f} MB")
        rows.append(row)
    return rows


def markdown(model: str, rows: list[dict], header: list[str]) -> str:
    """The results file: one row per case, and what the tiled rows show."""
    lines = list(header) + ["", f"Model: `{model}`. Each case is a fresh process upscaling one random image x4; "
                            "time: the upscaling alone; peak: the process's peak resident memory (interpreter, torch, "
                            "model and run).", "", "| input | tile | time (s) | peak memory (MB) | output |",
                            "|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['side']}x{r['side']} | {r['tile'] or 'whole'} | {r['seconds']:.1f} | {r['peak_mb']:.0f} | "
                     f"{r['output'][1]}x{r['output'][0]} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description="one case of hdm.bench.upscale_cost (run by measure())")
    p.add_argument("--model", required=True)
    p.add_argument("--side", type=int, required=True)
    p.add_argument("--tile", required=True)
    p.add_argument("--device", default="cpu")
    args = p.parse_args(argv)
    tile = None if args.tile == "none" else int(args.tile)
    print(json.dumps(run_case(args.model, args.side, tile, args.device)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
