"""Older ways Dagu files say "run this step in Docker", rewritten to ``container:``.

Dagu 1.x wrote ``executor: {type: docker, config: {...}}``; Dagu 2 wrote
``type: docker`` with ``with:`` (or ``config:``), and ``action: docker.run``.
All of them mean a step-level container, so they are rewritten to one before
the rules run. Docker-API objects inside the config (``container``, ``host``,
``exec``) are mapped for the fields dagbox has; anything else is an error
rather than a silent ignore.
"""

from __future__ import annotations

from typing import Any

from dagbox.spec.build import snake
from dagbox.spec.forms import INVALID, Context, kind, words
from dagbox.spec.issues import Sink

COMMAND_TYPES = {"", "command", "shell"}
DOCKER_TYPES = {"docker", "container"}
DOCKER_ACTIONS = {"docker.run", "container.run"}

_TOP = {
    "image": "image",
    "container_name": "exec",
    "platform": "platform",
    "working_dir": "working_dir",
    "volumes": "volumes",
    "shell": "shell",
    "user": "user",
    "env": "env",
    "network": "network",
}
_API = {
    "container": {"env": "env", "workingdir": "working_dir", "user": "user"},
    "host": {"binds": "volumes", "networkmode": "network"},
    "exec": {"env": "env", "workingdir": "working_dir", "user": "user"},
}


def docker_config(config: Any, sink: Sink) -> dict[str, Any] | None:
    """A Dagu docker executor config -> a ``container:`` mapping (None if unusable)."""
    if not isinstance(config, dict):
        sink.error(f"the docker config must be a mapping, not {kind(config)}")
        return None
    out: dict[str, Any] = {}
    for key, value in config.items():
        name = snake(str(key))
        if name in _TOP:
            out[_TOP[name]] = value
        elif name == "pull":
            out["pull_policy"] = value
        elif name == "auto_remove":
            out["keep_container"] = value is False
        elif name in _API and isinstance(value, dict):
            for api_key, api_value in value.items():
                target = _API[name].get(str(api_key).lower())
                if target is None:
                    sink.error(
                        f'Docker API field "{api_key}" is not supported by dagbox; use the container: keys',
                        key,
                        api_key,
                        at_key=True,
                    )
                else:
                    out.setdefault(target, api_value)
        else:
            sink.error(
                f'"{key}" is not supported in a docker config by dagbox; use container:',
                key,
                at_key=True,
            )
    if "image" not in out and "exec" not in out:
        sink.error("the docker config needs an image (or container_name)")
        return None
    return out


def rewrite(step: Any, sink: Sink, ctx: Context) -> None:
    """Rewrite the older spellings of ``step`` in place, so the rest sees one form.

    After this, ``command`` is folded into ``run``, ``config`` into ``with``,
    and executor/type/docker actions into ``container``.
    """
    if (
        step.executor is not None
        or step.type is not None
        or step.config is not None
        or (step.action in DOCKER_ACTIONS or step.action == "exec")
    ):
        _executor(step, sink, ctx)
    if step.command is not None:
        if step.run is not None:
            sink.error('run cannot be used together with "command"', "command", at_key=True)
        else:
            step.run = step.command
        step.command = None
    options = step.with_
    if (
        step.action is None
        and isinstance(options, dict)
        and set(options) <= {"shell", "shell_args"}
    ):
        # A command executor's config: its shell, and the arguments that shell gets.
        shell = words(options.get("shell"), sink.at("with", "shell"), ctx)
        args = words(options.get("shell_args"), sink.at("with", "shell_args"), ctx)
        if "shell_args" in options and not options.get("shell"):
            sink.error('"shell_args" needs "shell"', "with", "shell_args", at_key=True)
        elif not step.shell and shell is not INVALID and args is not INVALID:
            step.shell = (*shell, *args)
        step.with_ = None


