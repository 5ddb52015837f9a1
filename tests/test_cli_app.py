"""The command line, the model loader's offline behaviour, the app's callback, and repo promises."""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tomllib
import torch
from PIL import Image
from skimage import data

from hdm.cam.classifiers import load_resnet50
from hdm.cli import build_parser, main
from hdm.errors import WeightsUnavailable
from hdm.io.weights import load_state_dict_file

ROOT = Path(__file__).resolve().parents[1]


def test_every_subcommand_has_help(capsys):
    parser = build_parser()
    subcommands = parser._subparsers._group_actions[0].choices  # noqa: SLF001 - argparse has no public accessor
    assert {"cam", "bench-cam", "compare-cam"} <= set(subcommands)
    for name in subcommands:
        with pytest.raises(SystemExit) as e:
            main([name, "--help"])
        assert e.value.code == 0
        assert "usage: hdm " + name in capsys.readouterr().out


def test_module_entry_point_runs():
    out = subprocess.run([sys.executable, "-m", "hdm", "--help"], cwd=ROOT, capture_output=True, text=True, check=True)
    assert "cam" in out.stdout and "bench-cam" in out.stdout


def test_cam_command_writes_overlays(tmp_path, capsys):
    image = tmp_path / "coffee.png"
    Image.fromarray(data.coffee()[::4, ::4]).save(image)
    assert main(["cam", str(image), "--weights", "random", "--size", "96", "--out", str(tmp_path / "out")]) == 0
    out = capsys.readouterr().out
    assert "untrained stand-in" in out
    written = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert written == ["coffee_gradcam.png", "coffee_gradcampp.png", "coffee_hdmcam.png"]
    overlay = np.asarray(Image.open(tmp_path / "out" / "coffee_hdmcam.png"))
    assert overlay.shape == data.coffee()[::4, ::4].shape


def test_cam_command_reports_bad_input(tmp_path, capsys):
    bad = tmp_path / "not_an_image.png"
    bad.write_text("hello")
    assert main(["cam", str(bad), "--weights", "random"]) == 2
    assert "not an image file" in capsys.readouterr().err
    assert main(["cam", str(tmp_path / "missing.png"), "--weights", "random"]) == 2
    assert "no image file" in capsys.readouterr().err


def test_imagenet_weights_offline_error_names_the_file(monkeypatch, tmp_path):
    import torchvision

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))

    def offline(*args, **kwargs):
        raise OSError("network is unreachable")

    monkeypatch.setattr(torchvision.models.ResNet50_Weights.IMAGENET1K_V2.__class__, "get_state_dict", offline)
    with pytest.raises(WeightsUnavailable, match=r"resnet50-11ad3fa6\.pth.*" + re.escape(str(tmp_path))):
        load_resnet50("imagenet")


def test_state_dict_files_round_trip(tmp_path):
    torch.manual_seed(0)
    model = load_resnet50("random").model
    state = {k: v for k, v in model.state_dict().items()}
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in state.items()}, str(tmp_path / "m.safetensors"))
    torch.save({"state_dict": {"module." + k: v for k, v in state.items()}}, tmp_path / "m.pth")
    for name in ("m.safetensors", "m.pth"):
        loaded = load_resnet50(str(tmp_path / name))
        assert loaded.source.startswith("file:") and len(loaded.categories) == 1000
        assert torch.equal(loaded.model.fc.weight, model.fc.weight)
    torch.save({"x": 1}, tmp_path / "bad.pth")
    with pytest.raises(ValueError, match="state dict of tensors"):
        load_state_dict_file(tmp_path / "bad.pth")


