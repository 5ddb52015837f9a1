"""Screenshots of the demo for the README: docs/figures/app_<tab>.png, regenerated, never edited by hand.

    python scripts/app_screenshots.py                    # starts app.py on a free port, writes docs/figures/
    python scripts/app_screenshots.py --url http://127.0.0.1:7860 --out /tmp/shots

Each tab's first example runs in headless Chromium (Playwright; Debian's ``chromium`` or ``HDM_CHROMIUM``) with
the weights the app finds (a checkout's ``weights/``; offline unless the ImageNet ResNet-50 is cached), and the
tab is captured once its results have loaded, at most ``--width`` pixels wide. Prints each file with its time.
"""
from __future__ import annotations

import argparse
import io
import os
import shutil
import sys
import time
from pathlib import Path

from load_check import _free_port, _start_app

ROOT = Path(__file__).resolve().parent.parent

#: (tab name, element prefix, figure name, result images expected)
TABS = [("Explain (CAM)", "cam", "app_cam", 3), ("Subbands", "sb", "app_subbands", 4),
        ("Face-fusion SR", "fu", "app_fusion", 4), ("Diffusion SR", "df", "app_diffusion", 2),
        ("Region fusion by CAM", "rf", "app_region", 5)]


def _loaded(images) -> bool:
    return images.count() > 0 and images.first.evaluate("img => img.complete && img.naturalWidth > 0")


def _wait(page, until, what: str, seconds: float) -> None:
    deadline = time.time() + seconds
    while time.time() < deadline:
        if until():
            return
        errors = page.locator(".toast-body:visible")
        if errors.count():
            sys.exit(f"{what}: the page showed an error: {errors.first.inner_text()}")
        page.wait_for_timeout(300)
    sys.exit(f"{what}: not done within {seconds} s")


def capture(url: str, out: Path, width: int, chromium: str) -> list[Path]:
    """Run each tab's first example at ``url`` and write ``out/app_<tab>.png`` (PNG, at most ``width`` px wide)."""
    from PIL import Image
    from playwright.sync_api import sync_playwright  # requirements-dev.txt

    written = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, headless=True, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(url)
        page.wait_for_selector("#cam-run", timeout=120_000)
        for tab, prefix, name, expected in TABS:
            start = time.time()
            page.get_by_role("tab", name=tab).click()
            page.locator(f"#{prefix}-examples .thumbnail-item").first.click()
            _wait(page, lambda: _loaded(page.locator(f"#{prefix}-preview img")), f"{tab}: preview", 120)
            page.locator(f"#{prefix}-run").click()
            images = page.locator(f"#{prefix}-gallery img")
            _wait(page, lambda: images.count() >= expected and _loaded(images), f"{tab}: results", 600)
            page.wait_for_timeout(1500)  # the sliders and the zoom arrive with the gallery; let them paint
            panel = page.locator("div[role='tabpanel']:visible").first
            picture = Image.open(io.BytesIO(panel.screenshot())).convert("RGB")
            if picture.width > width:
                size = (width, round(picture.height * width / picture.width))
                picture = picture.resize(size, Image.Resampling.LANCZOS)
            path = out / f"{name}.png"
            picture.save(path, optimize=True)
            written.append(path)
            print(f"{path} ({picture.width}x{picture.height} px, {time.time() - start:.1f} s)", flush=True)
        browser.close()
    return written


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--url", help="a running app (default: start app.py on a free loopback port)")
    p.add_argument("--out", default=str(ROOT / "docs" / "figures"), help="folder of the PNG files")
    p.add_argument("--width", type=int, default=1100, help="largest width of a screenshot (px)")
    args = p.parse_args(argv)
    chromium = os.environ.get("HDM_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        sys.exit("no Chromium here (Debian: apt-get install chromium, or set HDM_CHROMIUM)")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    proc, url = None, args.url
    if url is None:
        port = _free_port()
        proc = _start_app(port)
        url = f"http://127.0.0.1:{port}"
    try:
        capture(url, out, args.width, chromium)
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(timeout=30)
    return 0


if __name__ == "__main__":
    sys.exit(main())
