"""End to end: the app served on localhost, driven in a real headless Chromium (Debian's ``chromium``
package) by Playwright: each tab runs its first example (result images, comparisons, no error), a bad
upload gets hdm's message, a photo no model fits gets a sentence, and a new model brings its examples.

The app runs offline on tiny untrained generators written here and the shipped face and shapes networks
(``HDM_WEIGHTS_DIR``): this test checks the page and its wiring, not the SR models. Skipped, with the reason,
only where no Chromium can be had (``.ci/run`` installs ``chromium`` where apt-get runs as root, and fails if it
cannot); Playwright is required (``requirements-dev.txt``).
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

#: (tab, element prefix, result gallery images expected at least)
TABS = [
    ("Explain (CAM)", "cam", 3),
    ("Subbands", "sb", 4),
    ("Face-fusion SR", "fu", 4),
    ("Diffusion SR", "df", 2),
    ("Region fusion by CAM", "rf", 5),
]
ERRORS = ".toast-body:visible"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """The app on tiny generators and the shipped face and shapes networks, offline (ImageNet not cached)."""
    from hdm.diffusion.denoiser import Denoiser
    from hdm.diffusion.file import export_diffusion
    from hdm.diffusion.schedule import ResShiftSchedule
    from hdm.io.registry import MODELS
    from hdm.io.weights import CHECKOUT_WEIGHTS
    from hdm.sr.archs.rrdbnet import RRDBNet
    from hdm.training.sr import export_generator

    weights = tmp_path_factory.mktemp("weights")
    torch.manual_seed(0)
    for name in ("sr_general_x4", "sr_face_x4"):
        export_generator(RRDBNet(num_feat=8, num_block=1, num_grow_ch=4), weights / f"{name}.safetensors", {})
    export_diffusion(Denoiser(width=8, blocks=1), ResShiftSchedule.resshift(4),
                     weights / "diffusion_student_hf_x4.safetensors", "student", {})
    for name in ("dlib_face_resnet_v1", "shapes_resnet50"):
        for file, _ in MODELS[name].files:
            (weights / file).symlink_to(CHECKOUT_WEIGHTS / file)
    port = _free_port()
    env = {**os.environ, "HDM_WEIGHTS_DIR": str(weights), "HDM_PORT": str(port), "HDM_HOST": "127.0.0.1",
           "GRADIO_ANALYTICS_ENABLED": "False", "HDM_OFFLINE": "1", "TORCH_HOME": str(tmp_path_factory.mktemp("torch")),
           "GRADIO_TEMP_DIR": str(tmp_path_factory.mktemp("gradio"))}
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


@pytest.fixture(scope="module")
def page(served):
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(served)
        page.wait_for_selector("#cam-run", timeout=60_000)
        yield page
        browser.close()


def _wait(page, until, what: str, seconds: float = 240) -> None:
    """Wait for ``until()``; an error message in the page fails the test with its text."""
    deadline = time.time() + seconds
    while time.time() < deadline:
        if until():
            return
        if page.locator(ERRORS).count():
            pytest.fail(f"{what}: the page showed an error: {page.locator(ERRORS).first.inner_text()}")
        page.wait_for_timeout(300)
    pytest.fail(f"{what}: not done within {seconds} s")


def _loaded(images) -> bool:
    return images.count() > 0 and images.first.evaluate("img => img.complete && img.naturalWidth > 0")


def test_every_tab_runs_its_first_example(page):
    for tab, prefix, expected in TABS:
        page.get_by_role("tab", name=tab).click()
        page.locator(f"#{prefix}-examples .thumbnail-item").first.click()  # the tab's first example
        # the example reaches the file input through the server, and hdm's preview comes back
        preview = page.locator(f"#{prefix}-preview img")
        _wait(page, lambda: _loaded(preview), f"{tab}: preview", 60)
        page.locator(f"#{prefix}-run").click()
        images = page.locator(f"#{prefix}-gallery img")
        _wait(page, lambda: images.count() >= expected and _loaded(images), f"{tab}: results")
        caption = page.locator(f"#{prefix}-caption").inner_text()
        assert caption.count(". ") <= 1 and "/" not in caption, f"{tab}: {caption}"  # a sentence, no paths
        if tab == "Explain (CAM)":  # offline, the astronaut is explained by face verification, not a classifier
            assert caption.startswith("dlib's face-recognition network explained what makes the face"), caption
            assert "Class explained: the face's own descriptor" in page.inner_text("body")
            assert _loaded(page.locator("#cam-colour-bar img"))
        if prefix in ("fu", "df", "rf"):  # comparisons: a slider against bicubic, the zoom, the download
            _wait(page, lambda: _loaded(page.locator(f"#{prefix}-slider0 img")), f"{tab}: slider", 30)
            assert "bicubic" in page.locator(f"#{prefix}-slider0").inner_text()
            _wait(page, lambda: _loaded(page.locator(f"#{prefix}-zoom img")), f"{tab}: zoom", 30)
            assert "_x4_" in page.inner_text("body")  # the download's name


def _upload(page, prefix: str, path) -> None:
    """Upload ``path`` through the tab's file input, clearing the file shown first."""
    clear = page.locator(f"#{prefix}-file button[aria-label='Clear']")
    if clear.count():
        clear.first.click()
    page.locator(f"#{prefix}-file input[type=file]").set_input_files(str(path))


def test_a_bad_upload_gets_hdms_message(page, tmp_path):
    bad = tmp_path / "holiday.png"
    bad.write_text("this is a text file, not a PNG")
    page.get_by_role("tab", name="Explain (CAM)").click()
    _upload(page, "cam", bad)
    status = page.locator("#cam-status")
    expected = "Cannot use this image: holiday.png: not an image file that can be read"
    _wait(page, lambda: expected in status.inner_text(), "bad upload: the preview's message", 60)
    page.locator("#cam-run").click()  # and the view says the same
    deadline = time.time() + 60
    while not page.locator(ERRORS).count() and time.time() < deadline:
        page.wait_for_timeout(300)
    assert expected in page.locator(ERRORS).first.inner_text()
    page.locator(".toast-close:visible").first.click()


def test_a_photo_no_model_fits_gets_a_sentence(page, tmp_path):
    from PIL import Image
    from skimage import data

    photo = tmp_path / "coffee.png"
    Image.fromarray(data.coffee()[::2, ::2]).save(photo)
    page.get_by_role("tab", name="Explain (CAM)").click()
    _upload(page, "cam", photo)
    _wait(page, lambda: "coffee.png: 300x200 px" in page.locator("#cam-status").inner_text(), "upload preview", 60)
    page.locator("#cam-run").click()
    caption = page.locator("#cam-caption")
    _wait(page, lambda: caption.inner_text().startswith("No model here fits this image"), "no-fit sentence", 120)
    assert "Examples that fit: astronaut, camera" in caption.inner_text()
    assert page.locator("#cam-gallery img").count() == 0  # no label, no map from a model that does not know it


def test_switching_the_model_updates_the_examples(page):
    page.get_by_role("tab", name="Explain (CAM)").click()
    thumbnails = page.locator("#cam-examples .thumbnail-item")
    assert thumbnails.count() == 4  # offline: two faces and two shapes images
    page.locator("#cam-model input").click()
    page.get_by_role("option", name="Shapes ResNet-50 (8 synthetic shapes)").click()
    _wait(page, lambda: thumbnails.count() == 2, "examples of the shapes model", 30)
    assert "shapes" in thumbnails.first.inner_text()
