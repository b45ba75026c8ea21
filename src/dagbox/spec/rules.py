"""The rules a well-typed DAG must still follow (docs/format.md).

Types and shapes were checked while building the Structs (build.py, forms.py).
What is left here needs more than one value at a time: exclusive fields,
identities and references between steps, dependency cycles, harness providers.
Each check reports to a Sink at the path its Struct was loaded from, so every
problem in the file is reported in one pass.
"""

from __future__ import annotations

import difflib
import functools
import re
import shlex
from collections.abc import Mapping
from pathlib import PurePath
from typing import Any

from dagbox.harness.argv import RESERVED, asks_usage, coerce, merge_defaults
from dagbox.harness.catalog import BUILTIN
from dagbox.plan import RUN_VARIABLES
from dagbox.regex import RegexError, compile_pattern
from dagbox.secrets import is_secret_name
from dagbox.shells import DIRECT, UNIX_SHELLS, is_unix
from dagbox.signals import signal_of
from dagbox.spec import builtins
from dagbox.spec.forms import ENV_NAME, kind
from dagbox.spec.issues import Sink
from dagbox.spec.model import (
    Condition,
    Container,
    ContinueOn,
    Dag,
    HarnessDef,
    RepeatPolicy,
    RetryPolicy,
    Secret,
    Step,
)
from dagbox.spec.references import References
from dagbox.values import MAX_VALUE_BYTES, plain_names, references

STEP_ID = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
_DAG_NAME = re.compile(r"[A-Za-z0-9_.-]{1,40}")
RESERVED_IDS = frozenset({"env", "params", "args", "stdout", "stderr", "output", "outputs"})
HARNESS_ACTION = "harness.run"
_EXEC_MODE_FIELDS = {"exec", "user", "working_dir", "env", "shell"}
_GO_DURATION = re.compile(r"^(?:\d+(?:\.\d+)?(?:ns|us|µs|ms|s|m|h))+$")
_PLATFORM = re.compile(r"^[a-z0-9]+/[a-z0-9_]+(?:/[a-z0-9]+)?$")


def dag_name_problem(name: str) -> str | None:
    """Why ``name`` cannot name a DAG (Dagu's rule), or None. One rule for ``name:`` and
    for the file name it defaults to: a DAG's name is a folder under ``runs/``, where
    ``.`` and ``..`` would put its records beside or above all the others."""
    if name in (".", "..") or not _DAG_NAME.fullmatch(name):
        return (
            "a DAG name uses letters, digits, '_', '.' and '-' (at most 40), and is not '.' or '..'"
        )
    return None


def did_you_mean(word: str, choices: list[str]) -> str:
    close = difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    return f' (did you mean "{close[0]}"?)' if close else ""


