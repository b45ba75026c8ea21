"""Run steps in containers through aiodocker: per-attempt containers, execs, the shared one.

- A step with its own ``container: {image: ...}`` gets a fresh container per
  attempt: created, attached *before* start (attach is the only API that keeps
  stdout and stderr apart, and attaching after exit hangs), waited on, read for
  its exit code and ``OOMKilled``, then removed unless ``keep_container``.
- A step in the DAG's shared container, or in a named container, is an exec.
  Docker cannot kill an exec, so each exec is started through a tiny ``sh``
  wrapper that reports its process id first (on stderr, stripped again here);
  a second exec then signals that process group, as docs/format.md D9 promises.
- Cleanup (kill, remove) always runs shielded from cancellation and bounded in
  time, so Ctrl-C, SIGTERM and timeouts leave nothing behind.
"""

from __future__ import annotations

import contextlib
import json
import re
import signal as signals
import time
from collections.abc import Callable, Mapping
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

import anyio

from dagbox import owner as owner_mod
from dagbox import settings
from dagbox.failures import FailureClass
from dagbox.regex import compile_pattern
from dagbox.runtimes import (
    Command,
    ContainerSpec,
    Exit,
    Notify,
    OnOutput,
    SetupError,
    Stop,
    Trace,
    no_trace,
)
from dagbox.runtimes.aiodocker_private import create_container, half_close
from dagbox.runtimes.container_engine import (
    ContainerEngineError,
    call,
    inspect,
    message_of,
    status_of,
)
from dagbox.runtimes.images import Images

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    import aiodocker
    from aiodocker.containers import DockerContainer


def _engine_failures() -> tuple[type[BaseException], ...]:
    import aiodocker
    import aiohttp

    return (aiodocker.DockerError, aiohttp.ClientError, OSError)


#: What a failing engine raises; a step that meets one fails with ``infra_engine``.
ENGINE_FAILURES = _engine_failures()

LABEL_RUN = "dagbox.run_id"
LABEL_STEP = "dagbox.step"
LABEL_OWNER = "dagbox.owner"
LABEL_OWNER_START = "dagbox.owner_start"
LABEL_OWNER_NS = "dagbox.owner_pidns"
#: On a container made with ``keep_container: true``: no sweep or reaper removes it.
LABEL_KEEP = "dagbox.keep"
#: How long a container may take to be ready (running, healthy, log pattern), and how
#: long an exec target may take to be running: Dagu's budget.
READY_TIMEOUT = 120.0
CLEANUP_TIMEOUT = 30.0
_MARK = b"\x1edagbox-pid "
_WRAPPER = 'printf "\\036dagbox-pid %s\\n" "$$" >&2; exec "$@"'
_KEEPALIVE = ["sh", "-c", "trap 'exit 0' TERM INT; while :; do sleep 3600 & wait $!; done"]


def owner_labels() -> dict[str, str]:
    """Who owns the containers of this process: host and pid, plus the pid's start time."""
    owner, start, namespace = owner_mod.this_process()
    return {LABEL_OWNER: owner, LABEL_OWNER_START: start, LABEL_OWNER_NS: namespace}


