"""Values as Dagu (Go) writes them into text, so that a reference reads the same in both.

A reference to a field of a JSON value (``${OUT.a.b}``, ``${ID.output.KEY}``) gives, as
Dagu's ``stringifyResolvedValue``: a string as it is; an object or list as Go's
``encoding/json`` writes it (compact, keys sorted, ``<``, ``>``, ``&`` escaped); anything
else as Go's ``%v``: ``<nil>``, ``true``, and numbers, which JSON made float64, in the
shortest form with an exponent from 1e+06 on (``1234567`` reads ``1.234567e+06``, as in
Dagu). An output object itself is written with ``encoding/json``'s rules.
"""

from __future__ import annotations

import json
import math
from decimal import Decimal
from typing import Any


def text(value: Any) -> str:
    """``value`` in a reference (Go's ``%v``, or JSON for objects and lists)."""
    if isinstance(value, str):
        return value
    if value is None:
        return "<nil>"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return _number(float(value), json_rules=False)
    return json_text(value)


def json_text(value: Any, indent: int = 0, sort: bool = True) -> str:
    """``value`` as Go's ``json.Marshal`` writes it (a map's keys sorted), or
    ``json.MarshalIndent`` with ``indent`` spaces; ``sort=False`` keeps a mapping's order
    (a Go struct's fields)."""
    return "".join(_json(value, indent, 0, sort))


def _json(value: Any, indent: int, level: int, sort: bool) -> Any:
    inner = "\n" + " " * (indent * (level + 1)) if indent else ""
    close = "\n" + " " * (indent * level) if indent else ""
    if isinstance(value, dict) and value:
        yield "{"
        for i, key in enumerate(sorted(value, key=str) if sort else value):
            yield ("," if i else "") + inner
            yield _string(str(key))
            yield ": " if indent else ":"
            yield from _json(value[key], indent, level + 1, sort)
        yield close + "}"
    elif isinstance(value, list | tuple) and value:
        yield "["
        for i, item in enumerate(value):
            yield ("," if i else "") + inner
            yield from _json(item, indent, level + 1, sort)
        yield close + "]"
    elif isinstance(value, dict | list | tuple):
        yield "{}" if isinstance(value, dict) else "[]"
    elif isinstance(value, str):
        yield _string(value)
    elif value is None or isinstance(value, bool):
        yield json.dumps(value)
    elif isinstance(value, int | float):
        yield _number(float(value), json_rules=True)
    else:  # a YAML date and the like: as text
        yield _string(str(value))


def plain_float(value: float) -> str:
    """Go's ``strconv.FormatFloat(v, 'f', -1, 64)``: the shortest digits, never an exponent."""
    if not math.isfinite(value):
        return str(value)
    text = format(Decimal(repr(value)).normalize(), "f")
    return "0" if text in ("-0", "0") and value == 0 else text


def _string(value: str) -> str:
    out = json.dumps(value, ensure_ascii=False)
    for char, escape in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026")):
        out = out.replace(char, escape)
    return out.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")


def _number(value: float, json_rules: bool) -> str:
    """Go's shortest float text: ``%v`` (an exponent when the number's is below -4 or
    from 6, Go's ``%g`` rule for the shortest digits) or ``encoding/json`` (an exponent
    below 1e-6 or from 1e21)."""
    if not math.isfinite(value):
        return str(value)
    if value == 0:
        return "-0" if math.copysign(1, value) < 0 and not json_rules else "0"
    sign, digits, exponent = Decimal(repr(value)).normalize().as_tuple()
    assert isinstance(exponent, int)
    figures = "".join(map(str, digits))
    point = len(figures) + exponent  # where the decimal point goes, from the first figure
    magnitude = point - 1
    if json_rules:
        scientific = abs(value) < 1e-6 or abs(value) >= 1e21
    else:
        scientific = magnitude < -4 or magnitude >= 6
    minus = "-" if sign else ""
    if scientific:
        mantissa = figures[0] + ("." + figures[1:] if len(figures) > 1 else "")
        # %e writes two exponent digits at least; encoding/json trims e-07 to e-7.
        power = abs(magnitude)
        written = str(power) if json_rules and magnitude < 0 else f"{power:02d}"
        return f"{minus}{mantissa}e{'-' if magnitude < 0 else '+'}{written}"
    if point <= 0:
        return f"{minus}0.{'0' * -point}{figures}"
    if point >= len(figures):
        return f"{minus}{figures}{'0' * (point - len(figures))}"
    return f"{minus}{figures[:point]}.{figures[point:]}"
