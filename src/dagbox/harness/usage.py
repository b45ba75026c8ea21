"""What a try cost, read from an agent CLI's own JSON event stream.

``with: {usage: true}`` asks a provider for its structured output (the flags in
:data:`USAGE_FLAGS`). A :class:`Reader` turns that stream, one JSON line at a
time, into three things: readable progress lines (the agent's messages and
tool calls), the final answer (what the CLI prints in text mode, so a step's
``output:`` does not change with ``usage``), and a :class:`Usage`.

The shapes are each CLI's documented ones (docs/providers.md): Claude Code's
``stream-json`` (the ``result`` event carries the run's totals; an assistant
event's usage is a snapshot, never summed), Codex's ``exec --json``
(``turn.completed`` carries each turn's tokens, summed here) and Gemini CLI's
``stream-json`` (the ``result`` event's ``stats``, totals over every model it
routed to). ``tests/fixtures/usage/`` holds streams recorded from the real CLIs. A line that is not JSON is
shown as it is; events that say nothing a reader needs (a tool's raw result,
session ids) are not shown.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import msgspec

#: The flags each format needs; a step's own value for these keys is overridden.
USAGE_FLAGS: dict[str, dict[str, Any]] = {
    "claude": {"output-format": "stream-json", "verbose": True},
    "codex": {"json": True},
    "gemini": {"output-format": "stream-json"},
}


class Usage(msgspec.Struct, kw_only=True):
    """What one try reported; None where the CLI does not say."""

    input_tokens: int | None = None
    output_tokens: int | None = None
    cached_tokens: int | None = None
    cost_usd: float | None = None
    turns: int | None = None
    model: str | None = None


@dataclass(slots=True)
class Reading:
    """What one event meant."""

    #: Lines to show: tool calls, errors. The agent's messages go in ``text``.
    progress: list[str] = field(default_factory=list)
    #: A message of the agent's (a whole one, or with ``delta`` a piece of the current one).
    text: str | None = None
    delta: bool = False
    #: The final answer, where the CLI says it (claude's ``result``).
    answer: str | None = None


def _int(value: Any) -> int | None:
    return value if type(value) is int else None


def _number(value: Any) -> float | None:
    return float(value) if type(value) in (int, float) else None


def _add(total: int | None, value: Any) -> int | None:
    number = _int(value)
    if number is None:
        return total
    return number if total is None else total + number


def _object(value: Any) -> dict[str, Any]:
    """``value`` if it is a JSON object, else an empty one: events are read, never trusted."""
    return value if isinstance(value, dict) else {}


def _tool_line(name: Any, detail: Any) -> str:
    """``> Bash: {"command": ...}``, whole: the caller masks secrets, then shortens it."""
    text = detail if isinstance(detail, str) else msgspec.json.encode(detail).decode()
    return f"> {name}: {text}" if text else f"> {name}"


def _claude(event: dict[str, Any], usage: Usage) -> Reading:
    reading = Reading()
    kind = event.get("type")
    if kind == "system" and event.get("subtype") == "init":
        usage.model = event.get("model") if isinstance(event.get("model"), str) else usage.model
    elif kind == "assistant":
        message = event.get("message")
        content = message.get("content") if isinstance(message, dict) else None
        texts = []
        for part in content if isinstance(content, list) else ():
            if not isinstance(part, dict):
                continue
            if part.get("type") == "text" and isinstance(part.get("text"), str):
                texts.append(part["text"])
            elif part.get("type") == "tool_use":
                reading.progress.append(_tool_line(part.get("name"), part.get("input")))
        if texts:
            reading.text = "\n".join(texts)
    elif kind == "result":
        totals = _object(event.get("usage"))
        usage.output_tokens = _int(totals.get("output_tokens"))
        cached = [totals.get(k) for k in ("cache_read_input_tokens", "cache_creation_input_tokens")]
        if any(type(c) is int for c in cached):
            usage.cached_tokens = sum(c for c in cached if type(c) is int)
        # Anthropic counts cached prompt tokens apart; codex and gemini count them in.
        # In too here, so that input_tokens means the same for every provider.
        usage.input_tokens = _add(usage.cached_tokens, totals.get("input_tokens"))
        usage.cost_usd = _number(event.get("total_cost_usd"))
        usage.turns = _int(event.get("num_turns"))
        models = event.get("modelUsage")
        if usage.model is None and isinstance(models, dict) and len(models) == 1:
            usage.model = next(iter(models))
        errors = event.get("errors")  # error_max_turns and the like: no result at all
        if isinstance(errors, list):
            reading.progress += [f"error: {e}" for e in errors if isinstance(e, str)]
        if isinstance(event.get("result"), str):
            if event.get("is_error"):  # an API error says subtype "success" all the same
                reading.progress.append(f"error: {event['result']}")
            else:
                reading.answer = event["result"]
    return reading


def _codex(event: dict[str, Any], usage: Usage) -> Reading:
    reading = Reading()
    kind = event.get("type")
    item = _object(event.get("item"))
    if kind == "turn.completed":
        totals = _object(event.get("usage"))
        usage.input_tokens = _add(usage.input_tokens, totals.get("input_tokens"))
        usage.output_tokens = _add(usage.output_tokens, totals.get("output_tokens"))
        usage.cached_tokens = _add(usage.cached_tokens, totals.get("cached_input_tokens"))
        usage.cached_tokens = _add(usage.cached_tokens, totals.get("cache_write_input_tokens"))
    elif kind == "item.completed" and item.get("type") == "agent_message":
        if isinstance(item.get("text"), str):
            reading.text = item["text"]  # the last message is the answer, as in text mode
    elif kind == "item.started" and item.get("type") == "command_execution":
        reading.progress.append(_tool_line("command", item.get("command")))
    elif kind == "item.completed" and item.get("type") in ("file_change", "mcp_tool_call"):
        reading.progress.append(
            _tool_line(item.get("type"), item.get("changes") or item.get("tool"))
        )
    elif kind in ("turn.failed", "error"):
        error = _object(event.get("error")) or event
        message = error.get("message")
        reading.progress.append(f"error: {message}" if isinstance(message, str) else str(event))
    return reading


def _gemini(event: dict[str, Any], usage: Usage) -> Reading:
    reading = Reading()
    kind = event.get("type")
    if kind == "init":
        usage.model = event.get("model") if isinstance(event.get("model"), str) else usage.model
    elif kind == "message" and event.get("role") == "assistant":
        if isinstance(event.get("content"), str):
            reading.text, reading.delta = event["content"], bool(event.get("delta"))
    elif kind == "tool_use":
        reading.progress.append(_tool_line(event.get("tool_name"), event.get("parameters")))
    elif kind == "result":
        stats = _object(event.get("stats"))
        usage.input_tokens = _int(stats.get("input_tokens"))
        usage.output_tokens = _int(stats.get("output_tokens"))
        usage.cached_tokens = _int(stats.get("cached"))
        models = stats.get("models")
        if usage.model in (None, "auto") and isinstance(models, dict) and models:
            # "auto" routes: the model that did the work is the one that used the most
            usage.model = max(
                models, key=lambda m: _int((models[m] or {}).get("total_tokens")) or 0
            )
        error = event.get("error")
        if isinstance(error, dict) and isinstance(error.get("message"), str):
            reading.progress.append(f"error: {error['message']}")
    return reading


_PARSERS: dict[str, Callable[[dict[str, Any], Usage], Reading]] = {
    "claude": _claude,
    "codex": _codex,
    "gemini": _gemini,
}


class Reader:
    """Reads one try's JSON lines; ``usage`` grows as they arrive.

    The agent's latest message is held back: if another event follows it, it was
    progress and is shown; if the stream ends on it, it is the answer (unless the
    CLI names the answer itself), shown once, on stdout.
    """

    def __init__(self, format_: str, model: str | None = None) -> None:
        self.parse = _PARSERS[format_]
        self.usage = Usage(model=model)
        self.held: str | None = None
        self.answer: str | None = None
        self.last_shown: str | None = None

    def line(self, text: str) -> list[str]:
        """One line of the CLI's stdout; returns what to show as progress."""
        try:
            event = msgspec.json.decode(text)
        except msgspec.DecodeError:
            return self._show([text] if text.strip() else [])
        if not isinstance(event, dict):
            return self._show([text])
        reading = self.parse(event, self.usage)
        shown: list[str] = []
        if reading.text is not None:
            if reading.delta and self.held is not None:
                self.held += reading.text
            else:
                shown += self._release()
                self.held = reading.text
        if reading.progress:
            if self.held is not None and any(p.endswith(self.held) for p in reading.progress):
                self.held = None  # claude says an API error as a message, then as the error
            shown += self._release() + reading.progress
        if reading.answer is not None:
            self.answer = reading.answer
        return self._show(shown)

    def finish(self) -> tuple[str, list[str]]:
        """The final answer, and what is left to show as progress."""
        if self.answer is None:
            return self.held or "", []
        left = self._release()
        return self.answer, self._show([t for t in left if t.strip() != self.answer.strip()])

    def _release(self) -> list[str]:
        held, self.held = self.held, None
        return [held] if held and held.strip() else []

    def _show(self, lines: list[str]) -> list[str]:
        out = []
        for line in lines:
            if line.startswith("error: ") and line == self.last_shown:
                continue  # codex says each error twice (error, then turn.failed)
            out.append(line)
            self.last_shown = line
        return out
