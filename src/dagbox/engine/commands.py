"""What a step's attempt runs, and where: a runtime :class:`Command`, or why none can run.

A command is refused before it starts, with a reason the step fails with, when no
program could be given it: a secret on its command line (every user of the machine
can read those), a NUL byte, or more than Linux lets exec carry.
"""

from __future__ import annotations

import dataclasses
import shlex
from pathlib import Path

from dagbox.engine.containers import ContainerValueError, container_spec, with_run_folders
from dagbox.engine.context import Context, StepError, exported
from dagbox.engine.env import cwd
from dagbox.engine.exec_limits import argv_problem, env_problem, total_problem
from dagbox.engine.state import StepRun
from dagbox.runtimes import Command, ContainerSpec
from dagbox.shells import DIRECT, default_shell, in_turn, is_unix
from dagbox.values import ValueProblem


class Commands:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        #: The shared container's resolved spec, once it runs (steps in it use it).
        self.root_spec: ContainerSpec | None = None
        self._output_of = {
            s.output.lstrip("$"): s.name for s in reversed(ctx.plan.steps) if s.output
        }

    def build(self, run: StepRun, env: dict[str, str]) -> Command:
        """What ``run`` runs now, with ``env``; StepError when no program could be given it."""
        step = run.step
        command = self._placed(run, env, self._host_command(run, env))
        script = command.script
        if script is not None and self.ctx.secrets.name_in(script):
            # It holds a secret (one a container's env brought in, too): off the command line.
            command = dataclasses.replace(command, private=True)
        words = command.argv
        written = step.command if command.argv and isinstance(step.command, tuple) else ()
        if not words and script is None and command.container is not None:
            words = command.container.command  # the image's own program, with these words
            written = step.container.command if step.container is not None else ()
        if script is not None and "\0" in script:
            raise StepError("the command holds a NUL byte, which no program can receive")
        if script is not None and command.container is not None and not command.private:
            words = (*words, script)  # sh -c SCRIPT: an argument like any other
        problem = (
            env_problem(command.env, self._origin)
            or argv_problem(words)
            or total_problem(words, command.env)
            or self.secret_on_argv(words, written)
        )
        if problem:
            raise StepError(problem)
        return command

    def unsafe_argv(self, argv: tuple[str, ...]) -> str | None:
        """Why an agent CLI's ``argv`` may not run: a NUL byte, a word too large for exec,
        or a secret anywhere in it (its flags and prompt are all rendered from values)."""
        return argv_problem(argv, f"the command line of {argv[0]}") or self.secret_on_argv(argv)

    def secret_on_argv(
        self, words: tuple[str, ...], written: tuple[str, ...] | None = None
    ) -> str | None:
        """A secret on a command line. Given the words as ``written`` in the DAG file, only
        those a ``${...}`` reference brought in are looked at: a word written as it is
        (``postgres``, which is also the container's password) is no leak."""
        for index, word in enumerate(words):
            if written is not None and (index >= len(written) or "$" not in written[index]):
                continue
            name = self.ctx.secrets.name_in(word)
            if name is not None:
                return (
                    f"the value of {name} would appear on the command line of {words[0]}, "
                    "which every user of this machine can read; let the program read it "
                    "from its environment instead"
                )
        return None

    def _origin(self, name: str) -> str:
        """Where a variable of a step's environment comes from, for an error about it."""
        step = self._output_of.get(name)
        return f" (the output of step {step})" if step is not None else ""

    def _placed(self, run: StepRun, env: dict[str, str], command: Command) -> Command:
        """``command`` moved into the step's container, if it has one."""
        step = run.step
        if step.runtime == "host":
            return command
        spec = self.root_spec if step.runtime == "root" else None
        if spec is None and step.container is not None:
            try:
                spec = container_spec(
                    step.container,
                    self.ctx.scope(env),
                    Path(cwd(self.ctx, run, env)),
                    self.ctx.host_env,
                )
            except (ContainerValueError, ValueProblem) as exc:
                raise StepError(str(exc)) from None
            spec = with_run_folders(spec, self.ctx.outputs_dir, self.ctx.artifacts_dir)
            self.ctx.secrets.learn(dict(spec.env))
        return dataclasses.replace(
            command,
            cwd=None,
            container=spec,
            entrypoint=step.kind == "harness",
        )

    def _host_command(self, run: StepRun, env: dict[str, str]) -> Command:
        step = run.step
        # Names with a dot (${steps.ID.outputs.NAME}) are for references, not processes.
        base = Command(env=exported(env), cwd=env.get("PWD"), name=run.name)
        if step.kind in {"harness", "image"}:
            return base  # a harness fills in argv per try; an image runs its own command
        if step.kind == "argv" and isinstance(step.command, tuple):
            scope = self.ctx.scope(env)
            return dataclasses.replace(base, argv=tuple(scope.value(a) for a in step.command))
        if step.kind == "commands" and isinstance(step.command, tuple):
            scope = self.ctx.scope(env)
            if step.shell[:1] == (DIRECT,):  # each one's words, quoted for the shell that runs them
                split = [tuple(shlex.split(c)) for c in step.command]
                resolved = [tuple(scope.value(w) for w in words) for words in split]
                for words, as_written in zip(resolved, split, strict=True):
                    problem = self.secret_on_argv(words, as_written)
                    if problem:  # each would be a process's command line
                        raise StepError(problem)
                lines = [shlex.join(words) for words in resolved]
                return dataclasses.replace(base, script=in_turn(lines))
            lines = [scope.shell(c) for c in step.command]
            shell = step.shell
            if not shell and step.runtime == "host" and not is_unix(default_shell(env)):
                shell = ("sh", "-e")  # $SHELL is fish, say: the list is a POSIX script
            return dataclasses.replace(base, script=in_turn(lines), shell=shell)
        text = self.ctx.scope(env).shell(str(step.command))
        one_line = "\n" not in str(step.command)
        if step.kind == "command" and one_line and ("\n" in text or "\r" in text):
            # A one-line command that a value made several: the shell would read a script.
            raise StepError(
                "the resolved command text contains a line break (a value put it there)"
            )
        if step.interpreter is not None:  # command: python3 + script: the interpreter form
            return dataclasses.replace(base, script=text, interpreter=step.interpreter)
        return dataclasses.replace(base, script=text, shell=step.shell)
