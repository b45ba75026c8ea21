"""What exec(2) can hand a program: Linux's limits on its arguments and environment.

A process gets its argv and environment from the kernel, which refuses one string
(an argument, or a ``NAME=value``) over 128 KiB, or all of them together over a quarter
of the stack limit (2 MiB by default), with "Argument list too long". A step's
environment carries every upstream ``output:`` (up to ``max_output_size``, 1 MiB by
default), so a large output made every dependent fail with that bare message. These
checks say the same thing before the step starts, plainly, naming the variable, where
it came from, and what to do instead. NUL bytes, which no string passed by exec can
hold, are checked here too.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping

#: MAX_ARG_STRLEN: 32 pages, the most one argument or one ``NAME=value`` may take.
MAX_STRING = 32 * 4096


#: What Linux allows in all when the stack has no limit (three quarters of 8 MiB).
_UNLIMITED_STACK_TOTAL = 6 * 1024 * 1024


def _total() -> int:
    try:
        return min(int(os.sysconf("SC_ARG_MAX")), _UNLIMITED_STACK_TOTAL)
    except (ValueError, OSError):
        return 2 * 1024 * 1024


def _kib(size: int) -> str:
    return f"{size / 1024:,.0f} KiB"


def env_problem(env: Mapping[str, str], origin: Callable[[str], str] = lambda _: "") -> str | None:
    """Why ``env`` cannot be given to a program, or None; ``origin(name)`` says where a
    variable came from (" (the output of step x)")."""
    for name, value in env.items():
        if len(value) + len(name) < MAX_STRING // 4 and "\0" not in value:
            continue  # most values: short enough whatever their encoding
        if "\0" in value:
            return (
                f"environment variable {name}{origin(name)} holds a NUL byte, "
                "which no program can receive"
            )
        size = len(name.encode()) + len(value.encode()) + 2
        if size > MAX_STRING:
            return (
                f"environment variable {name}{origin(name)} holds {_kib(size)}, more than the "
                f"{_kib(MAX_STRING)} a program can receive in one variable (a limit of Linux); "
                "pass a value this large through a file (write it to a file and pass the path)"
            )
    return None


def argv_problem(argv: Iterable[str], what: str = "the command") -> str | None:
    """Why these words cannot be one program's arguments, or None."""
    for word in argv:
        if "\0" in word:
            return f"{what} holds a NUL byte, which no program can receive"
        size = len(word.encode()) + 1
        if size > MAX_STRING:
            return (
                f"{what} has a word of {_kib(size)}, more than the {_kib(MAX_STRING)} a "
                "program can receive in one argument (a limit of Linux); pass text this "
                "large through a file or stdin"
            )
    return None


def total_problem(argv: Iterable[str], env: Mapping[str, str]) -> str | None:
    """Why argv and env together are more than exec(2) takes, or None."""
    limit = _total()
    rough = sum(len(w) + 9 for w in argv) + sum(len(k) + len(v) + 10 for k, v in env.items())
    if rough * 4 < limit:  # far below it whatever the encoding: most steps
        return None
    size = sum(len(w.encode()) + 1 + 8 for w in argv)
    size += sum(len(k.encode()) + len(v.encode()) + 2 + 8 for k, v in env.items())
    if size > limit:
        return (
            f"the command line and environment of this step take {_kib(size)}, more than the "
            f"{_kib(limit)} a program can receive (a limit of Linux: a quarter of the stack "
            "size limit); pass large values through files"
        )
    return None