class DockerRuntime:
    """Steps in per-attempt containers and in named containers (exec)."""

    def __init__(
        self,
        client: aiodocker.Docker,
        run_id: str,
        notify: Notify,
        starting: anyio.CapacityLimiter | None = None,
        images: Images | None = None,
        names: dict[str, anyio.Lock] | None = None,
    ) -> None:
        """``starting``, ``images`` and ``names`` may be shared by many runs (``dagbox bench``)."""
        self.client = client
        self.run_id = run_id
        self.images = images or Images(client, notify)
        self.labels = {LABEL_RUN: run_id, **owner_labels()}
        # How many containers may be in creation and start at once. Creating is where the
        # engine is slowest; with 20 at once, no limit was fastest here (3.4 s against 3.8 s
        # at 6), so there is none unless DAGBOX_MAX_STARTING (or --max-containers) sets one.
        self.starting = starting or anyio.CapacityLimiter(default_max_starting())
        #: Containers whose removal failed (the engine was away): :meth:`sweep` tries again.
        self.leftovers: list[DockerContainer] = []
        #: One lock per container ``name``: steps that share a name take turns, instead of
        #: racing to create it (one got 409 Conflict, or an exec, by timing).
        self.names = {} if names is None else names

    async def sweep(self, thorough: bool = False) -> None:
        """Remove what could not be removed during the run, now that the engine may be back.

        ``thorough`` (after an interrupt, a timeout or an engine error) also removes every
        container of this run the engine lists (by the ``dagbox.run_id`` and owner labels),
        kept ones aside: one created by a call whose answer never came, say.
        """
        leftovers, self.leftovers = self.leftovers, []
        for container in leftovers:
            await _remove(container)
        if not thorough:
            return
        owner = self.labels[LABEL_OWNER]
        with anyio.move_on_after(CLEANUP_TIMEOUT), contextlib.suppress(*ENGINE_FAILURES):
            listed = await call(
                self.client.containers.list(
                    all=True, filters={"label": [f"{LABEL_RUN}={self.run_id}"]}
                ),
                "listing this run's containers",
            )
            for container in listed:
                labels = container._container.get("Labels") or {}
                if labels.get(LABEL_OWNER) == owner and LABEL_KEEP not in labels:
                    await _remove(container)

    # --- the runtime protocol ------------------------------------------------------------

    async def run(
        self, command: Command, on_output: OnOutput, stop: Stop, trace: Trace = no_trace
    ) -> Exit:
        spec = command.container
        assert spec is not None, "a container step without a container spec"
        try:
            if spec.target is not None:
                container = await self._running(spec.target)
                trace("container_id", container.id)
                return await exec_in(container, command, spec, on_output, stop)
            return await self._fresh(command, spec, on_output, stop, trace)
        except SetupError as exc:
            return Exit(1, str(exc), exc.failure_class)
        except ContainerEngineError as exc:
            return Exit(1, str(exc), "infra_engine")
        except ENGINE_FAILURES as exc:
            return Exit(1, f"the container engine failed: {message_of(exc)}", "infra_engine")

    async def _running(self, target: str) -> DockerContainer:
        """The named container, once it is running (polls for up to READY_TIMEOUT seconds)."""
        budget = READY_TIMEOUT
        deadline = anyio.current_time() + budget
        last = "not found"
        while True:
            container = await inspect(self.client.containers.get(target), f"container {target}")
            if container is not None:
                state = container["State"]
                if state.get("Running") and not state.get("Paused"):
                    return container
                last = state.get("Status", "not running")
            if anyio.current_time() >= deadline:
                raise SetupError(f"container {target} is not running ({last}) after {budget:g}s")
            await anyio.sleep(0.5)

    async def _fresh(
        self,
        command: Command,
        spec: ContainerSpec,
        on_output: OnOutput,
        stop: Stop,
        trace: Trace = no_trace,
    ) -> Exit:
        def note(message: str) -> None:
            on_output("stderr", f"dagbox: {message}\n".encode())

        assert spec.image is not None
        if spec.name:
            # Dagu's rule: a running container of that name is exec'd into (at once, by as
            # many steps as like); else one is made. Making it is one step's turn at a time
            # (for as long as that step runs), so two steps never race to create one name.
            async with self.names.setdefault(spec.name, anyio.Lock()):
                existing = await self._existing(spec.name)
                if existing is None:
                    return await self._created(command, spec, on_output, stop, trace, note)
            return await exec_in(existing, command, spec, on_output, stop)
        return await self._created(command, spec, on_output, stop, trace, note)

    async def _created(
        self,
        command: Command,
        spec: ContainerSpec,
        on_output: OnOutput,
        stop: Stop,
        trace: Trace,
        note: Callable[[str], None],
    ) -> Exit:
        assert spec.image is not None
        began = time.monotonic()
        await self.images.ensure(spec.image, spec.pull_policy, spec.platform, note)
        trace("image_ready_ms", _ms(began))
        config = container_config(spec, {**self.labels, LABEL_STEP: command.name, **spec.labels})
        config.update(_program(command, spec))
        config["Env"] = _env_list({**_private_env(command), **dict(spec.env)})  # container env wins
        stdin = command.stdin is not None
        config.update(AttachStdin=stdin, OpenStdin=stdin, StdinOnce=stdin)
        admission = _Admission(self.starting)
        await admission.enter()
        try:
            began = time.monotonic()
            container = await create(self.client, config, spec)
            trace("container_create_ms", _ms(began))
            trace("container_id", container.id)
            try:
                return await _attached(container, command, on_output, stop, admission, trace)
            finally:
                if not spec.keep:
                    began = time.monotonic()
                    if not await _remove(container):
                        self.leftovers.append(container)

                    trace("container_remove_ms", _ms(began))
        finally:
            admission.leave()

    async def _existing(self, name: str) -> DockerContainer | None:
        """Dagu's rule for a named step container: a running one is exec'd into, a stopped one replaced."""
        container = await inspect(self.client.containers.get(name), f"container {name}")
        if container is None:
            return None
        if container["State"].get("Running"):
            return container
        await _remove(container)
        return None

    # --- the shared container ------------------------------------------------------------

    @asynccontextmanager
    async def shared(self, spec: ContainerSpec, notify: Notify) -> AsyncIterator[SharedContainer]:
        """The DAG's root container for the length of a run (image mode)."""
        assert spec.image is not None
        await self.images.ensure(spec.image, spec.pull_policy, spec.platform, notify)
        config = container_config(spec, {**self.labels, LABEL_STEP: "(root)", **spec.labels})
        config["Env"] = _env_list(dict(spec.env))
        if spec.startup == "keepalive":
            config.update(Entrypoint=[], Cmd=_KEEPALIVE)
        elif spec.startup == "command":
            config["Cmd"] = list(spec.command)
        name = spec.name
        if (
            name
            and await inspect(self.client.containers.get(name), f"container {name}") is not None
        ):
            raise SetupError(f"a container named {name} already exists")
        container = await create(self.client, config, spec)
        try:
            try:
                await call(container.start(), f"starting the shared container ({spec.image})")
                await _ready(container, spec, notify)
            except ENGINE_FAILURES as exc:
                raise SetupError(f"cannot start the shared container: {message_of(exc)}") from None
            yield SharedContainer(container, spec)
        finally:
            with (
                anyio.CancelScope(shield=True),
                anyio.move_on_after(CLEANUP_TIMEOUT),
                contextlib.suppress(Exception),  # gone already, or the engine is gone
            ):
                await container.stop(t=5)
            if not spec.keep and not await _remove(container):
                self.leftovers.append(container)


