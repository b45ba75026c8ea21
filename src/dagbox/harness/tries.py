"""One harness attempt: the primary provider, then each fallback, over a runtime.

The chain stops at the first try that exits 0. A timeout or a cancel stops it
too (the caller's cancel scope covers the whole attempt). Between tries, the
step's stderr says which provider failed and which comes next, as Dagu does.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

from dagbox.harness.argv import render, tries
from dagbox.harness.catalog import Provider
from dagbox.runtimes import Command, Exit, OnOutput, Runtime, Stop


async def run_tries(
    options: Mapping[str, Any],
    providers: Mapping[str, Provider],
    runtime: Runtime,
    base: Command,
    on_output: OnOutput,
    stop: Stop,
    resolve: Callable[[str], str],
    on_try: Callable[[int, str], None] = lambda index, provider: None,
) -> Exit:
    """Run the tries of ``options`` (a merged ``with:``); the exit of the last one run.

    ``resolve`` expands ``${...}`` in string values; ``base`` carries env, cwd and name.
    """
    chain = tries(options)
    names = [resolve(str(t.get("provider", ""))) for t in chain]
    result = Exit(1, "no provider to run")
    for index, (opts, name) in enumerate(zip(chain, names, strict=True), 1):
        provider = providers.get(name)
        if provider is None:
            what = "unresolved provider template" if "${" in name else "unknown provider"
            result = Exit(1, f'{what} "{name}"')
        else:
            values = {k: resolve(v) if isinstance(v, str) else v for k, v in opts.items()}
            invocation = render(provider, values)
            on_try(index, provider.name)
            command = dataclasses.replace(
                base,
                argv=invocation.argv,
                script=None,
                stdin=invocation.stdin.encode() if invocation.stdin is not None else None,
            )
            result = await runtime.run(command, on_output, stop)
            if result.code == 127 and result.error is not None and base.container is None:
                result = Exit(
                    1, f'harness: "{provider.binary}" CLI not found in PATH; install it first'
                )
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
