"""End to end: the app served on localhost, driven in a real headless Chromium (Debian's ``chromium``
package) by Playwright. Each tab runs its first example; result images must appear, and no error.

The app runs on tiny untrained generators written here (``HDM_WEIGHTS_DIR``): this test checks the page
and its wiring, not the models. Skipped, with the reason, only where no Chromium can be had (``.ci/run``
installs ``chromium`` where apt-get runs as root, and fails if it cannot); Playwright is required
(``requirements-dev.txt``).
"""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from playwright import sync_api  # requirements-dev.txt

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = os.environ.get("HDM_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")

pytestmark = [
    pytest.mark.skipif(CHROMIUM is None, reason="no Chromium here: the app is not tested in a browser "
                       "(Debian: apt-get install chromium, or set HDM_CHROMIUM to a Chromium executable)"),
]

#: (tab, run button, result gallery, images expected at least)
TABS = [
    ("Explain (CAM)", "cam-run", "cam-gallery", 3),
    ("Subbands", "sb-run", "sb-gallery", 4),
    ("Face-fusion SR", "fu-run", "fu-gallery", 4),
    ("Diffusion SR", "df-run", "df-gallery", 2),
    ("Region fusion by CAM", "rf-run", "rf-gallery", 5),
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    from hdm.diffusion.denoiser import Denoiser
    from hdm.diffusion.loading import export_diffusion
    from hdm.diffusion.schedule import ResShiftSchedule
    from hdm.sr.rrdbnet import RRDBNet
    from hdm.training.sr import export_generator

    weights = tmp_path_factory.mktemp("weights")
    torch.manual_seed(0)
    for name in ("sr_general_x4", "sr_face_x4"):
        export_generator(RRDBNet(num_feat=8, num_block=1, num_grow_ch=4), weights / f"{name}.safetensors", {})
    export_diffusion(Denoiser(width=8, blocks=1), ResShiftSchedule.resshift(4),
                     weights / "diffusion_student_hf_x4.safetensors", "student", {})
    port = _free_port()
    env = {**os.environ, "HDM_WEIGHTS_DIR": str(weights), "HDM_PORT": str(port), "HDM_HOST": "127.0.0.1",
           "GRADIO_ANALYTICS_ENABLED": "False"}
    log = open(tmp_path_factory.mktemp("log") / "app.log", "w")
    proc = subprocess.Popen([sys.executable, "app.py"], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.time() + 180
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the app exited with {proc.returncode}; see {log.name}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            time.sleep(1)
    else:
        proc.kill()
        raise RuntimeError(f"the app did not start within 180 s; see {log.name}")
    yield f"http://127.0.0.1:{port}"
    proc.terminate()
    proc.wait(timeout=30)
    log.close()


def test_every_tab_runs_an_example_in_chromium(served):
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(served)
        page.wait_for_selector("#cam-run", timeout=60_000)
        for tab, run, gallery, expected in TABS:
            page.get_by_role("tab", name=tab).click()
            page.locator("button.gallery-item:visible").first.click()  # the tab's first example
            # the example reaches the input through the server: on a busy machine that takes seconds
            page.locator("[data-testid='image'] img:visible").first.wait_for(timeout=60_000)
            page.locator(f"#{run}").click()
            images = page.locator(f"#{gallery} img")
            deadline, example_deadline = time.time() + 240, time.time() + 30
            while images.count() < expected and time.time() < deadline:
                errors = page.locator(".toast-body:visible")
                if errors.count():
                    text = errors.first.inner_text()
                    # on a loaded machine the example can reach the input after the click on Run: run again
                    if "pick an example first" in text and time.time() < example_deadline:
                        page.locator(".toast-close:visible").first.click()
                        page.wait_for_timeout(1000)
                        page.locator(f"#{run}").click()
                        continue
                    pytest.fail(f"{tab}: the page showed an error: {text}")
                page.wait_for_timeout(500)
            assert images.count() >= expected, f"{tab}: {images.count()} result images, expected {expected}"
            loaded = "img => img.complete && img.naturalWidth > 0"
            deadline = time.time() + 30  # an <img> appears before its file has loaded
            while not images.first.evaluate(loaded) and time.time() < deadline:
                page.wait_for_timeout(200)
            assert images.first.evaluate(loaded), f"{tab}: image did not load within 30 s"
            if tab == "Explain (CAM)":  # the result names the weights that made it: here the random stand-in
                assert "STAND-IN: random weights" in page.inner_text("body")
        browser.close()
