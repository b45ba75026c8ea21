"""Dagu's ``${...}`` references (docs/format.md, "Values"), resolved against a scope.

``${params.X}`` and ``${env.X}`` are namespaced references; ``$X`` and ``${X}``
are plain ones. Who expands which depends on the field: a host ``run:`` line
gets only the namespaced ones (the shell sees the rest in its environment),
while harness ``with:`` values and container fields get both. A name the scope
does not know stays as written, so a later shell may still expand it, and
``\\${...}`` is an escape that leaves ``${...}`` for the shell.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from fnmatch import fnmatchcase

from dagbox import gotext

_REFERENCE = re.compile(
    r"\\(?P<escaped>\$\{[^}]*\})"
    r"|\$\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z0-9_\-]+(?:\[[0-9]+\])*)*)\}"
    r"|\$(?P<bare>[A-Za-z_][A-Za-z0-9_]*)"
    r"|\$\{(?P<position_braced>[0-9]+)\}|\$(?P<position>[0-9]+)(?![A-Za-z0-9_])"
)
#: Stands for a ``$`` that a shell-style expression's value brought in, while the rest of
#: the text is expanded: a value is never expanded again (no NUL reaches a value).
_HELD = "\0"
#: The start of a shell-style expression: ``${#NAME}``, or ``${NAME`` and an operator
#: (``:-`` ``-`` ``:+`` ``+`` ``:=`` ``=`` ``:?`` ``?`` ``#`` ``##`` ``%`` ``%%`` ``:OFFSET``).
_SHELL_STYLE = re.compile(
    r"\$\{(?:#(?P<length>[A-Za-z_][A-Za-z0-9_]*)\}"
    r"|(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?P<op>:[-=+?]|[-=+?]|##|#|%%|%|:))"
)
#: No value grows past this once its references are expanded: 31 env lines that each
#: double the one before (``A31: ${A30}${A30}``) would otherwise take 32 GiB.
MAX_VALUE_BYTES = 16 * 1024 * 1024


class ValueProblem(ValueError):
    """A value that cannot be expanded: too large, or JSON too deep to read."""


def _too_large(what: str) -> ValueProblem:
    return ValueProblem(
        f"the value would be larger than {MAX_VALUE_BYTES // 2**20} MiB once its {what} "
        "are expanded"
    )


def expand(
    text: str,
    params: Mapping[str, str],
    env: Mapping[str, str],
    *,
    plain: bool,
    fields: bool | None = None,
    into: dict[str, str] | None = None,
    consts: Mapping[str, str] | None = None,
) -> str:
    """Resolve references in ``text``; with ``plain`` also ``$X``/``${X}`` from ``env``,
    and with ``fields`` (default: as ``plain``) ``${OUT.a.b}`` from a JSON value in ``env``.

    With ``into``, a resolved value is not pasted: it is stored in ``into`` under a new
    name, and ``${NAME}`` takes its place, for a shell to read from its environment
    without parsing the value as code.

    Raises ValueProblem past MAX_VALUE_BYTES (checked as it grows, so it never gets there).
    """
    if "$" not in text:
        return text
    if plain and "${" in text:
        text = _shell_styles(
            text, env, lambda word: expand(word, params, env, plain=True, consts=consts)
        )
    size = len(text)
    fields = plain if fields is None else fields

    def replace(match: re.Match[str]) -> str:
        nonlocal size
        value = _resolve(match)
        pasted_safely = (  # inside single quotes the shell would not expand ${NAME}
            value is not None and "'" not in value and _shell_quoted(text, match.start())
        )
        if into is not None and value is not None and not match["escaped"] and not pasted_safely:
            name = f"DAGBOX_VALUE_{len(into) + 1}"
            into[name] = value
            value = f"${{{name}}}"
        value = match[0] if value is None else value
        size += len(value) - len(match[0])
        if size > MAX_VALUE_BYTES:
            raise _too_large("${...} references")
        return value

    def _resolve(match: re.Match[str]) -> str | None:
        """The value ``match`` stands for, or None when it stays as written."""
        if match["escaped"]:
            return match["escaped"]
        position = match["position"] or match["position_braced"]
        if position is not None:
            # $1, ${1}: a positional param. A shell cannot get those from its environment,
            # so dagbox pastes them in everywhere, as Dagu does; but not after a backslash
            # or inside single quotes (awk '{print $1}'), where they are the text's own.
            start = match.start()
            if text[start - 1 : start] == "\\" or single_quoted(text, start, match.end()):
                return None
            return params.get(position)
        braced, bare = match["braced"], match["bare"]
        if braced is not None and (braced == "params" or "." in braced):
            found = _published(braced, params, env)
            if found is not None:
                return found
        if braced is not None and "." in braced:
            space, _, name = braced.partition(".")
            tables = {"params": params, "env": env, "consts": consts or {}}
            table = tables.get(space)
            if table is not None and name in table:
                return table[name]
            if table is None and fields and space in env:
                return _json_field(env[space], name.split("."), space)
            return None
        name = braced if braced is not None else bare
        if plain and name in env and not single_quoted(text, *match.span()):  # '$X' stays
            return env[name]
        return None

    return _REFERENCE.sub(replace, text).replace(_HELD, "$")


def _shell_styles(text: str, env: Mapping[str, str], word: Callable[[str], str]) -> str:
    """Shell-style expressions of names ``env`` has, evaluated as a POSIX shell (and bash,
    for ``${V:1:2}``) would: ``${V:-x}``, ``${V:+x}``, ``${#V}``, ``${V#pattern}``, ...,
    ``word`` resolving the references in their words. Dagu's rule: an expression whose name
    is not known, or that cannot be read, stays as written; one that would assign
    (``${EMPTY:=x}``) or fail (``${EMPTY:?x}``) keeps every expression of the field as
    written (plain ``$X`` still resolve)."""
    out: list[str] = []
    last = 0
    for match in _SHELL_STYLE.finditer(text):
        start = match.start()
        if start < last or text[start - 1 : start] == "\\":
            continue
        if single_quoted(text, start, match.end()):
            continue
        if match["length"] is not None:
            if match["length"] in env:
                out += [text[last:start], str(len(env[match["length"]]))]
                last = match.end()
            continue
        end = _closing_brace(text, match.end())
        if end is None or match["name"] not in env:
            continue
        value = _operate(env[match["name"]], match["op"], text[match.end() : end], word)
        if value is _ABANDON:  # the shell would fail on it: Dagu keeps the field's text
            return text
        if value is not None:
            out += [text[last:start], value.replace("$", _HELD)]  # expanded once only
            last = end + 1
        if sum(map(len, out)) > MAX_VALUE_BYTES:
            raise _too_large("${...} expressions")
    return "".join(out) + text[last:] if out else text


def _closing_brace(text: str, start: int) -> int | None:
    """Where the ``}`` that closes a ``${`` opened before ``start`` is (nested ones count)."""
    depth = 0
    for i in range(start, len(text)):
        if text[i] == "{" and text[i - 1] == "$":
            depth += 1
        elif text[i] == "}":
            if depth == 0:
                return i
            depth -= 1
    return None


#: What an expression that would assign (``${EMPTY:=x}``) or fail (``${EMPTY:?x}``) gives:
#: Dagu's shell expansion fails then, and every expression of the field stays as written.
_ABANDON = "\0abandon"


def _operate(value: str, op: str, rest: str, word: Callable[[str], str]) -> str | None:
    """``${NAME<op><rest>}`` of a name whose value is ``value``; None: stays as written;
    _ABANDON: the whole field's expressions stay."""
    if op in (":-", "-", ":=", "="):
        unset_or_empty = op.startswith(":") and value == ""
        if not unset_or_empty:
            return value
        return _ABANDON if "=" in op else word(rest)  # assigning is the shell's to do
    if op in (":+", "+"):
        return word(rest) if value or op == "+" else ""
    if op in (":?", "?"):
        return value if value or op == "?" else _ABANDON
    if op in ("#", "##", "%", "%%"):
        pattern = word(rest)
        cuts = range(len(value) + 1)
        if op == "#":
            return next((value[k:] for k in cuts if fnmatchcase(value[:k], pattern)), value)
        if op == "##":
            found = (value[k:] for k in reversed(cuts) if fnmatchcase(value[:k], pattern))
            return next(found, value)
        if op == "%":
            found = (value[:k] for k in reversed(cuts) if fnmatchcase(value[k:], pattern))
            return next(found, value)
        return next((value[:k] for k in cuts if fnmatchcase(value[k:], pattern)), value)
    # ":": ${V:OFFSET} or ${V:OFFSET:LENGTH}, as bash (a negative offset counts from the end)
    parts = rest.split(":")
    try:
        numbers = [int(p.strip()) for p in parts]
    except ValueError:
        return None
    if not 1 <= len(numbers) <= 2:
        return None
    offset = numbers[0] if numbers[0] >= 0 else max(len(value) + numbers[0], 0)
    if len(numbers) == 1:
        return value[offset:]
    length = numbers[1]
    return value[offset : offset + length] if length >= 0 else value[offset:length]


def _published(braced: str, params: Mapping[str, str], env: Mapping[str, str]) -> str | None:
    """``${params}`` (the payload, as ``$DAG_PARAMS_JSON``), a dotted name a dependent
    sees (``${steps.ID.outputs.NAME}``, ``${ID.stdout}``, ``${context.run.id}``), or a
    field of a step's output object (``${ID.output.KEY.field}``, ``${ID.outputs.KEY}``)."""
    if braced == "params":
        return params_json(params)
    if braced in env:
        return env[braced]
    parts = braced.split(".")
    holder = ".".join(parts[:2])
    if len(parts) > 2 and parts[1] in ("output", "outputs") and holder in env:
        return _json_field(env[holder], parts[2:], holder)
    return None


def params_json(params: Mapping[str, str]) -> str | None:
    """The named params as Dagu gives them in ``$DAG_PARAMS_JSON`` and ``${params}``:
    compact JSON, keys sorted; None when there are none."""
    named = {k: v for k, v in params.items() if not k.isdigit()}
    return json.dumps(named, separators=(",", ":"), sort_keys=True) if named else None


def single_quoted(text: str, start: int, end: int) -> bool:
    """The reference ``text[start:end]`` is inside single quotes, by Dagu's rule: a ``'``
    opens (unless after ``$`` or ``}``, or escaped by an odd run of backslashes) or closes
    a quoted span, and the span counts only if a ``'`` closes it after the reference (so
    one apostrophe, as in "don't", quotes nothing)."""
    if "'" not in text:
        return False
    inside = False
    for i in range(start):
        if text[i] != "'" or _escaped(text, i):
            continue
        if inside:
            inside = False
        elif i == 0 or text[i - 1] not in "$}":
            inside = True
    if not inside:
        return False
    close = text.find("'", end)
    while close != -1 and _escaped(text, close):
        close = text.find("'", close + 1)
    return close != -1


def _shell_quoted(text: str, end: int) -> bool:
    """``text[end]`` is inside a ``'...'`` that a POSIX shell reads as one (a value pasted
    there is text). Double quotes, backslashes, comments, ``$'...'`` and ``$(...)`` (also
    inside double quotes) are followed; a heredoc or a backtick makes it say no: when
    unsure, the value goes through the environment, which is never code."""
    if "<<" in text or "`" in text[:end]:
        return False
    # The contexts open at i: "" (plain shell text), "'" or '"', and for each plain one
    # how many of its own parentheses are open (the one past them ends a $( ... )).
    kinds, parens = [""], [0]
    i = 0
    while i < end:
        char, kind = text[i], kinds[-1]
        if kind == "'":
            if char == "'":
                kinds.pop()
        elif text.startswith("$'", i):
            return False
        elif char == "\\":
            i += 1
        elif text.startswith("$(", i):
            kinds.append("")  # a command substitution: plain text again
            parens.append(0)
            i += 1
        elif kind == '"':
            if char == '"':
                kinds.pop()
        elif char == "#" and (i == 0 or text[i - 1] in " \t\n;&|("):
            newline = text.find("\n", i)
            if newline == -1 or newline >= end:
                return False
            i = newline
        elif char in "'\"":
            kinds.append(char)
        elif char == "(":
            parens[-1] += 1
        elif char == ")":
            if parens[-1] == 0 and len(parens) > 1:
                kinds.pop()  # the end of a $( ... )
                parens.pop()
            else:
                parens[-1] -= 1
        i += 1
    return kinds[-1] == "'"


def _escaped(text: str, i: int) -> bool:
    """``text[i]`` follows an odd run of backslashes (walked back: no copy of the text)."""
    j = i
    while j > 0 and text[j - 1] == "\\":
        j -= 1
    return (i - j) % 2 == 1


@dataclass(frozen=True, slots=True)
class Scope:
    """The one way dagbox resolves ``${...}``: the params and the env a value is read in,
    and a method per rule of docs/format.md, "Values"."""

    params: Mapping[str, str]
    env: Mapping[str, str]
    consts: Mapping[str, str] = field(default_factory=dict)

    def value(self, text: str) -> str:
        """A value (argv words, ``with:`` values, container fields): every reference."""
        return expand(text, self.params, self.env, plain=True, consts=self.consts)

    def shell(self, text: str, into: dict[str, str] | None = None) -> str:
        """Text a shell reads (a ``run:`` line, a precondition): the namespaced references
        and the fields of JSON values (``${OUT.a.b}``, as Dagu) pasted in; ``$X`` is the
        shell's, from its environment. With ``into``, the values are handed over by name
        instead of pasted (see :func:`expand`)."""
        return expand(
            text, self.params, self.env, plain=False, fields=True, into=into, consts=self.consts
        )

    def with_env(self, env: Mapping[str, str]) -> Scope:
        return Scope(self.params, env, self.consts)


def references(text: str) -> list[str]:
    """Every name ``text`` refers to: ``$X``, ``${X}``, ``${params.X}``, ``${env.X}``,
    ``${OUT.field}`` (as ``OUT``), and the names of shell-style expressions (``${X:-y}``)."""
    if "$" not in text:
        return []
    out = []
    for match in _REFERENCE.finditer(text):
        name = match["braced"] or match["bare"]
        if name:
            space, dot, rest = name.partition(".")
            out.append(rest.split(".")[0] if dot and space in ("params", "env") else space)
    out += [m["length"] or m["name"] for m in _SHELL_STYLE.finditer(text)]
    return out


def plain_names(text: str) -> list[str]:
    """The names of the plain references (``$X``, ``${X}``) in ``text``, in order."""
    if "$" not in text:
        return []
    return [
        m["braced"] or m["bare"]
        for m in _REFERENCE.finditer(text)
        if (m["braced"] and "." not in m["braced"]) or m["bare"]
    ]


def _json_field(document: str, keys: list[str], name: str) -> str | None:
    """``${OUT.a.b}``: field ``a.b`` of an output that holds a JSON object."""
    if not document.lstrip().startswith(("{", "[")):
        return None
    try:
        value = json.loads(document)
    except ValueError:
        return None
    except RecursionError:  # json recurses: a 5,000-deep document cannot be read
        raise ValueProblem(
            f"{name} holds JSON nested too deeply for ${{{name}.{'.'.join(keys)}}} to read it"
        ) from None
    for key in keys:
        field, _, indexes = key.partition("[")  # outputs[0]: an item of a list, as in Dagu
        if not isinstance(value, dict) or field not in value:
            return None
        value = value[field]
        for index in re.findall(r"\[?([0-9]+)\]", indexes and "[" + indexes):
            if not isinstance(value, list) or int(index) >= len(value):
                return None
            value = value[int(index)]
    return gotext.text(value)
