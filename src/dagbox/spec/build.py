"""Turn plain YAML data into model Structs, reporting every problem on the way.

``msgspec.convert`` stops at the first error, and a user fixing a DAG wants
them all. So the walk over mappings is ours: for each Struct it resolves key
spellings (camelCase aliases from Dagu 1.x, Dagu-server-only keys, keys dagbox
does not support, typos), hands flexible fields to their :class:`Form`,
recurses into nested Structs, and lets msgspec type-check each remaining leaf
value. A field that fails keeps its default so the rest of the file is still
checked.
"""

from __future__ import annotations

import difflib
import re
import types
import typing
from dataclasses import dataclass, field
from functools import cache
from typing import Any, ClassVar

import msgspec

from dagbox.spec.forms import INVALID, Context, Form, kind
from dagbox.spec.issues import IssuePath, Sink


@dataclass(frozen=True)
class KeyRules:
    """Extra key spellings a mapping accepts besides its fields' own names.

    ``aliases`` maps an old spelling to the field it means (camelCase spellings
    are derived automatically). ``ignored`` keys load with a warning (they only
    matter to Dagu's server); ``unsupported`` keys are errors because they would
    change what runs. Values are the explanation shown to the user.
    """

    aliases: dict[str, str] = field(default_factory=dict)
    ignored: dict[str, str] = field(default_factory=dict)
    unsupported: dict[str, str] = field(default_factory=dict)


