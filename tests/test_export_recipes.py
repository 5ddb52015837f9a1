"""The deployment recipes in export/: the Triton model configs match what ``hdm export onnx`` writes, and every
``hdm`` command and ``from hdm... import`` quoted in export/*.md is real."""
from __future__ import annotations

import argparse
import importlib
import re
import shlex
from pathlib import Path

import onnx
import pytest
import torch

from hdm.cli import build_parser
from hdm.cli import main as hdm_main

ROOT = Path(__file__).resolve().parent.parent
EXPORT = ROOT / "export"
DOCS = sorted(EXPORT.rglob("*.md"))
CONFIGS = sorted(EXPORT.glob("triton/*/config.pbtxt"))
FENCE = re.compile(r"^```[^\n]*\n(.*?)^```", re.DOTALL | re.MULTILINE)
#: ONNX element types -> Triton data types (the ones an hdm export can have).
TRITON_TYPES = {onnx.TensorProto.FLOAT: "TYPE_FP32", onnx.TensorProto.FLOAT16: "TYPE_FP16"}


# -- a parser for the protobuf text format subset that config.pbtxt uses -----------------------------------
_TOKEN = re.compile(r'\s+|#[^\n]*|("(?:[^"\\]|\\.)*"|[{}\[\]:,]|[^\s{}\[\]:,#"]+)')


def _tokens(text: str) -> list[str]:
    out, pos = [], 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m:
            raise ValueError(f"cannot read config at {text[pos:pos + 20]!r}")
        if m.group(1):
            out.append(m.group(1))
        pos = m.end()
    return out


def _scalar(tok: str):
    if tok.startswith('"'):
        return tok[1:-1]
    try:
        return int(tok)
    except ValueError:
        return tok  # an enum such as TYPE_FP32, or true/false


def parse_pbtxt(text: str) -> dict:
    """``{field: [values]}`` (every field as a list; messages as nested dicts) from protobuf text format."""
    toks = _tokens(text)
    pos = 0

    def value():
        nonlocal pos
        tok = toks[pos]
        pos += 1
        if tok == "{":
            return message("}")
        if tok == "[":
            items = []
            while toks[pos] != "]":
                items.append(value())
                if toks[pos] == ",":
                    pos += 1
            pos += 1
            return items
        return _scalar(tok)

    def message(end):
        nonlocal pos
        fields = {}
        while pos < len(toks) and toks[pos] != end:
            name = toks[pos]
            pos += 1
            if toks[pos] == ":":
                pos += 1
            v = value()
            fields.setdefault(name, []).extend(v if isinstance(v, list) else [v])
        pos += 1
        return fields

    return message(None)


def test_the_parser_reads_the_subset():
    cfg = parse_pbtxt('name: "m"  # c\nmax_batch_size: 0\ninput [ { name: "a" dims: [ 3, -1 ] }, { name: "b" } ]\n'
                      "optimization { x: TYPE_FP32 }\ninput { name: \"c\" }")
    assert cfg["name"] == ["m"] and cfg["max_batch_size"] == [0] and cfg["optimization"] == [{"x": ["TYPE_FP32"]}]
    assert [i["name"] for i in cfg["input"]] == [["a"], ["b"], ["c"]] and cfg["input"][0]["dims"] == [3, -1]


# -- the Triton configs against a real export ---------------------------------------------------------------
def _commands() -> list[tuple[Path, list[str]]]:
    """``(doc, words after "hdm")`` for every ``hdm`` line of the fenced blocks of export/*.md."""
    found = []
    for doc in DOCS:
        for block in FENCE.findall(doc.read_text(encoding="utf-8")):
            for line in block.replace("\\\n", " ").splitlines():
                if line.lstrip().startswith("hdm "):
                    found.append((doc, shlex.split(line, comments=True)[1:]))
    return found


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    """A tiny RRDBNet x4 as a plain state-dict file (the CLI reads RRDBNet checkpoints of any layout)."""
    from hdm.sr import RRDBNet

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("w") / "tiny.pth"
    torch.save(RRDBNet(num_feat=8, num_block=1, num_grow_ch=4).state_dict(), path)
    return path


def _option(words: list[str], flag: str) -> str | None:
    return words[words.index(flag) + 1] if flag in words else None


def _dims(value_info) -> list[int | str]:
    """A graph tensor's shape: ints for fixed axes, the axis name for symbolic ones."""
    return [d.dim_param or d.dim_value for d in value_info.type.tensor_type.shape.dim]


def _check(cfg: dict, folder: str, graph: onnx.GraphProto) -> None:
    """Assert that Triton config ``cfg`` of model folder ``folder`` describes ``graph``."""
    assert cfg["name"] == [folder], "the model name must equal its folder's name"
    assert cfg["platform"] == ["onnxruntime_onnx"]
    assert cfg.get("default_model_filename", ["model.onnx"]) == ["model.onnx"]
    batch = cfg.get("max_batch_size", [0])[0]
    for kind, tensors in (("input", graph.input), ("output", graph.output)):
        entries = cfg.get(kind, [])
        assert [e["name"][0] for e in entries] == [t.name for t in tensors], f"{kind} names"
        for entry, tensor in zip(entries, tensors):
            shape = _dims(tensor)
            assert entry["data_type"] == [TRITON_TYPES[tensor.type.tensor_type.elem_type]], tensor.name
            assert all(isinstance(d, str) for d in shape[2:]), f"{tensor.name}: height and width must be dynamic"
            as_triton = [-1 if isinstance(d, str) else d for d in shape]
            if batch > 0:  # Triton adds the batch axis itself: the ONNX one must be dynamic
                assert isinstance(shape[0], str), f"{tensor.name}: max_batch_size {batch} needs a dynamic batch axis"
                assert entry["dims"] == as_triton[1:], tensor.name
            else:
                assert entry["dims"] == as_triton, tensor.name
    assert batch > 0 and [e["dims"] for e in cfg["input"]] == [[3, -1, -1]]  # hdm's SR graphs: RGB, batched


