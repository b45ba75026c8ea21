"""JSON Schema of the DAG format, generated from the model Structs.

msgspec describes each field's canonical type; fields with a Form get the
document forms users actually write instead, and every camelCase or older
spelling dagbox accepts is added as a deprecated property, so an editor
neither flags a Dagu 1.x file nor suggests the old spelling.
"""

from __future__ import annotations

import typing
from typing import Any

import msgspec

from dagbox import __version__
from dagbox.spec.build import Model, _info
from dagbox.spec.model import Dag


def camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(p.capitalize() for p in rest)


def _models(root: type[Model]) -> dict[str, type[Model]]:
    found: dict[str, type[Model]] = {}

    def visit(tp: Any) -> None:
        if isinstance(tp, type) and issubclass(tp, Model):
            if tp.__name__ in found:
                return
            found[tp.__name__] = tp
            for f in msgspec.structs.fields(tp):
                visit(f.type)
        for arg in typing.get_args(tp):
            visit(arg)

    visit(root)
    return found


def json_schema() -> dict[str, Any]:
    (_, components) = msgspec.json.schema_components([Dag], ref_template="#/$defs/{name}")
    for name, model in _models(Dag).items():
        definition = components.get(name)
        if definition is None:
            continue
        info = _info(model)
        props: dict[str, Any] = definition.setdefault("properties", {})
        for field_name, spec in info.fields.items():
            if spec.form is not None:
                props[field_name] = dict(spec.form.schema)
        for field_name in list(info.fields):
            alias = camel(field_name)
            if alias != field_name:
                props.setdefault(alias, {**props[field_name], "deprecated": True})
        for alias, target in info.rules.aliases.items():
            props.setdefault(alias, {**props[target], "deprecated": True})
        for key, why in info.rules.ignored.items():
            props.setdefault(key, {"description": why, "deprecated": True})
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": f"https://dagbox.dev/schema/{__version__}/dag.json",
        "title": "Dagu DAG file (as read by dagbox)",
        "$ref": "#/$defs/Dag",
        "$defs": components,
    }
