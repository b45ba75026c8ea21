"""From a DAG ``container:`` to a runtime :class:`ContainerSpec`, values resolved.

Container fields are resolved when the container is about to be used
(docs/format.md, "Values"): ``${params.X}``, ``${env.X}`` and ``$X``/``${X}`` from the
run's scope. Volume sources are then expanded from dagbox's own environment
(``$VAR``, ``~``) and relative ones are joined to the working directory (docs/format.md, D2).
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Callable, Mapping
from pathlib import Path

from dagbox.plan import ContainerConfig, Volume
from dagbox.runtimes import ContainerSpec
from dagbox.values import Scope

_VAR = re.compile(r"\$(?:\{([A-Za-z_][A-Za-z0-9_]*)\}|([A-Za-z_][A-Za-z0-9_]*))")


class ContainerValueError(ValueError):
    """A container field that cannot be resolved (an unset variable in a volume source)."""


def is_host_path(source: str) -> bool:
    """Dagu's rule: absolute, or starting with . or ~, or containing a slash is a host path."""
    return source.startswith(("/", ".", "~")) or "/" in source or "\\" in source


def bind(
    volume: Volume, base: Path, host_env: Mapping[str, str], resolve: Callable[[str], str]
) -> str:
    def variable(match: re.Match[str]) -> str:
        name = match[1] or match[2]
        if name not in host_env:
            raise ContainerValueError(f"volume {volume.source!r}: ${name} is not set")
        return host_env[name]

    source = _VAR.sub(variable, resolve(volume.source))
    if is_host_path(source):
        path = Path(source).expanduser()
        source = str(path if path.is_absolute() else (base / path).resolve())
    return f"{source}:{resolve(volume.target)}:{'ro' if volume.read_only else 'rw'}"


def container_spec(
    container: ContainerConfig,
    scope: Scope,
    base: Path,
    host_env: Mapping[str, str] = os.environ,
) -> ContainerSpec:
    """Resolve ``container`` for use now, in ``scope``; raises ContainerValueError."""
    resolve = scope.value
    env: dict[str, str] = {}
    for name, raw in container.env:
        env[name] = scope.with_env({**scope.env, **env}).value(raw)
    health = None
    if container.healthcheck is not None:
        h = container.healthcheck
        health = {
            "test": list(h.test),
            "interval": h.interval,
            "timeout": h.timeout,
            "start_period": h.start_period,
            "retries": h.retries,
        }
    return ContainerSpec(
        image=resolve(container.image) if container.image else None,
        target=resolve(container.exec) if container.exec else None,
        name=resolve(container.name) if container.name else None,
        pull_policy=container.pull_policy,
        env=tuple(env.items()),
        binds=tuple(bind(v, base, host_env, resolve) for v in container.volumes),
        working_dir=resolve(container.working_dir) if container.working_dir else None,
        user=resolve(container.user) if container.user else None,
        network=resolve(container.network) if container.network else None,
        platform=resolve(container.platform) if container.platform else None,
        ports=tuple(resolve(p) for p in container.ports),
        keep=container.keep_container,
        startup=container.startup,
        command=tuple(resolve(c) for c in container.command),
        wait_for=container.wait_for,
        log_pattern=container.log_pattern,
        restart_policy=container.restart_policy,
        healthcheck=health,
        shell=tuple(resolve(s) for s in container.shell),
    )


#: Where a container sees the run's folder of DAGU_OUTPUT_FILEs (docs/format.md).
CONTAINER_OUTPUTS = "/dagbox/outputs"
#: Where a container sees the run's artifacts folder ($DAG_RUN_ARTIFACTS_DIR).
CONTAINER_ARTIFACTS = "/dagbox/artifacts"


def with_run_folders(
    spec: ContainerSpec, outputs: Path | None, artifacts: Path | None
) -> ContainerSpec:
    """``spec`` with the run's outputs folder mounted at CONTAINER_OUTPUTS, when the run
    has one (its steps declare outputs), and its artifacts folder at CONTAINER_ARTIFACTS.
    The outputs folder may be entered by any user (0711: a container's ``user:`` may not
    be root) but not listed; each file in it is the one attempt's own."""
    binds = list(spec.binds)
    if outputs is not None:
        outputs.mkdir(parents=True, exist_ok=True)
        outputs.chmod(0o711)
        binds.append(f"{outputs}:{CONTAINER_OUTPUTS}:rw")
    if artifacts is not None:
        binds.append(f"{artifacts}:{CONTAINER_ARTIFACTS}:rw")
    return dataclasses.replace(spec, binds=tuple(binds))
