"""The model registry is the one table of models: every shipped entry agrees with its files (architecture and
arguments in the file's metadata, sha256 in the registry and in the model card, licence in the card),
``weights/README.md`` is written from it, and no model name or file name is spelled out anywhere else in the
package or the app."""
from __future__ import annotations

import ast
import hashlib
import json
import re
from pathlib import Path

import pytest
from safetensors import safe_open

from hdm.cli import main
from hdm.io.registry import DEFAULTS, KINDS, MODELS, models_of, weights_readme

ROOT = Path(__file__).resolve().parent.parent
WEIGHTS = ROOT / "weights"


def _metadata(file: str) -> dict:
    with safe_open(str(WEIGHTS / file), "pt") as f:
        return f.metadata() or {}


@pytest.mark.parametrize("cfg", models_of(shipped=True), ids=lambda c: c.name)
def test_a_shipped_entry_agrees_with_its_file_and_card(cfg):
    assert cfg.kind in KINDS and cfg.file == f"{cfg.name}.safetensors" and cfg.card == f"{cfg.name}.md"
    meta = _metadata(cfg.file)
    assert meta["arch"] == cfg.arch
    config = json.loads(meta.get("config", "{}"))
    if cfg.kind in ("sr_general", "sr_face"):
        assert config == cfg.arch_args and cfg.scale == config["scale"]
    elif cfg.kind == "diffusion_sr":
        assert {**config, "stage": meta["stage"]} == cfg.arch_args and cfg.scale == config["scale"]
    elif cfg.kind == "classifier":
        assert len(json.loads(meta["classes"])) == cfg.arch_args["num_classes"]
        assert int(json.loads(meta["record"]).get("size", 128)) == cfg.input_size
    else:
        assert {k: config[k] for k in cfg.arch_args} == cfg.arch_args
    card = (WEIGHTS / cfg.card).read_text()
    for file, digest in cfg.files[:-1]:
        assert f"| {file} | `{digest}` |" in card, f"{cfg.card} does not list {file} with the registry's sha256"
    assert cfg.licence in card, f"{cfg.card} does not state the licence {cfg.licence}"


def test_defaults_name_entries_of_the_right_kind():
    kinds = {"general": "sr_general", "face": "sr_face", "diffusion": "diffusion_sr", "diffusion-teacher": "diffusion_sr",
             "classifier": "classifier", "imagenet": "classifier", "face_embedder": "face_embedder"}
    assert {role: MODELS[name].kind for role, name in DEFAULTS.items()} == kinds
    assert all(MODELS[name].shipped for role, name in DEFAULTS.items() if role != "imagenet")
    assert MODELS[DEFAULTS["diffusion"]].arch_args["stage"] == "student"


@pytest.mark.parametrize("cfg", [c for c in MODELS.values() if c.package is not None], ids=lambda c: c.name)
def test_a_package_entry_agrees_with_its_package_and_card(cfg):
    """A model read from a data package: its files there have the registry's sha256 (checked on loading),
    and its card in weights/ states the source, licence, the files' sha256 and the parity with ncnn."""
    from hdm.io.weights import package_paths
    from hdm.sr.loading import load_generator

    assert [p.name for p in package_paths(cfg.name)] == [f.rsplit("/", 1)[-1] for f, _ in cfg.package_files]
    model = load_generator(cfg.name)
    assert type(model).__name__ == cfg.arch and model.config == cfg.arch_args and model.scale == cfg.scale
    assert cfg.files == ((cfg.card, cfg.files[0][1]),) and cfg.card == f"{cfg.name}.md"
    card = (WEIGHTS / cfg.card).read_text()
    assert hashlib.sha256(card.encode()).hexdigest() == cfg.files[0][1], f"{cfg.card}: update the registry"
    for file, digest in cfg.package_files:
        assert f"| {file.rsplit('/', 1)[-1]} | `{digest}` |" in card
    assert cfg.licence in card and f"{cfg.package[0]}=={cfg.package[1]}" in card
    assert re.search(r"max \|hdm - ncnn\| = \d\.\de-0[5-9]", card), "the card quotes a parity below 1e-4"


def test_downloaded_entries_name_their_url_and_licence():
    import torchvision

    for cfg in (c for c in MODELS.values() if c.url is not None):
        assert cfg.url.startswith("https://") and cfg.licence and cfg.source
    assert MODELS["resnet50_imagenet"].url == torchvision.models.ResNet50_Weights.IMAGENET1K_V2.url


def test_the_weights_readme_is_written_from_the_registry(tmp_path, capsys):
    assert main(["models", "--write-readme", str(tmp_path / "README.md")]) == 0
    assert (tmp_path / "README.md").read_text() == (WEIGHTS / "README.md").read_text(), \
        "weights/README.md is out of date: run `hdm models --write-readme weights/README.md`"
    assert main(["models", "--kind", "sr_general"]) == 0
    listed = capsys.readouterr().out
    assert "sr_general_x4" in listed and "realesrgan_x4plus" in listed and "sr_face_x4" not in listed
    assert weights_readme().count("\n| `") == len(MODELS)


def _strings(path: Path):
    """``(line, text)`` of every string constant of a Python file that is not a docstring."""
    tree = ast.parse(path.read_text())
    docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                  if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
                  and node.body and isinstance(node.body[0], ast.Expr) and isinstance(node.body[0].value, ast.Constant)}
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
            yield node.lineno, node.value


def test_no_model_name_or_file_is_spelled_out_outside_the_registry():
    words = {c.name for c in MODELS.values()} | {f for c in MODELS.values() for f, _ in c.files}
    words |= {c.url for c in MODELS.values() if c.url}
    sources = [p for p in ROOT.glob("hdm/**/*.py") if p.name != "registry.py"] + [ROOT / "app.py"]
    pattern = re.compile("|".join(rf"(?<![\w.]){re.escape(w)}(?![\w])" for w in sorted(words, key=len, reverse=True)))
    found = [f"{p.relative_to(ROOT)}:{line}: {text!r}" for p in sources for line, text in _strings(p)
             if pattern.search(text)]
    assert not found, "model names or files outside hdm.io.registry:\n" + "\n".join(found)
