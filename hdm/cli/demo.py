"""``hdm demo``: the Gradio demo app (:mod:`hdm.app.ui`) from an installed package."""
from __future__ import annotations

import os

from ..errors import BadArgument

__all__ = ["add_parsers"]


def _cmd_demo(args) -> int:
    if args.port is not None and not 0 < args.port < 65536:
        raise BadArgument(f"--port must be between 1 and 65535, got {args.port}")
    try:
        from ..app import ui  # lazy: needs the [app] extra (gradio), and builds the page's model hub
    except ImportError as e:
        raise BadArgument(f"the demo needs the app extra ({e}): pip install 'hdm[app]'") from e
    if args.host:
        os.environ["HDM_HOST"] = args.host
    if args.port is not None:
        os.environ["HDM_PORT"] = str(args.port)
    ui.main()
    return 0


def add_parsers(sub) -> None:
    """Register ``demo`` on ``sub`` (the ``hdm`` subparsers object)."""
    p = sub.add_parser("demo", help="start the demo app in the browser (Gradio; needs the app extra)",
                       description="Start hdm's Gradio demo: CAMs, wavelet subbands, face-fusion and diffusion SR. "
                                   "It serves http://127.0.0.1:7860 unless --host / --port (or HDM_HOST / HDM_PORT) "
                                   "say otherwise; Ctrl+C stops it.")
    p.add_argument("--host", help="address to listen on (default 127.0.0.1; 0.0.0.0 for every interface)")
    p.add_argument("--port", type=int, help="port (default 7860)")
    p.set_defaults(func=_cmd_demo)
