"""Load check of the demo: N concurrent mixed requests on loopback, all must be answered, none lost.

    python scripts/load_check.py                 # starts app.py on a free port, 20 mixed requests
    python scripts/load_check.py --url http://127.0.0.1:7860 --n 50 --out docs/results/app_load.md

Requests go in turn to the CAM view (Automatic model), face-fusion SR and one-step diffusion SR (seeded), each
on a different 256x256 image (scikit-image's faces for the CAM view, its photos for SR), through Gradio's
queues (app.py: explanations one at a time, SR two at a time). The client runs on the same machine and
downloads every result, as a browser would. Prints how many were answered, failed or lost, and the
latency distribution (submit -> result, so queueing is included), overall and per view. Exit status 1 if
any was not answered.

Before the burst, the same requests run one at a time: their sum is the work the burst must do, and "one at
a time, shortest first" is the latency a server gets by running them in the best order without overlap (a
request alone already keeps both cores busy), the yardstick for the burst's figures.
"""
from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor, wait
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start_app(port: int) -> subprocess.Popen:
    env = {**os.environ, "HDM_PORT": str(port), "HDM_HOST": "127.0.0.1", "GRADIO_ANALYTICS_ENABLED": "False"}
    proc = subprocess.Popen([sys.executable, "app.py"], cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.time() + 180
    while time.time() < deadline:
        if proc.poll() is not None:
            sys.exit(f"app.py exited with {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return proc
        except OSError:
            time.sleep(1)
    proc.kill()
    sys.exit("app.py did not start within 180 s")


#: request i goes to VIEWS[i % 3]
VIEWS = ("cam", "fusion", "diffusion")
SIDE = 256


def _images(n: int) -> list[str]:
    """``n`` distinct 256x256 PNGs: for the CAM view scikit-image's two faces, for SR its photos, each cut at
    another place so that no two requests are alike."""
    from PIL import Image
    from skimage import data

    folder = Path(tempfile.mkdtemp(prefix="hdm_load_"))
    faces = [data.astronaut(), np.stack([data.camera()] * 3, axis=-1)]
    photos = [data.astronaut(), data.coffee(), data.chelsea(), data.rocket()]
    paths = []
    for i in range(n):
        if VIEWS[i % 3] == "cam":
            image = Image.fromarray(faces[i % 2]).resize((SIDE + 8 * i, SIDE + 8 * i), Image.Resampling.BICUBIC)
            image = np.asarray(image)[4 * i:4 * i + SIDE, 4 * i:4 * i + SIDE]
        else:
            photo = photos[i % 4]
            y, x = (i * 7) % (photo.shape[0] - SIDE), (i * 13) % (photo.shape[1] - SIDE)
            image = photo[y:y + SIDE, x:x + SIDE]
        path = folder / f"{i}_{VIEWS[i % 3]}.png"
        Image.fromarray(np.ascontiguousarray(image)).save(path)
        paths.append(str(path))
    return paths


def _quantiles(latencies) -> str:
    q = np.percentile(latencies, [50, 90, 100])
    return f"p50 {q[0]:.2f}  p90 {q[1]:.2f}  max {q[2]:.2f}"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--url", help="a running app (default: start app.py on a free loopback port)")
    p.add_argument("--n", type=int, default=20, help="concurrent requests")
    p.add_argument("--timeout", type=float, default=600,
                   help="seconds to wait for all answers (later ones count as lost)")
    p.add_argument("--out", help="also write the report to this markdown file (e.g. docs/results/app_load.md)")
    args = p.parse_args(argv)

    from gradio_client import Client, handle_file

    proc = None
    url = args.url
    if url is None:
        port = _free_port()
        proc = _start_app(port)
        url = f"http://127.0.0.1:{port}"
    try:
        client = Client(url, verbose=False)
        images = _images(args.n)
        calls = {  # the page's defaults: Automatic model, the shipped SR models, the one-step +HF diffusion model
            "cam": lambda f, i: client.predict(f, "Automatic: the model that fits the image", "top class", "exp",
                                               "paper", api_name="/run_cam"),
            "fusion": lambda f, i: client.predict(f, "hdm general x4 (demo weights)", "hdm face x4 (demo weights)",
                                                  api_name="/run_fusion"),
            "diffusion": lambda f, i: client.predict(f, ["one step, with HF loss"], i, api_name="/run_diffusion"),
        }

        def request(i: int, path: str) -> tuple[str, float, str | None]:
            view, start = VIEWS[i % 3], time.perf_counter()
            try:
                out = calls[view](handle_file(path), i)
                ok = isinstance(out, (list, tuple)) and len(out[0]) >= (3 if view == "cam" else 2)
                return view, time.perf_counter() - start, None if ok else f"unexpected answer {str(out)[:80]}"
            except Exception as e:  # noqa: BLE001 - counted and reported
                return view, time.perf_counter() - start, f"{view}: {type(e).__name__}: {e}"

        print(f"{args.n} requests one at a time to {url}, to time each alone ...", flush=True)
        request(0, images[0])  # warm-up: the first call loads the models
        solo = [request(i, path) for i, path in enumerate(images)]
        print(f"{args.n} concurrent requests to {url} ({', '.join(VIEWS)} in turn, {SIDE}x{SIDE}) ...", flush=True)
        start = time.perf_counter()
        pool = ThreadPoolExecutor(max_workers=args.n)
        futures = [pool.submit(request, i, path) for i, path in enumerate(images)]
        done, _ = wait(futures, timeout=args.timeout)  # unanswered after the timeout: lost
        results = [f.result() for f in futures if f in done]
        wall = time.perf_counter() - start
        pool.shutdown(wait=False, cancel_futures=True)
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(timeout=30)

    latencies = np.array([t for _, t, err in results if err is None])
    errors = [err for _, _, err in results if err is not None]
    lines = [f"answered {len(latencies)}/{args.n}, failed {len(errors)}, lost {args.n - len(results)}; "
             f"wall {wall:.1f} s, throughput {len(latencies) / wall:.2f} requests/s"]
    if len(latencies):
        lines.append(f"latency s, all:       {_quantiles(latencies)}  mean {latencies.mean():.2f}")
        for view in VIEWS:
            mine = [t for v, t, err in results if err is None and v == view]
            if mine:
                lines.append(f"latency s, {view + ':':10} {_quantiles(mine)}  ({len(mine)} requests)")
    alone = np.array([t for _, t, err in solo if err is None])
    if len(alone) == args.n:
        # the same requests served one after another, shortest first: what one machine doing one request at a
        # time with no overlap would give (each request alone already keeps the cores busy)
        serial = np.cumsum(np.sort(alone))
        lines.append(f"each alone, s:         {_quantiles(alone)}  sum {alone.sum():.2f}")
        lines.append(f"one at a time, shortest first (from the times alone): {_quantiles(serial)}")
    lines += [f"  error: {err}" for err in errors[:5] + [e for _, _, e in solo if e][:5]]
    print("\n".join(lines))
    if args.out:
        import platform

        command = "python scripts/load_check.py " + " ".join(argv if argv is not None else sys.argv[1:])
        text = (f"# Demo load check\n\nWritten by `{command.strip()}` on {time.strftime('%Y-%m-%d')}: {args.n} "
                f"concurrent requests over loopback, in turn to the CAM view (Automatic model), face-fusion SR and "
                f"one-step diffusion SR, each on its own {SIDE}x{SIDE} image, through Gradio's queues (explanations "
                f"one at a time, SR two at a time), on {platform.processor() or platform.machine()} with "
                f"{os.cpu_count()} CPU cores, the client on the same machine. Latency is submit -> result (results "
                "downloaded), queueing included. The same requests were first timed one at a time: their sum is "
                "the work to be done, and 'one at a time, shortest first' is the best a server reaches without running "
                "requests side by side. Goal: p90 under 15 s, none lost.\n\n```\n"
                + "\n".join(lines) + "\n```\n")
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text)
        print(f"wrote {args.out}")
    return 0 if len(latencies) == args.n else 1


if __name__ == "__main__":
    sys.exit(main())
