"""scripts/readme_figure.py: the README's first picture is written, at its size, with honest PSNR numbers."""
from __future__ import annotations

import importlib.util
import math
import re
from pathlib import Path

import pytest

SCRIPT = Path(__file__).parents[1] / "scripts" / "readme_figure.py"


def _script():
    spec = importlib.util.spec_from_file_location("readme_figure", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_help_names_the_command(capsys):
    script = _script()
    assert "python scripts/readme_figure.py" in script.__doc__
    with pytest.raises(SystemExit) as exit_:
        script.main(["--help"])
    assert exit_.value.code == 0
    assert "--out" in capsys.readouterr().out


def test_readme_figure(tmp_path, capsys, one_torch_thread):
    from PIL import Image

    script = _script()
    out = tmp_path / "figures" / "readme.png"
    assert script.main(["--out", str(out)]) == 0
    printed = capsys.readouterr().out

    with Image.open(out) as im:
        size, mode = im.size, im.mode
    width = script.GAP + 4 * (script.PANEL + script.GAP)
    height = script.GAP + 2 * (script.HEADER + script.PANEL + script.CAPTION + script.GAP) - script.GAP + script.GAP // 2
    assert (size, mode) == ((width, height), "RGB")
    assert 1200 <= width <= 1500

    psnr = {name: float(value) for name, value in re.findall(r"PSNR (\w+): ([-\d.infa]+) dB", printed)}
    assert set(psnr) == {"bicubic", "fusion"}, printed
    assert all(math.isfinite(v) and 15 < v < 50 for v in psnr.values()), psnr
    # measured on this crop: bicubic 26.66 dB, fusion 28.38 dB; fusion's lead is kept with room to spare
    assert psnr["fusion"] > psnr["bicubic"] + 1.0, psnr
    assert "predicted ring" in printed and "true class ring" in printed, printed
