"""A step's declared ``outputs:``: what its DAGU_OUTPUT_FILE holds, read as Dagu 2.x reads it.

The file takes ``NAME=value`` lines and ``NAME<<DELIM`` heredocs (the value is the lines up
to one that is exactly ``DELIM``), as GitHub Actions' ``GITHUB_OUTPUT`` does. It is read
only after the attempt succeeded; anything wrong in it fails the attempt, so that no
dependent reads a value the step did not mean to give.
"""

from __future__ import annotations

import json
import re

from dagbox.plan import DeclaredOutput

_DELIMITER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class OutputFileError(ValueError):
    """The file breaks a rule; the message says which, as Dagu words it."""


def read(data: bytes, declared: tuple[DeclaredOutput, ...], limit: int) -> dict[str, str]:
    """The declared outputs' values from the file's ``data``. Raises OutputFileError."""
    if len(data) > limit:
        raise OutputFileError(f"DAGU_OUTPUT_FILE exceeds the maximum size of {limit} bytes")
    try:
        text = data.decode()
    except UnicodeDecodeError:
        raise OutputFileError("DAGU_OUTPUT_FILE is not valid UTF-8") from None
    records = _records(text.replace("\r\n", "\n").replace("\r", "\n"))
    types = {d.name: d.type for d in declared}
    values: dict[str, str] = {}
    for name, value in records:
        if name not in types:
            raise OutputFileError(f'undeclared step output "{name}"')
        if name in values:
            raise OutputFileError(f'duplicate step output "{name}"')
        if types[name] == "json":
            try:
                json.loads(value)
            except ValueError:
                raise OutputFileError(f'step output "{name}" is not valid JSON') from None
        values[name] = value
    for name in types:
        if name not in values:
            raise OutputFileError(f'declared step output "{name}" was not emitted')
    return values


def _records(text: str) -> list[tuple[str, str]]:
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()  # the newline that ends the last line
    out: list[tuple[str, str]] = []
    i = 0
    while i < len(lines):
        line, number = lines[i], i + 1
        i += 1
        if not line:
            raise OutputFileError(f"DAGU_OUTPUT_FILE line {number} is empty")
        equals, heredoc = line.find("="), line.find("<<")
        if heredoc >= 0 and (equals < 0 or heredoc < equals):
            name, delimiter = line[:heredoc], line[heredoc + 2 :]
            if not name or not _DELIMITER.match(delimiter):
                raise OutputFileError(f"DAGU_OUTPUT_FILE line {number}: bad heredoc {line!r}")
            try:
                end = lines.index(delimiter, i)
            except ValueError:
                raise OutputFileError(
                    f"DAGU_OUTPUT_FILE line {number}: heredoc {delimiter} is not closed"
                ) from None
            out.append((name, "\n".join(lines[i:end])))
            i = end + 1
        elif equals > 0:
            out.append((line[:equals], line[equals + 1 :]))
        else:
            raise OutputFileError(
                f"DAGU_OUTPUT_FILE line {number} is neither NAME=value nor NAME<<DELIMITER"
            )
    return out