def test_app_callbacks_show_messages_not_tracebacks(monkeypatch, tmp_path):
    import gradio as gr

    import hdm.app.ui as app

    demo = app.build_demo()
    assert isinstance(demo, gr.Blocks)
    photo, tiny = tmp_path / "astronaut.png", tmp_path / "tiny.png"
    Image.fromarray(data.astronaut()[::4, ::4]).save(photo)
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(tiny)
    model = "Random ResNet-50 (stand-in)"
    gallery, bar, probs, layers, caption, details = app.run_cam(str(photo), model, "top class", "exp", "paper")
    assert [item["caption"].split(":")[0] for item in gallery.value] == ["Grad-CAM", "Grad-CAM++", "HDM-CAM"]
    assert gallery.label.startswith("Class explained: class ")
    assert bar.shape[2] == 3 and probs.visible is False  # a stand-in's classes are not shown as a result
    assert len(layers) == 4 and caption.startswith("A random-weight STAND-IN ResNet-50 explained why it sees")
    assert "paper variant" in details and "sha256" not in caption
    with pytest.raises(gr.Error, match="Upload an image"):
        app.run_cam(None, model, "top class", "exp", "paper")
    with pytest.raises(gr.Error, match="out of range"):
        app.run_cam(str(photo), model, "5000", "exp", "paper")
    with pytest.raises(gr.Error, match="tiny.png: 4x4 px is too small"):
        app.run_cam(str(tiny), model, "top class", "exp", "paper")

    def broken(*args, **kwargs):
        raise RuntimeError("out of memory")

    monkeypatch.setattr(app, "cam_view", broken)
    with pytest.raises(gr.Error, match="Something went wrong \\(RuntimeError: out of memory\\)"):
        app.run_cam(str(photo), model, "top class", "exp", "paper")


def test_ci_runs_readme_test_command():
    """README opens with two one-line set-up commands; the second (install the test needs, run the whole
    suite) is, as a whole line, the last command of ``.ci/run``, which stops at the first failure."""
    readme = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```bash\n(.*?)\n```", readme, flags=re.S)
    assert len(blocks) >= 2, "README must open with the two set-up commands"
    app_cmd, test_cmd = blocks[0], blocks[1]
    assert "\n" not in app_cmd and app_cmd.endswith(" && python app.py"), app_cmd
    whole_suite = test_cmd.startswith("pip install ") and test_cmd.endswith(" && python -m pytest -q")
    assert "\n" not in test_cmd and whole_suite, f"README's test command must install and run every test: {test_cmd!r}"
    script = (ROOT / ".ci" / "run").read_text().splitlines()
    commands = [line for line in script if line.strip() and not line.lstrip().startswith("#")]
    assert "set -euo pipefail" in commands, ".ci/run must stop at its first failing command"
    assert commands[-1] == test_cmd, f".ci/run must end with README's test command, verbatim: {commands[-1]!r}"


def test_readme_front_matter_configures_a_gradio_space():
    """Hugging Face Spaces reads the YAML block that opens README.md."""
    from packaging.specifiers import SpecifierSet

    readme = (ROOT / "README.md").read_text()
    assert readme.startswith("---\n")
    block = readme.split("---\n", 2)[1]
    meta = dict(line.split(": ", 1) for line in block.strip().splitlines())
    assert meta["sdk"] == "gradio" and (ROOT / meta["app_file"]).is_file()
    app_extra = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]["app"]
    spec = next(req.removeprefix("gradio") for req in app_extra if req.startswith("gradio"))
    assert meta["sdk_version"] in SpecifierSet(spec), f"sdk_version {meta['sdk_version']} is outside requirements' {spec}"


def test_results_headers_name_the_command_that_wrote_them(monkeypatch):
    """docs/results/*.md quote their command as a user types it: `hdm ...` for the console script and for
    `python -m hdm`, the script's own line otherwise."""
    from hdm.bench.report import header

    for argv0 in ("/repo/hdm/__main__.py", "/venv/bin/hdm"):
        monkeypatch.setattr(sys, "argv", [argv0, "export", "bench", "--out", "x.md"])
        assert "- command: `hdm export bench --out x.md`" in header("t", "d")
    monkeypatch.setattr(sys, "argv", ["scripts/tool.py", "--n", "3"])
    assert "- command: `scripts/tool.py --n 3`" in header("t", "d")
