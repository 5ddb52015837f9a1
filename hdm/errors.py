"""hdm's errors: one base class, :class:`HDMError`, and the kinds a user meets. The command line
and the app catch ``HDMError`` once and show its message; anything else is a bug.

Each kind also derives from the builtin error it refines, so ``except ValueError`` (or
``FileNotFoundError``, ``RuntimeError``) written before these kinds existed still catches them."""
from __future__ import annotations

__all__ = ["HDMError", "ImageError", "WeightsUnavailable", "BadArgument", "MissingFile", "TrainingError"]


class HDMError(Exception):
    """Base class of every error hdm raises on purpose; the message says what to do next."""


class ImageError(HDMError, ValueError):
    """An input or output image problem, with a message meant for the user."""


class WeightsUnavailable(HDMError, RuntimeError):
    """Pretrained weights could not be loaded (offline and not cached); the message says what to do."""


class BadArgument(HDMError, ValueError):
    """An argument that cannot be used: an unknown name or mode, a value out of range, an option the
    chosen mode does not use, a file of the wrong kind."""


class MissingFile(BadArgument, FileNotFoundError):
    """A file or folder the user named is not there (a :class:`BadArgument` that is also a
    ``FileNotFoundError``)."""


class TrainingError(HDMError, RuntimeError):
    """A training run that cannot go on: a non-finite loss, or the processes of one run out of step."""