#: Exec exit codes that can mean the container went away: could not run, SIGKILL, SIGTERM.
_KILLED_OR_NOT_RUN = frozenset({126, 137, 143})
#: How long a container may take to be seen stopped after its execs died.
_STOPPING_SECONDS = 1.0


class SharedContainer:
    """Runs commands as execs in the DAG's root container."""

    def __init__(self, container: DockerContainer, spec: ContainerSpec) -> None:
        self.container = container
        self.spec = spec

    async def run(
        self, command: Command, on_output: OnOutput, stop: Stop, trace: Trace = no_trace
    ) -> Exit:
        trace("container_id", self.container.id)
        try:
            done = await exec_in(self.container, command, self.spec, on_output, stop)
            if done.code in _KILLED_OR_NOT_RUN and done.error is None:
                return await self._stopped_under(done)
            return done
        except ContainerEngineError as exc:
            return Exit(1, str(exc), "infra_engine")
        except ENGINE_FAILURES as exc:
            return Exit(1, f"the container engine failed: {message_of(exc)}", "infra_engine")

    async def _stopped_under(self, done: Exit) -> Exit:
        """An exec that was killed or could not run, because its container stopped around
        it, failed for that reason, not its own: an exec started into a container that is
        just exiting ends 126 and says nothing else. The container's state follows its
        execs' by a moment, so this waits a little for it to stop (failures only)."""
        with anyio.move_on_after(_STOPPING_SECONDS):
            waited = await self.container.wait()
            return Exit(
                done.code,
                "the shared container is not running any more "
                f"(it exited with {waited.get('StatusCode')})",
                "infra_engine",
            )
        return done