class Model(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Base of every model Struct."""

    keys: ClassVar[KeyRules] = KeyRules()

    def finish(self, sink: Sink, ctx: Context) -> None:
        """Called once built: rewrite older spellings into the canonical fields."""


@dataclass(frozen=True, slots=True)
class _Field:
    attr: str
    name: str
    hint: Any  # type without Annotated wrappers that are ours
    form: Form | None
    nested: type[Model] | None  # Struct (possibly optional)
    container: str | None  # "list" or "dict" when nested items are Structs
    required: bool


@dataclass(frozen=True, slots=True)
class _Info:
    fields: dict[str, _Field]
    aliases: dict[str, str]
    rules: KeyRules

    def suggestion(self, key: str) -> str:
        names = [*self.fields, *self.rules.ignored, *self.rules.unsupported]
        close = difflib.get_close_matches(key.lower(), names, n=1, cutoff=0.6)
        return f' (did you mean "{close[0]}"?)' if close else ""


_CAMEL = re.compile(r"(?<=[a-z0-9])([A-Z])")


def snake(key: str) -> str:
    return _CAMEL.sub(r"_\1", key).lower()


def _camel_alias(key: str, info: _Info) -> str | None:
    """The field a Dagu 1.x camelCase spelling (``retryPolicy``) stands for, if any."""
    name = snake(key)
    return name if key[:1].islower() and name != key and name in info.fields else None


def _strip_optional(tp: Any) -> tuple[Any, bool]:
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return args[0], True
    return tp, False


def _is_model(tp: Any) -> bool:
    return isinstance(tp, type) and issubclass(tp, Model)


@cache
def _info(cls: type[Model]) -> _Info:
    fields: dict[str, _Field] = {}
    for f in msgspec.structs.fields(cls):
        hint, form = f.type, None
        if typing.get_origin(hint) is typing.Annotated:
            base, *meta = typing.get_args(hint)
            form = next((m for m in meta if isinstance(m, Form)), None)
            if form is not None:
                hint = base
        inner, _ = _strip_optional(hint)
        nested = inner if _is_model(inner) else None
        collection = None
        origin = typing.get_origin(inner)
        if origin in (tuple, list) and any(_is_model(a) for a in typing.get_args(inner)):
            nested, collection = next(a for a in typing.get_args(inner) if _is_model(a)), "list"
        elif origin is dict:
            value_type, _ = _strip_optional(typing.get_args(inner)[1])
            if _is_model(value_type):
                nested, collection = value_type, "dict"
        required = f.default is msgspec.NODEFAULT and f.default_factory is msgspec.NODEFAULT
        fields[f.encode_name] = _Field(
            f.name, f.encode_name, hint, form, nested, collection, required
        )
    aliases = {k: v for k, v in cls.keys.aliases.items()}
    return _Info(fields, aliases, cls.keys)


_MSGSPEC_PATH = re.compile(r"^(?P<msg>.*?)(?: - at `\$(?P<path>[^`]*)`)?$", re.S)
_PATH_PART = re.compile(r"\.([^.\[\]]+)|\[(\d+|\.\.\.)\]")
_TYPE_WORDS = {
    "str": "string",
    "int": "integer",
    "float": "number",
    "bool": "boolean",
    "array": "list",
    "object": "mapping",
    "null": "null",
}


def _report_msgspec(exc: msgspec.ValidationError, sink: Sink) -> None:
    match = _MSGSPEC_PATH.match(str(exc))
    assert match is not None
    message = re.sub(
        r"`([^`]*)`",
        lambda m: " or ".join(_TYPE_WORDS.get(w.strip(), w.strip()) for w in m[1].split("|")),
        match["msg"],
    )
    message = message[:1].lower() + message[1:]
    parts: list[str | int] = []
    for key, index in _PATH_PART.findall(match["path"] or ""):
        if index == "...":
            break
        parts.append(int(index) if index else key)
    sink.error(message, *parts)


def _leaf(value: Any, hint: Any, sink: Sink) -> Any:
    base, optional = _strip_optional(hint)
    if typing.get_origin(base) is typing.Literal and not (optional and value is None):
        choices = [str(c) for c in typing.get_args(base)]
        if value in choices:
            return value
        close = difflib.get_close_matches(str(value), choices, n=1, cutoff=0.6)
        hint_text = f' (did you mean "{close[0]}"?)' if close else ""
        listed = ", ".join(choices[:-1]) + f" or {choices[-1]}" if len(choices) > 1 else choices[0]
        sink.error(f'invalid value "{value}": use {listed}{hint_text}')
        return INVALID
    if base is str and isinstance(value, int | float) and not isinstance(value, bool):
        value = str(value)  # Go's YAML reads `name: 123` into a string field; so do we
    try:
        return msgspec.convert(value, hint)
    except msgspec.ValidationError as exc:
        _report_msgspec(exc, sink)
        return INVALID


class Builder:
    """One load's walk. ``paths`` remembers where each built Struct came from (by id)."""

    def __init__(self) -> None:
        self.paths: dict[int, IssuePath] = {}
        #: ids of Structs that had a key or value rejected: rules that check for
        #: something missing skip them, so one typo does not report twice.
        self.flawed: set[int] = set()

    def build(self, raw: Any, cls: type[Model], sink: Sink) -> Any:
        """Build ``cls`` from ``raw``; INVALID if ``raw`` is not a mapping at all."""
        if not isinstance(raw, dict):
            sink.error(f"expected a mapping, not {kind(raw)}")
            return INVALID
        info = _info(cls)
        issues_before = sink.count
        values: dict[str, Any] = {}
        seen: dict[str, str] = {}  # field name -> spelling used
        for key, value in raw.items():
            if not isinstance(key, str):
                sink.error(
                    f"keys must be strings, not {kind(key)} ({key!r})", str(key), at_key=True
                )
                continue
            spec = info.fields.get(key)
            if spec is None:
                target = info.aliases.get(key) or _camel_alias(key, info)
                if target is not None:
                    spec = info.fields[target]
                elif (word := _rule_key(key, info.rules.ignored)) is not None:
                    sink.warn(info.rules.ignored[word], key, at_key=True)
                    continue
                elif (word := _rule_key(key, info.rules.unsupported)) is not None:
                    sink.error(info.rules.unsupported[word], key, at_key=True)
                    continue
                else:
                    sink.error(f'unknown key "{key}"{info.suggestion(key)}', key, at_key=True)
                    continue
            if spec.name in seen:
                sink.error(
                    f'"{key}" and "{seen[spec.name]}" are the same key; keep one', key, at_key=True
                )
                continue
            seen[spec.name] = key
            result = self._field(spec, value, sink.at(key))
            if result is not INVALID:
                values[spec.attr] = result
        missing = [f.name for f in info.fields.values() if f.required and f.name not in seen]
        for name in missing:
            sink.error(f'missing required key "{name}"')
        if any(f.required and f.attr not in values for f in info.fields.values()):
            return INVALID  # reported above, or where the required value was rejected
        obj = cls(**values)
        self.paths[id(obj)] = sink.path
        if sink.count != issues_before:
            self.flawed.add(id(obj))
        obj.finish(sink, Context(cls, self.build))
        return obj

    def _field(self, spec: _Field, value: Any, sink: Sink) -> Any:
        if spec.form is not None:
            target = _strip_optional(spec.hint)[0]
            if spec.nested is not None:
                target = spec.nested
            return spec.form.normalise(value, sink, Context(target, self.build))
        if spec.nested is None:
            return _leaf(value, spec.hint, sink)
        if spec.container is None:
            if value is None and _strip_optional(spec.hint)[1]:
                return None
            return self.build(value, spec.nested, sink)
        if spec.container == "list":
            if not isinstance(value, list):
                sink.error(f"expected a list, not {kind(value)}")
                return INVALID
            built = (self.build(item, spec.nested, sink.at(i)) for i, item in enumerate(value))
            return tuple(b for b in built if b is not INVALID)
        if not isinstance(value, dict):
            sink.error(f"expected a mapping, not {kind(value)}")
            return INVALID
        out: dict[str, Any] = {}
        for key, item in value.items():
            if item is None:
                out[str(key)] = None
            elif (b := self.build(item, spec.nested, sink.at(str(key)))) is not INVALID:
                out[str(key)] = b
        return out


def _rule_key(key: str, table: dict[str, str]) -> str | None:
    """``key`` or its snake_case spelling, if ``table`` has it."""
    if key in table:
        return key
    name = snake(key)
    return name if key[:1].islower() and name in table else None
