"""Render a harness step's ``with:`` into an argv and stdin (docs/format.md, "Agent steps")."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from typing import Any

from dagbox.harness.catalog import Provider
from dagbox.harness.usage import USAGE_FLAGS
from dagbox.yaml12 import plain_scalar

#: ``with`` keys that are never rendered as flags.
RESERVED = frozenset({"provider", "fallback", "managed", "prompt", "stdin", "usage"})


@dataclass(frozen=True, slots=True)
class Invocation:
    """What one try runs: ``argv[0]`` is the binary; ``stdin`` is None when nothing is piped."""

    provider: str
    argv: tuple[str, ...]
    stdin: str | None
    prompt: str
    #: Where the prompt is in argv (alone, or joined to its flag); None: on stdin.
    prompt_index: int | None = None


def trim_prompt(prompt: str) -> str:
    """A single-line prompt loses surrounding whitespace; a multi-line one is kept as written."""
    stripped = prompt.strip()
    return prompt if "\n" in stripped else stripped


_MAY_BE_SCALAR = frozenset("-+0123456789.tTfF")


def coerce(value: Any) -> Any:
    """A string that YAML reads as a bool or a number becomes one ("true" -> True, "10" -> 10)."""
    if type(value) is str and value[:1] in _MAY_BE_SCALAR and "\n" not in value:
        parsed = plain_scalar(value)
        if isinstance(parsed, bool | int | float):
            return parsed
    return value


def _text(value: Any) -> str:
    if type(value) is str:
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else repr(value)
    return str(value)


@cache
def _flag_name(key: str, builtin: bool) -> str:
    return key.replace("_", "-") if builtin else key


def asks_usage(value: Any) -> bool:
    """Whether a ``usage:`` value is true, read as every flag value is (``"true"`` too)."""
    return coerce(value) is True


def wants_usage(provider: Provider, options: Mapping[str, Any]) -> bool:
    """``with: {usage: true}`` for a provider that reports what a try cost."""
    return provider.usage is not None and asks_usage(options.get("usage"))


def flags(provider: Provider, options: Mapping[str, Any]) -> list[str]:
    """``{model: x, verbose: true}`` -> ``["--model", "x", "--verbose"]`` (keys sorted)."""
    if not provider.takes_options:
        return []  # validate says so for each key; nothing reaches a CLI that refuses all
    merged: dict[str, Any] = {}
    builtin = provider.builtin
    for key, value in options.items():
        if key in RESERVED:
            continue
        name = _flag_name(key, builtin)
        if name in merged and key != name:
            continue  # for built-ins the kebab spelling wins over the snake one
        merged[name] = value
    for key, value in provider.defaults.items():
        merged.setdefault(key, value)
    if wants_usage(provider, options):
        merged.update(USAGE_FLAGS[provider.usage or ""])  # the parser needs exactly these
    out: list[str] = []
    dash = "--" if provider.flag_style == "gnu_long" else "-"
    overrides = provider.option_flags
    for name in sorted(merged):
        value = coerce(merged[name])
        token = (overrides.get(name) if overrides else None) or dash + name
        if value is True:
            out.append(token)
        elif value is False or value is None or value == "" or isinstance(value, dict):
            continue
        elif isinstance(value, list):
            for item in value:
                out += (token, _text(item))
        else:
            out += (token, _text(value))
    return out


def render(provider: Provider, options: Mapping[str, Any]) -> Invocation:
    """The argv and stdin for one try of ``provider`` with the step's ``with`` values."""
    prompt = trim_prompt(str(options.get("prompt", "")))
    extra = options.get("stdin")
    extra = extra.strip() if isinstance(extra, str) else None
    stdin: str | None = None
    if provider.prompt_mode == "stdin":
        stdin = prompt if not extra else f"{prompt}\n\n{extra}"
    elif extra:
        if provider.stdin == "fold":
            prompt = f"{prompt}\n\n{extra}"
        else:
            stdin = extra
    rendered = flags(provider, options)
    if provider.prompt_mode == "stdin":
        prompt_part: list[str] = []
    elif provider.prompt_mode == "flag":
        flag = provider.prompt_flag or ""
        prompt_part = [flag + prompt] if len(flag) > 1 and flag.endswith("=") else [flag, prompt]
    else:
        prompt_part = [prompt]
    first = provider.prompt_position == "before_flags"
    middle = prompt_part + rendered if first else rendered + prompt_part
    argv = (provider.binary, *provider.prefix_args, *middle)
    index = None  # the prompt's word is the last of prompt_part
    if prompt_part:
        index = len(argv) - len(middle) + (0 if first else len(rendered)) + len(prompt_part) - 1
    return Invocation(provider.name, argv, stdin, prompt, index)


def merge_defaults(
    step_with: Mapping[str, Any], dag_harness: Mapping[str, Any] | None
) -> dict[str, Any]:
    """Root ``harness:`` defaults under a step's ``with:`` (docs/format.md, "Agent steps"): step keys win.

    A step ``fallback`` replaces the DAG's (``[]`` removes it); fallback entries
    never inherit DAG flags.
    """
    merged = dict(step_with)
    for key, value in (dag_harness or {}).items():
        if key not in merged:
            merged[key] = value
    return merged


def tries(options: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The primary try and its fallbacks, each a complete ``with`` for :func:`render`."""
    primary = {k: v for k, v in options.items() if k != "fallback"}
    out = [primary]
    shared = {"prompt": options.get("prompt", ""), "stdin": options.get("stdin")}
    if "usage" in options:
        shared["usage"] = options["usage"]  # what a try cost is asked of every try
    for entry in options.get("fallback") or ():
        out.append({**shared, **entry})
    return out
