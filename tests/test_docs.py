"""The prose docs (docs/*.md, weights/README.md) name only files, modules, objects and commands that exist.

The results files (docs/results/) and the model cards (weights/*.md) record the commands that were run and are
not checked here."""
from __future__ import annotations

import argparse
import ast
import functools
import importlib
import re
from pathlib import Path

import pytest

from hdm.cli import build_parser

ROOT = Path(__file__).resolve().parent.parent
DOCS = sorted((ROOT / "docs").glob("*.md")) + [ROOT / "weights" / "README.md", ROOT / "README.md"]

PY_PATH = re.compile(r"(?<![\w./-])((?:[\w-]+/)+[\w-]+\.py)\b")  # hdm/ops/wavelets.py, scripts/x.py (not ../x.py)
PACKAGE_DIR = re.compile(r"(?<![\w./-])(hdm/(?:\w+/)+)")  # hdm/cam/
DOTTED = re.compile(r"(?<![\w./-])hdm(?:\.[A-Za-z_]\w*)+")  # hdm.cam.classifiers.load_resnet50
FENCE = re.compile(r"^```[^\n]*\n(.*?)^```", re.DOTALL | re.MULTILINE)
SPAN = re.compile(r"`([^`\n]+)`")
HDM_COMMAND = re.compile(r"(?:^\s*|-m\s+)hdm\s+([a-z][^\n]*)")  # a line or `-m` starts it; to the line's end
FLAG = re.compile(r"(?<![\w-])--[A-Za-z][\w-]*")


def _text(doc: Path) -> str:
    return doc.read_text(encoding="utf-8")


def _ids(docs):
    return [str(d.relative_to(ROOT)) for d in docs]


@functools.lru_cache(maxsize=1)
def _package_strings() -> frozenset[str]:
    """Every string constant of the package's source (ONNX metadata keys such as ``hdm.scale`` are names the
    package writes, not modules)."""
    found = set()
    for path in (ROOT / "hdm").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                found.add(node.value)
    return frozenset(found)


def _resolve(dotted: str) -> bool:
    """Whether ``hdm.a.b.c`` is a module of the package, or an object reached from one by attributes."""
    parts = dotted.split(".")
    for n in range(len(parts), 0, -1):
        name = ".".join(parts[:n])
        try:
            obj = importlib.import_module(name)
        except ModuleNotFoundError as e:
            if e.name is not None and name.startswith(e.name):
                continue  # no such module: try the shorter prefix with attributes
            raise  # an existing module failed to import: a real error, not a stale name
        for attr in parts[n:]:
            if not hasattr(obj, attr):
                return False
            obj = getattr(obj, attr)
        return True
    return False


@pytest.mark.parametrize("doc", DOCS, ids=_ids(DOCS))
def test_file_paths_exist(doc):
    text = _text(doc)
    missing = sorted({p for p in PY_PATH.findall(text) if not (ROOT / p).is_file()}
                     | {d for d in PACKAGE_DIR.findall(text) if not (ROOT / d).is_dir()})
    assert not missing, f"{doc.name} names files that do not exist: {missing}"


CODE = sorted((ROOT / "hdm").rglob("*.py")) + [ROOT / "app.py", *sorted((ROOT / "scripts").glob("*.py"))]


@pytest.mark.parametrize("source", CODE, ids=_ids(CODE))
def test_docstrings_and_comments_name_modules_that_exist(source):
    """A moved or renamed module leaves no stale ``hdm.x.y`` in the code's docstrings and comments."""
    strings = _package_strings()
    missing = sorted(n for n in set(DOTTED.findall(_text(source))) if n not in strings and not _resolve(n))
    assert not missing, f"{source.name} names modules or objects that do not exist: {missing}"


@pytest.mark.parametrize("doc", DOCS, ids=_ids(DOCS))
def test_dotted_names_exist(doc):
    strings = _package_strings()
    names = set(DOTTED.findall(_text(doc)))
    missing = sorted(n for n in names if n not in strings and not _resolve(n))
    assert not missing, f"{doc.name} names modules or objects that do not exist: {missing}"


def _subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def _flags(parser: argparse.ArgumentParser) -> set[str]:
    return {s for a in parser._actions for s in a.option_strings}


