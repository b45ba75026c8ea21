"""What dagbox reads from /proc about other processes, parsed in one place.

Each reader returns None (or nothing) for a process that is gone or not ours to read:
between listing /proc and reading a file, any process may end.
"""

from __future__ import annotations

import os

#: Positions in :func:`stat` (fields after the command name, from ``state``; see proc(5)).
STATE, PARENT, GROUP, START = 0, 1, 2, 19


def pids() -> list[str]:
    """The process ids /proc lists now (as names, which is what the paths need)."""
    try:
        return [name for name in os.listdir("/proc") if name.isdigit()]  # noqa: PTH208
    except OSError:
        return []


def stat(pid: int | str) -> list[bytes] | None:
    """``/proc/PID/stat`` split after the command name (which may hold spaces and ``)``)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:  # noqa: PTH123
            fields = handle.read().rsplit(b")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return fields if len(fields) > START else None


def environ(pid: int | str) -> bytes | None:
    """``/proc/PID/environ`` with a NUL before the first and after the last variable, so
    that ``b"\\0NAME=value\\0" in environ(pid)`` finds a whole variable."""
    try:
        with open(f"/proc/{pid}/environ", "rb") as handle:  # noqa: PTH123
            return b"\0" + handle.read() + b"\0"
    except OSError:
        return None
