"""Keep secret values out of everything dagbox writes and shows.

A variable whose name looks secret (``*_KEY``, ``*_TOKEN``, ``*_SECRET``,
``*PASSWORD*``), from dagbox's environment, the params, the DAG's ``env`` or a step's
``output:``, has its value replaced by ``***`` in terminal output, log files, events,
run records, journals, errors and ``dry-run``. The process itself still gets the real
value. Redaction runs on text as it finally is, after any formatting, and knows the
forms dagbox itself gives a value: JSON-escaped (``$DAG_PARAMS_JSON``, records, and that
as ``echo`` in a POSIX sh prints it),
shell-quoted (``dry-run``), URL-encoded, and as Python writes it inside an error. Output
arrives in chunks that may split a secret in two, so a stream redactor holds back the end
of a chunk while it could still be the start of a secret.
"""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Iterable, Mapping
from functools import lru_cache
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import quote, quote_plus

import msgspec

if TYPE_CHECKING:
    from dagbox.plan import Plan

MASK = "***"
_SECRET_NAME = re.compile(r"(?:_KEY|_TOKEN|_SECRET)$|PASSWORD", re.IGNORECASE)
#: Shorter values are too likely to be ordinary text ("1", "true") to be hunted down.
MIN_LENGTH = 4
#: Longer values (a whole file as a secret-named output, say) are not hunted in text: a
#: pattern that large cannot be compiled, and credentials are far shorter (a 4096-bit RSA
#: key in PEM is 3.2 KiB). Records still mask them by name, and the step that printed one
#: shows none of its stdout.
MAX_HUNTED = 8 * 1024
E = TypeVar("E", bound=msgspec.Struct)


@lru_cache(maxsize=4096)
def is_secret_name(name: str) -> bool:
    return bool(_SECRET_NAME.search(name))


def secret_values(*envs: Mapping[str, str]) -> set[str]:
    return {v for env in envs for k, v in env.items() if is_secret_name(k) and len(v) >= MIN_LENGTH}


def encodings(value: str) -> set[str]:
    """``value`` and every form dagbox may write it in."""
    inner_quoted = value.replace("'", "'\"'\"'")
    as_json = {
        json.dumps(value)[1:-1],  # ASCII-only JSON: $DAG_PARAMS_JSON
        json.dumps(value, ensure_ascii=False)[1:-1],
        msgspec.json.encode(value).decode()[1:-1],  # records and events
    }
    # Go's encoding/json escapes <, > and & (a sub-DAG call's result, written as Dagu does).
    as_json |= {
        form.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
        for form in list(as_json)
    }
    # `echo "$DAG_PARAMS_JSON"` in a POSIX sh (dash) turns each \\ back into \.
    echoed = {form.replace("\\\\", "\\") for form in as_json}
    return {
        value,
        *as_json,
        *echoed,
        shlex.quote(value),  # dry-run
        inner_quoted,  # the same, inside a longer single-quoted word
        quote(value, safe=""),
        quote_plus(value, safe=""),
        repr(value)[1:-1],  # an error message that shows a value with !r
    }


def _literals(values: Iterable[str | bytes]) -> Any:
    """One RE2 pattern matching any of ``values``: RE2 turns the alternation into an
    automaton, so matching costs the same for 3 secrets or 300 (Python's ``re`` tries each
    alternative at every position: 60 times slower at 200 secrets)."""
    import re2

    options = re2.Options()
    options.log_errors = False
    escaped = [re2.escape(v) for v in values]
    either = "|" if isinstance(escaped[0], str) else b"|"
    return re2.compile(either.join(escaped), options=options)