class Checker:
    def __init__(self, dag: Dag, sinks: Mapping[int, Sink], flawed: set[int], sink: Sink) -> None:
        self.dag = dag
        self.sinks = sinks
        self.flawed = flawed
        self.sink = sink
        self.providers = sorted({*BUILTIN, *(n for n, d in dag.harnesses.items() if d is not None)})
        self.references = References(dag, self.ancestors)

    def at(self, obj: object, *parts: str | int) -> Sink:
        found = self.sinks.get(id(obj), self.sink)
        return found.at(*parts) if parts else found

    # --- the whole DAG ------------------------------------------------------------------

    def check(self) -> None:
        dag = self.dag
        problem = dag_name_problem(dag.name) if dag.name is not None else None
        if problem is not None:
            self.sink.error(problem, "name")
        for name, definition in dag.harnesses.items():
            if definition is not None:
                self.harness_def(name, definition)
        if dag.harness is not None:
            self.root_harness(dag.harness)
        if dag.container is not None:
            self.container(dag.container, harness=False, step_level=False)
        for secret in dag.secrets:
            self.secret(secret)
        self.carrier(dag.shell, self.sink)
        self.references.root_env(self.sink)
        if dag.retry_policy is not None:
            self.run_retry(dag.retry_policy)
        for condition in dag.preconditions:
            self.condition(condition)
        for step in dag.steps:
            self.step(step)
        for handler in self.handlers():
            self.step(handler)
            if handler.depends is not None:
                self.at(handler, "depends").error(
                    "a handler is not part of the graph: remove depends", at_key=True
                )
        self.identities()
        self.dependencies()
        self.value_sizes()
        self.shared_container_names()

    def handlers(self) -> list[Step]:
        h = self.dag.handler_on
        return [s for s in (h.init, h.success, h.failure, h.abort, h.exit) if s is not None]

    # --- steps --------------------------------------------------------------------------

    def step(self, step: Step) -> None:
        at = self.at(step)
        given = [k for k in ("run", "script", "exec") if getattr(step, k) is not None]
        if step.call is not None or step.parallel is not None or step.params is not None:
            self.call_step(step, given, at)
        elif step.action is not None:
            for key in given + (["shell"] if step.shell else []):
                at.error(f'action cannot be used together with "{key}"', key, at_key=True)
            if step.action in builtins.ACTIONS:
                builtins.check(step.action, step.with_, at)
                if step.container is not None:
                    at.error(
                        f"{step.action} runs in dagbox itself: a container does not apply",
                        "container",
                        at_key=True,
                    )
            elif step.action != HARNESS_ACTION:
                at.error(builtins.unsupported(step.action), "action")
            else:
                self.harness_step(step)
        else:
            if step.script is not None and not step.script.strip():
                at.error("the script is empty", "script")
            if isinstance(step.run, tuple) and step.script is not None:
                at.error("with script, command must be a string naming the interpreter", "command")
            elif isinstance(step.run, tuple):
                self.run_list(step, step.run, at)
            self.without_shell(step, at)
            if (
                not given
                and id(step) not in self.flawed
                and (step.container is None or step.container.exec is not None)
            ):
                at.error(
                    'the step has nothing to run: add "run", "action: harness.run", '
                    "or a container with an image"
                )
            self.command_with(step, at)
        self.argv_secrets(step, at)
        self.carrier(step.shell, at)
        if step.container is not None:
            self.container(step.container, harness=step.action == HARNESS_ACTION, step_level=True)
        if step.outputs is not None:
            self.declared_outputs(step, at)
        self.references.step(step, at, handler=any(step is h for h in self.handlers()))
        self.streams(step, at)
        if isinstance(step.output, str) and not STEP_ID.match(step.output.lstrip("$")):
            at.error(f"invalid output name {step.output!r}: use letters, digits and _", "output")
        if step.retry_policy is not None:
            self.retry(step.retry_policy)
        if step.repeat_policy is not None:
            self.repeat(step.repeat_policy)
        self.continue_on(step.continue_on)
        for condition in step.preconditions:
            self.condition(condition)
        if step.signal_on_stop is not None and signal_of(step.signal_on_stop) is None:
            at.error(
                f'invalid signal "{step.signal_on_stop}" (use a name such as SIGTERM)',
                "signal_on_stop",
            )

    def call_step(self, step: Step, given: list[str], at: Sink) -> None:
        """A sub-DAG call runs no process of its own (docs/format.md, "Sub-DAGs")."""
        if step.call is None:
            key = "parallel" if step.parallel is not None else "params"
            at.error(f"{key} is for sub-DAG calls: use it with action: dag.run", key, at_key=True)
            return
        if step.action is not None:
            at.error('action cannot be used together with "call"', "action", at_key=True)
        taken = given + [k for k in ("shell", "container") if getattr(step, k)]
        for key in taken + (["outputs"] if step.outputs is not None else []):
            at.error(f'a sub-DAG call cannot be used together with "{key}"', key, at_key=True)

    def identities(self) -> None:
        names: dict[str, Step] = {}
        ids: dict[str, Step] = {}
        for step in self.dag.steps:
            at = self.at(step)
            if step.id is not None:
                if not STEP_ID.match(step.id):
                    at.error(
                        f"invalid step id {step.id!r}: use letters, digits and _, starting with a letter",
                        "id",
                    )
                elif len(step.id.encode()) > 40:
                    at.error("a step id is at most 40 bytes", "id")
                elif step.id.lower() in RESERVED_IDS:
                    at.error(f'"{step.id}" is reserved and cannot be a step id', "id")
                if step.id in ids:
                    at.error(f'duplicate step id "{step.id}"', "id")
                ids.setdefault(step.id, step)
            if step.name is not None:
                if len(step.name.encode()) > 255:
                    at.error("a step name is at most 255 bytes", "name")
                if step.name in names:
                    at.error(f'step name must be unique: "{step.name}" is used twice', "name")
                names.setdefault(step.name, step)
        for step in self.dag.steps:
            if step.id is not None and step.id in names and names[step.id] is not step:
                self.at(step, "id").error(f'step id "{step.id}" is another step\'s name')

    @functools.cached_property
    def known_steps(self) -> dict[str, Step]:
        """Each step by its id and its name; with a duplicate (an error of its own), the first."""
        known: dict[str, Step] = {}
        for step in self.dag.steps:
            for key in (step.id, step.name):
                if key is not None:
                    known.setdefault(key, step)
        return known

    def dependencies(self) -> None:
        steps = self.dag.steps
        known = self.known_steps
        graph: dict[int, list[Step]] = {}
        for step in steps:
            edges = graph.setdefault(id(step), [])
            if step.depends is None:
                continue
            if self.dag.type == "chain":
                self.at(step, "depends").error(
                    "depends is not allowed in a DAG of type chain (each step follows the previous one)",
                    at_key=True,
                )
                continue
            for i, dep in enumerate(step.depends):
                target = known.get(dep)
                if target is None:
                    choices = [k for k in known if k != step.key]
                    self.at(step, "depends", i).error(
                        f'depends on unknown step "{dep}"{did_you_mean(dep, choices)}'
                    )
                elif target is step:
                    self.at(step, "depends", i).error("a step cannot depend on itself")
                else:
                    edges.append(target)
        self.cycles(graph)

    def cycles(self, graph: dict[int, list[Step]]) -> None:
        """Report each dependency cycle once, as ``a -> b -> a``, at its first step in the file."""
        state: dict[int, int] = {}  # 1 = on the current path, 2 = done
        reported: set[frozenset[int]] = set()
        for start in self.dag.steps:
            if state.get(id(start)):
                continue
            path: list[Step] = [start]
            iters = [iter(graph[id(start)])]
            state[id(start)] = 1
            while iters:
                nxt = next(iters[-1], None)
                if nxt is None:
                    state[id(path.pop())] = 2
                    iters.pop()
                    continue
                mark = state.get(id(nxt))
                if mark == 1:
                    cycle = path[[id(s) for s in path].index(id(nxt)) :]
                    members = frozenset(id(s) for s in cycle)
                    if members not in reported:
                        reported.add(members)
                        first = min(cycle, key=self.dag.steps.index)
                        pos = [id(s) for s in cycle].index(id(first))
                        ordered = cycle[pos:] + cycle[:pos]
                        # edges point from a step to what it depends on; print in run order
                        names = [s.key for s in reversed(ordered)]
                        names = [names[-1], *names[:-1]]
                        text = " -> ".join([*names, names[0]])
                        self.at(first, "depends").error(f"dependency cycle: {text}", at_key=True)
                elif mark is None:
                    state[id(nxt)] = 1
                    path.append(nxt)
                    iters.append(iter(graph[id(nxt)]))

    def command_with(self, step: Step, at: Sink) -> None:
        extra = [k for k in step.with_ or () if k not in ("shell", "shell_args")]
        if extra:
            at.error(
                f'"with" belongs to "action: {HARNESS_ACTION}"; a command step only takes '
                f"shell and shell_args there (got {', '.join(map(str, extra))})",
                "with",
                at_key=True,
            )

    def ancestors(self, step: Step) -> list[Step]:
        """Every step ``step`` depends on, directly or not."""
        steps = self.dag.steps
        by_key = {k: s for s in reversed(steps) for k in (s.id, s.name) if k is not None}
        found: list[Step] = []
        todo = [step]
        while todo:
            current = todo.pop()
            if self.dag.type == "chain":
                at = next((i for i, s in enumerate(steps) if s is current), 0)
                parents = [steps[at - 1]] if at > 0 else []
            else:
                parents = [by_key[d] for d in current.depends or () if d in by_key]
            for parent in parents:
                if not any(parent is f for f in found):
                    found.append(parent)
                    todo.append(parent)
        return found

    def declared_outputs(self, step: Step, at: Sink) -> None:
        if step.id is None:
            at.error("a step with outputs must define id", "outputs", at_key=True)
        container = step.container or self.dag.container
        if container is not None and container.exec is not None:
            at.error(
                "outputs cannot be read from a container dagbox does not create (exec): "
                "dagbox gives the step its DAGU_OUTPUT_FILE through a mount",
                "outputs",
                at_key=True,
            )

    def run_list(self, step: Step, commands: tuple[str, ...], at: Sink) -> None:
        shell = step.shell or self.dag.shell
        if len(commands) > 1 and shell[:1] not in ((), (DIRECT,)) and not is_unix(shell):
            at.error(
                "a run: list runs as one POSIX shell script (each command in a subshell): "
                f"give the step a POSIX shell, not {shell[0]!r}",
                "run",
            )
        elif any(c.startswith("-") for c in commands[1:]):
            at.warn(
                "this list looks like one command's words, but each item of a run: list is "
                "a command of its own (as in Dagu >= 1.29); write one command as a string, "
                "or exec: {command: PROG, args: [...]}",
                "run",
            )

    def carrier(self, shell: tuple[str, ...], at: Sink) -> None:
        """A Unix shell's ``-c`` must be an argument of its own, once, and last (Dagu 2.x):
        ``-xc`` or ``-cecho`` would take the command's text for something else."""
        if not shell or PurePath(shell[0]).name not in UNIX_SHELLS:
            return
        flags = [w for w in shell[1:] if w.startswith("-") and not w.startswith("--")]
        bundled = [w for w in flags if "c" in w and w != "-c"]
        if bundled or flags.count("-c") > 1 or ("-c" in shell and shell[-1] != "-c"):
            at.error(
                f"shell {' '.join(shell)!r}: -c must be a separate argument, given once, last "
                "(the command's text follows it)",
                "shell",
            )

    def argv_secrets(self, step: Step, at: Sink) -> None:
        """The words of ``exec:`` and of ``shell: direct`` commands reach a command line."""
        if step.exec is not None:
            self.secrets_on_argv((step.exec.command,), at.at("exec", "command"), whole=True)
            self.secrets_on_argv(step.exec.args, at.at("exec", "args"))
        elif self.direct(step) and step.run is not None:
            lines = (step.run,) if isinstance(step.run, str) else step.run
            for i, line in enumerate(lines):
                words = tuple(shlex.split(line)) if _splits(line) else ()
                place = at.at("run") if isinstance(step.run, str) else at.at("run", i)
                self.secrets_on_argv(words, place, whole=True)

    def direct(self, step: Step) -> bool:
        """``shell: direct`` (the step's, else the DAG's): programs exec'd without a shell."""
        return (step.shell or self.dag.shell)[:1] == (DIRECT,)

    def without_shell(self, step: Step, at: Sink) -> None:
        """``exec:`` and ``shell: direct`` run a program, so there must be one to run."""
        if step.exec is not None:
            for key in ("run", "script", "shell"):
                if getattr(step, key):
                    at.error(f'exec cannot be used together with "{key}"', key, at_key=True)
            return
        if not self.direct(step):
            return
        if step.script is not None or (isinstance(step.run, str) and "\n" in step.run.strip()):
            at.error(
                "shell: direct runs a program without a shell, so it cannot run a script; "
                "give the script a shell, or run one command per line of a run: list",
                "script" if step.script is not None else "run",
            )
        lines = (step.run,) if isinstance(step.run, str) else step.run or ()
        for line in lines:
            if not _splits(line):
                at.error(
                    f"shell: direct cannot split {line!r} into words (unbalanced quote)", "run"
                )

    def secrets_on_argv(self, words: tuple[str, ...], at: Sink, whole: bool = False) -> None:
        """An argv that names a secret would put its value on a command line, which every
        user of the machine can read (``ps``): refused here, as at run time. ``whole``: ``at``
        is the one word's own place, not a list's."""
        for index, word in enumerate(words):
            for name in references(word):
                if is_secret_name(name):
                    (at if whole else at.at(index)).error(
                        f"${{{name}}} would put a secret on a command line, which every user "
                        f"of this machine can read; {name} is in the step's environment "
                        "already: let the program read it there"
                    )
                    return

    def value_sizes(self) -> None:
        """Env values that would grow past MAX_VALUE_BYTES once their references are
        expanded: ``A2: ${A1}${A1}``, thirty lines on, is 32 GiB. Params count at their
        defaults; a value found too large at run time fails its step there instead."""
        dag = self.dag
        sizes = {p.name: len(p.default or "") for p in dag.params}

        def grow(env: tuple[tuple[str, str], ...], sizes: dict[str, int], at: Sink) -> None:
            for index, (name, raw) in enumerate(env):
                size = len(raw) + sum(sizes.get(ref, 0) for ref in references(raw))
                if size > MAX_VALUE_BYTES:
                    at.at(index).error(
                        f"{name} would be {size:,} bytes once its references are expanded; "
                        f"dagbox stops values at {MAX_VALUE_BYTES // 2**20} MiB"
                    )
                    size = 0  # reported once, here, not again in each line that uses it
                sizes[name] = size

        grow(dag.env, sizes, self.sink.at("env"))
        for step in [*dag.steps, *self.handlers()]:
            grow(step.env, dict(sizes), self.at(step, "env"))

    def shared_container_names(self) -> None:
        """Two step containers with one literal ``name`` that may run at the same time: the
        engine runs them one after the other (a name is one container), so say so here."""
        steps = self.dag.steps
        named: dict[str, list[Step]] = {}
        for step in steps:
            c = step.container
            if c is not None and c.image is not None and c.name and "$" not in c.name:
                named.setdefault(c.name, []).append(step)
        if not any(len(group) > 1 for group in named.values()) or self.dag.type == "chain":
            return
        known = self.known_steps
        ancestors: dict[int, set[int]] = {}

        def above(step: Step) -> set[int]:
            if id(step) not in ancestors:
                ancestors[id(step)] = set()  # a cycle is reported elsewhere
                found: set[int] = set()
                for dep in step.depends or ():
                    target = known.get(dep)
                    if target is not None:
                        found |= {id(target)} | above(target)
                ancestors[id(step)] = found
            return ancestors[id(step)]

        for name, group in named.items():
            for i, later in enumerate(group):
                for earlier in group[:i]:
                    if id(earlier) not in above(later) and id(later) not in above(earlier):
                        self.at(later.container, "name").warn(
                            f'steps "{earlier.key}" and "{later.key}" both use the container '
                            f'named "{name}" and may run at the same time; dagbox runs them '
                            "one after the other"
                        )
                        break

    # --- harness ------------------------------------------------------------------------

    def harness_def(self, name: str, d: HarnessDef) -> None:
        at = self.at(d)
        if not d.binary.strip():
            at.error("binary must not be empty", "binary")
        if d.prompt_mode == "flag" and not (d.prompt_flag or "").strip():
            at.error("prompt_flag is required when prompt_mode is flag", "prompt_flag")
        if d.prompt_mode != "flag" and d.prompt_flag is not None:
            at.error(
                f"prompt_flag is only used with prompt_mode: flag (not {d.prompt_mode})",
                "prompt_flag",
                at_key=True,
            )

    def root_harness(self, options: dict[str, Any]) -> None:
        at = Sink(self.sink.issues, ("harness",))
        for key in ("prompt", "stdin"):
            if key in options:
                at.error(
                    f"{key} belongs in each step's with:, not in the root harness defaults",
                    key,
                    at_key=True,
                )
        if "provider" not in options:
            at.error('the root harness block must name a "provider"')
        self.options(options, at, merged=True)
        self.keys_for(options.get("provider"), options, at)

    def harness_step(self, step: Step) -> None:
        at = self.at(step, "with")
        options = step.with_
        if options is None:
            self.at(step).error(f'"action: {HARNESS_ACTION}" needs a with: block with a prompt')
            return
        prompt = options.get("prompt")
        if "prompt" not in options:
            at.error("with.prompt is required")
        elif not isinstance(prompt, str):
            at.error(f"the prompt must be a string, not {kind(prompt)}", "prompt")
        elif not prompt.strip():
            at.error("the prompt is empty", "prompt")
        if "stdin" in options and not isinstance(options["stdin"], str):
            at.error(f"with.stdin must be a string, not {kind(options['stdin'])}", "stdin")
        merged = merge_defaults(options, self.dag.harness)
        if "provider" not in merged:
            at.error('with.provider is required (or set a root "harness:" block with a provider)')
        self.options(options, at, merged=False)
        provider = merged.get("provider")
        self.keys_for(provider, options, at)
        root = self.dag.harness or {}
        if provider != root.get("provider"):  # root keys were checked for the root provider
            inherited = {k: v for k, v in root.items() if k not in options and k != "fallback"}
            self.keys_for(provider, inherited, Sink(self.sink.issues, ("harness",)))

    def options(self, options: dict[str, Any], at: Sink, merged: bool) -> None:
        """Rules shared by a step's ``with:`` and the root ``harness:`` defaults."""
        for key in options:
            if not isinstance(key, str):
                at.error(f"keys must be strings, not {kind(key)}", str(key), at_key=True)
        self.provider(options.get("provider"), at.at("provider"), present="provider" in options)
        for key in ("binary", "prompt_args"):
            if key in options:
                at.error(
                    f'"{key}" cannot be set in with:; define a provider under harnesses:',
                    key,
                    at_key=True,
                )
        fallback = options.get("fallback")
        if "fallback" not in options or fallback is None:
            return
        if not isinstance(fallback, list):
            at.error(
                f"fallback must be a list of provider settings, not {kind(fallback)}", "fallback"
            )
            return
        for i, entry in enumerate(fallback):
            entry_at = at.at("fallback", i)
            if not isinstance(entry, dict):
                entry_at.error(f"a fallback entry is a mapping with a provider, not {kind(entry)}")
                continue
            if "provider" not in entry:
                entry_at.error("a fallback entry needs a provider")
            self.keys_for(entry.get("provider"), entry, entry_at)
            self.provider(
                entry.get("provider"), entry_at.at("provider"), present="provider" in entry
            )
            for key in ("fallback", "prompt", "stdin", "binary", "prompt_args"):
                if key in entry:
                    what = (
                        "fallback cannot be nested"
                        if key == "fallback"
                        else f'"{key}" cannot be set in a fallback entry'
                    )
                    entry_at.error(what, key, at_key=True)

    def keys_for(self, name: Any, options: Mapping[Any, Any], at: Sink) -> None:
        """What a built-in's real CLI makes of a step's ``with:`` keys (docs/providers.md)."""
        if not isinstance(name, str) or "${" in name or name not in self.providers:
            return  # resolved when the step runs, or a typo reported elsewhere
        custom = self.dag.harnesses.get(name) is not None
        usage = options.get("usage")
        if usage is not None and not isinstance(coerce(usage), bool) and "${" not in str(usage):
            at.error(f"usage is true or false, not {usage!r}", "usage")
        wants_usage = asks_usage(usage)
        if custom or name not in BUILTIN:
            if wants_usage:
                known = ", ".join(n for n, p in BUILTIN.items() if p.usage)
                at.error(f"usage: true works with the built-in {known}, not with {name}", "usage")
            return
        provider = BUILTIN[name]
        for key in options:
            if not isinstance(key, str) or key in RESERVED:
                continue
            if not provider.takes_options:
                at.error(
                    f"{name}'s CLI ({' '.join((provider.binary, *provider.prefix_args))}) "
                    f'accepts no options, so "{key}" cannot be passed to it',
                    key,
                    at_key=True,
                )
            elif name == "codex" and key.replace("_", "-") == "full-auto":
                at.warn(
                    "codex removed --full-auto in 0.147, and the current CLI stops at it; "
                    "use sandbox: workspace-write (codex exec never asks for approval)",
                    key,
                    at_key=True,
                )
        if wants_usage and provider.usage is None:
            known = ", ".join(n for n, p in BUILTIN.items() if p.usage)
            at.error(f"{name} does not report usage; usage: true works with {known}", "usage")

    def provider(self, value: Any, at: Sink, present: bool) -> None:
        if not present:
            return
        if not isinstance(value, str) or not value.strip():
            at.error(f"provider must be a provider name, not {kind(value)}")
        elif "${" in value:
            return  # resolved when the step runs
        elif value not in self.providers:
            at.error(f'unknown provider "{value}"{did_you_mean(value, self.providers)}')

    # --- containers, retries, conditions ------------------------------------------------

    def container_env(self, c: Container) -> None:
        """A ``${NAME}`` the DAG does not define reaches the container as text, since
        container fields never read dagbox's own environment (docs/format.md, "Values"): a credential meant
        to come from the host silently arrives as "${ANTHROPIC_API_KEY}"."""
        for index, (_, value) in enumerate(c.env):
            earlier = {key for key, _ in c.env[:index]}
            for name in plain_names(value):
                if name not in self.defined_names and name not in earlier:
                    self.at(c, "env", index).warn(
                        f"${{{name}}} is not defined in this DAG, so the container gets it as "
                        f'text; to pass dagbox\'s own {name}, add "{name}: ${{{name}}}" to the '
                        "DAG's env"
                    )

    @functools.cached_property
    def defined_names(self) -> frozenset[str]:
        """Names a container field can resolve: params, env, outputs and run variables."""
        dag = self.dag
        steps = [*dag.steps, *self.handlers()]
        return frozenset(
            [
                *(p.name for p in dag.params),
                *(k for k, _ in dag.env),
                *(k for step in steps for k, _ in step.env),
                *(step.output for step in steps if isinstance(step.output, str)),
                *RUN_VARIABLES,
            ]
        )

    def container(self, c: Container, harness: bool, step_level: bool) -> None:
        at = self.at(c)
        if c.image is not None and c.exec is not None:
            at.error("'exec' and 'image' are mutually exclusive")
        elif c.image is None and c.exec is None:
            at.error("either 'exec' or 'image' must be specified")
        for key in ("image", "exec"):
            value = getattr(c, key)
            if value is not None and not value.strip():
                at.error(f"{key} must not be empty", key)
        if c.exec is not None and c.image is None:
            extra = [f for f in c.fields_set() if f not in _EXEC_MODE_FIELDS]
            if extra:
                at.error(f"fields [{', '.join(extra)}] cannot be used with 'exec'")
        self.container_env(c)
        if c.exec is not None:
            return
        self.secrets_on_argv(c.command, at.at("command"))
        if c.startup == "command" and not c.command:
            at.error("startup: command needs a non-empty command list", "command")
        if step_level and harness and c.name is not None:
            at.error(
                "container.name is not supported for harness steps; use exec: to reuse a container",
                "name",
            )
        if c.platform is not None and not _PLATFORM.match(c.platform):
            at.error(
                f'invalid platform "{c.platform}": use os/arch[/variant], e.g. linux/amd64',
                "platform",
            )
        if c.log_pattern is not None:
            _regex(c.log_pattern, at.at("log_pattern"))
        if c.healthcheck is not None:
            hc, hat = c.healthcheck, self.at(c.healthcheck)
            first = hc.test[0] if hc.test else ""
            if first not in ("NONE", "CMD", "CMD-SHELL"):
                hat.error("healthcheck.test must start with NONE, CMD or CMD-SHELL", "test")
            elif first == "NONE" and len(hc.test) > 1:
                hat.error("healthcheck test NONE takes no command", "test")
            elif first != "NONE" and len(hc.test) < 2:
                hat.error(f"healthcheck test {first} needs a command", "test")
            for key in ("interval", "timeout", "start_period"):
                value = getattr(hc, key)
                if value is not None and not _GO_DURATION.match(value):
                    hat.error(
                        f'invalid duration "{value}": use forms such as 5s, 1m30s or 500ms', key
                    )

    def run_retry(self, r: RetryPolicy) -> None:
        """The DAG's retry_policy: whole-run retries, numbers known when the file loads."""
        at = self.at(r)
        for key in ("limit", "interval_sec"):
            if isinstance(getattr(r, key), str):
                at.error(f"retry_policy.{key} of the DAG must be a number", key)
        if r.exit_code:
            at.error("retry_policy.exit_code applies to steps, not to the whole DAG", "exit_code")
        self.retry(r)

    def streams(self, step: Step, at: Sink) -> None:
        """stdout and stderr written to one file would interleave, and an artifact needs
        the artifacts folder on: Dagu refuses both."""
        off = self.dag.artifacts is not None and self.dag.artifacts.enabled is False
        for stream in ("stdout", "stderr"):
            value = getattr(step, stream)
            if off and isinstance(value, dict) and "artifact" in value:
                at.at(stream).error("an artifact needs artifacts.enabled to be true", "artifact")
        out, err = step.stdout, step.stderr
        if isinstance(out, dict) and isinstance(err, dict):
            out, err = out.get("artifact"), err.get("artifact")
        elif isinstance(out, dict) or isinstance(err, dict):
            return
        if out and out == err:
            at.error(f"stdout and stderr cannot be the same file {out!r}", "stderr")

    def secret(self, s: Secret) -> None:
        at = self.at(s)
        if not ENV_NAME.match(s.name):
            at.error(f"secrets: invalid variable name {s.name!r}", "name")
        elif s.name.startswith("DAGU_"):
            at.error(f"secrets: {s.name} must not start with DAGU_ (Dagu's own variables)", "name")
        elif s.name in RUN_VARIABLES or s.name.startswith("DAG_"):
            at.error(f"secrets: {s.name} collides with a variable dagbox sets", "name")
        if s.provider not in ("env", "file"):
            at.error(
                f'secrets provider "{s.provider}" is not supported by dagbox (it reads "env" '
                'and "file")',
                "provider",
            )
        if not s.key.strip():
            at.error("secrets: key is required", "key")

    def repeat(self, r: RepeatPolicy) -> None:
        at = self.at(r)
        if r.repeat not in (None, True, False, "while", "until"):
            at.error(f'repeat must be true, false, "while" or "until", not {r.repeat!r}', "repeat")
        elif r.repeat in ("while", "until") and r.condition is None and not r.exit_code:
            at.error(f'repeat: "{r.repeat}" needs a condition or an exit_code', "repeat")
        if r.expected is not None and r.condition is None:
            at.error("expected needs a condition", "expected")
        self.retry(r)

    def retry(self, r: RetryPolicy | RepeatPolicy) -> None:
        at = self.at(r)
        for key in ("limit", "interval_sec"):
            value = getattr(r, key)
            if isinstance(value, str) and "${" not in value:
                at.error(f"{key} must be a number or a ${{...}} reference, not {value!r}", key)
            elif isinstance(value, int) and value < 0:
                at.error(f"{key} must be >= 0", key)
        if (
            isinstance(r.backoff, float | int)
            and not isinstance(r.backoff, bool)
            and not r.backoff > 1  # NaN too
        ):
            at.error("backoff must be greater than 1.0 (or true for 2)", "backoff")

    def continue_on(self, c: ContinueOn) -> None:
        at = self.at(c)
        for i, pattern in enumerate(c.output):
            _re_value(pattern, at.at("output", i))

    def condition(self, c: Condition) -> None:
        at = self.at(c)
        if c.eval is not None and c.condition:
            at.error('"condition" and "eval" cannot be used together', "eval", at_key=True)
        elif c.eval is not None and not c.eval.strip():
            at.error("eval is blank: give the text a shell must expand", "eval")
        elif c.eval is None and not c.condition.strip() and id(c) not in self.flawed:
            at.error("condition is required")
        if c.expected is not None and not c.expected.strip():
            at.error("expected is blank: give the value the condition must print", "expected")
        elif c.expected is not None:
            _re_value(c.expected, at.at("expected"))


def _re_value(text: str, at: Sink) -> None:
    if text.startswith("re:") and not text[3:]:
        at.error("an empty regexp (re:) matches everything: give a pattern")
    elif text.startswith("re:"):
        _regex(text[3:], at)


def _regex(pattern: str, at: Sink) -> None:
    try:
        compile_pattern(pattern)
    except RegexError as exc:
        at.error(f"invalid regular expression (Go's RE2 syntax, as in Dagu): {exc}")


def check(dag: Dag, sinks: Mapping[int, Sink], flawed: set[int], sink: Sink) -> None:
    """Report every rule ``dag`` breaks; each at the Sink its Struct was built at."""
    Checker(dag, sinks, flawed, sink).check()


__all__ = ["ENV_NAME", "RESERVED", "check"]


def _splits(line: str) -> bool:
    try:
        shlex.split(line)
    except ValueError:
        return False
    return True
