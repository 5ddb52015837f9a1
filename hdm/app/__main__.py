"""``python -m hdm.app``: the demo app, the same as ``hdm demo``."""
from .ui import main

main()
