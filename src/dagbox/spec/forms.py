"""The one place where Dagu's flexible value forms become one canonical shape.

Dagu lets most keys be written several ways (``env`` as a map or a list of
``K=V`` strings, ``depends`` as a string or a list, ``container`` as a name or
an object, ``pull_policy`` as a word or a boolean, ...). A model field whose
document form differs from its canonical type is annotated with a
:class:`Form`: the normaliser turns any accepted document form into the
canonical value, reporting problems to a :class:`~dagbox.spec.issues.Sink`,
and ``schema`` says what the document may hold (for ``dagbox schema``).
"""

from __future__ import annotations

import math
import re
import shlex
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

from dagbox.layout import artifact_path_problem
from dagbox.params import PARAM_NAME, ParamsTextError, parse_params_text
from dagbox.spec.issues import Sink

#: Returned by a normaliser when the value is unusable (the problem is already reported).
INVALID: Any = type("Invalid", (), {"__repr__": lambda self: "INVALID"})()

ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class Context(NamedTuple):
    """What a normaliser may need besides the value: the canonical type and the builder."""

    target: Any
    build: Callable[[Any, Any, Sink], Any]


@dataclass(frozen=True, slots=True)
class Form:
    normalise: Callable[[Any, Sink, Context], Any]
    schema: dict[str, Any]


def kind(value: Any) -> str:
    """How a YAML value reads to a user: 'a string', 'a list', ..."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return f"a {type(value).__name__} value"


def scalar_text(value: Any) -> str | None:
    """Text of a YAML scalar as Dagu sees it (``true``, ``10``, ``0.5``, ``2``); None if not a scalar."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else repr(value)
    if isinstance(value, str):
        return value
    return None


# --- schemas of the document forms ------------------------------------------------------

