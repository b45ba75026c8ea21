"""Builtin actions dagbox runs itself, in this process: ``file.write``, ``file.read`` and
``jq.filter``, as Dagu 2.x runs them (docs/format.md, "Builtin actions").

What each prints is what Dagu prints, since ``output:`` captures it: ``file.write`` one
line of JSON about the write, ``file.read`` the file's bytes, ``jq.filter`` each result
(indented JSON, or raw text with ``raw: true``). A string in ``with:`` has its
references resolved when the step runs; a relative path is the step's working directory's.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio

from dagbox import gotext
from dagbox.engine.context import Context, StepError, make_working_dir
from dagbox.engine.env import cwd
from dagbox.engine.state import StepRun
from dagbox.runtimes import Exit, Stream
from dagbox.values import Scope

Out = Callable[[Stream, bytes], None]


class ActionError(Exception):
    """The action failed: its message is the step's error."""


async def run_builtin(ctx: Context, run: StepRun, env: dict[str, str], out: Out) -> Exit:
    step = run.step
    options = _resolved(step.options, ctx.scope(env))
    where = cwd(ctx, run, env)
    action = {"file.write": _write, "file.read": _read, "jq.filter": _jq}[step.action or ""]
    said: list[tuple[Stream, bytes]] = []  # emitted here, on the loop, not from the thread
    try:
        make_working_dir(where)
        # In a thread: a large file, or a slow jq program, does not hold up other steps.
        await anyio.to_thread.run_sync(
            action, options, Path(where), lambda s, d: said.append((s, d)), abandon_on_cancel=True
        )
    except (ActionError, StepError) as exc:
        failed: Exit | None = Exit(1, str(exc))
    except (OSError, ValueError, TypeError) as exc:  # what the data made of it (a YAML date)
        failed = Exit(1, f"{run.step.action}: {exc}")
    else:
        failed = None
    for stream, data in said:
        out(stream, data)
    return failed or Exit(0)


def _resolved(value: Any, scope: Scope) -> Any:
    """A ``with:`` value with its references resolved, and ``\\$`` a plain ``$`` (as Dagu
    reads an action's values: no shell will read them)."""
    if isinstance(value, str):
        return scope.value(value).replace("\\$", "$")
    if isinstance(value, dict):
        return {k: _resolved(v, scope) for k, v in value.items()}
    if isinstance(value, list):
        return [_resolved(v, scope) for v in value]
    return value


def _path(raw: str, base: Path) -> Path:
    text = raw.strip()
    if not text:
        raise ActionError("file: configuration error: path must not be empty")
    path = Path(text).expanduser()  # references were resolved; $X of dagbox's env is not read
    return Path(os.path.normpath(path if path.is_absolute() else base / path))


def _write(options: dict[str, Any], base: Path, out: Out) -> None:
    """``file.write``: ``content`` to ``path``, byte for byte; an existing file is an error
    unless ``overwrite`` (then replaced atomically, with exactly ``mode``)."""
    path = _path(options["path"], base)
    data = str(options.get("content", "")).encode()
    mode = int(str(options.get("mode") or "0600").lower().removeprefix("0o"), 8)
    report: dict[str, Any] = {"operation": "write", "path": str(path)}
    if data:
        report["bytes"] = len(data)
    if options.get("dry_run"):
        out("stdout", _line({**report, "dryRun": True, "created": False}))
        return
    try:
        if options.get("create_dirs"):
            path.parent.mkdir(mode=0o750, parents=True, exist_ok=True)
        if not options.get("overwrite"):
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
        elif options.get("atomic", True):
            _replace(path, data, mode)
        else:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
    except OSError as exc:
        raise ActionError(f"file write {path}: {exc.strerror or exc}") from None
    out("stdout", _line({**report, "created": True}))


def _replace(path: Path, data: bytes, mode: int) -> None:
    fd, temp = tempfile.mkstemp(prefix=f"{path.name}.tmp.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            os.fchmod(handle.fileno(), mode)
            handle.flush()
            os.fsync(handle.fileno())
        Path(temp).replace(path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


def _read(options: dict[str, Any], base: Path, out: Out) -> None:
    """``file.read``: the file's bytes as they are (``format: raw``), or one line of JSON
    with its content (``format: json``)."""
    path = _path(options["path"], base)
    try:
        if path.is_dir():
            raise ActionError(f"file read {path}: cannot read a directory")
        size = path.stat().st_size
        limit = int(options.get("max_bytes") or 0)
        if limit and size > limit:
            raise ActionError(f"file read {path}: file size {size} exceeds max_bytes {limit}")
        data = path.read_bytes()
    except OSError as exc:
        raise ActionError(f"file read {path}: {exc.strerror or exc}") from None
    if options.get("format", "raw") == "raw":
        out("stdout", data)
        return
    report = {
        "operation": "read",
        "path": str(path),
        "type": "file",
        "size": size,
        "bytes": len(data),
        "content": data.decode(errors="replace"),
    }
    out("stdout", _line(report))


def _line(report: dict[str, Any]) -> bytes:
    return (gotext.json_text(report, sort=False) + "\n").encode()


def _jq(options: dict[str, Any], base: Path, out: Out) -> None:
    """``jq.filter``: ``filter`` over ``data`` (inline: a JSON text, or any YAML value) or
    the JSON file ``input``; each result printed as Dagu prints it. A runtime error of the
    program goes to stderr and the step goes on, as in Dagu; one it cannot parse fails."""
    import jq  # type: ignore[import-not-found]

    document = _jq_input(options, base)  # a relative input: the step's working directory
    try:
        program = jq.compile(str(options["filter"]).strip())
    except ValueError as exc:
        raise ActionError(f"jq: {str(exc).splitlines()[0]}") from None
    raw = bool(options.get("raw"))
    results = program.input_value(document)
    try:
        for value in results:
            out(
                "stdout",
                (_raw(value) if raw else gotext.json_text(value, indent=4)).encode() + b"\n",
            )
    except ValueError as exc:
        out("stderr", f"failed to run jq query: {exc}".encode())


def _jq_input(options: dict[str, Any], base: Path) -> Any:
    data, source = options.get("data"), options.get("input")
    if isinstance(data, str) and data.strip().startswith("file://"):
        source, data = data.strip().removeprefix("file://"), None
    if source is not None:
        path = _path(source, base)
        try:
            text = path.read_text()
        except OSError as exc:
            raise ActionError(f'jq: reading input file "{source}": {exc.strerror or exc}') from None
        return _json(text, f'jq: parsing JSON from input file "{source}": ')
    if data is None:
        raise ActionError("jq: no input provided (set with.data, or with.input to a file path)")
    if isinstance(data, str):
        return _json(data.strip(), "jq: ")
    return json.loads(json.dumps(data))  # as Dagu: the YAML value as JSON


def _json(text: str, prefix: str) -> Any:
    try:
        return json.loads(text)
    except ValueError as exc:
        raise ActionError(f"{prefix}{exc}") from None


def _raw(value: Any) -> str:
    """``raw: true``: a string as it is, null as an empty line, a number never with an
    exponent, anything else as compact JSON."""
    if isinstance(value, str):
        return value
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):  # a float64 in Dagu, whatever libjq made of it
        return gotext.plain_float(float(value))
    return gotext.json_text(value)
