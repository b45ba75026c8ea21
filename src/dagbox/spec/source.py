"""Read a DAG file into plain Python data while keeping the YAML node tree.

The node tree is kept only so that an error found later, at a path such as
``steps[3].retry_policy.limit``, can be reported with the line and column the
user has to look at. Parsing uses libyaml (``CSafeLoader``) with the YAML 1.2
core schema, which is what Dagu's Go YAML library implements: ``yes``, ``no``,
``on`` and ``off`` stay strings and dates are not turned into ``datetime``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from dagbox.spec.issues import Issue, IssuePath

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
    loader = _Loader(text)
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


class _Loader(yaml._yaml.CParser, _Constructor, _Yaml12Resolver):  # type: ignore[misc]
    def __init__(self, stream: str) -> None:
        yaml._yaml.CParser.__init__(self, stream)
        _Constructor.__init__(self)
        _Yaml12Resolver.__init__(self)
        self.duplicate_keys: list[yaml.Node] = []


@dataclass
class Source:
    """A parsed DAG file: its data, its node tree and the issues met while parsing."""

    path: Path
    data: Any = None
    root: yaml.Node | None = None
    issues: list[Issue] = field(default_factory=list)

    def locate(self, path: IssuePath, at_key: bool = False) -> tuple[int, int]:
        """Line and column (1-based) of the node at ``path``, or of its nearest ancestor."""
        node = self.root
        if node is None:
            return 1, 1
        key_node: yaml.Node | None = None
        for part in path:
            key_node = None
            if isinstance(node, yaml.MappingNode):
                found = None
                for k, v in node.value:  # last one wins, as in the constructed dict
                    if isinstance(k, yaml.ScalarNode) and _same_key(k, part):
                        found, key_node = v, k
                if found is None:
                    break
                node = found
            elif isinstance(node, yaml.SequenceNode) and isinstance(part, int):
                if not 0 <= part < len(node.value):
                    break
                node = node.value[part]
            else:
                break
        else:
            if at_key and key_node is not None:
                node = key_node
        mark = node.start_mark
        return mark.line + 1, mark.column + 1

    def path_of(self, target: yaml.Node) -> IssuePath:
        """The data path of ``target`` (used for duplicate keys, found by node)."""

        def walk(node: yaml.Node, prefix: IssuePath, seen: set[int]) -> IssuePath | None:
            if node is target:
                return prefix
            if id(node) in seen:
                return None
            seen.add(id(node))
            if isinstance(node, yaml.MappingNode):
                for k, v in node.value:
                    if k is target:
                        return prefix
                    key = k.value if isinstance(k, yaml.ScalarNode) else "?"
                    found = walk(v, (*prefix, key), seen)
                    if found is not None:
                        return found
            elif isinstance(node, yaml.SequenceNode):
                for i, v in enumerate(node.value):
                    found = walk(v, (*prefix, i), seen)
                    if found is not None:
                        return found
            return None

        return (walk(self.root, (), set()) if self.root is not None else None) or ()


def _same_key(node: yaml.ScalarNode, part: str | int) -> bool:
    return node.value == (part if isinstance(part, str) else str(part))


def read(path: Path, text: bytes | str | None = None) -> Source:
    """Parse ``path`` (or the given text) into a :class:`Source`; never raises for bad input."""
    source = Source(path=path)
    if text is None:
        try:
            text = path.read_bytes()
        except OSError as exc:
            source.issues.append(Issue((), f"cannot read file: {exc.strerror or exc}"))
            return source
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            line = text.count(b"\n", 0, exc.start) + 1
            col = exc.start - (text.rfind(b"\n", 0, exc.start) + 1) + 1
            source.issues.append(
                Issue((), f"file is not valid UTF-8 (byte 0x{text[exc.start]:02x})", line=line, col=col)
            )
            return source
    loader = _Loader(text)
    try:
        root = loader.get_single_node()
        data = loader.construct_document(root) if root is not None else None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        message = exc.problem or str(exc)
        if exc.context and "single document" in str(exc.context):
            message = "a DAG file holds one YAML document; dagbox does not support multi-document files (sub-DAGs)"
        source.issues.append(
            Issue((), f"invalid YAML: {message}", line=(mark.line + 1) if mark else 1,
                  col=(mark.column + 1) if mark else 1)
        )
        return source
    except yaml.YAMLError as exc:  # reader errors (control characters such as NUL)
        position = getattr(exc, "position", 0) or 0
        line = text.count("\n", 0, position) + 1
        col = position - (text.rfind("\n", 0, position) + 1) + 1
        reason = getattr(exc, "reason", None) or str(exc)
        source.issues.append(Issue((), f"invalid YAML: {reason}", line=line, col=col))
        return source
    except RecursionError:
        source.issues.append(Issue((), "invalid YAML: the document nests too deeply"))
        return source
    finally:
        loader.dispose()
    source.data, source.root = data, root
    for key_node in loader.duplicate_keys:
        parent = source.path_of(key_node)
        source.issues.append(
            Issue(
                (*parent, key_node.value),
                f"duplicate key {key_node.value!r}",
                line=key_node.start_mark.line + 1,
                col=key_node.start_mark.column + 1,
            )
        )
    return source
