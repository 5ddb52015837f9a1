"""``python -m hdm``: the same as the ``hdm`` command."""
import sys

from .cli import main

sys.exit(main())
