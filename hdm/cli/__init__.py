"""The ``hdm`` command (also ``python -m hdm``): every command-line tool of hdm. ``hdm --help`` lists them."""

from __future__ import annotations

import argparse
import sys

from ..errors import HDMError
from . import cam, demo, diffusion, export, faces, models, ncnn, sr

__all__ = ["build_parser", "main"]

#: What ``hdm --help`` says first (plain text).
DESCRIPTION = ("hdm: image restoration and explainability. Class-activation maps (Grad-CAM, Grad-CAM++, HDM-CAM), "
               "face/general super-resolution fusion, diffusion super-resolution, and their export. "
               "Each subcommand has its own --help.")


class _Parser(argparse.ArgumentParser):
    """argparse whose usage errors (an unknown option or choice, a missing file or folder) are one line,
    ``error: ...``, with exit code 2, as hdm's own errors are."""

    def error(self, message: str):
        self.exit(2, f"error: {message} (see `{self.prog} --help`)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="hdm", description=DESCRIPTION)
    sub = parser.add_subparsers(dest="command", metavar="<subcommand>")
    cam.add_parsers(sub)
    sr.add_parsers(sub)
    diffusion.add_parsers(sub)
    export.add_parsers(sub)
    faces.add_parsers(sub)
    ncnn.add_parsers(sub)
    models.add_parsers(sub)
    demo.add_parsers(sub)
    return parser


def main(argv=None) -> int:
    """Run the ``hdm`` command line; an :class:`~hdm.errors.HDMError` ends as its one-line message and exit
    code 2, never a traceback."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    try:
        return args.func(args)
    except HDMError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