_SCALAR = {"type": ["string", "number", "integer", "boolean", "null"]}
_ENV_SCHEMA = {
    "description": "Environment variables: a map, or a list of 'K=V' strings and single-key maps. "
    "Later entries may use earlier ones (${A}).",
    "anyOf": [
        {"type": "object", "additionalProperties": _SCALAR},
        {
            "type": "array",
            "items": {
                "anyOf": [
                    {"type": "string", "pattern": "^[A-Za-z_][A-Za-z0-9_]*="},
                    {"type": "object", "additionalProperties": _SCALAR},
                ]
            },
        },
    ],
}
_STRINGS_SCHEMA = {"anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]}
_INTS_SCHEMA = {"anyOf": [{"type": "integer"}, {"type": "array", "items": {"type": "integer"}}]}


# --- normalisers ------------------------------------------------------------------------


def _env_entry(
    name: Any, value: Any, sink: Sink, out: list[tuple[str, str]], *at: str | int
) -> None:
    if not isinstance(name, str) or not ENV_NAME.match(name):
        sink.error(
            f"invalid environment variable name {name!r}: use letters, digits and _, not starting with a digit",
            *at,
            at_key=True,
        )
        return
    text = scalar_text(value)
    if text is None:
        sink.error(f"value of {name} must be a string, number or boolean, not {kind(value)}", *at)
        return
    out.append((name, text))


def env_vars(value: Any, sink: Sink, ctx: Context) -> Any:
    out: list[tuple[str, str]] = []
    if value is None:
        return ()
    if isinstance(value, dict):
        for name, item in value.items():
            _env_entry(name, item, sink, out, name)
    elif isinstance(value, list):
        for i, item in enumerate(value):
            if isinstance(item, str):
                name, sep, text = item.partition("=")
                if not sep:
                    sink.error(f"{item!r} is not of the form NAME=value", i)
                    continue
                _env_entry(name.strip(), text, sink, out, i)
            elif isinstance(item, dict):
                for name, text in item.items():
                    _env_entry(name, text, sink, out, i, name)
            else:
                sink.error(
                    f"an env list holds 'NAME=value' strings or mappings, not {kind(item)}", i
                )
    else:
        sink.error(f"env must be a mapping or a list, not {kind(value)}")
        return INVALID
    return tuple(out)


ENV = Form(env_vars, _ENV_SCHEMA)

_CONST_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_CONST_REFERENCE = re.compile(r"\$\{consts\.([A-Za-z_][A-Za-z0-9_]*)\}")


def consts(value: Any, sink: Sink, ctx: Context) -> Any:
    """Dagu 2.x's ``consts:``: a list of one-key mappings, each a string, number or boolean,
    resolved in order once, when the file loads (``${consts.x}`` of an earlier entry). A
    reference to a later or unknown const, or to anything that only exists at run time, is
    left as written, with a warning."""
    if value is None:
        return ()
    if not isinstance(value, list):
        sink.error(f"consts must be a list of one-key mappings (- name: value), not {kind(value)}")
        return INVALID
    known: dict[str, str] = {}
    for i, item in enumerate(value):
        if not isinstance(item, dict):
            sink.error(f"consts[{i}]: entries are single-entry mappings, not {kind(item)}", i)
            continue
        if len(item) != 1:
            sink.error(f"consts[{i}] must have exactly one key, not {len(item)}", i)
            continue
        ((name, raw),) = item.items()
        if not isinstance(name, str) or not _CONST_NAME.match(name):
            sink.error(f"consts key {name!r} is invalid: use letters, digits and _", i, at_key=True)
            continue
        if isinstance(raw, float) and not math.isfinite(raw):
            sink.error(f"const {name} must be a finite number", i, name)
            continue
        text = scalar_text(raw) if raw is not None else None
        if text is None or isinstance(raw, dict | list):
            sink.error(f"const {name} must be a literal string, number, or boolean", i, name)
            continue
        for ref in re.finditer(r"\$\{[^}]*\}", text):
            found = _CONST_REFERENCE.fullmatch(ref[0])
            if found is None or found[1] not in known:
                sink.warn(f"{ref[0]} was left unchanged in consts.{name}", i, name)
        known[name] = _CONST_REFERENCE.sub(lambda m: known.get(m[1], m[0]), text)
    return tuple(known.items())


_OUTPUT_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
_SOURCED = frozenset({"from", "path", "decode", "select"})


def output(value: Any, sink: Sink, ctx: Context) -> Any:
    """``output:``: a variable name (the trimmed stdout), or Dagu 2.x's object form, KEY ->
    a literal, ``{value: V}``, or ``{from: stdout|stderr|file, path, decode: text|json|yaml}``."""
    if value is None or isinstance(value, str):
        return value
    if not isinstance(value, dict) or not value:
        sink.error(f"output is a variable name or a non-empty mapping, not {kind(value)}")
        return INVALID
    for key, entry in value.items():
        if not isinstance(key, str) or not _OUTPUT_NAME.match(key):
            sink.error(
                f"output key {key!r} is invalid: use letters, digits and _", key, at_key=True
            )
        elif isinstance(entry, dict) and ("value" in entry or "from" in entry):
            _output_entry(entry, sink.at(key))
    return value


def _output_entry(entry: dict[str, Any], sink: Sink) -> None:
    if "value" in entry and "from" in entry:
        sink.error('"value" and "from" cannot be used together')
    if "value" in entry and len(entry) > 1:
        sink.error('an entry with "value" has no other field')
    for key in (k for k in entry if k != "value" and k not in _SOURCED):
        sink.error(f'unknown field "{key}"', key, at_key=True)
    if "from" in entry:
        if entry["from"] not in ("stdout", "stderr", "file"):
            sink.error(f"from must be stdout, stderr or file, not {entry['from']!r}", "from")
        elif (entry["from"] == "file") != ("path" in entry):
            sink.error('"path" goes with "from: file", and only with it', "path")
    _decoding(entry, sink)


def _decoding(entry: dict[str, Any], sink: Sink) -> None:
    """``decode`` and ``select`` (a jq filter, JSON by default) of an output entry."""
    decode = entry.get("decode", "json" if "select" in entry else "text")
    if decode not in ("text", "json", "yaml"):
        sink.error(f"decode must be text, json or yaml, not {decode!r}", "decode")
    if "select" not in entry:
        return
    if decode == "text":
        sink.error("select needs decode: json or yaml", "select")
    problem = jq_problem(entry["select"])
    if problem is not None:
        sink.error(problem, "select")


def jq_problem(text: Any) -> str | None:
    """Why ``text`` is not a jq filter, or None (``jq`` is imported only when one is used)."""
    if not isinstance(text, str) or not text.strip():
        return "select is a jq filter such as .field, not " + kind(text)
    import jq  # type: ignore[import-not-found]

    try:
        jq.compile(text)
    except ValueError as exc:
        return f"select {text!r} is not a jq filter: {str(exc).splitlines()[0]}"
    return None


def stream_file(stream: str) -> Form:
    """``stdout:``/``stderr:``: a file path (relative to the working directory), or an
    object: ``artifact`` (a path inside the run's artifacts folder) and, for stdout,
    ``outputs`` (stdout read into ``${ID.outputs.NAME}``)."""
    keys = ("artifact", "outputs") if stream == "stdout" else ("artifact",)

    def normalise(value: Any, sink: Sink, ctx: Context) -> Any:
        if value is None or isinstance(value, str):
            return value
        if not isinstance(value, dict) or not value:
            sink.error(f"{stream} is a file path or a mapping with {' or '.join(keys)}")
            return INVALID
        for key in value:
            if key not in keys:
                sink.error(
                    f'unknown field "{key}" (a {stream} object has {" and ".join(keys)})',
                    key,
                    at_key=True,
                )
        if "artifact" in value:
            problem = artifact_path_problem(value["artifact"])
            if problem is not None:
                sink.error(problem, "artifact")
        if "outputs" in value:
            return {**value, "outputs": _stdout_outputs(value["outputs"], sink.at("outputs"))}
        return value

    return Form(
        normalise,
        {
            "anyOf": [{"type": "string"}, {"type": "object", "minProperties": 1}],
            "description": f"A file that gets a copy of the step's {stream}, or "
            + " and ".join(f"{{{k}}}" for k in keys)
            + ".",
        },
    )


def _stdout_outputs(value: Any, sink: Sink) -> Any:
    """``stdout: {outputs: ...}``: a field name (the trimmed stdout), or ``{field, decode,
    select}``, or ``{fields: {NAME: literal | {value} | {decode, select}}}`` -> one shape:
    ``{field, decode, select}`` with its decode made explicit (text for a field without a
    select, else JSON, as Dagu), or ``{fields}`` whose read entries say ``from: stdout``."""
    if isinstance(value, str):
        if not value.strip():
            sink.error("outputs names a field, not an empty string")
        return {"field": value, "decode": "text"}
    if not isinstance(value, dict) or not value:
        sink.error(f"outputs is a field name or a non-empty mapping, not {kind(value)}")
        return INVALID
    for key in value:
        if key not in ("field", "decode", "select", "fields"):
            sink.error(
                f'unknown field "{key}" (outputs has field, decode, select or fields)',
                key,
                at_key=True,
            )
    if "fields" not in value:
        if "field" in value and (not isinstance(value["field"], str) or not value["field"]):
            sink.error("field is a non-empty name", "field")
        _decoding(value, sink)
        plain = value.get("field") and not value.get("select")
        return {**value, "decode": value.get("decode") or ("text" if plain else "json")}
    if any(k in value for k in ("field", "decode", "select")):
        sink.error("fields cannot be used with field, decode or select", "fields")
    fields = value["fields"]
    if not isinstance(fields, dict) or not fields:
        sink.error(f"fields is a non-empty mapping, not {kind(fields)}", "fields")
        return INVALID
    out: dict[str, Any] = {}
    for name, entry in fields.items():
        at = sink.at("fields", name)
        out[name] = entry  # a literal (an object is {value: ...} here, as in Dagu)
        if not isinstance(entry, dict):
            continue
        if "from" in entry and entry["from"] != "stdout":
            at.error("from must be stdout here", "from")
        elif "value" in entry:
            _output_entry(entry, at)
        else:
            for key in (k for k in entry if k not in ("decode", "select", "from")):
                at.error(f'unknown field "{key}"', key, at_key=True)
            _decoding(entry, at)
            out[name] = {**entry, "from": "stdout"}
    return {"fields": out}


OUTPUT = Form(
    output,
    {
        "anyOf": [{"type": "string"}, {"type": "object", "minProperties": 1}],
        "description": "A variable name for the trimmed stdout, or KEY: value, {value}, or "
        "{from: stdout|stderr|file, path, decode}.",
    },
)


def declared_outputs(value: Any, sink: Sink, ctx: Context) -> Any:
    """A step's ``outputs:`` (Dagu 2.x): a non-empty list of ``{name, type}`` (type
    ``string``, the default, or ``json``), names unique -> ((name, type), ...)."""
    if not isinstance(value, list) or not value:
        sink.error("outputs must be a non-empty sequence of {name, type} mappings")
        return INVALID
    out: list[tuple[str, str]] = []
    for i, item in enumerate(value):
        if not isinstance(item, dict) or not item:
            sink.error(f"an output is a non-empty mapping with a name, not {kind(item)}", i)
            continue
        for key in item:
            if key == "path":
                sink.error(
                    "outputs with a path (build artifacts) are not supported by dagbox",
                    i,
                    key,
                    at_key=True,
                )
            elif key not in ("name", "type"):
                sink.error(
                    f'unknown field "{key}" in an output (it has name and type)',
                    i,
                    key,
                    at_key=True,
                )
        name = item.get("name")
        if not isinstance(name, str) or not name.strip():
            sink.error("name is required", i)
            continue
        name = name.strip()
        if not _OUTPUT_NAME.match(name):
            sink.error(f"name must match {_OUTPUT_NAME.pattern}, not {name!r}", i, "name")
        elif any(name == seen for seen, _ in out):
            sink.error(f"duplicate output name {name!r}", i, "name")
        kind_ = item.get("type", "string")
        if kind_ not in ("string", "json"):
            sink.error(f"type must be string or json, not {kind_!r}", i, "type")
            continue
        out.append((name, kind_))
    return tuple(out)


OUTPUTS = Form(
    declared_outputs,
    {
        "type": "array",
        "minItems": 1,
        "items": {
            "type": "object",
            "properties": {"name": {"type": "string"}, "type": {"enum": ["string", "json"]}},
            "required": ["name"],
            "additionalProperties": False,
        },
    },
)

CONSTS = Form(
    consts,
    {
        "type": "array",
        "items": {
            "type": "object",
            "maxProperties": 1,
            "additionalProperties": {"type": ["string", "number", "boolean"]},
        },
    },
)


def _strings(value: Any, sink: Sink, what: str) -> Any:
    """A string or a list of scalars -> tuple of strings."""
    if isinstance(value, str):
        return (value,)
    if isinstance(value, list):
        out = []
        for i, item in enumerate(value):
            text = scalar_text(item) if item is not None else None
            if text is None or isinstance(item, bool):
                sink.error(f"{what} must be a string, not {kind(item)}", i)
            else:
                out.append(text)
        return tuple(out)
    if scalar_text(value) is not None and value is not None and not isinstance(value, bool):
        return (scalar_text(value),)
    sink.error(f"expected a string or a list of strings, not {kind(value)}")
    return INVALID


def strings(value: Any, sink: Sink, ctx: Context) -> Any:
    return () if value is None else _strings(value, sink, "each item")


STRINGS = Form(strings, _STRINGS_SCHEMA)


def ints(value: Any, sink: Sink, ctx: Context) -> Any:
    """An integer or a list of integers -> tuple of ints."""
    items = value if isinstance(value, list) else [value]
    out = []
    for i, item in enumerate(items):
        if isinstance(item, int) and not isinstance(item, bool):
            out.append(item)
        else:
            sink.error(
                f"expected an integer, not {kind(item)}", *((i,) if isinstance(value, list) else ())
            )
    return tuple(out)


INTS = Form(ints, _INTS_SCHEMA)


def depends(value: Any, sink: Sink, ctx: Context) -> Any:
    # null counts as an explicit "no dependencies" ([]), which matters for type: chain.
    if value is None:
        return ()
    names = _strings(value, sink, "a dependency")
    return names  # as written: Dagu trims ids and names, not depends entries


DEPENDS = Form(
    depends,
    {
        "description": "Steps (by name or id) that must finish first: a string or a list.",
        **_STRINGS_SCHEMA,
    },
)


def words(value: Any, sink: Sink, ctx: Context) -> Any:
    """An argv list, or a string split like a shell would (``"sh -c"`` -> ``("sh", "-c")``)."""
    if isinstance(value, str):
        try:
            return tuple(shlex.split(value))
        except ValueError as exc:
            sink.error(f"cannot split {value!r} into words: {exc}")
            return INVALID
    return strings(value, sink, ctx)


WORDS = Form(words, _STRINGS_SCHEMA)


def struct_or_name(key: str, schema: dict[str, Any]) -> Form:
    """A field written either as a bare string (stored under ``key``) or as an object."""

    def normalise(value: Any, sink: Sink, ctx: Context) -> Any:
        if value is None:
            return None
        if isinstance(value, str):
            value = {key: value}
        return ctx.build(value, ctx.target, sink)

    return Form(normalise, schema)


def struct_or_list(schema: dict[str, Any], from_string: str) -> Form:
    """One object, a string (stored under ``from_string``), or a list of either -> tuple."""

    def normalise(value: Any, sink: Sink, ctx: Context) -> Any:
        if value is None:
            return ()
        items = value if isinstance(value, list) else [value]
        out = []
        for i, item in enumerate(items):
            at = sink.at(i) if isinstance(value, list) else sink
            if isinstance(item, str):
                item = {from_string: item}
            built = ctx.build(item, ctx.target, at)
            if built is not INVALID:
                out.append(built)
        return tuple(out)

    return Form(normalise, schema)


def conditions(schema: dict[str, Any]) -> Form:
    """Preconditions: as :func:`struct_or_list` (a string is a command), and an ``eval:``
    must say what it expects (Dagu 2.x: ``eval`` compares a value; a command that must
    succeed is a ``condition``)."""
    listed = struct_or_list(schema, from_string="condition")

    def normalise(value: Any, sink: Sink, ctx: Context) -> Any:
        for i, item in enumerate(value if isinstance(value, list) else [value]):
            if isinstance(item, dict) and "eval" in item and "expected" not in item:
                at = sink.at(i) if isinstance(value, list) else sink
                at.error(
                    '"eval" needs "expected", the value it must give (a command that must '
                    'succeed is a "condition")',
                    "eval",
                    at_key=True,
                )
        return listed.normalise(value, sink, ctx)

    return Form(normalise, schema)


_GO_TRUE = {"1", "t", "T", "TRUE", "true", "True"}
_GO_FALSE = {"0", "f", "F", "FALSE", "false", "False"}
PULL_POLICIES = ("always", "missing", "never", "fallback")


def pull_policy(value: Any, sink: Sink, ctx: Context) -> Any:
    if isinstance(value, bool):
        return "always" if value else "never"
    if isinstance(value, str):
        if value in PULL_POLICIES:
            return value
        if value in _GO_TRUE:
            return "always"
        if value in _GO_FALSE:
            return "never"
        hint = f' (did you mean "{value.lower()}"?)' if value.lower() in PULL_POLICIES else ""
        sink.error(f'invalid pull_policy "{value}": use always, missing, never or fallback{hint}')
        return INVALID
    sink.error(
        f"pull_policy must be always, missing, never, fallback or a boolean, not {kind(value)}"
    )
    return INVALID


PULL_POLICY = Form(
    pull_policy,
    {
        "description": "When to pull the image (default missing). true means always, false never.",
        "anyOf": [{"enum": list(PULL_POLICIES)}, {"type": "boolean"}],
    },
)


def volumes(value: Any, sink: Sink, ctx: Context) -> Any:
    """``src:dst[:ro|rw]`` strings -> Volume(source, target, read_only)."""
    from dagbox.spec.model import Volume

    if value is None:
        return ()
    if not isinstance(value, list):
        sink.error(f"volumes must be a list of 'source:target[:ro|rw]' strings, not {kind(value)}")
        return INVALID
    out = []
    for i, item in enumerate(value):
        if not isinstance(item, str):
            sink.error(f"a volume is a 'source:target[:ro|rw]' string, not {kind(item)}", i)
            continue
        parts = item.split(":")
        if len(parts) not in (2, 3) or not parts[0] or not parts[1]:
            sink.error(f"invalid volume {item!r}: use source:target or source:target:ro|rw", i)
            continue
        mode = parts[2] if len(parts) == 3 else ""
        if mode not in ("", "ro", "rw"):
            sink.error(f"invalid volume mode {mode!r} in {item!r}: use ro or rw", i)
            continue
        if not parts[1].startswith("/"):
            sink.error(
                f"invalid volume {item!r}: the target must be an absolute path in the container", i
            )
            continue
        out.append(Volume(parts[0], parts[1], mode == "ro"))
    return tuple(out)


VOLUMES = Form(
    volumes,
    {
        "description": "Bind mounts and named volumes: 'source:target[:ro|rw]'. Relative sources "
        "count from the DAG's working directory; ~ and $VAR are expanded.",
        "type": "array",
        "items": {"type": "string", "pattern": "^[^:]+:/[^:]*(:(ro|rw))?$"},
    },
)

_PORT = re.compile(
    r"^(?:(?:(?P<ip>[0-9.]+|\[[0-9a-fA-F:]+\]):)?(?P<host>\d{1,5}):)?(?P<port>\d{1,5})(?:/(?P<proto>tcp|udp|sctp))?$"
)


def ports(value: Any, sink: Sink, ctx: Context) -> Any:
    if value is None:
        return ()
    items = value if isinstance(value, list) else [value]
    out = []
    for i, item in enumerate(items):
        at = (i,) if isinstance(value, list) else ()
        text = scalar_text(item) if not isinstance(item, bool | dict | list) else None
        match = _PORT.match(text or "")
        if not match or not all(int(p) <= 65535 for p in (match["host"], match["port"]) if p):
            sink.error(
                f"invalid port {item!r}: use PORT, HOST_PORT:PORT or IP:HOST_PORT:PORT, optionally /tcp, /udp or /sctp",
                *at,
            )
            continue
        out.append(text)
    return tuple(out)


PORTS = Form(ports, {"type": "array", "items": {"type": ["string", "integer"]}})


def command(value: Any, sink: Sink, ctx: Context) -> Any:
    """A command string (one line, or a multi-line script), or a list of commands, each run
    through the shell in turn (Dagu >= 1.29): scalars, and ``key: value`` read back as text
    (YAML's reading of an unquoted ``echo a: b``), trimmed, blank ones dropped."""
    if isinstance(value, str) and not value.strip():
        sink.error("the command is empty")
        return INVALID
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, list):
        out = []
        for i, item in enumerate(value):
            if isinstance(item, dict) and len(item) == 1:
                ((key, inner),) = item.items()
                text = f"{key}: {scalar_text(inner)}" if scalar_text(inner) is not None else None
            else:
                text = scalar_text(item) if item is not None else None
            if text is None:
                sink.error(
                    f"each command of the list is a string, not {kind(item)} (quote a command "
                    "that holds a colon)",
                    i,
                )
                return INVALID
            if text.strip():
                out.append(text.strip())
        if not out:
            sink.error("the command list is empty")
            return INVALID
        return tuple(out)
    text = scalar_text(value)
    if text is not None and not isinstance(value, bool):
        return text
    sink.error(f"expected a command string or a list of commands, not {kind(value)}")
    return INVALID


