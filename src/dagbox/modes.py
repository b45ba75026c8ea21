"""How the terminal shows step output (``--output``). Apart from terminal.py so that the
command line can offer the choice without loading the terminal and the events."""

from __future__ import annotations

from enum import StrEnum


class OutputMode(StrEnum):
    prefix = "prefix"
    grouped = "grouped"
    failures = "failures"
    json = "json"
    #: On a terminal, a panel of the steps running now, each with its latest line; a line
    #: per finished step above it, and a failed step's output in full (dagbox/live.py).
    live = "live"
    quiet = "quiet"
