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
class Trap:
    """A line an agent CLI prints when it cannot do the work, whatever its exit code says.

    ``pattern`` is an RE2 pattern searched in each line of the try's output; a
    match ends the try at once as failed, with ``message`` as its error. It is
    how a CLI that waits for a browser login (amp) fails in seconds instead of
    at the step's timeout, and how one that exits 0 after an auth error
    (aider) fails at all.
    """

    pattern: str
    message: str


@dataclass(frozen=True, slots=True)
class Provider:
    name: str
    binary: str
    prefix_args: tuple[str, ...] = ()
    prompt_mode: Literal["arg", "flag", "stdin"] = "arg"
    #: ``--`` (with ``after_flags``): options end before the prompt. A flag that ends in
    #: ``=`` is joined to the prompt (``--message=PROMPT``). Either way a prompt that
    #: starts with ``-`` is never read as an option.
    prompt_flag: str | None = None
    prompt_position: Literal["before_flags", "after_flags"] = "before_flags"
    flag_style: Literal["gnu_long", "single_dash"] = "gnu_long"
    option_flags: Mapping[str, str] = field(default_factory=dict)
    #: Flags a built-in always gets unless the step sets the same key.
    defaults: Mapping[str, Any] = field(default_factory=dict)
    #: "pipe": with.stdin goes to the process's stdin; "fold": it is appended to the prompt.
    stdin: Literal["pipe", "fold"] = "pipe"
    builtin: bool = False
    #: False: the CLI accepts no option at all, so a ``with:`` flag is a load error.
    takes_options: bool = True
    traps: tuple[Trap, ...] = ()
    #: The structured output ``with: {usage: true}`` asks for (see harness/usage.py).
    usage: str | None = None


def _positional(name: str, binary: str, *prefix: str, **kw: Any) -> Provider:
    """``binary PREFIX... FLAGS... -- PROMPT``."""
    return Provider(
        name,
        binary,
        prefix,
        prompt_mode="flag",
        prompt_flag="--",
        prompt_position="after_flags",
        builtin=True,
        **kw,
    )


def _flag(name: str, binary: str, flag: str, *prefix: str, **kw: Any) -> Provider:
    """``binary PREFIX... FLAGS... FLAG=PROMPT``."""
    return Provider(
        name,
        binary,
        prefix,
        prompt_mode="flag",
        prompt_flag=f"{flag}=",
        prompt_position="after_flags",
        builtin=True,
        **kw,
    )


BUILTIN: dict[str, Provider] = {
    p.name: p
    for p in (
        _positional("claude", "claude", "-p", usage="claude"),
        _positional(
            "codex", "codex", "exec", defaults={"skip-git-repo-check": True}, usage="codex"
        ),
        _flag("copilot", "copilot", "--prompt"),
        # Without its logs, a bad model or a failed request is only "UnknownError".
        _positional(
            "opencode", "opencode", "run", defaults={"print-logs": True, "log-level": "WARN"}
        ),
        _positional("pi", "pi", "-p"),
        _flag("gemini", "gemini", "--prompt", defaults={"skip-trust": True}, usage="gemini"),
        _positional(
            "cursor", "cursor-agent", "-p", defaults={"output-format": "text"}, stdin="fold"
        ),
        _positional("cline", "cline"),
        _flag(
            "aider",
            "aider",
            "--message",
            stdin="fold",
            traps=(
                Trap(
                    r"^No LLM model was specified and no API keys were provided",
                    "aider has no model and no API key, and would wait 5 minutes for a "
                    "browser login: set with: {model: ...} and that provider's API key",
                ),
                Trap(
                    r"^The API provider is not able to authenticate you",
                    "aider could not authenticate (it exits 0 all the same): "
                    "set the API key of the model's provider",
                ),
            ),
        ),
        _positional("qwen", "qwen"),
        _flag("goose", "goose", "--text", "run", defaults={"quiet": True}, stdin="fold"),
        _positional("kiro", "kiro-cli", "chat", "--no-interactive"),
        _positional("droid", "droid", "exec", stdin="fold"),
        _flag(
            "amp",
            "amp",
            "--execute",
            traps=(
                Trap(
                    r"^No API key found\. Starting login flow",
                    "amp is not logged in and would wait for a browser login: set AMP_API_KEY",
                ),
            ),
        ),
        # dsh's launcher eats the first "--" before its headless entry sees the task.
        _positional(
            "deepseek", "dsh", "--profile", "headless", "--", stdin="fold", takes_options=False
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


def customs(harnesses: Mapping[str, Any]) -> dict[str, Provider]:
    """A DAG's ``harnesses:`` as Providers; a ``null`` entry re-exposes the built-in."""
    return {name: custom(name, d) for name, d in harnesses.items() if d is not None}


def registry(customs: Mapping[str, Provider]) -> dict[str, Provider]:
    """Providers visible to a DAG: the built-ins, shadowed by its own."""
    return {**BUILTIN, **customs}
