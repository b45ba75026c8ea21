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


_Yaml12Resolver.yaml_implicit_resolvers = {}
for _tag, _pattern, _first in (
    ("tag:yaml.org,2002:bool", r"^(?:true|True|TRUE|false|False|FALSE)$", "tTfF"),
    ("tag:yaml.org,2002:int", r"^(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)$", "-+0123456789"),
    (
        "tag:yaml.org,2002:float",
        r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?"
        r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$",
        "-+0123456789.",
    ),
    ("tag:yaml.org,2002:null", r"^(?:~|null|Null|NULL|)$", ["~", "n", "N", ""]),
    ("tag:yaml.org,2002:merge", r"^(?:<<)$", ["<"]),
):
    _Yaml12Resolver.add_implicit_resolver(_tag, re.compile(_pattern), list(_first))


def plain_scalar(text: str) -> Any:
    """What YAML 1.2 reads an unquoted ``text`` as: a bool, int, float, None or the string."""
    loader = Loader(text)
    try:
        node = loader.get_single_node()
        if isinstance(node, yaml.ScalarNode):
            return loader.construct_object(node)
    except yaml.YAMLError:
        pass
    finally:
        loader.dispose()
    return text


class _Constructor(yaml.constructor.SafeConstructor):
    """Safe constructor with YAML 1.2 numbers and duplicate-key detection."""

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


_Constructor.add_constructor("tag:yaml.org,2002:int", _Constructor.construct_yaml_int)
_Constructor.add_constructor("tag:yaml.org,2002:float", _Constructor.construct_yaml_float)


class Loader(yaml._yaml.CParser, _Constructor, _Yaml12Resolver):  # type: ignore[misc]
    def __init__(self, stream: str) -> None:
        yaml._yaml.CParser.__init__(self, stream)
        _Constructor.__init__(self)
        _Yaml12Resolver.__init__(self)
        self.duplicate_keys: list[yaml.Node] = []
