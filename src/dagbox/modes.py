"""How the terminal shows step output (``--output``). Apart from terminal.py so that the
command line can offer the choice without loading the terminal and the events."""

from __future__ import annotations

from enum import StrEnum


class OutputMode(StrEnum):
    prefix = "prefix"
    grouped = "grouped"
    failures = "failures"
    json = "json"
    quiet = "quiet"
