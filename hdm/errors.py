"""hdm's errors: one base class, :class:`HDMError`, and the kinds a user meets. The command line
and the app catch ``HDMError`` once and show its message; anything else is a bug."""
from __future__ import annotations


class HDMError(Exception):
    """Base class of every error hdm raises on purpose; the message says what to do next."""


class ImageError(HDMError, ValueError):
    """An input or output image problem, with a message meant for the user."""


class WeightsUnavailable(HDMError, RuntimeError):
    """Pretrained weights could not be loaded (offline and not cached); the message says what to do."""
