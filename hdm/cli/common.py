"""What several ``hdm`` commands share: argument types that check paths, training from a config plus
flags, and JSON without NaN."""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
from pathlib import Path

from ..bench import report
from ..errors import BadArgument

__all__ = ["folders", "existing_file", "shard", "run_training", "without_nan"]


def folders(value: str) -> str:
    """argparse type: a folder, or several joined by ``os.pathsep`` (``train:extra``), each of which exists."""
    for part in value.split(os.pathsep):
        if not Path(part).is_dir():
            raise argparse.ArgumentTypeError(f"no folder at {part}")
    return value


def existing_file(value: str) -> str:
    """argparse type: a file that exists."""
    if not Path(value).is_file():
        raise argparse.ArgumentTypeError(f"no file at {value}")
    return value


def run_training(args, config_class, train) -> int:
    """Build ``config_class`` from ``--config`` JSON overridden by the flags given, and train."""
    fields = {f.name for f in dataclasses.fields(config_class)}
    values = {}
    if args.config:
        path = Path(args.config)
        try:
            values = json.loads(path.read_text())
        except ValueError as e:
            raise BadArgument(f"{path} is not a JSON config ({e})") from e
        unknown = set(values) - fields if isinstance(values, dict) else set()
        if not isinstance(values, dict) or unknown:
            raise BadArgument(f"unknown config keys {sorted(unknown)} in {path}" if unknown else
                              f"{path} must hold a JSON object of {config_class.__name__} fields")
    values.update({k: v for k, v in vars(args).items() if k in fields and v is not None})
    if "hr" not in values:
        raise BadArgument("give --hr FOLDER (or 'hr' in --config)")
    values["command"] = report.hdm_command()
    train(config_class(**values))
    return 0


def without_nan(value):
    """JSON has no NaN: undefined figures (e.g. face PSNR of an image without faces) become null."""
    if isinstance(value, float) and value != value:
        return None
    if isinstance(value, dict):
        return {k: without_nan(v) for k, v in value.items()}
    if isinstance(value, list):
        return [without_nan(v) for v in value]
    return value


def shard(text: str) -> tuple[int, int]:
    """``I/K`` (the I-th of K shares of a job, 1-based) -> ``(I - 1, K)``."""
    try:
        i, k = (int(v) for v in text.split("/"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not I/K (e.g. 1/2: the first of two shards)") from None
    if not (k >= 1 and 1 <= i <= k):
        raise argparse.ArgumentTypeError(f"shard {text}: I must be between 1 and K")
    return i - 1, k