# --- containers ----------------------------------------------------------------------------


def container_config(spec: ContainerSpec, labels: Mapping[str, str]) -> dict[str, Any]:
    host: dict[str, Any] = {"Init": True, "AutoRemove": False}
    if spec.keep:
        labels = {**labels, LABEL_KEEP: "true"}
    if spec.binds:
        host["Binds"] = list(spec.binds)
    if spec.network:
        host["NetworkMode"] = spec.network
    if spec.restart_policy:
        host["RestartPolicy"] = {"Name": spec.restart_policy}
    config: dict[str, Any] = {
        "Image": spec.image,
        "Labels": dict(labels),
        "Tty": False,
        "AttachStdout": True,
        "AttachStderr": True,
        "HostConfig": host,
    }
    if spec.working_dir:
        config["WorkingDir"] = spec.working_dir
    if spec.user:
        config["User"] = spec.user
    if spec.ports:
        exposed, bindings = _ports(spec.ports)
        config["ExposedPorts"] = exposed
        host["PortBindings"] = bindings
    if spec.healthcheck:
        config["Healthcheck"] = _healthcheck(spec.healthcheck)
    return config


def _program(command: Command, spec: ContainerSpec) -> dict[str, Any]:
    """Entrypoint and Cmd of a per-attempt container for ``command`` (docs/format.md, D1)."""
    if command.entrypoint and command.argv:  # an agent CLI: never doubled with an image entrypoint
        return {"Entrypoint": [command.argv[0]], "Cmd": list(command.argv[1:])}
    if command.argv:
        return {"Cmd": list(command.argv)}
    if command.script is not None:
        return {"Entrypoint": [], "Cmd": _shell_argv(command, spec)}
    if spec.command:
        return {"Cmd": list(spec.command)}
    return {}


def _shell_argv(command: Command, spec: ContainerSpec) -> list[str]:
    """A ``run:`` string or script through the container's shell, else ``sh -c`` (docs/format.md, D1).

    A private script (it holds a secret) travels in the environment instead, because
    a container's processes show in the host's process list with their arguments.
    """
    text = 'eval "$DAGBOX_SCRIPT"' if command.private else command.script or ""
    if command.interpreter is not None:
        return [*command.interpreter.split(), "-c", text]
    shell = list(command.shell or spec.shell or ("sh",))
    return [*shell, text] if shell[-1:] == ["-c"] else [*shell, "-c", text]


async def create(
    client: aiodocker.Docker, config: dict[str, Any], spec: ContainerSpec
) -> DockerContainer:
    from aiodocker.containers import DockerContainer

    params = {"name": spec.name} if spec.name else {}
    if spec.platform:
        params["platform"] = spec.platform
    try:
        # Shielded (and still bounded by the call timeout): a create cancelled by Ctrl-C
        # is carried out by the engine all the same, and its answer is the only way to
        # learn the container's id and remove it. The caller removes it as the cancel
        # arrives, at its next await.
        with anyio.CancelScope(shield=True):
            data = await call(
                create_container(client, json.dumps(config).encode(), params),
                f"creating a container from {spec.image}",
            )
    except ContainerEngineError:
        raise
    except Exception as exc:
        status = status_of(exc)
        kind: FailureClass = "infra_image" if status == 404 else "infra_engine"
        raise SetupError(
            f"cannot create a container from {spec.image}: {message_of(exc)}", kind
        ) from None
    return DockerContainer(client, id=data["Id"])


def _attach(container: DockerContainer, stdin: bool) -> Any:
    """Attach to a container that is created but not started.

    aiodocker's ``attach()`` first inspects the container to learn whether it has a
    TTY; ours never do, and that call costs time when many containers start at once.
    """
    from aiodocker.stream import Stream
    from yarl import URL

    query = {"stdin": int(stdin), "stdout": 1, "stderr": 1, "stream": 1, "logs": 0}

    async def setup() -> tuple[URL, None, bool]:
        return URL(f"containers/{container.id}/attach").with_query(query), None, False

    return Stream(container.docker, setup, None)