COMMAND = Form(
    command,
    {
        "description": "A shell command (a multi-line string is a script), or a list of "
        "commands run one after another, each through the shell, stopping at the first failure.",
        **_STRINGS_SCHEMA,
    },
)


def continue_on(value: Any, sink: Sink, ctx: Context) -> Any:
    if isinstance(value, str):
        word = value.strip().lower()
        if word in ("failed", "failure", "skipped"):
            value = {"skipped": True} if word == "skipped" else {"failed": True}
        else:
            sink.error(f'continue_on must be "failed", "skipped" or a mapping, not "{value}"')
            return INVALID
    if value is None:
        return ctx.target()
    return ctx.build(value, ctx.target, sink)


CONTINUE_ON = Form(
    continue_on,
    {
        "description": "Let dependents run after this step fails or is skipped: 'failed', "
        "'skipped', or {failed, skipped, exit_code, output, mark_success}.",
        "anyOf": [{"enum": ["failed", "skipped"]}, {"type": "object"}],
    },
)


_RICH_PARAM_KEYS = {
    "name",
    "default",
    "description",
    "type",
    "required",
    "enum",
    "minimum",
    "maximum",
    "min_length",
    "max_length",
    "pattern",
    "eval",
}


_Pair = tuple[str | None, str | None, str | None, tuple[str | int, ...]]


