"""Every load-time error Dagu reports for a DAG file, with its path, line and message.

Each case is a small DAG with one mistake; the test asserts the exact place
(line, column, path) and a fragment of the message. Differences from Dagu that
docs/format.md lists as on purpose (D1, D5, D6, D7) are tested at the end.
"""

import pytest

from tests.conftest import load_text, one_problem, problems

CASES = [
    # unknown keys, with did-you-mean
    (
        "steps:\n  - id: a\n    run: echo\n    dependz: b\n",
        (4, 5),
        "steps[0].dependz",
        'unknown key "dependz" (did you mean "depends"?)',
    ),
    ("stepz: []\n", (1, 1), "stepz", 'unknown key "stepz" (did you mean "steps"?)'),
    (
        "steps:\n  - run: echo\n    retry_policy: {limit: 1, intervl_sec: 2}\n",
        (3, 30),
        "steps[0].retry_policy.intervl_sec",
        'did you mean "interval_sec"',
    ),
    # identities
    (
        "steps:\n  - id: a\n    run: echo\n  - id: a\n    run: echo\n",
        (4, 9),
        "steps[1].id",
        'duplicate step id "a"',
    ),
    (
        "steps:\n  - name: x\n    run: echo\n  - name: x\n    run: echo\n",
        (4, 11),
        "steps[1].name",
        "step name must be unique",
    ),
    ("steps:\n  - id: 1abc\n    run: echo\n", (2, 9), "steps[0].id", "invalid step id"),
    ("steps:\n  - id: env\n    run: echo\n", (2, 9), "steps[0].id", '"env" is reserved'),
    (
        "steps:\n  - id: " + "a" * 41 + "\n    run: echo\n",
        (2, 9),
        "steps[0].id",
        "at most 40 bytes",
    ),
    (
        "steps:\n  - name: b\n    run: echo\n  - id: b\n    name: c\n    run: echo\n",
        (4, 9),
        "steps[1].id",
        "another step's name",
    ),
    # dependencies
    (
        "steps:\n  - id: a\n    run: echo\n  - id: b\n    depends: [a, c]\n    run: echo\n",
        (5, 18),
        "steps[1].depends[1]",
        'depends on unknown step "c"',
    ),
    (
        "steps:\n  - id: a\n    run: echo\n    depends: a\n",
        (4, 14),
        "steps[0].depends[0]",
        "cannot depend on itself",
    ),
    (
        "type: chain\nsteps:\n  - id: a\n    run: echo\n  - id: b\n    depends: []\n    run: echo\n",
        (6, 5),
        "steps[1].depends",
        "not allowed in a DAG of type chain",
    ),
    (
        "steps:\n  - id: a\n    depends: c\n    run: echo\n  - id: b\n    depends: a\n    run: echo\n"
        "  - id: c\n    depends: b\n    run: echo\n",
        (3, 5),
        "steps[0].depends",
        "dependency cycle: a -> b -> c -> a",
    ),
    # container
    (
        "container:\n  image: alpine\n  pull_policy: Always\nsteps: [{run: echo}]\n",
        (3, 16),
        "container.pull_policy",
        'invalid pull_policy "Always"',
    ),
    (
        "container:\n  image: alpine\n  pull_policy: IfNotPresent\nsteps: [{run: echo}]\n",
        (3, 16),
        "container.pull_policy",
        "use always, missing, never or fallback",
    ),
    (
        "container: {image: alpine, exec: web}\nsteps: [{run: echo}]\n",
        (1, 12),
        "container",
        "'exec' and 'image' are mutually exclusive",
    ),
    (
        "container: {user: root}\nsteps: [{run: echo}]\n",
        (1, 12),
        "container",
        "either 'exec' or 'image' must be specified",
    ),
    (
        "container:\n  exec: web\n  volumes: [/a:/b]\n  network: host\nsteps: [{run: echo}]\n",
        (2, 3),
        "container",
        "fields [volumes, network] cannot be used with 'exec'",
    ),
    ('container: ""\nsteps: [{run: echo}]\n', (1, 12), "container.exec", "exec must not be empty"),
    (
        "steps:\n  - run: echo\n    container:\n      image: a\n      volumes: [/a]\n",
        (5, 17),
        "steps[0].container.volumes[0]",
        "invalid volume '/a'",
    ),
    (
        "steps:\n  - run: echo\n    container:\n      image: a\n      volumes: ['/a:/b:z']\n",
        (5, 17),
        "steps[0].container.volumes[0]",
        "invalid volume mode 'z'",
    ),
    (
        "steps:\n  - run: echo\n    container:\n      image: a\n      volumes: ['/a:rel']\n",
        (5, 17),
        "steps[0].container.volumes[0]",
        "target must be an absolute path",
    ),
    (
        "container:\n  image: a\n  env: ['NOEQUALS']\nsteps: [{run: echo}]\n",
        (3, 9),
        "container.env[0]",
        "not of the form NAME=value",
    ),
    (
        "container:\n  image: a\n  startup: command\nsteps: [{run: echo}]\n",
        (2, 3),
        "container.command",
        "startup: command needs a non-empty command",
    ),
    (
        "container:\n  image: a\n  startup: sleepy\nsteps: [{run: echo}]\n",
        (3, 12),
        "container.startup",
        'invalid value "sleepy": use keepalive, entrypoint or command',
    ),
    (
        "container:\n  image: a\n  healthcheck: {test: [WRONG, x]}\nsteps: [{run: echo}]\n",
        (3, 23),
        "container.healthcheck.test",
        "must start with NONE, CMD or CMD-SHELL",
    ),
    (
        "container:\n  image: a\n  healthcheck: {test: [CMD, x], interval: 5 seconds}\nsteps: [{run: echo}]\n",
        (3, 43),
        "container.healthcheck.interval",
        'invalid duration "5 seconds"',
    ),
    (
        "container:\n  image: a\n  ports: ['http']\nsteps: [{run: echo}]\n",
        (3, 11),
        "container.ports[0]",
        "invalid port 'http'",
    ),
    (
        "container:\n  image: a\n  bogus: 1\nsteps: [{run: echo}]\n",
        (3, 3),
        "container.bogus",
        'unknown key "bogus"',
    ),
    # env
    (
        "env:\n  - 1X=a\nsteps: [{run: echo}]\n",
        (2, 5),
        "env[0]",
        "invalid environment variable name '1X'",
    ),
    (
        "env:\n  A-B: x\nsteps: [{run: echo}]\n",
        (2, 3),
        "env.A-B",
        "invalid environment variable name 'A-B'",
    ),
    ("env: 5\nsteps: [{run: echo}]\n", (1, 6), "env", "env must be a mapping or a list"),
    # harness steps
    (
        "steps:\n  - action: harness.run\n    with: {provider: claude}\n",
        (3, 11),
        "steps[0].with",
        "with.prompt is required",
    ),
    (
        "steps:\n  - action: harness.run\n    with: {provider: claude, prompt: '  '}\n",
        (3, 38),
        "steps[0].with.prompt",
        "the prompt is empty",
    ),
    (
        "steps:\n  - action: harness.run\n    with: {prompt: hi}\n",
        (3, 11),
        "steps[0].with",
        "with.provider is required",
    ),
    (
        "steps:\n  - action: harness.run\n    with: {provider: cluade, prompt: hi}\n",
        (3, 22),
        "steps[0].with.provider",
        'unknown provider "cluade" (did you mean "claude"?)',
    ),
    (
        "steps:\n  - action: harness.run\n    with: {provider: claude, prompt: hi, binary: x}\n",
        (3, 42),
        "steps[0].with.binary",
        "define a provider under harnesses:",
    ),
    (
        "steps:\n  - action: harness.run\n    with:\n      provider: claude\n      prompt: hi\n"
        "      fallback:\n        - provider: codex\n          fallback: [{provider: claude}]\n",
        (8, 11),
        "steps[0].with.fallback[0].fallback",
        "fallback cannot be nested",
    ),
    (
        "steps:\n  - action: harness.run\n    with:\n      provider: claude\n      prompt: hi\n"
        "      fallback: [{model: x}]\n",
        (6, 18),
        "steps[0].with.fallback[0]",
        "a fallback entry needs a provider",
    ),
    (
        "steps:\n  - action: harness.run\n    run: echo\n    with: {provider: claude, prompt: hi}\n",
        (3, 5),
        "steps[0].run",
        'action cannot be used together with "run"',
    ),
    (
        "steps:\n  - action: http.request\n    with: {url: x}\n",
        (2, 13),
        "steps[0].action",
        'action "http.request" is not supported by dagbox',
    ),
    (
        "steps:\n  - run: echo\n    with: {provider: claude}\n",
        (3, 5),
        "steps[0].with",
        '"with" belongs to "action: harness.run"',
    ),
    (
        "steps:\n  - action: harness.run\n    container: {image: a, name: fixed}\n"
        "    with: {provider: claude, prompt: hi}\n",
        (3, 33),
        "steps[0].container.name",
        "use exec:",
    ),
    # harnesses definitions
    (
        "harnesses:\n  mine:\n    prefix_args: [x]\nsteps: [{run: echo}]\n",
        (3, 5),
        "harnesses.mine",
        'missing required key "binary"',
    ),
    (
        "harnesses:\n  mine:\n    binary: ' '\nsteps: [{run: echo}]\n",
        (3, 13),
        "harnesses.mine.binary",
        "binary must not be empty",
    ),
    (
        "harnesses:\n  mine: {binary: x, prompt_mode: flag}\nsteps: [{run: echo}]\n",
        (2, 9),
        "harnesses.mine.prompt_flag",
        "prompt_flag is required when prompt_mode is flag",
    ),
    (
        "harnesses:\n  mine: {binary: x, prompt_flag: --p}\nsteps: [{run: echo}]\n",
        (2, 21),
        "harnesses.mine.prompt_flag",
        "only used with prompt_mode: flag",
    ),
    (
        "harnesses:\n  mine: {binary: x, prompt_mode: pipe}\nsteps: [{run: echo}]\n",
        (2, 34),
        "harnesses.mine.prompt_mode",
        "use arg, flag or stdin",
    ),
    (
        "harnesses:\n  mine: {binary: x, args: [a]}\nsteps: [{run: echo}]\n",
        (2, 21),
        "harnesses.mine.args",
        'unknown key "args"',
    ),
    (
        "harness: {model: x}\nsteps: [{run: echo}]\n",
        (1, 10),
        "harness",
        'must name a "provider"',
    ),
    # retry_policy, continue_on, preconditions
    (
        "steps:\n  - run: echo\n    retry_policy: {limit: 2, backoff: 0.5}\n",
        (3, 39),
        "steps[0].retry_policy.backoff",
        "backoff must be greater than 1.0",
    ),
    (
        "steps:\n  - run: echo\n    retry_policy: {limit: many}\n",
        (3, 27),
        "steps[0].retry_policy.limit",
        "must be a number or a ${...} reference",
    ),
    (
        "steps:\n  - run: echo\n    retry_policy: {limit: 1, exit_code: [a]}\n",
        (3, 42),
        "steps[0].retry_policy.exit_code[0]",
        "expected an integer",
    ),
    (
        "steps:\n  - run: echo\n    continue_on: sometimes\n",
        (3, 18),
        "steps[0].continue_on",
        'continue_on must be "failed", "skipped"',
    ),
    (
        "steps:\n  - run: echo\n    continue_on: {failed: true, eventually: true}\n",
        (3, 33),
        "steps[0].continue_on.eventually",
        'unknown key "eventually"',
    ),
    (
        "steps:\n  - run: echo\n    continue_on: {output: ['re:[']}\n",
        (3, 28),
        "steps[0].continue_on.output[0]",
        "invalid regular expression",
    ),
    (
        "steps:\n  - run: echo\n    preconditions:\n      - condition: test -f x\n        expect: 1\n",
        (5, 9),
        "steps[0].preconditions[0].expect",
        'did you mean "expected"?',
    ),
    (
        "preconditions:\n  - condition: x\n    expected: 're:('\nsteps: [{run: echo}]\n",
        (3, 15),
        "preconditions[0].expected",
        "invalid regular expression",
    ),
    # scalars and types
    (
        "steps:\n  - run: echo\n    timeout_sec: -1\n",
        (3, 18),
        "steps[0].timeout_sec",
        "expected integer >= 0",
    ),
    (
        "max_active_steps: many\nsteps: [{run: echo}]\n",
        (1, 19),
        "max_active_steps",
        "expected integer, got string",
    ),
    (
        "type: agent\nsteps: [{run: echo}]\n",
        (1, 7),
        "type",
        'type "agent" is not supported by dagbox',
    ),
    ("type: dag\nsteps: [{run: echo}]\n", (1, 7), "type", "type must be graph or chain"),
    ("steps: []\n", (1, 8), "steps", "steps must not be empty"),
    ("name: demo\n", (1, 1), "", 'missing required key "steps"'),
    ("name: has space\nsteps: [{run: echo}]\n", (1, 7), "name", "a DAG name uses letters"),
    ("steps:\n  - description: nothing\n", (2, 5), "steps[0]", "the step has nothing to run"),
    ("steps:\n  - run: '   '\n", (2, 10), "steps[0].run", "the command is empty"),
    (
        "steps:\n  - run: echo\n    output: 'my-var'\n",
        (3, 13),
        "steps[0].output",
        "invalid output name",
    ),
    (
        "steps:\n  - run: echo\n    signal_on_stop: SIGNOPE\n",
        (3, 21),
        "steps[0].signal_on_stop",
        'invalid signal "SIGNOPE"',
    ),
    ("params: [{A: [1]}]\nsteps: [{run: echo}]\n", (1, 14), "params[0].A", "must be a scalar"),
    ("params: 'A=1 A=2'\nsteps: [{run: echo}]\n", (1, 9), "params", "param A is defined twice"),
    (
        "handler_on:\n  exit:\n    run: echo\n    depends: x\nsteps: [{run: echo}]\n",
        (4, 5),
        "handler_on.exit.depends",
        "a handler is not part of the graph",
    ),
    # unsupported keys that would change what runs
    ("steps:\n  - call: other\n", (2, 11), "steps[0].call", 'no DAG named "other"'),
    (
        "steps:\n  - run: echo\n    parallel: [a, b]\n",
        (3, 5),
        "steps[0].parallel",
        "parallel is for sub-DAG calls",
    ),
    (
        "steps:\n  - foreach: {items: [a]}\n",
        (2, 5),
        "steps[0].foreach",
        '"foreach" is not supported',
    ),
    (
        "steps:\n  - run: echo\n    executor: ssh\n",
        (3, 15),
        "steps[0].executor",
        'executor type "ssh" is not supported by dagbox',
    ),
    (
        "ssh: {host: h}\nsteps: [{run: echo}]\n",
        (1, 1),
        "ssh",
        '"ssh" is not supported by dagbox',
    ),
    ("steps:\n  - run: echo\n  - [a, b]\n", (3, 5), "steps[1]", "step groups) are not supported"),
    # both spellings of one key
    (
        "maxActiveSteps: 1\nmax_active_steps: 2\nsteps: [{run: echo}]\n",
        (1, 1),
        "maxActiveSteps",
        "are the same key",
    ),
]