@asynccontextmanager
async def _opened(stream: Any, what: str) -> AsyncIterator[Any]:
    """A stream whose opening (an HTTP upgrade) is bounded like any call; reading it is not.

    Without the bound, an engine that stops answering between create and attach left the
    step, and with it the run, waiting forever.
    """
    try:
        await call(stream.__aenter__(), what)
    except BaseException:
        with anyio.CancelScope(shield=True), contextlib.suppress(Exception):
            await stream.close()
        raise
    try:
        yield stream
    finally:
        await stream.close()


class _MissingProgram:
    """Notices Podman's init (catatonit) saying the entrypoint does not exist; it exits 1."""

    MESSAGE = b"failed to exec pid1: No such file or directory"

    def __init__(self) -> None:
        self.missing_program = False
        self._seen = 0

    def see(self, data: bytes) -> None:
        if self._seen < 4096:
            self._seen += len(data)
            self.missing_program = self.missing_program or self.MESSAGE in data


def _ms(since: float) -> float:
    return round((time.monotonic() - since) * 1000, 1)


def default_max_starting() -> float:
    return settings.current().max_starting


class _Admission:
    """A slot among the containers being created and started; left once running."""

    def __init__(self, limiter: anyio.CapacityLimiter) -> None:
        self.limiter = limiter
        self.held = False

    async def enter(self) -> None:
        await self.limiter.acquire_on_behalf_of(self)
        self.held = True

    def leave(self) -> None:
        if self.held:
            self.held = False
            self.limiter.release_on_behalf_of(self)


async def _attached(
    container: DockerContainer,
    command: Command,
    on_output: OnOutput,
    stop: Stop,
    admission: _Admission,
    trace: Trace = no_trace,
) -> Exit:
    watch = _MissingProgram()
    stream = _attach(container, stdin=command.stdin is not None)
    try:
        async with _opened(stream, "attaching to a step container"):
            try:
                began = time.monotonic()
                await call(container.start(), "starting a step container")
                trace("container_start_ms", _ms(began))
            except ContainerEngineError:
                raise
            except Exception as exc:
                return _start_failure(message_of(exc))
            finally:
                admission.leave()
            async with anyio.create_task_group() as tg:
                if command.stdin is not None:
                    tg.start_soon(_feed, stream, command.stdin)
                while (message := await stream.read_out()) is not None:
                    if message.stream == 2:
                        watch.see(message.data)
                    on_output("stdout" if message.stream == 1 else "stderr", message.data)
        waited = await call(container.wait(), "waiting for a step container")
        if waited.get("StatusCode") == 0 and not watch.missing_program:
            return Exit(0)  # nothing more to learn: skip the inspect (one call less per container)
        state = (await call(container.show(), "inspecting a step container"))["State"]
    except BaseException:
        with anyio.CancelScope(shield=True), anyio.move_on_after(stop.grace + CLEANUP_TIMEOUT):
            await _kill_container(container, stop)
        raise
    if state.get("OOMKilled"):
        return Exit(
            int(state.get("ExitCode") or 137), "the container ran out of memory (OOMKilled)", "oom"
        )
    if watch.missing_program and state.get("ExitCode") == 1:
        return Exit(127, "the program was not found in the container", "binary_missing")
    return Exit(int(state.get("ExitCode", 1)), state.get("Error") or None)


_NOT_FOUND = re.compile(
    r"executable file not found|no such file or directory|not found in \$PATH", re.I
)


def _start_failure(message: str) -> Exit:
    """A container that could not start: a missing program is 127, as a shell would say."""
    if _NOT_FOUND.search(message):
        return Exit(127, f"the program was not found in the container: {message}", "binary_missing")
    return Exit(1, f"cannot start the container: {message}", "infra_engine")


async def _kill_container(container: DockerContainer, stop: Stop) -> None:
    """Stop signal, then SIGKILL after the grace period (or at once when ``stop.now``)."""
    try:
        if not stop.now.is_set():
            await container.kill(signal=signals.Signals(stop.signal).name)
            with anyio.move_on_after(stop.grace):
                async with anyio.create_task_group() as tg:

                    async def exited() -> None:
                        await container.wait()
                        tg.cancel_scope.cancel()

                    async def forced() -> None:
                        await stop.now.wait()
                        tg.cancel_scope.cancel()

                    tg.start_soon(exited)
                    tg.start_soon(forced)
        await container.kill(signal="SIGKILL")
    except Exception as exc:
        if status_of(exc) not in (404, 409):
            return


