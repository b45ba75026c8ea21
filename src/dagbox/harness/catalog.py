"""Built-in agent CLIs, and custom ones from ``harnesses:``, as one data shape.

Every provider is described by the same fields that a custom ``harnesses:``
entry has, plus what only built-ins have (default flags, ``_`` to ``-`` in flag
names, and whether ``with.stdin`` is piped or folded into the prompt). Adding a
provider is adding a row, never a branch.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal


@dataclass(frozen=True, slots=True)
class Provider:
    name: str
    binary: str
    prefix_args: tuple[str, ...] = ()
    prompt_mode: Literal["arg", "flag", "stdin"] = "arg"
    prompt_flag: str | None = None
    prompt_position: Literal["before_flags", "after_flags"] = "before_flags"
    flag_style: Literal["gnu_long", "single_dash"] = "gnu_long"
    option_flags: Mapping[str, str] = field(default_factory=dict)
    #: Flags a built-in always gets unless the step sets the same key.
    defaults: Mapping[str, Any] = field(default_factory=dict)
    #: "pipe": with.stdin goes to the process's stdin; "fold": it is appended to the prompt.
    stdin: Literal["pipe", "fold"] = "pipe"
    builtin: bool = False


def _flag(name: str, binary: str, flag: str, **kw: Any) -> Provider:
    return Provider(name, binary, prompt_mode="flag", prompt_flag=flag, builtin=True, **kw)


def _arg(name: str, binary: str, *prefix: str, **kw: Any) -> Provider:
    return Provider(name, binary, prefix_args=prefix, builtin=True, **kw)


BUILTIN: dict[str, Provider] = {
    p.name: p
    for p in (
        _flag("claude", "claude", "-p"),
        _arg("codex", "codex", "exec", defaults={"skip-git-repo-check": True}),
        _flag("copilot", "copilot", "-p"),
        _arg("opencode", "opencode", "run"),
        _flag("pi", "pi", "-p"),
        _flag("gemini", "gemini", "-p"),
        _flag("cursor", "cursor-agent", "-p", defaults={"output-format": "text"}, stdin="fold"),
        _arg("cline", "cline", prompt_position="after_flags"),
        _flag("aider", "aider", "--message", stdin="fold"),
        _flag("qwen", "qwen", "-p"),
        Provider(
            "goose",
            "goose",
            ("run",),
            "flag",
            "--text",
            defaults={"quiet": True},
            stdin="fold",
            builtin=True,
        ),
        _arg("kiro", "kiro-cli", "chat", "--no-interactive"),
        _arg("droid", "droid", "exec", stdin="fold"),
        _flag("amp", "amp", "-x"),
        _arg(
            "deepseek", "dsh", "--profile", "headless", prompt_position="after_flags", stdin="fold"
        ),
    )
}


def custom(name: str, definition: Any) -> Provider:
    """A ``harnesses:`` entry (a HarnessDef) as a Provider; shadows a built-in of that name."""
    return Provider(
        name=name,
        binary=definition.binary.strip(),
        prefix_args=tuple(a.strip() for a in definition.prefix_args),
        prompt_mode=definition.prompt_mode,
        prompt_flag=definition.prompt_flag,
        prompt_position=definition.prompt_position,
        flag_style=definition.flag_style,
        option_flags={k: v for k, v in definition.option_flags.items() if v.strip()},
    )


def registry(harnesses: Mapping[str, Any]) -> dict[str, Provider]:
    """Providers visible to a DAG: built-ins, shadowed or removed (``null``) by ``harnesses:``."""
    providers = dict(BUILTIN)
    for name, definition in harnesses.items():
        if definition is None:
            continue  # null re-exposes the built-in of that name, if there is one
        providers[name] = custom(name, definition)
    return providers