def params(value: Any, sink: Sink, ctx: Context) -> Any:
    from dagbox.spec.model import Param

    if value is None:
        return ()
    pairs = _param_pairs(value, sink)
    if pairs is None:
        return INVALID
    from dagbox.params import problem_of

    rich: dict[str | None, dict[str, Any]] = {}
    at: dict[str | None, Sink] = {}
    for i, item in enumerate(value if isinstance(value, list) else ()):
        if isinstance(item, dict) and "name" in item and len(item) > 1:
            rich[scalar_text(item["name"])] = _typed(item, sink.at(i))
            at[scalar_text(item["name"])] = sink.at(i)
    out = tuple(Param(*named, **rich.get(named[0], {})) for named in _named_params(pairs, sink))
    for param in out:
        problem = problem_of(param, param.default) if param.default is not None else None
        if problem is not None and param.name in at:
            at[param.name].error(f"the default {problem}", "default")
    return out


def _typed(item: dict[str, Any], sink: Sink) -> dict[str, Any]:
    """A rich param's ``eval`` and declaration of its values (Dagu 2.x), checked."""
    from dagbox.params import TYPES

    out: dict[str, Any] = {}
    if isinstance(item.get("eval"), str):
        out["eval"] = item["eval"]
    if "type" in item:
        if item["type"] in TYPES:
            out["type"] = item["type"]
        else:
            sink.error(f"type must be one of {', '.join(TYPES)}, not {item['type']!r}", "type")
    if "enum" in item:
        choices = item["enum"]
        if (
            isinstance(choices, list)
            and choices
            and all(scalar_text(c) is not None for c in choices)
        ):
            out["enum"] = tuple(str(scalar_text(c)) for c in choices)
        else:
            sink.error("enum must be a non-empty list of values", "enum")
    for key in ("minimum", "maximum"):
        if key in item:
            if isinstance(item[key], int | float) and not isinstance(item[key], bool):
                out[key] = float(item[key])
            else:
                sink.error(f"{key} must be a number", key)
    for key in ("min_length", "max_length"):
        if key in item:
            if isinstance(item[key], int) and not isinstance(item[key], bool) and item[key] >= 0:
                out[key] = item[key]
            else:
                sink.error(f"{key} must be a whole number >= 0", key)
    if "pattern" in item:
        from dagbox.regex import RegexError, compile_pattern

        try:
            compile_pattern(str(item["pattern"]))
            out["pattern"] = str(item["pattern"])
        except RegexError as exc:
            sink.error(f"pattern: {exc}", "pattern")
    if "required" in item:
        if isinstance(item["required"], bool):
            out["required"] = item["required"]
        else:
            sink.error("required must be true or false", "required")
    return out


