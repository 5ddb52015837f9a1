"""hdm as a user installs it: a wheel built from this checkout, installed into a fresh virtual environment
outside the checkout (which sees this environment's packages, so nothing is downloaded), with the shipped
weights placed in HDM_HOME by hand. Run from another directory, `hdm` works; a missing weights file gives
the one-line message that names it."""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import sysconfig
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent


def _run(args, cwd, env, check=True):
    done = subprocess.run([str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    if check and done.returncode:
        raise AssertionError(f"{args} exited {done.returncode}:\n{done.stdout}\n{done.stderr}")
    return done


@pytest.fixture(scope="module")
def venv(tmp_path_factory):
    """``(python, hdm, env)`` of a fresh venv holding only the hdm wheel (and a path to this environment's
    site-packages for torch & co.); ``env`` has no HDM_* variables and HDM_HOME in a temporary folder."""
    tmp = tmp_path_factory.mktemp("install")
    src = tmp / "src"  # build from a copy: the checkout gets no build/ or egg-info folders
    shutil.copytree(ROOT / "hdm", src / "hdm", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(ROOT / name, src)
    env = {k: v for k, v in os.environ.items() if not k.startswith("HDM_") and k != "PYTHONPATH"}
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", tmp / "dist", src],
         tmp, env)
    wheel = next((tmp / "dist").glob("hdm-*.whl"))
    _run([sys.executable, "-m", "venv", "--without-pip", tmp / "venv"], tmp, env)
    python = tmp / "venv" / "bin" / "python"
    site = Path(_run([python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"], tmp, env).stdout.strip())
    here = {sysconfig.get_path("purelib"), sysconfig.get_path("platlib")}
    (site / "outer.pth").write_text("\n".join(sorted(here)) + "\n")  # torch & co. from this environment
    _run([sys.executable, "-m", "pip", "--python", python, "install", "-q", "--no-deps", wheel], tmp, env)
    env["HDM_HOME"] = str(tmp / "home")
    return python, tmp / "venv" / "bin" / "hdm", env


def test_the_wheel_holds_the_package_not_the_checkout(venv, tmp_path):
    python, _, env = venv
    out = _run([python, "-c", "import hdm, hdm.cli, hdm.app.hub; print(hdm.__file__)"], tmp_path, env).stdout
    assert "site-packages" in out and str(ROOT) not in out


def test_hdm_upscale_from_another_directory_with_weights_in_hdm_home(venv, tmp_path):
    python, hdm, env = venv
    assert "upscale" in _run([hdm, "--help"], tmp_path, env).stdout
    weights = Path(env["HDM_HOME"]) / "weights"
    weights.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (24, 20, 3), dtype=np.uint8)).save(tmp_path / "photo.png")

    missing = _run([hdm, "upscale", "photo.png", "out.png", "--model", "fusion"], tmp_path, env, check=False)
    assert missing.returncode == 2 and "Traceback" not in missing.stderr
    assert missing.stderr.strip().splitlines() == [missing.stderr.strip()], "one line"
    assert "place sr_general_x4.safetensors" in missing.stderr and str(weights) in missing.stderr

    for name in ("sr_general_x4.safetensors", "sr_face_x4.safetensors"):
        shutil.copy(ROOT / "weights" / name, weights)
    done = _run([hdm, "upscale", "photo.png", "out.png", "--model", "fusion"], tmp_path, env)
    assert "photo.png -> out.png" in done.stdout
    with Image.open(tmp_path / "out.png") as im:
        assert im.size == (80, 96)
    assert not (ROOT / "out.png").exists()


def test_hdm_demo_serves_the_app_from_another_directory(venv, tmp_path):
    """``hdm demo`` starts the Gradio app from the installed package (no checkout, no weights: the page still
    opens and says what is missing), and ``hdm demo --help`` says how."""
    python, hdm, env = venv
    assert "--port" in _run([hdm, "demo", "--help"], tmp_path, env).stdout
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**env, "GRADIO_ANALYTICS_ENABLED": "False", "HDM_OFFLINE": "1"}
    proc = subprocess.Popen([str(hdm), "demo", "--host", "127.0.0.1", "--port", str(port)], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline, page = time.monotonic() + 120, None
        while time.monotonic() < deadline and proc.poll() is None and page is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as response:
                    page = response.read().decode()
            except OSError:
                time.sleep(1)
        assert page is not None, f"hdm demo did not serve the page:\n{proc.stdout.read() if proc.poll() is not None else ''}"
        assert "gradio" in page.lower()
    finally:
        proc.terminate()
        proc.wait(timeout=30)
