"""Keep secret values out of everything dagbox writes.

A variable whose name looks secret (``*_KEY``, ``*_TOKEN``, ``*_SECRET``,
``*PASSWORD*``) has its value replaced by ``***`` in terminal output, log
files, events, run records and ``dry-run``. The process itself still gets the
real value. Output arrives in chunks that may split a secret in two, so a
stream redactor holds back the end of a chunk while it could still be the start
of a secret.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from functools import lru_cache
from typing import Any

MASK = "***"
_SECRET_NAME = re.compile(r"(?:_KEY|_TOKEN|_SECRET)$|PASSWORD", re.IGNORECASE)
#: Shorter values are too likely to be ordinary text ("1", "true") to be hunted down.
MIN_LENGTH = 4


@lru_cache(maxsize=4096)
def is_secret_name(name: str) -> bool:
    return bool(_SECRET_NAME.search(name))


def secret_values(*envs: Mapping[str, str]) -> set[str]:
    return {v for env in envs for k, v in env.items() if is_secret_name(k) and len(v) >= MIN_LENGTH}


class Redactor:
    def __init__(self, values: Iterable[str] = ()) -> None:
        self.values = sorted({v for v in values if len(v) >= MIN_LENGTH}, key=len, reverse=True)
        self._text = re.compile("|".join(map(re.escape, self.values))) if self.values else None
        self._bytes = (
            re.compile(b"|".join(re.escape(v.encode()) for v in self.values))
            if self.values
            else None
        )
        self._prefixes = [v.encode() for v in self.values]

    def __bool__(self) -> bool:
        return bool(self.values)

    def text(self, text: str) -> str:
        return self._text.sub(MASK, text) if self._text is not None and text else text

    def stream(self) -> StreamRedactor:
        return StreamRedactor(self)


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
        data = pattern.sub(MASK.encode(), self._carry + chunk)
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
            for size in range(min(len(secret) - 1, len(data)), longest, -1):
                if data.endswith(secret[:size]):
                    longest = size
                    break
        return longest


def dag_secrets(dag: Any, params: Mapping[str, str], host_env: Mapping[str, str]) -> set[str]:
    """Secret values a DAG could show before it runs: host env, params, env blocks as written."""
    envs: list[Mapping[str, str]] = [host_env, params, dict(dag.env)]
    handlers = [getattr(dag.handler_on, k) for k in ("init", "success", "failure", "abort", "exit")]
    for step in [*dag.steps, *(h for h in handlers if h is not None)]:
        envs.append(dict(step.env))
        if step.container is not None:
            envs.append(dict(step.container.env))
    if dag.container is not None:
        envs.append(dict(dag.container.env))
    return secret_values(*envs)
