"""Which shell runs a step's text, and Dagu's rule that a Unix shell gets ``-e``."""

from __future__ import annotations

import shlex
from collections.abc import Mapping
from pathlib import PurePath

#: ``shell: direct``: a step's program is exec'd without a shell (Dagu 2.x).
DIRECT = "direct"

UNIX_SHELLS = frozenset({"sh", "bash", "zsh", "ksh", "ash", "dash", "mksh", "busybox"})


def is_unix(shell: tuple[str, ...]) -> bool:
    """``shell`` is a POSIX-family shell (it can run :func:`in_turn`'s script)."""
    return bool(shell) and PurePath(shell[0]).name in UNIX_SHELLS


def with_errexit(shell: tuple[str, ...]) -> tuple[str, ...]:
    """Add ``-e`` to a Unix-like shell that does not have it (Dagu's rule for default shells)."""
    if shell and PurePath(shell[0]).name in UNIX_SHELLS and "-e" not in shell:
        if shell[-1] == "-c":  # sh -c: the text must follow -c, so -e goes before it
            return (*shell[:-1], "-e", "-c")
        return (*shell, "-e")
    return shell


def default_shell(env: Mapping[str, str]) -> tuple[str, ...]:
    """``$DAGU_DEFAULT_SHELL``, else ``$SHELL``, else ``sh``; with ``-e`` for Unix shells."""
    text = env.get("DAGU_DEFAULT_SHELL") or env.get("SHELL") or "sh"
    return with_errexit(tuple(shlex.split(text)))


def in_turn(commands: list[str]) -> str:
    """A POSIX shell script that runs ``commands`` one after another, each in a subshell of
    its own (a fresh working directory and environment, as Dagu gives each command of a
    ``run:`` list a process of its own), and stops at the first that fails, with its exit
    code. Not ``( ... ) || exit``: a shell ignores ``-e`` inside a ``||``, and ``-e`` must
    hold in each command as it would alone. The newlines keep a trailing ``#`` comment in."""
    return "\n".join(f'(\n{c}\n)\ns=$?; [ "$s" -eq 0 ] || exit "$s"' for c in commands) + "\n"