def _param_pairs(value: Any, sink: Sink) -> list[_Pair] | None:
    """(name or None for positional, default, description, where) for each param written;
    None when ``value`` is no params at all."""
    pairs: list[_Pair] = []
    text: str | None
    if isinstance(value, str):
        try:
            for name, text in parse_params_text(value):
                pairs.append((name, text, None, ()))
        except ParamsTextError as exc:
            sink.error(str(exc))
            return None
    elif isinstance(value, dict):
        for name in sorted(value, key=str):  # Dagu sorts map-form params by name
            text = scalar_text(value[name])
            if text is None:
                sink.error(f"value of param {name} must be a scalar, not {kind(value[name])}", name)
                continue
            pairs.append((str(name), text, None, (name,)))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            pairs.extend(_listed_param(item, i, sink))
    else:
        text = scalar_text(value)
        if text is None:
            sink.error(f"params must be a string, a list or a mapping, not {kind(value)}")
            return None
        pairs.append((None, text, None, ()))
    return pairs


def _listed_param(item: Any, i: int, sink: Sink) -> list[_Pair]:
    """One entry of a params list: ``NAME=value``, ``{name:, default:}``, ``{NAME: value}``
    or a positional scalar."""
    if isinstance(item, str):
        name, sep, after = item.partition("=")
        return [(name, after, None, (i,)) if sep else (None, item, None, (i,))]
    if isinstance(item, dict) and "name" in item and len(item) > 1:
        for key in [k for k in item if k not in _RICH_PARAM_KEYS]:
            sink.error(f'unknown param field "{key}"', i, key, at_key=True)
        if "eval" in item and not (isinstance(item["eval"], str) and item["eval"].strip()):
            sink.error("eval must be a non-empty string", i, "eval")
        default = scalar_text(item.get("default"))
        if default is None:
            sink.error("a param default must be a scalar", i, "default")
        desc = item.get("description")
        return [
            (
                scalar_text(item["name"]),
                default if "default" in item else None,
                desc if isinstance(desc, str) else None,
                (i,),
            )
        ]
    if isinstance(item, dict):
        pairs: list[_Pair] = []
        for name, raw in item.items():
            text = scalar_text(raw)
            if text is None:
                sink.error(f"value of param {name} must be a scalar, not {kind(raw)}", i, name)
                continue
            pairs.append((str(name), text, None, (i, name)))
        return pairs
    if scalar_text(item) is not None:
        return [(None, scalar_text(item), None, (i,))]
    sink.error(f"a param is 'NAME=value', a mapping or a scalar, not {kind(item)}", i)
    return []


