"""``output:``'s object form (Dagu 2.x): what a step publishes as ``${ID.output.KEY}``.

Each KEY is a literal (its ``${...}`` resolved), ``{value: V}``, or read from the
step's stdout, its stderr or a file, decoded as trimmed text, JSON or YAML. Built once
the step succeeded; a value that cannot be had fails the step, as a broken
DAGU_OUTPUT_FILE does.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from dagbox.values import Scope


class OutputObjectError(ValueError):
    """A KEY whose value cannot be had: a missing file, JSON or YAML that does not parse."""


def build(
    spec: dict[str, Any], scope: Scope, stdout: str, stderr_file: str | None, cwd: str
) -> str:
    """The object, as the JSON text dependents read fields of."""
    out = {key: _entry(key, entry, scope, stdout, stderr_file, cwd) for key, entry in spec.items()}
    return json.dumps(out, default=str)  # YAML dates and the like, as text


def _entry(
    key: str, entry: Any, scope: Scope, stdout: str, stderr_file: str | None, cwd: str
) -> Any:
    if isinstance(entry, dict) and "value" in entry:
        return _resolved(entry["value"], scope)
    if not (isinstance(entry, dict) and "from" in entry):
        return _resolved(entry, scope)
    source = entry["from"]
    try:
        if source == "stdout":
            text = stdout
        elif source == "stderr":
            text = Path(stderr_file).read_text(errors="replace") if stderr_file else ""
        else:
            text = (Path(cwd) / scope.value(str(entry["path"]))).read_text()
    except OSError as exc:
        raise OutputObjectError(
            f"output {key}: cannot read {exc.filename}: {exc.strerror}"
        ) from None
    except UnicodeDecodeError:
        raise OutputObjectError(f"output {key}: the file is not UTF-8 text") from None
    decode = entry.get("decode", "text")
    if decode == "text":
        return text.strip()
    try:
        if decode == "json":
            return json.loads(text)
        return yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as exc:
        raise OutputObjectError(f"output {key}: not valid {decode}: {exc}") from None


def _resolved(value: Any, scope: Scope) -> Any:
    if isinstance(value, str):
        return scope.value(value)
    if isinstance(value, list):
        return [_resolved(v, scope) for v in value]
    if isinstance(value, dict):
        return {k: _resolved(v, scope) for k, v in value.items()}
    return value
