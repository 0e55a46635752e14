"""argparse types shared by the commands: each turns bad input into a one-line usage error."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path


def int_in_range(low: int, high: int | None = None) -> Callable[[str], int]:
    """An argparse type: a whole number from low to high (no upper bound when high is None)."""
    allowed = f"from {low} to {high}" if high is not None else f"of at least {low}"

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number {allowed}, got {text!r}") from None
        if value < low or (high is not None and value > high):
            raise argparse.ArgumentTypeError(f"expected a whole number {allowed}, got {text!r}")
        return value

    return parse


def fraction(text: str) -> float:
    """An argparse type: a share from 0 to 1, or a percentage ("0.95" or "95%")."""
    try:
        value = float(text.rstrip("%")) / (100 if text.endswith("%") else 1)
    except ValueError:
        value = float("nan")
    if not 0.0 <= value <= 1.0:  # also refuses nan
        raise argparse.ArgumentTypeError(f"expected a number from 0 to 1 (or 0% to 100%), got {text!r}")
    return value


port_number = int_in_range(1, 65535)
positive_int = int_in_range(1)


def corpus_path(text: str) -> Path:
    """An argparse type: a non-empty path (Path("") would silently mean the current folder)."""
    if not text.strip():
        raise argparse.ArgumentTypeError("expected a folder, got an empty path")
    return Path(text)
