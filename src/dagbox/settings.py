"""dagbox's own settings from its environment, each checked once, when a command starts.

A bad value is one line that names the variable (exit 2), not a traceback at the first
use, deep inside a run (or, for a host-only run, at import time), and not a hang:
``DAGBOX_MAX_STARTING=0`` would admit no container ever. Every other module reads
these values through :func:`current`, so the check and the use cannot disagree.
"""

from __future__ import annotations

import math
import os
import shlex
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache

#: The schemes an engine address may use (those aiodocker can talk to).
ENGINE_SCHEMES = ("unix", "tcp", "http", "https", "ssh", "npipe")


class SettingError(ValueError):
    """An environment variable dagbox reads holds a value it cannot use."""


@dataclass(frozen=True)
class Settings:
    #: Bound for ordinary engine calls (create, start, inspect, delete, ...).
    engine_call_timeout: float = 60.0
    #: Bound for reaching the engine at all.
    engine_connect_timeout: float = 10.0
    #: Containers in creation and start at once (inf: no limit).
    max_starting: float = math.inf


def read(env: Mapping[str, str]) -> Settings:
    """The settings ``env`` gives; SettingError names the first variable that is wrong."""
    runtime = env.get("DAGU_CONTAINER_RUNTIME", "").strip().lower() or "docker"
    if runtime not in ("docker", "podman"):
        raise SettingError(
            f"DAGU_CONTAINER_RUNTIME={env['DAGU_CONTAINER_RUNTIME']!r} is not supported: "
            "use docker or podman"
        )
    for name in ("DOCKER_HOST", "DAGU_PODMAN_HOST"):
        _engine_address(name, env.get(name, ""))
    shell = env.get("DAGU_DEFAULT_SHELL", "")
    if shell:
        try:
            shlex.split(shell)
        except ValueError as exc:
            raise SettingError(
                f"DAGU_DEFAULT_SHELL={shell!r} cannot be split into words: {exc}"
            ) from None
    return Settings(
        engine_call_timeout=_seconds(env, "DAGBOX_ENGINE_CALL_TIMEOUT", 60.0),
        engine_connect_timeout=_seconds(env, "DAGBOX_ENGINE_CONNECT_TIMEOUT", 10.0),
        max_starting=_count(env, "DAGBOX_MAX_STARTING"),
    )


@cache
def current() -> Settings:
    """The settings of this process, read from ``os.environ`` once."""
    return read(os.environ)


def _seconds(env: Mapping[str, str], name: str, default: float) -> float:
    text = env.get(name, "").strip()
    if not text:
        return default
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (0 < value < math.inf):
        raise SettingError(f"{name}={text!r} must be a number of seconds greater than 0")
    return value


def _count(env: Mapping[str, str], name: str) -> float:
    text = env.get(name, "").strip()
    if not text:
        return math.inf
    if not (text.isascii() and text.isdigit()) or int(text) < 1:
        raise SettingError(f"{name}={text!r} must be a whole number of at least 1")
    return int(text)


def _engine_address(name: str, value: str) -> None:
    if not value:
        return
    scheme, sep, rest = value.partition("://")
    if not sep or scheme.lower() not in ENGINE_SCHEMES or not rest.strip("/"):
        raise SettingError(
            f"{name}={value!r} is not an engine address: use "
            + ", ".join(f"{s}://..." for s in ENGINE_SCHEMES)
        )
