"""What every results file of hdm starts with (command, date, machine, data) and how it is written."""
from __future__ import annotations

import datetime as _dt
import os
import platform
import shlex
import sys
from pathlib import Path

import torch


def machine() -> str:
    """CPU, core count, torch and Python versions of this machine."""
    return (f"{platform.processor() or platform.machine()}, {os.cpu_count()} logical CPUs, "
            f"torch {torch.__version__} ({torch.get_num_threads()} threads), Python {platform.python_version()}")


def hdm_command() -> str:
    """``hdm ARGS...`` when the running program is the ``hdm`` command (or ``hdm``), else ``""``
    (a training record stores it; a call from Python has no command line to record)."""
    argv0 = Path(sys.argv[0]) if sys.argv else Path()
    if argv0.name == "hdm" or (argv0.name == "__main__.py" and argv0.parent.name == "hdm"):
        return shlex.join(["hdm", *sys.argv[1:]])  # quoted as a shell needs it ("HDM-CAM (exp)")
    return ""


def command_line() -> str:
    """The running command as a user types it: :func:`hdm_command`, else ``sys.argv`` joined
    (``scripts/load_check.py --n 20``)."""
    return hdm_command() or " ".join(sys.argv)


def header(title: str, data: str) -> list[str]:
    """The first lines of a results file: title, command, date, machine, data."""
    return [f"# {title}", "", f"- command: `{command_line()}`", f"- date: {_dt.date.today().isoformat()}",
            f"- machine: {machine()}", f"- data: {data}", ""]


def write(path: str | Path, text: str) -> Path:
    """Write ``text`` to ``path`` (making its folder)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path
