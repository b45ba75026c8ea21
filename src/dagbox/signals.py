"""Signal names as DAG files write them (``signal_on_stop``): ``TERM``, ``SIGINT``, ``9``."""

from __future__ import annotations

import signal


def signal_of(name: str) -> int | None:
    """The signal ``name`` stands for, or None when it names none."""
    text = name.strip().upper()
    if text.isdigit():
        return int(text) if 0 < int(text) < signal.NSIG else None
    if not text.startswith("SIG"):
        text = "SIG" + text
    value = getattr(signal.Signals, text, None) if text in signal.Signals.__members__ else None
    return int(value) if value is not None else None
