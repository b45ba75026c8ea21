"""Regular expressions from DAG files, matched in time linear in the text.

A DAG's patterns (``continue_on.output: "re:..."``, a precondition's ``expected:
"re:..."``, ``container.log_pattern``) run inside the runner's event loop. Python's
``re`` backtracks: ``^(a+)+$`` against 34 ``a``\\ s and a ``b`` takes minutes, and
holds the interpreter all along, so no timeout fires and Ctrl-C goes unanswered.
RE2 (``google-re2``) never backtracks, and its syntax is Go's, the one Dagu's
patterns are written in: backreferences and lookarounds are refused here, as they
are by Dagu.
"""

from __future__ import annotations

from functools import cache
from typing import Protocol


class RegexError(ValueError):
    """A pattern RE2 (Go's syntax) cannot compile; the message says why."""


class Pattern(Protocol):
    def search(self, text: str) -> object | None: ...


@cache
def compile_pattern(pattern: str) -> Pattern:
    """``pattern`` compiled with RE2; RegexError when it is not valid in Go's syntax."""
    import re2

    options = re2.Options()
    options.log_errors = False  # RE2 would print its own line on stderr
    try:
        compiled: Pattern = re2.compile(pattern, options=options)
        return compiled
    except re2.error as exc:
        reason = exc.args[0] if exc.args else exc
        if isinstance(reason, bytes):
            reason = reason.decode(errors="replace")
        raise RegexError(str(reason)) from None


def regex_of(text: str) -> Pattern | None:
    """The pattern of a ``re:PATTERN`` value (``expected:``, ``continue_on.output``), or
    None for plain text, which each of those compares in its own way."""
    return compile_pattern(text[3:]) if text.startswith("re:") else None