def _named_params(pairs: list[_Pair], sink: Sink) -> list[tuple[str, str | None, str | None]]:
    """Positional params named "1", "2", ...; invalid and repeated names refused."""
    out = []
    seen: set[str] = set()
    position = 0
    for name, default, description, at in pairs:
        if name is None:
            position += 1
            name = str(position)
        if not PARAM_NAME.match(name):
            sink.error(
                f"invalid param name {name!r}: use letters, digits and _, starting with a letter",
                *at,
            )
            continue
        if name in seen:
            sink.error(f"param {name} is defined twice", *at)
            continue
        seen.add(name)
        out.append((name, default, description))
    return out


PARAMS = Form(
    params,
    {
        "description": "Parameters: 'A=1 B=2' or positional 'a b', a mapping, or a list of "
        "'K=V' strings, single-key mappings or {name, default, description} objects.",
        "anyOf": [{"type": "string"}, {"type": "object"}, {"type": "array"}],
    },
)


def steps(value: Any, sink: Sink, ctx: Context) -> Any:
    """A list of steps (a bare string is a command step), or a mapping of name -> step."""
    if isinstance(value, dict):
        items = [
            (name, {**step, "name": name} if isinstance(step, dict) else step, (name,))
            for name, step in sorted(value.items(), key=lambda kv: str(kv[0]))
        ]
    elif isinstance(value, list):
        items = [(None, step, (i,)) for i, step in enumerate(value)]
    else:
        sink.error(f"steps must be a list of steps, not {kind(value)}")
        return INVALID
    if not items:
        sink.error("steps must not be empty")
        return INVALID
    out = []
    for index, (_, step, at) in enumerate(items):
        if isinstance(step, str):
            step = {"command": step}
        elif isinstance(step, list):
            sink.error("nested step lists (step groups) are not supported by dagbox", *at)
            continue
        built = ctx.build(step, ctx.target, sink.at(*at))
        if built is INVALID:
            continue
        if built.name is None:
            # As Dagu: the id, else "<kind>_<position>" (cmd_1, harness_2, ...).
            built.name = built.id or f"{_step_kind(built)}_{index + 1}"
        out.append(built)
    return tuple(out)


def _step_kind(step: Any) -> str:
    if step.call is not None:
        return "parallel" if step.parallel is not None else "dag"
    if step.action is not None:
        return str(step.action).split(".")[0]
    if step.container is not None:
        return "docker"
    if step.script is not None:
        return "script"
    return "cmd" if step.run is not None or step.command is not None else "step"


def dag_type(value: Any, sink: Sink, ctx: Context) -> Any:
    if value in ("graph", "chain"):
        return value
    if value in ("agent", "build", "controller"):
        sink.error(f'type "{value}" is not supported by dagbox (use graph or chain)')
    else:
        sink.error(f"type must be graph or chain, not {value!r}")
    return INVALID


DAG_TYPE = Form(
    dag_type,
    {
        "description": "graph (default): steps run when their depends finish. chain: each step "
        "follows the previous one.",
        "enum": ["graph", "chain"],
    },
)


STEPS = Form(steps, {"type": "array", "minItems": 1})