@pytest.mark.parametrize(
    ("text", "where", "path", "fragment"), CASES, ids=[c[2] or "root" for c in CASES]
)
def test_catalogue(text, where, path, fragment):
    found = problems(text)
    matching = [i for i in found if fragment in i.message]
    assert matching, f"no error containing {fragment!r} in:\n" + "\n".join(map(str, found))
    issue = matching[0]
    assert (issue.path, (issue.line, issue.col)) == (path, where), str(issue)


def test_error_line_format():
    issue = one_problem(
        "steps:\n  - action: harness.run\n    with: {provider: cluade, prompt: hi}\n"
    )
    assert (
        str(issue)
        == 'dag.yaml:3:22: steps[0].with.provider: unknown provider "cluade" (did you mean "claude"?)'
    )


def test_every_error_is_reported_not_only_the_first():
    found = problems(
        """
        env: [1X=a]
        steps:
          - id: a
            run: echo
            retry_policy: {limit: 1, backoff: 0.2}
          - id: a
            depends: nope
            run: echo
            timeout_sec: soon
          - action: harness.run
            with: {provider: nobody, prompt: hi}
        """
    )
    messages = " | ".join(i.message for i in found)
    for fragment in (
        "1X",
        "backoff",
        "duplicate step id",
        "unknown step",
        "integer",
        "unknown provider",
    ):
        assert fragment in messages, messages


# --- where dagbox accepts on purpose what Dagu rejects ----------------------------------


def test_d1_multiline_run_in_a_container_is_a_script():
    dag = load_text(
        """
        container: {image: alpine}
        steps:
          - run: |
              echo a
              echo b
        """
    ).dag
    assert dag.steps[0].run == "echo a\necho b\n"


def test_d5_stdin_with_a_step_container_is_allowed():
    load_text(
        """
        steps:
          - action: harness.run
            container: {image: alpine}
            with: {provider: claude, prompt: hi, stdin: context}
        """
    )


def test_d6_retry_without_interval_defaults_to_zero():
    step = load_text("steps:\n  - run: echo\n    retry_policy: {limit: 2}\n").dag.steps[0]
    assert (step.retry_policy.limit, step.retry_policy.interval_sec) == (2, 0)
