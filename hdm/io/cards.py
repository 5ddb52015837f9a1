"""Model cards: the Markdown beside each weights file, with the sha256 of every file it describes."""
from __future__ import annotations

import hashlib
from pathlib import Path

from .registry import HDM_LICENCE, MODELS


def sha256(path) -> str:
    h = hashlib.sha256()
    with open(Path(path), "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def licence_line(weights) -> str:
    """The card's licence sentence for ``weights`` (a path): its registry entry's licence, else hdm's own."""
    stem = Path(weights).name.removesuffix(".safetensors")
    licence = MODELS[stem].licence if stem in MODELS else HDM_LICENCE
    return f"Licence: {licence} (hdm's code and weights; see LICENSE). Trained by hdm: source and data below."


def run_summary(record: dict, processes: bool = True) -> str:
    """``date; N steps x batch B, M min on DEVICE (K processes)`` of a training record, for model cards."""
    world = record.get("world_size", 1)
    return (f"{record.get('date')}; {record.get('steps')} steps x batch {record.get('config', {}).get('batch')}, "
            f"{record.get('train_seconds', 0) / 60:.1f} min on {record.get('device')}"
            + (f" ({world} process{'es' if world > 1 else ''})" if processes else ""))


def card_text(lines: list[str], files: list[tuple[str, str]]) -> str:
    """A model card: ``lines``, then the Files table ``| file | `sha256` |`` of ``files`` ``[(name, sha256)]``."""
    table = ["", "## Files", "", "| file | sha256 |", "|---|---|", *(f"| {name} | `{digest}` |" for name, digest in files)]
    return "\n".join([*lines, *table]) + "\n"


def write_model_card(weights, lines: list[str], extra_files=()) -> Path:
    """Write ``<stem>.md`` beside ``weights``: ``lines``, then a Files table with the sha256 of the
    weights and of ``extra_files`` (the form ``tests/test_shipped_weights.py`` checks)."""
    weights = Path(weights)
    card = weights.with_suffix(".md")
    card.write_text(card_text(lines, [(Path(f).name, sha256(f)) for f in (weights, *extra_files)]))
    return card
