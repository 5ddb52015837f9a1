"""The weights registry: its sha256 table matches the shipped files, names resolve in the documented order
(HDM_WEIGHTS_DIR, the checkout's weights/, HDM_HOME), files are checked and fetched by URL, and every failure
is a WeightsUnavailable that names the file to place and where."""
from __future__ import annotations

import hashlib
import http.server
import shutil
import threading
from pathlib import Path

import pytest

from hdm.errors import HDMError, WeightsUnavailable
from hdm.io import weights as W
from hdm.io.registry import models_of

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = ROOT / "weights"


def test_registry_matches_the_shipped_files():
    listed = set()
    for entry in models_of():
        name = entry.name
        assert not entry.shipped or (entry.file == f"{name}.safetensors" and entry.card == f"{name}.md")
        for file, digest in entry.files:
            assert hashlib.sha256((SHIPPED / file).read_bytes()).hexdigest() == digest, f"{file}: update hdm.io.registry.MODELS"
            listed.add(file)
    assert {p.name for p in SHIPPED.iterdir()} - listed == {"README.md"}, "a file in weights/ is not in hdm.io.registry.MODELS"


def test_a_checkout_uses_its_weights_folder(monkeypatch):
    monkeypatch.delenv("HDM_WEIGHTS_DIR", raising=False)
    assert W.weights_dir() == SHIPPED
    assert W.weights_path("sr_general_x4") == SHIPPED / "sr_general_x4.safetensors"
    assert W.weights_path("shapes_resnet50", "shapes_resnet50.theta.json") == SHIPPED / "shapes_resnet50.theta.json"
    assert W.resolve_weights("sr_face_x4") == SHIPPED / "sr_face_x4.safetensors"


def test_weights_dir_overrides_and_names_a_missing_file(monkeypatch, tmp_path):
    monkeypatch.setenv("HDM_WEIGHTS_DIR", str(tmp_path))
    shutil.copy(SHIPPED / "sr_face_x4.safetensors", tmp_path)
    assert W.weights_path("sr_face_x4") == tmp_path / "sr_face_x4.safetensors"
    with pytest.raises(WeightsUnavailable, match=f"place sr_general_x4.safetensors .* in {tmp_path}"):
        W.weights_path("sr_general_x4")


@pytest.fixture
def installed(monkeypatch, tmp_path):
    """An installed copy: no checkout weights/, HDM_HOME in tmp_path, no URL."""
    monkeypatch.setattr(W, "CHECKOUT_WEIGHTS", tmp_path / "no-checkout")
    monkeypatch.delenv("HDM_WEIGHTS_DIR", raising=False)
    monkeypatch.delenv("HDM_WEIGHTS_URL", raising=False)
    monkeypatch.setenv("HDM_HOME", str(tmp_path / "home"))
    return tmp_path / "home" / "weights"


def test_an_installed_copy_reads_hdm_home_and_checks_the_sha256(installed):
    assert W.weights_dir() == installed
    with pytest.raises(WeightsUnavailable, match=f"place sr_general_x4.safetensors .* in {installed}.*HDM_WEIGHTS_URL"):
        W.weights_path("sr_general_x4")
    installed.mkdir(parents=True)
    shutil.copy(SHIPPED / "sr_general_x4.safetensors", installed)
    assert W.weights_path("sr_general_x4") == installed / "sr_general_x4.safetensors"
    (installed / "sr_face_x4.safetensors").write_bytes(b"not the shipped file")
    with pytest.raises(WeightsUnavailable, match="sha256 .* not the shipped file's"):
        W.weights_path("sr_face_x4")


def test_unknown_names_and_files_are_errors_that_list_the_names():
    with pytest.raises(WeightsUnavailable, match="sr_general_x4"):
        W.weights_path("sr_general")
    with pytest.raises(WeightsUnavailable, match="its files are"):
        W.weights_path("sr_general_x4", "other.json")
    assert issubclass(WeightsUnavailable, HDMError)
    with pytest.raises(FileNotFoundError, match="a registry model is one of"):
        W.resolve_weights("sr_general")


@pytest.fixture
def server(tmp_path):
    """A loopback HTTP server of the folder ``tmp_path / 'served'``."""
    folder = tmp_path / "served"
    folder.mkdir()

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *a, **kw):
            super().__init__(*a, directory=str(folder), **kw)

        def log_message(self, *a):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield folder, f"http://127.0.0.1:{httpd.server_address[1]}/"
    httpd.shutdown()


def test_a_missing_file_is_fetched_by_url_and_checked(installed, server, monkeypatch):
    folder, url = server
    shutil.copy(SHIPPED / "sr_general_x4.safetensors", folder)
    (folder / "sr_face_x4.safetensors").write_bytes(b"a tampered file")
    monkeypatch.setenv("HDM_WEIGHTS_URL", url)
    path = W.weights_path("sr_general_x4")
    assert path == installed / "sr_general_x4.safetensors"
    assert path.read_bytes() == (SHIPPED / "sr_general_x4.safetensors").read_bytes()
    with pytest.raises(WeightsUnavailable, match="not the shipped file's .* not kept"):
        W.weights_path("sr_face_x4")
    assert sorted(p.name for p in installed.iterdir()) == ["sr_general_x4.safetensors"]  # nothing partial left
    with pytest.raises(WeightsUnavailable, match="could not download .*diffusion_student_x4.safetensors.*HTTPError"):
        W.weights_path("diffusion_student_x4")  # not served: 404


def test_loaders_resolve_registry_names(installed, monkeypatch):
    """Every loader goes through the registry: offline, each names its file."""
    from hdm.cam.classifiers import load_shapes_resnet50
    from hdm.diffusion import DiffusionSR
    from hdm.upscaling.pipeline import load_generator

    for call, file in ((lambda: load_generator("general"), "sr_general_x4.safetensors"),
                       (lambda: load_shapes_resnet50(), "shapes_resnet50.safetensors"),
                       (lambda: DiffusionSR.from_pretrained("diffusion_student_hf_x4"), "diffusion_student_hf_x4.safetensors")):
        with pytest.raises(WeightsUnavailable, match=f"place {file}"):
            call()
