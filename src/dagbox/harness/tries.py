"""One harness attempt: the primary provider, then each fallback, over a runtime.

The chain stops at the first try that exits 0. A timeout or a cancel stops it
too (the caller's cancel scope covers the whole attempt). Between tries, the
step's stderr says which provider failed and which comes next, as Dagu does.
An observer hears about each try as it starts and ends; the engine uses that
for the attempt's journal and to give each try its own log files.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

import anyio

from dagbox.harness.argv import Invocation, render
from dagbox.harness.catalog import Provider
from dagbox.harness.reading import TryOutput
from dagbox.runtimes import Command, Exit, OnOutput, Runtime, Stop, Trace, no_trace


class TryObserver(Protocol):
    def started(self, index: int, provider: str, invocation: Invocation | None) -> Trace:
        """A try begins (``invocation`` is None when the provider does not exist)."""
        ...

    def finished(self, index: int, result: Exit) -> None:
        """A try ended on its own (not by a timeout or cancel).

        What a try cost (``usage: true``) reaches the observer through the try's
        Trace as ``("usage", Usage)``, also when a timeout cuts the try short.
        """
        ...


class _Silent:
    def started(self, index: int, provider: str, invocation: Invocation | None) -> Trace:
        return no_trace

    def finished(self, index: int, result: Exit) -> None:
        pass


def provider_names(chain: Sequence[Mapping[str, Any]], resolve: Callable[[str], str]) -> list[str]:
    """The providers an attempt will try, in order, templates resolved."""
    return [resolve(str(t.get("provider", ""))) for t in chain]


async def run_tries(
    chain: Sequence[Mapping[str, Any]],
    providers: Mapping[str, Provider],
    runtime: Runtime,
    base: Command,
    on_output: OnOutput,
    stop: Stop,
    resolve: Callable[[str], str],
    observer: TryObserver | None = None,
    guard: Callable[[tuple[str, ...]], str | None] | None = None,
    redact: Callable[[str], str] = str,
) -> Exit:
    """Run the tries of ``chain`` (each a complete ``with:``, see argv.tries); the exit of
    the last one run.

    ``resolve`` expands ``${...}`` in string values; ``base`` carries env, cwd and name.
    ``guard`` may refuse an argv (a secret in it) with a reason: that try fails unrun.
    ``redact`` masks secrets in text the try's output reader makes up (tool-call lines
    that it shortens: the whole text must be masked before it is cut).
    """
    observer = observer or _Silent()
    names = provider_names(chain, resolve)
    result = Exit(1, "no provider to run")
    for index, (opts, name) in enumerate(zip(chain, names, strict=True), 1):
        provider = providers.get(name)
        if provider is None:
            what = "unresolved provider template" if "${" in name else "unknown provider"
            observer.started(index, name, None)
            result = Exit(1, f'{what} "{name}"', "binary_missing")
        else:
            values = {k: resolve(v) if isinstance(v, str) else v for k, v in opts.items()}
            invocation = render(provider, values)
            trace = observer.started(index, provider.name, invocation)
            refused = guard(invocation.argv) if guard is not None else None
            if refused:
                result = Exit(1, refused, "refused")
            else:
                scope = anyio.CancelScope()  # a trap line cancels it
                output = TryOutput(provider, values, on_output, scope.cancel, redact)
                result = await _one_try(runtime, base, invocation, output, scope, stop, trace)
            if result.code == 127 and result.error is not None and base.container is None:
                message = f'harness: "{provider.binary}" CLI not found in PATH; install it first'
                result = Exit(1, message, "binary_missing")
        observer.finished(index, result)
        if result.code == 0:
            return result
        if index < len(chain):
            detail = f": {result.error}" if result.error else f" (exit {result.code})"
            on_output(
                "stderr",
                f"harness: attempt {index}/{len(chain)} with {name} failed{detail}; "
                f"trying fallback {index + 1}/{len(chain)} with {names[index]}\n".encode(),
            )
    return result


async def _one_try(
    runtime: Runtime,
    base: Command,
    invocation: Invocation,
    output: TryOutput,
    scope: anyio.CancelScope,
    stop: Stop,
    trace: Trace,
) -> Exit:
    """One provider's process: its output read as it comes (a trap line ends it at once)."""
    command = dataclasses.replace(
        base,
        argv=invocation.argv,
        script=None,
        stdin=invocation.stdin.encode() if invocation.stdin is not None else None,
    )
    result = Exit(1)
    try:
        with scope:
            result = await runtime.run(command, output.feed, stop, trace)
    finally:  # a timeout too: what was said, and what it cost, is not lost
        output.close()
        if output.usage is not None:
            trace("usage", output.usage)
    if output.sprung is not None:
        return Exit(1, output.sprung, "auth")
    if result.code != 0 and result.error is None and output.errors:
        return dataclasses.replace(result, error="; ".join(output.errors[-3:]))
    return result
