"""The hdm demo on Hugging Face Spaces (the Space's ``app_file``) and from a checkout: ``python app.py``.

The page is :mod:`hdm.app.ui`; ``hdm demo`` (or ``python -m hdm.app``) starts the same app from an installed
package."""
from hdm.app.ui import main

if __name__ == "__main__":
    main()
