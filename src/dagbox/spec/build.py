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
from typing import Any, ClassVar, cast

import msgspec

from dagbox.spec.forms import INVALID, Context, Form, kind
from dagbox.spec.issues import Sink


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

    def finish(self, sink: Sink, builder: Builder) -> None:
        """Called once built: rewrite older spellings into the canonical fields."""


@dataclass(frozen=True, slots=True)
class _Field:
    """How to read one field; everything that does not depend on the value is worked out once."""

    attr: str
    name: str
    hint: Any  # the field type, without a Form annotation
    form: Form | None
    nested: type[Model] | None  # a Struct, or the Struct items of a list/dict
    container: str | None  # "list" or "dict" when the nested Structs are items
    required: bool
    optional: bool  # None is a valid value
    plain: type | None  # str/bool when a value of exactly that type needs no conversion
    choices: tuple[str, ...] | None  # the values of a Literal type
    target: Any  # what a Form builds: the nested Struct, else the type without Optional


@dataclass(frozen=True, slots=True)
class _Info:
    fields: dict[str, _Field]
    aliases: dict[str, str]
    rules: KeyRules
    required: tuple[_Field, ...]

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
        inner, optional = _strip_optional(hint)
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
        choices = tuple(map(str, typing.get_args(inner))) if origin is typing.Literal else None
        fields[f.encode_name] = _Field(
            attr=f.name,
            name=f.encode_name,
            hint=hint,
            form=form,
            nested=nested,
            container=collection,
            required=required,
            optional=optional,
            plain=inner if inner in (str, bool) else None,
            choices=choices,
            target=nested or inner,
        )
    needed = tuple(f for f in fields.values() if f.required)
    return _Info(fields, dict(cls.keys.aliases), cls.keys, needed)


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


def _report_msgspec(exc: msgspec.ValidationError, sink: Sink | _LazySink) -> None:
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


def _leaf(spec: _Field, value: Any, sink: Sink | _LazySink) -> Any:
    if spec.plain is not None and type(value) is spec.plain:
        return value  # the common case, without a trip through msgspec
    if value is None and spec.optional:
        return None
    if spec.choices is not None:
        if value in spec.choices:
            return value
        close = difflib.get_close_matches(str(value), spec.choices, n=1, cutoff=0.6)
        hint_text = f' (did you mean "{close[0]}"?)' if close else ""
        *first, last = spec.choices
        listed = f"{', '.join(first)} or {last}" if first else last
        sink.error(f'invalid value "{value}": use {listed}{hint_text}')
        return INVALID
    if spec.plain is str and isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)  # Go's YAML reads `name: 123` into a string field; so do we
    try:
        return msgspec.convert(value, spec.hint)
    except msgspec.ValidationError as exc:
        _report_msgspec(exc, sink)
        return INVALID


class _LazySink:
    """A Sink one key deeper, made only if a leaf value turns out to be wrong."""

    __slots__ = ("key", "parent")

    def __init__(self, parent: Sink, key: str) -> None:
        self.parent, self.key = parent, key

    def error(self, message: str, *parts: str | int, at_key: bool = False) -> None:
        self.parent.error(message, self.key, *parts, at_key=at_key)


class Builder:
    """One load's walk. ``sinks`` remembers where each built Struct came from (by id)."""

    def __init__(self) -> None:
        self.sinks: dict[int, Sink] = {}
        #: ids of Structs that had a key or value rejected: rules that check for
        #: something missing skip them, so one typo does not report twice.
        self.flawed: set[int] = set()
        self._contexts: dict[int, Context] = {}

    def build(self, raw: Any, cls: type[Model], sink: Sink) -> Any:
        """Build ``cls`` from ``raw``; INVALID if ``raw`` is not a mapping at all."""
        if type(raw) is not dict:
            sink.error(f"expected a mapping, not {kind(raw)}")
            return INVALID
        info = _info(cls)
        fields = info.fields
        issues_before = len(sink.issues)
        values: dict[str, Any] = {}
        spelled: dict[str, str] = {}  # field -> the other spelling used, when one was
        for key, value in raw.items():
            spec = fields.get(key)
            if spec is None:
                spec = self._other_spelling(key, raw, info, spelled, sink)
                if spec is None:
                    continue
            if spec.form is None and spec.nested is None:
                if spec.plain is not None and type(value) is spec.plain:
                    values[spec.attr] = value  # the common case, checked inline for speed
                    continue
                result = _leaf(spec, value, _LazySink(sink, key))
            else:
                result = self._field(spec, value, sink.at(key))
            if result is not INVALID:
                values[spec.attr] = result
        for spec in info.required:
            if spec.attr not in values:
                if spec.name not in raw and spec.name not in spelled:
                    sink.error(f'missing required key "{spec.name}"')
                return INVALID  # reported above, or where the required value was rejected
        obj = cls(**values)
        self.sinks[id(obj)] = sink
        if len(sink.issues) != issues_before:
            self.flawed.add(id(obj))
        obj.finish(sink, self)
        return obj

    def _other_spelling(
        self, key: Any, raw: dict[Any, Any], info: _Info, spelled: dict[str, str], sink: Sink
    ) -> _Field | None:
        """The field an alias stands for; None after reporting any other key."""
        if not isinstance(key, str):
            sink.error(f"keys must be strings, not {kind(key)} ({key!r})", str(key), at_key=True)
            return None
        target = info.aliases.get(key) or _camel_alias(key, info)
        if target is not None:
            other = target if target in raw else spelled.get(target)
            if other is not None:
                sink.error(f'"{key}" and "{other}" are the same key; keep one', key, at_key=True)
                return None
            spelled[target] = key
            return info.fields[target]
        if (word := _rule_key(key, info.rules.ignored)) is not None:
            sink.warn(info.rules.ignored[word], key, at_key=True)
        elif (word := _rule_key(key, info.rules.unsupported)) is not None:
            sink.error(info.rules.unsupported[word], key, at_key=True)
        else:
            sink.error(f'unknown key "{key}"{info.suggestion(key)}', key, at_key=True)
        return None

    def _field(self, spec: _Field, value: Any, sink: Sink) -> Any:
        if spec.form is not None:
            ctx = self._contexts.get(id(spec))
            if ctx is None:
                ctx = self._contexts[id(spec)] = Context(spec.target, self.build)
            return spec.form.normalise(value, sink, ctx)
        if spec.container is None:
            if value is None and spec.optional:
                return None
            return self.build(value, cast("type[Model]", spec.nested), sink)
        if spec.container == "list":
            if not isinstance(value, list):
                sink.error(f"expected a list, not {kind(value)}")
                return INVALID
            nested = cast("type[Model]", spec.nested)
            built = (self.build(item, nested, sink.at(i)) for i, item in enumerate(value))
            return tuple(b for b in built if b is not INVALID)
        if not isinstance(value, dict):
            sink.error(f"expected a mapping, not {kind(value)}")
            return INVALID
        out: dict[str, Any] = {}
        for key, item in value.items():
            if item is None:
                out[str(key)] = None
            elif (
                b := self.build(item, cast("type[Model]", spec.nested), sink.at(str(key)))
            ) is not INVALID:
                out[str(key)] = b
        return out


def _rule_key(key: str, table: dict[str, str]) -> str | None:
    """``key`` or its snake_case spelling, if ``table`` has it."""
    if key in table:
        return key
    name = snake(key)
    return name if key[:1].islower() and name in table else None