class Redactor:
    def __init__(self, values: Iterable[str] = ()) -> None:
        raw = {v for v in values if MIN_LENGTH <= len(v) <= MAX_HUNTED}
        self.values = sorted({f for v in raw for f in encodings(v)}, key=len, reverse=True)
        self._prefixes = [v.encode() for v in self.values]
        self._text = _literals([*self.values]) if self.values else None
        self._bytes = _literals(self._prefixes) if self.values else None

    def __bool__(self) -> bool:
        return bool(self.values)

    def text(self, text: str) -> str:
        return self._text.sub(MASK, text) if self._text is not None and text else text

    def stream(self) -> StreamRedactor:
        return StreamRedactor(self)

    def event(self, event: E) -> E:
        """``event`` with every string in it redacted (its fields, lists and mappings)."""
        if self._text is None:
            return event
        changes = {}
        for name in event.__struct_fields__:
            value = getattr(event, name)
            redacted = self._value(value)
            if redacted is not value:
                changes[name] = redacted
        return msgspec.structs.replace(event, **changes) if changes else event

    def _value(self, value: Any) -> Any:
        if isinstance(value, str):
            redacted = self.text(value)
            return value if redacted == value else redacted
        if isinstance(value, list):
            items = [self._value(v) for v in value]
            return value if all(a is b for a, b in zip(items, value, strict=True)) else items
        if isinstance(value, dict):
            pairs = {k: self._value(v) for k, v in value.items()}
            return value if all(pairs[k] is value[k] for k in value) else pairs
        return value


class StreamRedactor:
    """Redacts a byte stream chunk by chunk, including secrets split across chunks."""

    __slots__ = ("_carry", "_redactor")

    def __init__(self, redactor: Redactor) -> None:
        self._redactor = redactor
        self._carry = b""

    def feed(self, chunk: bytes) -> bytes:
        pattern = self._redactor._bytes
        if pattern is None:
            return chunk
        data: bytes = pattern.sub(MASK.encode(), self._carry + chunk)
        hold = self._held_back(data)
        self._carry = data[len(data) - hold :] if hold else b""
        return data[: len(data) - hold] if hold else data

    def flush(self) -> bytes:
        rest, self._carry = self._carry, b""
        return rest

    def _held_back(self, data: bytes) -> int:
        """Length of the longest end of ``data`` that begins some secret."""
        longest = 0
        for secret in self._redactor._prefixes:
            first = secret[:1]
            at = data.find(first, max(len(data) - len(secret) + 1, 0))
            while at != -1 and len(data) - at > longest:
                if secret.startswith(data[at:]):
                    longest = len(data) - at
                    break
                at = data.find(first, at + 1)
        return longest


class Secrets:
    """The secret values one run knows so far, by the name each came from.

    Learned as the run goes (the DAG's env line by line, each step's env, outputs), so
    that anything said after a value is known cannot show it.
    """

    def __init__(self, *envs: Mapping[str, str]) -> None:
        self._names: dict[str, str] = {}
        self._redactor = Redactor()
        self._stale = False
        self.learn(*envs)

    def learn(self, *envs: Mapping[str, str]) -> None:
        """Every value of ``envs`` whose name says it is a secret."""
        for env in envs:
            for name, value in env.items():
                if is_secret_name(name):
                    self.add(name, value)

    def add(self, name: str, value: str) -> None:
        """``value`` is a secret whatever its name (the stdout of a secret-named output)."""
        if len(value) >= MIN_LENGTH and value not in self._names:
            self._names[value] = name
            self._stale = True

    def __bool__(self) -> bool:
        return bool(self._names)

    def redactor(self) -> Redactor:
        if self._stale:
            self._redactor = Redactor(self._names)
            self._stale = False
        return self._redactor

    def name_in(self, text: str) -> str | None:
        """The name of a secret whose value ``text`` holds, if any."""
        for value, name in self._names.items():
            if value in text:
                return name
        return None


def plan_secrets(plan: Plan, host_env: Mapping[str, str]) -> set[str]:
    """Secret values a plan could show before it runs: host env, params, env blocks as written."""
    envs: list[Mapping[str, str]] = [host_env, plan.params, dict(plan.env)]
    for step in plan.every_step:
        envs.append(dict(step.env))
        if step.container is not None:
            envs.append(dict(step.container.env))
    if plan.container is not None:
        envs.append(dict(plan.container.env))
    found = secret_values(*envs)
    for child in plan.dags.values():  # the sub-DAGs it calls: dry-run shows them too
        found |= plan_secrets(child, {})
    return found
