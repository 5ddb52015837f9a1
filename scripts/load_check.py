"""Load check of the demo: N concurrent requests on loopback, all must be answered, none lost.

    python scripts/load_check.py                 # starts app.py on a free port, 20 requests to the CAM view
    python scripts/load_check.py --url http://127.0.0.1:7860 --n 50

Each request explains a different image (scikit-image photos and CAM-benchmark images) through Gradio's
queue (``default_concurrency_limit=2`` in app.py). Prints how many were answered, failed or lost, and the
latency distribution (submit -> result, so queueing is included). Exit status 1 if any was not answered.
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


def _images(n: int) -> list[str]:
    """``n`` distinct small PNGs (the photos scikit-image ships and CAM-benchmark renders)."""
    from PIL import Image
    from skimage import data

    sys.path.insert(0, str(ROOT))
    from hdm.bench.shapes import render_sample

    folder = Path(tempfile.mkdtemp(prefix="hdm_load_"))
    photos = [data.astronaut(), data.coffee(), data.chelsea()]
    paths = []
    for i in range(n):
        image = photos[i % 3][::2, ::2] if i % 2 == 0 else render_sample(seed=11, index=i, size=160).image
        path = folder / f"{i}.png"
        Image.fromarray(np.ascontiguousarray(image)).save(path)
        paths.append(str(path))
    return paths


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--url", help="a running app (default: start app.py on a free loopback port)")
    p.add_argument("--n", type=int, default=20, help="concurrent requests")
    p.add_argument("--model", default=None, help="classifier choice (default: the app's default)")
    p.add_argument("--timeout", type=float, default=600, help="seconds to wait for all answers (later ones count as lost)")
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
        model = args.model
        if model is None:
            sys.path.insert(0, str(ROOT))
            import app  # the page's own default: the shipped model, else ImageNet if cached, else the stand-in

            model = app.default_classifier()
        images = _images(args.n)

        def request(path: str) -> tuple[float, str | None]:
            start = time.perf_counter()
            try:
                out = client.predict(handle_file(path), model, "top class", "exp", "paper", api_name="/run_cam")
                ok = isinstance(out, (list, tuple)) and len(out) == 4 and len(out[0]) == 3
                return time.perf_counter() - start, None if ok else f"unexpected answer {str(out)[:80]}"
            except Exception as e:  # noqa: BLE001 - counted and reported
                return time.perf_counter() - start, f"{type(e).__name__}: {e}"

        print(f"{args.n} concurrent requests to {url} /run_cam ({model}) ...", flush=True)
        start = time.perf_counter()
        pool = ThreadPoolExecutor(max_workers=args.n)
        futures = [pool.submit(request, path) for path in images]
        done, _ = wait(futures, timeout=args.timeout)  # unanswered after the timeout: lost
        results = [f.result() for f in futures if f in done]
        wall = time.perf_counter() - start
        pool.shutdown(wait=False, cancel_futures=True)
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(timeout=30)

    latencies = np.array([t for t, err in results if err is None])
    errors = [err for _, err in results if err is not None]
    lines = [f"answered {len(latencies)}/{args.n}, failed {len(errors)}, lost {args.n - len(results)}; "
          f"wall {wall:.1f} s, throughput {len(latencies) / wall:.2f} requests/s"]
    if len(latencies):
        q = np.percentile(latencies, [0, 50, 90, 100])
        lines.append(f"latency s: min {q[0]:.2f}  median {q[1]:.2f}  p90 {q[2]:.2f}  max {q[3]:.2f}  mean {latencies.mean():.2f}")
    lines += [f"  error: {err}" for err in errors[:5]]
    print("\n".join(lines))
    if args.out:
        import platform

        command = "python scripts/load_check.py " + " ".join(argv if argv is not None else sys.argv[1:])
        text = (f"# Demo load check\n\nWritten by `{command.strip()}` on {time.strftime('%Y-%m-%d')}: {args.n} "
                f"concurrent requests to the CAM view ({model}) over loopback, through Gradio's queue "
                f"(concurrency limit 2), on {platform.processor() or platform.machine()} with {os.cpu_count()} "
                "CPU cores. Latency is submit -> result, queueing included.\n\n```\n" + "\n".join(lines) + "\n```\n")
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text)
        print(f"wrote {args.out}")
    return 0 if len(latencies) == args.n else 1


if __name__ == "__main__":
    sys.exit(main())
