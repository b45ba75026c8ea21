"""Namespaced references that will be left as written, said at ``validate`` (Dagu's notices).

A reference such as ``${consts.missing}`` or ``${steps.build.outputs.image}`` that cannot
have a value where it is written stays as written (docs/format.md, "Values"). Dagu reports
these as notices with a reason; dagbox does the same, located at the field:

- defects, which no run can mend, are warnings: an unknown ``${context.X}`` field, an
  unknown const, a step output that can never be had there (unknown_step_id,
  self_reference, unknown_output_name, missing_dependency, namespace_unavailable);
- references only a run can give a value (``${params.X}`` with no default, ``${params}``
  without named params, ``${env.X}`` the file does not set) are notices, shown by
  ``dagbox validate --show-unresolved``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import Any

from dagbox.plan import RUN_VARIABLES
from dagbox.spec.issues import Sink
from dagbox.spec.model import Dag, Step
from dagbox.values import single_quoted

_CONTEXT = re.compile(r"(?<!\\)\$\{context\.([A-Za-z0-9_.]+)\}")
_STEP_OUTPUT = re.compile(
    r"(?<!\\)\$\{steps\.([A-Za-z][A-Za-z0-9_]*)\.outputs\.([A-Za-z][A-Za-z0-9_]*)\}"
)
_NAMED = re.compile(r"(?<!\\)\$\{(consts|params|env)\.([A-Za-z_][A-Za-z0-9_]*)\}")
_PAYLOAD = re.compile(r"(?<!\\)\$\{params\}")
_PLAIN = re.compile(r"(?<!\\)\$(?:\{([A-Za-z_][A-Za-z0-9_]*)\}|([A-Za-z_][A-Za-z0-9_]*))")
#: The ``${context.*}`` fields Dagu 2.x has (docs/format.md, "Values").
CONTEXT_FIELDS = frozenset(
    {
        "dag.name", "run.id", "run.status", "run.started_at", "run.scheduled_at",
        "run.root_name", "run.root_id", "attempt.id", "attempt.started_at", "step.id",
        "step.name", "trigger.type", "paths.log_file", "paths.work_dir",
        "paths.step_stdout_file", "paths.step_stderr_file", "paths.step_output_file",
        "paths.artifacts_dir", "trigger.actor", "profile.name", "pushback.iteration",
    }
)  # fmt: skip

#: Run variables dagbox sets for a step after reading its env (the env cannot read them).
_SET_AFTER_STEP_ENV = frozenset(
    {"DAG_RUN_STEP_STDOUT_FILE", "DAG_RUN_STEP_STDERR_FILE", "DAGU_OUTPUT_FILE", "PWD"}
)
#: Context fields the file itself says (no notice for them).
_KNOWN_AT_LOAD = frozenset({"dag.name", "step.id", "step.name"})

Ancestors = Callable[[Step], list[Step]]


def texts(step: Step) -> Iterator[tuple[tuple[str | int, ...], str]]:
    """Each text of ``step`` a reference resolves in (not its env), with its place."""
    if isinstance(step.run, str):
        yield ("run",), step.run
    elif step.run is not None:
        for i, command in enumerate(step.run):
            yield ("run", i), command
    if step.script is not None:
        yield ("script",), step.script
    if step.with_:
        yield from _nested(("with",), step.with_)
    for key in ("working_dir", "stdout", "stderr"):
        value = getattr(step, key)
        if isinstance(value, str):
            yield (key,), value
        elif value is not None:
            yield from _nested((key,), value)
    for i, condition in enumerate(step.preconditions):
        yield ("preconditions", i), condition.condition or condition.eval or ""
        if condition.expected is not None:
            yield ("preconditions", i, "expected"), condition.expected


def _nested(at: tuple[str | int, ...], value: Any) -> Iterator[tuple[tuple[str | int, ...], str]]:
    if value is None:
        return
    if isinstance(value, str):
        yield at, value
    elif isinstance(value, dict):
        for key, item in value.items():
            if isinstance(item, str):  # most are: no generator for them
                yield (*at, str(key)), item
            else:
                yield from _nested((*at, str(key)), item)
    elif isinstance(value, list | tuple):
        for i, item in enumerate(value):
            yield from _nested((*at, i), item)


class References:
    """The notices of one DAG's steps and its env."""

    def __init__(self, dag: Dag, ancestors: Ancestors) -> None:
        self.dag = dag
        self.ancestors = ancestors
        self.consts = {name for name, _ in dag.consts}
        self.params = {p.name for p in dag.params if p.default is not None or p.eval}
        outputs = {s.output.lstrip("$") for s in dag.steps if isinstance(s.output, str)}
        self.env = {name for name, _ in dag.env} | {s.name for s in dag.secrets}
        self.env |= outputs  # a run sets them
        self.by_id = {s.id: s for s in dag.steps if s.id is not None}
        self.named_params = any(p.name.isidentifier() for p in dag.params)

    def root_env(self, sink: Sink) -> None:
        """The DAG's env (read in order) and the shared container's env."""
        self._env(None, self.dag.env, sink.at("env"), set())
        if self.dag.container is not None:
            self._env(None, self.dag.container.env, sink.at("container", "env"), set(self.env))

    def step(self, step: Step, at: Sink, handler: bool) -> None:
        known = self.env  # copied only when the step adds names (a DAG has many steps)
        if step.env:
            known = self._env(step, step.env, at.at("env"), set(known), handler)
        if step.container is not None and step.container.env:
            self._env(step, step.container.env, at.at("container", "env"), set(known), handler)
        for place, text in texts(step):
            if "${" in text:
                self._text(step, text, at.at(*place), handler, known)

    def _env(
        self,
        step: Step | None,
        entries: tuple[tuple[str, str], ...],
        at: Sink,
        known: set[str],
        handler: bool = False,
    ) -> set[str]:
        """Env entries in order, each said at its entry (``env[i]``): each may use the
        ones before it. Returns every name."""
        for i, (name, value) in enumerate(entries):
            if "$" in value:
                self._text(step, value, at.at(i), handler, known, plain=True)
            known.add(name)
        return known

    def _text(
        self,
        step: Step | None,
        text: str,
        at: Sink,
        handler: bool,
        known: set[str],
        plain: bool = False,
    ) -> None:
        for match in _CONTEXT.finditer(text):
            if match[1] not in CONTEXT_FIELDS:
                at.warn(
                    f"{match[0]} was left unchanged: context has no field {match[1]!r} "
                    "(unknown_context_field)"
                )
            elif match[1] not in _KNOWN_AT_LOAD:
                at.notice(f"{match[0]} has a value only in a run (namespace_unavailable)")
        for match in _STEP_OUTPUT.finditer(text):
            reason = (
                self.unreachable(step, match[1], match[2], handler)
                if step is not None
                else "the DAG's env is read before any step (namespace_unavailable)"
            )
            if reason is not None:
                at.warn(f"{match[0]} was left unchanged: {reason}")
        for match in _NAMED.finditer(text):
            space, name = match[1], match[2]
            if space == "consts" and name not in self.consts:
                at.warn(f"{match[0]} was left unchanged: no const {name!r} (unknown_const_name)")
            elif space == "params" and name not in self.params:
                at.notice(
                    f"{match[0]} was left unchanged unless the run is given {name} "
                    "(no default; namespace_unavailable)"
                )
            elif space == "env" and name not in known:
                self._unbound(match[0], name, at, step, plain)
        for match in _PLAIN.finditer(text) if plain else ():
            name = match[1] or match[2]
            if name in known or name in self.params:
                continue
            if not single_quoted(text, match.start(), match.end()):  # quoted: stays anyway
                self._unbound(match[0], name, at, step, plain)
        if not self.named_params and _PAYLOAD.search(text):
            at.notice("${params} was left unchanged: the DAG has no named params")

    @staticmethod
    def _unbound(reference: str, name: str, at: Sink, step: Step | None, env: bool) -> None:
        """A variable the file does not set: a run variable (which the DAG's env cannot
        read, nor a step's env the ones set after it), or one dagbox's environment may
        have."""
        if name not in RUN_VARIABLES:
            at.notice(
                f"{reference} was left unchanged unless dagbox's environment or the run has "
                f"{name} (unknown_env_binding)"
            )
        elif step is None:
            at.notice(f"{reference} was left unchanged: the DAG's env is read before {name} is set")
        elif env and name in _SET_AFTER_STEP_ENV:
            at.notice(f"{reference} was left unchanged: a step's env is read before {name} is set")
        else:
            at.notice(f"{reference} has a value only in a run (namespace_unavailable)")

    def unreachable(self, step: Step, producer: str, name: str, handler: bool) -> str | None:
        """Why ``${steps.producer.outputs.name}`` has no value in ``step``, or None."""
        if handler:
            return "handlers get no step outputs (namespace_unavailable)"
        made = self.by_id.get(producer)
        if made is None:
            return f"no step has the id {producer!r} (unknown_step_id)"
        if made is step:
            return "a step cannot read its own outputs (self_reference)"
        if name not in {n for n, _ in made.outputs or ()}:
            return f"step {producer} declares no output {name!r} (unknown_output_name)"
        if not any(made is a for a in self.ancestors(step)):
            return f"the step does not depend on {producer} (missing_dependency)"
        return None