def _unpacked(step: Any, sink: Sink) -> Sink | None:
    """``executor: NAME`` or ``executor: {type, config}`` moved to ``type:`` and ``with:``;
    where its options are, or None when it is invalid (said in ``sink``)."""
    executor, at = step.executor, sink.at("executor")
    step.executor = None
    if executor is None:
        return sink.at("with")
    if step.type is not None:
        sink.error('"executor" and "type" cannot be used together', "executor", at_key=True)
        return None
    if isinstance(executor, str):
        step.type = executor
        return at
    if not isinstance(executor, dict):
        at.error(f"executor must be a type name or {{type, config}}, not {kind(executor)}")
        return None
    step.type = executor.get("type")
    if "config" in executor:
        if step.with_ is not None:
            at.error('"executor.config" and "with" cannot be used together', "config", at_key=True)
            return None
        if not isinstance(executor["config"], dict):
            at.error(f"executor.config must be a mapping, not {kind(executor['config'])}", "config")
            return None
        step.with_ = executor["config"]
    for key in executor:
        if key not in ("type", "config"):
            at.error(f'unknown executor key "{key}"', key, at_key=True)
    return at.at("config")


def _executor(step: Any, sink: Sink, ctx: Context) -> None:
    if step.config is not None:
        if step.with_ is not None:
            sink.error(
                '"with" and "config" cannot be used together; use "with"', "config", at_key=True
            )
        else:
            step.with_ = step.config
        step.config = None
    executor = step.executor
    at = _unpacked(step, sink)
    if at is None:
        return
    kind_ = step.type
    step.type = None
    if step.action in DOCKER_ACTIONS:
        kind_, step.action = "docker", None
    elif step.action == "exec" and isinstance(step.with_, dict):
        step.action, options, step.with_ = None, step.with_, None
        argv = [options.get("command"), *(options.get("args") or [])]
        if not all(isinstance(a, str | int | float) and not isinstance(a, bool) for a in argv):
            sink.error(
                "exec needs with.command (a string) and optional with.args (a list of scalars)",
                "with",
            )
            return
        from dagbox.spec.model import Exec  # the model imports this module

        step.exec = Exec(command=str(argv[0]), args=tuple(str(a) for a in argv[1:]))
        return
    where = "executor" if executor is not None else "type"
    if kind_ is not None and not isinstance(kind_, str):
        sink.error(f"an executor type is a name, not {kind(kind_)}", where)
        return
    if kind_ is None or kind_.lower() in COMMAND_TYPES:
        return
    if kind_ == "harness":
        step.action = "harness.run"
        return
    if kind_ == "jq":
        _jq(step, sink)
        return
    if kind_ == "dag":  # 1.x: executor: dag with call: (the call itself needs no type)
        return
    if kind_ not in DOCKER_TYPES:
        sink.error(
            f'executor type "{kind_}" is not supported by dagbox (use container: for Docker)', where
        )
        return
    _docker(step, sink, at, ctx)


def _docker(step: Any, sink: Sink, at: Sink, ctx: Context) -> None:
    """A docker executor's options (at ``at``) as the step's ``container:``."""
    if step.container is not None:
        sink.error(
            "a docker executor and container: cannot be used together; use container:", "container"
        )
        return
    config = step.with_ if step.with_ is not None else {}
    step.with_ = None
    if (
        isinstance(config, dict)
        and "command" in config
        and step.run is None
        and step.command is None
    ):
        step.command = config.pop("command") if isinstance(config.get("command"), str) else None
    mapped = docker_config(config, at)
    if mapped is not None:
        built = ctx.build(mapped, ctx.target, at)
        if built is not INVALID:
            step.container = built


def _jq(step: Any, sink: Sink) -> None:
    """Dagu 1.x's ``executor: jq`` (``type: jq``): ``command`` is the filter, ``script``
    the JSON (or ``file://PATH``), ``with``/``config`` holds ``raw`` and ``input``; as
    ``action: jq.filter``."""
    options = dict(step.with_) if isinstance(step.with_, dict) else {}
    filter_ = step.command if step.command is not None else step.run
    if not isinstance(filter_, str):
        sink.error("a jq step needs command: the jq filter, as one string", "command")
        return
    options["filter"] = filter_
    if step.script is not None:
        options["data"] = step.script
    step.action, step.with_ = "jq.filter", options
    step.command = step.run = step.script = None
