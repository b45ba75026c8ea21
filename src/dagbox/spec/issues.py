"""Located problems found in a DAG file, and how they are printed.

Every problem carries the data path it was found at (``("steps", 1, "with",
"provider")``). Line and column are looked up in the YAML node tree only when
the problem is reported, so the happy path pays nothing for them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

IssuePath = tuple[str | int, ...]

_PLAIN_KEY = re.compile(r"^[A-Za-z0-9_\-]+$")


def format_path(path: IssuePath) -> str:
    """``("steps", 1, "with", "provider")`` -> ``steps[1].with.provider``."""
    out: list[str] = []
    for part in path:
        if isinstance(part, int) and not isinstance(part, bool):
            out.append(f"[{part}]")
            continue
        part = str(part)  # YAML keys may be numbers or booleans
        if _PLAIN_KEY.match(part):
            out.append(f".{part}" if out else part)
        else:
            out.append(f"[{part!r}]")
    return "".join(out)


#: An error refuses the file; a warning is always shown; a notice only on request.
Severity = Literal["error", "warning", "notice"]


@dataclass(frozen=True, slots=True)
class Issue:
    """One problem at one place. ``at_key`` points the location at the key, not its value."""

    path: IssuePath
    message: str
    severity: Severity = "error"
    at_key: bool = False
    line: int | None = None
    col: int | None = None


@dataclass(frozen=True, slots=True)
class LocatedIssue:
    file: str
    line: int
    col: int
    path: str
    message: str
    severity: Severity

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}:{self.col}: "
        prefix = "" if self.severity == "error" else f"{self.severity}: "
        path = f"{self.path}: " if self.path else ""
        return f"{where}{prefix}{path}{self.message}"


class DagError(Exception):
    """A DAG file that cannot be used: carries every problem found in it, in file order."""

    def __init__(self, file: str, issues: list[LocatedIssue]) -> None:
        self.file = file
        self.issues = issues
        super().__init__("\n".join(str(i) for i in issues))


class Sink:
    """Collects issues at a position in the document; ``at(...)`` moves deeper.

    Normalisers and checks receive a Sink instead of raising, so that one pass
    reports every problem in the file rather than the first. A Sink made by
    ``at`` works out its path only when asked (on an error, or to remember
    where a Struct came from), which keeps the valid-file path cheap.
    """

    __slots__ = ("_parent", "_parts", "_path", "issues")

    def __init__(self, issues: list[Issue], path: IssuePath = ()) -> None:
        self.issues = issues
        self._path: IssuePath | None = path
        self._parent: Sink | None = None
        self._parts: IssuePath = ()

    @property
    def path(self) -> IssuePath:
        if self._path is None:
            assert self._parent is not None
            self._path = (*self._parent.path, *self._parts)
        return self._path

    def at(self, *parts: str | int) -> Sink:
        child = Sink.__new__(Sink)
        child.issues, child._path, child._parent, child._parts = self.issues, None, self, parts
        return child

    def error(self, message: str, *parts: str | int, at_key: bool = False) -> None:
        self.issues.append(Issue((*self.path, *parts), message, at_key=at_key))

    def warn(self, message: str, *parts: str | int, at_key: bool = False) -> None:
        self.issues.append(Issue((*self.path, *parts), message, "warning", at_key=at_key))

    def notice(self, message: str, *parts: str | int) -> None:
        """Something only a run can settle (``validate --show-unresolved`` shows it)."""
        self.issues.append(Issue((*self.path, *parts), message, "notice"))

    @property
    def count(self) -> int:
        """Issues recorded so far, anywhere; compare before and after a check."""
        return len(self.issues)
