"""Typed params (Dagu 2.x): a declared ``type``, ``enum``, bounds, ``pattern`` and
``required``, checked against the values a run gets (defaults, then the command line).

A value stays text (it is pasted into shell text and exported as a variable); the type
says what text it may be: ``integer`` ``3``, ``number`` ``1.25``, ``boolean`` ``true`` or
``false``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING

from dagbox.regex import RegexError, compile_pattern
from dagbox.secrets import is_secret_name

if TYPE_CHECKING:
    from dagbox.spec.model import Param

TYPES = ("string", "integer", "number", "boolean")
_INTEGER = re.compile(r"[+-]?[0-9]+")
_NUMBER = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")


_PARAM_TOKEN = re.compile(r"""(?:([^\s=]+)=)?("(?:\\"|[^"])*"|`[^`]*`|[^"\s]+)""")


#: A param's name: a word, or a position (``1``, ``2``, ...).
PARAM_NAME = re.compile(r"^(?:[A-Za-z][A-Za-z0-9_]*|[0-9]+)$")


def numbered(pairs: Iterable[tuple[str | None, str]]) -> dict[str, str]:
    """Params by name, a positional one named by its place ("1", "2", ...)."""
    out: dict[str, str] = {}
    position = 0
    for name, value in pairs:
        if name is None:
            position += 1
            name = str(position)
        out[name] = value
    return out


class ParamsTextError(ValueError):
    """A params string with text that is not a param (an unterminated quote, say)."""


def parse_params_text(text: str) -> list[tuple[str | None, str]]:
    """Split Dagu's params string: ``A=1 B="x y" positional`` -> [(name|None, value)].

    Dagu's own pattern silently skips what it cannot read (``A="x B=2`` loses ``A``);
    here that is a ParamsTextError naming the column, so no param is lost unsaid.
    """
    out: list[tuple[str | None, str]] = []
    end = 0
    for match in _PARAM_TOKEN.finditer(text):
        _unread(text, end, match.start())
        end = match.end()
        name, raw = match[1], match[2]
        if raw.startswith('"') and raw.endswith('"') and len(raw) >= 2:
            raw = raw[1:-1].replace('\\"', '"').replace("\\\\", "\\")
        out.append((name, raw))
    _unread(text, end, len(text))
    return out


def _unread(text: str, start: int, end: int) -> None:
    skipped = text[start:end]
    if skipped.strip():
        at = start + len(skipped) - len(skipped.lstrip())
        what = "an unterminated quote" if text[at] in '"`' else repr(skipped.strip())
        raise ParamsTextError(f"cannot read params from column {at + 1}: {what}")


class ParamValueError(ValueError):
    """A param's value that its declaration does not allow; the message names both."""


def check(declared: tuple[Param, ...], values: Mapping[str, str]) -> None:
    """Raise ParamValueError for the first value ``declared`` does not allow, or a
    ``required`` param with no value."""
    for param in declared:
        value = values.get(param.name)
        if value is None:
            if param.required and not param.eval:
                raise ParamValueError(f"param {param.name} is required: give it a value")
            continue
        shown = "***" if is_secret_name(param.name) else repr(value)  # a secret is not shown
        problem = problem_of(param, value, shown)
        if problem is not None:
            raise ParamValueError(f"param {param.name}: {problem}")


def problem_of(param: Param, value: str, shown: str | None = None) -> str | None:
    """Why ``value`` is not a value of ``param`` (showing it as ``shown``), or None."""
    shown = repr(value) if shown is None else shown
    kind = param.type or "string"
    number: float | None = None
    if kind == "integer":
        if not _INTEGER.fullmatch(value.strip()):  # Go's ParseInt: no 1_000, ASCII digits
            return f"must be an integer, not {shown}"
        number = int(value.strip())
        if not -(2**63) <= number < 2**63:  # ParseInt(..., 64)
            return f"must be an integer of 64 bits, not {shown}"
    elif kind == "number":
        if not _NUMBER.fullmatch(value.strip()):
            return f"must be a number, not {shown}"
        number = float(value.strip())
        if not math.isfinite(number):
            return f"must be a finite number, not {shown}"
    elif kind == "boolean" and value.strip().lower() not in ("true", "false"):
        return f"must be true or false, not {shown}"
    if param.enum is not None and value not in param.enum:
        return f"must be one of {', '.join(param.enum)}, not {shown}"
    if number is not None and param.minimum is not None and number < param.minimum:
        return f"must be >= {param.minimum:g}, not {shown}"
    if number is not None and param.maximum is not None and number > param.maximum:
        return f"must be <= {param.maximum:g}, not {shown}"
    if param.min_length is not None and len(value) < param.min_length:
        return f"must be at least {param.min_length} characters long"
    if param.max_length is not None and len(value) > param.max_length:
        return f"must be at most {param.max_length} characters long"
    if param.pattern is not None:
        try:
            matches = compile_pattern(param.pattern).search(value) is not None
        except RegexError:
            return None  # validate reported the pattern
        if not matches:
            return f"must match {param.pattern!r}, not {shown}"
    return None