def _code(text: str) -> tuple[list[str], list[str]]:
    """The code of a doc: the lines of its fenced blocks (continuations joined, comments dropped), and its
    inline code spans."""
    lines = [line.split(" #")[0] for block in FENCE.findall(text) for line in block.replace("\\\n", " ").splitlines()]
    return lines, SPAN.findall(FENCE.sub("", text))


def _commands(text: str, names: set[str]) -> list[list[str]]:
    """Every ``hdm`` command of a doc as words from the subcommand on: ``hdm eval-sr --natural DIR``,
    ``python -m hdm ...``, ``torchrun ... -m hdm train-sr``, and inline spans that start with a subcommand
    (``train-sr --val``)."""
    lines, spans = _code(text)
    found = [m.group(1).split() for line in lines + spans for m in HDM_COMMAND.finditer(line)]
    return found + [span.split() for span in spans if span.split()[0] in names and "hdm" not in span]


def _check_command(parser, words: list[str]) -> list[str]:
    """Problems with ``words`` (a subcommand, maybe a sub-subcommand, then arguments) against the real parser."""
    sub = _subcommands(parser)
    head, rest = words[0], words[1:]
    if head not in sub:
        return [f"no subcommand {head!r}"]
    parser = sub[head]
    if _subcommands(parser) and rest and not rest[0].startswith("-"):
        choices = rest[0].split("|")  # `hdm export onnx|tensorrt|bench`
        if len(choices) > 1:
            return [p for choice in choices for p in _check_command(parser, [choice])]
        return _check_command(parser, rest)
    known = _flags(parser)
    return [f"{head} has no option {flag}" for flag in FLAG.findall(" ".join(rest)) if flag not in known]


@pytest.mark.parametrize("doc", DOCS, ids=_ids(DOCS))
def test_commands_and_options_exist(doc):
    parser = build_parser()
    problems = [f"`{' '.join(words)}`: {problem}" for words in _commands(_text(doc), set(_subcommands(parser)))
                for problem in _check_command(parser, words)]
    assert not problems, f"{doc.name}:\n" + "\n".join(problems)


def test_the_checks_find_stale_names():
    text = """See `hdm/sr/io.py`, `scripts/mask_figure.py`, `hdm/views/` and `hdm.models.load_resnet50`.

```bash
python -m hdm eval-sr --natural DIR \\
    --cards   # writes cards
torchrun --nproc_per_node 2 -m hdm train-sr --hr DIR
error: place it in the weights/ folder of an hdm checkout
```
Then `hdm export onnx|tensorrt|bench`, `upscale --tile 256` or `hdm eval_sr`; hdm builds the chain.
"""
    assert PY_PATH.findall(text) == ["hdm/sr/io.py", "scripts/mask_figure.py"]
    assert PACKAGE_DIR.findall(text) == ["hdm/sr/", "hdm/views/"]
    assert DOTTED.findall(text) == ["hdm.models.load_resnet50"]
    assert _commands(text, {"upscale"}) == [
        ["eval-sr", "--natural", "DIR", "--cards"], ["train-sr", "--hr", "DIR"], ["export", "onnx|tensorrt|bench"],
        ["eval_sr"], ["upscale", "--tile", "256"]]
    assert _resolve("hdm.cam.classifiers.load_resnet50") and _resolve("hdm.ops.wavelets")
    assert not _resolve("hdm.models.load_resnet50") and not _resolve("hdm.cam.classifiers.no_such_thing")
    parser = build_parser()
    assert _check_command(parser, ["export", "onnx", "--model", "all", "--fp16", "no"]) == []
    assert _check_command(parser, ["export", "onnx|tensorrt|bench"]) == []
    assert _check_command(parser, ["eval-sr", "--natural", "D", "--no-flag"]) == ["eval-sr has no option --no-flag"]
    assert _check_command(parser, ["export", "tensorrt", "--model", "x"])  # --model is onnx's, not tensorrt's
    assert _check_command(parser, ["eval_sr"]) == ["no subcommand 'eval_sr'"]


@pytest.mark.parametrize("doc", DOCS, ids=_ids(DOCS))
def test_no_python_m_export(doc):
    assert not re.search(r"-m export\b", _text(doc)), f"{doc.name}: the export commands are `hdm export ...`"
