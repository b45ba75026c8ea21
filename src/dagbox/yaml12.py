"""YAML as Dagu reads it: libyaml speed, YAML 1.2 core schema, duplicate keys noticed.

Dagu's Go YAML library follows YAML 1.2, so ``yes``, ``no``, ``on`` and ``off``
stay strings and dates are not turned into ``datetime``. PyYAML's safe loader
follows YAML 1.1; this module swaps in the 1.2 rules on top of libyaml
(``CParser``), which parses about five times faster than pure Python.
"""

from __future__ import annotations

import re
from typing import Any

import yaml

if not getattr(yaml, "__with_libyaml__", False):  # pragma: no cover - environment check
    raise ImportError(
        "dagbox needs PyYAML built with libyaml (yaml.CSafeLoader); "
        "reinstall PyYAML from a wheel or install libyaml-dev and rebuild it"
    )


class _Yaml12Resolver(yaml.resolver.BaseResolver):
    """Implicit tags of the YAML 1.2 core schema, as Go's yaml.v3 reads them."""


_BOOL = re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$")
_INT = re.compile(r"^(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)$")
_FLOAT = re.compile(
    r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?"
    r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"
)
_NULL = re.compile(r"^(?:~|null|Null|NULL|)$")

_Yaml12Resolver.yaml_implicit_resolvers = {}
for _tag, _pattern, _first in (
    ("tag:yaml.org,2002:bool", _BOOL, "tTfF"),
    ("tag:yaml.org,2002:int", _INT, "-+0123456789"),
    ("tag:yaml.org,2002:float", _FLOAT, "-+0123456789."),
    ("tag:yaml.org,2002:null", _NULL, ["~", "n", "N", ""]),
    ("tag:yaml.org,2002:merge", re.compile(r"^(?:<<)$"), ["<"]),
):
    _Yaml12Resolver.add_implicit_resolver(_tag, _pattern, list(_first))


_ANY_SCALAR = re.compile(
    "|".join(
        f"(?P<{kind}>{pattern.pattern})"
        for kind, pattern in (("bool", _BOOL), ("int", _INT), ("float", _FLOAT), ("null", _NULL))
    )
)


def plain_scalar(text: str) -> Any:
    """What YAML 1.2 reads an unquoted ``text`` as: a bool, int, float, None or the string.

    The same patterns the loader resolves with, in one match: rendering flags for
    thousands of harness steps must not start a parser per value.
    """
    match = _ANY_SCALAR.match(text)
    if match is None:
        return text
    kind = match.lastgroup
    if kind == "bool":
        return text[0] in "tT"
    if kind == "int":
        if text.startswith("0o"):
            return int(text[2:], 8)
        return int(text[2:], 16) if text.startswith("0x") else int(text, 10)
    if kind == "float":
        lowered = text.lower()
        if lowered.endswith(".inf"):
            return float("-inf") if lowered.startswith("-") else float("inf")
        return float("nan") if lowered == ".nan" else float(lowered)
    return None


class _Constructor(yaml.constructor.SafeConstructor):
    """Safe constructor with YAML 1.2 numbers and duplicate-key detection."""

    duplicate_keys: list[yaml.Node]

    def construct_yaml_int(self, node: yaml.ScalarNode) -> int:
        text = str(self.construct_scalar(node))
        if text.startswith("0o"):
            return int(text[2:], 8)
        if text.startswith("0x"):
            return int(text[2:], 16)
        return int(text, 10)

    def construct_yaml_float(self, node: yaml.ScalarNode) -> float:
        text = str(self.construct_scalar(node)).lower()
        if text.endswith(".inf"):
            return float("-inf") if text.startswith("-") else float("inf")
        if text == ".nan":
            return float("nan")
        return float(text)

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            if isinstance(key_node, yaml.ScalarNode) and key_node.tag != "tag:yaml.org,2002:merge":
                if key_node.value in seen:
                    self.duplicate_keys.append(key_node)
                seen.add(key_node.value)
        return super().construct_mapping(node, deep)


# (types-PyYAML types these for the base constructor's own methods only)
_Constructor.add_constructor("tag:yaml.org,2002:int", _Constructor.construct_yaml_int)  # type: ignore[type-var]
_Constructor.add_constructor("tag:yaml.org,2002:float", _Constructor.construct_yaml_float)  # type: ignore[type-var]


class Loader(yaml._yaml.CParser, _Constructor, _Yaml12Resolver):
    def __init__(self, stream: str) -> None:
        yaml._yaml.CParser.__init__(self, stream)
        _Constructor.__init__(self)
        _Yaml12Resolver.__init__(self)
        self.duplicate_keys: list[yaml.Node] = []
