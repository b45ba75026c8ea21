"""Which shell runs a step's text, and Dagu's rule that a Unix shell gets ``-e``."""

from __future__ import annotations

import shlex
from collections.abc import Mapping
from pathlib import PurePath

UNIX_SHELLS = frozenset({"sh", "bash", "zsh", "ksh", "ash", "dash", "mksh", "busybox"})


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