@pytest.mark.parametrize("config", CONFIGS, ids=[c.parent.name for c in CONFIGS])
@pytest.mark.parametrize("fp16", ["no", "yes"])
def test_triton_config_matches_the_export(config, fp16, weights, tmp_path, capsys):
    """The README's command that fills the model's version folder, run on a tiny generator (both precisions:
    the fp16 file keeps float32 input and output), gives the graph the config describes."""
    folder = config.parent.name
    target = f"export/triton/{folder}/1/model.onnx"
    builds = [w for _, w in _commands() if w[:2] == ["export", "onnx"] and _option(w, "--out") == target]
    assert builds, f"export/README.md has no `hdm export onnx ... --out {target}`"
    words = list(builds[0])
    out = tmp_path / folder / "1" / "model.onnx"
    words[words.index("--model") + 1] = str(weights)
    words[words.index("--out") + 1] = str(out)
    if "--fp16" in words:
        words[words.index("--fp16") + 1] = fp16
    else:
        words += ["--fp16", fp16]
    assert hdm_main(words) == 0, capsys.readouterr()
    _check(parse_pbtxt(config.read_text(encoding="utf-8")), folder, onnx.load(str(out)).graph)
    assert (config.parent / "1").is_dir()


def test_a_drifted_config_fails(weights, tmp_path):
    """The check catches a renamed tensor, another dtype, fixed sizes and a batch rule that does not fit."""
    assert CONFIGS, "no export/triton/*/config.pbtxt"
    out = tmp_path / "m.onnx"
    assert hdm_main(["export", "onnx", "--model", str(weights), "--fp16", "no", "--out", str(out)]) == 0
    graph = onnx.load(str(out)).graph
    text = CONFIGS[0].read_text(encoding="utf-8")
    folder = CONFIGS[0].parent.name
    _check(parse_pbtxt(text), folder, graph)
    for old, new in (('name: "lr"', 'name: "input"'), ("TYPE_FP32", "TYPE_FP16"), ("[ 3, -1, -1 ]", "[ 3, 64, 64 ]"),
                     ("max_batch_size: 4", "max_batch_size: 0"), ('"onnxruntime_onnx"', '"tensorrt_plan"'),
                     (f'name: "{folder}"', 'name: "other"')):
        assert old in text, old
        with pytest.raises(AssertionError):
            _check(parse_pbtxt(text.replace(old, new, 1)), folder, graph)


# -- the commands and imports quoted in export/*.md ---------------------------------------------------------
def _choices(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    """A parser's subcommands."""
    return next((dict(a.choices) for a in parser._actions if isinstance(a, argparse._SubParsersAction)), {})


def _subparser(parser: argparse.ArgumentParser, words: list[str]) -> argparse.ArgumentParser:
    """The (sub)parser that reads the options of ``words``."""
    sub = _choices(parser)
    return _subparser(sub[words[0]], words[1:]) if words and words[0] in sub else parser


def test_every_hdm_command_parses():
    commands = _commands()
    assert len(commands) >= 5
    parser = build_parser()
    for doc, words in commands:
        where = f"{doc.relative_to(ROOT)}: hdm {' '.join(words)}"
        try:
            parser.parse_args(words)
        except SystemExit as e:
            pytest.fail(f"{where}: argparse refused it (exit {e.code})")
        known = {s for a in _subparser(parser, words)._actions for s in a.option_strings}
        abbreviated = [w for w in words if w.startswith("--") and w.split("=")[0] not in known]
        assert not abbreviated, f"{where}: not an option of its own (argparse takes prefixes): {abbreviated}"


def test_export_targets_are_the_documented_ones():
    """Every `hdm export` target has its section in export/README.md (and the speed bench is in docs/)."""
    text = (EXPORT / "README.md").read_text(encoding="utf-8")
    targets = set(_choices(_subparser(build_parser(), ["export"])))
    assert targets == {"onnx", "ncnn", "tensorrt", "bench"}, f"new `hdm export` targets {targets}: document them"
    assert all(f"`hdm export {t}`" in text for t in targets - {"bench"})


def test_python_imports_exist():
    imports = [m.groups() for doc in DOCS for block in FENCE.findall(doc.read_text(encoding="utf-8"))
               for m in re.finditer(r"^from (hdm[\w.]*) import (\w+)", block, re.MULTILINE)]
    assert imports
    for module, name in imports:
        assert hasattr(importlib.import_module(module), name), f"from {module} import {name}"


def test_triton_client_example_uses_the_config_names():
    text = (EXPORT / "README.md").read_text(encoding="utf-8")
    client = next(b for b in FENCE.findall(text) if "tritonclient" in b)
    cfg = parse_pbtxt((EXPORT / "triton" / "general_x4" / "config.pbtxt").read_text(encoding="utf-8"))
    assert re.search(r'infer\("(\w+)"', client).group(1) == cfg["name"][0]
    assert re.search(r'InferInput\("(\w+)"', client).group(1) == cfg["input"][0]["name"][0]
    assert re.search(r'as_numpy\("(\w+)"', client).group(1) == cfg["output"][0]["name"][0]
