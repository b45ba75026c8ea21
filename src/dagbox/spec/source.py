"""Read a DAG file into plain Python data while keeping the YAML node tree.

The node tree is kept only so that an error found later, at a path such as
``steps[3].retry_policy.limit``, can be reported with the line and column the
user has to look at.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from dagbox.spec.issues import Issue, IssuePath
from dagbox.yaml12 import Loader


@dataclass
class Source:
    """A parsed DAG file: its data, its node tree and the issues met while parsing."""

    path: Path
    data: Any = None
    root: yaml.Node | None = None
    issues: list[Issue] = field(default_factory=list)
    #: The file's other documents (``---``): the sub-DAGs it holds, in order.
    documents: list[Source] = field(default_factory=list)

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
                if found is None and isinstance(part, int) and 0 <= part < len(node.value):
                    key_node, found = node.value[part]  # env[1] of a mapping: its 2nd entry
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


#: A DAG with more values than this, once aliases are expanded, is refused ("billion laughs").
MAX_VALUES = 2_000_000


def expanded_size(root: yaml.Node) -> int:
    """How many values ``root`` stands for once every alias is expanded (memoised, iterative)."""
    sizes: dict[int, int] = {}
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, children_done = stack.pop()
        if id(node) in sizes:
            continue
        if isinstance(node, yaml.MappingNode):
            children = [n for pair in node.value for n in pair]
        elif isinstance(node, yaml.SequenceNode):
            children = list(node.value)
        else:
            sizes[id(node)] = 1
            continue
        if children_done:
            sizes[id(node)] = min(1 + sum(sizes.get(id(c), 1) for c in children), MAX_VALUES + 1)
        else:
            stack.append((node, True))
            stack.extend((c, False) for c in children if id(c) not in sizes)
    return sizes[id(root)]


#: The double-quoted escapes that make a NUL byte (a raw NUL is a YAML reader error).
_NUL_ESCAPE = re.compile(r"\\(?:0|x00|u0000|U00000000)")


def _scalars_with_nul(root: yaml.Node) -> list[yaml.ScalarNode]:
    found, seen, stack = [], set(), [root]
    while stack:
        node = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        if isinstance(node, yaml.ScalarNode):
            if "\0" in node.value:
                found.append(node)
        elif isinstance(node, yaml.MappingNode):
            stack.extend(n for pair in node.value for n in pair)
        elif isinstance(node, yaml.SequenceNode):
            stack.extend(node.value)
    return found


def _same_key(node: yaml.ScalarNode, part: str | int) -> bool:
    return bool(node.value == (part if isinstance(part, str) else str(part)))


#: A DAG file larger than this is refused before it is parsed (``/dev/zero`` never ends;
#: a 1,000-step DAG is about 270 KiB).
MAX_FILE_BYTES = 16 * 1024 * 1024


def _decoded(path: Path, text: bytes | str | None, issues: list[Issue]) -> str | None:
    """The file's text (read up to MAX_FILE_BYTES, UTF-8), or None with the reason in ``issues``."""
    if text is None:
        try:
            with path.open("rb") as handle:
                text = handle.read(MAX_FILE_BYTES + 1)
        except OSError as exc:
            issues.append(Issue((), f"cannot read file: {exc.strerror or exc}"))
            return None
        if len(text) > MAX_FILE_BYTES:
            issues.append(
                Issue(
                    (),
                    f"the file is larger than {MAX_FILE_BYTES // 2**20} MiB; dagbox reads "
                    "DAG files up to that size",
                )
            )
            return None
    if isinstance(text, bytes):
        raw = text
        try:
            text = raw.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            line = raw.count(b"\n", 0, exc.start) + 1
            col = exc.start - (raw.rfind(b"\n", 0, exc.start) + 1) + 1
            issues.append(
                Issue(
                    (),
                    f"file is not valid UTF-8 (byte 0x{text[exc.start]:02x})",
                    line=line,
                    col=col,
                )
            )
            return None
    return text


def _parsed(text: str, issues: list[Issue]) -> list[tuple[Any, Any, list[Any]]] | None:
    """Each document of the file: its data, its root node and its duplicate keys; None
    with the reason in ``issues``. A file of several documents (``---``) holds a DAG and
    the sub-DAGs it calls (docs/format.md, "Sub-DAGs")."""
    loader = Loader(text)
    documents: list[tuple[Any, Any, list[Any]]] = []
    try:
        while loader.check_node():
            root = loader.get_node()
            if root is not None and "*" in text and expanded_size(root) > MAX_VALUES:
                issues.append(
                    Issue(
                        (),
                        f"the document expands to more than {MAX_VALUES:,} values through YAML "
                        "aliases (*name); dagbox refuses it",
                    )
                )
                return None
            loader.duplicate_keys = []
            data = loader.construct_document(root) if root is not None else None
            documents.append((data, root, loader.duplicate_keys))
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        issues.append(
            Issue(
                (),
                f"invalid YAML: {exc.problem or str(exc)}",
                line=(mark.line + 1) if mark else 1,
                col=(mark.column + 1) if mark else 1,
            )
        )
        return None
    except yaml.YAMLError as exc:  # reader errors (control characters such as NUL)
        position = getattr(exc, "position", 0) or 0
        line = text.count("\n", 0, position) + 1
        col = position - (text.rfind("\n", 0, position) + 1) + 1
        reason = getattr(exc, "reason", None) or str(exc)
        issues.append(Issue((), f"invalid YAML: {reason}", line=line, col=col))
        return None
    except RecursionError:
        issues.append(Issue((), "invalid YAML: the document nests too deeply"))
        return None
    finally:
        loader.dispose()
    return documents or [(None, None, [])]


def read(path: Path, text: bytes | str | None = None) -> Source:
    """Parse ``path`` (or the given text) into a :class:`Source` of its first document,
    the others in ``documents``; never raises for bad input."""
    source = Source(path=path)
    decoded = _decoded(path, text, source.issues)
    parsed = _parsed(decoded, source.issues) if decoded is not None else None
    if decoded is None or parsed is None:
        return source
    sources = [source, *(Source(path=path) for _ in parsed[1:])]
    for each, (data, root, duplicate_keys) in zip(sources, parsed, strict=True):
        each.data, each.root = data, root
        _check_document(each, decoded, duplicate_keys)
    source.documents = sources[1:]
    return source


def _check_document(source: Source, text: str, duplicate_keys: list[Any]) -> None:
    root = source.root
    if root is not None and _NUL_ESCAPE.search(text):
        for node in _scalars_with_nul(root):
            source.issues.append(
                Issue(
                    source.path_of(node),
                    "a NUL byte (\\0) cannot be passed to any program",
                    line=node.start_mark.line + 1,
                    col=node.start_mark.column + 1,
                )
            )
    for key_node in duplicate_keys:
        parent = source.path_of(key_node)
        source.issues.append(
            Issue(
                (*parent, key_node.value),
                f"duplicate key {key_node.value!r}",
                line=key_node.start_mark.line + 1,
                col=key_node.start_mark.column + 1,
            )
        )
