"""``output:``'s object form (Dagu 2.x): what a step publishes as ``${ID.output.KEY}``.

Each KEY is a literal (its ``${...}`` resolved), ``{value: V}``, or read from the
step's stdout, its stderr or a file, decoded as trimmed text, JSON or YAML, and then
picked from by a jq filter (``select``). ``stdout: {outputs: ...}`` builds
``${ID.outputs.NAME}`` the same way. Built once
the step succeeded; a value that cannot be had fails the step, as a broken
DAGU_OUTPUT_FILE does.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from dagbox import gotext
from dagbox.values import Scope


class OutputObjectError(ValueError):
    """A KEY whose value cannot be had: a missing file, JSON or YAML that does not parse."""


def build(
    spec: dict[str, Any], scope: Scope, stdout: str, stderr_file: str | None, cwd: str
) -> str:
    """The object, as the JSON text dependents read fields of."""
    out = {key: _entry(key, entry, scope, stdout, stderr_file, cwd) for key, entry in spec.items()}
    return gotext.json_text(out)  # as Dagu writes it (YAML dates and the like as text)


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
    return _decoded(key, text, entry.get("decode"), entry.get("select"))


def _decoded(key: str, text: str, decode: str | None, select: str | None) -> Any:
    """``text`` decoded (trimmed text, JSON or YAML; JSON when a ``select`` is given),
    then the first result of the jq filter ``select``, as Dagu's gojq gives it."""
    decode = decode or ("json" if select else "text")
    if decode == "text":
        return text.strip()
    try:
        value = json.loads(text) if decode == "json" else yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as exc:
        raise OutputObjectError(f"output {key}: not valid {decode}: {exc}") from None
    if not select:
        return value
    import jq  # type: ignore[import-not-found]  # only a DAG that selects pays for it

    results = jq.compile(select).input_value(json.loads(json.dumps(value, default=str)))
    try:  # the first result, as gojq gives it: later ones are never computed
        found = next(iter(results), _NOTHING)
    except ValueError as exc:
        raise OutputObjectError(f"output {key}: select {select!r} failed: {exc}") from None
    if found is _NOTHING:
        raise OutputObjectError(f"output {key}: select {select!r} found nothing")
    return found


_NOTHING = object()


def build_outputs(config: dict[str, Any], scope: Scope, stdout: str) -> str:
    """``stdout: {outputs: ...}`` (its shape made one by spec/forms.py), as the JSON text
    of ``${ID.outputs.NAME}``: ``{fields}`` one entry each, as ``output:``'s object;
    ``{field, decode, select}`` the decoded value under ``field``, or without it a JSON
    object that is the outputs themselves."""
    if "fields" in config:
        return build(config["fields"], scope, stdout, None, ".")
    field = config.get("field")
    value = _decoded(field or "outputs", stdout, config["decode"], config.get("select"))
    if field:
        return gotext.json_text({field: value})
    if not isinstance(value, dict):
        raise OutputObjectError("stdout outputs: without a field, stdout must be a JSON object")
    return gotext.json_text(value)


def _resolved(value: Any, scope: Scope) -> Any:
    if isinstance(value, str):
        return scope.value(value)
    if isinstance(value, list):
        return [_resolved(v, scope) for v in value]
    if isinstance(value, dict):
        return {k: _resolved(v, scope) for k, v in value.items()}
    return value
