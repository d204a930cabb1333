"""Argument types and up-front checks shared by the subcommands.

argparse calls a ``type=`` function on the raw string; raising ``argparse.ArgumentTypeError``
there makes argparse print ``error: argument --FLAG: MESSAGE`` and exit with status 2, before any
work starts. Checks that need several arguments (a folder that must be writable) run in
``check_writable_dir`` and raise ``UsageError``, which the commands print the same way.
"""
from __future__ import annotations

import argparse
import os
import re
import tempfile
from pathlib import Path

# Dataset names become file names (manifest NAME.json, shard prefix NAME-b00000-...): no path
# separators, no dots, room for the writer's suffixes.
_NAME_RE = re.compile(r"^[A-Za-z0-9_-]{1,72}$")


class UsageError(ValueError):
    """A command-line value that cannot work; the message names the flag and what it needs."""


def positive_int(text: str) -> int:
    """An integer >= 1."""
    value = _int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number >= 1, got {text}")
    return value


def non_negative_int(text: str) -> int:
    """An integer >= 0."""
    value = _int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be a whole number >= 0, got {text}")
    return value


def unit_fraction(text: str) -> float:
    """A number in (0, 1]: an opacity, a share."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number between 0 and 1, got {text!r}") from None
    if not 0.0 < value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be a number greater than 0 and at most 1, got {text}")
    return value


def dataset_name(text: str) -> str:
    """A dataset name: 1-72 letters, digits, '_' or '-' (it names files)."""
    if not _NAME_RE.match(text):
        raise argparse.ArgumentTypeError(f"must be 1-72 letters, digits, '_' or '-' (it names files), got {text!r}")
    return text


def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number, got {text!r}") from None


def check_writable_dir(path: str, flag: str) -> None:
    """Create ``path`` if needed and prove a file can be written there; ``UsageError`` naming
    ``flag`` otherwise (so a run does not fail at its very end, after all the work)."""
    folder = Path(path)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".write-check-", dir=folder)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise UsageError(f"{flag} {path}: cannot write there ({exc.strerror or exc})") from None
