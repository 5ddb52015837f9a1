"""The package's layout: imports point down (maths -> I/O and weights -> methods -> training and benchmarks ->
command line, app, export), with no cycle between modules or between subpackages, and an import inside a
function only for a lazy optional third-party dependency, commented. Read from the source with ``ast``."""
from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "hdm"

#: Each part of hdm and the parts it may import (itself included implicitly).
LAYERS = {
    "errors": set(),
    "ops": {"errors"},
    "io": {"ops", "errors"},
    "formats": {"ops", "errors", "io"},
    "faces": {"ops", "errors", "io", "formats"},
    "data": {"ops", "errors", "io", "formats", "faces"},
    "cam": {"ops", "errors", "io", "formats", "faces"},
    "losses": {"ops", "errors", "io", "formats", "faces"},
    "diffusion": {"ops", "errors", "io", "formats"},
    "sr": {"ops", "errors", "io", "formats", "faces"},
    "upscaling": {"ops", "errors", "io", "formats", "faces", "sr", "diffusion"},
    "bench": {"ops", "errors", "io", "formats", "data", "faces", "cam", "losses", "diffusion", "sr", "upscaling"},
    "training": {"ops", "errors", "io", "formats", "data", "faces", "cam", "losses", "diffusion", "sr", "upscaling",
                 "bench"},
    "export": {"ops", "errors", "io", "formats", "faces", "cam", "losses", "diffusion", "sr", "upscaling", "bench"},
    "app": {"ops", "errors", "io", "formats", "data", "faces", "cam", "losses", "diffusion", "sr", "upscaling"},
    "cli": {"ops", "errors", "io", "formats", "data", "faces", "cam", "losses", "diffusion", "sr", "upscaling", "bench",
            "training", "export", "app"},
}
#: The rooms of the library proper: none of them may import the runners above them.
LIBRARY = ("errors", "ops", "io", "formats", "data", "faces", "cam", "losses", "diffusion", "sr", "upscaling")
RUNNERS = {"app", "cli", "bench", "training"}
#: Optional third-party packages (extras, or not declared at all), the only imports allowed inside a function;
#: each such import carries a comment. facenet_pytorch, cv2 and matplotlib are core but heavy: imported when used.
LAZY = {"onnx", "onnxruntime", "tensorrt", "ncnn", "gradio", "lpips", "pyiqa", "pytorch_grad_cam", "skimage",
        "facenet_pytorch", "cv2", "matplotlib", "dlib"}


#: hdm modules that may be imported inside a function: the demo's page, which needs the [app] extra (gradio).
LAZY_HDM = {"hdm.app.ui"}


def _modules() -> dict[str, Path]:
    mods = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        mods[".".join(parts)] = path
    return mods


def _imports(name: str, path: Path, mods: dict[str, Path]):
    """``(target module, node, inside a function)`` for every hdm import of module ``name``."""
    tree = ast.parse(path.read_text())
    inside = set()
    for fn in ast.walk(tree):
        if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
            inside.update(id(n) for n in ast.walk(fn) if n is not fn)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[:len(parts) - node.level + 1]) + ("." + node.module if node.module else "")
            else:
                base = node.module or ""
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in mods else base for a in node.names]
        else:
            continue
        for target in targets:
            yield target, node, id(node) in inside


def _part(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def test_no_import_cycle_between_modules_or_parts():
    mods = _modules()
    graph = {m: set() for m in mods}
    for m, path in mods.items():
        for target, _, _ in _imports(m, path, mods):
            while target and target not in mods:
                target = target.rsplit(".", 1)[0] if "." in target else ""
            if target and target != m and not m.startswith(target + "."):
                graph[m].add(target)

    def cycle(g):
        state = {}

        def visit(v, stack):
            state[v] = 1
            for w in g[v]:
                if state.get(w) == 1:
                    return stack[stack.index(w):] + [w]
                if w not in state and (found := visit(w, stack + [w])):
                    return found
            state[v] = 2
            return None

        for v in g:
            if v not in state and (found := visit(v, [v])):
                return found
        return None

    assert cycle(graph) is None, f"import cycle: {' -> '.join(cycle(graph))}"
    parts = {}
    for m, targets in graph.items():
        parts.setdefault(_part(m), set()).update(_part(t) for t in targets if _part(t) != _part(m))
    parts = {p: {t for t in ts if t} for p, ts in parts.items()}
    assert cycle({p: parts.get(p, set()) & set(parts) for p in parts}) is None


def test_imports_point_down():
    mods = _modules()
    wrong = []
    for m, path in mods.items():
        part = _part(m)
        if part not in LAYERS:
            continue  # hdm/__init__.py and hdm/__main__.py sit on top
        for target, node, _ in _imports(m, path, mods):
            other = _part(target) if target.startswith("hdm.") else None
            if other and other != part and other not in LAYERS[part]:
                wrong.append(f"{m} imports {target} (line {node.lineno})")
    assert not wrong, "imports that point up or sideways:\n" + "\n".join(wrong)


def test_imports_inside_functions_are_lazy_optional_dependencies_with_a_comment():
    mods = _modules()
    wrong = []
    for m, path in mods.items():
        lines = path.read_text().splitlines()
        for target, node, inside in _imports(m, path, mods):
            if not inside:
                continue
            top = target.split(".")[0]
            if top == "" or (target not in LAZY_HDM if top == "hdm" else top not in LAZY):
                wrong.append(f"{m}:{node.lineno} imports {target} inside a function")
            elif "#" not in lines[node.end_lineno - 1]:
                wrong.append(f"{m}:{node.lineno} lazy import of {target} without a comment saying why")
    assert not wrong, "\n".join(sorted(set(wrong)))


def test_library_rooms_never_import_the_app_the_cli_benchmarks_or_training():
    assert all(not (LAYERS[room] & RUNNERS) for room in LIBRARY)
    mods = _modules()
    wrong = [f"{m} imports {target}" for m, path in mods.items() if _part(m) in LIBRARY
             for target, _, _ in _imports(m, path, mods) if target.startswith("hdm.") and _part(target) in RUNNERS]
    assert not wrong, "\n".join(wrong)
