"""Every Python snippet of README.md and docs/*.md runs as printed, offline, on the shipped weights: each doc's
snippets in order, in one namespace, in a folder holding the files they name (``photo.png`` and ``other.png``
with a face, ``hopper.jpg`` and ``collins.png``, a ``my_photos/`` folder)."""
from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from skimage import data

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
PYTHON = re.compile(r"^```python\n(.*?)^```", re.DOTALL | re.MULTILINE)
WITH_SNIPPETS = [d for d in DOCS if PYTHON.search(d.read_text())]


@pytest.fixture
def folder(tmp_path, monkeypatch):
    face = Image.fromarray(data.astronaut()).resize((128, 128), Image.Resampling.LANCZOS)
    face.save(tmp_path / "photo.png")
    face.transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(tmp_path / "other.png")
    face.save(tmp_path / "collins.png")
    face.convert("L").convert("RGB").save(tmp_path / "hopper.jpg")
    (tmp_path / "my_photos").mkdir()
    for name in ("coffee", "chelsea"):
        Image.fromarray(getattr(data, name)()).save(tmp_path / "my_photos" / f"{name}.png")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HDM_OFFLINE", "1")
    return tmp_path


def test_the_docs_have_snippets():
    assert ROOT / "README.md" in WITH_SNIPPETS and len(WITH_SNIPPETS) >= 3


@pytest.mark.parametrize("doc", WITH_SNIPPETS, ids=lambda d: d.name)
def test_snippets_run(doc, folder, one_torch_thread):
    namespace = {"__name__": "__snippet__"}
    for i, code in enumerate(PYTHON.findall(doc.read_text())):
        exec(compile(code, f"{doc.name} snippet {i + 1}", "exec"), namespace)  # noqa: S102 - the doc's own code
    if doc.name == "README.md":
        big = Image.open(folder / "photo_x4.png")
        assert big.size == (512, 512)
        assert namespace["maps"].shape == (1, 128, 128) and 0 <= float(namespace["maps"].min())
        assert np.asarray(namespace["fast"]).shape == (512, 512, 3)
    assert os.getcwd() == str(folder)