async def _remove(container: DockerContainer) -> bool:
    """Remove, shielded and bounded; False when the engine could not be told (try again later)."""
    with anyio.CancelScope(shield=True), anyio.move_on_after(CLEANUP_TIMEOUT):
        try:
            await container.delete(force=True, v=True)
        except Exception as exc:
            return status_of(exc) == 404  # gone already: fine; anything else: not removed
        return True
    return False


async def _ready(container: DockerContainer, spec: ContainerSpec, notify: Notify) -> None:
    """Running (or healthy), then the log pattern, within READY_TIMEOUT."""
    try:
        with anyio.fail_after(READY_TIMEOUT):
            warned = False
            while True:
                info = await container.show()
                state = info["State"]
                probe = (info.get("Config") or {}).get("Healthcheck") or {}
                has_healthcheck = bool(probe.get("Test")) and probe.get("Test") != ["NONE"]
                if not state.get("Running"):
                    if state.get("Status") in ("exited", "dead"):
                        logs = await container.log(stdout=True, stderr=True, tail=20)
                        tail = "".join(logs).strip().splitlines()[-1:] or [""]
                        raise SetupError(
                            f"the shared container exited with {state.get('ExitCode')} before it was ready"
                            + (f": {tail[0]}" if tail[0] else "")
                        )
                elif spec.wait_for != "healthy":
                    break
                elif not has_healthcheck or not state.get("Health"):
                    if not warned:
                        notify(
                            "wait_for: healthy, but the image has no healthcheck; waiting for running"
                        )
                    break
                elif state["Health"].get("Status") == "healthy":
                    break
                elif state["Health"].get("Status") == "unhealthy":
                    raise SetupError("the shared container is unhealthy")
                await anyio.sleep(0.2)
            if spec.log_pattern:
                pattern = compile_pattern(spec.log_pattern)
                async for line in container.log(stdout=True, stderr=True, follow=True):
                    if pattern.search(line.rstrip("\r\n")):  # a line, as Dagu matches it
                        break
    except TimeoutError:
        raise SetupError(f"the shared container was not ready within {READY_TIMEOUT:g}s") from None


# --- execs -----------------------------------------------------------------------------------


async def exec_in(
    container: DockerContainer,
    command: Command,
    spec: ContainerSpec,
    on_output: OnOutput,
    stop: Stop,
) -> Exit:
    """Run ``command`` as an exec in ``container``; a cancel kills its process group."""
    if command.argv:
        argv = list(command.argv)
    elif command.script is not None:
        argv = _shell_argv(command, spec)
    else:
        return Exit(1, "nothing to run in the container: give the step a run: command")
    env = (
        {**dict(spec.env), **_private_env(command)}
        if spec.target is not None
        else _private_env(command)
    )
    execution = await call(
        container.exec(
            ["sh", "-c", _WRAPPER, "dagbox", *argv],
            stdout=True,
            stderr=True,
            stdin=command.stdin is not None,
            user=spec.user or "",
            environment=env,
            workdir=spec.working_dir,
        ),
        "creating an exec",
    )
    pid: list[int] = []
    try:
        stream = execution.start(detach=False)
        async with _opened(stream, "starting an exec"), anyio.create_task_group() as tg:
            if command.stdin is not None:
                tg.start_soon(_feed, stream, command.stdin)
            pending: bytes | None = b""
            while (message := await stream.read_out()) is not None:
                data = message.data
                if message.stream == 2 and pending is not None:
                    pending += data
                    if b"\n" not in pending and len(pending) < 64:
                        continue
                    data, pending = _strip_marker(pending, pid), None
                    if not data:
                        continue
                on_output("stdout" if message.stream == 1 else "stderr", data)
            if pending:
                on_output("stderr", pending)
        code = await _exit_code(execution)
    except BaseException:
        if pid:
            with anyio.CancelScope(shield=True), anyio.move_on_after(stop.grace + CLEANUP_TIMEOUT):
                await _kill_exec(container, execution, pid[0], stop)
        raise
    return Exit(code)


