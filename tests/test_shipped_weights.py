"""The weights in weights/: each matches the sha256 its model card states, loads, and does its job on
data made here (no ../shared needed)."""
from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import pytest
import torch

WEIGHTS = Path(__file__).resolve().parent.parent / "weights"
CARDS = sorted(WEIGHTS.glob("*.md"))


def _card_hashes(card: Path) -> dict[str, str]:
    return dict(re.findall(r"^\| (\S+) \| `([0-9a-f]{64})` \|$", card.read_text(), flags=re.M))


@pytest.mark.parametrize("card", [c for c in CARDS if c.name != "README.md"], ids=lambda c: c.stem)
def test_card_hashes_match_the_files(card):
    hashes = _card_hashes(card)
    assert hashes, f"{card.name} lists no sha256"
    for name, digest in hashes.items():
        assert hashlib.sha256((WEIGHTS / name).read_bytes()).hexdigest() == digest, name


@pytest.mark.skipif(not (WEIGHTS / "shapes_resnet50.safetensors").is_file(), reason="the shapes model is not shipped")
def test_shapes_model_classifies_fresh_benchmark_images():
    """48 images on procedural backgrounds (a split no run used): the model must get nearly all right."""
    from hdm.models import load_shapes_resnet50, shapes_theta_path
    from hdm.shapes import CLASSES, ShapesDataset

    classifier = load_shapes_resnet50(WEIGHTS / "shapes_resnet50.safetensors")
    assert classifier.categories == list(CLASSES) and classifier.input_size == 128
    data = ShapesDataset(48, seed=777)
    x = torch.stack([data[i][0] for i in range(48)])
    y = torch.tensor([data[i][1] for i in range(48)])
    with torch.no_grad():
        accuracy = (classifier.model(x).argmax(1) == y).float().mean().item()
    assert accuracy >= 0.9, accuracy
    theta = json.loads(shapes_theta_path(WEIGHTS / "shapes_resnet50.safetensors").read_text())["theta"]
    assert len(theta) == 2 and all(isinstance(v, float) for v in theta)
