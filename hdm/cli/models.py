"""``hdm models``: the model registry (:mod:`hdm.io.registry`) as a table, and ``weights/README.md`` written from it."""
from __future__ import annotations

from pathlib import Path

from ..io.registry import DEFAULTS, KINDS, models_of, weights_readme
from ..io.weights import CHECKOUT_WEIGHTS

__all__ = ["add_parsers"]


def _cmd_models(args) -> int:
    if args.write_readme:
        sizes = {f: (CHECKOUT_WEIGHTS / f).stat().st_size for c in models_of(shipped=True) for f, _ in c.files
                 if (CHECKOUT_WEIGHTS / f).is_file()}
        out = Path(args.write_readme)
        out.write_text(weights_readme(sizes))
        print(f"wrote {out}")
        return 0
    roles = {name: role for role, name in DEFAULTS.items()}
    for cfg in models_of(args.kind):
        where = "shipped" if cfg.shipped else "downloaded"
        default = f", default {roles[cfg.name]}" if cfg.name in roles else ""
        print(f"{cfg.name:24s} {cfg.kind:13s} {cfg.licence:13s} {where}{default}: {cfg.description}")
    return 0


def add_parsers(sub) -> None:
    """Register ``models`` on ``sub`` (the ``hdm`` subparsers object)."""
    p = sub.add_parser("models", help="list the models hdm knows by name (the registry)",
                       description="List the registry: every model name the commands, the app and from_pretrained "
                                   "take, with its kind, licence and whether hdm ships it or downloads it.")
    p.add_argument("--kind", choices=KINDS, help="only the models of this kind")
    p.add_argument("--write-readme", metavar="FILE",
                   help="write the weights folder's README (a table of every model and where hdm finds its files) "
                        "to FILE, e.g. weights/README.md")
    p.set_defaults(func=_cmd_models)