async def _exit_code(execution: Any) -> int:
    """An exec's exit code, once the engine no longer says it runs (its output can end a
    moment before)."""
    info = await call(execution.inspect(), "inspecting an exec")
    with anyio.move_on_after(10):
        while info.get("Running"):
            await anyio.sleep(0.02)
            info = await call(execution.inspect(), "inspecting an exec")
    return int(info.get("ExitCode") or 0)


def _strip_marker(data: bytes, pid: list[int]) -> bytes:
    if data.startswith(_MARK):
        line, _, rest = data.partition(b"\n")
        text = line[len(_MARK) :].decode(errors="replace")
        if text.isdigit():
            pid.append(int(text))
        return rest
    return data


async def _kill_exec(container: DockerContainer, execution: Any, pid: int, stop: Stop) -> None:
    """Signal the exec's process group from a second exec; SIGKILL after the grace period."""

    async def signal_group(name: str) -> None:
        try:
            killer = await container.exec(
                ["sh", "-c", f"kill -{name} -- -{pid} 2>/dev/null || kill -{name} {pid}"],
                stdout=False,
                stderr=False,
            )
            await killer.start(detach=True)
        except Exception:
            pass

    async def running() -> bool:
        try:
            return bool((await execution.inspect()).get("Running"))
        except Exception:
            return False

    if not stop.now.is_set():
        await signal_group(signals.Signals(stop.signal).name.removeprefix("SIG"))
        with anyio.move_on_after(stop.grace):
            while await running() and not stop.now.is_set():
                await anyio.sleep(0.05)
    await signal_group("KILL")
    with anyio.move_on_after(5):
        while await running():
            await anyio.sleep(0.05)


async def _feed(stream: Any, data: bytes) -> None:
    """Write stdin, then half-close it so the process sees EOF and can still answer (docs/format.md, D5)."""
    try:
        await stream.write_in(data)
        half_close(stream)
    except (RuntimeError, ConnectionError, AttributeError):
        pass  # the process ended without reading all of its stdin


# --- small translations ------------------------------------------------------------------------


def _private_env(command: Command) -> dict[str, str]:
    env = dict(command.env)
    if command.private and command.script is not None:
        env["DAGBOX_SCRIPT"] = command.script
    return env


def _env_list(env: Mapping[str, str]) -> list[str]:
    return [f"{k}={v}" for k, v in env.items()]


def _ports(ports: tuple[str, ...]) -> tuple[dict[str, Any], dict[str, Any]]:
    exposed: dict[str, Any] = {}
    bindings: dict[str, list[dict[str, str]]] = {}
    for text in ports:
        spec, _, proto = text.partition("/")
        parts = spec.rsplit(":", 2)
        port = parts[-1]
        host_port = parts[-2] if len(parts) >= 2 else ""
        host_ip = parts[0].strip("[]") if len(parts) == 3 else ""
        key = f"{port}/{proto or 'tcp'}"
        exposed[key] = {}
        bindings.setdefault(key, []).append({"HostIp": host_ip, "HostPort": host_port})
    return exposed, bindings


_UNITS = {
    "ns": 1,
    "us": 10**3,
    "µs": 10**3,
    "ms": 10**6,
    "s": 10**9,
    "m": 60 * 10**9,
    "h": 3600 * 10**9,
}


def go_duration_ns(text: str) -> int:
    total = 0.0
    for number, unit in re.findall(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)", text):
        total += float(number) * _UNITS[unit]
    return int(total)


def _healthcheck(health: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"Test": list(health.get("test", ()))}
    for key, api in (
        ("interval", "Interval"),
        ("timeout", "Timeout"),
        ("start_period", "StartPeriod"),
    ):
        if health.get(key):
            out[api] = go_duration_ns(str(health[key]))
    if health.get("retries") is not None:
        out["Retries"] = int(health["retries"])
    return out
